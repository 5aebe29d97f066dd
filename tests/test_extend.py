"""More epochs for a run still improving when its plan ends: when it goes on, how far, and what it keeps."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bertfit.config import TrainConfig
from bertfit.training import extend
from bertfit.training.epochs import SelectionScore, selection_score
from bertfit.training.extend import extend_while_improving, round_epochs, still_rising
from conftest import assert_kept_by_accuracy_then_loss


def _history(values):
    return [{"epoch": i + 1, "validation": {"accuracy": v, "loss": 1 - v}} for i, v in enumerate(values)]


def test_still_rising_needs_the_last_epoch_best_a_point_gained_and_a_lower_loss():
    assert still_rising(_history([0.5, 0.6, 0.7]), "accuracy")
    overfit = _history([0.5, 0.6, 0.7])
    overfit[-1]["validation"]["loss"] = 0.9  # the metric jumped while validation loss climbed
    assert not still_rising(overfit, "accuracy")
    assert not still_rising(_history([0.5, 0.7, 0.705]), "accuracy")  # best, but levelled off
    assert not still_rising(_history([0.5, 0.8, 0.79]), "accuracy")  # the best came earlier
    assert not still_rising(_history([0.5, 0.8, 0.6, 0.7]), "accuracy")  # rising again, still under the best
    assert not still_rising(_history([0.7]), "accuracy")
    assert round_epochs(6) == 3 and round_epochs(3) == 2 and round_epochs(4) == 2


class ScriptedTrainer:
    """Trainer's surface that extend_while_improving uses, with scripted validation accuracies per epoch.

    Each epoch sets the model's one weight to the epoch's accuracy; like Trainer with
    load_best_model_at_end, a round ends with its own best epoch's weights loaded.
    """

    def __init__(self, planned: list[float], later: list[float]):
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.later = list(later)
        self.args = SimpleNamespace(num_train_epochs=len(planned), output_dir="out", seed=1, data_seed=1, world_size=1,
                                    learning_rate=1.0)
        self.callback_handler = SimpleNamespace(callbacks=[SelectionScore("accuracy")])
        self.optimizer = self.lr_scheduler = "used"
        self.state = SimpleNamespace(log_history=[])
        self.rounds: list[int] = []
        self.rates: list[float] = []
        self._epochs(list(planned))

    def add_callback(self, callback):
        self.callback_handler.callbacks.append(callback)

    def remove_callback(self, callback):
        self.callback_handler.callbacks.remove(callback)

    def train(self):
        assert self.optimizer is None and self.lr_scheduler is None  # each round starts a fresh schedule
        self.rounds.append(self.args.num_train_epochs)
        self.rates.append(self.args.learning_rate)
        self.state = SimpleNamespace(log_history=[])
        self._epochs(self.later, self.args.num_train_epochs)

    def _epochs(self, accuracies, count=None):
        """Up to ``count`` epochs, each taking the next scripted accuracy; the round's best weights loaded."""
        best = None
        for epoch in range(1, (count or len(accuracies)) + 1):
            if not accuracies:
                break
            accuracy = accuracies.pop(0)
            metrics = {"eval_loss": 1 - accuracy, "eval_accuracy": accuracy}
            control = SimpleNamespace(should_training_stop=False)
            for callback in self.callback_handler.callbacks:
                callback.on_evaluate(self.args, self.state, control, metrics=metrics)
            self.state.log_history.append({"epoch": float(epoch), **metrics})
            best = accuracy if best is None or accuracy > best else best
            if control.should_training_stop:
                break
        with torch.no_grad():
            self.model.weight.fill_(best)

    def kept(self) -> float:
        return round(float(self.model.weight.detach()), 6)


def _extend(trainer, planned, **settings):
    config = TrainConfig(**settings)
    return extend_while_improving(trainer, config, planned, "accuracy", Path("checkpoints"))


def test_goes_on_while_it_improves_then_keeps_the_best_epoch():
    trainer = ScriptedTrainer([0.5, 0.6, 0.7, 0.75], [0.8, 0.85, 0.84, 0.9])
    assert _extend(trainer, 4) == 3  # round of 2 (0.8, 0.85: still rising), then 0.84 stops the next round
    assert trainer.rounds == [2, 2]
    # each round decays from the rate a plan of all its epochs would have had there; the plan's rate is restored
    assert trainer.rates == [pytest.approx(2 / 6), pytest.approx(2 / 8)] and trainer.args.learning_rate == 1.0
    epochs = [int(r["epoch"]) for r in trainer.state.log_history]
    assert epochs == [1, 2, 3, 4, 5, 6, 7]  # the extra epochs numbered on from the plan's
    assert trainer.kept() == 0.85


def test_puts_the_plans_weights_back_when_no_extra_epoch_beats_them():
    trainer = ScriptedTrainer([0.5, 0.6, 0.7], [0.69, 0.9])
    assert _extend(trainer, 3) == 1 and trainer.kept() == 0.7


def test_never_more_extra_epochs_than_planned():
    trainer = ScriptedTrainer([0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8, 0.9])
    assert _extend(trainer, 3) == 3 and trainer.rounds == [2, 1] and trainer.kept() == 0.7


@pytest.mark.parametrize("settings", [{"epochs": 3}, {"select_by": "loss"}, {"more_epochs": False}])
def test_given_epochs_loss_selection_or_off_train_the_plan_alone(settings):
    trainer = ScriptedTrainer([0.5, 0.6, 0.7], [0.8, 0.9])
    assert _extend(trainer, 3, **settings) == 0 and trainer.rounds == []


def test_a_run_that_stopped_early_or_levelled_off_is_not_extended():
    assert _extend(ScriptedTrainer([0.5, 0.7], [0.8]), 3) == 0  # early stopping ended it before the plan
    assert _extend(ScriptedTrainer([0.5, 0.7, 0.705], [0.8]), 3) == 0


@pytest.mark.parametrize("kind", ["plain", "encode-once"])
def test_an_extended_run_keeps_its_best_epoch_and_that_epochs_logits(tiny_model_dir, rows, monkeypatch, kind):
    """Through Trainer: extra epochs in the history and bertfit.json, the best epoch's weights and logits kept."""
    from bertfit.config import DataConfig
    from bertfit.data.cleaning import prepare
    from bertfit.training.run import fit_model

    calls = []  # rising at the plan's end, then no more: one round of extra epochs
    monkeypatch.setattr(extend, "still_rising", lambda history, metric: calls.append(len(history)) or len(calls) == 1)
    prepared = prepare(rows, DataConfig())
    options = {"train_layers": "1"} if kind == "encode-once" else {}
    config = TrainConfig(model=str(tiny_model_dir), learning_rate=1e-3, batch_size=8, patience=0, baseline=False,
                         report=False, **options)
    fitted = fit_model(prepared, config, progress=False)
    record = fitted.classifier.record
    planned = record.epochs_planned
    assert 1 <= record.epochs_added <= round_epochs(planned) and calls[0] == planned
    assert len(fitted.history) == planned + record.epochs_added
    assert [h["epoch"] for h in fitted.history] == list(range(1, len(fitted.history) + 1))
    assert_kept_by_accuracy_then_loss(fitted.best, fitted.history)
    assert fitted.best["epoch"] == max(fitted.history, key=lambda h: selection_score(h["validation"], "accuracy"))[
        "epoch"]
    texts = prepared.validation["text"].tolist()
    np.testing.assert_allclose(fitted.validation_logits, fitted.classifier.logits(texts), atol=1e-4)
