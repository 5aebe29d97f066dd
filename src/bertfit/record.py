"""``bertfit.json`` as typed records: what a saved folder says about its model, one dataclass per part.

:class:`ModelRecord` is the whole file; :class:`Task`, :class:`LongText`, :class:`Calibration` and
:class:`DataReport` are its parts. ``from_dict`` reads any version this bertfit knows: missing
fields take their defaults, and keys it does not know are kept in ``extra`` and written back by
``to_dict``, so loading and saving a folder from a newer minor release loses nothing. Free-form
parts (settings, metrics, history, the baseline, distillation, export) stay plain dicts: they are
shown and compared, never branched on. :meth:`ModelRecord.problems` lists the values prediction
reads that are out of kind or range (a hand-edited or damaged file); reading the files that say
the model's limits is left to ``folder``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any

from bertfit.encoding import LONG_TEXT_CHOICES, POOL_CHOICES

# Of bertfit.json; raise it when a field changes meaning, and keep reading older ones.
# 2: task (multi-label), text_pair_col, long_text, thresholds, calibration, baseline.
# 3: blend (the TF-IDF baseline averaged in); written only by folders that have one, so that a bertfit
# which would predict without the blend refuses them rather than answer with the model alone.
FORMAT_VERSION = 3
PLAIN_FORMAT = 2  # what a folder without a blend is stamped

MIN_TEXT_TOKENS = 2  # tokens of text a max_length leaves beside the special tokens (as training requires)
# A saved temperature outside this range is no fit's (calibration keeps T within 0.05 to 20), and at
# its far ends logits / T overflow to infinities whose softmax is NaN.
TEMPERATURE_RANGE = (1e-3, 1e3)
SAVED_PRECISIONS = ("fp32", "bf16")


class Task(str, enum.Enum):
    """What the model predicts per text: one class, or any number of labels."""

    SINGLE_LABEL = "single_label"
    MULTI_LABEL = "multi_label"


def _known(cls: type, values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``values`` split into the dataclass's fields and the rest."""
    if not isinstance(values, dict):
        raise TypeError(f"{cls.__name__} must be a JSON object, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    return ({k: v for k, v in values.items() if k in names and k != "extra"},
            {k: v for k, v in values.items() if k not in names})


def _plain(value: Any) -> Any:
    """A record's value as JSON: enums as their value, nested records as dicts."""
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


@dataclass
class LongText:
    """How texts over max_length were handled in training, and are again at prediction."""

    mode: str = "truncate"  # truncate | head-tail | window
    stride: int | None = None  # window: tokens shared by neighbouring windows
    pool: str = "mean"  # window: how a text's window logits are pooled

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> LongText:
        return cls(**_known(cls, values or {})[0])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Calibration:
    """Temperature scaling fitted on validation (single-label), and what it did to ECE."""

    temperature: float = 1.0
    method: str = "temperature"
    validation_ece_before: float | None = None
    validation_ece_after: float | None = None
    test_ece_before: float | None = None
    test_ece_after: float | None = None
    fallback: str | None = None  # why the temperature was kept at 1, when it was

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> Calibration | None:
        return None if values is None else cls(**_known(cls, values)[0])

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None or k == "temperature"}


@dataclass
class DataReport:
    """What reading and splitting the data did: rows read, dropped and why, the split, balance, long texts."""

    source: str | None = None
    text_col: str | None = None
    label_col: str | None = None
    text_pair_col: str | None = None
    task: Task = Task.SINGLE_LABEL
    rows_read: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    split: str | None = None
    leaks: dict[str, int] | None = None  # texts shared across splits, per split (refused unless --drop-leaks)
    leaks_dropped: dict[str, int] | None = None  # with --drop-leaks: those dropped from validation/test
    rows: dict[str, int] = field(default_factory=dict)
    class_balance: dict[str, dict[str, int]] = field(default_factory=dict)
    too_long: dict[str, int] | None = None  # texts over max_length per split (set by training)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> DataReport | None:
        if values is None:
            return None
        known, extra = _known(cls, values)
        if "task" in known:
            known["task"] = Task(known["task"])
        return cls(**known, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        for name in ("leaks", "leaks_dropped", "too_long"):
            if values[name] is None:
                del values[name]
        return {**values, **self.extra}


@dataclass
class ModelRecord:
    """bertfit.json: the labels and how to read texts (what prediction needs), then how the model came to be."""

    labels: list[str]
    task: Task = Task.SINGLE_LABEL
    format_version: int = FORMAT_VERSION
    # reading texts
    text_col: str | None = None
    text_pair_col: str | None = None  # sentence-pair models: the second text's column
    label_col: str | None = None
    label_sep: str | None = None
    max_length: int = 512
    long_text: LongText = field(default_factory=LongText)
    precision: str = "fp32"  # bf16: inference in bf16 autocast where the CPU has it, as trained
    # decisions fitted on validation
    thresholds: list[float] | None = None  # multi-label, per label
    calibration: Calibration | None = None
    # {"weight": w, "metric": ..., "validation": {model, baseline, blend}}: probabilities w * model + (1 - w) *
    # the TF-IDF baseline saved beside (bertfit.blend)
    blend: dict[str, Any] | None = None
    # how it was trained
    base_model: str | None = None
    distilled: dict[str, Any] | None = None
    study: dict[str, Any] | None = None  # bertfit tune: the search that chose this model's settings
    method: dict[str, Any] | None = None  # --method: which ran (name), why, and the contrastive pairs; None: finetune
    trainable_parameters: int | None = None
    total_parameters: int | None = None
    learning_rate: float | None = None
    epochs_planned: int | None = None
    epochs_added: int = 0  # trained past the plan while validation still improved (training.extend)
    class_weights: list[float] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    resumed_after_epoch: int | None = None
    processes: int | None = None
    data: DataReport | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    train_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    # how it scored
    metrics: dict[str, Any] = field(default_factory=dict)  # validation (best epoch) and test
    baseline: dict[str, Any] | None = None
    # an ONNX export's folder
    backend: str | None = None
    export: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept as read

    @property
    def multi_label(self) -> bool:
        return self.task is Task.MULTI_LABEL

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelRecord:
        known, extra = _known(cls, values)
        known["labels"] = list(known.get("labels") or [])
        known["task"] = Task(known.get("task") or Task.SINGLE_LABEL)
        known["long_text"] = LongText.from_dict(known.get("long_text"))
        known["calibration"] = Calibration.from_dict(known.get("calibration"))
        known["data"] = DataReport.from_dict(known.get("data"))
        for name in ("settings", "metrics", "versions"):
            known[name] = known.get(name) or {}
        for name in ("history", "notes"):
            known[name] = known.get(name) or []
        return cls(**known, extra=extra)

    def problems(self, position_limit: int | None = None, special_tokens: tuple[int, int] = (0, 0)) -> list[str]:
        """What prediction would trip over, each as "FIELD is VALUE; it must be ...": empty for a sound record.

        ``position_limit``: the most tokens the model takes (None: unknown); ``special_tokens``: the
        tokens its tokenizer adds to a single text and to a pair (0 where unknown).
        """
        found = [f"{name} is {_shown(getattr(self, name))}; it must be text or null"
                 for name in ("text_col", "text_pair_col", "label_col", "label_sep")
                 if not isinstance(getattr(self, name), str | None)]
        found += [f"{name} is {_shown(getattr(self, name))}; it must be a JSON object"
                  for name in ("settings", "metrics", "versions") if not isinstance(getattr(self, name), dict)]
        found += [f"{name} is {_shown(getattr(self, name))}; it must be a list"
                  for name in ("history", "notes") if not isinstance(getattr(self, name), list)]
        if self.precision not in SAVED_PRECISIONS:
            found.append(f"precision is {_shown(self.precision)}; it must be one of {', '.join(SAVED_PRECISIONS)}")
        specials = special_tokens[1 if self.text_pair_col is not None else 0]
        least, most = specials + MIN_TEXT_TOKENS, position_limit
        room = None  # a window's tokens of text, when max_length is sound
        if not _whole(self.max_length) or self.max_length < least or most is not None and self.max_length > most:
            limit = (f" to {most}, the model's limit (config.json's max_position_embeddings, tokenizer_config.json's "
                     "model_max_length)" if most is not None else " or more")
            found.append(f"max_length is {_shown(self.max_length)}; it must be a whole number from {least}{limit}")
        else:
            room = self.max_length - special_tokens[0]
        return found + self._long_text_problems(room) + self._decision_problems()

    def _long_text_problems(self, room: int | None) -> list[str]:
        long_text, found = self.long_text, []
        if long_text.mode not in LONG_TEXT_CHOICES:
            found.append(f"long_text.mode is {_shown(long_text.mode)}; it must be one of "
                         f"{', '.join(LONG_TEXT_CHOICES)}")
        elif long_text.mode != "truncate" and self.text_pair_col is not None:
            found.append(f"long_text.mode is {long_text.mode!r} on a sentence-pair model; pairs are truncated")
        if long_text.pool not in POOL_CHOICES:
            found.append(f"long_text.pool is {_shown(long_text.pool)}; it must be one of {', '.join(POOL_CHOICES)}")
        if long_text.stride is not None and not (_whole(long_text.stride) and long_text.stride >= 0):
            found.append(f"long_text.stride is {_shown(long_text.stride)}; it must be a whole number, 0 or more")
        elif long_text.mode == "window" and long_text.stride is not None and room is not None \
                and long_text.stride >= room:  # in the other modes the stride is recorded, never read
            found.append(f"long_text.stride is {long_text.stride}; with max_length {self.max_length} it must be "
                         f"below {room}")
        return found

    def _decision_problems(self) -> list[str]:
        found = []
        thresholds = self.thresholds
        if thresholds is not None and (not isinstance(thresholds, list) or len(thresholds) != len(self.labels)
                                       or not all(finite_number(t) and 0 <= t <= 1 for t in thresholds)):
            found.append(f"thresholds is {_shown(thresholds)}; it must be a list of {len(self.labels)} numbers "
                         "from 0 to 1, one per label")
        if self.calibration is not None:
            low, high = TEMPERATURE_RANGE
            temperature = self.calibration.temperature
            if not (finite_number(temperature) and low <= temperature <= high):
                found.append(f"calibration.temperature is {_shown(temperature)}; it must be a number from {low:g} "
                             f"to {high:g}")
        if self.blend is not None:
            weight = self.blend.get("weight") if isinstance(self.blend, dict) else None
            if not (finite_number(weight) and 0 < weight < 1):
                found.append(f"blend.weight is {_shown(weight)}; it must be a number between 0 and 1")
        return found

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        for name in ("calibration", "blend", "backend", "export", "thresholds", "baseline", "study", "method"):
            if values[name] is None:
                del values[name]  # absent, as bertfit has always written them
        return {**values, **self.extra}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def finite_number(value: Any) -> bool:
    """A finite real number (a bool is not one; an integer too large for a float is not finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _shown(value: Any) -> str:
    """A value as the user wrote it in bertfit.json, cut short."""
    text = repr(value) if not isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."
