"""Data in the shapes other tools write: Hugging Face Parquet exports and hub folders, benchmarks' hidden
test labels, fastText lines to predict, and sentence pairs under another naming than the model's.

Pure and fast: small tables written by each test under tmp_path; no model, no torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bertfit.data import cleaning as data
from bertfit.data import reading
from conftest import emotion_lists, expect_data_error, labelled

THREE = {"billing": 20, "tech": 20, "sales": 20}
NAMES = ["tech", "billing", "sales"]  # ClassLabel order, not bertfit's sorted one


def class_label_dataset(rows: pd.DataFrame, ids: list[int] | None = None):
    """``rows`` as a datasets.Dataset whose label is a ClassLabel over :data:`NAMES` (ids as given, else by name)."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=NAMES)})
    ids = [NAMES.index(label) for label in rows["label"]] if ids is None else ids
    return datasets.Dataset.from_dict({"text": list(rows["text"]), "label": ids}, features=features)


def export(rows: pd.DataFrame, path: Path, ids: list[int] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    class_label_dataset(rows, ids).to_parquet(str(path))
    return path


# ---------------------------------------------------------------------------------------------
# Dataset.to_parquet exports: the ClassLabel names in the schema metadata


def test_a_parquet_export_trains_on_its_class_names_and_minus_one_is_no_label(tmp_path):
    rows = labelled(THREE)
    ids = [NAMES.index(label) for label in rows["label"]]
    ids[0] = -1
    prepared = data.prepare(export(rows, tmp_path / "train.parquet", ids))
    assert prepared.labels.names == ("billing", "sales", "tech")
    assert prepared.report["dropped"]["missing_label"] == 1
    kept = pd.concat([prepared.train, prepared.validation, prepared.test])
    assert sorted(zip(kept["text"], kept["label"], strict=True)) == sorted(
        zip(rows["text"][1:], rows["label"][1:], strict=True))


def test_a_parquet_export_of_lists_of_class_labels_has_lists_of_names(tmp_path):
    emotion_lists().to_parquet(str(tmp_path / "emotions.parquet"))
    prepared = data.prepare(tmp_path / "emotions.parquet")
    assert prepared.multi_label and prepared.labels.names == ("anger", "fear", "joy")


def test_the_metadata_older_datasets_wrote_is_read_too(tmp_path):
    """``Sequence`` (before ``List``), and a Python list of one feature; unrelated metadata leaves ids as written."""
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    label = {"names": ["neg", "pos"], "_type": "ClassLabel"}
    features = {"text": {"dtype": "string", "_type": "Value"}, "label": label,
                "tags": {"feature": label, "_type": "Sequence"}, "more": [label]}
    table = pa.table({"text": ["a b", "c d"], "label": [1, 0], "tags": [[0, 1], [1]], "more": [[0], []]})
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, tmp_path / "old.parquet")
    frame = reading.read_table(tmp_path / "old.parquet")
    assert frame["label"].tolist() == ["pos", "neg"]
    assert frame["tags"].tolist() == [["neg", "pos"], ["pos"]] and frame["more"].tolist() == [["neg"], []]
    pq.write_table(table.replace_schema_metadata({"huggingface": b"not json"}), tmp_path / "odd.parquet")
    assert reading.read_table(tmp_path / "odd.parquet")["label"].tolist() == [1, 0]


# ---------------------------------------------------------------------------------------------
# A split whose every label is -1 (a benchmark's hidden test labels)


def write_splits(folder: Path, train: pd.DataFrame, test: pd.DataFrame) -> Path:
    folder.mkdir()
    train.to_csv(folder / "train.csv", index=False)
    labelled({"billing": 3, "tech": 3, "sales": 3}, prefix="v ").to_csv(folder / "validation.csv", index=False)
    test.to_csv(folder / "test.csv", index=False)
    return folder


def test_a_test_file_of_minus_ones_is_left_out_and_carved_from_train(tmp_path, caplog):
    test = labelled({"billing": 2, "tech": 2, "sales": 2}, prefix="t ").assign(label="-1")
    folder = write_splits(tmp_path / "glue", labelled(THREE), test)
    with caplog.at_level("WARNING", logger="bertfit"):
        prepared = data.prepare(folder)
    assert "['test'] left out: every row's label is -1" in caplog.text
    assert prepared.report["rows_read"] == {"train": 60, "validation": 9}
    assert len(prepared.test) > 0 and "-1" not in set(prepared.test["label"])


def test_minus_one_is_a_class_where_train_has_it(tmp_path):
    train = labelled(THREE).replace({"label": {"sales": "-1"}})
    test = labelled({"billing": 2, "tech": 2, "sales": 2}, prefix="t ").assign(label="-1")
    frames, _ = reading.load_frames(write_splits(tmp_path / "signed", train, test))
    assert list(frames) == ["test", "train", "validation"] and set(frames["test"]["label"]) == {"-1"}


def test_a_parquet_export_split_of_minus_ones_is_left_out(tmp_path, caplog):
    test = labelled({"billing": 2, "tech": 2, "sales": 2}, prefix="t ")
    export(labelled(THREE), tmp_path / "glue" / "train.parquet")
    export(test, tmp_path / "glue" / "test.parquet", [-1] * len(test))
    with caplog.at_level("WARNING", logger="bertfit"):
        prepared = data.prepare(tmp_path / "glue")
    assert "['test'] left out" in caplog.text and prepared.labels.names == ("billing", "sales", "tech")


# ---------------------------------------------------------------------------------------------
# The hub's folder layout: data/train-00000-of-00002.parquet, ...


def test_hub_shards_under_data_are_read_and_joined_in_name_order(tmp_path):
    rows = labelled(THREE)
    export(rows.iloc[30:], tmp_path / "hub" / "data" / "train-00001-of-00002.parquet")
    export(rows.iloc[:30], tmp_path / "hub" / "data" / "train-00000-of-00002.parquet")
    export(labelled({"billing": 3, "tech": 3, "sales": 3}, prefix="v "),
           tmp_path / "hub" / "data" / "validation-00000-of-00001.parquet")
    (tmp_path / "hub" / "README.md").write_text("# a dataset card\n")
    frames, _ = reading.load_frames(tmp_path / "hub")
    assert list(frames) == ["train", "validation"]
    assert frames["train"]["text"].tolist() == rows["text"].tolist()
    assert frames["train"]["label"].tolist() == rows["label"].tolist()
    assert data.prepare(tmp_path / "hub").report["rows_read"] == {"train": 60, "validation": 9}


def test_hub_shards_at_the_top_and_a_split_written_twice(tmp_path):
    rows = labelled(THREE)
    export(rows, tmp_path / "top" / "train-00000-of-00001.parquet")
    rows.to_csv(tmp_path / "top" / "test-00000-of-00001.csv", index=False)
    assert list(reading.load_frames(tmp_path / "top")[0]) == ["test", "train"]
    rows.to_csv(tmp_path / "top" / "train.csv", index=False)
    expect_data_error(lambda: reading.load_frames(tmp_path / "top"), "two train files", "keep one")


def test_hf_prefix_on_a_local_folder_of_files_reads_the_folder(tmp_path, caplog):
    export(labelled(THREE), tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")
    with caplog.at_level("INFO", logger="bertfit"):
        frames, origin = reading.load_frames(f"hf:{tmp_path / 'hub'}")
    assert origin == f"hf:{tmp_path / 'hub'}" and list(frames) == ["train"]
    assert "not one saved with save_to_disk" in caplog.text and "without hf:" in caplog.text
    (tmp_path / "empty").mkdir()
    expect_data_error(lambda: reading.load_frames(f"hf:{tmp_path / 'empty'}"), "has no train file")


# ---------------------------------------------------------------------------------------------
# fastText lines given to predict


def test_predicting_a_fasttext_file_reads_its_texts_without_the_label_words(tmp_path, caplog):
    path = tmp_path / "ft.txt"
    path.write_text("__label__tech the app crashed\n\n__label__a __label__b two labels here\n__label__x\n")
    with caplog.at_level("INFO", logger="bertfit"):
        texts = [text for chunk in reading.iter_texts(path) for text in chunk]
    assert texts == ["the app crashed", "", "two labels here", ""]
    assert "fastText's format" in caplog.text
    plain = tmp_path / "plain.txt"
    plain.write_text("__label__tech the app crashed\nno label word on this line\n")
    assert [text for chunk in reading.iter_texts(plain) for text in chunk] == [
        "__label__tech the app crashed", "no label word on this line"]


# ---------------------------------------------------------------------------------------------
# Sentence pairs named otherwise than the model's columns


def pairs_csv(path: Path, first: str, second: str) -> Path:
    rows = labelled(THREE)
    pd.DataFrame({first: rows["text"], second: "and " + rows["text"], "label": rows["label"]}).to_csv(path, index=False)
    return path


def test_a_pair_model_scores_a_file_of_another_known_pair_naming(tmp_path, caplog):
    path = pairs_csv(tmp_path / "quora.csv", "question1", "question2")
    with caplog.at_level("INFO", logger="bertfit"):
        rows = reading.load_labelled(path, None, None, preferred=("sentence1", "label"), pair_col="sentence2")
    assert "reading the pairs from columns 'question1' and 'question2'" in caplog.text
    assert rows["text_pair"].tolist() == ("and " + rows["text"]).tolist() and len(rows) == 60
    written = pd.read_csv(path)
    pairs = [pair for chunk in reading.iter_texts(path, pair_col="sentence2", saved_col="sentence1") for pair in chunk]
    assert pairs == list(zip(written["question1"], written["question2"], strict=True))


def test_a_pair_file_of_unknown_names_asks_for_both_columns(tmp_path):
    path = pairs_csv(tmp_path / "ab.csv", "first", "second")
    fragments = ("no column 'sentence2'", "--text-col", "--text-pair-col")
    expect_data_error(lambda: reading.load_labelled(path, None, None, preferred=("sentence1", "label"),
                                                    pair_col="sentence2"), *fragments)
    expect_data_error(lambda: list(reading.iter_texts(path, pair_col="sentence2", saved_col="sentence1")), *fragments)
    known = pairs_csv(tmp_path / "quora.csv", "question1", "question2")
    # a second column named by hand is not second-guessed when the model's own is passed apart
    expect_data_error(lambda: reading.load_labelled(known, None, None, pair_col="q2", saved_pair_col="sentence2"),
                      "no column 'q2'", "--text-pair-col")
    expect_data_error(lambda: list(reading.iter_texts(known, text_col="question1", pair_col="sentence2")),
                      "--text-col", "--text-pair-col")


@pytest.mark.parametrize("orient", ["split", "index", "columns", "records"])
def test_every_json_shape_pandas_writes_reads_as_the_table(tmp_path, orient):
    rows = labelled({"billing": 10, "tech": 10})
    path = tmp_path / f"{orient}.json"
    rows.to_json(path, orient=orient)
    prepared = data.prepare(path)
    assert (prepared.text_col, prepared.label_col) == ("text", "label")
    assert sum(prepared.report["rows"].values()) == len(rows)


def test_records_under_a_key_beside_plain_values_are_the_table(tmp_path):
    rows = labelled({"billing": 10, "tech": 10})
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"version": "1.0", "count": len(rows), "data": rows.to_dict(orient="records")}))
    assert sum(data.prepare(path).report["rows"].values()) == len(rows)
