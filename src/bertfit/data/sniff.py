"""What a data file is, by its first bytes and its suffix: UTF-8 text, something else, or a compressed table.

:func:`check_text_file` refuses UTF-16, compressed and binary files before any parser sees them, naming
what the file is and how to convert it. :func:`decompressed` gives a compressed table (``data.csv.gz``)
as a plain file in a temporary folder, so it is read like any other; the file itself is only read.
Nothing here parses tables.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import shutil
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


def check_text_file(path: Path) -> None:
    """Refuse a compressed, UTF-16 or binary file by its first bytes, before any parser sees it."""
    with path.open("rb") as handle:
        head = handle.read(8192)
    for magic, what, fix in NOT_TEXT:
        if head.startswith(magic):
            raise DataError(f"{path} is {what}, not UTF-8 text; {fix}")
    if b"\x00" in head:
        raise DataError(f"{path} looks binary (NUL bytes), not a text table; pass a CSV/TSV/JSONL/Parquet file")


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
