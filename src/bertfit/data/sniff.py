"""What a data file is, by its first bytes and its suffix: UTF-8 text, something else, or a compressed table.

:func:`check_text_file` refuses UTF-16, compressed and binary files before any parser sees them, naming
what the file is and how to convert it; a pipe or a device, a table separated otherwise than its suffix
says, and JSON named as a CSV are refused too. :func:`decompressed` gives a compressed table (``data.csv.gz``)
as a plain file in a temporary folder, so it is read like any other; the file itself is only read.
Nothing here parses tables.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import lzma
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bertfit.errors import DataError

# The first bytes of files that are often passed by mistake: what they are, and what to do instead.
NOT_TEXT = (
    (b"\xff\xfe", "UTF-16 text (byte 0xff at offset 0 begins its byte-order mark, as Excel's 'Unicode text' "
                  "writes)", "re-save it as UTF-8"),
    (b"\xfe\xff", "UTF-16 text (byte 0xfe at offset 0 begins its byte-order mark)", "re-save it as UTF-8"),
    (b"\x1f\x8b", "gzip-compressed", "gunzip it first"),
    (b"PK\x03\x04", "a zip archive (an .xlsx workbook is one too)", "unzip it, or save the sheet as CSV"),
)
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}  # suffix -> how to open it
# Half of a UTF-16 surrogate pair on its own: JSON can spell one ("\\ud800"), but it is no character.
SURROGATE = re.compile("[\ud800-\udfff]")


def check_text_file(path: Path) -> None:
    """Refuse a compressed, UTF-16 or binary file by its first bytes, before any parser sees it."""
    with path.open("rb") as handle:
        head = handle.read(8192)
    for magic, what, fix in NOT_TEXT:
        if head.startswith(magic):
            raise DataError(f"{path} is {what}, not UTF-8 text; {fix}")
    if b"\x00" in head:
        raise DataError(f"{path} holds NUL bytes, so it is not text (a binary file, or UTF-16 text without its "
                        "byte-order mark); save the texts as UTF-8: one per line, or a CSV/TSV/JSONL/Parquet table")


def refuse_a_stream(path: Path, fix: str) -> None:
    """Refuse a path that is neither a file nor a folder (``<(cmd)`` and a piped ``/dev/stdin`` are pipes,
    ``/dev/null`` a device): bertfit reads a file by its suffix, and more than once."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise DataError(f"{path} is {kind}, not a regular file; {fix}")


def check_header_line(path: Path, header_line: str, sep: str) -> None:
    """The first line of a .csv / .tsv: not JSON, and separated by ``sep``."""
    _refuse_json_in_a_table(path, header_line)
    _check_separated_by(path, header_line, sep)


def _refuse_json_in_a_table(path: Path, first_line: str) -> None:
    """A first line that is a JSON object (JSON lines) or opens an array of them (a JSON document): read as a
    table, every line would be one text of JSON."""
    line = first_line.strip()
    if not line.startswith(("{", "[")):
        return
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        raise DataError(f"{path} holds JSON lines (its first line is a JSON object), not a {path.suffix} table; "
                        "rename it to .jsonl")
    if line in ("[", "{") or line.startswith(("[{", '{"')):
        raise DataError(f"{path} holds a JSON document (its first line is {line[:40]!r}), not a {path.suffix} "
                        "table; rename it to .json")


def _check_separated_by(path: Path, header_line: str, sep: str) -> None:
    """A header with no ``sep`` but another separator read as one column: say so, not 'no label column'."""
    if sep in header_line:
        return
    for other, name in (("\t", "tabs"), (",", "commas"), (";", "semicolons"), ("|", "pipes")):
        if other != sep and len([part for part in header_line.split(other) if part.strip()]) > 1:
            fix = ("rename it to .tsv" if other == "\t" else "rename it to .csv" if other in ",;"
                   else "re-save it with commas (.csv) or tabs (.tsv)")
            raise DataError(
                f"{path} reads as one column, {header_line.strip()!r}: it is separated by {name} ({other!r}), "
                f"not the {'tabs' if sep == chr(9) else 'commas'} its suffix says; {fix}"
            )


def compressed_table(path: Path, suffixes: tuple[str, ...]) -> bool:
    """A name such as ``train.csv.gz``: a table bertfit reads, compressed in a way it can undo."""
    return path.suffix.lower() in COMPRESSED and Path(path.stem).suffix.lower() in suffixes


@contextlib.contextmanager
def decompressed(path: Path) -> Iterator[Path]:
    """``path`` decompressed into a temporary folder, under its name without the compression suffix;
    a DataError raised while it is read names ``path``, not the temporary copy."""
    with tempfile.TemporaryDirectory(prefix="bertfit-") as folder:
        plain = Path(folder) / path.stem
        try:
            with COMPRESSED[path.suffix.lower()](path, "rb") as source, plain.open("wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
        except (OSError, EOFError, lzma.LZMAError) as err:
            raise DataError(f"cannot decompress {path} ({err}); check the file, or decompress it yourself and pass "
                            "the plain file") from None
        try:
            yield plain
        except DataError as err:
            raise DataError(str(err).replace(str(plain), str(path))) from None
