"""Few labels: contrastive training of a sentence-embedding body on label pairs, then a linear head.

SetFit's recipe (Tunstall et al., 2022), kept inside an ordinary ``BertForSequenceClassification``
folder so that ``predict``, ``export``, ``serve``, ``distill`` and ``transformers.pipeline`` need
nothing new:

1. The embedded body is a sentence encoder trained with *mean* pooling, while BERT's classification
   head reads the first token: :mod:`bertfit.training.pooling` adds a layer that makes the first
   token the mean. The embedding used everywhere below is the model's own ``pooler_output``: what
   is trained is what is saved.
2. Pairs of training rows (:func:`sample_pairs`): for every row, ``PAIR_ITERATIONS`` times, one
   partner with its label (target 1) and one with another label (target 0), cut to
   :func:`pair_budget` (no more than there are distinct pairs, and MAX_PAIRS).
3. The body trains on the pairs with the cosine-similarity loss (:class:`PairTrainer`, Trainer
   with one hook overridden); the added layer and the pooler stay fixed.
4. A logistic regression on the embeddings of the training rows becomes the classification head.

The method chooses nothing on validation, so the validation rows train as well (the pairs and the
head); the test split alone estimates the model, and no temperature is fitted (on rows the model
learned from it would only make it more confident).

:func:`choose_method` decides between this and fine-tuning (``--method auto``). Single-label
texts only; the threshold below which ``auto`` picks it comes from ``bench/fewshot.py``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, Trainer, TrainingArguments

from bertfit.config import DataConfig, TrainConfig, to_dict
from bertfit.data.cleaning import PreparedData
from bertfit.encoding import unknown_tokens_note
from bertfit.errors import UsageError
from bertfit.model import TextClassifier
from bertfit.training.backbone import count_parameters, default_model_path, load_base, max_length_of
from bertfit.training.epochs import main_metric, quiet_progress
from bertfit.training.pooling import PooledBody, append_mean_pooling, embed, mean_pooling_layer
from bertfit.training.stages import (
    Fitted,
    Run,
    new_record,
    processes,
    schedule_settings,
    split_targets,
)

log = logging.getLogger(__name__)

FEW_SHOT_ROWS_PER_CLASS = 30  # auto: contrastive below this many training rows per class (bench/fewshot.py)
PAIR_ITERATIONS = 20  # partners per row and epoch, each a positive and a negative: SetFit 0.x's num_iterations
MAX_PAIRS = 12_000  # per epoch: the cost stays bounded when --method contrastive meets a large set
LEARNING_RATE = 2e-5  # the body's, as SetFit's
VALIDATION_NOTE = ("contrastive: the validation rows trained the model too (the method chooses nothing on them), "
                   "so its validation figures are in-sample and it is not calibrated; the test split is the estimate")


# ---------------------------------------------------------------------------------------------
# Which method


def choose_method(prepared: PreparedData, config: TrainConfig, resume: bool = False) -> tuple[str, str]:
    """"finetune" or "contrastive" for ``--method``, and why, in a sentence for the log and bertfit.json."""
    if config.method == "finetune":
        return "finetune", "--method finetune"
    blocker = why_not_contrastive(prepared, config, resume)
    if config.method == "contrastive":
        if blocker:
            raise UsageError(f"--method contrastive does not apply: {blocker}; use --method finetune")
        return "contrastive", "--method contrastive"
    per_class = len(prepared.train) / len(prepared.labels.names)
    threshold = few_shot_threshold()
    if per_class >= threshold:
        return "finetune", f"{per_class:.0f} training rows per class; contrastive is chosen below {threshold:g}"
    if blocker:
        return "finetune", f"{per_class:.1f} training rows per class, but contrastive does not apply: {blocker}"
    return "contrastive", f"{per_class:.1f} training rows per class, under {threshold:g}"


def few_shot_threshold() -> float:
    """Training rows per class below which ``auto`` picks contrastive; BERTFIT_FEW_SHOT_ROWS overrides it."""
    value = os.environ.get("BERTFIT_FEW_SHOT_ROWS", "")
    try:
        return float(value) if value else FEW_SHOT_ROWS_PER_CLASS
    except ValueError:
        raise UsageError(f"BERTFIT_FEW_SHOT_ROWS must be a number of rows per class, got {value!r}") from None


def why_not_contrastive(prepared: PreparedData, config: TrainConfig, resume: bool = False) -> str | None:
    """What rules the contrastive method out for these data and settings, or None."""
    if resume:
        return "--resume continues a fine-tuning run (the contrastive method keeps no checkpoints)"
    if processes() > 1:
        return "several processes (torchrun / accelerate launch): the contrastive method runs in one"
    if prepared.multi_label:
        return "the labels are multi-label (pairs need one label per text)"
    if prepared.text_pair_col is not None:
        return "the inputs are sentence pairs"
    if config.long_text != "truncate":
        return f"--long-text {config.long_text} (the contrastive body reads the first --max-length tokens)"
    if config.train_layers != "all":
        return f"--train-layers {config.train_layers} (the contrastive body trains whole)"
    if config.class_weights not in ("none", "balanced"):
        return "--class-weights FILE (the contrastive head takes none or balanced)"
    model_type = _model_type(config.model or default_model_path())
    if model_type is not None and model_type != "bert":  # None: unreadable here; loading it will say why
        return f"the model is a {model_type!r}; the mean-pooling layer is written for BERT models"
    return None


def _model_type(name: str) -> str | None:
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True).model_type
    except (OSError, ValueError):
        return None  # not readable here: fine-tuning will say why when it loads it


# ---------------------------------------------------------------------------------------------
# Pairs and the body's training


def sample_pairs(labels: np.ndarray, iterations: int, seed: int, most: int = MAX_PAIRS) -> np.ndarray:
    """(pairs, 3) rows of (row a, row b, target): per row and iteration one same-label and one other-label partner.

    A class with one row pairs it with itself (target 1: no information, no harm). Shuffled,
    seeded, and cut to ``most`` pairs (a random subset, balanced as a whole).
    """
    rng = np.random.default_rng(seed)
    members = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    others = {label: np.flatnonzero(labels != label) for label in members}
    rows = []
    for _ in range(iterations):
        for i, label in enumerate(labels):
            same = members[label]
            partner = same[rng.integers(len(same))]
            if len(same) > 1:
                while partner == i:
                    partner = same[rng.integers(len(same))]
            rows.append((i, partner, 1))
            if len(others[label]):
                rows.append((i, others[label][rng.integers(len(others[label]))], 0))
    pairs = np.asarray(rows, dtype=np.int64)
    pairs = pairs[rng.permutation(len(pairs))]
    return pairs[:most]


def distinct_pairs(counts: Any) -> int:
    """Twice the larger of the distinct same-label and other-label pair counts, for classes of ``counts`` rows:
    one epoch of setfit's "oversampling" (a row may pair with itself, as setfit counts them)."""
    counts = np.asarray(counts, dtype=np.int64)
    same = int((counts * (counts + 1) // 2).sum())
    total = int(counts.sum())
    return 2 * max(same, total * (total + 1) // 2 - same)


def pair_budget(labels: np.ndarray) -> int:
    """Pairs per epoch at most: MAX_PAIRS, and no more than :func:`distinct_pairs`: with few rows and
    classes, 20 partners per row would repeat the same pairs many times over (2 classes of 8 rows: 640
    pairs of 136 distinct ones)."""
    return min(MAX_PAIRS, distinct_pairs(np.unique(labels, return_counts=True)[1]))


class PairDataset(torch.utils.data.Dataset):
    """Pairs of tokenized texts with a similarity target."""

    def __init__(self, input_ids: list[list[int]], pairs: np.ndarray):
        self.input_ids, self.pairs = input_ids, pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> dict[str, Any]:
        a, b, similar = self.pairs[i]
        return {"a": self.input_ids[a], "b": self.input_ids[b], "similar": float(similar)}


class PairCollator:
    """Each side of a batch of pairs padded on its own (``a_input_ids``, ``b_attention_mask``, ...).

    Padded together the two sides would share the longer one's length: more tokens, more time per
    step (``bench/pair_steps.py``).
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = {}
        for side in ("a", "b"):
            padded = self.tokenizer.pad([{"input_ids": f[side]} for f in features], return_tensors="pt")
            batch.update({f"{side}_{key}": value for key, value in padded.items()})
        batch["similar"] = torch.tensor([f["similar"] for f in features], dtype=torch.float32)
        return batch


def pair_sides(batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A :class:`PairCollator` batch as the body's inputs for side a and for side b."""
    a, b = ({key[2:]: value for key, value in batch.items() if key.startswith(f"{side}_")} for side in "ab")
    return a, b


class PairTrainer(Trainer):
    """Trainer on pairs: the loss is the squared gap between the pair's cosine similarity and its target."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        a, b = (model(**side) for side in pair_sides(inputs))  # (batch, hidden) each: the pooler's output
        loss = torch.nn.functional.mse_loss(torch.cosine_similarity(a, b), inputs["similar"].to(a.dtype))
        return (loss, torch.cat([a, b])) if return_outputs else loss


def _pair_args(config: TrainConfig, learning_rate: float, epochs: int, where: Path, progress: bool,
               pairs: int) -> Any:
    return TrainingArguments(
        **schedule_settings(config, learning_rate, epochs, progress, pairs),
        output_dir=str(where),
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="epoch",
        remove_unused_columns=False,  # the pair columns are not the body's forward arguments
    )


# ---------------------------------------------------------------------------------------------
# The whole method


def fit_contrastive(prepared: PreparedData, config: TrainConfig, *, data_config: DataConfig | None = None,
                    progress: bool = True, why: str = "--method contrastive", callbacks: list[Any] | None = None
                    ) -> Any:
    """Train the body on pairs, then the head on embeddings; a ``Fitted`` as ``fit_model`` returns, test unread."""
    torch.manual_seed(config.seed)
    model, tokenizer = load_base(config.model or default_model_path(), prepared.labels.names)
    layer = mean_pooling_layer(model)  # added to the stack after the pairs: cheaper to train beside it
    max_length = max_length_of(model, tokenizer, config)
    targets = {name: split_targets(prepared, name) for name in prepared.splits()}
    # Nothing is chosen on validation here, so its rows train too (bench/fewshot.py: at 8 rows per class
    # the rows held out cost about 5 points); its figures are then in-sample, and the test split is the estimate.
    texts = prepared.train["text"].tolist() + prepared.validation["text"].tolist()
    learned = np.concatenate([targets["train"], targets["validation"]])
    encoded = dict(tokenizer(texts, truncation=True, max_length=max_length))
    encoded.pop("token_type_ids", None)  # single texts: all zero, the model's default
    too_long = {"train and validation": sum(len(ids) >= max_length for ids in encoded["input_ids"])}
    unreadable = unknown_tokens_note(tokenizer, encoded["input_ids"])
    if unreadable:
        log.warning("%s", unreadable)

    started = time.perf_counter()
    pairs = sample_pairs(learned, PAIR_ITERATIONS, config.seed, most=pair_budget(learned))
    epochs = config.epochs or 1
    learning_rate = config.learning_rate or LEARNING_RATE
    log.info("contrastive: %d pairs of the %d training and validation rows per epoch, %d epoch(s), learning "
             "rate %g", len(pairs), len(texts), epochs, learning_rate)
    where = Path(tempfile.mkdtemp(prefix="bertfit-pairs-"))
    trainer = PairTrainer(model=PooledBody(model.base_model, layer),
                          args=_pair_args(config, learning_rate, epochs, where, progress, len(pairs)),
                          train_dataset=PairDataset(encoded["input_ids"], pairs),
                          data_collator=PairCollator(tokenizer), callbacks=callbacks)
    quiet_progress(trainer)
    result = trainer.train()
    append_mean_pooling(model, layer)
    fit_head(model, embed(model.base_model, encoded, tokenizer, config.eval_batch_size), learned,
             config.class_weights == "balanced")
    train_seconds = time.perf_counter() - started
    for parameter in model.parameters():
        parameter.requires_grad = True

    run = Run(trainer, where, None, epochs, main_metric(False), learning_rate, None)
    settings = {"data": to_dict(data_config or DataConfig()), "train": to_dict(config)}
    best: dict[str, Any] = {"epoch": epochs, "train_loss": result.training_loss}
    record = new_record(prepared, config, data_config or DataConfig(), None, run, [best], best, [],
                        settings=settings, max_length=max_length, parameters=count_parameters(model),
                        too_long=too_long, resumed_after=None, train_seconds=train_seconds)
    record.method = {"name": "contrastive", "why": why, "pairs_per_epoch": int(len(pairs)),
                     "pair_iterations": PAIR_ITERATIONS, "mean_pooling_layer": model.config.num_hidden_layers,
                     "validation_trained_on": True}
    record.notes = [VALIDATION_NOTE] + ([unreadable] if unreadable else [])
    log.info("%s", VALIDATION_NOTE)
    classifier = TextClassifier(model, tokenizer, record)
    logits = classifier.logits(prepared.validation["text"].tolist(), config.eval_batch_size)
    best["validation"] = classifier.score(logits, prepared.validation["label"].tolist())
    record.history = [best]
    record.metrics = {"validation": best["validation"]}
    return Fitted(classifier, best, [best], [VALIDATION_NOTE], train_seconds, targets, where)


def fit_head(model: Any, embeddings: np.ndarray, targets: np.ndarray, balanced: bool) -> None:
    """A logistic regression on (rows, hidden) embeddings, written into the model's linear classifier."""
    from sklearn.linear_model import LogisticRegression

    classes = model.config.num_labels
    regression = LogisticRegression(max_iter=1000, class_weight="balanced" if balanced else None)
    regression.fit(embeddings, targets)
    weight = np.zeros((classes, embeddings.shape[1]), dtype=np.float32)
    bias = np.zeros(classes, dtype=np.float32)
    if len(regression.classes_) == 2:
        # One score z for the second class: logits (-z/2, z/2) give the same softmax as sigmoid(z).
        low, high = regression.classes_
        weight[low], weight[high] = -regression.coef_[0] / 2, regression.coef_[0] / 2
        bias[low], bias[high] = -regression.intercept_[0] / 2, regression.intercept_[0] / 2
    else:
        weight[regression.classes_] = regression.coef_
        bias[regression.classes_] = regression.intercept_
        # A class absent from training keeps a very low logit rather than a neutral 0.
        absent = np.setdiff1d(np.arange(classes), regression.classes_)
        bias[absent] = bias[regression.classes_].min() - 10.0
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(weight))
        model.classifier.bias.copy_(torch.from_numpy(bias))
