"""JSON tables: JSON lines (.jsonl, .ndjson), and a .json file holding records or columns.

Every way such a file can be unreadable (a broken line, a value Python cannot read, a line that is no
object, a lone surrogate) becomes one DataError line naming the fix. Only reads; choosing columns
happens in ``data.columns``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

import bertfit.data.sniff as sniff
from bertfit.data.sniff import check_text_file
from bertfit.errors import DataError


def read_json_table(path: Path) -> pd.DataFrame:
    """JSON lines, or a .json file that is one document (:func:`_read_json_document`), as a frame."""
    check_text_file(path)
    if path.suffix.lower() == ".json":
        whole = _read_json_document(path)
        if whole is not None:
            return whole
    records = []
    with path.open(encoding="utf-8-sig") as handle:  # -sig: a leading byte-order mark is not JSON
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
                raise DataError(f"{path} line {number} {_unparsable(err)}; fix or delete that line") from None
            if "\\ud" in line.lower() and sniff.SURROGATE.search(json.dumps(record, ensure_ascii=False)):
                raise DataError(f"{path} line {number} holds a lone surrogate escape (\\ud800 to \\udfff without its "
                                "other half), which is no character; write whole characters, or delete that line")
            if not isinstance(record, dict):
                raise DataError(
                    f"{path} line {number} is a JSON {type(record).__name__}, not an object; "
                    'each line must look like {"text": "...", "label": "..."}'
                )
            records.append(record)
    if not records:
        raise DataError(f"{path} has no JSON lines; each line must be an object with a text and a label")
    return pd.DataFrame.from_records(records)


def _read_json_document(path: Path) -> pd.DataFrame | None:
    """A .json file that is one JSON document: an array of records, or an object of columns; None for JSON lines.

    The shapes pandas and Hugging Face write: ``to_json(orient="records")`` (an array of objects),
    ``{"text": [...], "label": [...]}`` (lists of one length) and pandas' default ``{"text": {"0": ...}}``;
    also an array of records under one key (``{"data": [...]}``).
    """
    with path.open(encoding="utf-8-sig") as handle:
        content = handle.read()
    try:
        document = json.loads(content)
    except json.JSONDecodeError:
        return None  # JSON lines (several documents), or broken: the line reader names the line
    except (ValueError, RecursionError) as err:
        raise DataError(f"{path} {_unparsable(err)}; fix that value") from None
    if isinstance(document, list):
        bad = next((i for i, item in enumerate(document) if not isinstance(item, dict)), None)
        if bad is not None:
            raise DataError(f"{path} is a JSON array whose item {bad} is a {type(document[bad]).__name__}, not an "
                            'object; it must hold records such as {"text": "...", "label": "..."}')
        if not document:
            raise DataError(f"{path} is an empty JSON array; it needs records with a text and a label")
        return pd.DataFrame.from_records(document)
    if isinstance(document, dict):
        document = _pandas_shapes(document)
        if isinstance(document, pd.DataFrame):
            return document
    if isinstance(document, dict) and document and all(map(_is_records, document.values())):
        if len(document) > 1:
            tables = ", ".join(map(repr, document))
            raise DataError(f"{path} holds several tables ({tables}); bertfit reads one per file: write each to "
                            "its own file (train.jsonl, test.jsonl in one folder are read as splits)")
        return pd.DataFrame.from_records(next(iter(document.values())))  # {"data": [records]}
    if isinstance(document, dict) and document and all(isinstance(v, list | dict) for v in document.values()):
        lengths = {len(v) for v in document.values()}
        if len(lengths) > 1:
            raise DataError(f"{path} is a JSON object of columns of different lengths ({sorted(lengths)}); "
                            "every column needs one value per row")
        return pd.DataFrame(document)
    return None  # one object of plain values: a single JSON line


def _pandas_shapes(document: dict[str, Any]) -> dict[str, Any] | pd.DataFrame:
    """The table in pandas' other JSON shapes (``orient="split"``, ``orient="index"``) or under one key beside
    plain values (``{"version": "1", "data": [records]}``); else the document as it is."""
    if set(document) >= {"columns", "data"} and set(document) <= {"columns", "data", "index", "index_names",
                                                                    "column_names", "schema"}:
        columns, rows = document["columns"], document["data"]
        if isinstance(columns, list) and isinstance(rows, list) and all(isinstance(r, list) for r in rows):
            return pd.DataFrame(rows, columns=[str(c) for c in columns])
    tables = [key for key, value in document.items() if _is_records(value)]
    plain = all(isinstance(v, str | int | float | bool) or v is None for k, v in document.items() if k not in tables)
    if len(tables) == 1 and len(document) > 1 and plain:
        return pd.DataFrame.from_records(document[tables[0]])
    rows = list(document.values())
    if rows and all(isinstance(r, dict) for r in rows) and all(str(k).isdigit() for k in document) \
            and not any(str(k).isdigit() for k in rows[0]):
        return pd.DataFrame.from_dict(document, orient="index")  # row index -> {column: value}
    return document


def _unparsable(err: ValueError | RecursionError) -> str:
    """Why JSON text does not read, in words: broken, nested past Python's limit, or a number too long."""
    if isinstance(err, json.JSONDecodeError):
        return f"is not valid JSON ({err.msg})"
    if isinstance(err, RecursionError):
        return "nests lists or objects too deeply to read"
    if "digits" in str(err):  # Python refuses to read an integer this long
        return (f"holds a number of more than {sys.get_int_max_str_digits()} digits, too long to read (write it in "
                "quotes, as a string)")
    return f"cannot be read as JSON ({(str(err).strip().splitlines() or ['no message'])[0]})"


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)
