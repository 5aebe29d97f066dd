"""Fine-tuning on ``transformers.Trainer``: load a checkpoint, freeze what should not train, fit.

The path, top to bottom: load the base checkpoint with a fresh classification head, freeze
parameters by ``--train-layers``, tokenize the splits (padding is left to each batch), train with
per-epoch evaluation on validation, keep the epoch with the best validation metric (lower loss
breaking ties; ``--select-by loss``: the lowest loss), stop early, then score the test split once
and save the folder atomically. Under torchrun or accelerate launch every process runs this same
path and Trainer splits the batches among them; the main process alone then scores, saves and reports.

Elsewhere: data reading in ``data``, the artifact in ``model``, metrics in ``metrics``, per-epoch
checkpoints and ``--resume`` in ``checkpoints``, the Trainer subclass (rows, batch order, loss) in
``trainer``, per-epoch logs and the overfitting note in ``epochs``, the frozen-encoder fast path
in ``cached``, the TF-IDF baseline in ``baseline``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, TrainingArguments, set_seed

from bertfit.backends import resolve_precision
from bertfit.calibration import choose_temperature, plain_softmax
from bertfit.config import DataConfig, TrainConfig, check, to_dict
from bertfit.data.cleaning import PreparedData, prepare
from bertfit.environment import TRAINING_PACKAGES, versions
from bertfit.errors import TrainingError, UsageError
from bertfit.folder import SPLIT_FILES, split_file
from bertfit.hub import check_hub_name
from bertfit.metrics import (
    expected_calibration_error,
    headline,
    multilabel_metrics,
    tune_thresholds,
)
from bertfit.model import TextClassifier
from bertfit.record import Calibration, DataReport, LongText, ModelRecord, Task
from bertfit.staging import check_folder, refuse_inputs
from bertfit.training.backbone import (
    count_parameters,
    default_learning_rate,
    default_model_path,
    encoder_layers,
    freeze,
    load_base,
    start_at_base_rates,
)
from bertfit.training.baseline import baseline_record, compare_with_baseline
from bertfit.training.cached import CachedSplit, TrainableTop, encode_frozen, frozen_layer_count
from bertfit.training.cached import collate as collate_cached
from bertfit.training.checkpoints import check_stale, checkpoint_dir, prepare_folder, resumed_epoch, run_record
from bertfit.training.epochs import (
    EpochLog,
    SelectionScore,
    cut_short_note,
    epoch_history,
    main_metric,
    metrics_per_text,
    overfitting_note,
    planned_epochs,
    quiet_progress,
    selection_score,
)
from bertfit.training.trainer import ClassifierTrainer, EncodedSplit, encode_split, resolve_class_weights

log = logging.getLogger(__name__)

DEFAULT_OUT = "bertfit-model"
DEFAULT_MAX_LENGTH = 256  # tokens, when --max-length is not given and the model allows it


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
            # per epoch, the headline figures; bertfit.json keeps the whole record (confusion matrices too)
            "history": [{**h, "validation": headline(h["validation"])} for h in self.history],
        }


@dataclass
class Start:
    """Where a run starts other than from the base checkpoint (``distill`` passes its student this way).

    ``trainer_class`` replaces bertfit's trainer (with ``trainer_settings`` as its extra keywords);
    ``teacher_logits`` (texts, classes) go with each training row; ``distilled`` is bertfit.json's record of it.
    """

    model: Any
    tokenizer: Any
    described: str  # bertfit.json's base_model
    trainer_class: type = ClassifierTrainer
    trainer_settings: dict[str, Any] = field(default_factory=dict)
    teacher_logits: np.ndarray | None = None
    distilled: dict[str, Any] | None = None


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
    **settings: Any,
) -> TrainResult | None:
    """Fine-tune a classifier on labelled data and save it to ``out`` (None: do not save).

    ``settings`` are DataConfig and TrainConfig fields, e.g. ``epochs=3, text_col="body"``.
    ``resume``: continue a killed run from the last checkpoint beside ``out`` (see ``bertfit.training.checkpoints``);
    without it, such checkpoints are refused unless ``overwrite``. Under torchrun / accelerate launch
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
                                        "the --class-weights file": train_config.class_weights})
        check_folder(target, overwrite)
        check_stale(target, resume, overwrite)
    check_hub_name(train_config.model)  # before the data is read: a model that cannot load fails in seconds
    prepared = data if isinstance(data, PreparedData) else prepare(data, data_config)
    return fit(prepared, train_config, target, data_config=data_config, overwrite=overwrite, resume=resume,
               progress=progress)


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
) -> TrainResult | None:
    """Train on prepared splits; see the module docstring for the steps. None on all but the main process.

    ``start``: a model other than the base checkpoint, and what its trainer needs (see :class:`Start`).
    """
    set_seed(config.seed)  # before the head is created, so its initial weights follow the seed
    model, tokenizer = _starting_model(prepared, config, start)
    max_length = _max_length(model, tokenizer, config)
    model = freeze(model, config.train_layers, config.lora_r, config.lora_alpha)
    trainable, total = count_parameters(model)
    log.info("training %s of %s parameters (%.1f%%), --train-layers %s",
             f"{trainable:,}", f"{total:,}", 100 * trainable / total, config.train_layers)
    targets = {name: _targets(prepared, name) for name in prepared.splits()}
    encoded, too_long = _encode_splits(prepared, tokenizer, targets, max_length, config, start)

    started = time.perf_counter()  # the one-off encoding of the fast path counts as training time
    run = _build_trainer(model, tokenizer, prepared, encoded, config, target, progress, start)
    settings = {"data": to_dict(data_config or DataConfig()), "train": to_dict(config)}
    resumed_after = _train(run.trainer, settings, prepared, run.checkpoints, resume)
    train_seconds = time.perf_counter() - started
    if not run.trainer.is_world_process_zero():
        return None  # torchrun / accelerate launch: the main process scores, saves and reports

    history = epoch_history(run.trainer.state.log_history)
    best = _best_epoch(history, config, run.metric)
    model = _trained_model(run, model, config)
    notes = [note for note in (overfitting_note(history), cut_short_note(history, run.metric, run.epochs)) if note]
    for note in notes:
        log.warning("%s", note)
    record = ModelRecord(
        labels=list(prepared.labels.names),
        task=Task.MULTI_LABEL if prepared.multi_label else Task.SINGLE_LABEL,
        text_col=prepared.text_col,
        text_pair_col=prepared.text_pair_col,
        label_col=prepared.label_col,
        label_sep=(data_config or DataConfig()).label_sep,
        max_length=max_length,
        long_text=LongText(config.long_text, config.stride, config.window_pool),
        precision=resolve_precision(config.precision),
        base_model=start.described if start else config.model or "embedded:all-MiniLM-L6-v2",
        distilled=start.distilled if start else None,
        trainable_parameters=trainable,
        total_parameters=total,
        learning_rate=run.learning_rate,
        epochs_planned=run.epochs,
        class_weights=run.class_weights.tolist() if run.class_weights is not None else None,
        settings=settings,
        resumed_after_epoch=resumed_after,  # None: trained from the beginning in one go
        processes=run.trainer.args.world_size,  # data-parallel processes (torchrun / accelerate launch), else 1
        data=DataReport.from_dict({**prepared.report, "too_long": too_long}),
        history=history,
        best_epoch=best["epoch"],
        train_seconds=round(train_seconds, 2),
        notes=notes,
        versions=versions(*TRAINING_PACKAGES),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    classifier = TextClassifier(model, tokenizer, record)
    test_logits, test_metrics = _decide_then_score(classifier, prepared, targets, config, progress)
    record.metrics = {"validation": best["validation"], "test": test_metrics}
    baseline = baseline_record(prepared, config.seed) if config.baseline else None
    if baseline is not None:
        record.baseline = baseline
        compare_with_baseline(test_metrics, baseline["test"])
    if target is not None:
        # The splits travel with the model: validation for later decisions (the export's check), test for reports.
        kept = {SPLIT_FILES[name]: split_file(prepared.splits()[name]) for name in ("validation", "test")}
        classifier.save_pretrained(target, overwrite=overwrite, files=kept)
    shutil.rmtree(run.checkpoints, ignore_errors=True)  # only now: a crash before this point can still resume
    if target is not None and config.report:
        _write_report(target, classifier.probabilities(test_logits))
    return TrainResult(classifier, target, best["epoch"], train_seconds, best["validation"], test_metrics,
                       history, notes, baseline)


# ---------------------------------------------------------------------------------------------
# fit's stages


@dataclass
class _Run:
    """What the trainer stage set up, for the stages after it."""

    trainer: Any
    checkpoints: Path
    frozen: int | None  # frozen encoder layers on the encode-once path, else None
    epochs: int  # planned
    metric: str  # the main validation metric
    learning_rate: float
    class_weights: torch.Tensor | None


def _starting_model(prepared: PreparedData, config: TrainConfig, start: Start | None) -> tuple[Any, Any]:
    if start is not None:
        return start.model, start.tokenizer
    model, tokenizer = load_base(config.model or default_model_path(), prepared.labels.names, prepared.multi_label)
    if prepared.multi_label:
        start_at_base_rates(model, _targets(prepared, "train"))
    return model, tokenizer


def _max_length(model: Any, tokenizer: Any, config: TrainConfig) -> int:
    limit = model_position_limit(model, tokenizer)
    if config.max_length is not None and config.max_length > limit:
        raise UsageError(f"--max-length {config.max_length} is above the model's limit of {limit} tokens; "
                         f"pass --max-length {limit} or less")
    return config.max_length or min(DEFAULT_MAX_LENGTH, limit)


def _encode_splits(prepared: PreparedData, tokenizer: Any, targets: dict[str, np.ndarray], max_length: int,
                   config: TrainConfig, start: Start | None) -> tuple[dict[str, EncodedSplit], dict[str, int]]:
    """Every split tokenized (validation sorted by length, for little padding), and how many texts were too long."""
    encoded, too_long = {}, {}
    for name, frame in prepared.splits().items():
        encoded[name], too_long[name] = encode_split(tokenizer, frame, targets[name], max_length, config.long_text,
                                                     config.stride)
    if start is not None and start.teacher_logits is not None:
        encoded["train"].soft = np.asarray(start.teacher_logits, dtype=np.float32)[encoded["train"].owner]
    if any(too_long.values()):
        how = {"truncate": "cut at", "head-tail": "shortened to head + tail at", "window": "split into windows of"}
        log.warning("texts longer than --max-length %d tokens, %s it (--long-text %s): %s", max_length,
                    how[config.long_text], config.long_text, too_long)
    # Validation is scored every epoch; sorted by length, its batches carry little padding (Trainer
    # evaluates in dataset order, and the metrics do not depend on the order of rows).
    encoded["validation"] = encoded["validation"].sorted_by_length()
    return encoded, too_long


def _build_trainer(model: Any, tokenizer: Any, prepared: PreparedData, encoded: dict[str, EncodedSplit],
                   config: TrainConfig, target: Path | None, progress: bool, start: Start | None) -> _Run:
    """The trainer, on the encode-once path when the bottom is frozen, with the run's epochs and callbacks."""
    trained, train_set, eval_set, collator = model, encoded["train"], encoded["validation"], None
    teacher = start is not None and start.teacher_logits is not None
    frozen = None if teacher else _frozen_bottom(model, config)  # teacher logits need the plain path
    if frozen is not None:
        trained, collator = TrainableTop(model, encoder_layers(model), frozen), collate_cached
        train_set, eval_set = (_encode_once(model, encoded[name], frozen, config, progress, name)
                               for name in ("train", "validation"))
    checkpoints = checkpoint_dir(target)
    epochs = config.epochs or planned_epochs(len(train_set), config.batch_size, _processes())
    learning_rate = config.learning_rate or default_learning_rate(model.config.hidden_size)
    metric = main_metric(prepared.multi_label)
    callbacks = [EpochLog(), SelectionScore(metric)]
    if config.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.patience))
    bucket = config.bucket_by_length and frozen is None  # the cached top's rows are mostly length 1
    class_weights = resolve_class_weights(config.class_weights, prepared)
    trainer_class = start.trainer_class if start else ClassifierTrainer
    trainer = trainer_class(
        bucket_lengths=[len(ids) for ids in train_set.encoded["input_ids"]] if bucket else None,
        multi_label=prepared.multi_label,
        class_weights=class_weights,
        head_lr_scale=config.head_lr_scale,
        model=trained,
        args=_training_args(config, learning_rate, epochs, checkpoints, progress),
        data_collator=collator or DataCollatorWithPadding(tokenizer),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer if collator is None else None,
        compute_metrics=metrics_per_text(encoded["validation"].owner, prepared.multi_label, config.window_pool),
        callbacks=callbacks,
        **(start.trainer_settings if start else {}),
    )
    quiet_progress(trainer)
    return _Run(trainer, checkpoints, frozen, epochs, metric, learning_rate, class_weights)


def _train(trainer: Any, settings: dict[str, Any], prepared: PreparedData, checkpoints: Path,
           resume: bool) -> int | None:
    """Trainer's loop, resumed when asked; a failed run leaves no checkpoints. Returns the epoch resumed after."""
    main = trainer.is_world_process_zero()
    # Outside the try: a resume refused for other settings must not delete the checkpoints it found.
    record = run_record(settings, prepared.splits(), trainer.args.world_size)
    resume_from = prepare_folder(checkpoints, record, resume, main, trainer.accelerator.wait_for_everyone)
    resumed_after = resumed_epoch(resume_from) if resume_from else None  # read now: Trainer rotates it away
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        # Every process loads the best epoch from the checkpoints before the main one deletes them.
        trainer.accelerator.wait_for_everyone()
    except BaseException as err:
        if main:
            shutil.rmtree(checkpoints, ignore_errors=True)  # a failed run leaves nothing behind
        if isinstance(err, KeyboardInterrupt):
            raise TrainingError("training interrupted; nothing was saved") from None
        raise
    return resumed_after


def _best_epoch(history: list[dict[str, Any]], config: TrainConfig, metric: str) -> dict[str, Any]:
    """The epoch Trainer restored: the best selection score (its first), or the lowest loss with --select-by loss."""
    if config.select_by == "loss":
        return min(history, key=lambda h: h["validation"]["loss"])
    return max(history, key=lambda h: selection_score(h["validation"], metric))


def _trained_model(run: _Run, model: Any, config: TrainConfig) -> Any:
    """The full model with the best epoch's weights, trainable again, LoRA merged."""
    if run.frozen is None:
        model = run.trainer.model  # with a cached top, `model` already holds the trained (shared) modules
    if config.train_layers == "lora":
        model = model.merge_and_unload()  # a plain HF model again: no peft needed to load it
    for parameter in model.parameters():
        parameter.requires_grad = True
    return model


def _decide_then_score(classifier: TextClassifier, prepared: PreparedData, targets: dict[str, np.ndarray],
                       config: TrainConfig, progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    """Decisions fitted on validation (thresholds, temperature), then the test split scored once."""
    validation_logits = classifier.logits(prepared.validation["text"].tolist(), config.eval_batch_size,
                                          pairs=prepared.pairs("validation"))
    _fit_decisions(classifier, validation_logits, targets["validation"], config)
    # Scored by the same code path `bertfit predict` uses.
    test_logits = classifier.logits(prepared.test["text"].tolist(), config.eval_batch_size, progress,
                                    pairs=prepared.pairs("test"))
    test_metrics = classifier.score(test_logits, prepared.test["label"].tolist())
    calibration = classifier.record.calibration
    if classifier.multi_label:  # what tuning the thresholds bought, on data that did not tune them
        fixed = multilabel_metrics(targets["test"], classifier.probabilities(test_logits), 0.5)
        test_metrics["at_threshold_0.5"] = headline(fixed)
    elif calibration is not None:
        calibration.test_ece_before = expected_calibration_error(targets["test"], plain_softmax(test_logits))
        calibration.test_ece_after = test_metrics["ece"]
    return test_logits, test_metrics


def _write_report(folder: Path, test_proba: np.ndarray) -> None:
    from bertfit.reporting.report import write_report

    try:
        write_report(folder, test_proba=test_proba)  # the test split as just scored; it logs where it wrote
    except Exception as err:  # noqa: BLE001 - the model is saved; a failed picture must not fail the run
        log.warning("report.html not written (%s); try: bertfit report %s", str(err).splitlines()[0], folder)


def _targets(prepared: PreparedData, split: str) -> np.ndarray:
    """A split's labels as class ids (rows,) or, for multi-label, a 0/1 matrix (rows, labels)."""
    labels = prepared.splits()[split]["label"].tolist()
    if prepared.multi_label:
        return prepared.labels.encode_multi(labels, f"the {split} split")
    return prepared.labels.encode(labels, f"the {split} split")


def _fit_decisions(classifier: TextClassifier, logits: np.ndarray, targets: np.ndarray, config: TrainConfig) -> None:
    """Multi-label: per-label thresholds with the best validation F1. Single-label: temperature scaling."""
    record = classifier.record
    if classifier.multi_label:
        thresholds = tune_thresholds(targets, classifier.probabilities(logits))
        record.thresholds = [float(t) for t in thresholds]
        log.info("thresholds tuned on validation (F1 per label): %s",
                 dict(zip(classifier.labels.names[:8], record.thresholds[:8], strict=False)))
    elif config.calibrate:
        temperature, before, after, fallback = choose_temperature(logits, targets)
        record.calibration = Calibration(temperature, validation_ece_before=before, validation_ece_after=after)
        if fallback:
            record.calibration.fallback = f"temperature kept at 1: {fallback}"
            log.warning("calibration: temperature kept at 1: %s", fallback)
        else:
            log.info("calibration: temperature %.3f fitted on validation (ECE %.4f -> %.4f)", temperature, before,
                     after)


def _frozen_bottom(model: Any, config: TrainConfig) -> int | None:
    """The number of frozen encoder layers when the encode-once fast path applies, else None."""
    if not config.encode_once or config.train_layers in ("all", "lora"):
        return None
    frozen = frozen_layer_count(model, config.train_layers, len(encoder_layers(model)))
    if frozen is None:
        log.info("encode once does not apply to %s; the frozen layers run every epoch", type(model).__name__)
    else:
        log.info("encode once: the %d frozen layers run once per text; each epoch trains the top only", frozen)
    return frozen


def _encode_once(model: Any, split: EncodedSplit, frozen: int, config: TrainConfig, progress: bool,
                 name: str) -> CachedSplit:
    # For head / pooler every layer is frozen, and the head reads the first token alone.
    first_token_only = frozen == len(encoder_layers(model))
    states = encode_frozen(model, split.encoded, frozen, first_token_only, config.eval_batch_size,
                           autocast=resolve_precision(config.precision) == "bf16", progress=progress,
                           desc=f"encoding {name} once")
    return CachedSplit(states, split.label_ids)


def _processes() -> int:
    """Data-parallel processes under torchrun / accelerate launch (WORLD_SIZE), else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _training_args(config: TrainConfig, learning_rate: float, epochs: int, checkpoints: Path, progress: bool) -> Any:
    return TrainingArguments(
        bf16=resolve_precision(config.precision) == "bf16",  # autocast: bf16 matmuls, fp32 master weights
        output_dir=str(checkpoints),
        num_train_epochs=epochs,
        learning_rate=learning_rate,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a fraction of all steps
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=1,  # with load_best_model_at_end the best checkpoint is kept as well
        load_best_model_at_end=True,
        restore_callback_states_from_checkpoint=True,  # --resume: early stopping's count of epochs without gain
        metric_for_best_model="loss" if config.select_by == "loss" else "selection",
        greater_is_better=config.select_by != "loss",
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


def model_position_limit(model: Any, tokenizer: Any) -> int:
    limit = tokenizer.model_max_length
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions and (limit is None or limit > positions):
        limit = positions
    return int(limit)
