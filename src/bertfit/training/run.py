"""Fine-tuning on ``transformers.Trainer``: load a checkpoint, freeze what should not train, fit.

The path, top to bottom: load the base checkpoint with a fresh classification head, freeze
parameters by ``--train-layers``, tokenize the splits (padding is left to each batch), train with
per-epoch evaluation on validation, keep the epoch with the best validation metric (lower loss
breaking ties; ``--select-by loss``: the lowest loss), stop early, then score the test split once
and save the folder atomically. Under torchrun or accelerate launch every process runs this same
path and Trainer splits the batches among them; the main process alone then scores, saves and reports.

``fit`` reads as that list of steps; each step is a function in ``stages``. Elsewhere: data
reading in ``data``, the artifact in ``model``, per-epoch checkpoints and ``--resume`` in
``checkpoints``, the Trainer subclass (rows, batch order, loss) in ``trainer``, the epochs planned
and kept and the notes in ``epochs``, the frozen-encoder fast path in ``cached``, the TF-IDF
baseline in ``baseline``.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
from transformers import set_seed

from bertfit.claims import claimed
from bertfit.config import DataConfig, TrainConfig, check, to_dict
from bertfit.data.cleaning import PreparedData, prepare
from bertfit.encoding import unknown_tokens_note
from bertfit.errors import UsageError
from bertfit.folder import SPLIT_FILES, split_file
from bertfit.hub import check_hub_name
from bertfit.metrics import headline
from bertfit.model import TextClassifier
from bertfit.staging import check_folder, refuse_inputs
from bertfit.training.backbone import count_parameters, freeze, max_length_of, refuse_an_export
from bertfit.training.baseline import baseline_record, compare_with_baseline
from bertfit.training.checkpoints import check_stale
from bertfit.training.contrastive import choose_method, fit_contrastive
from bertfit.training.decisions import decide_then_score
from bertfit.training.epochs import cut_short_note, epoch_history, overfitting_note
from bertfit.training.extend import extend_while_improving
from bertfit.training.stages import (
    Fitted,
    Start,
    best_epoch,
    build_trainer,
    encode_splits,
    new_record,
    split_targets,
    starting_model,
    train_loop,
    trained_model,
    write_report,
)
from bertfit.training.tracking import Tracking
from bertfit.training.trainer import head_lr_scale, resolve_class_weights

log = logging.getLogger(__name__)

DEFAULT_OUT = "bertfit-model"


# A step between reading and training: (splits) -> (splits to train on, files to save beside the model).
Screen = Callable[[PreparedData], tuple[PreparedData, dict[str, str]]]

# ---------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainResult:
    """What a run produced: the model, where it was saved, and how it scored."""

    classifier: TextClassifier
    model_dir: Path
    best_epoch: int
    train_seconds: float
    validation: dict[str, Any]
    test: dict[str, Any]
    history: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    baseline: dict[str, Any] | None = None  # the TF-IDF + logistic regression baseline on the same splits

    def summary(self) -> dict[str, Any]:
        """The JSON object `bertfit train` prints last."""
        return {
            "model_dir": str(self.model_dir),
            "best_epoch": self.best_epoch,
            "train_seconds": round(self.train_seconds, 2),
            "validation": headline(self.validation),
            "test": headline(self.test),
            "baseline_test": headline(self.baseline["test"]) if self.baseline else None,
            "blend": self.classifier.record.blend,  # the baseline averaged in: its weight and validation scores
            "method": (self.classifier.record.method or {}).get("name", "finetune"),
            # per epoch, the headline figures; bertfit.json keeps the whole record (confusion matrices too)
            "history": [{**h, "validation": headline(h["validation"])} for h in self.history],
        }


def split_settings(settings: dict[str, Any]) -> tuple[DataConfig, TrainConfig]:
    """Keyword settings (as in the CLI) into the two configs; an unknown name is an error."""
    data_names = {f.name for f in fields(DataConfig)}
    train_names = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(settings) - data_names - train_names)
    if unknown:
        raise UsageError(f"unknown setting(s) {unknown}; valid: {sorted(data_names | train_names)}")
    # A field both configs have (seed) goes to both: one seed for the split and the training.
    data = DataConfig(**{k: v for k, v in settings.items() if k in data_names})
    trained = TrainConfig(**{k: v for k, v in settings.items() if k in train_names})
    return data, trained


def train(
    data: str | Path | pd.DataFrame | PreparedData,
    out: str | Path | None = DEFAULT_OUT,
    *,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    screen: Screen | None = None,
    **settings: Any,
) -> TrainResult | None:
    """Fine-tune a classifier on labelled data and save it to ``out`` (None: do not save).

    ``settings`` are DataConfig and TrainConfig fields, e.g. ``epochs=3, text_col="body"``.
    ``resume``: continue a killed run from the last checkpoint beside ``out`` (see ``bertfit.training.checkpoints``);
    without it, such checkpoints are refused unless ``overwrite``. ``screen``: a step between reading
    and training (e.g. the label audit): given the prepared splits, it returns the splits to train on
    and text files to save in the model folder (name: content). Under torchrun / accelerate launch
    every process trains, and the main one alone scores, saves and returns the result (the others: None).
    """
    progress = progress and not settings.pop("quiet", False)  # every CLI flag is a keyword, --quiet too
    settings.pop("debug", None)  # the CLI's tracebacks; a Python caller gets the exception as it is
    data_config, train_config = split_settings(settings)
    check(data_config, train_config)
    target = Path(out) if out is not None else None
    if target is not None:
        refuse_inputs(target, "--out", {"the data": data if isinstance(data, str | Path) else None,
                                        "the --model folder": train_config.model,
                                        "the --class-weights file": train_config.class_weights},
                      sealed=("the --model folder",))
        check_folder(target, overwrite)
    with claimed(target):  # another run writing the same --out is refused before any work
        if target is not None:  # held: checkpoints beside it are no live run's
            check_stale(target, resume, overwrite)
        check_hub_name(train_config.model)  # before the data is read: a model that cannot load fails in seconds
        refuse_an_export(train_config.model)
        tracking = Tracking(train_config.report_to, target)  # a missing extra fails here, before any work
        prepared = data if isinstance(data, PreparedData) else prepare(data, data_config)
        files: dict[str, str] = {}
        if screen is not None:
            prepared, files = screen(prepared)
        method, why = choose_method(prepared, train_config, resume)
        log.info("method: %s (%s)", method, why)
        with tracking:
            if method == "contrastive":
                # the contrastive recipe trains on validation too: nothing held out to fit a temperature on
                train_config = dataclasses.replace(train_config, calibrate=False)
                fitted = fit_contrastive(prepared, train_config, data_config=data_config, progress=progress, why=why,
                                         callbacks=tracking.callbacks())
                result = conclude(fitted, prepared, train_config, target, overwrite=overwrite, progress=progress,
                                  files=files)
            else:
                result = fit(prepared, train_config, target, data_config=data_config, overwrite=overwrite,
                             resume=resume, progress=progress, files=files, method={"name": "finetune", "why": why},
                             callbacks=tracking.callbacks())
            return tracking.finished(result)


def fit(
    prepared: PreparedData,
    config: TrainConfig,
    target: Path | None,
    *,
    data_config: DataConfig | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: bool = True,
    start: Start | None = None,
    files: dict[str, str] | None = None,
    method: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
) -> TrainResult | None:
    """Fine-tune on prepared splits; see the module docstring for the steps. None on all but the main process.

    ``start``: a model other than the base checkpoint, and what its trainer needs (see :class:`Start`).
    ``files``: more text files to save in the model folder (name: content). ``method``: bertfit.json's
    record of how the method was chosen (``train`` passes it). ``callbacks``: more Trainer callbacks (tracking).
    """
    fitted = fit_model(prepared, config, target, data_config=data_config, resume=resume, progress=progress,
                       start=start, callbacks=callbacks)
    if fitted is None:
        return None  # torchrun / accelerate launch: the main process scores, saves and reports
    fitted.classifier.record.method = method
    return conclude(fitted, prepared, config, target, overwrite=overwrite, progress=progress, files=files)


def fit_model(
    prepared: PreparedData,
    config: TrainConfig,
    target: Path | None = None,
    *,
    data_config: DataConfig | None = None,
    resume: bool = False,
    progress: bool = True,
    start: Start | None = None,
    callbacks: list[Any] | None = None,
    encodings: dict[Any, Any] | None = None,
) -> Fitted | None:
    """Train and keep the best epoch, deciding nothing else; the test split is not read. None off the main process.

    ``callbacks``: more Trainer callbacks (a tuning trial's pruning). ``encodings``: a dict kept by the
    caller across runs from the same base model on the same splits, so that each (max length, long-text
    handling) is tokenized once, and each frozen bottom (encode once) runs over the texts once.
    """
    class_weights = resolve_class_weights(config.class_weights, prepared)  # refused before the model loads
    set_seed(config.seed)  # before the head is created, so its initial weights follow the seed
    model, tokenizer = starting_model(prepared, config, start)
    max_length = max_length_of(model, tokenizer, config, pairs=prepared.text_pair_col is not None)
    model = freeze(model, config.train_layers, config.lora_r, config.lora_alpha, config.train_embeddings)
    trainable, total = count_parameters(model)
    log.info("training %s of %s parameters (%.1f%%), --train-layers %s",
             f"{trainable:,}", f"{total:,}", 100 * trainable / total, config.train_layers)
    targets = {name: split_targets(prepared, name) for name in prepared.splits()}
    key = (max_length, config.long_text, config.stride)
    if encodings is not None and key in encodings and start is None:
        encoded, too_long = encodings[key]
    else:
        encoded, too_long = encode_splits(prepared, tokenizer, targets, max_length, config, start)
        if encodings is not None and start is None:
            encodings[key] = encoded, too_long
    unreadable = _said(unknown_tokens_note(tokenizer, encoded["train"].encoded["input_ids"]))  # before training
    started = time.perf_counter()  # the one-off encoding of the fast path counts as training time
    frozen_outputs = encodings.setdefault("frozen outputs", {}) if encodings is not None and start is None else None
    run = build_trainer(model, tokenizer, prepared, encoded, config, target, progress, start, callbacks,
                        frozen_outputs, class_weights=class_weights)
    settings = {"data": to_dict(data_config or DataConfig()), "train": to_dict(config)}
    resumed_after = train_loop(run.trainer, settings, prepared, run.checkpoints, resume, then=lambda: (
        extend_while_improving(run.trainer, config, run.epochs, run.metric, run.checkpoints)))
    train_seconds = time.perf_counter() - started
    if not run.trainer.is_world_process_zero():
        return None

    history = epoch_history(run.trainer.state.log_history)
    best = best_epoch(history, config, run.metric)
    model = trained_model(run, model, config)
    ran = max(run.epochs, len(history))  # the plan, or more when the run was extended past it
    scale = head_lr_scale(config, prepared.multi_label, len(prepared.labels.names))
    cut_short = cut_short_note(history, run.metric, ran, faster_head=scale == 1)
    notes = [note for note in (unreadable, _said(overfitting_note(history)), _said(cut_short)) if note]
    record = new_record(prepared, config, data_config or DataConfig(), start, run, history, best, notes,
                        settings=settings, max_length=max_length, parameters=(trainable, total),
                        too_long=too_long, resumed_after=resumed_after, train_seconds=train_seconds)
    record.metrics = {"validation": best["validation"]}
    return Fitted(TextClassifier(model, tokenizer, record), best, history, notes, train_seconds, targets,
                  run.checkpoints, run.validation_logits.by_epoch.get(best["epoch"]))


def _said(note: str | None) -> str | None:
    """A note for the record, logged as a warning now (None: nothing to say)."""
    if note:
        log.warning("%s", note)
    return note


def conclude(fitted: Fitted, prepared: PreparedData, config: TrainConfig, target: Path | None, *,
             overwrite: bool = False, progress: bool = True, files: dict[str, str] | None = None) -> TrainResult:
    """Decisions on validation (the blend with the baseline, thresholds, temperature), the test split scored once,
    the baseline beside it; saved and reported."""
    classifier, best = fitted.classifier, fitted.best
    baseline, fitted_baseline = baseline_record(prepared, config.seed) if config.baseline else (None, None)
    test_logits, test_metrics = decide_then_score(classifier, prepared, fitted.targets, config, progress,
                                                  fitted.validation_logits,
                                                  fitted_baseline if config.blend else None)
    classifier.record.metrics = {"validation": best["validation"], "test": test_metrics}
    if baseline is not None:
        classifier.record.baseline = baseline
        compare_with_baseline(test_metrics, baseline["test"])
    if target is not None:
        # The splits travel with the model: validation for later decisions (the export's check), test for reports.
        kept = {SPLIT_FILES[name]: split_file(prepared.splits()[name]) for name in ("validation", "test")}
        classifier.save_pretrained(target, overwrite=overwrite, files=kept | (files or {}))
    shutil.rmtree(fitted.checkpoints, ignore_errors=True)  # only now: a crash before this point can still resume
    if target is not None and config.report:
        write_report(target, classifier.probabilities(test_logits))
    return TrainResult(classifier, target, best["epoch"], fitted.train_seconds, best["validation"], test_metrics,
                       fitted.history, fitted.notes, baseline)


