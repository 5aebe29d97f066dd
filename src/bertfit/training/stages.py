"""The stages ``training.run.fit`` goes through, in its order, each a function a reader can take alone.

:func:`starting_model`, :func:`encode_splits`, :func:`build_trainer`,
:func:`train_loop`, :func:`best_epoch`, :func:`trained_model`, :func:`new_record`,
:func:`write_report`. :class:`Start` is where a run starts other than
from the base checkpoint (distillation's student), :class:`Run` what the trainer stage set up,
:class:`Fitted` a trained model before the decisions on validation.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding, EarlyStoppingCallback, TrainingArguments

from bertfit.backends import resolve_precision
from bertfit.config import DataConfig, TrainConfig
from bertfit.data.cleaning import PreparedData
from bertfit.environment import TRAINING_PACKAGES, versions
from bertfit.errors import Terminated, TrainingInterrupted
from bertfit.model import TextClassifier
from bertfit.record import DataReport, LongText, ModelRecord, Task
from bertfit.training.backbone import (
    default_learning_rate,
    default_model_path,
    encoder_layers,
    load_base,
    start_at_base_rates,
)
from bertfit.training.cached import CachedSplit, TrainableTop, encode_frozen, frozen_layer_count
from bertfit.training.cached import collate as collate_cached
from bertfit.training.checkpoints import checkpoint_dir, prepare_folder, resumed_epoch, run_record
from bertfit.training.epochs import (
    EpochLog,
    SelectionScore,
    ValidationLogits,
    main_metric,
    metrics_per_text,
    planned_epochs,
    quiet_progress,
    selection_score,
)
from bertfit.training.trainer import (
    ClassifierTrainer,
    EncodedSplit,
    batch_within,
    encode_split,
    head_lr_scale,
)

log = logging.getLogger(__name__)


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



@dataclass
class Fitted:
    """A trained model before any decision on validation and before the test split: what a tuning trial keeps."""

    classifier: TextClassifier
    best: dict[str, Any]  # the kept epoch's row of the history
    history: list[dict[str, Any]]
    notes: list[str]
    train_seconds: float
    targets: dict[str, Any]  # per split, the labels as class ids or 0/1 rows
    checkpoints: Path  # the run's checkpoints: deleted once the model is saved (until then, --resume can use them)
    validation_logits: np.ndarray | None = None  # the kept epoch's, per text, when this run scored it


@dataclass
class Run:
    """What the trainer stage set up, for the stages after it."""

    trainer: Any
    checkpoints: Path
    frozen: int | None  # frozen encoder layers on the encode-once path, else None
    epochs: int  # planned
    metric: str  # the main validation metric
    learning_rate: float
    class_weights: torch.Tensor | None
    validation_logits: ValidationLogits = field(default_factory=ValidationLogits)  # filled by Trainer's evaluations


def starting_model(prepared: PreparedData, config: TrainConfig, start: Start | None) -> tuple[Any, Any]:
    if start is not None:
        return start.model, start.tokenizer
    model, tokenizer = load_base(config.model or default_model_path(), prepared.labels.names, prepared.multi_label)
    if prepared.multi_label:
        start_at_base_rates(model, split_targets(prepared, "train"))
    return model, tokenizer


def encode_splits(prepared: PreparedData, tokenizer: Any, targets: dict[str, np.ndarray], max_length: int,
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


def build_trainer(model: Any, tokenizer: Any, prepared: PreparedData, encoded: dict[str, EncodedSplit],
                   config: TrainConfig, target: Path | None, progress: bool, start: Start | None,
                   callbacks: list[Any] | None = None, frozen_outputs: dict[Any, Any] | None = None, *,
                   class_weights: torch.Tensor | None = None) -> Run:
    """The trainer, on the encode-once path when the bottom is frozen, with the run's epochs and callbacks.

    ``class_weights``: the loss's, as :func:`resolve_class_weights` made them (before the model loaded).

    ``frozen_outputs``: a dict the caller keeps across runs from the same base model on the same
    tokenized splits (tuning trials), so that each frozen bottom runs over the texts once in all.
    """
    trained, train_set, eval_set, collator = model, encoded["train"], encoded["validation"], None
    teacher = start is not None and start.teacher_logits is not None
    frozen = None if teacher else _frozen_bottom(model, config)  # teacher logits need the plain path
    if frozen is not None:
        trained, collator = TrainableTop(model, encoder_layers(model), frozen), collate_cached
        train_set, eval_set = (_encode_once(model, encoded[name], frozen, config, progress, name, frozen_outputs)
                               for name in ("train", "validation"))
    checkpoints = checkpoint_dir(target)
    epochs = config.epochs or planned_epochs(len(train_set), config.batch_size, processes())
    learning_rate = config.learning_rate or default_learning_rate(model.config.hidden_size)
    metric = main_metric(prepared.multi_label)
    kept_logits = ValidationLogits()
    callbacks = [EpochLog(), SelectionScore(metric), kept_logits, *(callbacks or [])]
    if config.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.patience))
    bucket = config.bucket_by_length and frozen is None  # the cached top's rows are mostly length 1
    trainer_class = start.trainer_class if start else ClassifierTrainer
    trainer = trainer_class(
        bucket_lengths=[len(ids) for ids in train_set.encoded["input_ids"]] if bucket else None,
        multi_label=prepared.multi_label,
        class_weights=class_weights,
        head_lr_scale=head_lr_scale(config, prepared.multi_label, len(prepared.labels.names)),
        model=trained,
        args=_training_args(config, learning_rate, epochs, checkpoints, progress, (len(train_set), len(eval_set))),
        data_collator=collator or DataCollatorWithPadding(tokenizer),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer if collator is None else None,
        compute_metrics=metrics_per_text(encoded["validation"].owner, prepared.multi_label, config.window_pool,
                                         kept_logits),
        callbacks=callbacks,
        **(start.trainer_settings if start else {}),
    )
    quiet_progress(trainer)
    return Run(trainer, checkpoints, frozen, epochs, metric, learning_rate, class_weights, kept_logits)


def train_loop(trainer: Any, settings: dict[str, Any], prepared: PreparedData, checkpoints: Path,
               resume: bool, then: Callable[[], Any] | None = None) -> int | None:
    """Trainer's loop, resumed when asked, then ``then`` (more epochs); a failed run leaves no checkpoints.

    Returns the epoch resumed after.
    """
    main = trainer.is_world_process_zero()
    # Outside the try: a resume refused for other settings must not delete the checkpoints it found.
    record = run_record(settings, prepared.splits(), trainer.args.world_size)
    resume_from = prepare_folder(checkpoints, record, resume, main, trainer.accelerator.wait_for_everyone)
    resumed_after = resumed_epoch(resume_from) if resume_from else None  # read now: Trainer rotates it away
    try:
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        if then is not None:
            then()
        # Every process loads the best epoch from the checkpoints before the main one deletes them.
        trainer.accelerator.wait_for_everyone()
    except BaseException as err:
        resumable = checkpoints.name.endswith(".checkpoints")  # beside --out (without one: a temporary folder)
        if isinstance(err, Terminated) and main and resumable and any(checkpoints.glob("checkpoint-*")):
            raise Terminated(f"terminated; nothing was saved, but the epochs done are kept in {checkpoints}: run the "
                             "same command with --resume to go on from the last") from None
        if main:
            shutil.rmtree(checkpoints, ignore_errors=True)  # a failed run leaves nothing behind
        if isinstance(err, KeyboardInterrupt):
            raise TrainingInterrupted("training interrupted; nothing was saved") from None
        raise
    return resumed_after


def best_epoch(history: list[dict[str, Any]], config: TrainConfig, metric: str) -> dict[str, Any]:
    """The epoch Trainer restored: the best selection score (its first), or the lowest loss with --select-by loss."""
    if config.select_by == "loss":
        return min(history, key=lambda h: h["validation"]["loss"])
    return max(history, key=lambda h: selection_score(h["validation"], metric))


def trained_model(run: Run, model: Any, config: TrainConfig) -> Any:
    """The full model with the best epoch's weights, trainable again, LoRA merged."""
    if run.frozen is None:
        model = run.trainer.model  # with a cached top, `model` already holds the trained (shared) modules
    if config.train_layers == "lora":
        model = model.merge_and_unload()  # a plain HF model again: no peft needed to load it
    for parameter in model.parameters():
        parameter.requires_grad = True
    return model


def write_report(folder: Path, test_proba: np.ndarray) -> None:
    from bertfit.reporting.report import write_report

    try:
        write_report(folder, test_proba=test_proba)  # the test split as just scored; it logs where it wrote
    except Exception as err:  # noqa: BLE001 - the model is saved; a failed picture must not fail the run
        log.warning("report.html not written (%s); try: bertfit report %s", str(err).splitlines()[0], folder)


def split_targets(prepared: PreparedData, split: str) -> np.ndarray:
    """A split's labels as class ids (rows,) or, for multi-label, a 0/1 matrix (rows, labels)."""
    labels = prepared.splits()[split]["label"].tolist()
    if prepared.multi_label:
        return prepared.labels.encode_multi(labels, f"the {split} split")
    return prepared.labels.encode(labels, f"the {split} split")


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
                 name: str, kept: dict[Any, Any] | None = None) -> CachedSplit:
    key = (id(split), frozen, config.precision, name)
    if kept is not None and key in kept:
        return kept[key][1]
    # For head / pooler every layer is frozen, and the head reads the first token alone.
    first_token_only = frozen == len(encoder_layers(model))
    states = encode_frozen(model, split.encoded, frozen, first_token_only, config.eval_batch_size,
                           autocast=resolve_precision(config.precision) == "bf16", progress=progress,
                           desc=f"encoding {name} once")
    cached = CachedSplit(states, split.label_ids)
    if kept is not None:
        kept[key] = (split, cached)  # the split is held too, so that its id is not reused
    return cached


def processes() -> int:
    """Data-parallel processes under torchrun / accelerate launch (WORLD_SIZE), else 1."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def schedule_settings(config: TrainConfig, learning_rate: float, epochs: int, progress: bool,
                      train_rows: int) -> dict[str, Any]:
    """TrainingArguments every bertfit trainer shares: the optimizer's schedule, seeds, CPU, no trackers by name."""
    return {
        "num_train_epochs": epochs,
        "learning_rate": learning_rate,
        "per_device_train_batch_size": batch_within(config.batch_size, train_rows),
        "weight_decay": config.weight_decay,
        "warmup_steps": config.warmup_ratio,  # a float below 1 is a fraction of all steps
        "lr_scheduler_type": "linear",
        "seed": config.seed, "data_seed": config.seed,
        "report_to": "none",  # tracking passes its callbacks itself (training.tracking)
        "disable_tqdm": not progress, "use_cpu": not torch.cuda.is_available(), "dataloader_num_workers": 0,
    }


def _training_args(config: TrainConfig, learning_rate: float, epochs: int, checkpoints: Path, progress: bool,
                   rows: tuple[int, int]) -> Any:
    """Trainer's arguments for fine-tuning; ``rows``: the rows of the training and the validation split."""
    return TrainingArguments(
        **schedule_settings(config, learning_rate, epochs, progress, rows[0]),
        bf16=resolve_precision(config.precision) == "bf16",  # autocast: bf16 matmuls, fp32 master weights
        output_dir=str(checkpoints),
        per_device_eval_batch_size=batch_within(config.eval_batch_size, rows[1]),
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        save_total_limit=1,  # with load_best_model_at_end the best checkpoint is kept as well
        load_best_model_at_end=True,
        restore_callback_states_from_checkpoint=True,  # --resume: early stopping's count of epochs without gain
        metric_for_best_model="loss" if config.select_by == "loss" else "selection",
        greater_is_better=config.select_by != "loss",
    )


def new_record(prepared: PreparedData, config: TrainConfig, data_config: DataConfig, start: Start | None, run: Run,
               history: list[dict[str, Any]], best: dict[str, Any], notes: list[str], *, settings: dict[str, Any],
               max_length: int, parameters: tuple[int, int], too_long: dict[str, int], resumed_after: int | None,
               train_seconds: float) -> ModelRecord:
    """bertfit.json for the run just trained; the decisions and scores are added as they are made."""
    return ModelRecord(
        labels=list(prepared.labels.names),
        task=Task.MULTI_LABEL if prepared.multi_label else Task.SINGLE_LABEL,
        text_col=prepared.text_col,
        text_pair_col=prepared.text_pair_col,
        label_col=prepared.label_col,
        label_sep=data_config.label_sep,
        max_length=max_length,
        long_text=LongText(config.long_text, config.stride, config.window_pool),
        precision=resolve_precision(config.precision),
        base_model=start.described if start else config.model or "embedded:all-MiniLM-L6-v2",
        distilled=start.distilled if start else None,
        trainable_parameters=parameters[0],
        total_parameters=parameters[1],
        learning_rate=run.learning_rate,
        epochs_planned=run.epochs,
        epochs_added=len(history) - run.epochs if len(history) > run.epochs else 0,
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
