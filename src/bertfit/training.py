"""Fine-tuning on ``transformers.Trainer``: load a checkpoint, freeze what should not train, fit.

The path, top to bottom: load the base checkpoint with a fresh classification head, freeze
parameters by ``--train-layers``, tokenize the splits (padding is left to each batch), train with
per-epoch evaluation on validation, keep the epoch with the lowest validation loss, stop early,
then score the test split once and save the folder atomically. Data reading lives in ``data``,
the artifact in ``model``, metrics in ``metrics``, per-epoch checkpoints and ``--resume`` in
``checkpoints``. Under torchrun or accelerate launch every process runs this same path and Trainer
splits the batches among them; the main process alone then scores, saves and reports.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import (
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from bertfit import __version__
from bertfit.backbone import (
    count_parameters,
    default_learning_rate,
    default_model_path,
    encoder_layers,
    freeze,
    load_base,
    start_at_base_rates,
)
from bertfit.baseline import fit_and_score
from bertfit.cached import CachedSplit, TrainableTop, encode_frozen, frozen_layer_count, target
from bertfit.cached import collate as collate_cached
from bertfit.calibration import calibrated, fit_temperature
from bertfit.checkpoints import check_stale, checkpoint_dir, prepare_folder, resumed_epoch, run_record
from bertfit.config import DataConfig, TrainConfig, check, to_dict
from bertfit.data import PreparedData, prepare
from bertfit.distill import distillation_loss
from bertfit.encoding import encode, pool
from bertfit.errors import TrainingError, UsageError
from bertfit.metrics import (
    classification_metrics,
    expected_calibration_error,
    headline,
    main_metric,
    multilabel_metrics,
    tune_thresholds,
)
from bertfit.model import FORMAT_VERSION, TextClassifier, check_output, resolve_precision

log = logging.getLogger(__name__)

DEFAULT_OUT = "bertfit-model"
DEFAULT_MAX_LENGTH = 256  # tokens, when --max-length is not given and the model allows it


# ---------------------------------------------------------------------------------------------
# Data for Trainer


class EncodedSplit:
    """Tokenized rows for Trainer (a map-style dataset); padding is done per batch by the collator.

    ``owner`` maps each input row to its text (long texts in windows give one text several rows);
    ``targets`` are per input row: a class id, or a 0/1 row for multi-label.
    """

    def __init__(self, encoded: dict[str, list], targets: np.ndarray, owner: np.ndarray | None = None):
        self.encoded = encoded
        self.label_ids = targets
        self.owner = np.arange(len(targets)) if owner is None else owner
        self.soft: np.ndarray | None = None  # distillation: the teacher's logits per input row

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.encoded.items()}
        item["labels"] = target(self.label_ids[i])
        if self.soft is not None:
            item["teacher_logits"] = self.soft[i].tolist()
        return item

    def sorted_by_length(self) -> EncodedSplit:
        """The same rows, shortest first: evaluation batches then pad little (metrics ignore order)."""
        order = np.argsort([len(ids) for ids in self.encoded["input_ids"]], kind="stable")
        encoded = {key: [values[i] for i in order] for key, values in self.encoded.items()}
        return EncodedSplit(encoded, self.label_ids[order], self.owner[order])


def encode_split(
    tokenizer: Any, frame: pd.DataFrame, targets: np.ndarray, max_length: int, long_text: str = "truncate",
    stride: int | None = None,
) -> tuple[EncodedSplit, int]:
    """Tokenize a split (texts, and pairs when it has them); returns the dataset and how many texts were too long."""
    pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
    encoded = encode(tokenizer, frame["text"].tolist(), pairs, max_length=max_length, long_text=long_text,
                     stride=stride)
    return EncodedSplit(encoded.features, targets[encoded.owner], encoded.owner), encoded.over_length


class LengthBuckets(torch.utils.data.Sampler):
    """Training order for ``--bucket-by-length``: batches of texts of similar length, in random order.

    Each epoch: shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, cut it
    into batches, then shuffle the batches (a short one goes last). Transformers' own group-by-length
    sampler sizes its pools by the data (9 batches for 600 rows), so one long text pads many batches;
    larger pools pad less, and shuffling the batches keeps an epoch from running from long to short.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, pool_batches: int = 64):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.pool = batch_size * pool_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def set_epoch(self, epoch: int) -> None:
        """Trainer (through accelerate) names the epoch, so a resumed run draws the same order."""
        self.epoch = epoch

    def __iter__(self):
        # The order depends on (seed, epoch) alone, not on how many epochs this object has served.
        generator = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = generator.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start:start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        # The loader cuts this stream every batch_size rows, so the one short batch must come last.
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        for i in generator.permutation(len(full)):
            yield from full[i].tolist()
        for batch in short:
            yield from batch.tolist()


class _Trainer(Trainer):
    """Trainer with bertfit's samplers: length buckets for training, and evaluation in dataset order
    (bertfit sorts validation by length itself; Trainer's group-by-length would reshuffle it)."""

    def __init__(self, *args: Any, bucket_lengths: list[int] | None = None, multi_label: bool = False,
                 class_weights: torch.Tensor | None = None, distilled: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.bucket_lengths = bucket_lengths
        self.multi_label = multi_label
        self.class_weights = class_weights
        self.distilled = distilled

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """One loss for every path (full model, cached top, LoRA): cross-entropy (class-weighted when
        asked) for single-label, binary cross-entropy per label for multi-label."""
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        soft = inputs.pop("teacher_logits", None)  # distillation, training rows only
        outputs = model(**inputs)
        logits = outputs.logits  # (batch, classes)
        if self.multi_label:
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
        else:
            weight = self.class_weights.to(logits.device) if self.class_weights is not None else None
            loss = nn.functional.cross_entropy(logits.float(), labels, weight=weight)
        if soft is not None:
            loss = distillation_loss(logits.float(), soft.float(), loss, self.distilled["temperature"],
                                     self.distilled["alpha"], self.multi_label)
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        if self.bucket_lengths is None:
            return super()._get_train_sampler(train_dataset)
        return LengthBuckets(self.bucket_lengths, self.args.train_batch_size, self.args.seed)

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        return torch.utils.data.SequentialSampler(eval_dataset)


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
            "history": self.history,
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
    **settings: Any,
) -> TrainResult | None:
    """Fine-tune a classifier on labelled data and save it to ``out`` (None: do not save).

    ``settings`` are DataConfig and TrainConfig fields, e.g. ``epochs=3, text_col="body"``.
    ``resume``: continue a killed run from the last checkpoint beside ``out`` (see ``bertfit.checkpoints``);
    without it, such checkpoints are refused unless ``overwrite``. Under torchrun / accelerate launch
    every process trains, and the main one alone scores, saves and returns the result (the others: None).
    """
    data_config, train_config = split_settings(settings)
    check(data_config, train_config)
    target = Path(out) if out is not None else None
    if target is not None:
        check_output(target, overwrite)
        check_stale(target, resume, overwrite)
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
    base: tuple[Any, Any] | None = None,
    soft_targets: np.ndarray | None = None,
    distilled: dict[str, Any] | None = None,
) -> TrainResult | None:
    """Train on prepared splits; see the module docstring for the steps. None on all but the main process.

    Distillation (``bertfit.distill``) passes the student as ``base`` (model, tokenizer), the
    teacher's logits per training text as ``soft_targets``, and its settings as ``distilled``.
    """
    model_name = config.model or default_model_path()
    multi_label = prepared.multi_label
    set_seed(config.seed)  # before the head is created, so its initial weights follow the seed
    model, tokenizer = base or load_base(model_name, prepared.labels.names, multi_label)
    if base is None and multi_label:
        start_at_base_rates(model, _targets(prepared, "train"))
    limit = model_position_limit(model, tokenizer)
    if config.max_length is not None and config.max_length > limit:
        raise UsageError(f"--max-length {config.max_length} is above the model's limit of {limit} tokens; "
                         f"pass --max-length {limit} or less")
    max_length = config.max_length or min(DEFAULT_MAX_LENGTH, limit)
    class_weights = resolve_class_weights(config.class_weights, prepared)
    model = freeze(model, config.train_layers, config.lora_r, config.lora_alpha)
    trainable, total = count_parameters(model)
    log.info("training %s of %s parameters (%.1f%%), --train-layers %s",
             f"{trainable:,}", f"{total:,}", 100 * trainable / total, config.train_layers)
    learning_rate = config.learning_rate or default_learning_rate(model.config.hidden_size)

    targets = {name: _targets(prepared, name) for name in prepared.splits()}
    encoded, too_long = {}, {}
    for name, frame in prepared.splits().items():
        encoded[name], too_long[name] = encode_split(tokenizer, frame, targets[name], max_length, config.long_text,
                                                     config.stride)
    if soft_targets is not None:
        encoded["train"].soft = np.asarray(soft_targets, dtype=np.float32)[encoded["train"].owner]
    if any(too_long.values()):
        how = {"truncate": "cut at", "head-tail": "shortened to head + tail at", "window": "split into windows of"}
        log.warning("texts longer than --max-length %d tokens, %s it (--long-text %s): %s", max_length,
                    how[config.long_text], config.long_text, too_long)

    started = time.perf_counter()  # the one-off encoding of the fast path counts as training time
    # Validation is scored every epoch; sorted by length, its batches carry little padding (Trainer
    # evaluates in dataset order, and the metrics do not depend on the order of rows).
    encoded["validation"] = encoded["validation"].sorted_by_length()
    trained, train_set, eval_set, collator = model, encoded["train"], encoded["validation"], None
    frozen = _frozen_bottom(model, config) if soft_targets is None else None  # soft targets need the plain path
    if frozen is not None:
        trained, collator = TrainableTop(model, encoder_layers(model), frozen), collate_cached
        train_set, eval_set = (
            _encode_once(model, encoded[name], frozen, config, progress, name)
            for name in ("train", "validation")
        )
    checkpoints = checkpoint_dir(target)
    args = _training_args(config, learning_rate, checkpoints, progress)
    bucket = config.bucket_by_length and frozen is None  # the cached top's rows are mostly length 1
    callbacks = [EpochLog()]
    if config.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.patience))
    trainer = _Trainer(
        bucket_lengths=[len(ids) for ids in train_set.encoded["input_ids"]] if bucket else None,
        multi_label=multi_label,
        class_weights=class_weights,
        distilled=distilled,
        model=trained,
        args=args,
        data_collator=collator or DataCollatorWithPadding(tokenizer),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer if collator is None else None,
        compute_metrics=_metrics_per_text(encoded["validation"].owner, multi_label, config.window_pool),
        callbacks=callbacks,
    )
    _quiet_progress(trainer)
    main = trainer.is_world_process_zero()
    settings = {"data": to_dict(data_config or DataConfig()), "train": to_dict(config)}
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
    train_seconds = time.perf_counter() - started
    if not main:
        return None  # torchrun / accelerate launch: the main process scores, saves and reports

    history = epoch_history(trainer.state.log_history)
    best = min(history, key=lambda h: h["validation"]["loss"])
    if frozen is None:
        model = trainer.model  # with a cached top, `model` already holds the trained (shared) modules
    if config.train_layers == "lora":
        model = model.merge_and_unload()  # a plain HF model again: no peft needed to load it
    for parameter in model.parameters():
        parameter.requires_grad = True
    notes = [note] if (note := overfitting_note(history)) else []

    meta = {
        "format_version": FORMAT_VERSION,
        "task": "multi_label" if multi_label else "single_label",
        "labels": list(prepared.labels.names),
        "text_col": prepared.text_col,
        "text_pair_col": prepared.text_pair_col,
        "label_col": prepared.label_col,
        "label_sep": (data_config or DataConfig()).label_sep,
        "max_length": max_length,
        "long_text": {"mode": config.long_text, "stride": config.stride, "pool": config.window_pool},
        "precision": resolve_precision(config.precision),
        "base_model": (distilled or {}).get("student") or config.model or "embedded:all-MiniLM-L6-v2",
        "distilled": distilled,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "learning_rate": learning_rate,
        "class_weights": class_weights.tolist() if class_weights is not None else None,
        "settings": settings,
        "resumed_after_epoch": resumed_after,  # None: trained from the beginning in one go
        "processes": trainer.args.world_size,  # data-parallel processes (torchrun / accelerate launch), else 1
        "data": {**prepared.report, "too_long": too_long},
        "history": history,
        "best_epoch": best["epoch"],
        "train_seconds": round(train_seconds, 2),
        "notes": notes,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    classifier = TextClassifier(model, tokenizer, meta)
    # Decisions fitted on validation (thresholds, temperature) before test is looked at.
    validation_logits = classifier.logits(prepared.validation["text"].tolist(), config.eval_batch_size,
                                          pairs=prepared.pairs("validation"))
    _fit_decisions(classifier, validation_logits, targets["validation"], config)
    # The test split is scored once, here, by the same code path `bertfit predict` uses.
    test_logits = classifier.logits(prepared.test["text"].tolist(), config.eval_batch_size, progress,
                                    pairs=prepared.pairs("test"))
    test_metrics = classifier.score(test_logits, prepared.test["label"].tolist())
    if multi_label:  # what tuning the thresholds bought, on data that did not tune them
        fixed = multilabel_metrics(targets["test"], classifier.probabilities(test_logits), 0.5)
        test_metrics["at_threshold_0.5"] = headline(fixed)
    elif "calibration" in meta:
        meta["calibration"]["test_ece_before"] = expected_calibration_error(
            targets["test"], _plain_softmax(test_logits))
        meta["calibration"]["test_ece_after"] = test_metrics["ece"]
    meta["metrics"] = {"validation": best["validation"], "test": test_metrics}
    baseline = _baseline(prepared, config) if config.baseline else None
    if baseline is not None:
        meta["baseline"] = baseline
        _compare_with_baseline(test_metrics, baseline["test"])
    if target is not None:
        classifier.save_pretrained(target, overwrite=overwrite, files={"test.jsonl": _jsonl(prepared.test)})
    shutil.rmtree(checkpoints, ignore_errors=True)  # only now: a crash before this point can still resume
    if target is not None and config.report:
        _write_report(target)
    return TrainResult(classifier, target, best["epoch"], train_seconds, best["validation"], test_metrics,
                       history, notes, baseline)


def _write_report(folder: Path) -> None:
    from bertfit.report import write_report

    try:
        write_report(folder)  # it logs where it wrote
    except Exception as err:  # noqa: BLE001 - the model is saved; a failed picture must not fail the run
        log.warning("report.html not written (%s); try: bertfit report %s", str(err).splitlines()[0], folder)


def _targets(prepared: PreparedData, split: str) -> np.ndarray:
    """A split's labels as class ids (rows,) or, for multi-label, a 0/1 matrix (rows, labels)."""
    labels = prepared.splits()[split]["label"].tolist()
    if prepared.multi_label:
        return prepared.labels.encode_multi(labels, f"the {split} split")
    return prepared.labels.encode(labels, f"the {split} split")


def resolve_class_weights(spec: str, prepared: PreparedData) -> torch.Tensor | None:
    """--class-weights: none, balanced (rows / (classes x rows of the class), on train), or a JSON file."""
    if spec == "none":
        return None
    if prepared.multi_label:
        raise UsageError("--class-weights applies to single-label data; multi-label models tune a threshold per "
                         "label on validation instead: drop --class-weights")
    names = prepared.labels.names
    if spec == "balanced":
        counts = np.array([prepared.labels.balance(prepared.train["label"])[name] for name in names], dtype=float)
        weights = len(prepared.train) / (len(names) * counts)
    else:
        file = Path(spec)
        if not file.is_file():
            raise UsageError(f"--class-weights must be none, balanced or a JSON file of {{label: weight}}; "
                             f"{spec!r} is neither (no such file)")
        try:
            given = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UsageError(f"--class-weights file {file} is not valid JSON ({err}); write {{\"label\": weight}}") \
                from None
        if not isinstance(given, dict):
            raise UsageError(f"--class-weights file {file} must hold one JSON object {{label: weight}}")
        unknown = sorted(set(map(str, given)) - set(names))
        if unknown:
            raise UsageError(f"--class-weights file {file} names label(s) {unknown[:5]} not in the training data "
                             f"(labels: {list(names)[:10]})")
        weights = np.array([given.get(name, 1.0) for name in names], dtype=float)
        if not all(isinstance(w, int | float) and w > 0 for w in weights):
            raise UsageError(f"--class-weights file {file}: every weight must be a positive number")
    log.info("class weights: %s", {name: round(float(w), 3) for name, w in zip(names, weights, strict=True)})
    return torch.tensor(weights, dtype=torch.float32)


def _fit_decisions(classifier: TextClassifier, logits: np.ndarray, targets: np.ndarray, config: TrainConfig) -> None:
    """Multi-label: per-label thresholds with the best validation F1. Single-label: temperature scaling."""
    meta = classifier.meta
    if classifier.multi_label:
        thresholds = tune_thresholds(targets, classifier.probabilities(logits))
        meta["thresholds"] = [float(t) for t in thresholds]
        log.info("thresholds tuned on validation (F1 per label): %s",
                 dict(zip(classifier.labels.names[:8], meta["thresholds"][:8], strict=False)))
    elif config.calibrate:
        temperature = fit_temperature(logits, targets)
        before = expected_calibration_error(targets, _plain_softmax(logits))
        meta["calibration"] = {"method": "temperature", "temperature": temperature,
                               "validation_ece_before": before}
        meta["calibration"]["validation_ece_after"] = expected_calibration_error(
            targets, classifier.probabilities(logits))
        log.info("calibration: temperature %.3f fitted on validation (ECE %.4f -> %.4f)", temperature, before,
                 meta["calibration"]["validation_ece_after"])


def _plain_softmax(logits: np.ndarray) -> np.ndarray:
    return calibrated(logits, 1.0)  # temperature 1: the uncalibrated probabilities


def _baseline(prepared: PreparedData, config: TrainConfig) -> dict[str, Any]:
    """TF-IDF + logistic regression on the same splits, scored on the same test split."""
    metrics = fit_and_score(prepared, seed=config.seed)
    return {"name": "tfidf-logreg", "description": "TF-IDF word 1-2 + char 2-5 grams, logistic regression",
            "test": metrics}


def _compare_with_baseline(model_metrics: dict[str, Any], baseline_metrics: dict[str, Any]) -> None:
    name, ours = main_metric(model_metrics)
    theirs = baseline_metrics[name]
    log.info("test %s: this model %.4f, TF-IDF + logistic regression baseline %.4f (%+.1f points)", name, ours,
             theirs, 100 * (ours - theirs))
    if theirs > ours:
        log.warning("the TF-IDF + logistic regression baseline beats this model on test %s (%.4f against %.4f): "
                    "a linear model on word and character n-grams does better here, in seconds; consider "
                    "shipping it, or training longer, a larger model, or more data", name, theirs, ours)


def _jsonl(frame: pd.DataFrame) -> str:
    """The split as JSON lines (text, text_pair, label), kept with the model for export checks and reports."""
    return "".join(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in row.items()},
                              ensure_ascii=False) + "\n" for row in frame.to_dict(orient="records"))


def _metrics_per_text(owner: np.ndarray, multi_label: bool, how: str) -> Any:
    """Trainer's compute_metrics for the validation split: window logits pooled per text, then scored."""
    n_texts = int(owner.max()) + 1 if len(owner) else 0

    def compute(prediction: Any) -> dict[str, Any]:
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        logits = pool(np.asarray(logits, dtype=np.float32), owner, n_texts, how)
        first = np.unique(owner, return_index=True)[1]  # a text's target, from its first row
        y_true = np.asarray(prediction.label_ids)[first]
        if multi_label:
            metrics = multilabel_metrics(y_true, 1 / (1 + np.exp(-logits.astype(np.float64))))
            metrics.pop("per_label")
        else:
            metrics = classification_metrics(y_true, _plain_softmax(logits))
        metrics.pop("loss")  # Trainer reports its own eval_loss, the one that picks the best epoch
        return metrics

    return compute


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


def _training_args(config: TrainConfig, learning_rate: float, checkpoints: Path, progress: bool) -> Any:
    return TrainingArguments(
        bf16=resolve_precision(config.precision) == "bf16",  # autocast: bf16 matmuls, fp32 master weights
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
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
        metric_for_best_model="loss",
        greater_is_better=False,
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


class EpochLog(TrainerCallback):
    """One log line per epoch: training loss, validation loss and the headline metrics."""

    train_loss: float | None = None

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
            round(state.epoch or 0), args.num_train_epochs,
            f"{self.train_loss:.4f}" if self.train_loss is not None else "n/a",
            metrics["eval_loss"], name.replace("_", " "), metrics[f"eval_{name}"], metrics["eval_f1_macro"],
            f"{auc:.3f}" if auc is not None else "n/a",
        )


class StderrProgress(ProgressCallback):
    """Trainer's progress bars (on stderr) without its habit of printing log dicts to stdout."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        return None


def _quiet_progress(trainer: Any) -> None:
    if trainer.pop_callback(ProgressCallback) is not None:
        trainer.add_callback(StderrProgress)
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


def versions() -> dict[str, str]:
    import sklearn
    import transformers

    return {
        "bertfit": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": f"{sys.platform}-{platform.machine()}",
        "cpu_count": str(os.cpu_count()),
    }
