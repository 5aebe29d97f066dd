"""Which columns hold the texts and the labels: the ones named, else the one obvious candidate.

A name given that is not a column, two candidates for one role, and a file whose first row of data
was taken for its header are each refused with one line naming the fix; so is, for prediction
(:func:`predict_text_column`), a lone column whose name is no recognisable column name: the first text of
a file without a header line. A column of label ids with a column of their names beside it (``label``,
``label_text``) trains on the names. Nothing here changes a frame.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

from bertfit.errors import DataError
from bertfit.labels import written_number

log = logging.getLogger(__name__)

TEXT_CANDIDATES = ("text", "sentence", "content", "review", "comment", "message", "body", "document",
                   "utterance", "question", "query", "url", "tweet",
                   "review_text", "reviewtext", "review_body", "comment_text")  # Amazon's and Jigsaw's names
LABEL_CANDIDATES = ("label", "labels", "class", "category", "target", "intent", "y")
# Names looked for only when no candidate above is a column, so a file that named its columns clearly
# never becomes ambiguous because it also has, say, a title.
FALLBACK_CANDIDATES = {
    "text": ("title", "headline", "description", "abstract", "article", "summary", "post", "sms", "email"),
    "label": ("sentiment", "polarity", "emotion", "topic", "tag", "genre", "stars", "rating"),
}
# Sentence-pair data sets name their two texts in a few common ways (GLUE, SNLI, Quora, QNLI, BoolQ, ...).
# Words a header of texts is made of ('review text', 'customer_comment', 'Tweets'), beside the names above.
HEADER_WORDS = frozenset({*TEXT_CANDIDATES, *FALLBACK_CANDIDATES["text"], "input", "raw", "clean", "cleaned", "full",
                          "original", "customer", "user", "client", "product", "news", "short", "long", "string",
                          "data", "feedback", "prompt", "response", "answer", "note", "phrase", "line", "txt", "doc",
                          "msg", "desc", "field", "col", "column", "name", "sample", "example"})
PAIR_CANDIDATES = (("text_a", "text_b"), ("sentence1", "sentence2"), ("premise", "hypothesis"),
                   ("question1", "question2"), ("question", "sentence"), ("question", "passage"),
                   ("text", "text_pair"))


def find_columns(frame: pd.DataFrame, text_col: str | None, label_col: str | None) -> tuple[str, str]:
    """The text and label columns: as given, else the one obvious candidate of each."""
    columns = [str(c) for c in frame.columns]
    if text_col is not None and text_col == label_col:
        raise DataError(f"text and label columns are both {text_col!r}; pass different --text-col and --label-col")
    others = [c for c in columns if c != text_col]
    alone = len(columns) == 1 and columns[0].strip().lower() not in LABEL_CANDIDATES  # a lone label: texts elsewhere?
    if label_col is None and (not others or alone):
        raise DataError(f"there is no label column: the only column is {columns[0] if columns else text_col!r}; add "
                        "a column of labels beside the texts (bertfit predict scores texts without labels)")
    try:  # a column named as the text is no label
        label = pick(others, label_col, LABEL_CANDIDATES, "label", frame=frame)
    except DataError:
        if label_col is None and text_col in columns and text_col.strip().lower() in LABEL_CANDIDATES:
            raise DataError(f"--text-col {text_col!r} is the label column (found by its name); if it holds the texts, "
                            f"pass --label-col too, with the column of class names (columns are {columns}); else "
                            "pass --text-col with the column of texts") from None
        raise
    if label_col is None:
        label = _named_labels(frame, label)
    text = pick([c for c in columns if c != label], text_col, TEXT_CANDIDATES, "text", frame=frame)
    return text, label


def _named_labels(frame: pd.DataFrame, label: str) -> str:
    """The column of names beside a column of label ids (``label`` and ``label_text``, as Hugging Face data sets
    often ship them), when each id has one name and each name one id: the model then predicts names."""
    names = next((c for c in frame.columns for suffix in ("_text", "_name")
                  if str(c).strip().lower() == f"{label.strip().lower()}{suffix}"), None)
    if names is None:
        return label
    pairs = frame[[label, names]].dropna().astype(str).drop_duplicates()
    if len(pairs) < 2 or pairs[label].duplicated().any() or pairs[names].duplicated().any() \
            or not pairs[label].str.strip().str.fullmatch(r"-?\d+").all():
        return label
    log.info("label column %r: the names of %r's ids (pass --label-col %s for the ids)", str(names), label, label)
    return str(names)


def find_pair_columns(frame: pd.DataFrame, text_col: str | None, pair_col: str | None) -> tuple[str, str] | None:
    """(first, second) text columns of a sentence-pair table: as given, else a known naming; None: single texts."""
    columns = [str(c) for c in frame.columns]
    if pair_col is not None:
        if pair_col not in columns:
            raise DataError(f"text pair column {pair_col!r} not found; columns are {columns}; "
                            "pass --text-pair-col with one of them")
        if text_col is None:
            raise DataError("--text-pair-col needs --text-col too (the first text of each pair)")
        return text_col, pair_col
    if text_col is None:
        found = [pair for pair in PAIR_CANDIDATES if all(name in columns for name in pair)]
        if len(found) == 1 and found[0] != ("text", "text_pair") or found == [("text", "text_pair")]:
            return found[0]
    return None


def pick(columns: list[str], given: str | None, candidates: tuple[str, ...], role: str,
          frame: pd.DataFrame | None = None) -> str:
    flag = f"--{role}-col"
    if given is not None:
        if given in columns:
            return given
        padded = [c for c in columns if c.strip() == given.strip()]  # ' label ' in a header written by hand
        if len(padded) == 1:
            return padded[0]
        near = [c for c in columns if c.strip().lower() == given.strip().lower()]
        hint = f"pass {flag} {near[0]}" if near else f"pass {flag} with one of them"
        raise DataError(f"{role} column {given!r} not found; columns are {columns}; {hint}")
    matches = [c for name in candidates for c in columns if c.strip().lower() == name]  # 'text', 'Text': ambiguous
    if not matches:
        matches = [c for name in FALLBACK_CANDIDATES.get(role, ()) for c in columns if c.strip().lower() == name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise DataError(f"more than one column could be the {role}: {matches}; pass {flag} NAME")
    if role == "text" and frame is not None and not _texts_in_the_index(frame):  # one string column left is the text
        strings = [c for c in columns if c in frame and _holds_words(frame[c])]
        if len(strings) == 1:
            return strings[0]
    if frame is not None and (first := _data_as_header(frame)):
        raise DataError(f"cannot tell which column holds the {role}: the first line looks like a row of data, not "
                        f"column names ({first!r} is also a value in its column); add a header line naming the "
                        f"columns in the file's order as its first line, here likely {_likely_header(frame)} "
                        "(separated as the rows are: a tab in a .tsv)")
    raise DataError(f"cannot tell which column holds the {role}; columns are {columns}; pass {flag} NAME"
                    + _texts_in_the_index(frame) + (_one_hot_hint(frame, columns) if role == "label" else ""))


def _one_hot_hint(frame: pd.DataFrame | None, columns: list[str]) -> str:
    """A hint for labels given as one 0/1 column each (Jigsaw's toxic, insult, ...; GoEmotions' raw release)."""
    flags = [c for c in columns if frame is not None and c in frame and _zero_one(frame[c])]
    if len(flags) < 2:
        return ""
    shown = ", ".join(repr(c) for c in flags[:4]) + (", ..." if len(flags) > 4 else "")
    return (f"; {len(flags)} columns ({shown}) hold only 0 and 1, one label each: --label-col one of them trains a "
            "yes/no model for it; for multi-label, put each row's labels in one column as a list of the names "
            "(a row with none needs a name such as 'none')")


def _zero_one(values: pd.Series) -> bool:
    given = values.dropna()
    return len(given) > 0 and set(given.astype(str).str.strip().unique()) <= {"0", "1", "0.0", "1.0", "True", "False"}


def _texts_in_the_index(frame: pd.DataFrame | None) -> str:
    """A hint for a table whose texts are its index (a Parquet file written from a DataFrame indexed by them):
    then no column is guessed to be the text."""
    if frame is None or isinstance(frame.index, pd.RangeIndex) or not holds_sentences(frame.index.to_series()):
        return ""
    return ("; or, if the texts are the table's index (as to_parquet writes a DataFrame's index), write the file "
            "again with df.reset_index().to_parquet(path, index=False), so that they are a column")


def _likely_header(frame: pd.DataFrame) -> str:
    """Names for a header-less table's columns in their order: the fewest distinct values are the labels,
    the longest cells the texts."""
    cells = [frame[c].dropna().astype(str) for c in frame.columns]
    if len(cells) < 2 or any(len(c) == 0 for c in cells):
        return "text,label"
    label = min(range(len(cells)), key=lambda i: cells[i].nunique())
    text = max((i for i in range(len(cells)) if i != label), key=lambda i: cells[i].str.len().mean())
    return ",".join("label" if i == label else "text" if i == text else f"column{i + 1}" for i in range(len(cells)))


def _data_as_header(frame: pd.DataFrame) -> str | None:
    """A column name that is also one of the column's values: a file without a header line, whose first row
    was taken for the names."""
    for name in frame.columns:
        values = frame[name]
        if pd.api.types.is_string_dtype(values) and str(name).strip() in set(values.dropna().astype(str).str.strip()):
            return str(name)
    return None


def predict_text_column(columns: list[str], named: str | None, where: str, frame: pd.DataFrame | None = None,
                        first_line: bool | None = None) -> str:
    """The column of texts to predict: the one named, else found by name or content, never a text taken for a header.

    ``first_line``: the names are the file's first line (CSV / TSV), which may be a text; None: judged by ``where``'s
    suffix.
    """
    text = pick(columns, named, TEXT_CANDIDATES, "text", frame=frame)
    if first_line is None:
        first_line = any(suffix.lower() in (".csv", ".tsv") for suffix in Path(where).suffixes[-2:])
    _refuse_a_text_as_header(columns, named, where, first_line)
    return text


def _refuse_a_text_as_header(columns: list[str], named: str | None, where: str, first_line: bool) -> None:
    """Texts to predict in one column found by itself, whose name is no column name: in a CSV / TSV, words with
    spaces between them not made of :data:`HEADER_WORDS` (the file may lack its header line, and its first text
    would go unscored; one word, as `complaint` or `Kommentar`, is taken for a name); in any file, one that reads
    like a text (four words or more, or a sentence's closing mark). A survey's question header reads so too,
    hence the way out in the message."""
    name = columns[0] if len(columns) == 1 else ""
    reads_like_a_text = len(name.split()) >= 4 or name.rstrip()[-1:] in (".", "!", "?")
    spaced_words = len(name.split()) > 1 and not _column_name(name)
    if named is None and name and (reads_like_a_text or first_line and spaced_words):
        raise DataError(f"{where}'s one column is named {name[:60]!r}, which reads like a text, not a column name: if "
                        "the file has no header line, its first line was taken as the header and that text would go "
                        "unscored; add a header line (text), or save the texts as a .txt file (one text per line), "
                        "or pass --text-col with that name if it is the column's name")


def _column_name(name: str) -> bool:
    """Up to three words of :data:`HEADER_WORDS` (plurals too), however joined: 'text', 'Review Text', 'tweet_text',
    'sentence1', 'text_a', 'customerComment'."""
    words = [word.lower() for word in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)]
    known = [word in HEADER_WORDS or word[:-1] in HEADER_WORDS or word[:-3] + "y" in HEADER_WORDS for word in words]
    return 0 < len(words) <= 3 and any(known) and not re.sub(r"[A-Za-z0-9_\-\s.]", "", name) and all(
        is_known or len(word) == 1 for word, is_known in zip(words, known, strict=True))


def _holds_words(values: pd.Series) -> bool:
    """A column of strings, not all of them numbers (a CSV's id column is read as strings too)."""
    if not pd.api.types.is_string_dtype(values):
        return False
    return not values.dropna().map(written_number).all()


def holds_sentences(values: pd.Series) -> bool:
    """Words with spaces between them in most cells: a text a user may have meant to train on (letters in
    them: "2018-07-07 22:09:11" is a time, not a sentence)."""
    cells = values.dropna().astype(str).str.strip()
    return _holds_words(values) and (cells.str.contains(" ") & cells.str.contains(r"[^\W\d_]")).mean() > 0.5
