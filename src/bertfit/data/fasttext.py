"""fastText's labelled text format: one row per line, its labels first, each a ``__label__NAME`` word.

``__label__spam Win a prize now`` is a row of text "Win a prize now" labelled spam; a line with several
label words is a multi-label row, and then every row's labels are a list. Only a ``.txt`` file is read
this way; the file is only read. For prediction, :func:`labelled_lines` tells such a file from plain
texts and :func:`text_of` takes the label words off a line.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from bertfit.data.sniff import check_text_file
from bertfit.errors import DataError

PREFIX = "__label__"
LINE = re.compile(rf"((?:{PREFIX}\S*\s+)*{PREFIX}\S*)(?:\s+(.*))?", re.DOTALL)  # label words, then the text


def read_fasttext(path: Path) -> pd.DataFrame:
    """The rows of a fastText file as a frame of ``text`` and ``label`` (lists when any row has several)."""
    check_text_file(path)
    texts, labels = [], []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, line in enumerate(handle, 1):
            line = line.strip()
            if not line:
                continue
            found = LINE.fullmatch(line)
            if found is None:
                raise DataError(_not_fasttext(path, number, line))
            labels.append([word[len(PREFIX):] for word in found.group(1).split()])
            texts.append(found.group(2) or "")
    if not texts:
        raise DataError(f"{path} has no rows; a .txt file is read as fastText's format: one row per line, "
                        f"'{PREFIX}NAME' then the text")
    several = any(len(names) > 1 for names in labels)
    return pd.DataFrame({"text": texts, "label": labels if several else [names[0] for names in labels]})


def labelled_lines(path: Path) -> bool:
    """Whether every non-blank line of a text file starts with a label word, as training reads the file."""
    check_text_file(path)
    seen = False
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for line in handle:
            line = line.strip()
            if line and not LINE.fullmatch(line):
                return False
            seen = seen or bool(line)
    return seen


def text_of(line: str) -> str:
    """A fastText line's text without its label words (a line without them as it is)."""
    found = LINE.fullmatch(line.strip())
    return line if found is None else found.group(2) or ""


def _not_fasttext(path: Path, number: int, line: str) -> str:
    table = next((name for sep, name in (("\t", ".tsv"), (",", ".csv")) if sep in line), None)
    fix = (f"if it is a table, name it {table}" if table
           else f"put '{PREFIX}NAME ' before each text, or pass a .csv/.tsv/.jsonl/.parquet table")
    return (f"{path} line {number} does not start with a '{PREFIX}' word ({line[:40]!r}); a .txt file is read as "
            f"fastText's labelled format ('{PREFIX}NAME text' on each line); {fix}")
