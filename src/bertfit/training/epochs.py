"""What a run says per epoch: one log line, the history kept in ``bertfit.json``, and overfitting.

- :class:`EpochLog`: one line per epoch (training loss, validation loss, headline metrics).
- :func:`metrics_per_text`: Trainer's ``compute_metrics`` for validation, window logits pooled per text;
  :class:`ValidationLogits` keeps each epoch's pooled logits, so the kept epoch's need not be scored again.
- :func:`epoch_history`: Trainer's log records folded into one entry per epoch.
- :func:`overfitting_note`: a plain sentence when validation loss rises while training loss falls.
- :func:`planned_epochs`, :func:`selection_score`, :class:`SelectionScore`, :func:`cut_short_note`: how
  many epochs a run plans, which epoch it keeps, and a sentence when the kept one was the last and still rising.
- :func:`quiet_progress`: Trainer's progress bars on stderr, without its log dicts on stdout.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from bertfit.calibration import plain_softmax
from bertfit.encoding import pool
from bertfit.errors import TrainingDiverged
from bertfit.metrics import classification_metrics, multilabel_metrics
from bertfit.progress import PlainProgress, on_terminal

log = logging.getLogger(__name__)


class EpochLog(TrainerCallback):
    """One log line per epoch: training loss, validation loss and the headline metrics."""

    train_loss: float | None = None
    epoch_offset = 0  # epochs before this Trainer.train call (a run extended past its plan, training.extend)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.train_loss = logs["loss"]

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not metrics or not state.is_world_process_zero:
            return
        auc = metrics.get("eval_auc")
        name = "accuracy" if "eval_accuracy" in metrics else "f1_micro"
        log.info(
            "epoch %d/%d: train loss %s, validation loss %.4f, %s %.3f, F1 macro %.3f, AUC %s",
            round(state.epoch or 0) + self.epoch_offset, args.num_train_epochs + self.epoch_offset,
            f"{self.train_loss:.4f}" if self.train_loss is not None else "n/a",
            metrics["eval_loss"], name.replace("_", " "), metrics[f"eval_{name}"], metrics["eval_f1_macro"],
            f"{auc:.3f}" if auc is not None else "n/a",
        )


class StderrProgress(ProgressCallback):
    """Trainer's progress bars (on stderr) without its habit of printing log dicts to stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


class PlainTrainingProgress(TrainerCallback):
    """Training progress as a plain log line now and then, for a log file or CI (no terminal to redraw)."""

    def on_train_begin(self, args, state, control, **kwargs):
        self.bar = PlainProgress(total=state.max_steps, desc="training", unit="steps") if state.is_world_process_zero \
            else None

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()


def quiet_progress(trainer: Any) -> None:
    """Trainer's bars on stderr (on a terminal) or plain periodic lines (elsewhere), never log dicts on stdout."""
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(StderrProgress if on_terminal() else PlainTrainingProgress)
    trainer.pop_callback(PrinterCallback)


def epoch_history(log_history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trainer's log records folded into one entry per epoch: train loss and validation metrics."""
    by_epoch: dict[int, dict[str, Any]] = {}
    for record in log_history:
        epoch = int(round(record.get("epoch", 0)))
        entry = by_epoch.setdefault(epoch, {"epoch": epoch})
        if "loss" in record:
            entry["train_loss"] = round(float(record["loss"]), 6)
        if "eval_loss" in record:
            entry["validation"] = {
                key[len("eval_"):]: value for key, value in record.items()
                if key.startswith("eval_") and key not in ("eval_runtime", "eval_samples_per_second",
                                                           "eval_steps_per_second")
            }
    return [entry for _, entry in sorted(by_epoch.items()) if "validation" in entry]


MIN_STEPS = 500  # a planned run takes at least this many optimizer steps, within the bounds below
EPOCH_BOUNDS = (3, 6)
LOSS_TIE_BREAK = 1e-7  # selection = metric - this x loss (to 4 places, at most 100): under a row of 100,000


def planned_epochs(rows: int, batch_size: int, processes: int = 1) -> int:
    """Epochs when --epochs is not given: enough for about MIN_STEPS steps, 3 at least (large sets), 6 at most.

    Small sets need more passes for the new head and the body to settle; large ones reach their
    best within a few.
    The learning-rate schedule decays over exactly these epochs, so where training stops the rate is low.
    """
    steps = max(1, -(-rows // (batch_size * processes)))
    low, high = EPOCH_BOUNDS
    return int(min(high, max(low, -(-MIN_STEPS // steps))))


def main_metric(multi_label: bool) -> str:
    return "f1_micro" if multi_label else "accuracy"


def selection_score(validation: dict[str, Any], metric: str) -> float:
    """The kept epoch's score: the main validation metric, the lower loss breaking ties.

    The loss counts to 4 decimal places, so that a loss which barely moves (a learning rate near 0)
    is a tie and early stopping sees no gain; capped at 100 and times 1e-7 it stays below one row's
    worth of accuracy on any validation split under 100,000 rows.
    """
    return float(validation[metric]) - LOSS_TIE_BREAK * round(min(float(validation["loss"]), 100.0), 4)


class SelectionScore(TrainerCallback):
    """Adds ``eval_selection`` to each evaluation, for Trainer's best-model choice and early stopping.

    It must run before EarlyStoppingCallback (callbacks run in the order added); Trainer reads
    the best metric after every callback's on_evaluate has run.
    """

    def __init__(self, metric: str):
        self.metric = metric

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and f"eval_{self.metric}" in metrics:
            metrics["eval_selection"] = selection_score(
                {"loss": metrics["eval_loss"], self.metric: metrics[f"eval_{self.metric}"]}, self.metric)


def cut_short_note(history: list[dict[str, Any]], metric: str, planned: int, faster_head: bool = True) -> str | None:
    """A plain sentence when the best epoch was the last one planned and the metric still rose at it.

    ``faster_head``: also suggest a faster head (not when the head already trains faster than the body).
    """
    if len(history) < 2 or len(history) < planned:
        return None
    last, before = history[-1]["validation"][metric], history[-2]["validation"][metric]
    best = max(h["validation"][metric] for h in history)
    if last < best or last - before < 0.005:
        return None
    return (f"still improving: validation {metric.replace('_', ' ')} rose from {before:.3f} to {last:.3f} at the "
            f"last of {planned} epochs; more epochs (--epochs {planned + 3})"
            + (" or a faster head (--head-lr-scale 10)" if faster_head else "") + " may score higher")


def overfitting_note(history: list[dict[str, Any]]) -> str | None:
    """A plain sentence when validation loss rose for 2+ epochs in a row while training loss fell."""
    losses = [h["validation"]["loss"] for h in history]
    best = int(np.argmin(losses))
    run = 0
    for i in range(best + 1, len(history)):
        rising = losses[i] > losses[i - 1]
        falling = history[i].get("train_loss", np.inf) < history[i - 1].get("train_loss", -np.inf)
        run = run + 1 if rising and falling else 0
        if run >= 2:
            return (f"overfitting: validation loss was lowest at epoch {history[best]['epoch']} and rose after it "
                    "while training loss kept falling; the saved model is from that best epoch, "
                    "later epochs overfit")
    return None


class ValidationLogits(TrainerCallback):
    """Each epoch's validation logits, one row per text in the split's order (``metrics_per_text`` fills them).

    The decisions fitted after training (temperature, thresholds) read the kept epoch's logits from
    here instead of scoring validation once more with the same weights.
    """

    def __init__(self):
        self.latest: np.ndarray | None = None
        self.by_epoch: dict[int, np.ndarray] = {}
        self.epoch_offset = 0  # epochs before this Trainer.train call (training.extend)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.latest is not None:
            self.by_epoch[int(round(state.epoch or 0)) + self.epoch_offset] = self.latest
            self.latest = None


def metrics_per_text(owner: np.ndarray, multi_label: bool, how: str, keep: ValidationLogits | None = None) -> Any:
    """Trainer's compute_metrics for the validation split: window logits pooled per text, then scored."""
    n_texts = int(owner.max()) + 1 if len(owner) else 0

    def compute(prediction: Any) -> dict[str, Any]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        logits = pool(np.asarray(logits, dtype=np.float32), owner, n_texts, how)
        if not np.isfinite(logits).all():
            raise TrainingDiverged("training diverged: the model's outputs on validation are no longer finite numbers "
                                   "(NaN or infinity) and nothing was saved; lower --learning-rate or --weight-decay")
        if keep is not None:
            keep.latest = logits
        first = np.unique(owner, return_index=True)[1]  # a text's target, from its first row
        y_true = np.asarray(prediction.label_ids)[first]
        if multi_label:
            metrics = multilabel_metrics(y_true, 1 / (1 + np.exp(-logits.astype(np.float64))))
            metrics.pop("per_label")
        else:
            metrics = classification_metrics(y_true, plain_softmax(logits))
        metrics.pop("loss")  # Trainer reports its own eval_loss, the one that picks the best epoch
        return metrics

    return compute
