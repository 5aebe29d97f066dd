"""Texts (and sentence pairs) into model inputs, done one way for training, evaluation and prediction.

Long texts, by ``--long-text``:

- ``truncate``: the first ``max_length`` tokens.
- ``head-tail``: the first quarter of the budget from the start and the rest from the end (the head
  + tail split that Sun et al., 2019, found best for long reviews); one input per text.
- ``window``: windows of ``max_length`` tokens overlapping by ``stride``; every window is an input,
  and a text's prediction pools its windows' logits (mean or max).

Each input row remembers which text it came from (``owner``), so logits can be pooled back to one
row per text. What counts as no text at all (:func:`is_blank`) is decided here too, once, for
training, prediction and the server. This module needs a fast tokenizer and numpy; it does not import torch.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bertfit.errors import UsageError

LONG_TEXT_CHOICES = ("truncate", "head-tail", "window")
POOL_CHOICES = ("mean", "max")
INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
HEAD_SHARE = 0.25  # of the token budget kept from the start in head-tail mode
# Unicode categories with nothing to see: controls, format marks (zero-width, bidi), separators.
INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


@dataclass
class Encoded:
    """Model inputs (unpadded lists) and, per input row, the index of the text it came from."""

    features: dict[str, list[list[int]]]
    owner: np.ndarray  # (rows,) int
    n_texts: int
    over_length: int  # texts longer than max_length (cut, split or shortened)

    def __len__(self) -> int:
        return len(self.owner)

    def lengths(self) -> np.ndarray:
        return np.fromiter((len(ids) for ids in self.features["input_ids"]), dtype=np.int64,
                           count=len(self.owner))

    def take(self, order: np.ndarray) -> Encoded:
        """The input rows in ``order`` (for batching by length); owners move with their rows."""
        features = {key: [values[i] for i in order] for key, values in self.features.items()}
        return Encoded(features, self.owner[order], self.n_texts, self.over_length)


def encode(
    tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None = None, *, max_length: int,
    long_text: str = "truncate", stride: int | None = None,
) -> Encoded:
    """Tokenize texts (with their pairs) into model inputs by the long-text mode."""
    texts = list(texts)
    if pairs is not None:
        pairs = list(pairs)
        if len(pairs) != len(texts):
            raise UsageError(f"got {len(texts)} texts but {len(pairs)} pair texts; pass one pair text per text")
        if long_text != "truncate":
            raise UsageError(f"--long-text {long_text} works on single texts; sentence pairs are cut at "
                             "--max-length (pass --long-text truncate)")
    if long_text == "window":
        return _windows(tokenizer, texts, max_length, stride if stride is not None else max_length // 4)
    if long_text == "head-tail":
        texts, over = _head_tail(tokenizer, texts, max_length)
    elif long_text != "truncate":
        raise UsageError(f"--long-text must be one of {', '.join(LONG_TEXT_CHOICES)}, got {long_text!r}")
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    features = {key: encoded[key] for key in INPUT_KEYS if key in encoded}
    if long_text == "truncate":  # an input that fills max_length was (almost always) cut
        over = sum(len(ids) >= max_length for ids in features["input_ids"])
    return Encoded(features, np.arange(len(texts)), len(texts), int(over))


def _head_tail(tokenizer: Any, texts: list[str], max_length: int) -> tuple[list[str], int]:
    """Shorten each long text to its head and tail, cut at token boundaries (offsets map tokens to text)."""
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    head = max(1, int(budget * HEAD_SHARE))
    tail = budget - head
    pieces = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    shortened, over = [], 0
    for text, offsets in zip(texts, pieces, strict=True):
        if len(offsets) <= budget:
            shortened.append(text)
            continue
        over += 1
        shortened.append(text[:offsets[head - 1][1]] + " " + text[offsets[len(offsets) - tail][0]:])
    return shortened, over


def _windows(tokenizer: Any, texts: list[str], max_length: int, stride: int) -> Encoded:
    room = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if not 0 <= stride < room:
        raise UsageError(f"--stride must be at least 0 and below {room} (max length less special tokens), "
                         f"got {stride}")
    encoded = tokenizer(texts, truncation=True, max_length=max_length, stride=stride,
                        return_overflowing_tokens=True)
    owner = np.asarray(encoded["overflow_to_sample_mapping"], dtype=np.int64)
    features = {key: encoded[key] for key in INPUT_KEYS if key in encoded}
    over = int((np.bincount(owner, minlength=len(texts)) > 1).sum()) if len(texts) else 0  # >1 window
    return Encoded(features, owner, len(texts), over)


def pool(logits: np.ndarray, owner: np.ndarray, n_texts: int, how: str = "mean") -> np.ndarray:
    """Per-input logits (rows, classes) into per-text logits (n_texts, classes), mean or max over windows."""
    if len(owner) == n_texts and np.array_equal(owner, np.arange(n_texts)):
        return logits
    out = np.full((n_texts, logits.shape[1]), -np.inf if how == "max" else 0.0, dtype=np.float64)
    if how == "max":
        np.maximum.at(out, owner, logits)
    else:
        np.add.at(out, owner, logits)
        out /= np.bincount(owner, minlength=n_texts)[:, None]
    return out.astype(np.float32)


def is_blank(text: str) -> bool:
    """A text with nothing to classify: only whitespace, control characters and invisible marks (a zero-width
    space, bidi marks). Training drops these as empty and prediction marks them so; emoji are text."""
    stripped = text.strip()  # whitespace as str.isspace has it, at C speed
    if not stripped:
        return True
    if unicodedata.category(stripped[0]) not in INVISIBLE:
        return False  # most texts: decided by their first visible character
    return all(char.isspace() or unicodedata.category(char) in INVISIBLE for char in stripped)


UNREADABLE_SHARE = 0.1  # of the training tokens unknown to the vocabulary: past it, the model cannot read the data
SAMPLED_ROWS = 20_000  # rows counted (the split is shuffled): enough for a share; a large set whole takes seconds


def unknown_tokens_note(tokenizer: Any, input_ids: Sequence[Sequence[int]]) -> str | None:
    """A plain sentence when a large share of the tokens (special tokens aside) are the tokenizer's unknown token:
    characters outside its vocabulary (Chinese, Thai or emoji for an English vocabulary) all read as one token,
    so the model sees none of what sets those texts apart. None otherwise, or where the tokenizer has no such token.
    """
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None or not input_ids:
        return None
    ids = np.fromiter((i for row in input_ids[:SAMPLED_ROWS] for i in row), dtype=np.int64)
    ids = ids[~np.isin(ids, [i for i in tokenizer.all_special_ids if i != unknown])]
    share = float(np.mean(ids == unknown)) if len(ids) else 0.0
    if share < UNREADABLE_SHARE:
        return None
    return (f"unreadable text: {share:.0%} of the training tokens are unknown to the model's vocabulary "
            f"({tokenizer.unk_token}), so it cannot tell those words apart; a checkpoint whose vocabulary "
            "covers this script (--model bert-base-multilingual-cased, or one for the language) can read them")
