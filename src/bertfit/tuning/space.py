"""What ``bertfit tune`` searches: training settings around the default recipe, sized to the model.

The learning rate spans the default for the model's width (``default_learning_rate``) from a fifth
to three times; the layers trained are all, the top half, or the pooler and head (the last two on
the encode-once path, so cheap); the maximum length is searched only where texts run past the
default (with bucketed batches, a longer limit changes nothing for texts that fit). The default
recipe itself is the study's first trial, so that the search starts from it and the report can
set the winner beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bertfit.config import TrainConfig
from bertfit.data.cleaning import PreparedData
from bertfit.training.backbone import DEFAULT_MAX_LENGTH, default_learning_rate
from bertfit.training.epochs import planned_epochs
from bertfit.training.trainer import head_lr_scale

EPOCHS = (2, 8)
BATCH_SIZES = (8, 16, 32)
HEAD_LR_SCALES = (1.0, 3.0, 10.0)
LONG_SHARE = 0.1  # the maximum length is searched when more than this share of training texts run past the default


class Space:
    """The search space for one model and data set."""

    def __init__(self, prepared: PreparedData, config: TrainConfig, width: int, layers: int, limit: int,
                 token_lengths: np.ndarray, processes: int = 1):
        self.base_rate = config.learning_rate or default_learning_rate(width)
        # the layers given by flag (the default: all) start the search, beside all, the top half and the pooler
        self.layer_choices = list(dict.fromkeys([config.train_layers, "all", str(max(1, layers // 2)), "pooler"]))
        default_length = config.max_length or min(DEFAULT_MAX_LENGTH, limit)
        long_share = float((token_lengths > default_length).mean()) if len(token_lengths) else 0.0
        self.lengths = sorted({default_length, limit}) if long_share > LONG_SHARE else [default_length]
        self.default = {
            "learning_rate": self.base_rate,
            "epochs": config.epochs or planned_epochs(len(prepared.train), config.batch_size, processes),
            "batch_size": config.batch_size,
            "warmup_ratio": config.warmup_ratio,
            "weight_decay": config.weight_decay,
            "train_layers": config.train_layers,
            "head_lr_scale": head_lr_scale(config, prepared.multi_label, len(prepared.labels.names)),
        } | ({"max_length": default_length} if len(self.lengths) > 1 else {})
        # every range holds the defaults (the first trial), also where the user's flags moved them
        self.epochs = (min(EPOCHS[0], self.default["epochs"]), max(EPOCHS[1], self.default["epochs"]))
        self.batch_sizes = sorted({*BATCH_SIZES, config.batch_size})
        self.warmup = (0.0, max(0.2, config.warmup_ratio))
        self.decay = (0.0, max(0.1, config.weight_decay))
        self.head_scales = sorted({*HEAD_LR_SCALES, float(self.default["head_lr_scale"])})

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One trial's settings (TrainConfig fields)."""
        chosen = {
            "learning_rate": trial.suggest_float("learning_rate", self.base_rate / 5, self.base_rate * 3, log=True),
            "epochs": trial.suggest_int("epochs", *self.epochs),
            "batch_size": trial.suggest_categorical("batch_size", self.batch_sizes),
            "warmup_ratio": trial.suggest_float("warmup_ratio", *self.warmup),
            "weight_decay": trial.suggest_float("weight_decay", *self.decay),
            "train_layers": trial.suggest_categorical("train_layers", self.layer_choices),
            "head_lr_scale": trial.suggest_categorical("head_lr_scale", self.head_scales),
        }
        if len(self.lengths) > 1:
            chosen["max_length"] = trial.suggest_categorical("max_length", self.lengths)
        return chosen

    def describe(self) -> dict[str, Any]:
        """The space as bertfit.json records it."""
        return {"learning_rate": [self.base_rate / 5, self.base_rate * 3, "log"], "epochs": list(self.epochs),
                "batch_size": self.batch_sizes, "warmup_ratio": list(self.warmup), "weight_decay": list(self.decay),
                "train_layers": self.layer_choices, "head_lr_scale": self.head_scales, "max_length": self.lengths}
