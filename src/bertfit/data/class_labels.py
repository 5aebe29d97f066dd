"""Hugging Face ClassLabel columns: their names, and the splits that hold no labels at all.

The datasets library stores a class as its id (0, 1, ...) with the names kept beside the data: in a
Dataset's features, and in the schema metadata of the Parquet files ``Dataset.to_parquet`` and the hub
write. An id of -1 is "no label"; benchmarks hide their test labels by writing -1 in every row.
:func:`name_class_labels` turns ids into names; :func:`leave_out_unlabelled` drops a split whose labels are
all -1, for every source read by split (hub datasets, folders of files). Nothing here reads rows from disk.
"""

from __future__ import annotations

import json
import logging
import numbers
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)

# column -> (class names in id order, whether each row holds a list of ids: a multi-label column)
ClassLabels = dict[str, tuple[list[str], bool]]


def dataset_class_labels(features: Any) -> ClassLabels:
    """The ClassLabel columns of a datasets.Dataset's features (also a list of ClassLabel: multi-label)."""
    found: ClassLabels = {}
    for column, feature in features.items():
        if type(feature).__name__ == "ClassLabel":
            found[str(column)] = (list(feature.names), False)
        elif type(getattr(feature, "feature", None)).__name__ == "ClassLabel":  # Sequence / List of ClassLabel
            found[str(column)] = (list(feature.feature.names), True)
        elif isinstance(feature, list) and len(feature) == 1 and type(feature[0]).__name__ == "ClassLabel":
            found[str(column)] = (list(feature[0].names), True)
    return found


def parquet_class_labels(path: Path) -> ClassLabels:
    """The ClassLabel columns a Parquet file written by the datasets library names in its schema metadata
    (key ``huggingface``: ``{"info": {"features": {column: {"_type": "ClassLabel", "names": [...]}}}}``);
    empty for any other Parquet file."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
        features = json.loads(metadata.get(b"huggingface", b"{}")).get("info", {}).get("features", {})
    except (OSError, ValueError, AttributeError):  # unreadable or foreign metadata: the ids stay as written
        return {}
    found: ClassLabels = {}
    for column, feature in (features.items() if isinstance(features, dict) else ()):
        if isinstance(feature, dict) and feature.get("_type") in ("Sequence", "List", "LargeList"):
            inner, multi = feature.get("feature"), True
        elif isinstance(feature, list) and len(feature) == 1:  # a Python list of one feature: a list per row
            inner, multi = feature[0], True
        else:
            inner, multi = feature, False
        if isinstance(inner, dict) and inner.get("_type") == "ClassLabel" and isinstance(inner.get("names"), list):
            found[str(column)] = ([str(name) for name in inner["names"]], multi)
    return found


def name_class_labels(frame: pd.DataFrame, labels: ClassLabels) -> pd.DataFrame:
    """``frame`` with each ClassLabel id replaced by its name, and -1 (the datasets library's "no label")
    missing; a list of ids becomes a list of names."""
    frame = frame.copy() if any(column in frame for column in labels) else frame
    for column, (names, multi) in labels.items():
        if column not in frame:
            continue
        if multi:
            frame[column] = [None if _missing(ids) else [name for name in (_class_name(names, i) for i in ids) if name]
                             for ids in frame[column]]
        else:
            frame[column] = [_class_name(names, i) for i in frame[column]]
    return frame


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and pd.isna(value))


def _class_name(names: list[str], index: Any) -> str | None:
    return names[int(index)] if pd.notna(index) and 0 <= int(index) < len(names) else None


def leave_out_unlabelled(parts: dict[str, tuple[pd.DataFrame, ClassLabels]], train: str | None,
                         what: str) -> dict[str, pd.DataFrame]:
    """The splits as frames with class names, less each split other than ``train`` in which a label column
    holds -1 in every row (a benchmark's hidden labels): said in a warning, its place is then taken as for a
    split that is missing. -1 is "no label" in a ClassLabel column, and in any other column unless the
    training split holds -1 there too (then it is a class)."""
    reference = parts[train][0] if train in parts else None
    unlabelled = [split for split, (frame, labels) in parts.items()
                  if split != train and _unlabelled_column(frame, labels, reference) is not None]
    if unlabelled:
        log.warning("%s: split(s) %s left out: every row's label is -1 (no label, as in a benchmark's hidden test "
                    "set); bertfit carves what it needs from train", what, unlabelled)
    return {split: name_class_labels(frame, labels) for split, (frame, labels) in parts.items()
            if split not in unlabelled}


def _unlabelled_column(frame: pd.DataFrame, labels: ClassLabels, train: pd.DataFrame | None) -> str | None:
    """The first column of ``frame`` that is -1 in every row and means "no label" there, or None."""
    if frame.empty:
        return None
    for column in frame.columns:
        if labels.get(column, ([], False))[1] or not _minus_one(frame[column].head(1)).all():
            continue
        if not _minus_one(frame[column]).all():
            continue
        if column in labels or (train is not None and column in train and not _minus_one(train[column]).any()):
            return str(column)
    return None


def _minus_one(values: pd.Series) -> pd.Series:
    """Which cells are -1: the number, or the text "-1" as a CSV holds it."""
    if pd.api.types.is_bool_dtype(values):
        return pd.Series(False, index=values.index)
    if pd.api.types.is_numeric_dtype(values):
        return values == -1
    return values.map(lambda value: (isinstance(value, str) and value.strip() in ("-1", "-1.0"))
                      or (isinstance(value, numbers.Real) and not isinstance(value, bool) and value == -1))
