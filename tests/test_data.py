"""Data: reading every format, one-line errors that name a fix, columns, cleaning, splits, leaks, prepare.

Pure and fast: small tables written by each test under tmp_path; no model, no torch.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertfit.config import DataConfig
from bertfit.data import cleaning as data
from bertfit.data import reading
from bertfit.errors import DataError
from bertfit.labels import normalise
from conftest import emotion_lists, expect_data_error, labelled

# A few awkward texts: a comma, a semicolon, quotes, a tab-free unicode string.
TABLE = pd.DataFrame({
    "text": ["refund my card, please", "the app; it crashes", 'he said "hi"', "café crème", "plain words"],
    "label": ["billing", "tech", "sales", "billing", "tech"],
})


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` in the format its suffix names (a '.csv' whose stem ends in 'semicolon' uses ';')."""
    suffix = path.suffix
    if suffix == ".csv":
        frame.to_csv(path, index=False, sep=";" if path.stem.endswith("semicolon") else ",")
    elif suffix == ".tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif suffix in (".jsonl", ".json", ".ndjson"):
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(suffix)
    return path


# ---------------------------------------------------------------------------------------------
# read_table


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.jsonl", "t.json", "t.parquet", "t_semicolon.csv", "T.CSV"])
def test_read_table_round_trips(tmp_path, name):
    path = tmp_path / name
    write_table(TABLE, path.with_suffix(path.suffix.lower())).rename(path)
    read = data.read_table(path)
    assert list(read.columns) == ["text", "label"]
    assert read.to_dict("records") == TABLE.to_dict("records")


@pytest.mark.parametrize(("name", "compress"), [("t.csv.gz", gzip.compress), ("t.tsv.bz2", bz2.compress),
                                              ("t.jsonl.xz", lzma.compress), ("t.parquet.gz", gzip.compress),
                                              ("t.ndjson", None)])
def test_compressed_tables_and_ndjson_read_like_plain_ones(tmp_path, name, compress):
    inner = name.removesuffix(".gz").removesuffix(".bz2").removesuffix(".xz")
    plain = write_table(TABLE, tmp_path / (f"plain-{inner}" if compress else name))
    if compress:
        (tmp_path / name).write_bytes(compress(plain.read_bytes()))
    assert data.read_table(tmp_path / name).to_dict("records") == TABLE.to_dict("records")


def test_a_folder_of_compressed_splits_reads_them_by_name(tmp_path):
    (tmp_path / "train.csv.gz").write_bytes(gzip.compress(labelled({"a": 10, "b": 10}).to_csv(index=False).encode()))
    write_table(labelled({"a": 3, "b": 3}, prefix="held out "), tmp_path / "test.csv")
    prepared = data.prepare(tmp_path)
    assert len(prepared.test) == 6 and len(prepared.train) + len(prepared.validation) == 20


def test_fasttext_lines_train_as_labelled_rows_single_and_multi_label(tmp_path):
    rows = labelled({"billing": 10, "tech": 10})
    (tmp_path / "train.txt").write_text("".join(f"__label__{label}  {text}\n\n" for text, label in
                                                zip(rows["text"], rows["label"], strict=True)))
    prepared = data.prepare(tmp_path / "train.txt")
    assert prepared.labels.names == ("billing", "tech") and not prepared.multi_label
    assert sorted(pd.concat(prepared.splits().values())["text"]) == sorted(rows["text"])  # the text, no label word
    (tmp_path / "multi.txt.gz").write_bytes(gzip.compress("".join(
        f"__label__a __label__b text {i}\n" if i % 3 == 0 else f"__label__{'ab'[i % 2]} text {i}\n"
        for i in range(60)).encode()))
    read = data.read_table(tmp_path / "multi.txt.gz")
    assert read["label"].tolist()[:3] == [["a", "b"], ["b"], ["a"]] and read["text"][0] == "text 0"
    assert data.prepare(tmp_path / "multi.txt.gz").multi_label


def test_a_txt_that_is_not_fasttext_is_refused_naming_the_format_and_the_table_suffix(tmp_path):
    (tmp_path / "sms.txt").write_text("ham\tGo until jurong point\nspam\tWin a prize\n")
    expect_data_error(lambda: data.read_table(tmp_path / "sms.txt"), "line 1 does not start with a '__label__'",
                      "fastText", "name it .tsv")
    (tmp_path / "notes.txt").write_text("__label__a fine\njust a sentence\n")
    expect_data_error(lambda: data.read_table(tmp_path / "notes.txt"), "line 2", "put '__label__NAME ' before")
    (tmp_path / "blank.txt").write_text("\n\n")
    expect_data_error(lambda: data.read_table(tmp_path / "blank.txt"), "has no rows")


def test_a_broken_compressed_table_names_the_file_and_errors_inside_it_name_it_too(tmp_path):
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"text,label\na,b\n" * 50)[:40])
    expect_data_error(lambda: data.read_table(tmp_path / "cut.csv.gz"), "cannot decompress", "cut.csv.gz")
    (tmp_path / "ragged.csv.gz").write_bytes(gzip.compress(b"text,label\nhello, world,a\nc,d\n"))
    message = expect_data_error(lambda: data.read_table(tmp_path / "ragged.csv.gz"), "line 2 has 3 fields")
    assert str(tmp_path / "ragged.csv.gz") in message and "bertfit-" not in message  # not the temporary copy


def test_semicolon_csv_is_detected_even_with_commas_in_texts(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("text;label\nhello, world;a\none, two, three;b\n", encoding="utf-8")
    read = data.read_table(path)
    assert read.to_dict("records") == [{"text": "hello, world", "label": "a"},
                                       {"text": "one, two, three", "label": "b"}]


@pytest.mark.parametrize("first", ["sep=;\n", "\ufeffsep=;\r\n"])
def test_excel_s_sep_line_names_the_delimiter_and_is_not_the_header(tmp_path, first):
    path = tmp_path / "export.csv"
    path.write_text(first + "text;label\nrefund, please;billing\napp crash;tech\n", encoding="utf-8")
    assert data.read_table(path).to_dict("records") == [{"text": "refund, please", "label": "billing"},
                                                        {"text": "app crash", "label": "tech"}]
    path.write_text("sep=;\ntext;label\nrefund;please;billing\n", encoding="utf-8")
    expect_data_error(lambda: data.read_table(path), "line 3 has 3 fields")


def test_a_title_line_above_the_header_is_named_as_a_possible_cause(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text("# exported by helpdesk\ntext,label\nrefund,billing\n", encoding="utf-8")
    expect_data_error(lambda: data.read_table(path), "line 2 has 2 fields but the header names 1",
                      "if the first line ('# exported by helpdesk') is a title or a comment", "delete it")


def test_csv_with_utf8_bom_reads_clean_column_names(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\nhi,a\n")
    assert list(data.read_table(path).columns) == ["text", "label"]


def test_jsonl_with_utf8_bom_reads_like_csv_does(tmp_path):
    path = tmp_path / "notepad.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"text": "hi", "label": "a"}\n{"text": "yo", "label": "b"}\n')
    assert data.read_table(path).to_dict("records") == [{"text": "hi", "label": "a"}, {"text": "yo", "label": "b"}]


@pytest.mark.parametrize("content", [
    '[{"text": "hi", "label": "a"}, {"text": "yo", "label": "b"}]',  # to_json(orient="records")
    '{"text": ["hi", "yo"], "label": ["a", "b"]}',  # a dict of lists (Dataset.to_dict())
    '{"text": {"0": "hi", "1": "yo"}, "label": {"0": "a", "1": "b"}}',  # pandas' to_json() default
    '\n  [{"text": "hi", "label": "a"},\n   {"text": "yo", "label": "b"}]\n',  # pretty-printed
    '{"data": [{"text": "hi", "label": "a"}, {"text": "yo", "label": "b"}]}',  # records under one key
])
def test_json_documents_read_like_json_lines(tmp_path, content):
    path = tmp_path / "export.json"
    path.write_text(content, encoding="utf-8")
    assert data.read_table(path).to_dict("records") == [{"text": "hi", "label": "a"}, {"text": "yo", "label": "b"}]


def test_a_first_text_longer_than_the_csv_modules_field_limit_is_read(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(f"text,label\n{'word ' * 40_000},a\nshort,b\n", encoding="utf-8")
    assert data.read_table(path)["label"].tolist() == ["a", "b"]


def test_a_trailing_empty_field_on_every_row_is_not_a_shifted_column(tmp_path):
    path = tmp_path / "trailing.csv"
    path.write_text("text,label,\nhi,a,\nyo,b,\n", encoding="utf-8")
    assert data.read_table(path)[["text", "label"]].to_dict("records") == [{"text": "hi", "label": "a"},
                                                                           {"text": "yo", "label": "b"}]


# (file name, content: bytes, "dir" for a folder, None for nothing there, fragments the message must hold)
BAD_FILES = {
    "missing": ("nothing.csv", None, ["file not found", "nothing.csv", "check the path"]),
    "folder": ("a_folder.csv", "dir", ["is a folder", "pass a file"]),
    "unknown suffix": ("data.xlsx", b"PK\x03\x04", ["unknown data format '.xlsx'", "use one of .csv, .tsv"]),
    "no suffix": ("data", b"text,label\na,b\n", ["'(no suffix)'", "use one of"]),
    "empty": ("empty.csv", b"", ["is empty", "needs a header row"]),
    "empty jsonl": ("empty.jsonl", b"", ["is empty", "needs a header row"]),
    "blank lines jsonl": ("blank.jsonl", b"\n  \n", ["has no JSON lines", "each line must be an object"]),
    "latin1 row": ("latin.csv", b"text,label\ncaf\xe9,a\n", ["not UTF-8", "byte 0xe9 at offset 14",
                                                              "re-save it as UTF-8", "iconv -f cp1252"]),
    "latin1 header": ("latin.tsv", b"t\xe9xt\tlabel\na\tb\n", ["not UTF-8", "byte 0xe9 at offset 1",
                                                                "re-save it as UTF-8"]),
    "latin1 jsonl": ("latin.jsonl", b'{"text": "caf\xe9", "label": "a"}\n', ["not UTF-8", "byte 0xe9 at offset 13",
                                                                           "re-save it as UTF-8"]),
    "utf-16": ("wide.csv", "text,label\na,b\n".encode("utf-16"), ["not UTF-8", "byte 0xff at offset 0",
                                                                   "re-save it as UTF-8"]),
    "NUL bytes": ("binary.csv", b"text\x00\x01,label\x00\nx,y\n", ["holds NUL bytes, so it is not text",
                                                                   "save the texts as UTF-8"]),
    "broken jsonl line": ("broken.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
                          ["line 2 is not valid JSON", "fix or delete that line"]),
    "jsonl array line": ("array.jsonl", b'{"text": "a", "label": "x"}\n\n["b", "y"]\n',
                         ["line 3 is a JSON list, not an object", 'each line must look like {"text"']),
    "jsonl number line": ("number.jsonl", b"42\n", ["line 1 is a JSON int, not an object"]),
    "duplicated columns": ("dup.csv", b"text,label,text\na,b,c\n",
                           ["names column(s) ['text'] more than once", "rename them so each is unique"]),
    "duplicated columns tsv": ("dup.tsv", b"label\ttext\tlabel\ttext\na\tb\tc\td\n",
                               ["names column(s) ['label', 'text'] more than once", "rename them"]),
    "ragged rows": ("ragged.csv", b"text,label\na,b\nc,d,e,f\n",
                    ["line 3 has 4 fields but the header names 2", "must be in double quotes"]),
    "ragged first row": ("first.csv", b"text,label\nhello, world,a\nc,d\n",
                         ["line 2 has 3 fields but the header names 2", "a comma must be in double quotes"]),
    "ragged first row tsv": ("first.tsv", b"text\tlabel\nhello\tworld\ta\nc\td\n",
                             ["line 2 has 3 fields", "a text holding a tab must be in double quotes"]),
    "json array of numbers": ("numbers.json", b"[1, 2]", ["JSON array whose item 0 is a int, not an object"]),
    "empty json array": ("empty.json", b"[]", ["is an empty JSON array"]),
    "json columns of two lengths": ("columns.json", b'{"text": ["a", "b"], "label": ["x"]}',
                                    ["columns of different lengths ([1, 2])"]),
    "json of two tables": ("splits.json",
                           b'{"train": [{"text": "a", "label": "x"}], "test": [{"text": "b", "label": "y"}]}',
                           ["holds several tables ('train', 'test')", "write each to its own file"]),
    "not parquet": ("fake.parquet", b"text,label\na,b\n", ["cannot read", "as Parquet", "check the file"]),
    "jsonl nested too deeply": ("deep.jsonl", b'{"text": "a", "label": "x"}\n{"text": ' + b"[" * 100_000
                                + b"]" * 100_000 + b"}\n", ["deep.jsonl line 2", "too deeply", "fix or delete"]),
    "json nested too deeply": ("deep.json", b"[" * 100_000 + b"]" * 100_000, ["deep.json", "too deeply"]),
    "jsonl number too long": ("long.jsonl", b'{"text": "a", "label": ' + b"9" * 5000 + b"}\n",
                              ["long.jsonl line 1", "digits", "in quotes"]),
    "jsonl lone surrogate": ("half.jsonl", b'{"text": "ok", "label": "x"}\n{"text": "a \\ud800 b", "label": "x"}\n',
                             ["half.jsonl line 2", "lone surrogate", "whole characters"]),
    "jsonl lone surrogate in a key": ("key.jsonl", b'{"\\uDC80": "a", "label": "x"}\n', ["line 1", "lone surrogate"]),
    "json lines named csv": ("lines.csv", b'{"text": "a", "label": "x"}\n', ["holds JSON lines",
                                                                          "rename it to .jsonl"]),
    "json array named tsv": ("array.tsv", b'[{"text": "a", "label": "x"}]\n', ["holds a JSON document",
                                                                            "rename it to .json"]),
    "json document named csv": ("pretty.csv", b'[\n  {"text": "a", "label": "x"}\n]\n', ["rename it to .json"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_read_table_errors_are_one_line_and_name_a_fix(tmp_path, case):
    name, content, fragments = BAD_FILES[case]
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    expect_data_error(lambda: data.read_table(path), *fragments)


def test_a_whole_surrogate_pair_in_json_is_one_character_and_reads(tmp_path):
    path = tmp_path / "smile.jsonl"
    path.write_text('{"text": "smile \\ud83d\\ude00", "label": "x"}\n', encoding="utf-8")
    assert data.read_table(path)["text"].tolist() == ["smile \U0001f600"]


@pytest.mark.parametrize("column", ["text", "label"])
def test_a_lone_surrogate_from_python_is_refused_naming_the_row(column):
    rows = labelled(THREE).astype(object)  # an Arrow string column cannot hold one
    rows.loc[5, column] = "half \ud800 a character"
    expect_data_error(lambda: data.prepare(rows), f"column {column!r}", "lone surrogate at row 5", "whole characters")
    if column == "text":
        expect_data_error(lambda: data.check_text_cells(rows["text"], "text", " of new.csv"), "row 5")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_pipe_or_a_device_is_named_as_such_not_as_missing(tmp_path):
    pipe = tmp_path / "data.csv"
    os.mkfifo(pipe)  # never opened: that would wait for a writer
    expect_data_error(lambda: data.read_table(pipe), "is a pipe, not a regular file", "with a suffix")
    expect_data_error(lambda: list(reading.iter_texts(pipe)), "is a pipe", "--input -")
    expect_data_error(lambda: list(reading.iter_texts(os.devnull)), "is a device", "--input -")
    expect_data_error(lambda: list(reading.iter_texts(tmp_path / "nope.txt")), "input file not found")


def test_errors_are_value_errors_with_exit_code_2(tmp_path):
    with pytest.raises(ValueError) as info:
        data.read_table(tmp_path / "nothing.csv")
    assert isinstance(info.value, DataError) and info.value.exit_code == 2


@pytest.mark.parametrize("name", ["header.csv", "header.tsv", "header.parquet"])
def test_header_only_file_reads_empty_and_prepare_says_no_rows(tmp_path, name):
    path = write_table(TABLE.iloc[:0], tmp_path / name)
    assert data.read_table(path).empty
    expect_data_error(lambda: data.prepare(path), "has a header but no rows", "add labelled rows")


# ---------------------------------------------------------------------------------------------
# find_columns


def frame_with(*columns: str) -> pd.DataFrame:
    return pd.DataFrame({c: ["a", "b"] for c in columns})


@pytest.mark.parametrize(
    "columns, expected",
    [
        (("text", "label"), ("text", "label")),
        (("label", "id", "text"), ("text", "label")),
        (("Text", "Label"), ("Text", "Label")),
        (("review", "category"), ("review", "category")),
        (("SENTENCE", "y"), ("SENTENCE", "y")),
        (("utterance", "intent", "speaker_id"), ("utterance", "intent")),
    ],
)
def test_find_columns_detects_the_obvious_pair(columns, expected):
    assert data.find_columns(frame_with(*columns), None, None) == expected


def test_find_columns_uses_explicit_flags_over_candidates():
    frame = frame_with("text", "label", "review", "stars")
    assert data.find_columns(frame, "review", "stars") == ("review", "stars")


def test_find_columns_with_only_one_flag_detects_the_other():
    assert data.find_columns(frame_with("notes", "text", "stars"), None, "stars") == ("text", "stars")


@pytest.mark.parametrize(
    "text_col, label_col, fragments",
    [
        (None, "label", ["label column 'label' not found", "columns are ['Text', 'Label']", "pass --label-col Label"]),
        ("TEXT", None, ["text column 'TEXT' not found", "pass --text-col Text"]),
        (None, "stars", ["label column 'stars' not found", "columns are ['Text', 'Label']",
                         "pass --label-col with one of them"]),
    ],
)
def test_find_columns_missing_flag_names_columns_and_near_miss(text_col, label_col, fragments):
    expect_data_error(lambda: data.find_columns(frame_with("Text", "Label"), text_col, label_col), *fragments)


def test_label_ids_with_their_names_beside_them_train_on_the_names():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": [0, 1, 0], "label_text": ["neg", "pos", "neg"]})
    assert data.find_columns(frame, None, None) == ("text", "label_text")
    assert data.find_columns(frame, None, "label") == ("text", "label")  # named: as named
    unclear = frame.assign(label_text=["neg", "pos", "pos"])  # id 0 with two names: not their names
    assert data.find_columns(unclear, None, None) == ("text", "label")


def test_amazon_reviews_train_on_the_review_not_its_summary():
    frame = frame_with("reviewerID", "reviewText", "summary", "overall")
    assert data.find_columns(frame, None, "overall") == ("reviewText", "overall")


def test_labels_given_as_one_zero_one_column_each_are_named_with_both_ways_out():
    frame = pd.DataFrame({"id": ["a1", "b2"], "comment_text": ["you are kind", "go away"], "toxic": [0, 1],
                          "insult": [0, 1], "threat": [0, 0]})
    expect_data_error(lambda: data.find_columns(frame, None, None), "cannot tell which column holds the label",
                      "3 columns ('toxic', 'insult', 'threat') hold only 0 and 1", "--label-col one of them",
                      "one column as a list of the names")
    assert data.find_columns(frame, None, "toxic") == ("comment_text", "toxic")


@pytest.mark.parametrize("text_col", [None, "text"])
def test_a_table_of_texts_alone_is_said_to_have_no_label_column(text_col):
    expect_data_error(lambda: data.find_columns(frame_with("text"), text_col, None), "there is no label column",
                      "the only column is 'text'", "bertfit predict")


@pytest.mark.parametrize(("columns", "expected"), [
    (["sentence1", "sentence2", "label"], ("sentence1", "sentence2")),  # MRPC, RTE
    (["premise", "hypothesis", "label"], ("premise", "hypothesis")),  # SNLI, MNLI
    (["idx", "question", "sentence", "label"], ("question", "sentence")),  # QNLI
    (["question", "passage", "answer"], ("question", "passage")),  # BoolQ
    (["text", "label"], None),
])
def test_pair_columns_are_found_by_their_usual_names(columns, expected):
    assert data.find_pair_columns(frame_with(*columns), None, None) == expected


def test_find_columns_reads_past_spaces_around_header_names():
    frame = pd.DataFrame({" text ": ["a"], " Label": ["x"]})
    assert data.find_columns(frame, None, None) == (" text ", " Label")
    assert data.find_columns(frame, "text", "Label") == (" text ", " Label")


def test_find_columns_falls_back_to_common_names_only_when_no_usual_name_is_there():
    assert data.find_columns(pd.DataFrame({"headline": ["a"], "sentiment": ["x"], "n": [1]}), None, None) == (
        "headline", "sentiment")
    both = pd.DataFrame({"title": ["t"], "text": ["a"], "topic": ["x"], "label": ["y"]})
    assert data.find_columns(both, None, None) == ("text", "label")


def test_find_columns_two_text_candidates_is_ambiguous():
    expect_data_error(lambda: data.find_columns(frame_with("text", "sentence", "label"), None, None),
                      "more than one column could be the text: ['text', 'sentence']", "pass --text-col NAME")


def test_find_columns_two_label_candidates_is_ambiguous():
    expect_data_error(lambda: data.find_columns(frame_with("text", "label", "class"), None, None),
                      "more than one column could be the label: ['label', 'class']", "pass --label-col NAME")


def test_find_columns_without_a_label_lists_the_columns():
    expect_data_error(lambda: data.find_columns(frame_with("text", "verdict"), None, None),
                      "cannot tell which column holds the label", "columns are ['text', 'verdict']",
                      "pass --label-col NAME")


def test_a_file_without_a_header_line_is_named_as_such(tmp_path):
    path = tmp_path / "sms.tsv"  # label, then text, no names: the first row becomes the names
    path.write_text("".join(f"{label}\tmessage number {i}\n" for i, label in enumerate(["ham", "spam"] * 6)))
    frame = reading.read_table(path)
    expect_data_error(lambda: data.find_columns(frame, None, None),
                      "first line looks like a row of data", "'ham' is also a value", "add a header line",
                      "here likely label,text")
    named = pd.DataFrame({"label": ["ham", "spam"], "body": ["hello there", "win money"]})
    assert data.find_columns(named, None, None) == ("body", "label")  # a real header is not taken for data


def test_a_one_column_file_to_predict_named_like_a_text_is_refused_not_scored_without_its_first_row(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text("The app crashed again!\nrefund my card please\nwhere is my parcel\n")
    expect_data_error(lambda: list(reading.iter_texts(path)), "reads like a text", "no header line", "--text-col")
    assert list(reading.iter_texts(path, text_col="The app crashed again!")) == [
        ["refund my card please", "where is my parcel"]]  # named: the user says it is the header
    path.write_text("customer comment\nrefund my card please\n")
    assert list(reading.iter_texts(path)) == [["refund my card please"]]
    survey = pd.DataFrame({"What did you think of the product?": ["great", "awful"], "label": ["pos", "neg"]})
    assert data.find_columns(survey, None, None) == ("What did you think of the product?", "label")  # trains


@pytest.mark.parametrize("header", ["text", "Text", "sentence", "review text", "Review Text", "tweet_text",
                                    "customer comment", "customerComment", "Messages", "text_a", "complaint",
                                    "Kommentar", "評論", "selected_text", "verified_reviews"])
def test_a_one_column_csv_to_predict_keeps_a_header_that_names_a_column(tmp_path, header):
    path = tmp_path / "texts.csv"
    path.write_text(f"{header}\nrefund my card please\nwhere is my parcel\n")
    assert list(reading.iter_texts(path)) == [["refund my card please", "where is my parcel"]]


@pytest.mark.parametrize("first", ["refund my card", "buy seats", "app crashed again"])
def test_a_one_column_csv_whose_first_line_is_no_column_name_is_refused(tmp_path, first):
    path = tmp_path / "texts.csv"
    path.write_text(f"{first}\nthe app crashed\nbuy seats for the team\n", encoding="utf-8")
    expect_data_error(lambda: list(reading.iter_texts(path)), f"{first!r}", "taken as the header",
                      "add a header line", ".txt file", "--text-col")
    assert list(reading.iter_texts(path, text_col=first)) == [["the app crashed", "buy seats for the team"]]
    jsonl = tmp_path / "texts.jsonl"  # a JSON key is a name, never a text taken for one
    jsonl.write_text(json.dumps({first: "the app crashed"}) + "\n", encoding="utf-8")
    assert list(reading.iter_texts(jsonl)) == [["the app crashed"]]


def test_text_col_naming_the_label_column_says_so_and_names_label_col():
    expect_data_error(lambda: data.find_columns(frame_with("text", "label"), "label", None),
                      "--text-col 'label' is the label column", "pass --label-col too", "['text', 'label']")
    assert data.find_columns(frame_with("text", "label", "category"), "label", None) == ("label", "category")
    assert data.find_columns(frame_with("text", "label"), "label", "text") == ("label", "text")


def test_columns_swapped_name_the_rows_dropped_as_repeated_texts_not_only_single_rows():
    rows = labelled(THREE)  # 60 texts of three classes: as labels, every one its own class
    expect_data_error(lambda: data.prepare(rows, DataConfig(text_col="label", label_col="text")),
                      "every class has a single row", "57 of the 60 rows", "repeated texts", "columns swapped",
                      "--label-col", "--text-col")


def test_find_columns_same_column_for_both_is_refused():
    expect_data_error(lambda: data.find_columns(frame_with("text", "label"), "text", "text"),
                      "both 'text'", "pass different --text-col and --label-col")


def test_find_columns_takes_the_one_object_string_column_as_text():
    frame = pd.DataFrame({"notes": pd.Series(["a", "b"], dtype=object), "label": ["x", "y"], "n": [1, 2]})
    assert data.find_columns(frame, None, None) == ("notes", "label")


def test_find_columns_takes_the_one_string_column_as_text_when_read_from_csv(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("id,notes,label\n1,hello there,x\n2,good bye,y\n", encoding="utf-8")
    assert data.find_columns(data.read_table(path), None, None) == ("notes", "label")


# ---------------------------------------------------------------------------------------------
# clean


def test_clean_strips_and_counts_every_kind_of_drop():
    frame = pd.DataFrame({
        "review": ["  hello  ", None, "   ", "world", "world2", "hello", "hello", "bye", "bye\t"],
        "stars": ["a", "a", "b", None, "  ", "a", "b", " b ", "a"],
    })
    rows, dropped = data.clean(frame, "review", "stars")
    assert rows.to_dict("records") == [{"text": "hello", "label": "a"}, {"text": "bye", "label": "b"}]
    assert dropped == {"repeated_header": 0, "missing_text": 1, "empty_text": 1, "missing_label": 2, "duplicate": 1,
                       "conflicting_label": 2}
    assert list(rows.index) == [0, 1]


def test_clean_drops_the_header_repeated_inside_the_data_as_files_joined_by_cat_have_it(tmp_path):
    path = tmp_path / "joined.csv"
    part = "review,stars\nrefund my card,billing\napp crash,tech\n"
    path.write_text(part + part.replace("card", "bill").replace("crash", "freezes"))  # cat a.csv b.csv
    frame = pd.read_csv(path)
    rows, dropped = data.clean(frame, "review", "stars")
    assert "stars" not in set(rows["label"]) and len(rows) == 4
    assert dropped["repeated_header"] == 1
    # a text that happens to read like the column's name is data when its label is a label
    rows, dropped = data.clean(pd.DataFrame({"review": ["review", "x"], "stars": ["a", "b"]}), "review", "stars")
    assert len(rows) == 2 and dropped["repeated_header"] == 0


def test_clean_of_no_rows_warns_of_nothing(recwarn):
    """An empty frame's columns map to empty str columns: combined with the header mask they must stay bool."""
    frame = pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype=str)})
    rows, dropped = data.clean(frame, "text", "label")
    assert len(rows) == 0 and dropped["repeated_header"] == 0
    ours = [str(w.message) for w in recwarn if "pandas" in w.filename or "bertfit" in w.filename]
    assert not ours, ours


def test_clean_refuses_text_cells_holding_lists_or_records_among_texts():
    frame = pd.DataFrame({"text": ["refund my card", ["app", "crash"], None, 7], "label": ["a", "b", "a", "b"]})
    expect_data_error(lambda: data.clean(frame, "text", "label"), "column 'text' holds list values",
                      "row 1", "--text-col")
    frame.loc[1, "text"] = "app crash"  # gaps and numbers among texts are read as before
    assert len(data.clean(frame, "text", "label")[0]) == 3


def test_texts_of_only_invisible_characters_are_dropped_as_empty_and_emoji_kept():
    from bertfit.encoding import is_blank

    invisible = ["\u200b", "\x01\x02", "\u200e", "\u202e \u200f", "\ufeff", "\u2028", " \t"]
    assert all(map(is_blank, invisible)) and not any(map(is_blank, ["😀", "👍🏽", "a\u200b", "é", "\u0301"]))
    frame = pd.DataFrame({"text": ["refund", *invisible, "😀😀"], "label": ["a"] * (len(invisible) + 2)})
    rows, dropped = data.clean(frame, "text", "label")
    assert rows["text"].tolist() == ["refund", "😀😀"]
    assert dropped["empty_text"] == len(invisible)
    pairs = pd.DataFrame({"text_a": ["x", "y"], "text_b": ["\u200b", "z"], "label": ["a", "b"]})
    expect_data_error(lambda: data.clean(pairs, "text_a", "label", "text_b"), "row 0 has only one side")


@pytest.mark.parametrize("name", ["ids.csv", "ids.tsv", "ids.jsonl", "ids.parquet"])
def test_a_text_column_of_numbers_is_refused_alike_from_every_format(tmp_path, name):
    rows = labelled(THREE).assign(text=lambda frame: [1000 + i for i in range(len(frame))])
    path = write_table(rows, tmp_path / name)
    message = expect_data_error(lambda: data.prepare(path), "text column 'text' holds", "1000", "ids", "--text-col")
    assert "np." not in message
    rows = rows.astype({"text": str})
    rows.loc[0, "text"] = "refund my card"  # some texts among ids: read as texts, as before
    assert len(data.prepare(write_table(rows, path)).train) > 0


def test_a_list_inside_a_list_of_labels_is_refused_naming_the_row(tmp_path):
    rows = labelled(THREE).assign(label=lambda frame: [[label] for label in frame["label"]])
    rows.at[4, "label"] = [["billing", "urgent"]]
    expect_data_error(lambda: data.prepare(rows), "label column 'label'", "list inside a list", "row 4",
                      "flat list")
    rows.at[4, "label"] = [{"name": "billing"}]
    expect_data_error(lambda: data.prepare(write_table(rows, tmp_path / "nested.jsonl")), "row 4")


def test_a_label_that_is_a_number_too_long_to_read_is_refused_naming_the_row(tmp_path):
    rows = labelled(THREE)
    rows.loc[3, "label"] = "9" * 5000 + ".0"
    expect_data_error(lambda: data.prepare(write_table(rows, tmp_path / "long.csv")), "label column 'label'",
                      "5,002 characters", "row 3", "--label-col")


def test_a_parquet_file_indexed_by_its_texts_reads_them_from_the_index(tmp_path):
    rows = labelled(THREE)
    path = tmp_path / "indexed.parquet"
    rows.set_index("text").to_parquet(path)
    assert sorted(data.read_table(path)["text"]) == sorted(rows["text"])
    rows.set_index("text").rename_axis(None).to_parquet(path)  # no name: no column to give it back to
    expect_data_error(lambda: data.prepare(path), "the table's index", "reset_index()", "index=False")
    expect_data_error(lambda: list(reading.iter_texts(path)), "the table's index")  # not the labels scored


def test_clean_judges_duplicates_ignoring_case_and_spacing():
    frame = pd.DataFrame({"text": ["Hello  World", "hello world", "HELLO WORLD", "other"],
                          "label": ["a", "a", "b", "b"]})
    rows, dropped = data.clean(frame, "text", "label")
    assert rows.to_dict("records") == [{"text": "Hello  World", "label": "a"}, {"text": "other", "label": "b"}]
    assert (dropped["duplicate"], dropped["conflicting_label"]) == (1, 1)


def test_clean_turns_numbers_into_text_and_labels():
    frame = pd.DataFrame({"text": [12, 3.5, "x"], "label": [1, 0, 1]})
    rows, dropped = data.clean(frame, "text", "label")
    assert rows.to_dict("records") == [{"text": "12", "label": "1"}, {"text": "3.5", "label": "0"},
                                       {"text": "x", "label": "1"}]
    assert sum(dropped.values()) == 0


# ---------------------------------------------------------------------------------------------
# prepare

THREE = {"billing": 20, "tech": 20, "sales": 20}


@pytest.mark.parametrize("name", ["tickets.csv", "tickets.tsv", "tickets.jsonl", "tickets.parquet"])
def test_prepare_single_file_end_to_end(tmp_path, name):
    rows = labelled(THREE)
    rows = pd.concat([rows, rows.iloc[:1], pd.DataFrame({"text": ["   "], "label": ["tech"]})], ignore_index=True)
    prepared = data.prepare(write_table(rows, tmp_path / name))
    report = prepared.report
    assert {"rows_read", "dropped", "split", "rows", "class_balance"} <= set(report)
    assert report["rows_read"] == {"all": 62}
    assert report["dropped"] == {"repeated_header": 0, "missing_text": 0, "empty_text": 1, "missing_label": 0,
                                 "duplicate": 1, "conflicting_label": 0}
    assert report["rows"] == {"train": 42, "validation": 9, "test": 9}
    assert report["class_balance"]["validation"] == {"billing": 3, "sales": 3, "tech": 3}
    assert report["split"] == "split 70%/15%/15% by class, seed 42"
    assert prepared.labels.names == ("billing", "sales", "tech")
    assert (prepared.text_col, prepared.label_col) == ("text", "label")
    assert list(prepared.train.columns) == ["text", "label"]
    assert sum(map(len, prepared.splits().values())) == 60
    assert data.describe(report)[0].startswith("data: 62 rows from ")


def test_prepare_dataframe_honours_config():
    rows = labelled(THREE).rename(columns={"text": "body", "label": "team"})
    config = DataConfig(text_col="body", label_col="team", validation_fraction=0.1, test_fraction=0.2, seed=1)
    prepared = data.prepare(rows, config)
    assert prepared.report["source"] == "DataFrame"
    assert prepared.report["rows"] == {"train": 42, "validation": 6, "test": 12}
    assert (prepared.text_col, prepared.label_col) == ("body", "team")


@pytest.mark.parametrize("names", [("train.csv", "validation.csv", "test.csv"),
                                   ("Training.jsonl", "dev.jsonl", "testing.jsonl"),
                                   ("train.tsv", "val.parquet", "test.csv")])
def test_prepare_folder_uses_its_splits_as_given(tmp_path, names):
    sizes = (THREE, {"billing": 4, "tech": 3, "sales": 2}, {"billing": 2, "tech": 2, "sales": 5})
    for name, per_class, split in zip(names, sizes, ("train", "validation", "test"), strict=True):
        write_table(labelled(per_class, prefix=split), tmp_path / name)
    prepared = data.prepare(tmp_path)
    assert prepared.report["split"] == "splits as given"
    assert prepared.report["rows"] == {"train": 60, "validation": 9, "test": 9}
    assert prepared.report["rows_read"] == {"train": 60, "validation": 9, "test": 9}
    assert prepared.report["class_balance"]["test"] == {"billing": 2, "sales": 5, "tech": 2}


def test_prepare_folder_with_only_train_carves_validation_and_test(tmp_path):
    write_table(labelled(THREE), tmp_path / "train.csv")
    report = data.prepare(tmp_path).report
    assert report["rows"] == {"train": 42, "validation": 9, "test": 9}
    assert report["split"] == "splits as given; validation and test carved from train by class, seed 42"


def test_prepare_folder_with_train_and_test_carves_validation(tmp_path):
    write_table(labelled(THREE), tmp_path / "train.csv")
    write_table(labelled({"billing": 2, "tech": 2, "sales": 2}, prefix="t "), tmp_path / "test.csv")
    report = data.prepare(tmp_path).report
    assert report["rows"] == {"train": 51, "test": 6, "validation": 9}
    assert report["split"] == "splits as given; validation carved from train by class, seed 42"


def test_prepare_folder_ignores_unrelated_files(tmp_path):
    write_table(labelled(THREE), tmp_path / "train.csv")
    (tmp_path / "README.md").write_text("notes")
    write_table(labelled(THREE, prefix="other "), tmp_path / "extra.csv")
    assert data.prepare(tmp_path).report["rows_read"] == {"train": 60}


def test_prepare_folder_without_train_is_an_error(tmp_path):
    write_table(labelled(THREE), tmp_path / "test.csv")
    expect_data_error(lambda: data.prepare(tmp_path), "has no train file", "put train.csv")


def test_prepare_folder_with_two_train_files_is_an_error(tmp_path):
    write_table(labelled(THREE), tmp_path / "train.csv")
    write_table(labelled(THREE), tmp_path / "training.jsonl")
    expect_data_error(lambda: data.prepare(tmp_path), "has two train files", "keep one")


def test_prepare_label_unseen_in_train_is_named(tmp_path):
    write_table(labelled(THREE), tmp_path / "train.csv")
    write_table(labelled({"billing": 2, "zebra": 2}, prefix="v "), tmp_path / "test.csv")
    expect_data_error(lambda: data.prepare(tmp_path), "the test split has label(s) ['zebra']",
                      "that the training split does not have")


def test_prepare_leak_between_given_splits(tmp_path):
    train = labelled(THREE)
    test = pd.concat([labelled({"billing": 3, "tech": 3}, prefix="t "), train.iloc[:2]], ignore_index=True)
    write_table(train, tmp_path / "train.csv")
    write_table(test, tmp_path / "test.csv")
    expect_data_error(lambda: data.prepare(tmp_path), "2 text(s) appear in more than one split", "--drop-leaks")
    report = data.prepare(tmp_path, DataConfig(drop_leaks=True)).report
    assert report["leaks_dropped"] == {"validation": 0, "test": 2}
    assert report["rows"]["test"] == 6


def test_prepare_one_class_is_an_error():
    expect_data_error(lambda: data.prepare(labelled({"only": 30})), "has one class (only 'only')",
                      "a classifier needs at least two")


def test_prepare_whole_float_labels_become_class_names(tmp_path):
    rows = labelled({"0": 10, "1": 10})
    rows["label"] = rows["label"].astype(float)
    path = tmp_path / "floats.csv"
    rows.to_csv(path, index=False)
    assert path.read_text().count("1.0") == 10
    assert data.prepare(path).labels.names == ("0", "1")
    assert data.prepare(rows).labels.names == ("0", "1")


def test_csv_cells_are_read_as_written_so_codes_keep_their_zeros(tmp_path):
    rows = labelled({"billing": 10, "tech": 10, "sales": 10})
    rows["label"] = rows["label"].map({"billing": "007", "tech": "07", "sales": "010"})
    rows["text"] = [f"zip 0{2100 + i}" for i in range(len(rows))]  # (texts of digits alone are refused: ids)
    path = tmp_path / "codes.csv"
    rows.to_csv(path, index=False)
    prepared = data.prepare(path)
    assert prepared.labels.names == ("007", "07", "010")
    texts = pd.concat([prepared.train, prepared.validation, prepared.test])["text"]
    assert sorted(texts) == sorted(rows["text"])


def test_a_csv_of_numbers_with_fractions_as_labels_is_refused_as_a_float_column_is(tmp_path):
    rows = labelled({"a": 10, "b": 10})
    rows["label"] = ["0.5" if label == "a" else "2" for label in rows["label"]]
    path = tmp_path / "scores.csv"
    rows.to_csv(path, index=False)
    expect_data_error(lambda: data.prepare(path), "numbers with fractions", "0.5", "it does not regress")


def test_a_csv_id_column_of_digits_is_not_taken_for_the_text(tmp_path):
    path = tmp_path / "notes.csv"
    path.write_text("id,notes,label\n001,hello there,x\n002,good bye,y\n", encoding="utf-8")
    assert data.find_columns(data.read_table(path), None, None) == ("notes", "label")


def test_a_dataframe_with_numbered_columns_is_read_by_their_names_and_the_user_s_frame_is_untouched():
    frame = labelled({"a": 10, "b": 10})[["text", "label"]].set_axis([0, 1], axis=1)  # pd.read_csv(header=None)
    prepared = data.prepare(frame, DataConfig(text_col="0", label_col="1"))
    assert prepared.labels.names == ("a", "b") and list(frame.columns) == [0, 1]


def test_a_dataframe_indexed_by_its_texts_reads_them_from_the_index():
    frame = labelled({"a": 10, "b": 10}).set_index("text")
    prepared = data.prepare(frame)
    assert sorted(prepared.train["text"].tolist() + prepared.validation["text"].tolist()
                  + prepared.test["text"].tolist()) == sorted(frame.index)
    assert frame.index.name == "text"  # the user's frame is left as it was
    assert list(data.prepare({"train": frame}).labels.names) == ["a", "b"]


def test_a_csv_of_label_lists_written_by_to_csv_reads_as_multi_label(tmp_path):
    frame = pd.DataFrame({"text": [f"ticket number {i} here" for i in range(30)],
                          "labels": [["billing", "tech"], ["billing"], ["tech"]] * 10})
    frame.to_csv(tmp_path / "tags.csv", index=False)  # writes "['billing', 'tech']"
    prepared = data.prepare(tmp_path / "tags.csv")
    assert prepared.multi_label and prepared.labels.names == ("billing", "tech")


def test_labels_joined_in_one_cell_without_label_sep_are_warned_about(caplog):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["x;y", "x", "y"] * 10})
    with caplog.at_level("WARNING", logger="bertfit"):
        prepared = data.prepare(frame)
    assert prepared.labels.names == ("x", "x;y", "y")  # trained as given: a warning, no change
    assert "'x;y' look like several labels joined by ';'" in caplog.text and "--label-sep ';'" in caplog.text


def test_a_second_column_of_sentences_left_out_is_named_in_the_log(caplog):
    frame = labelled({"a": 10, "b": 10})
    frame["title"] = [f"a title of {i} words" for i in range(len(frame))]
    frame["code"] = [f"C-{i}" for i in range(len(frame))]  # one word per cell: not a text
    frame["date"] = [f"2018-07-{i % 28 + 1:02d} 22:09:11" for i in range(len(frame))]  # spaces, no words
    with caplog.at_level("INFO", logger="bertfit"):
        data.prepare(frame)
    assert "text column(s) not used: 'title';" in caplog.text and "'code'" not in caplog.text
    assert "'date'" not in caplog.text


def test_a_dataframe_naming_a_column_twice_is_refused():
    frame = labelled({"a": 10, "b": 10})[["text", "label", "label"]]
    expect_data_error(lambda: data.prepare(frame), "column(s) ['label'] more than once", "rename them")
    expect_data_error(lambda: data.prepare({"train": frame}), "train split", "more than once")


def test_labels_held_as_utf8_bytes_are_their_text():
    assert normalise(pd.Series([b"spam", "spam", bytearray(b"ham")]), "label").tolist() == ["spam", "spam", "ham"]
    expect_data_error(lambda: normalise(pd.Series([b"\xff\xfe"]), "label"), "not UTF-8", "decode the label column")


def test_labels_differing_only_in_case_stay_apart_with_a_warning(caplog):
    frame = pd.DataFrame({"text": [f"text {i}" for i in range(30)],
                          "label": ["Spam", "spam", "ham"] * 10})
    with caplog.at_level("WARNING", logger="bertfit"):
        prepared = data.prepare(frame)
    assert list(prepared.labels.names) == ["Spam", "ham", "spam"]
    assert "differ only in case or spacing" in caplog.text and "'Spam' / 'spam'" in caplog.text


def test_a_list_inside_a_label_list_is_named_not_a_crash():  # found by hypothesis: {"label": [[]]}
    from bertfit.labels import normalise_multi

    assert normalise_multi(pd.Series([[[]], ["a", 1.0]], dtype=object), "label", None).tolist() == [("[]",), ("1", "a")]


def test_mixed_label_values_that_are_one_number_are_one_class():
    labels = normalise(pd.Series([1, "1", 1.0, np.float64(2.0), " 2 ", None], dtype=object), "label")
    assert labels.iloc[:5].tolist() == ["1", "1", "1", "2", "2"] and pd.isna(labels.iloc[5])


def test_prepare_fractional_labels_say_bertfit_does_not_regress():
    rows = labelled({"a": 10, "b": 10})
    rows["label"] = np.linspace(0, 1, len(rows))
    expect_data_error(lambda: data.prepare(rows), "numbers with fractions", "it does not regress")


def test_prepare_hf_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = labelled(THREE)
    datasets.Dataset.from_dict(rows.to_dict("list")).save_to_disk(str(tmp_path / "saved"))
    prepared = data.prepare(f"hf:{tmp_path / 'saved'}")
    assert prepared.report["rows_read"] == {"all": 60}
    assert prepared.report["rows"] == {"train": 42, "validation": 9, "test": 9}
    assert prepared.report["source"] == f"hf:{tmp_path / 'saved'}"


def test_prepare_hf_saved_dataset_dict_uses_its_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    train, test = labelled(THREE), labelled({"billing": 2, "tech": 2, "sales": 2}, prefix="t ")
    datasets.DatasetDict({
        "train": datasets.Dataset.from_dict(train.to_dict("list")),
        "test": datasets.Dataset.from_dict(test.to_dict("list")),
        "unsupervised": datasets.Dataset.from_dict({"text": ["x"], "label": ["billing"]}),
    }).save_to_disk(str(tmp_path / "dd"))
    report = data.prepare(f"hf:{tmp_path / 'dd'}").report
    assert report["rows_read"] == {"train": 60, "test": 6}
    assert report["rows"] == {"train": 51, "test": 6, "validation": 9}


def test_hf_class_labels_are_their_names_and_minus_one_is_no_label(tmp_path, caplog):
    datasets = pytest.importorskip("datasets")
    names = ["tech", "billing", "sales"]  # ClassLabel order, not bertfit's sorted one
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})

    def part(rows, ids):
        return datasets.Dataset.from_dict({"text": list(rows["text"]), "label": ids}, features=features)

    train, test = labelled(THREE), labelled({"billing": 2, "tech": 2, "sales": 2}, prefix="t ")
    ids = [names.index(label) for label in train["label"]]
    ids[0] = -1  # a row without a label, as SNLI has a few hundred
    dataset = datasets.DatasetDict({"train": part(train, ids), "test": part(test, [-1] * len(test))})  # GLUE's test
    dataset.save_to_disk(str(tmp_path / "glue-like"))
    with caplog.at_level("WARNING"):
        prepared = data.prepare(f"hf:{tmp_path / 'glue-like'}")
    assert prepared.labels.names == ("billing", "sales", "tech")
    assert prepared.report["dropped"]["missing_label"] == 1
    assert "['test'] left out: every row's label is -1" in caplog.text
    assert prepared.report["rows"] == {"train": 41, "validation": 9, "test": 9}  # test carved from train
    kept = pd.concat([prepared.train, prepared.validation, prepared.test])
    given = train.iloc[1:]
    assert sorted(zip(kept["text"], kept["label"], strict=True)) == sorted(zip(given["text"], given["label"],
                                                                               strict=True))


def test_hf_lists_of_class_labels_are_lists_of_names():
    prepared = data.prepare(emotion_lists())
    assert prepared.multi_label and prepared.labels.names == ("anger", "fear", "joy")
    assert ("anger", "fear") in set(prepared.train["label"])


def test_prepare_takes_dataset_objects_and_a_dict_of_split_frames_as_they_are(caplog):
    datasets = pytest.importorskip("datasets")
    train, test = labelled(THREE), labelled({"billing": 2, "tech": 2, "sales": 2}, prefix="t ")
    report = data.prepare(datasets.Dataset.from_pandas(train)).report
    assert report["rows"] == {"train": 42, "validation": 9, "test": 9}
    assert report["source"] == "a Hugging Face Dataset"
    both = datasets.DatasetDict({"train": datasets.Dataset.from_pandas(train),
                                 "test": datasets.Dataset.from_pandas(test)})
    assert data.prepare(both).report["rows"] == {"train": 51, "test": 6, "validation": 9}
    with caplog.at_level("WARNING"):
        report = data.prepare({"train": train, "dev": test, "notes": test}).report
    assert report["rows"] == {"train": 51, "validation": 6, "test": 9}  # test carved from train
    assert "['notes'] left out" in caplog.text
    expect_data_error(lambda: data.prepare({"dev": test}), "no train split", "['dev']")
    expect_data_error(lambda: data.prepare({"text": ["a"], "label": ["b"]}), "got a value of type dict",
                      "pd.DataFrame(...)")
    expect_data_error(lambda: data.prepare(17), "got a value of type int", "a file or folder path")


def test_prepare_hf_unknown_name_offline_is_a_data_error(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # datasets reads the variable once, at import; another test may have imported it already.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    expect_data_error(lambda: data.prepare("hf:bertfit-tests/no-such-dataset"),
                      "cannot load Hugging Face dataset 'bertfit-tests/no-such-dataset'", "save_to_disk(PATH)")


def test_prepare_hf_error_without_a_message_is_still_a_data_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def fail(*args, **kwargs):
        raise ConnectionError()

    monkeypatch.setattr(datasets, "load_dataset", fail)
    expect_data_error(lambda: data.prepare("hf:some/name"), "cannot load Hugging Face dataset 'some/name'")


# ---------------------------------------------------------------------------------------------
# load_labelled and iter_texts


def test_load_labelled_file_is_cleaned(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text('{"text": " a ", "y": 1}\n{"text": "b", "y": 0}\n{"text": "", "y": 0}\n', encoding="utf-8")
    rows = reading.load_labelled(path, None, None)
    assert rows.to_dict("records") == [{"text": "a", "label": "1"}, {"text": "b", "label": "0"}]


def test_load_labelled_folder_reads_the_test_split(tmp_path):
    write_table(labelled(THREE), tmp_path / "train.csv")
    write_table(labelled({"x": 2, "y": 1}, prefix="t "), tmp_path / "test.csv")
    rows = reading.load_labelled(tmp_path, None, None)
    assert sorted(rows["label"]) == ["x", "x", "y"]


@pytest.mark.parametrize(
    "setup, fragments",
    [
        ("missing", ["file not found"]),
        ("folder without test", ["has no test file and more than one other split", "train, validation",
                                 "DATA/validation.csv"]),
        ("empty folder", ["has no data file", "pass a labelled file"]),
        ("no usable rows", ["has no rows with both a text and a label"]),
    ],
)
def test_load_labelled_errors(tmp_path, setup, fragments):
    source = tmp_path / "missing.csv"
    if setup == "folder without test":
        source = tmp_path
        write_table(labelled(THREE), tmp_path / "train.csv")
        write_table(labelled(THREE, prefix="v "), tmp_path / "validation.csv")
    elif setup == "empty folder":
        source = tmp_path / "empty"
        source.mkdir()
    elif setup == "no usable rows":
        source.write_text("text,label\n ,a\nb,\n", encoding="utf-8")
    expect_data_error(lambda: reading.load_labelled(source, None, None), *fragments)


TEXTS = ["first text", "second, with comma", "third", "fourth", "fifth"]


def write_texts(folder: Path, kind: str) -> Path:
    if kind == "txt":
        path = folder / "texts.txt"
        path.write_text("\n".join(TEXTS[:2]) + "\n" + "\r\n".join(TEXTS[2:]) + "\n", encoding="utf-8")
        return path
    return write_table(pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS}), folder / f"texts.{kind}")


def test_iter_texts_reads_csv_texts_of_digits_as_written(tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("text\n007\n0120\n1.50\nrefund 12\n", encoding="utf-8")  # a column of numbers alone: an id
    assert [text for chunk in reading.iter_texts(path) for text in chunk] == ["007", "0120", "1.50", "refund 12"]


@pytest.mark.parametrize("kind", ["txt", "csv", "tsv", "jsonl", "parquet"])
@pytest.mark.parametrize("chunk_size, sizes", [(2, [2, 2, 1]), (5, [5]), (100, [5]), (1, [1] * 5)])
def test_iter_texts_chunks_every_format(tmp_path, kind, chunk_size, sizes):
    chunks = list(reading.iter_texts(write_texts(tmp_path, kind), chunk_size=chunk_size))
    assert [len(chunk) for chunk in chunks] == sizes
    assert [text for chunk in chunks for text in chunk] == TEXTS


def test_iter_texts_keeps_blank_lines_in_place_and_drops_the_byte_order_mark(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_bytes("\ufefffirst\n\n  \nlast\r\n".encode("utf-8"))
    assert [text for chunk in reading.iter_texts(path) for text in chunk] == ["first", "", "  ", "last"]


def test_iter_texts_explicit_column(tmp_path):
    path = write_table(pd.DataFrame({"text": ["no", "no"], "note": ["yes 1", "yes 2"]}), tmp_path / "n.csv")
    assert list(reading.iter_texts(path, text_col="note")) == [["yes 1", "yes 2"]]
    expect_data_error(lambda: list(reading.iter_texts(path, text_col="Note")), "pass --text-col note")


def test_iter_texts_reads_stdin_for_dash(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("one\n\n  two words \r\nthree\n"))
    assert list(reading.iter_texts("-", chunk_size=2)) == [["one", ""], ["  two words ", "three"]]


@pytest.mark.parametrize("name", ["missing.txt", "missing.csv"])
def test_iter_texts_missing_file(tmp_path, name):
    expect_data_error(lambda: list(reading.iter_texts(tmp_path / name)), "input file not found", "check the path")


def test_iter_texts_empty_csv(tmp_path):
    (tmp_path / "empty.csv").write_bytes(b"")
    expect_data_error(lambda: list(reading.iter_texts(tmp_path / "empty.csv")), "is empty", "needs a header row")


@pytest.mark.parametrize("name, content", [("latin.csv", b"text\ncaf\xe9\n"), ("latin.txt", b"ok\ncaf\xe9\n"),
                                           ("ragged.csv", b"text\na\nb,c,d\n")])
def test_iter_texts_unreadable_file_is_a_data_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    expect_data_error(lambda: list(reading.iter_texts(path)), str(path))


def test_jsonl_written_by_hand_reads_like_pandas_output(tmp_path):
    path = tmp_path / "hand.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in TABLE.to_dict("records")) + "\n", encoding="utf-8")
    assert data.read_table(path).equals(data.read_table(write_table(TABLE, tmp_path / "pandas.jsonl")))


def test_load_labelled_prefers_the_columns_a_model_was_trained_with(tmp_path):
    path = tmp_path / "holdout.csv"
    pd.DataFrame({"text": ["a", "b"], "sentence": ["x", "y"], "label": ["p", "q"]}).to_csv(path, index=False)
    expect_data_error(lambda: reading.load_labelled(path, None, None), "more than one column could be the text")
    rows = reading.load_labelled(path, None, None, preferred=("sentence", "label"))
    assert rows["text"].tolist() == ["x", "y"]
    assert reading.load_labelled(path, "text", None, preferred=("sentence", "label"))["text"].tolist() == ["a", "b"]
    # a saved column the new data lacks is ignored: the data's own columns are looked for instead
    expect_data_error(lambda: reading.load_labelled(path, None, None, preferred=("body", "label")),
                      "more than one column could be the text")


def test_multi_label_rows_of_distinct_label_sets_with_a_repeated_text_are_no_single_row_classes():
    names = ["a", "b", "c", "d", "e", "f", "g"]
    sets = [[x, y] for i, x in enumerate(names) for y in names[i + 1:]] + [[x] for x in names]
    rows = pd.DataFrame({"text": [f"message number {i} about {' and '.join(s)}" for i, s in enumerate(sets)],
                         "labels": sets})
    rows = pd.concat([rows, rows.iloc[:1]], ignore_index=True)  # one text twice: dropped, counted
    prepared = data.prepare(rows, DataConfig(validation_fraction=0.2, test_fraction=0.2))
    assert prepared.multi_label and prepared.report["dropped"]["duplicate"] == 1


def test_a_pair_column_of_numbers_written_out_is_text():
    rows = pd.DataFrame({"question": [f"how many items are in box {i}?" for i in range(40)],
                         "answer": [str(i % 7) for i in range(40)], "label": ["yes", "no"] * 20})
    prepared = data.prepare(rows, DataConfig(text_col="question", text_pair_col="answer", label_col="label"))
    assert len(prepared.train) + len(prepared.validation) + len(prepared.test) == 40


def test_empty_names_a_spreadsheet_leaves_at_the_end_of_a_header_are_no_duplicates(tmp_path):
    path = tmp_path / "export.csv"  # "text,label,," : two empty names, as Excel saves blank columns
    path.write_text("text,label,,\n" + "".join(f"ticket {i} about {lab},{lab},,\n"
                                               for i, lab in enumerate(["billing", "tech"] * 10)))
    prepared = data.prepare(path)
    assert (prepared.text_col, prepared.label_col) == ("text", "label")
