"""Encode once: the cached top computes what the full model computes, and trains the full model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertfit.config import DataConfig
from bertfit.data.cleaning import prepare
from bertfit.model import TextClassifier
from bertfit.training.backbone import encoder_layers, freeze, load_base
from bertfit.training.cached import CachedStates, TrainableTop, collate, encode_frozen, frozen_layer_count
from bertfit.training.run import train
from conftest import assert_kept_by_accuracy_then_loss

LABELS = ("billing", "sales", "tech")
TEXTS = ["refund please", "the screen is broken again and it will not reboot today", "buy", "a demo plan quote"]


@pytest.mark.parametrize(
    "spec, frozen", [("head", 2), ("pooler", 2), ("1", 1), ("2", 0), ("all", None), ("lora", None)]
)
def test_frozen_layer_count(tiny_model_dir, spec, frozen):
    model, _ = load_base(str(tiny_model_dir), LABELS)
    assert frozen_layer_count(model, spec, 2) == frozen


@pytest.mark.parametrize("spec", ["head", "pooler", "1", "2"])
def test_cached_top_gives_the_full_models_logits(tiny_model_dir, spec):
    model, tokenizer = load_base(str(tiny_model_dir), LABELS)
    model = freeze(model, spec).eval()
    layers = encoder_layers(model)
    frozen = frozen_layer_count(model, spec, len(layers))
    encoded = tokenizer(TEXTS)
    states = encode_frozen(model, encoded, frozen, first_token_only=frozen == len(layers), batch_size=3)
    top = TrainableTop(model, layers, frozen).eval()
    batch = collate([{"hidden_states": states[i], "labels": 0} for i in range(len(TEXTS))])
    with torch.no_grad():
        cached = top(batch["hidden_states"], batch["attention_mask"]).logits
        full = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    assert torch.allclose(cached, full, atol=1e-5)


def test_cache_keeps_text_order_and_lengths(tiny_model_dir):
    model, tokenizer = load_base(str(tiny_model_dir), LABELS)
    encoded = tokenizer(TEXTS)
    states = encode_frozen(model, encoded, 1, first_token_only=False, batch_size=2)
    assert list(states.lengths()) == [len(ids) for ids in encoded["input_ids"]]
    for i, text in enumerate(TEXTS):  # each text alone gives the same states as in the sorted batches
        alone = encode_frozen(model, tokenizer([text]), 1, first_token_only=False)
        np.testing.assert_allclose(states[i], alone[0], atol=1e-5)


def test_cache_spills_to_disk_when_large(tiny_model_dir, monkeypatch):
    monkeypatch.setattr("bertfit.training.cached.SPILL_BYTES", 16)
    model, tokenizer = load_base(str(tiny_model_dir), LABELS)
    states = encode_frozen(model, tokenizer(TEXTS), 2, first_token_only=True)
    assert isinstance(states.rows, np.memmap)
    assert isinstance(states, CachedStates) and len(states) == len(TEXTS)


@pytest.mark.parametrize("spec", ["pooler", "1"])
def test_encode_once_trains_the_saved_model_and_restores_the_best_epoch(tiny_model_dir, rows, tmp_path, spec):
    prepared = prepare(rows, DataConfig())
    result = train(prepared, tmp_path / "m", model=str(tiny_model_dir), train_layers=spec, epochs=4,
                   learning_rate=1e-2, batch_size=8, patience=0, progress=False)
    saved = TextClassifier.from_pretrained(tmp_path / "m")
    again = saved.evaluate(prepared.validation["text"].tolist(), prepared.validation["label"].tolist())
    assert again["loss"] == pytest.approx(result.validation["loss"], rel=1e-4)
    assert_kept_by_accuracy_then_loss(result.history[result.best_epoch - 1], result.history)
    assert result.validation == result.history[result.best_epoch - 1]["validation"]
    base, _ = load_base(str(tiny_model_dir), LABELS)
    # the frozen bottom is untouched: embeddings equal the base checkpoint's
    assert torch.equal(saved.model.bert.embeddings.word_embeddings.weight, base.bert.embeddings.word_embeddings.weight)


def test_encode_once_matches_the_plain_path_without_dropout(tiny_model_dir, rows, tmp_path):
    """With dropout off, caching changes nothing: the same seed gives the same validation losses."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    config = BertConfig.from_pretrained(tiny_model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel.from_pretrained(tiny_model_dir, config=config).save_pretrained(tmp_path / "no-dropout")
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(tmp_path / "no-dropout")
    prepared = prepare(rows, DataConfig())
    losses = []
    for encode_once in (True, False):
        result = train(prepared, None, model=str(tmp_path / "no-dropout"), train_layers="1",
                       encode_once=encode_once, epochs=2, learning_rate=1e-2, batch_size=8, patience=0,
                       bucket_by_length=False, progress=False)  # the cached path never buckets: same order
        losses.append([h["validation"]["loss"] for h in result.history])
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


def test_runs_sharing_encodings_tokenize_and_encode_the_frozen_bottom_once(tiny_model_dir, rows, monkeypatch):
    import shutil

    from bertfit.config import TrainConfig
    from bertfit.training import stages
    from bertfit.training.run import fit_model

    calls = {"tokenize": 0, "frozen": 0}
    real_split, real_frozen = stages.encode_split, stages.encode_frozen

    def count(name, real):
        def counted(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return counted

    monkeypatch.setattr(stages, "encode_split", count("tokenize", real_split))
    monkeypatch.setattr(stages, "encode_frozen", count("frozen", real_frozen))
    prepared = prepare(rows, DataConfig())
    kept: dict = {}
    results = []
    for rate in (1e-3, 3e-3):  # two trials of one study: other settings, the same base and splits
        config = TrainConfig(model=str(tiny_model_dir), train_layers="pooler", epochs=1, learning_rate=rate,
                             max_length=16, baseline=False, report=False)
        fitted = fit_model(prepared, config, None, progress=False, encodings=kept)
        shutil.rmtree(fitted.checkpoints, ignore_errors=True)
        results.append(fitted.best["validation"]["loss"])
    assert calls == {"tokenize": 3, "frozen": 2}  # three splits tokenized, train and validation encoded: once
    assert results[0] != results[1]  # the second run trained with its own settings
