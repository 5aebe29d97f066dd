"""The contrastive few-shot method: its mean-pooling layer, its pairs, the choice of method, the saved folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from bertfit.config import TrainConfig
from bertfit.data.cleaning import prepare
from bertfit.errors import UsageError
from bertfit.model import TextClassifier
from bertfit.training import contrastive
from bertfit.training.contrastive import choose_method, sample_pairs
from bertfit.training.pooling import append_mean_pooling
from bertfit.training.run import train
from conftest import make_rows

TEXTS = ["refund my payment", "the screen is broken after the update", "a quote for more seats", "please help"]


@pytest.fixture
def few_shot(monkeypatch):
    """auto with its shipped threshold (the suite's conftest turns it off for the fine-tuning tests)."""
    monkeypatch.delenv("BERTFIT_FEW_SHOT_ROWS", raising=False)


@pytest.fixture(scope="module")
def contrastive_dir(tmp_path_factory, tiny_model_dir):
    out = tmp_path_factory.mktemp("contrastive") / "model"
    train(make_rows(per_class=12, seed=3), out, model=str(tiny_model_dir), method="contrastive", progress=False,
          learning_rate=1e-3)
    return out


def test_the_added_layer_gives_the_layer_normalised_mean_of_the_tokens(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=3).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    batch = tokenizer(["invoice refund", "crash error bug install update login please help"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        below = model.base_model(**batch).last_hidden_state  # (batch, seq, hidden), before the layer is added
        append_mean_pooling(model)
        pooled = model.base_model(**batch).pooler_output
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (below * mask).sum(1) / mask.sum(1)  # padding left out, as sentence-transformers' mean pooling
    expected = torch.tanh(torch.nn.functional.layer_norm(mean, mean.shape[-1:]) / mean.shape[-1] ** 0.5)
    assert torch.allclose(pooled, expected, atol=1e-3)
    assert model.config.num_hidden_layers == 3
    assert not any(p.requires_grad for p in model.base_model.pooler.parameters())


def test_the_pairs_train_on_the_same_embedding_the_added_layer_gives(tiny_model_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from bertfit.training.pooling import PooledBody, mean_pooling_layer

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=3).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    batch = tokenizer(["invoice refund", "crash error bug install update login please help", "help"],
                      padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        torch.nn.init.normal_(model.base_model.encoder.layer[-1].output.dense.weight, std=0.5)  # not a trivial body
        layer = mean_pooling_layer(model)
        trained = PooledBody(model.base_model, layer).eval()(**batch)  # the added layer not run: the mean alone
        append_mean_pooling(model, layer)
        saved = model.base_model(**batch).pooler_output
    assert trained.shape == saved.shape == (3, model.config.hidden_size)
    assert torch.allclose(trained, saved, atol=1e-5)
    assert (trained[0] - trained[1]).abs().max() > 1e-2  # distinct texts, distinct embeddings


def test_pairs_are_balanced_labelled_by_the_rows_and_seeded():
    labels = np.array([0] * 5 + [1] * 3 + [2] * 1)
    pairs = sample_pairs(labels, iterations=4, seed=7)
    assert len(pairs) == 2 * 4 * len(labels)
    assert pairs[:, 2].mean() == 0.5
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    assert (same == (pairs[:, 2] == 1)).all()
    positives = pairs[pairs[:, 2] == 1]
    selfish = positives[positives[:, 0] == positives[:, 1]]
    assert set(labels[selfish[:, 0]]) <= {2}  # only the class with one row pairs a row with itself
    assert (sample_pairs(labels, 4, seed=7) == pairs).all()
    assert not (sample_pairs(labels, 4, seed=8) == pairs).all()
    assert len(sample_pairs(labels, 4, seed=7, most=10)) == 10


def test_the_pair_budget_is_the_distinct_pairs_and_the_cap():
    from bertfit.training.contrastive import MAX_PAIRS, pair_budget

    two_by_eight = np.array([0] * 8 + [1] * 8)  # 72 same-label pairs (self included), 64 across: 144
    assert pair_budget(two_by_eight) == 144
    six_by_eight = np.repeat(np.arange(6), 8)  # 216 same, 960 across: 1920 = 20 partners x 48 rows x 2
    assert pair_budget(six_by_eight) == 1920
    assert pair_budget(np.repeat(np.arange(77), 64)) == MAX_PAIRS


def _prepared(per_class: int):
    return prepare(make_rows(per_class=per_class))


@pytest.mark.usefixtures("few_shot")
def test_auto_picks_contrastive_for_few_rows_per_class_and_says_why(tiny_model_dir):
    config = TrainConfig(model=str(tiny_model_dir))
    method, why = choose_method(_prepared(12), config)
    assert method == "contrastive" and "training rows per class, under 30" in why
    method, why = choose_method(_prepared(60), config)
    assert method == "finetune" and "contrastive is chosen below 30" in why
    assert choose_method(_prepared(12), TrainConfig(model=str(tiny_model_dir), method="finetune"))[0] == "finetune"


@pytest.mark.usefixtures("few_shot")
@pytest.mark.parametrize("settings, reason", [
    ({"long_text": "window"}, "--long-text window"),
    ({"train_layers": "2"}, "--train-layers 2"),
])
def test_auto_falls_back_to_finetune_where_contrastive_does_not_apply(tiny_model_dir, settings, reason):
    method, why = choose_method(_prepared(12), TrainConfig(model=str(tiny_model_dir), **settings))
    assert method == "finetune" and reason in why
    with pytest.raises(UsageError, match="--method contrastive does not apply.*use --method finetune"):
        choose_method(_prepared(12), TrainConfig(model=str(tiny_model_dir), method="contrastive", **settings))


@pytest.mark.usefixtures("few_shot")
def test_multi_label_and_pairs_fall_back_to_finetune(tiny_model_dir):
    rows = make_rows(per_class=12)
    multi = rows.assign(label=[[label] for label in rows["label"]])
    method, why = choose_method(prepare(multi), TrainConfig(model=str(tiny_model_dir)))
    assert method == "finetune" and "multi-label" in why
    pairs = rows.assign(text_pair=rows["text"].str.upper() + " again")
    method, why = choose_method(prepare(pairs), TrainConfig(model=str(tiny_model_dir)))
    assert method == "finetune" and "sentence pairs" in why
    assert choose_method(_prepared(12), TrainConfig(model=str(tiny_model_dir)), resume=True)[0] == "finetune"


def test_contrastive_folder_says_which_method_ran_and_learns(contrastive_dir):
    record = json.loads((contrastive_dir / "bertfit.json").read_text())
    assert record["method"]["name"] == "contrastive"
    assert record["method"]["pairs_per_epoch"] > 0
    assert record["settings"]["train"]["method"] == "contrastive"
    # Validation chose nothing, so it trained too: in-sample figures, said so, and no temperature fitted on them.
    assert record["method"]["validation_trained_on"] is True and "in-sample" in record["notes"][0]
    assert "calibration" not in record and record["settings"]["train"]["calibrate"] is False
    # The three classes have their own words: the head on the embeddings separates them.
    assert record["metrics"]["test"]["accuracy"] >= 0.8
    assert record["baseline"]["test"]["accuracy"] > 0  # the TF-IDF baseline sits beside it, as for fine-tuning
    assert (contrastive_dir / "report.html").exists()


def test_the_contrastive_folder_loads_in_pipeline_with_the_same_labels_and_scores(contrastive_dir):
    import transformers

    classifier = TextClassifier.from_pretrained(contrastive_dir)
    pipe = transformers.pipeline("text-classification", model=str(contrastive_dir), device="cpu")
    outputs = pipe(TEXTS)
    assert [o["label"] for o in outputs] == classifier.predict(TEXTS)
    logits = classifier.logits(TEXTS)
    plain = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # pipeline leaves the temperature out
    assert [o["score"] for o in outputs] == pytest.approx(plain.max(axis=1).tolist(), abs=1e-5)


def test_the_contrastive_folder_exports_to_int8_within_its_check(contrastive_dir, tmp_path):
    from bertfit.export.onnx import export

    result = export(contrastive_dir, tmp_path / "int8", quantize="int8")
    exported = TextClassifier.from_pretrained(tmp_path / "int8")
    torch_labels = TextClassifier.from_pretrained(contrastive_dir).predict(TEXTS)
    assert result.check["onnx"] >= result.check["torch"] - 0.01
    assert np.mean(np.array(exported.predict(TEXTS)) == np.array(torch_labels)) >= 0.75


def test_a_contrastive_teacher_distils_into_a_smaller_student(contrastive_dir, tmp_path):
    from bertfit.training.distill import distill

    rows = make_rows(per_class=12, seed=3)
    result = distill(contrastive_dir, rows, tmp_path / "student", student_layers=2, epochs=1, progress=False,
                     report=False, baseline=False)
    record = json.loads((tmp_path / "student" / "bertfit.json").read_text())
    assert record["distilled"]["kept_layers"][-1] == 2  # the top layer, the mean pooling, is kept
    assert record["settings"]["train"]["method"] == "finetune"
    assert len(result.classifier.predict(TEXTS)) == len(TEXTS)
    with pytest.raises(UsageError, match="does not apply"):
        distill(contrastive_dir, rows, tmp_path / "again", student_layers=2, method="contrastive", progress=False)


def test_a_binary_head_keeps_the_regression_probabilities(tiny_model_dir, tmp_path):
    rows = make_rows(per_class=10, seed=5)
    rows = rows[rows["label"] != "sales"].reset_index(drop=True)
    result = train(rows, tmp_path / "binary", model=str(tiny_model_dir), method="contrastive", calibrate=False,
                   progress=False, report=False, baseline=False)
    proba = result.classifier.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert result.summary()["method"] == "contrastive"


def test_cli_refuses_contrastive_on_multi_label_in_one_line(tiny_model_dir, tmp_path, capsys):
    from bertfit.cli import main

    rows = make_rows(per_class=8)
    data = tmp_path / "multi.jsonl"
    pd.DataFrame({"text": rows["text"], "label": [[label] for label in rows["label"]]}).to_json(
        data, orient="records", lines=True)
    code = main(["train", str(data), "--model", str(tiny_model_dir), "--method", "contrastive",
                 "--out", str(tmp_path / "m"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1
    assert "--method contrastive does not apply: the labels are multi-label" in err[0]
    assert not (tmp_path / "m").exists()


def test_a_bad_threshold_in_the_environment_is_one_clear_error(monkeypatch, tiny_model_dir):
    monkeypatch.setenv("BERTFIT_FEW_SHOT_ROWS", "many")
    with pytest.raises(UsageError, match="BERTFIT_FEW_SHOT_ROWS must be a number"):
        choose_method(_prepared(12), TrainConfig(model=str(tiny_model_dir)))
    assert contrastive.FEW_SHOT_ROWS_PER_CLASS == 30


@pytest.mark.usefixtures("few_shot")
def test_a_non_bert_model_falls_back_to_finetune(tmp_path):
    from transformers import DistilBertConfig

    DistilBertConfig(vocab_size=50, dim=32, n_layers=1, n_heads=2, hidden_dim=64).save_pretrained(str(tmp_path))
    method, why = choose_method(_prepared(12), TrainConfig(model=str(tmp_path)))
    assert method == "finetune" and "the model is a 'distilbert'" in why
