"""The saved artifact and inference: a Hugging Face folder plus ``bertfit.json``.

A bertfit model folder is a plain Hugging Face sequence-classification folder (config with
id2label, safetensors weights, tokenizer) that ``transformers.pipeline`` loads without bertfit,
plus one small versioned ``bertfit.json`` holding labels, columns, settings, history, metrics and
versions. :class:`TextClassifier` loads, saves (atomically) and predicts. What a prediction means
(probabilities, temperature, thresholds, pooled windows, records, metrics) is decided here once;
the logits of a batch come from a backend (``backends``: PyTorch, or an ONNX export on
onnxruntime). Training lives in ``train``; this module never updates weights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.backends import OnnxBackend, TorchBackend, resolve_backend
from bertfit.calibration import calibrated
from bertfit.encoding import INPUT_KEYS, encode, pool
from bertfit.errors import DataError, ModelLoadError, OutputError, UsageError
from bertfit.labels import LabelSet
from bertfit.metrics import classification_metrics, expected_calibration_error, multilabel_metrics

log = logging.getLogger(__name__)

# Of bertfit.json; raise it when a field changes meaning, and keep reading older ones.
# 2: task (multi-label), text_pair_col, long_text, thresholds, calibration, baseline.
FORMAT_VERSION = 2
META_FILE = "bertfit.json"


class TextClassifier:
    """A fine-tuned classifier: ``predict`` / ``predict_proba`` / ``evaluate`` / ``save_pretrained``.

    ``TextClassifier(model, tokenizer, meta)`` wraps a PyTorch model; ``backend=`` takes a ready
    backend instead (``from_pretrained`` picks one for the folder).
    """

    def __init__(self, model: Any = None, tokenizer: Any = None, meta: dict[str, Any] | None = None, *,
                 backend: TorchBackend | OnnxBackend | None = None):
        if meta is None:
            raise TypeError("TextClassifier needs meta (labels and settings); load a folder with from_pretrained")
        self.backend = backend if backend is not None else TorchBackend(model, tokenizer, meta)
        self.meta = meta

    @property
    def meta(self) -> dict[str, Any]:
        """bertfit.json's contents: labels, task, thresholds, calibration, max_length, long_text, settings, ..."""
        return self._meta

    @meta.setter
    def meta(self, value: dict[str, Any]) -> None:
        self._meta = value
        self.labels = LabelSet(tuple(value["labels"]))
        if isinstance(self.backend, TorchBackend):
            self.backend.meta = value  # it reads 'precision' from the same dict

    @property
    def model(self) -> Any:
        """The PyTorch model (torch backend) or the onnxruntime session (onnx backend)."""
        return self.backend.model

    @property
    def tokenizer(self) -> Any:
        """What ``encoding.encode`` tokenizes with: the Hugging Face tokenizer, or tokenizer.json for ONNX."""
        return self.backend.tokenizer

    @property
    def bf16(self) -> bool:
        """Inference in bf16 autocast, as the model was trained (meta 'precision'); torch backend only."""
        return bool(getattr(self.backend, "bf16", False))

    @property
    def max_length(self) -> int:
        return int(self.meta.get("max_length", 512))

    @property
    def multi_label(self) -> bool:
        return self.meta.get("task") == "multi_label"

    @property
    def text_pair_col(self) -> str | None:
        """The second text's column for a sentence-pair model, else None."""
        return self.meta.get("text_pair_col")

    @property
    def temperature(self) -> float:
        return float((self.meta.get("calibration") or {}).get("temperature", 1.0))

    @property
    def thresholds(self) -> np.ndarray:
        """Multi-label decision thresholds per label (tuned on validation when trained by bertfit)."""
        return np.asarray(self.meta.get("thresholds") or [0.5] * len(self.labels), dtype=np.float64)

    # -- loading and saving -------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str = "auto", threads: int | None = None) -> TextClassifier:
        """Load a folder written by bertfit train or export (or any HF sequence-classification folder).

        ``backend``: 'torch' (model.safetensors), 'onnx' (model.onnx from bertfit export, on
        onnxruntime, without importing torch), or 'auto': ONNX when the folder has model.onnx and
        onnxruntime is installed, else torch. ``threads``: the backend's intra-op threads. Default: one per
        core (for torch process-wide); ONNX then also runs one batch per core side by side.
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ModelLoadError(f"model folder not found: {folder}; train one with: bertfit train DATA --out {folder}")
        meta = read_meta(folder)
        if resolve_backend(folder, backend) == "onnx":
            if meta is None:
                raise ModelLoadError(f"{folder} has model.onnx but no {META_FILE}; export it with bertfit export, "
                                     "which writes the labels and settings beside")
            return cls(meta=meta, backend=OnnxBackend.load(folder, threads))
        runner = TorchBackend.load(folder, meta, threads)
        if meta is None:  # a plain HF folder: take what its config says
            config, tokenizer = runner.model.config, runner.tokenizer
            id2label = config.id2label
            meta = {"format_version": FORMAT_VERSION, "labels": [id2label[i] for i in sorted(id2label)],
                    "max_length": min(tokenizer.model_max_length, 512),
                    "task": "multi_label" if config.problem_type == "multi_label_classification"
                    else "single_label"}
            runner.meta = meta
        return cls(meta=meta, backend=runner)

    def save_pretrained(self, path: str | Path, overwrite: bool = False, files: dict[str, str] | None = None) -> Path:
        """Write the folder next to its destination, then rename: a crash leaves no half model.

        ``files``: more text files to write inside it (name: content), e.g. the test split.
        """
        if self.backend.name != "torch":
            raise UsageError("save_pretrained writes PyTorch weights; this classifier runs an ONNX export: copy its "
                             "folder instead, or export again with bertfit export")
        target = Path(path)
        check_output(target, overwrite)
        staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            self.model.save_pretrained(str(staging), safe_serialization=True)
            self.tokenizer.save_pretrained(str(staging))
            meta = {**self.meta, "format_version": FORMAT_VERSION}
            (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=_jsonable) + "\n")
            for name, content in (files or {}).items():
                (staging / name).write_text(content, encoding="utf-8")
            _replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target

    # -- inference ----------------------------------------------------------------------------

    def logits(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False,
               pairs: Sequence[str] | None = None) -> np.ndarray:
        """Raw scores, (len(texts), n_classes), in the order given; long texts pooled over their windows.

        Inputs are run in batches of similar token length (fewer pad tokens), then put back in order.
        """
        from tqdm.auto import tqdm

        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
        pairs = self._check_pairs(texts, pairs)
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        long_text = self.meta.get("long_text") or {}
        encoded = encode(self.tokenizer, texts, pairs, max_length=self.max_length,
                         long_text=long_text.get("mode", "truncate"), stride=long_text.get("stride"))
        order = np.argsort(encoded.lengths(), kind="stable")
        out = np.empty((len(encoded), len(self.labels)), dtype=np.float32)
        keys = [k for k in encoded.features if k in INPUT_KEYS]
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]

        def run(chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return chosen, self.backend.logits({k: [encoded.features[k][i] for i in chosen] for k in keys})

        parallel = min(getattr(self.backend, "parallel", 1), len(batches))
        with contextlib.ExitStack() as stack:
            if parallel > 1:  # batches side by side (the ONNX backend's default); the longest first, so the
                batches.reverse()  # last to finish is a short one and no thread idles long at the end
                pool_map = stack.enter_context(ThreadPoolExecutor(parallel, thread_name_prefix="bertfit-score")).map
            else:
                pool_map = map
            done = pool_map(run, batches)
            for chosen, logits in tqdm(done, total=len(batches), desc="scoring", disable=not progress,
                                       file=sys.stderr, leave=False):
                out[chosen] = logits
        return pool(out, encoded.owner, encoded.n_texts, long_text.get("pool", "mean"))

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False,
                      pairs: Sequence[str] | None = None) -> np.ndarray:
        """Probabilities, (len(texts), n_classes): softmax (calibrated when trained so), or per-label sigmoid."""
        return self.probabilities(self.logits(texts, batch_size, progress, pairs))

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """What this model's logits mean: calibrated softmax, or per-label sigmoid for multi-label."""
        if self.multi_label:
            return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)
        return calibrated(logits, self.temperature)

    def predict(self, texts: Sequence[str], batch_size: int = 64,
                pairs: Sequence[str] | None = None) -> list[str] | list[list[str]]:
        """A label per text; for a multi-label model, a list of labels per text (those over their threshold)."""
        proba = self.predict_proba(texts, batch_size, pairs=pairs)
        if self.multi_label:
            return self.labels.decode_multi(proba >= self.thresholds)
        return [self.labels.names[i] for i in proba.argmax(axis=1)]

    def predict_records(self, texts: Sequence[str], batch_size: int = 64, pairs: Sequence[str] | None = None,
                        threshold: float | None = None) -> Iterator[dict[str, Any]]:
        """One dict per text (what `bertfit predict` prints): text, label and score, probabilities by label.

        Multi-label: ``labels`` (those at or over their threshold; ``threshold`` overrides them all)
        instead of label and score.
        """
        return self.records(texts, self.logits(texts, batch_size, pairs=pairs), pairs, threshold)

    def records(self, texts: Sequence[str], logits: np.ndarray, pairs: Sequence[str] | None = None,
                threshold: float | None = None) -> Iterator[dict[str, Any]]:
        """The records of ``predict_records`` from logits already computed (the server batches requests)."""
        proba = self.probabilities(logits)
        cut = self.thresholds if threshold is None else np.full(len(self.labels), threshold)
        for i, row in enumerate(proba):
            record: dict[str, Any] = {"text": texts[i]}
            if pairs is not None:
                record["text_pair"] = pairs[i]
            if self.multi_label:
                record["labels"] = [self.labels.names[k] for k in np.flatnonzero(row >= cut)]
            else:
                best = int(row.argmax())
                record["label"] = self.labels.names[best]
                record["score"] = round(float(row[best]), 6)
            record["probabilities"] = {name: round(float(p), 6) for name, p in zip(self.labels.names, row, strict=True)}
            yield record

    def evaluate(
        self, texts: Sequence[str], labels: Iterable[Any], batch_size: int = 64, progress: bool = False,
        pairs: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Metrics of this model on labelled texts (labels as names; tuples of names for multi-label)."""
        return self.score(self.logits(texts, batch_size, progress, pairs), list(labels))

    def score(self, logits: np.ndarray, labels: list[Any]) -> dict[str, Any]:
        """Metrics from logits and true label names, as this model decides (thresholds, temperature)."""
        if self.multi_label:
            y_true = self.labels.encode_multi([tuple(names) for names in labels], where="the evaluation data")
            return multilabel_metrics(y_true, self.probabilities(logits), self.thresholds)
        y_true = self.labels.encode(labels, where="the evaluation data")
        proba = self.probabilities(logits)
        metrics = classification_metrics(y_true, proba)
        metrics["ece"] = expected_calibration_error(y_true, proba)
        return metrics

    def _check_pairs(self, texts: Sequence[str], pairs: Sequence[str] | None) -> list[str] | None:
        if self.text_pair_col is not None and pairs is None and len(texts):
            raise DataError(f"this model classifies sentence pairs; give each text its pair (column "
                            f"{self.text_pair_col!r} in a file, or pairs= in Python)")
        if self.text_pair_col is None and pairs is not None:
            raise DataError("this model classifies single texts, not pairs; pass the texts alone")
        return list(pairs) if pairs is not None else None


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(requested: str) -> str:
    """fp32 or bf16: 'auto' is bf16 where the CPU (or a GPU) supports it natively, else fp32."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def read_meta(folder: Path) -> dict[str, Any] | None:
    """bertfit.json, checked for a format this version can read; None for a plain HF folder."""
    file = folder / META_FILE
    if not file.exists():
        if (folder / "config.json").exists():
            return None
        raise ModelLoadError(
            f"{folder} is not a model folder (no {META_FILE} or config.json); pass the folder bertfit train wrote"
        )
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{file} is not valid JSON ({err}); the folder is damaged: retrain or restore it") \
            from None
    if not isinstance(meta, dict) or not isinstance(meta.get("format_version"), int):
        raise ModelLoadError(f"{file} is not a bertfit.json (no format_version); the folder is damaged: "
                             "retrain or restore it")
    version = meta["format_version"]
    if version > FORMAT_VERSION:
        raise ModelLoadError(
            f"{folder} was saved in bertfit format {version!r}, newer than this bertfit reads "
            f"(up to {FORMAT_VERSION}); upgrade: pip install -U bertfit"
        )
    return meta


def check_output(target: Path, overwrite: bool) -> None:
    """Fail early (before any training) when the model folder cannot be written."""
    if target.exists() and not target.is_dir():
        raise OutputError(f"--out {target} is a file; pass a folder path")
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise OutputError(f"--out {target} exists and is not empty; pass --overwrite or another --out")
    parent = target.parent if str(target.parent) else Path(".")
    probe_dir = parent
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise OutputError(f"--out {target} is inside {probe_dir}, which is a file; pass another --out")
    if not os.access(probe_dir, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {probe_dir} (permission denied); pass an --out you can write to")


def _replace(staging: Path, target: Path) -> None:
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
