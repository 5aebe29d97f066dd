"""Label encoding: class names in a stable sorted order, their ids, and class balance.

Labels may be strings, whole numbers or booleans; they are kept as strings (the names a saved
model reports) and sorted numerically when they are all numbers, else alphabetically. A
multi-label row holds a list of names (a JSON array, a list written as text as ``to_csv`` writes it,
numpy's print of an int array, a Python set, or a string cut by ``--label-sep``), or a 0/1 vector over
the labels' places (multi-hot, named by place); it is kept as a sorted tuple. This module does not
read files or choose columns.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bertfit.errors import DataError

log = logging.getLogger(__name__)

NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
# numpy's print of an int array, as a CSV export of a column of arrays holds it: "[ 8 20]"
NUMPY_INTS = re.compile(r"\[\s*-?\d+(\s+-?\d+)*\s*\]")
LISTS = (list, tuple, np.ndarray, set, frozenset)  # a multi-label row's container (a set, from Python, too)
WHOLE_FLOAT = re.compile(r"([+-]?\d+)\.0+")


def written_number(value: object) -> bool:
    """A string that reads as a number ("007", "-1.5", "2e3"): how a CSV read as written holds numbers."""
    return isinstance(value, str) and NUMBER.fullmatch(value.strip()) is not None


def normalise(values: pd.Series, column: str) -> pd.Series:
    """Turn a label column into strings; whole-number floats become '3', other floats are refused.

    Strings are kept as written ("007" stays "007"), except that "3.0" is "3"; a column of strings that
    are all numbers, some with fractions, is refused as a float column is.
    """
    if pd.api.types.is_bool_dtype(values):
        return values.astype(str)
    records = values[values.map(lambda v: isinstance(v, dict))]
    if len(records):
        raise DataError(f"label column {column!r} holds objects (e.g. {records.iloc[0]!r}), not class names; "
                        "pass --label-col with the column of class names, or flatten the objects into one")
    lists = values[values.map(lambda v: isinstance(v, list | tuple | np.ndarray))]
    if len(lists):  # only reached when the task is fixed as single-label (a saved single-label model)
        raise DataError(f"label column {column!r} holds lists of labels (e.g. {list(lists.iloc[0])!r}), but this "
                        "is single-label: give each row one class name")
    if pd.api.types.is_float_dtype(values):
        infinite = values[np.isinf(values)]
        if len(infinite):
            raise DataError(f"label column {column!r} holds {infinite.iloc[0].item()!r}, not a class; "
                            "pass a column of class names or whole numbers")
        fractional = values[values.notna() & (values != values.round())]
        if len(fractional):
            raise DataError(
                f"label column {column!r} holds numbers with fractions (e.g. {fractional.iloc[0].item()!r}); "
                "bertfit classifies, it does not regress: pass a column of class names or whole numbers"
            )
        return values.map(lambda v: str(int(v)) if pd.notna(v) else v)
    written = values.dropna()
    numbers = written[written.map(written_number)]
    if len(written) and len(numbers) == len(written):  # numbers as written in a CSV: fractions are refused too
        fractional = numbers[numbers.map(lambda v: not float(v).is_integer())]
        if len(fractional):
            raise DataError(
                f"label column {column!r} holds numbers with fractions (e.g. {fractional.iloc[0].strip()!r}); "
                "bertfit classifies, it does not regress: pass a column of class names or whole numbers"
            )
    return values.map(_name)


def _name(value: object) -> object:
    """One label of a mixed column as a class name: 1, 1.0 and '1' are one class; a gap stays missing."""
    if isinstance(value, bytes | bytearray):  # a Parquet binary column: its UTF-8 text, as b'spam' is 'spam'
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"a label holds bytes that are not UTF-8 text ({bytes(value)[:20]!r}); "
                            "decode the label column into strings first") from None
    if isinstance(value, str):
        whole = WHOLE_FLOAT.fullmatch(value.strip())  # "3.0", as a CSV holds a float column with gaps
        # NFC: "café" typed on two systems (é as one character, or e and an accent) is one class
        return str(int(whole.group(1))) if whole else unicodedata.normalize("NFC", value.strip())
    if not pd.api.types.is_scalar(value):  # a list inside a list of labels: its text, as any other odd value
        return str(value)
    if isinstance(value, float | np.floating) and np.isinf(value):  # JSON's Infinity among names
        raise DataError(f"a label holds {float(value)!r}, not a class; pass a column of class names or whole numbers")
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value) if pd.notna(value) else value


def label_names(labels: Iterable[str] | Iterable[tuple[str, ...]]) -> set[str]:
    """Every class name in a column of names, or of tuples of names (multi-label)."""
    return {name for label in labels for name in (label if isinstance(label, tuple) else (label,))}


def is_multi_label(values: pd.Series) -> bool:
    """A label column is multi-label when its values are lists (JSON arrays, Parquet lists), or when every
    label is a list written as text (``["a", "b"]`` or ``['a', 'b']``, as ``to_csv`` writes a column of lists)."""
    if values.map(lambda v: isinstance(v, LISTS)).any():
        return True
    given = values[values.map(lambda v: isinstance(v, str) and v.strip() != "")]
    return len(given) > 0 and len(given) == int(values.notna().sum()) and all(
        _written_list(v) is not None for v in given)


def _written_list(text: str) -> list | None:
    """The list a label cell writes as text (JSON, or Python's repr of a list of names); None when it is not one."""
    text = text.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(value, list) and all(isinstance(v, str | int | float | bool) for v in value):
            return value
    return [int(v) for v in text[1:-1].split()] if NUMPY_INTS.fullmatch(text) else None


def normalise_multi(values: pd.Series, column: str, sep: str | None) -> pd.Series:
    """Each row's labels as a sorted tuple of unique, stripped names; a missing value stays missing.

    An empty list (or a string with nothing between separators) is an error naming the row: a
    multi-label row needs at least one label.
    """

    width = _multi_hot(values) if sep is None else None
    if width is not None:
        log.info("label column %r holds 0/1 vectors of %d places (multi-hot): read as multi-label, label i being "
                 "place i (0 to %d)", column, width, width - 1)
        values = values.map(lambda v: v if _missing(v) else [str(i) for i, on in enumerate(_as_list(v)) if on])

    def one(value: object, row: object) -> tuple[str, ...] | float:
        if isinstance(value, str) and sep is not None:
            value = value.split(sep)
        elif isinstance(value, str):
            written = _written_list(value)  # a list written as text, or a single name in a column of lists
            value = [value] if written is None else written
        elif not isinstance(value, LISTS):
            if pd.isna(value):
                return np.nan
            value = [value]
        names = {str(_name(v)).strip() for v in value if v is not None and not (isinstance(v, float) and np.isnan(v))}
        names.discard("")
        if not names:
            raise DataError(
                f"label column {column!r} has an empty label list at row {row}; every multi-label row needs "
                "at least one label: drop those rows, or give them a label such as 'none'"
            )
        return tuple(sorted(names, key=_sort_key))

    return pd.Series([one(v, row) for row, v in zip(values.index, values, strict=True)], index=values.index,
                     dtype=object)


def _multi_hot(values: pd.Series) -> int | None:
    """How many places a column of 0/1 vectors has (``[1, 0, 0]``: multi-hot, as transformers' multi-label
    examples hold labels), else None. A vector is told from a set of labels 0 and 1 by repeating a value."""
    width, repeats = None, False
    for value in values:  # stops at the first row that is no vector: a column of names is read once, not twice
        if _missing(value):
            continue
        row = _as_list(value)
        if row is None or len(row) < 2 or width not in (None, len(row)) or not all(
                isinstance(x, int | float | np.number | np.bool_) and x in (0, 1) for x in row):
            return None
        width, repeats = len(row), repeats or len(set(row)) < len(row)
    return width if repeats else None


def _as_list(value: object) -> list | None:
    if isinstance(value, LISTS):
        return list(value)
    return _written_list(value) if isinstance(value, str) else None


def _missing(value: object) -> bool:
    return not isinstance(value, LISTS) and not isinstance(value, str) and bool(pd.isna(value))


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
    def fit(cls, labels: Iterable[str] | Iterable[tuple[str, ...]], column: str = "label") -> LabelSet:
        flat = {name for label in labels for name in (label if isinstance(label, tuple) else (label,))}
        names = tuple(sorted(flat, key=_sort_key))
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

    def encode(self, labels: Sequence[str], where: str = "the data", trained: bool = False) -> np.ndarray:
        """Map names to ids; a name the model does not know is an error naming it. ``trained``: the labels are
        scored against a saved model (evaluate, report), which cannot learn more, not against a training split."""
        lookup = self.label2id
        unknown = self.unknown(labels)
        if unknown:
            folded = {" ".join(name.split()).casefold(): name for name in self.names}
            alike = [f"{name!r} is {folded[key]!r} written another way" for name in unknown[:5]
                     if (key := " ".join(name.split()).casefold()) in folded]
            joined = self._joined_by(unknown)
            lacks, spelt = ("the model was not trained on", "the model's labels are") if trained else \
                ("the training split does not have", "the training split does")
            raise DataError(
                f"{where} has label(s) {unknown[:5]} that {lacks} "
                f"(known: {list(self.names)[:10]}{'; ' if alike else ''}{', '.join(alike)}); "
                + (f"they are known labels joined by {joined!r}: pass --label-sep '{joined}'" if joined else
                   ("remove those rows: the model can never predict them (or train one on data that has them)"
                    if trained else "remove those rows or add them to the training data")
                   + (f"; or spell them as {spelt}" if alike else ""))
            )
        return np.array([lookup[label] for label in labels], dtype=np.int64)

    def _joined_by(self, unknown: list[str]) -> str | None:
        """The separator that cuts every unknown name into known ones ("a,b" with a and b known), if one does."""
        known = set(self.names)
        return next((sep for sep in (",", ";", "|") if all(
            sep in name and all(part.strip() in known for part in name.split(sep) if part.strip())
            for name in unknown)), None)

    def unknown(self, labels: Iterable[str] | Iterable[tuple[str, ...]]) -> list[str]:
        """The names among ``labels`` (names, or tuples of names) that are not classes of this set, sorted."""
        return sorted(label_names(labels) - set(self.label2id), key=_sort_key)

    def balance(self, labels: Iterable[str] | Iterable[tuple[str, ...]]) -> dict[str, int]:
        """Rows per class (multi-label: rows holding the label), in id order, zeros included."""
        counts = Counter(name for label in labels for name in (label if isinstance(label, tuple) else (label,)))
        return {name: counts.get(name, 0) for name in self.names}

    def encode_multi(self, label_lists: Sequence[tuple[str, ...]], where: str = "the data",
                     trained: bool = False) -> np.ndarray:
        """Rows of label names into a (rows, labels) 0/1 float matrix; an unknown name is an error."""
        self.encode(sorted({name for names in label_lists for name in names}), where, trained)  # names any unknown
        lookup = self.label2id
        out = np.zeros((len(label_lists), len(self.names)), dtype=np.float32)
        for row, names in enumerate(label_lists):
            out[row, [lookup[name] for name in names]] = 1.0
        return out

    def decode_multi(self, matrix: np.ndarray) -> list[list[str]]:
        """A 0/1 (rows, labels) matrix back into lists of names."""
        return [[self.names[i] for i in np.flatnonzero(row)] for row in matrix]
