"""The model card (README.md) every saved folder gets: its YAML read back and checked against bertfit.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from bertfit.card import EMBEDDED_HUB_NAME, model_card
from bertfit.folder import read_meta
from bertfit.record import DataReport, ModelRecord, Task
from bertfit.staging import final_name


def _card(folder: Path) -> ModelCard:
    return ModelCard.load(folder / "README.md")


def test_a_trained_folder_has_a_card_whose_metrics_are_bertfit_json_s(trained_dir):
    card = _card(trained_dir)
    record = json.loads((trained_dir / "bertfit.json").read_text())
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-classification"
    assert card.data.model_name == trained_dir.name  # the final name, not the staging folder's
    results = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert set(results) >= {"accuracy", "f1_macro"}
    for key, value in results.items():
        assert value == pytest.approx(record["metrics"]["test"][key], abs=5e-5)
    assert all(result.dataset_split == "test" for result in card.data.eval_results)
    assert card.data.base_model is None  # a local folder is not a hub name
    for label in record["labels"]:
        assert f"`{label}`" in card.text
    baseline = record["baseline"]["test"]["accuracy"]
    assert f"{baseline:.4f}" in card.text  # the TF-IDF baseline beside the model's score
    assert "## Intended use and limits" in card.text


def test_export_and_distill_write_their_own_cards(trained_dir, data_csv, tmp_path):
    from bertfit.export.onnx import export
    from bertfit.training.distill import distill

    export(trained_dir, tmp_path / "onnx")
    assert _card(tmp_path / "onnx").data.model_name == "onnx"
    distill(trained_dir, data_csv, tmp_path / "student", student_layers=1, epochs=1, progress=False, report=False)
    card = _card(tmp_path / "student")
    record = read_meta(tmp_path / "student")
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == pytest.approx(
        record.metrics["test"]["accuracy"], abs=5e-5)
    assert "distilled from" in card.text


def _record(**changes) -> ModelRecord:
    record = ModelRecord(labels=["a", "b"], base_model="embedded:all-MiniLM-L6-v2", max_length=256,
                         metrics={"test": {"accuracy": 0.81, "f1_macro": 0.8}},
                         baseline={"test": {"accuracy": 0.85, "f1_macro": 0.84}},
                         data=DataReport(source="data/reviews.csv", rows={"train": 70, "validation": 15, "test": 15},
                                         class_balance={"test": {"a": 12, "b": 3}},
                                         too_long={"train": 7, "test": 2}))
    return dataclasses.replace(record, **changes)


def test_the_limits_are_the_ones_the_run_shows():
    text = ModelCard(model_card(_record(), "reviews-model")).text
    assert "fewer than 10 test rows, whose scores say little: b" in text
    assert "texts longer than 256 tokens (train 7, test 2) were cut" in text
    assert "the TF-IDF baseline scored 0.8500 against this model's 0.8100" in text
    clean = _record(baseline={"test": {"accuracy": 0.5}}, data=DataReport(source="x.csv"))
    text = ModelCard(model_card(clean, "m")).text
    assert "baseline scored" not in text and "texts longer than" not in text


def test_the_embedded_default_and_hub_names_become_base_model_and_multi_label_reports_micro_f1():
    assert ModelCard(model_card(_record(), "m")).data.base_model == EMBEDDED_HUB_NAME
    hub = ModelCard(model_card(_record(base_model="google-bert/bert-base-uncased"), "m"))
    assert hub.data.base_model == "google-bert/bert-base-uncased"
    multi = _record(task=Task.MULTI_LABEL, metrics={"test": {"f1_micro": 0.7, "f1_macro": 0.6}})
    card = ModelCard(model_card(multi, "m"))
    assert {r.metric_type for r in card.data.eval_results} == {"f1_micro", "f1_macro"}
    assert "multi-label" in card.data.tags


def test_a_record_without_scores_still_makes_a_valid_card():
    card = ModelCard(model_card(ModelRecord(labels=["x", "y"]), "bare"))
    assert card.data.eval_results is None and "# bare" in card.text


def test_final_name_reads_through_the_staging_folder(tmp_path):
    assert final_name(tmp_path / ".my-model.tmp-1234") == "my-model"
    assert final_name(tmp_path / "my-model") == "my-model"
    assert final_name(tmp_path / ".hidden") == ".hidden"


def test_a_metric_the_test_split_could_not_give_is_a_dash():
    # a test split holding one class of two has no ROC AUC: null in bertfit.json, "-" in the card
    record = _record(metrics={"test": {"accuracy": 1.0, "f1_macro": 1.0, "auc": None}})
    card = ModelCard(model_card(record, "m"))
    assert "| ROC AUC | - |" in card.text
    assert {r.metric_type for r in card.data.eval_results} == {"accuracy", "f1_macro"}
