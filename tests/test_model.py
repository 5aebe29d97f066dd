"""The saved folder and inference: TextClassifier load / save / predict / evaluate, and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bertfit
from bertfit.errors import DataError, ModelLoadError, OutputError
from bertfit.model import TextClassifier
from bertfit.record import PLAIN_FORMAT
from conftest import assert_kept_by_accuracy_then_loss

LABELS = ["billing", "sales", "tech"]  # the classes of conftest's rows, in LabelSet order

# Texts of very different token lengths, some past the saved max_length (64), so batches mix lengths.
TEXTS = [
    "refund",
    "crash error bug install update login password screen slow broken freeze reboot " * 8,
    "buy quote demo plan",
    "please help",
    "invoice refund charge payment card bill price paid money overcharged receipt " * 3,
    "my screen is broken again today",
    "discount",
    "trial pricing licence order seats contract for our plan now " * 2,
]


@pytest.fixture(scope="module")
def classifier(trained_dir) -> TextClassifier:
    return TextClassifier.from_pretrained(trained_dir)


@pytest.fixture(scope="module")
def meta(trained_dir) -> dict:
    return json.loads((trained_dir / "bertfit.json").read_text())


@pytest.fixture
def model_copy(trained_dir, tmp_path) -> Path:
    """A private copy of the trained folder that a test may damage."""
    return Path(shutil.copytree(trained_dir, tmp_path / "copy"))


# -- the saved folder -----------------------------------------------------------------------------


def test_folder_holds_a_hugging_face_model_and_tokenizer(trained_dir):
    names = {p.name for p in trained_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "bertfit.json"} <= names
    assert names & {"tokenizer.json", "vocab.txt"}
    config = json.loads((trained_dir / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(LABELS)}
    assert config["label2id"] == {name: i for i, name in enumerate(LABELS)}
    assert not [n for n in names if n.startswith(".")]  # no staging or checkpoint leftovers inside


def test_bertfit_json_records_format_labels_columns_and_settings(meta, tiny_model_dir):
    assert meta["format_version"] == PLAIN_FORMAT  # no blend: readable by bertfits that know no blend
    assert meta["labels"] == LABELS
    assert (meta["text_col"], meta["label_col"]) == ("text", "label")
    assert meta["max_length"] == 64  # the tiny model's position limit, below the default 256
    settings = meta["settings"]
    assert settings["train"]["epochs"] == 5
    assert settings["train"]["learning_rate"] == pytest.approx(1e-2)
    assert settings["train"]["model"] == str(tiny_model_dir)
    assert settings["data"]["validation_fraction"] == pytest.approx(0.15)
    assert settings["data"]["seed"] == 42
    assert meta["versions"]["bertfit"] == bertfit.__version__
    assert {"python", "torch", "transformers"} <= set(meta["versions"])


def test_bertfit_json_history_and_metrics(meta):
    history = meta["history"]
    assert [entry["epoch"] for entry in history] == [1, 2, 3, 4, 5]  # patience 0: all 5 epochs
    for entry in history:
        assert entry["train_loss"] > 0
        assert entry["validation"]["loss"] > 0
        assert 0 <= entry["validation"]["accuracy"] <= 1
    best = meta["best_epoch"]
    assert meta["metrics"]["validation"] == history[best - 1]["validation"]
    assert_kept_by_accuracy_then_loss(history[best - 1], history)
    test = meta["metrics"]["test"]
    assert {"accuracy", "f1_macro", "precision_macro", "recall_macro", "auc", "loss", "confusion_matrix"} <= set(test)
    assert test["rows"] == sum(map(sum, test["confusion_matrix"])) == meta["data"]["rows"]["test"]


def test_transformers_pipeline_loads_the_folder_without_bertfit(trained_dir, classifier):
    import transformers

    texts = ["refund my payment", "the screen is broken", "a quote for more seats", "please help"]
    pipe = transformers.pipeline("text-classification", model=str(trained_dir), device="cpu")
    outputs = pipe(texts)
    assert [o["label"] for o in outputs] == classifier.predict(texts)
    assert {o["label"] for o in outputs} <= set(LABELS)
    # pipeline applies a plain softmax; bertfit divides the logits by the fitted temperature first
    # (same ranking, same labels), so the scores match the uncalibrated softmax of bertfit's logits.
    logits = classifier.logits(texts)
    plain = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert [o["score"] for o in outputs] == pytest.approx(plain.max(axis=1).tolist(), abs=1e-5)
    assert classifier.temperature != 1.0


# -- inference ------------------------------------------------------------------------------------


def test_predict_proba_rows_are_distributions(classifier):
    proba = classifier.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), len(LABELS))
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (proba >= 0).all()


def test_length_sorted_batches_keep_every_text_in_its_place(classifier):
    batched = classifier.logits(TEXTS, batch_size=2)
    one_by_one = np.vstack([classifier.logits([text], batch_size=1) for text in TEXTS])
    assert batched.shape == one_by_one.shape
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    # The check can only catch a reordering if the texts score differently.
    assert len({tuple(np.round(row, 4)) for row in one_by_one}) == len(TEXTS)
    reversed_order = classifier.logits(TEXTS[::-1], batch_size=3)
    np.testing.assert_allclose(reversed_order, one_by_one[::-1], atol=1e-5)


def test_predict_proba_of_no_texts_is_empty(classifier):
    proba = classifier.predict_proba([])
    assert proba.shape == (0, len(LABELS))
    assert classifier.predict([]) == []
    assert list(classifier.predict_records([])) == []


@pytest.mark.parametrize("batch_size", [0, -1])
def test_predict_proba_refuses_a_batch_size_below_one(classifier, batch_size):
    with pytest.raises(ValueError, match=r"batch[_ -]size"):
        classifier.predict_proba(TEXTS, batch_size=batch_size)


def test_a_str_is_one_text_not_its_characters(classifier):
    label = classifier.predict("printer is out of toner")
    assert label in LABELS
    assert label == classifier.predict(["printer is out of toner"])[0]
    proba = classifier.predict_proba("printer is out of toner")
    assert proba.shape == (len(LABELS),)
    assert [r["text"] for r in classifier.predict_records("printer")] == ["printer"]
    with pytest.raises(TypeError, match="list of texts"):
        classifier.evaluate("printer", ["tech"])


@pytest.mark.parametrize(("texts", "words"), [
    ([None], ["texts[0]", "NoneType", "not a str"]),
    (["fine", 3.5], ["texts[1]", "float"]),
    ([b"bytes"], ["texts[0]", "bytes"]),
    (b"bytes", ["list of str"]),
    (42, ["list of str"]),
    (pd.DataFrame({"body": ["refund my card", "the app crashed"]}), ["DataFrame", "column names",
                                                                      "texts=frame['body']"]),
    ({"refund my card": "billing"}, ["dict", "keys", "list of str"]),
])
def test_texts_that_are_not_strings_are_a_type_error_naming_the_place(classifier, texts, words):
    for call in (classifier.predict, classifier.predict_proba, lambda t: list(classifier.predict_records(t))):
        with pytest.raises(TypeError) as caught:
            call(texts)
        for word in words:
            assert word in str(caught.value)


def test_text_that_is_not_utf8_is_a_data_error_naming_the_byte(classifier):
    # 'caf\xe9' on a command line reaches Python as 'caf\udce9' (surrogateescape); JSON can spell '\ud800'.
    for text, byte in (("caf\udce9", "byte 0xe9"), ("a\ud800b", "lone surrogate 0xd800")):
        with pytest.raises(DataError, match=byte):
            classifier.predict(["fine", text])


def test_empty_texts_are_marked_by_predict_records_and_refused_by_predict(classifier):
    records = list(classifier.predict_records(["refund", "", "  ", "crash error"]))
    assert [r["text"] for r in records] == ["refund", "", "  ", "crash error"]
    assert [r.get("empty", False) for r in records] == [False, True, True, False]
    assert records[1]["label"] is None and records[1]["probabilities"] is None
    assert records[0]["label"] in LABELS
    with pytest.raises(DataError, match="text 1 is empty"):
        classifier.predict(["refund", ""])


def test_predict_returns_label_names_matching_argmax(classifier):
    proba = classifier.predict_proba(TEXTS)
    assert classifier.predict(TEXTS) == [LABELS[i] for i in proba.argmax(axis=1)]


def test_predict_records_fields(classifier):
    records = list(classifier.predict_records(TEXTS, batch_size=3))
    proba = classifier.predict_proba(TEXTS)
    assert [r["text"] for r in records] == TEXTS
    for record, row in zip(records, proba, strict=True):
        assert set(record) == {"text", "label", "score", "probabilities"}
        assert list(record["probabilities"]) == LABELS
        assert record["label"] == LABELS[int(row.argmax())]
        assert record["score"] == pytest.approx(float(row.max()), abs=1e-6)
        assert record["score"] == max(record["probabilities"].values())
        assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        json.dumps(record)  # plain Python types, ready for a JSON line


def test_evaluate_scores_labelled_texts(classifier, rows):
    texts, labels = rows["text"].tolist(), rows["label"].tolist()
    metrics = classifier.evaluate(texts, labels)
    predicted = classifier.predict(texts)
    assert metrics["accuracy"] == pytest.approx(np.mean([p == t for p, t in zip(predicted, labels, strict=True)]))
    assert metrics["rows"] == len(rows)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == len(rows)
    assert matrix.sum(axis=1).tolist() == [labels.count(name) for name in LABELS]
    assert {"f1_macro", "precision_macro", "recall_macro", "auc", "loss"} <= set(metrics)


def test_evaluate_with_an_unknown_label_names_it(classifier):
    with pytest.raises(DataError, match="refunds") as caught:
        classifier.evaluate(["refund my card", "crash"], ["refunds", "tech"])
    assert "\n" not in str(caught.value)


# -- loading errors -------------------------------------------------------------------------------


def _damage(folder: Path, how: str) -> None:
    if how == "missing":
        shutil.rmtree(folder)
    elif how == "no_weights":
        (folder / "model.safetensors").unlink()
    elif how == "newer_format":
        meta = json.loads((folder / "bertfit.json").read_text())
        (folder / "bertfit.json").write_text(json.dumps({**meta, "format_version": 999}))
    elif how == "invalid_json":
        (folder / "bertfit.json").write_text('{"format_version": 1, "labels": [')
    elif how == "empty":
        shutil.rmtree(folder)
        folder.mkdir()
    elif how == "truncated_weights":  # a copy cut short
        weights = folder / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "garbage_weights":
        (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    elif how == "corrupt_tokenizer":
        (folder / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    elif how == "no_labels":
        meta = json.loads((folder / "bertfit.json").read_text())
        (folder / "bertfit.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "labels"}))
    elif how == "labels_mismatch":
        meta = json.loads((folder / "bertfit.json").read_text())
        (folder / "bertfit.json").write_text(json.dumps({**meta, "labels": [*meta["labels"], "extra"]}))
    elif how in ("format_true", "format_zero"):  # true is 1 to isinstance(..., int)
        meta = json.loads((folder / "bertfit.json").read_text())
        (folder / "bertfit.json").write_text(json.dumps({**meta, "format_version": how == "format_true"}))
    elif how == "tokenizer_cut":  # a vocabulary of [UNK] alone: every text would read as unknown tokens
        tokenizer = json.loads((folder / "tokenizer.json").read_text())
        tokenizer["model"]["vocab"] = {"[UNK]": 0}
        tokenizer["added_tokens"] = [t for t in tokenizer["added_tokens"] if t["content"] == "[UNK]"]
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    elif how == "config_labels_renamed":  # what transformers' pipeline would answer with, against bertfit.json's
        config = json.loads((folder / "config.json").read_text())
        config["id2label"] = {str(i): f"x{i}" for i in range(len(config["id2label"]))}
        (folder / "config.json").write_text(json.dumps(config))
    elif how == "task_flipped":  # single-label weights and config.json, read as multi-label
        meta = json.loads((folder / "bertfit.json").read_text())
        (folder / "bertfit.json").write_text(json.dumps({**meta, "task": "multi_label"}))
    elif how in ("max_length_negative", "temperature_zero", "threshold_dict", "stride_too_long"):  # hand edits
        meta = json.loads((folder / "bertfit.json").read_text())
        if how == "max_length_negative":
            meta["max_length"] = -5
        elif how == "temperature_zero":
            meta["calibration"] = {**(meta.get("calibration") or {}), "temperature": 0}
        elif how == "threshold_dict":
            meta.update(task="multi_label", thresholds={"billing": 2})
        else:
            meta["long_text"] = {"mode": "window", "stride": 1000, "pool": "mean"}
        (folder / "bertfit.json").write_text(json.dumps(meta))
    elif how == "data_folder":
        shutil.rmtree(folder)
        folder.mkdir()
        (folder / "train.csv").write_text("text,label\n")


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("missing", ["not found", "bertfit train"]),
        ("no_weights", ["no weights", "model.safetensors", "retrain"]),
        ("newer_format", ["999", "newer", "pip install -U bertfit"]),
        ("invalid_json", ["not valid JSON", "bertfit.json", "retrain"]),
        ("empty", ["not a model folder", "bertfit.json", "config.json"]),
        ("truncated_weights", ["damaged or incomplete", "copy the whole folder"]),
        ("garbage_weights", ["damaged or incomplete", "copy the whole folder"]),
        ("corrupt_tokenizer", ["damaged or incomplete", "copy the whole folder"]),
        ("no_labels", ["'labels'", "damaged"]),
        ("labels_mismatch", ["3 classes", "4 labels", "copy it again"]),
        ("data_folder", ["holds data", "train.csv", "model folder comes first"]),
        ("max_length_negative", ["damaged or incomplete", "max_length is -5", "copy the whole folder"]),
        ("temperature_zero", ["damaged or incomplete", "calibration.temperature is 0", "copy the whole folder"]),
        ("threshold_dict", ["damaged or incomplete", "thresholds is {'billing': 2}", "copy the whole folder"]),
        ("stride_too_long", ["damaged or incomplete", "long_text.stride is 1000", "copy the whole folder"]),
        ("format_true", ["damaged or incomplete", "no format_version"]),
        ("format_zero", ["damaged or incomplete", "no format_version"]),
        ("task_flipped", ["damaged or incomplete", "multi-label", "single_label_classification"]),
        ("config_labels_renamed", ["damaged or incomplete", "config.json's id2label names ['x0', 'x1', 'x2']"]),
        ("tokenizer_cut", ["its tokenizer knows", "tokens but its embeddings hold", "copy the whole folder"]),
    ],
)
def test_from_pretrained_errors_are_one_line_with_the_fix(model_copy, how, expected):
    _damage(model_copy, how)
    with pytest.raises(ModelLoadError) as caught:
        TextClassifier.from_pretrained(model_copy)
    message = str(caught.value)
    assert "\n" not in message
    for part in expected:
        assert part in message
    assert isinstance(caught.value, OSError)  # callers catching the built-in keep working


def test_from_pretrained_bertfit_json_not_an_object(model_copy):
    (model_copy / "bertfit.json").write_text("[1, 2, 3]\n")
    with pytest.raises(ModelLoadError, match="bertfit.json"):
        TextClassifier.from_pretrained(model_copy)


def test_from_pretrained_without_tokenizer_files_is_an_error(model_copy):
    tokenizer_files = [p for p in model_copy.iterdir() if p.name.startswith("tokenizer") or p.name in
                       ("vocab.txt", "special_tokens_map.json")]
    assert tokenizer_files
    for file in tokenizer_files:
        file.unlink()
    with pytest.raises(ModelLoadError, match="tokenizer"):
        TextClassifier.from_pretrained(model_copy)


def test_plain_hugging_face_folder_loads_with_labels_from_config(model_copy, classifier):
    (model_copy / "bertfit.json").unlink()
    plain = TextClassifier.from_pretrained(model_copy)
    assert plain.labels.names == tuple(LABELS)
    assert plain.max_length == 64
    assert plain.predict(TEXTS) == classifier.predict(TEXTS)
    np.testing.assert_allclose(plain.logits(TEXTS), classifier.logits(TEXTS), atol=1e-5)  # no temperature there


# -- saving ---------------------------------------------------------------------------------------


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_save_then_load_round_trips(classifier, tmp_path):
    target = classifier.save_pretrained(tmp_path / "saved")
    assert target == tmp_path / "saved"
    again = TextClassifier.from_pretrained(target)
    assert again.meta["labels"] == LABELS
    assert again.meta["history"] == classifier.meta["history"]
    np.testing.assert_allclose(again.predict_proba(TEXTS), classifier.predict_proba(TEXTS), atol=1e-6)
    assert _leftovers(tmp_path, "saved") == []


def test_save_into_a_missing_parent_creates_it(classifier, tmp_path):
    target = classifier.save_pretrained(tmp_path / "a" / "b" / "model")
    assert (target / "bertfit.json").is_file()


def test_save_over_a_non_empty_folder_needs_overwrite(classifier, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="--overwrite"):
        classifier.save_pretrained(target)
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "keep me"
    assert _leftovers(tmp_path, "model") == []


def test_save_with_overwrite_replaces_the_folder(classifier, tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "notes.txt").write_text("old")
    with pytest.raises(OutputError, match="holds files bertfit did not write"):  # not an earlier output
        classifier.save_pretrained(target, overwrite=True)
    assert {p.name for p in target.iterdir()} == {"notes.txt"}
    (target / "bertfit.json").write_text("{}")  # an earlier model, with a note beside it
    classifier.save_pretrained(target, overwrite=True)
    names = {p.name for p in target.iterdir()}
    assert "notes.txt" not in names
    assert {"bertfit.json", "config.json", "model.safetensors"} <= names
    assert TextClassifier.from_pretrained(target).predict(TEXTS) == classifier.predict(TEXTS)
    assert _leftovers(tmp_path, "model") == []


def test_save_into_an_empty_existing_folder_needs_no_overwrite(classifier, tmp_path):
    (tmp_path / "model").mkdir()
    classifier.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file()


def _fail(*args, **kwargs):
    raise RuntimeError("disk full (simulated)")


def test_failed_save_leaves_no_folder_and_no_staging(classifier, tmp_path, monkeypatch):
    monkeypatch.setattr(classifier.tokenizer, "save_pretrained", _fail)
    with pytest.raises(RuntimeError, match="simulated"):
        classifier.save_pretrained(tmp_path / "model")
    assert not (tmp_path / "model").exists()
    assert list(tmp_path.iterdir()) == []


def test_saved_files_are_readable_as_the_umask_allows(classifier, tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        classifier.save_pretrained(tmp_path / "model")
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "model").iterdir()}
    assert modes["model.safetensors"] == 0o644, modes  # safetensors itself writes 0600
    assert set(modes.values()) == {0o644}


def test_a_full_disk_while_saving_keeps_the_old_folder(classifier, tmp_path, monkeypatch):
    import errno

    target = tmp_path / "model"
    classifier.save_pretrained(target)
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(classifier.tokenizer, "save_pretrained", full)
    with pytest.raises(OutputError, match="No space left on device"):
        classifier.save_pretrained(target, overwrite=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert _leftovers(tmp_path, "model") == []


def test_failed_overwrite_keeps_the_old_folder(classifier, tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "bertfit.json").write_text("old")  # an earlier model
    monkeypatch.setattr(classifier.tokenizer, "save_pretrained", _fail)
    with pytest.raises(RuntimeError, match="simulated"):
        classifier.save_pretrained(target, overwrite=True)
    assert [p.name for p in target.iterdir()] == ["bertfit.json"] and (target / "bertfit.json").read_text() == "old"
    assert _leftovers(tmp_path, "model") == []
