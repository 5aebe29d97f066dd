"""Where the commands' results go: the summary line on stdout (:func:`print_result`), and the records of
`bertfit predict` on stdout or in ``--output FILE``: JSON lines, a JSON array (`.json`), or the table its
suffix names.

A `.csv`, `.tsv` or `.parquet` name gets a table of one row per input text: the text (and its pair),
the label (multi-label: ``labels``), the score, ``empty``, and one ``probability:<label>`` column per
class. Any other suffix bertfit cannot write (`.xlsx`) is refused before the model loads, so a file
is never written in a format its name does not say. The records themselves come from
``TextClassifier.predict_records``; this module only lays them out and writes them through
``staging`` (beside the destination, renamed into place when complete). A write to stdout that
fails (``> /dev/full``) is one error line that says what was saved and what was lost.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bertfit.errors import OutputError, UsageError
from bertfit.staging import shown, staged_file, staged_path

JSON_LINES = ("", ".jsonl", ".ndjson", ".txt")
JSON_ARRAY = ".json"  # a .json file is read as one document: a JSON array of the records, not lines
DELIMITERS = {".csv": ",", ".tsv": "\t"}
TABLES = (*DELIMITERS, ".parquet")


def check_suffix(path: Path) -> None:
    """Refuse an ``--output`` whose suffix names a format predict does not write."""
    suffix = path.suffix.lower()
    if suffix not in (*JSON_LINES, JSON_ARRAY, *TABLES):
        raise UsageError(f"--output {shown(path)}: bertfit predict writes JSON lines (.jsonl), a JSON array (.json), "
                         f"CSV (.csv), TSV (.tsv) or Parquet (.parquet), not {suffix}; name the output with one of "
                         "those suffixes")


def flat(record: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """One record as a table row: the probabilities one column per class, `empty` always present."""
    row = {key: value for key, value in record.items() if key not in ("probabilities", "empty")}
    row["empty"] = bool(record.get("empty", False))
    probabilities = record.get("probabilities") or {}
    row.update({f"probability:{name}": probabilities.get(name) for name in names})
    return row


class StdoutError(OutputError):
    """Standard output refused a write (a full disk behind ``> FILE``, ``> /dev/full``)."""


def stdout_error(err: OSError, rest: str) -> StdoutError:
    """The error line for a failed write to stdout; ``rest`` says what was saved or lost, and the fix."""
    return StdoutError(f"cannot write to standard output ({err.strerror or err}); {rest}")


def print_result(summary: dict[str, Any], saved: str | None = None) -> None:
    """The command's JSON summary line on stdout, flushed now so that a failed write is caught here.

    ``saved``: what the command has saved (``the model in m``), which the error line then names.
    """
    try:
        print(json.dumps(summary, default=str), flush=True)
    except BrokenPipeError:
        raise
    except OSError as err:
        kept = f"{saved} was saved all the same; only its summary line is lost" if saved else "the result is lost"
        raise stdout_error(err, f"{kept}: free space where standard output goes, or send it elsewhere") from None


@contextlib.contextmanager
def record_sink(path: Path | None, names: list[str]) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """A function that writes a batch of records to ``path`` (stdout when None), in the format its suffix names."""
    suffix = path.suffix.lower() if path is not None else ""
    if path is None and sys.stdout is None:  # started with standard output closed (>&-): print() writes nowhere
        raise StdoutError("standard output is closed, so the predictions would go nowhere; pass --output FILE, or "
                          "run with standard output open")
    if path is None:
        yield _stdout_lines
        _stdout_lines(None)
    elif suffix in JSON_LINES:
        with staged_file(path) as handle:
            yield lambda records: handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    elif suffix == JSON_ARRAY:
        with staged_file(path) as handle, _json_array(handle) as write:
            yield write
    elif suffix in DELIMITERS:
        with staged_file(path) as handle:
            yield _delimited(handle, DELIMITERS[suffix], names)
    else:
        with staged_path(path) as staging, _parquet(staging, names) as write:
            yield write


def _stdout_lines(records: list[dict[str, Any]] | None) -> None:
    """Records as JSON lines on stdout; None: flush what is buffered (the last lines fail there, if at all)."""
    try:
        if records is None:
            sys.stdout.flush()
        else:
            sys.stdout.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    except BrokenPipeError:
        raise
    except OSError as err:
        raise stdout_error(err, LOST) from None


LOST = "the predictions were not all written: free space where standard output goes, or pass --output FILE"


@contextlib.contextmanager
def _json_array(handle: Any) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    """Records written as the items of one JSON array, one a line; the array is closed when the block ends."""
    count = 0

    def write(records: list[dict[str, Any]]) -> None:
        nonlocal count
        for record in records:
            handle.write(("[\n" if count == 0 else ",\n") + json.dumps(record, ensure_ascii=False))
            count += 1

    yield write
    handle.write("\n]\n" if count else "[]\n")


def _delimited(handle: Any, delimiter: str, names: list[str]) -> Callable[[list[dict[str, Any]]], None]:
    writer: csv.DictWriter | None = None

    def write(records: list[dict[str, Any]]) -> None:
        nonlocal writer
        rows = [flat(record, names) for record in records]
        for row in rows:
            if isinstance(row.get("labels"), list):  # multi-label: one cell, read back with json.loads
                row["labels"] = json.dumps(row["labels"], ensure_ascii=False)
        if writer is None and rows:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter, lineterminator="\n")
            writer.writeheader()
        if writer is not None:
            writer.writerows(rows)

    return write


@contextlib.contextmanager
def _parquet(staging: Path, names: list[str]) -> Iterator[Callable[[list[dict[str, Any]]], None]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None

    def write(records: list[dict[str, Any]]) -> None:
        nonlocal writer
        rows = [flat(record, names) for record in records]
        if not rows:
            return
        if writer is None:
            schema = pa.schema([(key, _arrow_type(key)) for key in rows[0]])
            writer = pq.ParquetWriter(str(staging), schema)
        writer.write_table(pa.Table.from_pylist(rows, schema=writer.schema))

    try:
        yield write
    finally:
        if writer is not None:
            writer.close()


def _arrow_type(key: str) -> Any:
    import pyarrow as pa

    if key == "labels":
        return pa.list_(pa.string())
    if key == "score" or key.startswith("probability:"):
        return pa.float64()
    return pa.bool_() if key == "empty" else pa.string()
