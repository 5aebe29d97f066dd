"""Fine-tuning on ``transformers.Trainer``: load a checkpoint, freeze what should not train, fit.

The path, top to bottom: load the base checkpoint with a fresh classification head, freeze
parameters by ``--train-layers``, tokenize the splits (padding is left to each batch), train with
per-epoch evaluation on validation, keep the epoch with the lowest validation loss, stop early,
then score the test split once and save the folder atomically. Data reading lives in ``data``,
the artifact in ``model``, metrics in ``metrics``.
"""

from __future__ import annotations

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
from tqdm.auto import tqdm
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
)
from bertfit.cached import CachedSplit, TrainableTop, encode_frozen, frozen_layer_count
from bertfit.cached import collate as collate_cached
from bertfit.config import DataConfig, TrainConfig, check, to_dict
from bertfit.data import PreparedData, prepare
from bertfit.errors import TrainingError, UsageError
from bertfit.metrics import classification_metrics, headline
from bertfit.model import FORMAT_VERSION, TextClassifier, check_output, resolve_precision

log = logging.getLogger(__name__)

DEFAULT_OUT = "bertfit-model"
DEFAULT_MAX_LENGTH = 256  # tokens, when --max-length is not given and the model allows it


# ---------------------------------------------------------------------------------------------
# Data for Trainer


class EncodedSplit:
    """Tokenized rows for Trainer (a map-style dataset); padding is done per batch by the collator."""

    def __init__(self, encoded: dict[str, list], label_ids: np.ndarray):
        self.encoded = encoded
        self.label_ids = label_ids

    def __len__(self) -> int:
        return len(self.label_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.encoded.items()}
        item["labels"] = int(self.label_ids[i])
        return item

    def sorted_by_length(self) -> EncodedSplit:
        """The same rows, shortest first: evaluation batches then pad little (metrics ignore order)."""
        order = np.argsort([len(ids) for ids in self.encoded["input_ids"]], kind="stable")
        encoded = {key: [values[i] for i in order] for key, values in self.encoded.items()}
        return EncodedSplit(encoded, self.label_ids[order])


def encode_split(
    tokenizer: Any, frame: pd.DataFrame, label_ids: np.ndarray, max_length: int, progress: bool = False,
    desc: str = "tokenizing",
) -> tuple[EncodedSplit, int]:
    """Tokenize a split; returns the dataset and how many texts were cut at max_length."""
    texts = frame["text"].tolist()
    encoded: dict[str, list] = {}
    step = 2048
    for start in tqdm(range(0, len(texts), step), desc=desc, disable=not progress, file=sys.stderr, leave=False):
        part = tokenizer(texts[start:start + step], truncation=True, max_length=max_length)
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in part:
                encoded.setdefault(key, []).extend(part[key])
    truncated = sum(len(ids) >= max_length for ids in encoded["input_ids"])
    return EncodedSplit(encoded, label_ids), int(truncated)


class LengthBuckets(torch.utils.data.Sampler):
    """Training order for ``--bucket-by-length``: batches of texts of similar length, in random order.

    Each epoch: shuffle, cut into pools of ``pool_batches`` batches, sort each pool by length, cut it
    into batches, then shuffle the batches (a short one goes last). Transformers' own group-by-length sampler sizes its pools
    by the data (9 batches for 600 rows), so one long text pads many batches; larger pools pad less,
    and shuffling the batches keeps an epoch from running from long to short texts.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, pool_batches: int = 64):
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.pool = batch_size * pool_batches
        self.generator = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        order = self.generator.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.pool):
            pool = order[start:start + self.pool]
            pool = pool[np.argsort(self.lengths[pool], kind="stable")]
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        # The loader cuts this stream every batch_size rows, so the one short batch must come last.
        full = [b for b in batches if len(b) == self.batch_size]
        short = [b for b in batches if len(b) < self.batch_size]
        for i in self.generator.permutation(len(full)):
            yield from full[i].tolist()
        for batch in short:
            yield from batch.tolist()


class _Trainer(Trainer):
    """Trainer with bertfit's samplers: length buckets for training, and evaluation in dataset order
    (bertfit sorts validation by length itself; Trainer's group-by-length would reshuffle it)."""

    def __init__(self, *args: Any, bucket_lengths: list[int] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.bucket_lengths = bucket_lengths

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

    def summary(self) -> dict[str, Any]:
        """The JSON object `bertfit train` prints last."""
        return {
            "model_dir": str(self.model_dir),
            "best_epoch": self.best_epoch,
            "train_seconds": round(self.train_seconds, 2),
            "validation": headline(self.validation),
            "test": headline(self.test),
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
    progress: bool = True,
    **settings: Any,
) -> TrainResult:
    """Fine-tune a classifier on labelled data and save it to ``out`` (None: do not save).

    ``settings`` are DataConfig and TrainConfig fields, e.g. ``epochs=3, text_col="body"``.
    """
    data_config, train_config = split_settings(settings)
    check(data_config, train_config)
    target = Path(out) if out is not None else None
    if target is not None:
        check_output(target, overwrite)
    prepared = data if isinstance(data, PreparedData) else prepare(data, data_config)
    return fit(prepared, train_config, target, data_config=data_config, overwrite=overwrite, progress=progress)


def fit(
    prepared: PreparedData,
    config: TrainConfig,
    target: Path | None,
    *,
    data_config: DataConfig | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train on prepared splits; see the module docstring for the steps."""
    model_name = config.model or default_model_path()
    set_seed(config.seed)  # before the head is created, so its initial weights follow the seed
    model, tokenizer = load_base(model_name, prepared.labels.names)
    limit = model_position_limit(model, tokenizer)
    if config.max_length is not None and config.max_length > limit:
        raise UsageError(f"--max-length {config.max_length} is above the model's limit of {limit} tokens; "
                         f"pass --max-length {limit} or less")
    max_length = config.max_length or min(DEFAULT_MAX_LENGTH, limit)
    model = freeze(model, config.train_layers, config.lora_r, config.lora_alpha)
    trainable, total = count_parameters(model)
    log.info("training %s of %s parameters (%.1f%%), --train-layers %s",
             f"{trainable:,}", f"{total:,}", 100 * trainable / total, config.train_layers)
    learning_rate = config.learning_rate or default_learning_rate(model.config.hidden_size)

    label_ids = {name: prepared.labels.encode(frame["label"].tolist(), f"the {name} split")
                 for name, frame in prepared.splits().items()}
    encoded, truncated = {}, {}
    for name, frame in prepared.splits().items():
        encoded[name], truncated[name] = encode_split(tokenizer, frame, label_ids[name], max_length, progress,
                                                      desc=f"tokenizing {name}")
    if any(truncated.values()):
        log.warning("texts cut at --max-length %d tokens: %s", max_length, truncated)

    started = time.perf_counter()  # the one-off encoding of the fast path counts as training time
    # Validation is scored every epoch; sorted by length, its batches carry little padding (Trainer
    # evaluates in dataset order, and the metrics do not depend on the order of rows).
    encoded["validation"] = encoded["validation"].sorted_by_length()
    trained, train_set, eval_set, collator = model, encoded["train"], encoded["validation"], None
    frozen = _frozen_bottom(model, config)
    if frozen is not None:
        trained, collator = TrainableTop(model, encoder_layers(model), frozen), collate_cached
        train_set, eval_set = (
            _encode_once(model, encoded[name], frozen, config, progress, name)
            for name in ("train", "validation")
        )
    checkpoints = _checkpoint_dir(target)
    # Bucketing needs token lengths; the cached top of encode once has its own (usually length-1) rows.
    args = _training_args(config, learning_rate, checkpoints, progress)
    bucket = config.bucket_by_length and frozen is None
    callbacks = [EpochLog()]
    if config.patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=config.patience))
    trainer = _Trainer(
        bucket_lengths=[len(ids) for ids in train_set.encoded["input_ids"]] if bucket else None,
        model=trained,
        args=args,
        data_collator=collator or DataCollatorWithPadding(tokenizer),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer if collator is None else None,
        compute_metrics=_compute_metrics,
        callbacks=callbacks,
    )
    _quiet_progress(trainer)
    try:
        trainer.train()
    except BaseException as err:
        shutil.rmtree(checkpoints, ignore_errors=True)  # a failed run leaves nothing behind
        if isinstance(err, KeyboardInterrupt):
            raise TrainingError("training interrupted; nothing was saved") from None
        raise
    train_seconds = time.perf_counter() - started

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
        "task": "single_label",
        "labels": list(prepared.labels.names),
        "text_col": prepared.text_col,
        "label_col": prepared.label_col,
        "max_length": max_length,
        "precision": resolve_precision(config.precision),
        "base_model": config.model or "embedded:all-MiniLM-L6-v2",
        "trainable_parameters": trainable,
        "total_parameters": total,
        "learning_rate": learning_rate,
        "settings": {"data": to_dict(data_config or DataConfig()), "train": to_dict(config)},
        "data": {**prepared.report, "truncated": truncated},
        "history": history,
        "best_epoch": best["epoch"],
        "train_seconds": round(train_seconds, 2),
        "notes": notes,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    classifier = TextClassifier(model, tokenizer, meta)
    # The test split is scored once, here, by the same code path `bertfit predict` uses.
    test_metrics = classifier.evaluate(prepared.test["text"].tolist(), prepared.test["label"].tolist(),
                                       config.eval_batch_size, progress=progress)
    meta["metrics"] = {"validation": best["validation"], "test": test_metrics}
    shutil.rmtree(checkpoints, ignore_errors=True)
    if target is not None:
        classifier.save_pretrained(target, overwrite=overwrite)
    return TrainResult(classifier, target, best["epoch"], train_seconds, best["validation"], test_metrics,
                       history, notes)


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


def _checkpoint_dir(target: Path | None) -> Path:
    if target is None:
        import tempfile

        return Path(tempfile.mkdtemp(prefix="bertfit-checkpoints-"))
    return target.parent / f".{target.name}.checkpoints"


def _compute_metrics(prediction: Any) -> dict[str, Any]:
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    proba = torch.softmax(torch.as_tensor(logits).float(), dim=-1).numpy()
    metrics = classification_metrics(prediction.label_ids, proba)
    metrics.pop("loss")  # Trainer reports its own eval_loss, the one that picks the best epoch
    return metrics


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
        log.info(
            "epoch %d/%d: train loss %s, validation loss %.4f, accuracy %.3f, F1 macro %.3f, AUC %s",
            round(state.epoch or 0), args.num_train_epochs,
            f"{self.train_loss:.4f}" if self.train_loss is not None else "n/a",
            metrics["eval_loss"], metrics["eval_accuracy"], metrics["eval_f1_macro"],
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
