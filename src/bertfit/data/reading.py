"""Texts for a model already trained: a labelled file to score, and a stream of texts to predict.

:func:`load_labelled` reads one labelled split (a file, or a folder's test split) with the model's
columns, cleaned as training cleaned; :func:`iter_texts` streams texts in chunks from a file, a
text-per-line file or stdin, keeping blank lines in place so each output record meets its input row.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from bertfit.data.cleaning import MAX_TEXT_CHARS, check_text_cells, check_texts, clean, nothing_left
from bertfit.data.columns import find_columns, find_pair_columns, predict_text_column
from bertfit.data.fasttext import PREFIX, labelled_lines, text_of
from bertfit.data.sniff import check_text_file, compressed_table, decompressed, refuse_a_stream
from bertfit.data.sources import SUFFIXES, load_frames, read_delimited, read_table, unreadable
from bertfit.errors import DataError

log = logging.getLogger(__name__)


def load_labelled(
    source: str | Path | pd.DataFrame, text_col: str | None, label_col: str | None,
    preferred: tuple[str | None, str | None] = (None, None), *, pair_col: str | None = None,
    label_sep: str | None = None, multi_label: bool = False, saved_pair_col: str | None = None,
) -> pd.DataFrame:
    """One labelled table to score (a folder's test split), cleaned, as text/label rows.

    ``preferred`` are the columns a model was trained with: used when not given and present.
    ``pair_col``: the second text column of a sentence-pair model, given (or the model's own, when
    ``saved_pair_col`` is not passed); ``saved_pair_col``: the model's own. A table without the pair's columns
    that holds one known pair naming (question1/question2, ...) is read by it.
    """
    frames, origin = load_frames(source, need_train=False)
    # A folder's test split when it has one; else the one split it holds (scoring needs one labelled table).
    split = next((name for name in ("all", "test") if name in frames), None)
    if split is None and len(frames) == 1:
        split = next(iter(frames))
        log.info("%s has no test file; scoring its %s split", origin, split)
    if split is None:
        raise DataError(f"{origin} has no test file and more than one other split ({', '.join(sorted(frames))}); "
                        "pass the file to score, e.g. DATA/validation.csv")
    frame = frames[split]
    if (pair_col or saved_pair_col) is not None and (pair_col or saved_pair_col) not in frame.columns:
        text_col, pair_col = known_pair(frame, text_col, pair_col, saved_pair_col, origin)
    pair_col = pair_col or saved_pair_col
    text_col, label_col = (given_or_saved(given, saved, list(frame.columns))
                           for given, saved in zip((text_col, label_col), preferred, strict=True))
    text, label = find_columns(frame, text_col, label_col)
    rows, dropped = clean(frame, text, label, pair_col, label_sep, multi_label)
    if len(rows) == 0:
        raise nothing_left(origin, len(frame), dropped, text, label)
    if any(dropped.values()):
        log.info("dropped from %s: %s", origin, {k: v for k, v in dropped.items() if v})
    rows.attrs["label_col"] = label  # which column the labels came from, for an error about them
    return rows


def given_or_saved(given: str | None, saved: str | None, columns: list[str]) -> str | None:
    """The column the user named, else the one the model was trained on when the table has it (else None:
    find the obvious one)."""
    return given if given is not None or saved not in columns else saved


def known_pair(frame: pd.DataFrame, text_col: str | None, pair_col: str | None, saved_pair_col: str | None,
               where: str) -> tuple[str, str]:
    """The two text columns of a sentence-pair table that lacks the model's second column: the one known pair
    naming it holds (when neither --text-col nor --text-pair-col names a column), said in a log line."""
    missing = pair_col or saved_pair_col
    given = pair_col is not None and saved_pair_col is not None and pair_col != saved_pair_col
    found = find_pair_columns(frame, None, None) if text_col is None and not given else None
    if found is None:
        raise DataError(f"{where} has no column {missing!r}, the second text of this sentence-pair model; columns "
                        f"are {[str(c) for c in frame.columns]}; pass --text-pair-col SECOND and --text-col FIRST, "
                        "the two columns of texts")
    log.info("%s has no column %r: reading the pairs from columns %r and %r", where, missing, *found)
    return found


def iter_texts(
    source: str | Path, text_col: str | None = None, chunk_size: int = 512, pair_col: str | None = None,
    saved_col: str | None = None, saved_pair_col: str | None = None,
) -> Iterator[list[str]] | Iterator[list[tuple[str, str]]]:
    """Texts to predict, in chunks, without holding a large file in memory.

    ``-`` is standard input, one text per line; .csv/.tsv/.jsonl/.parquet use the text column (given,
    else the model's own ``saved_col`` when the file has it, else the obvious one); any other file is one
    text per line (a .txt file in fastText's format without its label words). With ``pair_col`` (a
    sentence-pair model's second column as given, else its own ``saved_pair_col``) each item is a (text, pair)
    tuple: from the two columns (else the one known pair naming the file holds), or from a tab in each line.
    """
    seen = 0
    try:
        columns = (text_col, saved_col, pair_col, saved_pair_col)
        for chunk in _iter_texts(source, columns, chunk_size):
            _refuse_a_huge_text(chunk, seen, source)
            seen += len(chunk)
            yield chunk
    except (UnicodeDecodeError, pd.errors.ParserError) as err:
        raise unreadable(source, err) from None


def _refuse_a_huge_text(chunk: list, before: int, source: str | Path) -> None:
    """The limit training and evaluation hold to (one text a megabyte of characters; tokenizing one costs
    about 150 bytes of memory a character), before any of the chunk is scored."""
    for i, item in enumerate(chunk):
        longest = max(len(text) for text in item) if isinstance(item, tuple) else len(item)
        if longest > MAX_TEXT_CHARS:
            where = "standard input" if str(source) == "-" else str(source)
            raise DataError(f"text {before + i + 1} of {where} has {longest:,} characters, over the "
                            f"{MAX_TEXT_CHARS:,} bertfit reads as one text; split it into smaller texts (in a table, "
                            "check the quoting before it: an unclosed quote runs on through the file)")


Columns = tuple[str | None, str | None, str | None, str | None]  # text given, text saved, pair given, pair saved


def _iter_texts(source: str | Path, columns: Columns, chunk_size: int) -> Iterator[list]:
    pair_col = columns[2] or columns[3]
    if str(source) == "-":
        yield from _chunks(_lines(_stdin(), pair_col), chunk_size)
        return
    path = Path(source)
    if path.is_dir():
        raise DataError(f"--input {path} is a folder; pass a file of texts (one per line, or a CSV / TSV / JSONL / "
                        "Parquet file with a text column)")
    if not path.is_file():
        refuse_a_stream(path, "pipe texts in with --input - (one per line, on standard input), or save them to a "
                              "file and pass that")
        raise DataError(f"input file not found: {path}; check the path")
    if compressed_table(path, (*SUFFIXES, ".txt")):
        with decompressed(path) as plain:
            yield from _iter_texts(plain, columns, chunk_size)
        return
    if path.suffix.lower() in SUFFIXES:
        yield from _iter_table(path, columns, chunk_size)
        return
    check_text_file(path)
    labelled = pair_col is None and path.suffix.lower() == ".txt" and labelled_lines(path)
    if labelled:
        log.info("%s is in fastText's format (each line starts with a %s word): predicting the texts without "
                 "those words", path, PREFIX)
    with path.open(encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is not part of the first text
        lines = _lines(handle, pair_col)
        yield from _chunks(map(text_of, lines) if labelled else lines, chunk_size)


def _iter_table(path: Path, columns: Columns, chunk_size: int) -> Iterator[list]:
    """Texts (or pairs) from a table's columns, a chunk at a time."""
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; it needs a header row and texts")
    delimited = path.suffix.lower() in (".csv", ".tsv")
    tables = read_delimited(path, chunksize=chunk_size) if delimited else [read_table(path)]
    names: list[str] | None = None
    for table in tables:
        table = table.astype(object).fillna("")  # a column of numbers and gaps takes "" too
        if names is None:
            names = _table_columns(table, columns, str(path), delimited)
            # as training refuses it: a column of numbers is an id, not the texts (the model read none such)
            check_texts(table[names[0]].replace("", None), names[0], why="the model reads words, not ids")
        values = [_texts_of(table[c], c, path) for c in names]
        yield from _chunks(values[0] if len(names) == 1 else zip(*values, strict=True), chunk_size)


def _table_columns(table: pd.DataFrame, columns: Columns, where: str, delimited: bool) -> list[str]:
    """The column of texts, or a pair model's two columns (else the one known pair naming the table holds)."""
    text_col, saved_col, pair_col, saved_pair_col = columns
    names = [str(c) for c in table.columns]
    pair = pair_col or saved_pair_col
    if pair is not None and pair not in names:
        return list(known_pair(table, text_col, pair_col, saved_pair_col, where))
    named = given_or_saved(text_col, saved_col, names)
    return [predict_text_column(names, named, where, frame=table, first_line=delimited), *([pair] if pair else [])]


def _texts_of(values: pd.Series, column: str, path: Path) -> list[str]:
    """A column's cells as texts (numbers as their text; a table's gaps are "" already); a cell holding a
    list, a record or bytes is refused, as training refuses it."""
    check_text_cells(values, column, f" of {path}")
    return values.astype(str).tolist()


def _stdin() -> Iterable[str]:
    """Standard input as UTF-8 lines, strictly (whatever the locale), a leading byte-order mark dropped."""
    if sys.stdin is None:  # started with standard input closed (<&-)
        raise DataError("--input - reads standard input, which is closed; pipe texts in (one per line), or pass "
                        "--input FILE or the texts themselves")
    raw = getattr(sys.stdin, "buffer", None)
    if raw is None:  # already text (a StringIO in tests, or an embedding program's own stream)
        return sys.stdin
    return io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")


def _lines(handle: Iterable[str], pair_col: str | None) -> Iterator[str] | Iterator[tuple[str, str]]:
    """One item per line, blank lines included (they get an 'empty' record), so outputs line up with lines."""
    for number, line in enumerate(handle, start=1):
        line = line.rstrip("\r\n")
        if pair_col is None:
            yield line
            continue
        first, tab, second = line.partition("\t")
        if not tab and line.strip():
            raise DataError(f"line {number} has no tab; this sentence-pair model needs 'first<TAB>second' on "
                            "each line, or a CSV/JSONL file with both columns")
        yield first, second


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
