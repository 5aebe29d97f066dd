"""``bertfit.json`` as typed records: what a saved folder says about its model, one dataclass per part.

:class:`ModelRecord` is the whole file; :class:`Task`, :class:`LongText`, :class:`Calibration` and
:class:`DataReport` are its parts. ``from_dict`` reads any version this bertfit knows: missing
fields take their defaults, and keys it does not know are kept in ``extra`` and written back by
``to_dict``, so loading and saving a folder from a newer minor release loses nothing. Free-form
parts (settings, metrics, history, the baseline, distillation, export) stay plain dicts: they are
shown and compared, never branched on.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

# Of bertfit.json; raise it when a field changes meaning, and keep reading older ones.
# 2: task (multi-label), text_pair_col, long_text, thresholds, calibration, baseline.
FORMAT_VERSION = 2


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

    def to_dict(self) -> dict[str, Any]:
        values = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "extra"}
        for name in ("calibration", "backend", "export", "thresholds", "baseline", "study", "method"):
            if values[name] is None:
                del values[name]  # absent, as bertfit has always written them
        return {**values, **self.extra}
