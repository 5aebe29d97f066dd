"""The per-epoch history and the overfitting note (bertfit.training.epochs), on hand-written Trainer logs."""

from __future__ import annotations

import pytest

from bertfit.training.epochs import (
    EPOCH_BOUNDS,
    cut_short_note,
    epoch_history,
    overfitting_note,
    planned_epochs,
    selection_score,
)


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


@pytest.mark.parametrize("rows, expected", [(420, 6), (1372, 6), (2100, 4), (3600, 3), (9000, 3), (60000, 3)])
def test_planned_epochs_give_small_sets_more_passes_within_bounds(rows, expected):
    assert planned_epochs(rows, batch_size=16) == expected
    assert EPOCH_BOUNDS[0] <= planned_epochs(rows, 16, processes=4) <= EPOCH_BOUNDS[1]
    assert planned_epochs(rows, 16, processes=4) >= planned_epochs(rows, 16)  # fewer steps per epoch


def test_selection_prefers_the_metric_and_breaks_ties_by_loss():
    better_metric = selection_score({"accuracy": 0.91, "loss": 0.9}, "accuracy")
    tied_higher_loss = selection_score({"accuracy": 0.90, "loss": 0.5}, "accuracy")
    tied_lower_loss = selection_score({"accuracy": 0.90, "loss": 0.3}, "accuracy")
    assert better_metric > tied_lower_loss > tied_higher_loss
    # one row of a 99,999-row validation split outweighs any loss difference
    assert selection_score({"accuracy": 0.9 + 1 / 99_999, "loss": 999.0}, "accuracy") > tied_lower_loss
    # a loss that moves in the 6th decimal is a tie: early stopping must see no gain
    assert selection_score({"accuracy": 0.9, "loss": 0.3000001}, "accuracy") == tied_lower_loss


def _scores(values):
    return [{"epoch": i + 1, "validation": {"accuracy": v, "loss": 1 - v}} for i, v in enumerate(values)]


def test_cut_short_note_when_the_last_planned_epoch_is_best_and_rising():
    note = cut_short_note(_scores([0.5, 0.6, 0.7]), "accuracy", planned=3)
    assert note is not None and "0.600 to 0.700" in note and "--epochs 6" in note
    assert cut_short_note(_scores([0.5, 0.7, 0.69]), "accuracy", planned=3) is None  # best was earlier
    assert cut_short_note(_scores([0.5, 0.7, 0.701]), "accuracy", planned=3) is None  # levelled off
    assert cut_short_note(_scores([0.5, 0.6, 0.7]), "accuracy", planned=6) is None  # stopped early
