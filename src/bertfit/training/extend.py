"""More epochs for a run that ends its plan still improving: :func:`extend_while_improving`.

A planned run (no ``--epochs``) decays its learning rate to nothing over the planned epochs. When
the last of them is the best so far, lifted the main validation metric by at least ``MIN_GAIN``
and lowered the validation loss, the model was still learning when the plan ran out. Training
then goes on in rounds of ``round_epochs(planned)`` epochs, each a fresh schedule: a short warm-up
for the fresh optimizer, then linear decay to zero from about the rate a plan that long would have
had there (the peak times the round's share of all epochs so far; a restart at the full peak
shakes the model out of where the plan left it). A round stops at the first epoch that does not
beat the best one so far; another follows only while the last epoch still rose so, and never
more extra epochs than were planned.
The best epoch over the whole run is kept: when no extra epoch beat the plan's best, the plan's
weights are put back, so an extension costs time, never the score on validation.

Runs given ``--epochs``, chosen by loss (``--select-by loss``), under several processes, or with
``--no-more-epochs`` train exactly what they planned.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from bertfit.config import TrainConfig
from bertfit.training.epochs import epoch_history, selection_score

log = logging.getLogger(__name__)

MIN_GAIN = 0.01  # the main validation metric's rise at the last epoch that counts as still improving


def round_epochs(planned: int) -> int:
    """Epochs in one extension round: half the plan, 2 at least."""
    return max(2, planned // 2)


def still_rising(history: list[dict[str, Any]], metric: str) -> bool:
    """Still learning: the last epoch is the best, lifted the main metric by MIN_GAIN or more, and lowered the loss.

    A metric that jumps while validation loss climbs is a model past its fit whose decisions drift
    (a small validation split shows it as a point or two either way), not one the plan cut short.
    """
    if len(history) < 2:
        return False
    scores = [selection_score(h["validation"], metric) for h in history]
    last, before = history[-1]["validation"], history[-2]["validation"]
    return scores[-1] >= max(scores) and last[metric] - before[metric] >= MIN_GAIN and last["loss"] < before["loss"]


class StopUnlessBetter(TrainerCallback):
    """Stops an extension round at the first epoch whose selection score does not beat ``best``."""

    def __init__(self, best: float):
        self.best = best
        self.stopped = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics is None or "eval_selection" not in metrics:
            return
        if metrics["eval_selection"] > self.best:
            self.best = metrics["eval_selection"]
        else:
            self.stopped = control.should_training_stop = True


def extend_while_improving(trainer: Any, config: TrainConfig, planned: int, metric: str, checkpoints: Path) -> int:
    """Train on past the plan while the run still improves (see the module); returns the epochs added.

    Trainer's log history afterwards holds every epoch, the extra ones numbered on from the plan's,
    and the trainer's model holds the best epoch's weights.
    """
    history = epoch_history(trainer.state.log_history)
    if (config.epochs is not None or config.select_by == "loss" or not config.more_epochs
            or trainer.args.world_size > 1 or len(history) < planned or not still_rising(history, metric)):
        return 0
    from transformers.integrations import MLflowCallback, TensorBoardCallback  # only when extending: a slow import

    logs = list(trainer.state.log_history)
    best = max(selection_score(h["validation"], metric) for h in history)
    kept = _copy_of_weights(trainer.model)
    trackers = [c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback | MLflowCallback)]
    for tracker in trackers:  # their step counters restart with each round; the history keeps the extra epochs
        trainer.remove_callback(tracker)
    added = 0
    while added < planned:
        done = planned + added
        epochs = min(round_epochs(planned), planned - added)
        log.info("still improving at epoch %d (validation %s %.3f): training up to %d more epoch%s while it improves",
                 done, metric.replace("_", " "), history[-1]["validation"][metric], epochs, "s" if epochs > 1 else "")
        stop = StopUnlessBetter(best)
        round_logs = _one_round(trainer, stop, epochs, done, config.seed, checkpoints / f"more-{done}")
        logs += [{**record, "epoch": record["epoch"] + done} for record in round_logs if "epoch" in record]
        history = epoch_history(logs)
        added = len(history) - planned
        if stop.best > best:
            best = stop.best
            kept = _copy_of_weights(trainer.model)
        if stop.stopped or not still_rising(history, metric):
            break
    trainer.model.load_state_dict(kept)  # the best epoch over the whole run
    trainer.state.log_history = logs
    for tracker in trackers:
        trainer.add_callback(tracker)
    return added


def _copy_of_weights(model: Any) -> dict[str, Any]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _one_round(trainer: Any, stop: StopUnlessBetter, epochs: int, done: int, seed: int, folder: Path) -> list[dict]:
    """One more schedule of ``epochs`` epochs from the current weights; its log records (epochs from 1)."""
    args = trainer.args
    shutil.rmtree(folder, ignore_errors=True)  # a round a hard kill cut off, before --resume came back to it
    saved = args.num_train_epochs, args.output_dir, args.seed, args.data_seed, args.learning_rate
    # The rate a plan of done + epochs would have had at this point, decaying to zero again; another seed
    # per round, so that the extra epochs do not replay the first epochs' batch order.
    args.learning_rate = args.learning_rate * epochs / (done + epochs)
    args.num_train_epochs, args.output_dir, args.seed, args.data_seed = epochs, str(folder), seed + done, seed + done
    trainer.optimizer, trainer.lr_scheduler = None, None  # a fresh optimizer and schedule
    shifted = [c for c in trainer.callback_handler.callbacks if hasattr(c, "epoch_offset")]
    for callback in shifted:
        callback.epoch_offset = done
    trainer.add_callback(stop)
    try:
        trainer.train()
    finally:
        trainer.remove_callback(stop)
        for callback in shifted:
            callback.epoch_offset = 0
        args.num_train_epochs, args.output_dir, args.seed, args.data_seed, args.learning_rate = saved
    return list(trainer.state.log_history)
