"""Training: freezing by --train-layers, the best epoch restored, seeds, overfitting, clean failure."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from bertfit.errors import OutputError, TrainingError, UsageError
from bertfit.model import TextClassifier
from bertfit.training.backbone import count_parameters, default_learning_rate, freeze, load_base
from bertfit.training.run import train
from conftest import assert_kept_by_accuracy_then_loss

LABELS = ("billing", "sales", "tech")
FAST = {"epochs": 2, "learning_rate": 1e-2, "batch_size": 8, "patience": 0}


def trainable_names(model) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "spec, expect_trained, expect_frozen",
    [
        ("head", ["classifier."], ["bert.pooler.", "bert.encoder.layer.1.", "bert.embeddings."]),
        ("pooler", ["classifier.", "bert.pooler."], ["bert.encoder.layer.1.", "bert.embeddings."]),
        ("1", ["classifier.", "bert.pooler.", "bert.encoder.layer.1."], ["bert.encoder.layer.0.", "bert.embeddings."]),
        ("2", ["bert.encoder.layer.0.", "bert.encoder.layer.1."], ["bert.embeddings."]),
        ("all", ["classifier.", "bert.embeddings.", "bert.encoder.layer.0."], []),
    ],
)
def test_freeze_trains_exactly_the_named_parts(tiny_model_dir, spec, expect_trained, expect_frozen):
    model, _ = load_base(str(tiny_model_dir), LABELS)
    model = freeze(model, spec)
    trained = trainable_names(model)
    for prefix in expect_trained:
        assert any(name.startswith(prefix) for name in trained), (spec, prefix)
    for prefix in expect_frozen:
        assert not any(name.startswith(prefix) for name in trained), (spec, prefix)


def test_all_without_train_embeddings_keeps_only_the_word_table(tiny_model_dir):
    model, _ = load_base(str(tiny_model_dir), LABELS)
    everything = trainable_names(model)
    trained = trainable_names(freeze(model, "all", train_embeddings=False))
    assert everything - trained == {"bert.embeddings.word_embeddings.weight"}


@pytest.mark.parametrize("train_embeddings", [False, True])
def test_the_word_table_is_saved_as_pretrained_unless_trained(tiny_model_dir, data_csv, tmp_path, train_embeddings):
    import torch

    base, _ = load_base(str(tiny_model_dir), LABELS)
    before = base.get_input_embeddings().weight.detach().clone()
    result = train(data_csv, tmp_path / "m", model=str(tiny_model_dir), progress=False,
                   train_embeddings=train_embeddings, **FAST)
    after = result.classifier.model.get_input_embeddings().weight.detach()
    assert torch.equal(before, after) is not train_embeddings
    assert result.classifier.meta["settings"]["train"]["train_embeddings"] is train_embeddings


def test_freeze_counts_grow_with_more_layers(tiny_model_dir):
    counts = []
    for spec in ("head", "pooler", "1", "2", "all"):
        model, _ = load_base(str(tiny_model_dir), LABELS)
        counts.append(count_parameters(freeze(model, spec))[0])
    assert counts == sorted(counts) and len(set(counts)) == 5


def test_freeze_more_layers_than_the_model_has_is_a_usage_error(tiny_model_dir):
    model, _ = load_base(str(tiny_model_dir), LABELS)
    with pytest.raises(UsageError, match="more than the model's 2 encoder layers"):
        freeze(model, "3")


def test_lora_trains_few_parameters_and_saves_a_plain_model(tiny_model_dir, data_csv, tmp_path):
    pytest.importorskip("peft")
    model, _ = load_base(str(tiny_model_dir), LABELS)
    total = count_parameters(model)[1]
    lora = freeze(model, "lora", lora_r=4, lora_alpha=8)
    assert 0 < count_parameters(lora)[0] < total / 2
    result = train(data_csv, tmp_path / "m", model=str(tiny_model_dir), train_layers="lora", progress=False, **FAST)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "lora" not in (tmp_path / "m" / "model.safetensors").read_bytes()[:20000].decode("latin1")
    assert saved["id2label"] == {"0": "billing", "1": "sales", "2": "tech"}
    assert TextClassifier.from_pretrained(tmp_path / "m").predict(["refund please"])[0] in LABELS
    assert result.classifier.meta["settings"]["train"]["train_layers"] == "lora"


def test_best_epoch_weights_are_the_ones_saved(trained_dir):
    """The saved model reproduces the validation loss recorded for the best epoch."""
    classifier = TextClassifier.from_pretrained(trained_dir)
    meta = classifier.meta
    best = next(h for h in meta["history"] if h["epoch"] == meta["best_epoch"])
    assert_kept_by_accuracy_then_loss(best, meta["history"])
    assert meta["metrics"]["validation"]["loss"] == pytest.approx(best["validation"]["loss"])


def test_saved_validation_loss_matches_a_fresh_evaluation(tiny_model_dir, rows, tmp_path):
    from bertfit.config import DataConfig
    from bertfit.data.cleaning import prepare

    prepared = prepare(rows, DataConfig())
    # Uncalibrated, so the saved model's loss is the one Trainer measured when it chose the epoch.
    result = train(prepared, tmp_path / "m", model=str(tiny_model_dir), progress=False,
                   **{**FAST, "epochs": 4, "calibrate": False})
    again = TextClassifier.from_pretrained(tmp_path / "m").evaluate(
        prepared.validation["text"].tolist(), prepared.validation["label"].tolist())
    assert again["loss"] == pytest.approx(result.validation["loss"], rel=1e-4)
    # and the test split was scored by the same path the saved model predicts with
    test_again = TextClassifier.from_pretrained(tmp_path / "m").evaluate(
        prepared.test["text"].tolist(), prepared.test["label"].tolist())
    assert test_again["accuracy"] == result.test["accuracy"]
    assert test_again["loss"] == pytest.approx(result.test["loss"], rel=1e-4)


def test_same_seed_same_metrics_other_seed_differs(tiny_model_dir, data_csv):
    runs = [train(data_csv, None, model=str(tiny_model_dir), seed=seed, progress=False, **FAST) for seed in (7, 7, 8)]
    first, same, other = ([h["validation"]["loss"] for h in r.history] for r in runs)
    assert first == pytest.approx(same, abs=1e-6)
    assert first != pytest.approx(other, abs=1e-6)


def test_training_learns_well_past_chance(trained_dir):
    meta = TextClassifier.from_pretrained(trained_dir).meta
    history = meta["history"]
    chance = math.log(len(meta["labels"]))  # the cross-entropy of a uniform guess over 3 classes
    assert history[0]["train_loss"] > 0.9 * chance  # it starts near chance ...
    assert history[-1]["train_loss"] < 0.8 * chance  # ... and ends clearly below it
    best = next(h for h in history if h["epoch"] == meta["best_epoch"])
    assert best["validation"]["loss"] < 0.8 * chance
    assert best["validation"]["accuracy"] >= 0.6  # chance is 1/3


def test_early_stopping_stops_before_the_last_epoch(tiny_model_dir, data_csv):
    # lr 0 keeps validation loss flat, so nothing improves after epoch 1 and patience 1 stops at epoch 2.
    result = train(data_csv, None, model=str(tiny_model_dir), epochs=6, patience=1, learning_rate=1e-12,
                   progress=False)
    assert len(result.history) == 2


def test_max_length_above_the_model_limit_is_refused(tiny_model_dir, data_csv):
    with pytest.raises(UsageError, match="above the model's limit of 64"):
        train(data_csv, None, model=str(tiny_model_dir), max_length=1000, progress=False)


def test_unknown_setting_is_refused(data_csv):
    with pytest.raises(UsageError, match="unknown setting"):
        train(data_csv, None, epoch=3)


def test_existing_output_is_refused_before_training(data_csv, tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    monkeypatch.setattr("bertfit.training.run.fit", lambda *a, **k: pytest.fail("trained before checking --out"))
    with pytest.raises(OutputError, match="--overwrite"):
        train(data_csv, tmp_path / "m")
    assert (tmp_path / "m" / "keep.txt").read_text() == "mine"


def test_interrupt_leaves_no_model_and_no_checkpoints(tiny_model_dir, data_csv, tmp_path, monkeypatch):
    from transformers import Trainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train", interrupted)
    with pytest.raises(TrainingError, match="interrupted"):
        train(data_csv, tmp_path / "m", model=str(tiny_model_dir), progress=False, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_default_learning_rate_follows_width():
    assert default_learning_rate(384) == 1e-4
    assert default_learning_rate(768) == 5e-5
    assert default_learning_rate(1024) == 2e-5


def test_precision_auto_follows_the_cpu(monkeypatch):
    import torch

    from bertfit import backends

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    assert backends.resolve_precision("auto") == "fp32"  # falls back where bf16 is not native
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    assert backends.resolve_precision("auto") == "bf16"
    assert backends.resolve_precision("fp32") == "fp32"


def test_bf16_and_bucketing_train_and_predict_like_the_saved_model(tiny_model_dir, rows, tmp_path):
    from bertfit.config import DataConfig
    from bertfit.data.cleaning import prepare

    prepared = prepare(rows, DataConfig())
    result = train(prepared, tmp_path / "m", model=str(tiny_model_dir), precision="bf16", bucket_by_length=True,
                   progress=False, **FAST)
    saved = TextClassifier.from_pretrained(tmp_path / "m")
    assert saved.meta["precision"] == "bf16"
    again = saved.evaluate(prepared.test["text"].tolist(), prepared.test["label"].tolist())
    assert again["accuracy"] == result.test["accuracy"]
    assert again["loss"] == pytest.approx(result.test["loss"], rel=1e-3)
    assert len(result.history) == FAST["epochs"] and result.history[-1]["train_loss"] < 1.2


@pytest.mark.parametrize("kind", ["plain", "window", "multi-label", "encode-once"])
def test_the_kept_epochs_validation_logits_are_the_saved_models(tiny_model_dir, rows, kind, monkeypatch):
    """Decisions after training read the logits training scored, which the kept weights reproduce."""
    from bertfit.config import DataConfig, TrainConfig
    from bertfit.data.cleaning import prepare
    from bertfit.training.run import conclude, fit_model

    frame, options = rows.copy(), {}
    if kind == "window":
        frame["text"] = frame["text"] + " " + frame["text"].str.repeat(3)
        options = {"max_length": 12, "long_text": "window", "stride": 2}
    elif kind == "multi-label":
        frame["label"] = frame["label"] + frame.index.map(lambda i: "|urgent" if i % 3 == 0 else "")
    elif kind == "encode-once":
        options = {"train_layers": "1"}
    data = DataConfig(label_sep="|" if kind == "multi-label" else None)
    prepared = prepare(frame, data)
    config = TrainConfig(model=str(tiny_model_dir), **{**FAST, "epochs": 3, "baseline": False, "report": False},
                         **options)
    fitted = fit_model(prepared, config, data_config=data, progress=False)
    assert fitted.validation_logits is not None and len(fitted.history) == 3
    texts = prepared.validation["text"].tolist()
    np.testing.assert_allclose(fitted.validation_logits, fitted.classifier.logits(texts), atol=1e-4)
    scored = []
    real = TextClassifier.logits
    monkeypatch.setattr(TextClassifier, "logits", lambda self, t, *a, **k: scored.append(len(t)) or real(self, t, *a,
                                                                                                          **k))
    conclude(fitted, prepared, config, None, progress=False)
    assert scored == [len(prepared.test)]  # validation was not scored again, the test split once


@pytest.mark.parametrize("train_layers", ["all", "head"])
def test_batch_sizes_beyond_the_rows_train_as_one_batch(tiny_model_dir, data_csv, train_layers):
    """A batch size the checks accept never fails for its size alone: batches stop at the split's rows."""
    huge = 10**12
    result = train(data_csv, None, model=str(tiny_model_dir), progress=False, train_layers=train_layers,
                   **{**FAST, "epochs": 1, "batch_size": huge, "eval_batch_size": huge})
    assert len(result.history) == 1 and math.isfinite(result.validation["loss"])
    assert result.classifier.meta["settings"]["train"]["eval_batch_size"] == huge  # recorded as asked


def test_class_weights_far_apart_are_refused_before_the_model_loads(tiny_model_dir, data_csv, tmp_path, monkeypatch):
    weights = tmp_path / "cw.json"
    weights.write_text(json.dumps({"billing": 1e308}))  # the labels not named weigh 1
    monkeypatch.setattr("bertfit.training.stages.load_base", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(UsageError, match=r"'billing' weighs 1e\+308 and .* only the ratios count"):
        train(data_csv, None, model=str(tiny_model_dir), class_weights=str(weights), progress=False, **FAST)


def test_huge_class_weights_are_scaled_and_train_to_finite_losses(tiny_model_dir, data_csv, tmp_path):
    weights = tmp_path / "cw.json"
    weights.write_text(json.dumps({"billing": 1e308, "sales": 1e308, "tech": 5e307}))
    result = train(data_csv, tmp_path / "m", model=str(tiny_model_dir), class_weights=str(weights), progress=False,
                   **{**FAST, "epochs": 1})
    assert math.isfinite(result.history[0]["train_loss"]) and math.isfinite(result.validation["loss"])
    assert result.classifier.meta["class_weights"] == pytest.approx([1.0, 1.0, 0.5])  # the same ratios


def test_texts_without_words_train_without_the_baseline_rather_than_fail(tiny_model_dir, caplog):
    import pandas as pd

    faces = ["😀", "😃", "😄", "😁", "😆", "😅", "🤣", "😂", "🙂", "🙃", "😉", "😊"]
    sad = ["😢", "😭", "😞", "😔", "😟", "😕", "🙁", "☹️", "😣", "😖", "😫", "😩"]
    rows = pd.DataFrame({"text": [a + b for a in faces for b in faces[:4]] + [a + b for a in sad for b in sad[:4]],
                         "label": ["happy"] * 48 + ["sad"] * 48})
    result = train(rows, out=None, progress=False, model=str(tiny_model_dir), report=False, **FAST)
    assert result.baseline is None and result.test["accuracy"] >= 0
    assert "no TF-IDF baseline" in caplog.text
    # every emoji is the tiny vocabulary's [UNK]: said before training, and kept with the model
    unreadable = [note for note in result.classifier.record.notes if note.startswith("unreadable text")]
    assert unreadable and "100% of the training tokens" in unreadable[0] and unreadable[0] in caplog.text


def test_unknown_tokens_are_counted_without_the_special_ones(trained_dir):
    from bertfit.encoding import unknown_tokens_note
    from conftest import tiny_tokenizer

    tokenizer = tiny_tokenizer()

    def note(*texts):
        return unknown_tokens_note(tokenizer, tokenizer(list(texts))["input_ids"])

    assert note("refund my card", "printer crash") is None
    assert "67% of the training tokens" in note("refund 退款 card 退款")  # 4 of 6 tokens
    # 1 unknown of 10 words: the share at which the note starts, reached only with [CLS] and [SEP] left out
    assert "10% of the training tokens" in note("refund my card refund my card refund my card 😀")
    assert note("refund my card refund my card refund my card refund 😀") is None  # 1 of 11
    # words the vocabulary holds: no note on the model trained from them
    assert not any(n.startswith("unreadable") for n in TextClassifier.from_pretrained(trained_dir).record.notes)


def test_a_run_whose_outputs_stop_being_numbers_fails_in_one_line_and_saves_nothing(tiny_model_dir, data_csv, tmp_path):
    from bertfit.errors import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="lower --learning-rate or --weight-decay"):
        train(data_csv, tmp_path / "m", model=str(tiny_model_dir), weight_decay=1e308, progress=False,
              **{**FAST, "epochs": 1})
    assert list(tmp_path.iterdir()) == []  # no model, no checkpoints


@pytest.mark.parametrize("setting", [{"weight_decay": float("inf")}, {"warmup_ratio": float("nan")},
                                     {"head_lr_scale": float("inf")}])
def test_numbers_that_are_not_finite_are_refused_before_anything_loads(data_csv, setting):
    flag = "--" + next(iter(setting)).replace("_", "-")
    with pytest.raises(UsageError, match=f"{flag} must be a finite number"):
        train(data_csv, None, progress=False, **setting)
