"""The per-epoch history and the overfitting note (bertfit.epochs), on hand-written Trainer logs."""

from __future__ import annotations

import pytest

from bertfit.epochs import epoch_history, overfitting_note


def _history(val, train_loss):
    return [{"epoch": i + 1, "train_loss": t, "validation": {"loss": v}}
            for i, (v, t) in enumerate(zip(val, train_loss, strict=True))]


def test_overfitting_note_names_the_best_epoch():
    note = overfitting_note(_history([0.5, 0.4, 0.45, 0.5], [0.6, 0.3, 0.2, 0.1]))
    assert note is not None and "epoch 2" in note and "overfit" in note


@pytest.mark.parametrize(
    "val, train_loss",
    [
        ([0.5, 0.4, 0.45], [0.6, 0.3, 0.2]),  # rose once only
        ([0.5, 0.4, 0.3, 0.2], [0.6, 0.5, 0.4, 0.3]),  # still improving
        ([0.5, 0.4, 0.45, 0.5], [0.6, 0.3, 0.35, 0.4]),  # both rose: not the overfitting pattern
    ],
)
def test_overfitting_note_is_silent_otherwise(val, train_loss):
    assert overfitting_note(_history(val, train_loss)) is None


def test_epoch_history_folds_trainer_logs():
    logs = [
        {"loss": 1.0, "epoch": 1.0, "step": 5},
        {"eval_loss": 0.9, "eval_accuracy": 0.5, "eval_runtime": 0.1, "epoch": 1.0},
        {"loss": 0.7, "epoch": 2.0},
        {"eval_loss": 0.8, "eval_accuracy": 0.6, "eval_runtime": 0.1, "epoch": 2.0},
        {"train_runtime": 3.0, "epoch": 2.0},
    ]
    assert epoch_history(logs) == [
        {"epoch": 1, "train_loss": 1.0, "validation": {"loss": 0.9, "accuracy": 0.5}},
        {"epoch": 2, "train_loss": 0.7, "validation": {"loss": 0.8, "accuracy": 0.6}},
    ]
