"""Train / validation / test splits by class, and the check that no input sits in two of them.

:func:`stratified_split` keeps each class's share in every split (multi-label rows by their rarest
label); :func:`check_leaks` refuses, or drops from validation and test, inputs already seen in an
earlier split, compared case- and whitespace-insensitively (:func:`row_key`, also what ``data``
de-duplicates by). Rows are DataFrames of ``text`` (``text_pair``) and ``label``; nothing here
reads files or knows of models.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from bertfit.errors import DataError

log = logging.getLogger(__name__)


def stratified_split(rows: pd.DataFrame, fractions: dict[str, float], seed: int) -> dict[str, pd.DataFrame]:
    """Split by class so each split keeps the class balance; training keeps at least one row per class.

    Multi-label rows are stratified by their rarest label (rare label sets are what a plain random
    split loses), with too-rare strata pooled.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("train", *fractions)}
    strata = _multi_label_strata(rows["label"]) if _is_tuples(rows["label"]) else rows["label"]
    sizes = strata.value_counts()
    single = [str(name) for name in sizes[sizes < 2].index if name != "\x00rare"]
    if single and len(single) == len(sizes):
        raise DataError(
            f"every class has a single row ({len(single)} classes, e.g. {single[:3]}), so nothing can be split by "
            "class or learnt; is the label column an id? pass --label-col with the column of class names"
        )
    if single:  # each goes to training whole: learnt, but never validated or tested
        log.warning("%d class(es) have a single row (e.g. %s): kept in training, never validated or tested; "
                    "add rows of them for the scores to cover them", len(single), single[:5])
    groups = [rng.permutation(index) for _, index in
              sorted(pd.DataFrame({"s": strata.to_numpy()}).groupby("s").indices.items())]
    counts = _counts(np.array([len(index) for index in groups]), fractions, rng)
    for index, row in zip(groups, counts, strict=True):
        start = 0
        for name, count in zip(fractions, row, strict=True):
            parts[name].append(index[start:start + count])
            start += count
        parts["train"].append(index[start:])
    return {
        name: rows.iloc[rng.permutation(np.concatenate(chunks))].reset_index(drop=True)
        for name, chunks in parts.items()
    }


def _counts(sizes: np.ndarray, fractions: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """Rows of each class (row) for each held-out split (column): the class's share, rounded, training
    keeping one row. When that leaves a split empty (many classes of two or three rows), the split's
    rows are spread over the classes by largest remainder instead, so it still gets its share."""
    counts = np.zeros((len(sizes), len(fractions)), dtype=int)
    for j, fraction in enumerate(fractions.values()):
        left = sizes - counts[:, :j].sum(axis=1) - 1  # what the class can still give, keeping one for training
        counts[:, j] = np.minimum(np.round(sizes * fraction).astype(int), left)
        if counts[:, j].sum() == 0:
            wanted = min(int(round(sizes.sum() * fraction)), int(left.sum()))
            exact = sizes * fraction
            counts[:, j] = np.minimum(np.floor(exact).astype(int), left)
            order = np.lexsort((rng.random(len(sizes)), -(exact - np.floor(exact))))  # largest remainder first
            for i in order:
                if counts[:, j].sum() >= wanted:
                    break
                counts[i, j] += int(counts[i, j] < left[i])
    return counts


def _is_tuples(labels: pd.Series) -> bool:
    return len(labels) > 0 and isinstance(labels.iloc[0], tuple)


def _multi_label_strata(labels: pd.Series, smallest: int = 2) -> pd.Series:
    """Each row's rarest label (ties: the first), pooling labels with fewer than ``smallest`` rows."""
    counts = pd.Series([name for names in labels for name in names]).value_counts()
    rarest = labels.map(lambda names: min(names, key=lambda name: (counts[name], name)))
    sizes = rarest.value_counts()
    return rarest.map(lambda name: name if sizes[name] >= smallest else "\x00rare")


def _leak_key(texts: pd.Series) -> pd.Series:
    # astype(str): a column left empty by cleaning keeps the dtype it was read with (float for all-NaN)
    return texts.astype(str).str.casefold().str.split().str.join(" ")


def row_key(rows: pd.DataFrame) -> pd.Series:
    """What makes two rows "the same input": the text, and for sentence pairs both texts."""
    key = _leak_key(rows["text"])
    if "text_pair" in rows:
        key = key + "\x1f" + _leak_key(rows["text_pair"])
    return key


def check_leaks(splits: dict[str, pd.DataFrame], drop: bool) -> dict[str, int]:
    """Refuse (or, with drop, remove from validation/test) texts that appear in two splits."""
    seen = set(row_key(splits["train"]))
    removed = {}
    for name in ("validation", "test"):
        keys = row_key(splits[name])
        shared = keys.isin(seen)
        removed[name] = int(shared.sum())
        if drop:
            splits[name] = splits[name][~shared].reset_index(drop=True)
            keys = keys[~shared]
        seen |= set(keys)
    total = sum(removed.values())
    if total and not drop:
        raise DataError(
            f"{total} text(s) appear in more than one split ({removed['validation']} in validation, "
            f"{removed['test']} in test, also in an earlier split), so scores would be inflated; "
            "remove them, or pass --drop-leaks to drop them from validation and test"
        )
    return removed
