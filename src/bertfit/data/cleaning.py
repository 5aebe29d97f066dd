"""Prepare labelled texts: find the columns, clean, split, and check the splits for leaks.

How rows are split by class and what counts as a leak live in ``splits``; this module runs them.

In: anything ``sources`` reads (a CSV / TSV / JSONL / Parquet file, a folder of ``train`` /
``validation`` / ``test`` files, ``hf:NAME``) or a DataFrame.
Out: a :class:`PreparedData` with three splits of ``text`` (``text_pair`` for sentence pairs) /
``label`` rows (a tuple of names for multi-label) and a report of what was dropped and why. This
module knows nothing of tokenizers or models.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertfit.config import DataConfig
from bertfit.data.columns import find_columns, find_pair_columns, holds_sentences
from bertfit.data.sniff import SURROGATE
from bertfit.data.sources import load_frames, read_table
from bertfit.data.splits import check_leaks, row_key, stratified_split
from bertfit.encoding import is_blank
from bertfit.errors import DataError
from bertfit.labels import LabelSet, is_multi_label, normalise, normalise_multi, written_number

__all__ = ["PreparedData", "clean", "find_columns", "find_pair_columns", "load_frames", "prepare", "read_table"]

log = logging.getLogger(__name__)

# A smallest class below this share of training rows, and below half an even share (many classes are
# each a small share without being imbalanced), gets a warning.
IMBALANCE_SHARE = 0.05
# Longer than any document worth classifying whole (a novel is ~500,000); a text this long is nearly
# always an unclosed quote that swallowed the rest of the file.
MAX_TEXT_CHARS = 1_000_000


# ---------------------------------------------------------------------------------------------
# Cleaning, splitting, leaks


@dataclass
class PreparedData:
    """Three splits of (text, label) rows, the classes, and what happened on the way."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    labels: LabelSet
    text_col: str
    label_col: str
    report: dict[str, Any] = field(default_factory=dict)
    text_pair_col: str | None = None  # set for sentence pairs (rows then have a text_pair column)
    multi_label: bool = False  # rows' labels are tuples of names

    def splits(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "validation": self.validation, "test": self.test}

    def pairs(self, split: str) -> list[str] | None:
        frame = self.splits()[split]
        return frame["text_pair"].tolist() if "text_pair" in frame else None


def clean(
    frame: pd.DataFrame, text_col: str, label_col: str, pair_col: str | None = None, label_sep: str | None = None,
    multi_label: bool | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep rows with a text (not blank: :func:`~bertfit.encoding.is_blank`) and a label, once each; count the rest.

    Multi-label (``multi_label``, or None: lists in the column or a ``label_sep``) keeps each row's
    labels as a sorted tuple. A sentence pair with one side missing is an error, not a dropped row:
    half a pair is a different question.
    """
    check_texts(frame[text_col], text_col)
    if pair_col is not None:
        check_texts(frame[pair_col], pair_col, digits_are_text=True)
    _refuse_odd_labels(frame[label_col], label_col)
    if multi_label is None:
        multi_label = label_sep is not None or is_multi_label(frame[label_col])
    labels = (normalise_multi(frame[label_col], label_col, label_sep) if multi_label
              else normalise(frame[label_col], label_col))
    rows = pd.DataFrame({"text": frame[text_col], "label": labels})
    if pair_col is not None:
        rows.insert(1, "text_pair", frame[pair_col])
        _refuse_half_pairs(rows, text_col, pair_col)
    dropped = {}
    # The header again inside the data: files joined with `cat a.csv b.csv > all.csv` repeat theirs
    header = pd.Series(True, index=frame.index)
    for column in (text_col, pair_col, label_col):
        if column is not None:
            header &= frame[column].map(lambda v, name=str(column): isinstance(v, str) and v.strip() == name
                                        ).astype(bool)  # an empty column maps to an empty str column
    rows = rows[~header]
    dropped["repeated_header"] = int(header.sum())
    missing_text = rows["text"].isna()
    rows = rows[~missing_text]
    dropped["missing_text"] = int(missing_text.sum())
    for column in ("text", "text_pair") if pair_col is not None else ("text",):
        rows[column] = rows[column].map(lambda t: t.strip() if isinstance(t, str) else str(t).strip())
    empty = _blank_cells(rows["text"])
    rows = rows[~empty]
    dropped["empty_text"] = int(empty.sum())
    # astype(bool): mapping an empty str column gives an empty str column, whose sum() is ""
    missing_label = rows["label"].map(lambda v: not isinstance(v, tuple) and (pd.isna(v) or v == "")).astype(bool)
    rows = rows[~missing_label]
    dropped["missing_label"] = int(missing_label.sum())
    # Duplicates are judged as the leak check judges them (case and spacing ignored), so that
    # splitting a cleaned file can never put "the same" text in two splits.
    key = row_key(rows)
    duplicate = pd.DataFrame({"key": key, "label": rows["label"]}).duplicated()
    rows, key = rows[~duplicate], key[~duplicate]
    dropped["duplicate"] = int(duplicate.sum())
    # The same text under two labels cannot both be right; keep the first so the text is seen once.
    conflicting = key.duplicated()
    rows = rows[~conflicting]
    dropped["conflicting_label"] = int(conflicting.sum())
    return rows.reset_index(drop=True), dropped


def _refuse_half_pairs(rows: pd.DataFrame, text_col: str, pair_col: str) -> None:
    one_side = rows["text"].isna() ^ rows["text_pair"].isna()
    one_side |= rows["text"].notna() & rows["text_pair"].notna() & (
        _blank_cells(rows["text"]) ^ _blank_cells(rows["text_pair"]))
    if one_side.any():
        raise DataError(
            f"sentence pair at row {one_side.idxmax()} has only one side ({text_col!r} / {pair_col!r}), "
            f"{int(one_side.sum())} such row(s); fill in both texts or drop those rows"
        )


def _blank_cells(values: pd.Series) -> pd.Series:
    """Which cells hold a blank text (:func:`~bertfit.encoding.is_blank`); astype: an empty column maps to objects."""
    return values.map(lambda v: isinstance(v, str) and is_blank(v)).astype(bool)


def check_texts(values: pd.Series, column: str, digits_are_text: bool = False,
                why: str = "a model trained on them would learn ids, not words") -> None:
    """Refuse a text column that holds no text at all (numbers, records), or a text too long to be one.

    Numbers are judged alike from every format: 17 in JSON or Parquet, "17" in a CSV (read as written).
    ``digits_are_text``: a pair's second column, where an answer may well be a number written out.
    """
    check_text_cells(values, column)
    present = values.dropna()
    # any() stops at the first text, most often the first cell; the blank mask only where none is found
    has_text = any(isinstance(v, str) and not is_blank(v) and (digits_are_text or not written_number(v))
                   for v in present)
    given = present if has_text else present[~_blank_cells(present)]
    if not has_text and len(given):
        kinds = sorted({"numbers" if isinstance(v, str) else f"{type(v).__name__} values" for v in given.iloc[:100]})
        example = given.iloc[0].item() if isinstance(given.iloc[0], np.generic) else given.iloc[0]
        raise DataError(f"text column {column!r} holds {'/'.join(kinds)}, not text (e.g. {example!r}): {why}; "
                        "pass --text-col with the column that holds the texts")
    lengths = present.map(lambda v: len(v) if isinstance(v, str) else 0)
    if len(lengths) and lengths.max() > MAX_TEXT_CHARS:
        row = lengths.idxmax()
        raise DataError(
            f"the text at row {row} of column {column!r} has {lengths.max():,} characters, over the "
            f"{MAX_TEXT_CHARS:,} bertfit reads as one text; that is usually an unclosed quote that ran on through "
            "the file: check the quoting before that row, or split it into smaller texts"
        )


def check_text_cells(values: pd.Series, column: str, where: str = "") -> None:
    """Refuse a text column with a cell holding a list, a record or bytes: its repr is no text the model knows."""
    odd = values.map(lambda v: isinstance(v, list | tuple | dict | set | np.ndarray | bytes | bytearray))
    if odd.any():
        row = odd.idxmax()
        kind = type(values[row]).__name__
        kind = {"ndarray": "list", "tuple": "list", "dict": "record"}.get(kind, kind)
        raise DataError(f"column {column!r}{where} holds {kind} values (the first at row {row}), not texts; pass "
                        "--text-col with the column that holds the texts, or turn those cells into strings")
    _refuse_surrogates(values, f"column {column!r}{where}")


def _refuse_surrogates(values: pd.Series, what: str) -> None:
    """Refuse a text or label holding a lone surrogate (JSON's "\\ud800", or a str built so in Python): half of
    a character, which no tokenizer reads and no file can hold."""
    def bad(value: Any) -> bool:
        if isinstance(value, list | tuple | np.ndarray):
            return any(map(bad, value))
        return isinstance(value, str) and not value.isascii() and SURROGATE.search(value) is not None

    odd = values.map(bad).astype(bool)
    if odd.any():
        raise DataError(f"{what} holds a lone surrogate at row {odd.idxmax()} (half of a \\u surrogate pair, which "
                        "is no character); write whole characters (UTF-8) in that row, or drop it")


def _refuse_odd_labels(values: pd.Series, column: str) -> None:
    """Refuse labels holding a lone surrogate, a number longer than Python reads as an int, and a list of labels
    holding a list or a record (``[["a", "b"]]``), whose text would become the name of a class."""
    _refuse_surrogates(values, f"label column {column!r}")
    digits = sys.get_int_max_str_digits()
    huge = values.map(lambda v: isinstance(v, str) and len(v) > digits > 0 and written_number(v)).astype(bool)
    if huge.any():
        raise DataError(f"label column {column!r} holds a number of {len(values[huge.idxmax()].strip()):,} characters "
                        f"at row {huge.idxmax()}, no class name; pass --label-col with the column of class names")
    nested = values.map(lambda v: isinstance(v, list | tuple | np.ndarray) and any(
        isinstance(item, list | tuple | dict | np.ndarray) for item in v)).astype(bool)
    if nested.any():
        row = nested.idxmax()
        raise DataError(f"label column {column!r} holds a list inside a list of labels at row {row} "
                        f"({str(values[row])[:60]}); give each row one flat list of class names, e.g. "
                        '["billing", "urgent"]')


def _refuse_classes_lost_to_duplicates(rows: pd.DataFrame, dropped: dict[str, int], where: str, read: int,
                                       labels: pd.Series, columns: tuple[str, str]) -> None:
    """Every class down to one row once repeated texts were dropped: the texts repeat, and the labels do not,
    which is what swapped text and label columns look like (a few class names taken for the texts)."""
    lost = dropped["duplicate"] + dropped["conflicting_label"]
    if len(rows) and isinstance(rows["label"].iloc[0], tuple):  # multi-label: a combination is no class
        return
    sizes = rows["label"].value_counts()
    if not lost or sizes.max() > 1:
        return
    text_col, label_col = columns
    hint = (f"the labels in {label_col!r} read like texts: are the columns swapped? pass --label-col with the column "
            f"of class names and --text-col with the texts" if holds_sentences(labels)
            else f"check --text-col ({text_col!r}) and --label-col ({label_col!r})")
    raise DataError(f"every class has a single row ({len(sizes)} classes) once {lost} of the {read} rows of {where} "
                    f"were dropped as repeated texts (duplicates, or the same text under another label); {hint}")


def nothing_left(where: str, rows: int, dropped: dict[str, int], text_col: str, label_col: str) -> DataError:
    no_text = dropped["missing_text"] + dropped["empty_text"]
    return DataError(
        f"{where} has no rows with both a text and a label ({rows} rows: {no_text} with no text in {text_col!r}, "
        f"{dropped['missing_label']} with no label in {label_col!r}); fill them in, or pass --text-col / "
        "--label-col with the columns that hold them"
    )


def prepare(source: str | Path | pd.DataFrame, config: DataConfig | None = None) -> PreparedData:
    """Read, clean, split and check a labelled data source; see the module docstring."""
    config = config or DataConfig()
    frames, origin = load_frames(source)
    first = next(iter(frames.values()))
    pair = find_pair_columns(first, config.text_col, config.text_pair_col)
    text_col, label_col = find_columns(first, pair[0] if pair else config.text_col, config.label_col)
    pair_col = pair[1] if pair else None
    multi_label = config.label_sep is not None or any(
        label_col in frame and is_multi_label(frame[label_col]) for frame in frames.values())
    cleaned, dropped = {}, {}
    for split, frame in frames.items():
        where = origin if split == "all" else f"{origin} ({split})"
        cleaned[split], dropped[split] = _clean_split(frame, where, (text_col, pair_col, label_col), config,
                                                      multi_label, trained_on=split in ("all", "train"))

    cleaned, how = _split(cleaned, config, label_col)
    leaks = check_leaks(cleaned, config.drop_leaks)
    labels = LabelSet.fit(cleaned["train"]["label"], label_col)
    for split in ("validation", "test"):
        if multi_label:
            labels.encode_multi(cleaned[split]["label"].tolist(), where=f"the {split} split")
        else:
            labels.encode(cleaned[split]["label"].tolist(), where=f"the {split} split")
        if len(cleaned[split]) == 0:
            raise DataError(f"the {split} split is empty; provide more rows or a larger --{split}-fraction")

    report = {
        "source": origin,
        "text_col": text_col,
        "label_col": label_col,
        "text_pair_col": pair_col,
        "task": "multi_label" if multi_label else "single_label",
        "rows_read": {split: int(len(frame)) for split, frame in frames.items()},
        "dropped": {key: sum(d[key] for d in dropped.values()) for key in next(iter(dropped.values()))},
        "split": how,
        "leaks_dropped" if config.drop_leaks else "leaks": leaks,
        "rows": {split: int(len(frame)) for split, frame in cleaned.items()},
        "class_balance": {split: labels.balance(frame["label"]) for split, frame in cleaned.items()},
    }
    for line in describe(report):
        log.info(line)
    unused = [c for c in first.columns if c not in (text_col, pair_col, label_col) and holds_sentences(first[c])]
    if unused:
        log.info("text column(s) not used: %s; --text-col NAME trains on another, --text-pair-col NAME adds it as "
                 "the second text of a pair", ", ".join(map(repr, unused[:5])))
    _warn_if_imbalanced(report["class_balance"]["train"], len(cleaned["train"]))
    _warn_if_names_differ_by_case(labels.names)
    if not multi_label:
        _warn_if_labels_look_joined(labels.names)
    return PreparedData(cleaned["train"], cleaned["validation"], cleaned["test"], labels,
                        text_col, label_col, report, pair_col, multi_label)


def _clean_split(frame: pd.DataFrame, where: str, columns: tuple[str, str | None, str], config: DataConfig,
                 multi_label: bool, trained_on: bool) -> tuple[pd.DataFrame, dict[str, int]]:
    """One split cleaned, refused when nothing (or, for the rows to train on, one row per class) is left."""
    text_col, pair_col, label_col = columns
    if len(frame) == 0:
        raise DataError(f"{where} has a header but no rows; add labelled rows")
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise DataError(f"{where} lacks column(s) {missing}; columns are {list(frame.columns)}")
    rows, dropped = clean(frame, text_col, label_col, pair_col, config.label_sep, multi_label)
    if len(rows) == 0:
        raise nothing_left(where, len(frame), dropped, text_col, label_col)
    if trained_on:
        _refuse_classes_lost_to_duplicates(rows, dropped, where, len(frame), frame[label_col], (text_col, label_col))
    return rows, dropped


def _split(cleaned: dict[str, pd.DataFrame], config: DataConfig, label_col: str
           ) -> tuple[dict[str, pd.DataFrame], str]:
    """train / validation / test: one file split by class, or a folder's splits with any missing ones carved from
    train; and how, in words."""
    if "all" in cleaned:
        rows = cleaned.pop("all")
        LabelSet.fit(rows["label"], label_col)  # one class is an error before any splitting
        fractions = {"validation": config.validation_fraction, "test": config.test_fraction}
        how = (f"split {1 - config.validation_fraction - config.test_fraction:.0%}/"
               f"{config.validation_fraction:.0%}/{config.test_fraction:.0%} by class, seed {config.seed}")
        return stratified_split(rows, fractions, config.seed), how
    missing = [s for s in ("validation", "test") if s not in cleaned]
    how = "splits as given"
    if missing:  # carve the missing split(s) out of train, by class
        fractions = {s: getattr(config, f"{s}_fraction") for s in missing}
        cleaned.update(stratified_split(cleaned["train"], fractions, config.seed))
        how += f"; {' and '.join(missing)} carved from train by class, seed {config.seed}"
    return cleaned, how


def _warn_if_imbalanced(balance: dict[str, int], rows: int) -> None:
    name, count = min(balance.items(), key=lambda item: item[1])
    if count < IMBALANCE_SHARE * rows and count < 0.5 * rows / len(balance):
        log.warning("imbalanced classes: %r is %d of %d training rows (%.1f%%); watch macro F1 and recall, "
                    "and consider --class-weights balanced", name, count, rows, 100 * count / rows)


def _warn_if_names_differ_by_case(names: list[str]) -> None:
    """Labels that differ only in case or spacing ('Spam', 'spam') are two classes: say so, change nothing."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(" ".join(name.casefold().split()), []).append(name)
    alike = [group for group in groups.values() if len(group) > 1]
    if alike:
        shown = "; ".join(" / ".join(map(repr, group)) for group in alike[:5])
        log.warning("labels that differ only in case or spacing are separate classes: %s; if each group is one "
                    "class, write its label one way in the data", shown)


def _warn_if_labels_look_joined(names: tuple[str, ...]) -> None:
    """Single-label classes such as 'x;y' beside 'x' and 'y': most likely several labels joined in one cell."""
    known = set(names)
    for sep in (";", "|", ",", "/"):
        joined = [name for name in names if sep in name and all(part.strip() in known for part in name.split(sep))]
        if joined:
            log.warning("label(s) %s look like several labels joined by %r (each part is a label too); they are "
                        "trained as classes of their own: for multi-label data pass --label-sep '%s'",
                        ", ".join(map(repr, joined[:3])), sep, sep)
            return


def describe(report: dict[str, Any]) -> list[str]:
    """The data report as a few lines for people: rows, drops, splits, class balance."""
    read = sum(report["rows_read"].values())
    pair = f", pair column {report['text_pair_col']!r}" if report.get("text_pair_col") else ""
    task = ", multi-label" if report.get("task") == "multi_label" else ""
    lines = [f"data: {read} rows from {report['source']} (text column {report['text_col']!r}{pair}, "
             f"label column {report['label_col']!r}{task})"]
    dropped = {key: count for key, count in report["dropped"].items() if count}
    lines.append("dropped: " + (", ".join(f"{n} {k.replace('_', ' ')}" for k, n in dropped.items()) or "nothing"))
    leaks = report.get("leaks_dropped")
    if leaks and any(leaks.values()):
        lines.append(f"dropped texts also in an earlier split (--drop-leaks): {leaks}")
    rows = report["rows"]
    lines.append(f"{report['split']}: train {rows['train']}, validation {rows['validation']}, test {rows['test']}")
    balance = report["class_balance"]["train"]
    total = rows["train"]  # multi-label: the share of rows holding the label
    shown = ", ".join(f"{name} {count} ({count / total:.0%})" for name, count in list(balance.items())[:12])
    more = f", ... {len(balance) - 12} more" if len(balance) > 12 else ""
    lines.append(f"classes in train ({len(balance)}): {shown}{more}")
    return lines
