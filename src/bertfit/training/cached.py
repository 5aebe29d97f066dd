"""Encode once: train only the top of a model on cached outputs of its frozen bottom.

When everything below encoder layer K is frozen (``--train-layers head``, ``pooler`` or N), the
frozen part gives the same output for a text in every epoch, so it is run once per text (in
eval mode: no dropout in the frozen layers) and cached; each epoch then runs only the trainable
top. For ``head`` and ``pooler`` the top reads the first token alone, so only that vector is
cached. The top shares its modules with the full model, so training it trains the full model:
the saved folder is the ordinary one. Supported: BERT-style models (a pooler or none, a dropout
and a linear classifier over the first token); others train on the general path.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import SequenceClassifierOutput

log = logging.getLogger(__name__)

# Above this many bytes the cache lives in a memory-mapped temporary file instead of RAM.
SPILL_BYTES = int(os.environ.get("BERTFIT_CACHE_SPILL_BYTES", 2 * 1024**3))


def frozen_layer_count(model: Any, spec: str, n_layers: int) -> int | None:
    """How many encoder layers are frozen from the bottom, or None when the fast path does not apply."""
    if spec in ("all", "lora") or not _is_bert_style(model):
        return None
    if spec in ("head", "pooler"):
        return n_layers
    return n_layers - int(spec)


def _is_bert_style(model: Any) -> bool:
    return (
        isinstance(getattr(model, "classifier", None), nn.Linear)
        and isinstance(getattr(model, "dropout", None), nn.Dropout)
        and hasattr(model.base_model, "embeddings")
        and getattr(model.config, "problem_type", None) in (None, "single_label_classification",
                                                            "multi_label_classification")
    )


class CachedStates:
    """Hidden states of many texts, each (tokens, hidden), stored end to end with offsets."""

    def __init__(self, rows: np.ndarray, offsets: np.ndarray):
        self.rows = rows  # (total tokens, hidden), in RAM or memory-mapped
        self.offsets = offsets  # (texts + 1,): text i is rows[offsets[i]:offsets[i + 1]]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.rows[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


@torch.inference_mode()
def encode_frozen(
    model: Any, encoded: dict[str, list], layer: int, first_token_only: bool, batch_size: int = 64,
    autocast: bool = False, progress: bool = False, desc: str = "encoding once",
) -> CachedStates:
    """Run the frozen bottom once over tokenized texts: the output of encoder layer ``layer``.

    ``layer`` 0 is the embeddings; L is the last layer. Batches are length-sorted (little padding).
    """
    from bertfit.progress import progress_bar

    was_training = model.training
    model.eval()
    base = model.base_model
    ids = encoded["input_ids"]
    lengths = np.array([1 if first_token_only else len(x) for x in ids])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    hidden = model.config.hidden_size
    rows = _allocate(int(offsets[-1]), hidden)
    order = np.argsort([len(x) for x in ids], kind="stable")
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
    for start in progress_bar(range(0, len(order), batch_size), desc=desc, unit="batches", disable=not progress,
                              leave=False):
        chosen = order[start:start + batch_size]
        width = max(len(ids[i]) for i in chosen)
        batch = {k: torch.tensor([_pad(encoded[k][i], width) for i in chosen]) for k in keys}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = base(**batch, output_hidden_states=True).hidden_states[layer]  # (batch, seq, hidden)
        out = out.float().numpy()
        for row, i in enumerate(chosen):
            n = 1 if first_token_only else len(ids[i])
            rows[offsets[i]:offsets[i] + n] = out[row, :n]
    model.train(was_training)
    return CachedStates(rows, offsets)


def _pad(values: list[int], width: int) -> list[int]:
    return values + [0] * (width - len(values))


def _allocate(n_rows: int, hidden: int) -> np.ndarray:
    size = n_rows * hidden * 4
    if size <= SPILL_BYTES:
        return np.empty((n_rows, hidden), dtype=np.float32)
    handle = tempfile.NamedTemporaryFile(prefix="bertfit-cache-", suffix=".f32", delete=False)
    log.info("caching %.1f GiB of hidden states on disk (%s)", size / 1024**3, handle.name)
    rows = np.lib.format.open_memmap(handle.name, mode="w+", dtype=np.float32, shape=(n_rows, hidden))
    os.unlink(handle.name)  # the mapping stays valid; the file goes when the process ends
    return rows


class CachedSplit(torch.utils.data.Dataset):
    """Cached states and label ids, for Trainer."""

    def __init__(self, states: CachedStates, label_ids: np.ndarray):
        self.states = states
        self.label_ids = label_ids

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"hidden_states": self.states[i], "labels": target(self.label_ids[i])}


def target(value: np.ndarray | np.integer) -> int | list[float]:
    """A row's training target: a class id, or a 0/1 list for multi-label."""
    return int(value) if np.ndim(value) == 0 else value.tolist()


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Pad cached sequences to the longest in the batch and build the attention mask."""
    width = max(len(item["hidden_states"]) for item in items)
    hidden = items[0]["hidden_states"].shape[1]
    states = torch.zeros(len(items), width, hidden)
    mask = torch.zeros(len(items), width, dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item["hidden_states"])
        states[row, :n] = torch.from_numpy(np.asarray(item["hidden_states"]))
        mask[row, :n] = 1
    labels = torch.tensor([item["labels"] for item in items])
    return {"hidden_states": states, "attention_mask": mask, "labels": labels}


class TrainableTop(nn.Module):
    """The top of a BERT-style classifier: encoder layers from ``first_layer`` on, pooler, dropout, head.

    Its modules are the full model's own (shared, not copied), so its training updates the full model.
    """

    def __init__(self, model: Any, layers: list[nn.Module], first_layer: int):
        super().__init__()
        self.config = model.config
        self.layers = nn.ModuleList(layers[first_layer:])
        self.pooler = getattr(model.base_model, "pooler", None)
        self.dropout = model.dropout
        self.classifier = model.classifier

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        # hidden_states: (batch, seq, hidden), the frozen bottom's output; seq is 1 when only [CLS] is cached.
        if len(self.layers):
            mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states,
                                             attention_mask=attention_mask)
            for layer in self.layers:
                hidden_states = layer(hidden_states, mask)
        first = hidden_states[:, :1]  # (batch, 1, hidden)
        pooled = self.pooler(first) if self.pooler is not None else first[:, 0]  # (batch, hidden)
        logits = self.classifier(self.dropout(pooled))  # (batch, classes)
        # The loss is the trainer's (cross-entropy, weighted or not, or per-label BCE), as for the full model.
        return SequenceClassifierOutput(logits=logits)
