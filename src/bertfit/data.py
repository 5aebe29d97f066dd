"""Prepare labelled texts: find the columns, clean, split, and check the splits for leaks.

In: anything ``sources`` reads (a CSV / TSV / JSONL / Parquet file, a folder of ``train`` /
``validation`` / ``test`` files, ``hf:NAME``) or a DataFrame.
Out: a :class:`PreparedData` with three splits of ``text`` / ``label`` rows and a report of what
was dropped and why. This module knows nothing of tokenizers or models.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bertfit.config import DataConfig
from bertfit.errors import DataError
from bertfit.labels import LabelSet, normalise
from bertfit.sources import load_frames, read_delimited, read_table, unreadable

__all__ = ["PreparedData", "check_leaks", "clean", "find_columns", "iter_texts", "load_frames", "load_labelled",
           "prepare", "read_table", "stratified_split"]

log = logging.getLogger(__name__)

TEXT_CANDIDATES = ("text", "sentence", "content", "review", "comment", "message", "body", "document",
                   "utterance", "question", "query", "url", "tweet")
LABEL_CANDIDATES = ("label", "labels", "class", "category", "target", "intent", "y")


# ---------------------------------------------------------------------------------------------
# Columns


def find_columns(frame: pd.DataFrame, text_col: str | None, label_col: str | None) -> tuple[str, str]:
    """The text and label columns: as given, else the one obvious candidate of each."""
    columns = [str(c) for c in frame.columns]
    if text_col is not None and text_col == label_col:
        raise DataError(f"text and label columns are both {text_col!r}; pass different --text-col and --label-col")
    label = _pick(columns, label_col, LABEL_CANDIDATES, "label")
    text = _pick([c for c in columns if c != label], text_col, TEXT_CANDIDATES, "text", frame=frame)
    return text, label


def _pick(columns: list[str], given: str | None, candidates: tuple[str, ...], role: str,
          frame: pd.DataFrame | None = None) -> str:
    flag = f"--{role}-col"
    if given is not None:
        if given in columns:
            return given
        near = [c for c in columns if c.lower() == given.lower()]
        hint = f"pass {flag} {near[0]}" if near else f"pass {flag} with one of them"
        raise DataError(f"{role} column {given!r} not found; columns are {columns}; {hint}")
    lower = {c.lower(): c for c in columns}
    matches = [lower[name] for name in candidates if name in lower]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise DataError(f"more than one column could be the {role}: {matches}; pass {flag} NAME")
    if role == "text" and frame is not None:  # one string column left is the text
        strings = [c for c in columns if c in frame and pd.api.types.is_string_dtype(frame[c])]
        if len(strings) == 1:
            return strings[0]
    raise DataError(f"cannot tell which column holds the {role}; columns are {columns}; pass {flag} NAME")


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

    def splits(self) -> dict[str, pd.DataFrame]:
        return {"train": self.train, "validation": self.validation, "test": self.test}


def clean(frame: pd.DataFrame, text_col: str, label_col: str) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep rows with a non-empty text and a label, once each; count what was dropped."""
    rows = pd.DataFrame({"text": frame[text_col], "label": normalise(frame[label_col], label_col)})
    dropped = {}
    missing_text = rows["text"].isna()
    rows = rows[~missing_text]
    dropped["missing_text"] = int(missing_text.sum())
    rows = rows.assign(text=rows["text"].map(lambda t: t.strip() if isinstance(t, str) else str(t).strip()))
    empty = rows["text"] == ""
    rows = rows[~empty]
    dropped["empty_text"] = int(empty.sum())
    missing_label = rows["label"].isna() | (rows["label"] == "")
    rows = rows[~missing_label]
    dropped["missing_label"] = int(missing_label.sum())
    # Duplicates are judged as the leak check judges them (case and spacing ignored), so that
    # splitting a cleaned file can never put "the same" text in two splits.
    key = _leak_key(rows["text"])
    duplicate = pd.DataFrame({"key": key, "label": rows["label"]}).duplicated()
    rows, key = rows[~duplicate], key[~duplicate]
    dropped["duplicate"] = int(duplicate.sum())
    # The same text under two labels cannot both be right; keep the first so the text is seen once.
    conflicting = key.duplicated()
    rows = rows[~conflicting]
    dropped["conflicting_label"] = int(conflicting.sum())
    return rows.reset_index(drop=True), dropped


def stratified_split(rows: pd.DataFrame, fractions: dict[str, float], seed: int) -> dict[str, pd.DataFrame]:
    """Split by class so each split keeps the class balance; training keeps at least one row per class."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("train", *fractions)}
    too_small = rows["label"].value_counts()
    too_small = too_small[too_small < 2]
    if len(too_small):
        raise DataError(
            f"class(es) {list(too_small.index)[:5]} have a single row, too few to split by class; "
            "add rows, drop those classes, or provide your own train/validation/test files"
        )
    for _, index in sorted(rows.groupby("label").indices.items()):
        index = rng.permutation(index)
        start = 0
        for name, fraction in fractions.items():
            count = min(int(round(len(index) * fraction)), len(index) - start - 1)
            parts[name].append(index[start:start + count])
            start += count
        parts["train"].append(index[start:])
    return {
        name: rows.iloc[rng.permutation(np.concatenate(chunks))].reset_index(drop=True)
        for name, chunks in parts.items()
    }


def _leak_key(texts: pd.Series) -> pd.Series:
    return texts.str.casefold().str.split().str.join(" ")


def check_leaks(splits: dict[str, pd.DataFrame], drop: bool) -> dict[str, int]:
    """Refuse (or, with drop, remove from validation/test) texts that appear in two splits."""
    seen = set(_leak_key(splits["train"]["text"]))
    removed = {}
    for name in ("validation", "test"):
        keys = _leak_key(splits[name]["text"])
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


def prepare(source: str | Path | pd.DataFrame, config: DataConfig | None = None) -> PreparedData:
    """Read, clean, split and check a labelled data source; see the module docstring."""
    config = config or DataConfig()
    frames, origin = load_frames(source)
    text_col, label_col = find_columns(next(iter(frames.values())), config.text_col, config.label_col)
    cleaned, dropped = {}, {}
    for split, frame in frames.items():
        where = origin if split == "all" else f"{origin} ({split})"
        if len(frame) == 0:
            raise DataError(f"{where} has a header but no rows; add labelled rows")
        missing = [c for c in (text_col, label_col) if c not in frame.columns]
        if missing:
            raise DataError(f"{where} lacks column(s) {missing}; columns are {list(frame.columns)}")
        cleaned[split], dropped[split] = clean(frame, text_col, label_col)
        if len(cleaned[split]) == 0:
            raise DataError(f"{where} has no rows with both a text and a label after cleaning ({dropped[split]})")

    if "all" in cleaned:
        rows = cleaned.pop("all")
        LabelSet.fit(rows["label"], label_col)  # one class is an error before any splitting
        cleaned = stratified_split(
            rows, {"validation": config.validation_fraction, "test": config.test_fraction}, config.seed
        )
        how = (f"split {1 - config.validation_fraction - config.test_fraction:.0%}/"
               f"{config.validation_fraction:.0%}/{config.test_fraction:.0%} by class, seed {config.seed}")
    else:
        missing = [s for s in ("validation", "test") if s not in cleaned]
        how = "splits as given"
        if missing:  # carve the missing split(s) out of train, by class
            fractions = {s: getattr(config, f"{s}_fraction") for s in missing}
            carved = stratified_split(cleaned["train"], fractions, config.seed)
            cleaned.update(carved)
            how += f"; {' and '.join(missing)} carved from train by class, seed {config.seed}"

    leaks = check_leaks(cleaned, config.drop_leaks)
    labels = LabelSet.fit(cleaned["train"]["label"], label_col)
    for split in ("validation", "test"):
        labels.encode(cleaned[split]["label"].tolist(), where=f"the {split} split")
        if len(cleaned[split]) == 0:
            raise DataError(f"the {split} split is empty; provide more rows or a larger --{split}-fraction")

    report = {
        "source": origin,
        "text_col": text_col,
        "label_col": label_col,
        "rows_read": {split: int(len(frame)) for split, frame in frames.items()},
        "dropped": {key: sum(d[key] for d in dropped.values()) for key in next(iter(dropped.values()))},
        "split": how,
        "leaks_dropped" if config.drop_leaks else "leaks": leaks,
        "rows": {split: int(len(frame)) for split, frame in cleaned.items()},
        "class_balance": {split: labels.balance(frame["label"]) for split, frame in cleaned.items()},
    }
    for line in describe(report):
        log.info(line)
    return PreparedData(cleaned["train"], cleaned["validation"], cleaned["test"], labels,
                        text_col, label_col, report)


def describe(report: dict[str, Any]) -> list[str]:
    """The data report as a few lines for people: rows, drops, splits, class balance."""
    read = sum(report["rows_read"].values())
    lines = [f"data: {read} rows from {report['source']} (text column {report['text_col']!r}, "
             f"label column {report['label_col']!r})"]
    dropped = {key: count for key, count in report["dropped"].items() if count}
    lines.append("dropped: " + (", ".join(f"{n} {k.replace('_', ' ')}" for k, n in dropped.items()) or "nothing"))
    leaks = report.get("leaks_dropped")
    if leaks and any(leaks.values()):
        lines.append(f"dropped texts also in an earlier split (--drop-leaks): {leaks}")
    rows = report["rows"]
    lines.append(f"{report['split']}: train {rows['train']}, validation {rows['validation']}, test {rows['test']}")
    balance = report["class_balance"]["train"]
    total = sum(balance.values())
    shown = ", ".join(f"{name} {count} ({count / total:.0%})" for name, count in list(balance.items())[:12])
    more = f", ... {len(balance) - 12} more" if len(balance) > 12 else ""
    lines.append(f"classes in train ({len(balance)}): {shown}{more}")
    return lines


def load_labelled(
    source: str | Path | pd.DataFrame, text_col: str | None, label_col: str | None,
    preferred: tuple[str | None, str | None] = (None, None),
) -> pd.DataFrame:
    """One labelled table to score (a folder's test split), cleaned, as text/label rows.

    ``preferred`` are the columns a model was trained with: used when not given and present.
    """
    frames, origin = load_frames(source)
    split = "all" if "all" in frames else "test"
    if split not in frames:
        raise DataError(f"{origin} has no test file to evaluate on; pass a file, or a folder with test.csv")
    frame = frames[split]
    text_col, label_col = (given if given is not None or saved not in frame.columns else saved
                           for given, saved in zip((text_col, label_col), preferred, strict=True))
    text, label = find_columns(frame, text_col, label_col)
    rows, dropped = clean(frame, text, label)
    if len(rows) == 0:
        raise DataError(f"{origin} has no rows with both a text and a label")
    if any(dropped.values()):
        log.info("dropped from %s: %s", origin, {k: v for k, v in dropped.items() if v})
    return rows


def iter_texts(source: str | Path, text_col: str | None = None, chunk_size: int = 512) -> Iterator[list[str]]:
    """Texts to predict, in chunks, without holding a large file in memory.

    ``-`` is standard input, one text per line; .csv/.tsv/.jsonl/.parquet use the text column (given,
    or the obvious one); any other file is one text per line.
    """
    try:
        yield from _iter_texts(source, text_col, chunk_size)
    except (UnicodeDecodeError, pd.errors.ParserError) as err:
        raise unreadable(source, err) from None


def _iter_texts(source: str | Path, text_col: str | None, chunk_size: int) -> Iterator[list[str]]:
    if str(source) == "-":
        yield from _chunks((line.rstrip("\r\n") for line in sys.stdin if line.strip()), chunk_size)
        return
    path = Path(source)
    if not path.is_file():
        raise DataError(f"input file not found: {path}; check the path")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty; it needs a header row and texts")
        column = None
        for chunk in read_delimited(path, chunksize=chunk_size):
            chunk = chunk.fillna("")
            column = column or _pick([str(c) for c in chunk.columns], text_col, TEXT_CANDIDATES, "text", frame=chunk)
            yield [str(t) for t in chunk[column]]
    elif suffix in (".jsonl", ".json", ".parquet"):
        frame = read_table(path)
        column = _pick([str(c) for c in frame.columns], text_col, TEXT_CANDIDATES, "text", frame=frame)
        yield from _chunks((str(t) for t in frame[column].fillna("")), chunk_size)
    else:
        with path.open(encoding="utf-8") as handle:
            yield from _chunks((line.rstrip("\r\n") for line in handle if line.strip()), chunk_size)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
