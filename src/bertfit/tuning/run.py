"""``bertfit tune``: an Optuna study over the training settings, in a time budget, on one machine or many.

The data is read, cleaned and split once, and each maximum length tokenized once, for every
trial. A trial trains on train and is judged on validation alone (the kept epoch's score, as
``train`` keeps it); after each epoch it reports to the study, whose median pruner stops trials
that trail the others at the same epoch. The first trial is the default recipe. A trial that
beats the study's best so far, and the default recipe's trial, save their models beside ``--out``;
the winner is the best on validation unless the default scored within one standard error of it
(``choice.winner``). Its model, as trained (not retrained), gets its decisions on validation, its
test split scored once and the baseline, and is saved as an ordinary bertfit folder whose
bertfit.json and report hold the study.

The study lives in Optuna storage: by default a journal file beside ``--out`` (``--resume``
continues it); ``--storage URL`` (PostgreSQL, MySQL, or a journal file on a shared disk) lets
``--worker`` processes on other machines join it, each running trials until the budget ends;
the process started without ``--worker`` saves the winner. Opening the storage is ``storage``'s.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback

from bertfit.claims import claimed
from bertfit.config import check
from bertfit.data.cleaning import PreparedData, prepare
from bertfit.environment import require
from bertfit.errors import BertfitError, TrainingDiverged, TrainingInterrupted, UsageError
from bertfit.folder import read_meta
from bertfit.model import TextClassifier
from bertfit.record import ModelRecord
from bertfit.staging import check_folder, refuse_inputs
from bertfit.training.epochs import main_metric, selection_score
from bertfit.training.run import Fitted, TrainResult, conclude, fit_model, split_settings
from bertfit.training.stages import split_targets
from bertfit.training.tracking import Tracking
from bertfit.training.trainer import resolve_class_weights
from bertfit.tuning.choice import expected_seconds, winner
from bertfit.tuning.space import Space
from bertfit.tuning.storage import (
    LOST,
    check_journal,
    database,
    fail_lost_trials,
    journal_file,
    local_storage,
    masked,
    open_journal,
    trial_owner,
    trials_dir,
)

log = logging.getLogger(__name__)

DEFAULT_OUT = "bertfit-tuned"
DEFAULT_STUDY = "bertfit"
STARTUP_TRIALS = 3  # trials the pruner lets run to the end before it compares
SKIPS_BEFORE_STOP = 20  # settings drawn in a row that cannot finish in the time left: the study stops there
SKIPPED = "skipped"  # a trial's "stopped" when it was not started: it could not finish in the time left


class TrialStopped(Exception):
    """Raised inside Trainer's loop to end a trial: pruned by the study, or past the budget."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class TrialWatch(TrainerCallback):
    """Reports each epoch's validation score to the trial; stops it when pruned or when the budget is spent."""

    def __init__(self, trial: Any, deadline: float):
        self.trial, self.deadline = trial, deadline

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_selection" in metrics:
            self.trial.report(float(metrics["eval_selection"]), step=int(round(state.epoch or 0)))
            if self.trial.should_prune():
                raise TrialStopped("pruned")

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() > self.deadline:
            raise TrialStopped("budget")


@dataclass
class TuneResult:
    """The study's outcome; ``trained`` is None for a --worker, which saves nothing."""

    study: dict[str, Any]
    trained: TrainResult | None

    def summary(self) -> dict[str, Any]:
        out = {key: self.study[key] for key in ("study_name", "trials_complete", "trials_pruned", "trials_failed",
                                                 "best_trial", "best_validation", "default_validation", "seconds")}
        if self.trained is not None:
            trained = self.trained.summary()
            out |= {"model_dir": trained["model_dir"], "best_params": self.study["best_params"],
                    "test": trained["test"], "baseline_test": trained["baseline_test"]}
        return out


def parse_budget(value: Any) -> float:
    """--budget as seconds: '90s', '30m', '1.5h', or a bare number of minutes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(value).lower())
    seconds = float(match.group(1)) * {"s": 1, "m": 60, "": 60, "h": 3600}[match.group(2)] if match else 0
    if seconds <= 0:
        raise UsageError(f"--budget takes a time like 90s, 30m or 2h (a bare number is minutes), got {value!r}")
    return seconds


def tune(data: Any, out: str | Path = DEFAULT_OUT, *, budget: Any = "30m", trials: int | None = None,
         storage: str | None = None, study_name: str = DEFAULT_STUDY, worker: bool = False, resume: bool = False,
         overwrite: bool = False, progress: bool = True, **settings: Any) -> TuneResult:
    """Search training settings for ``data`` within ``budget``; save the winner to ``out`` (not as a --worker)."""
    optuna = _optuna()
    seconds = parse_budget(budget)
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise UsageError(f"--trials must be a whole number of at least 1, got {trials!r}")
    settings.pop("quiet", None)
    settings.pop("debug", None)
    data_config, train_config = split_settings(settings)
    check(data_config, train_config)
    if train_config.method == "contrastive":
        raise UsageError("tune searches the fine-tuning recipe; --method contrastive has nothing to search "
                         "here: run bertfit train --method contrastive")
    target = Path(out)
    tracking = Tracking(None if worker else train_config.report_to, target, "bertfit tune")  # extras checked now
    url = storage or local_storage(target, resume, overwrite, worker)
    inputs = {"the data": data if isinstance(data, str | Path) else None, "the --model folder": train_config.model}
    if not worker:
        refuse_inputs(target, "--out", inputs, sealed=("the --model folder",))
        check_folder(target, overwrite or resume)  # a resumed study saves its winner again
    started = time.monotonic()
    deadline = started + seconds
    if journal_file(url):  # appended to: never an input, and a journal when it is there already
        check_journal(url, inputs)
    created = storage is None and not worker and not Path(journal_file(url)).exists()
    with claimed(None if worker else target), _forgotten_unless_a_trial_finished(target, url, created):
        opened = None if journal_file(url) else database(optuna, url)  # a bad URL is refused before the data is read
        prepared = data if isinstance(data, PreparedData) else prepare(data, data_config)
        resolve_class_weights(train_config.class_weights, prepared)  # its labels: refused before the model loads
        space = _space(prepared, train_config)
        study = optuna.create_study(storage=opened or open_journal(url), study_name=study_name, direction="maximize",
                                    load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=train_config.seed),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS))
        if fail_lost_trials(optuna, study):
            log.info("trials left running by a process that ended (killed) are marked failed; they are not counted")
        has_default = any(t.user_attrs.get("recipe") == "default" and t.user_attrs.get("stopped") != LOST
                          for t in study.trials)  # waiting ones too
        if not has_default and not worker:  # the main process alone: workers starting at once would each add it
            study.enqueue_trial(space.default, user_attrs={"recipe": "default"})
        objective = _objective(optuna, prepared, train_config, space, target, deadline)
        stop = [TrialCount(trials)] if trials else []
        try:
            study.optimize(objective, timeout=seconds, callbacks=stop, gc_after_trial=True)
        except (KeyboardInterrupt, TrainingInterrupted):
            log.warning("interrupted: the study keeps its finished trials; the winner among them is saved")
        record = study_record(optuna, study, space, url, seconds, time.monotonic() - started, len(prepared.validation))
        _log_study(study_name, record)
        if worker:
            return TuneResult(record, None)
        if record["best_trial"] is None:
            raise UsageError(f"no trial finished within --budget {budget}: give it more time (one default training "
                             "run at least)")
    with tracking:  # one run for the study: every trial's validation score, then the winner's results
        tracking.series("trial_validation", [(t["number"], t["value"]) for t in record["trials"]
                                             if t["value"] is not None])
        result = _save_winner(study, prepared, train_config, space, target, record, overwrite or resume, progress)
        tracking.finish(result.classifier.record, result.model_dir)
    return TuneResult(record, result)


def _log_study(name: str, record: dict[str, Any]) -> None:
    log.info("study %r: %d trials complete, %d pruned, %d failed, %d not started (they would not have finished in "
             "the time left); best validation %s (trial %s), default recipe %s",
             name, *(record[key] for key in ("trials_complete", "trials_pruned", "trials_failed", "trials_skipped",
                                             "best_validation", "best_trial", "default_validation")))


@contextlib.contextmanager
def _forgotten_unless_a_trial_finished(target: Path, url: str, created: bool) -> Iterator[None]:
    """A failed run that started the study's journal (a budget no trial fits in, a flag refused by the first
    trial, Ctrl-C before any trial finished) removes it, so that the same command can be run again without
    --overwrite; a finished trial always keeps a model in the trials folder, and then the journal stays."""
    try:
        yield
    except BaseException:
        saved = trials_dir(target)
        if created and not (saved.is_dir() and any(saved.iterdir())):
            for leftover in (Path(journal_file(url)), Path(f"{journal_file(url)}.lock")):
                leftover.unlink(missing_ok=True)
            shutil.rmtree(saved, ignore_errors=True)
        raise


def _optuna() -> Any:
    require("tune", "bertfit tune")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _space(prepared: PreparedData, config: Any) -> Space:
    from bertfit.training.backbone import (
        default_model_path,
        encoder_layers,
        freeze,
        load_base,
        max_length_of,
        model_position_limit,
    )
    from bertfit.training.stages import processes

    model, tokenizer = load_base(config.model or default_model_path(), prepared.labels.names, prepared.multi_label)
    sample = prepared.train.sample(n=min(2000, len(prepared.train)), random_state=0)
    pairs = sample["text_pair"].tolist() if "text_pair" in sample else None
    lengths = [len(ids) for ids in tokenizer(sample["text"].tolist(), pairs)["input_ids"]]
    space = Space(prepared, config, model.config.hidden_size, len(encoder_layers(model)),
                  model_position_limit(model, tokenizer), np.asarray(lengths), processes())
    # What train refuses for this model (--max-length past its limit, more layers than it has) is refused
    # here, once, before the study: inside a trial it would be a failed trial and a traceback.
    max_length_of(model, tokenizer, config, pairs=pairs is not None)
    freeze(model, config.train_layers, config.lora_r, config.lora_alpha, config.train_embeddings)
    return space


def _objective(optuna: Any, prepared: PreparedData, config: Any, space: Space, target: Path, deadline: float) -> Any:
    encodings: dict[Any, Any] = {}
    metric = main_metric(prepared.multi_label)

    skipped_in_a_row = 0

    def objective(trial: Any) -> float:
        nonlocal skipped_in_a_row
        trial.set_user_attr("process", trial_owner())
        chosen = space.suggest(trial)
        expected, left = expected_seconds(trial.study, chosen), deadline - time.monotonic()
        if expected is not None and expected > left:
            # A trial stopped at the budget gives nothing: one that cannot finish is not started, and the
            # sampler, told it was pruned, moves away from settings that slow.
            trial.set_user_attr("stopped", SKIPPED)
            skipped_in_a_row += 1
            if skipped_in_a_row >= SKIPS_BEFORE_STOP:
                log.info("%d settings in a row would not finish in the %.0f s left: the study stops", skipped_in_a_row,
                         left)
                trial.study.stop()
            raise optuna.TrialPruned(f"would take about {expected:.0f} s, {left:.0f} s left")
        skipped_in_a_row = 0
        trial_config = replace(config, **chosen, baseline=False, report=False)
        begun = time.monotonic()
        try:
            fitted = fit_model(prepared, trial_config, None, progress=False, callbacks=[TrialWatch(trial, deadline)],
                               encodings=encodings)
        except (TrialStopped, TrainingDiverged) as stopped:  # a diverged trial scores nothing; the study goes on
            why = getattr(stopped, "why", "diverged")
            trial.set_user_attr("stopped", why)
            trial.set_user_attr("seconds", round(time.monotonic() - begun, 1))
            raise optuna.TrialPruned(why) from None
        shutil.rmtree(fitted.checkpoints, ignore_errors=True)
        value = selection_score(fitted.best["validation"], metric)
        seconds = time.monotonic() - begun
        trial.set_user_attr("seconds", round(seconds, 1))
        trial.set_user_attr("epoch_seconds", round(seconds / max(1, len(fitted.history)), 2))
        trial.set_user_attr("epoch", fitted.best["epoch"])
        trial.set_user_attr("validation", fitted.best["validation"].get(metric))
        if value > _best_value(trial.study) or trial.user_attrs.get("recipe") == "default":  # the winner may be either
            fitted.classifier.save_pretrained(trials_dir(target) / str(trial.number), overwrite=True)
        log.info("trial %d: validation %s %.4f in %.0f s (%s)", trial.number, metric,
                 fitted.best["validation"].get(metric), time.monotonic() - begun, chosen)
        return value

    return objective


class TrialCount:
    """Stops the study once it holds ``n`` trials, in every state and from every process, the skipped
    ones (never started) and the lost ones (their process killed) aside."""

    def __init__(self, n: int):
        self.n = n

    def __call__(self, study: Any, trial: Any) -> None:
        if sum(t.user_attrs.get("stopped") not in (SKIPPED, LOST) for t in study.get_trials(deepcopy=False)) >= self.n:
            study.stop()


def _best_value(study: Any) -> float:
    try:
        return float(study.best_value)
    except ValueError:  # no trial complete yet
        return float("-inf")


def study_record(optuna: Any, study: Any, space: Space, url: str, budget: float, seconds: float,
                 validation_rows: int) -> dict[str, Any]:
    """The study as bertfit.json keeps it: every trial, the winner (see ``winner``), the default recipe's score,
    importances."""
    state = optuna.trial.TrialState
    trials = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
               "validation": t.user_attrs.get("validation"), "epoch": t.user_attrs.get("epoch"),
               "seconds": t.user_attrs.get("seconds"), "stopped": t.user_attrs.get("stopped"),
               "started": t.datetime_start.isoformat() if t.datetime_start else None,
               "recipe": t.user_attrs.get("recipe")} for t in study.trials if t.user_attrs.get("stopped") != SKIPPED]
    complete = [t for t in study.trials if t.state == state.COMPLETE]
    top = max(complete, key=lambda t: t.value) if complete else None
    default = next((t for t in complete if t.user_attrs.get("recipe") == "default"), None)
    best, margin = winner(top, default, validation_rows)
    return {
        "study_name": study.study_name, "storage": masked(url), "sampler": "TPE",
        "pruner": f"median (after {STARTUP_TRIALS} trials)", "budget_seconds": budget, "seconds": round(seconds, 1),
        "space": space.describe(), "trials": trials,
        "trials_complete": len(complete),
        "trials_pruned": sum(t.state == state.PRUNED and t.user_attrs.get("stopped") != SKIPPED for t in study.trials),
        "trials_skipped": sum(t.user_attrs.get("stopped") == SKIPPED for t in study.trials),
        "trials_failed": sum(t.state == state.FAIL for t in study.trials),
        "best_trial": best.number if best else None, "best_params": best.params if best else None,
        "best_validation": best.user_attrs.get("validation") if best else None,
        "default_validation": default.user_attrs.get("validation") if default else None,
        "top_trial": top.number if top else None, "margin": round(margin, 4) if margin is not None else None,
        "importances": _importances(optuna, study) if len(complete) >= 3 else None,
    }


def _importances(optuna: Any, study: Any) -> dict[str, float] | None:
    try:
        return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError) as err:  # too few distinct trials to tell
        log.info("parameter importances left out: %s", str(err).splitlines()[0])
        return None


def _save_winner(study: Any, prepared: PreparedData, config: Any, space: Space, target: Path,
                 record: dict[str, Any], overwrite: bool, progress: bool) -> TrainResult:
    """The winner's model, as trained: decisions on validation, test scored once, saved with the study."""
    best = next(t for t in study.trials if t.number == record["best_trial"])
    if best.number != record["top_trial"]:
        log.info("trial %d led the default recipe (trial %d) on validation by no more than one standard error of its "
                 "score (%.4f on %d rows): the default recipe's model is kept", record["top_trial"], best.number,
                 record["margin"], len(prepared.validation))
    winner_config = replace(config, **_settings_of(best.params, space))
    folder = _trial_model(target, best.number)
    if folder is not None:
        fitted = _reloaded(folder, prepared)
    else:  # trained by a worker whose disk this is not: train its settings again, and say so
        log.warning("trial %d's model is not in %s (a worker on another machine trained it?): training its "
                    "settings again", best.number, trials_dir(target))
        record["winner_retrained"] = True
        fitted = fit_model(prepared, replace(winner_config, baseline=False, report=False), None, progress=progress)
    fitted.classifier.record.study = record
    result = conclude(fitted, prepared, winner_config, target, overwrite=overwrite, progress=progress)
    shutil.rmtree(trials_dir(target), ignore_errors=True)
    return result


def _trial_model(target: Path, number: int) -> Path | None:
    """Where trial ``number``'s model is: its folder among the trials, or --out when it won a run before this one."""
    folder = trials_dir(target) / str(number)
    if (folder / "bertfit.json").is_file():
        return folder
    try:
        saved = read_meta(target)
    except BertfitError:
        return None
    return target if saved is not None and (saved.study or {}).get("best_trial") == number else None


def _settings_of(params: dict[str, Any], space: Space) -> dict[str, Any]:
    return {name: params[name] for name in space.default if name in params}


def _reloaded(folder: Path, prepared: PreparedData) -> Fitted:
    classifier = TextClassifier.from_pretrained(folder)
    record: ModelRecord = classifier.record
    best = next(h for h in record.history if h["epoch"] == record.best_epoch)
    targets = {name: split_targets(prepared, name) for name in prepared.splits()}
    return Fitted(classifier, best, record.history, list(record.notes), record.train_seconds or 0.0, targets,
                  folder / ".no-checkpoints")
