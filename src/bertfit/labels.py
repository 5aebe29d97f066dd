"""Label encoding: class names in a stable sorted order, their ids, and class balance.

Labels may be strings, whole numbers or booleans; they are kept as strings (the names a saved
model reports) and sorted numerically when they are all numbers, else alphabetically. This
module does not read files or choose columns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bertfit.errors import DataError


def normalise(values: pd.Series, column: str) -> pd.Series:
    """Turn a label column into strings; whole-number floats become '3', other floats are refused."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(str)
    if pd.api.types.is_float_dtype(values):
        fractional = values[values.notna() & (values != values.round())]
        if len(fractional):
            raise DataError(
                f"label column {column!r} holds numbers with fractions (e.g. {fractional.iloc[0].item()!r}); "
                "bertfit classifies, it does not regress: pass a column of class names or whole numbers"
            )
        return values.map(lambda v: str(int(v)) if pd.notna(v) else v)
    return values.map(lambda v: v.strip() if isinstance(v, str) else (str(v) if pd.notna(v) else v))


def _sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


@dataclass(frozen=True)
class LabelSet:
    """The classes a model knows, in id order."""

    names: tuple[str, ...]

    @classmethod
    def fit(cls, labels: Iterable[str], column: str = "label") -> LabelSet:
        names = tuple(sorted(set(labels), key=_sort_key))
        if len(names) < 2:
            found = f"only {names[0]!r}" if names else "none"
            raise DataError(
                f"label column {column!r} has one class ({found}); a classifier needs at least two: "
                "check --label-col, or add rows of the other classes"
            )
        return cls(names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def encode(self, labels: Sequence[str], where: str = "the data") -> np.ndarray:
        """Map names to ids; a name the model does not know is an error naming it."""
        lookup = self.label2id
        unknown = sorted({label for label in labels if label not in lookup}, key=_sort_key)
        if unknown:
            raise DataError(
                f"{where} has label(s) {unknown[:5]} that the training split does not have "
                f"(known: {list(self.names)[:10]}); remove those rows or add them to the training data"
            )
        return np.array([lookup[label] for label in labels], dtype=np.int64)

    def balance(self, labels: Iterable[str]) -> dict[str, int]:
        """Rows per class, in id order, zeros included."""
        counts = Counter(labels)
        return {name: counts.get(name, 0) for name in self.names}
