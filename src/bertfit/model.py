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
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.backends import OnnxBackend, TorchBackend, resolve_backend
from bertfit.blend import LinearBaseline, blended_logits, joined
from bertfit.calibration import calibrated
from bertfit.claims import claimed
from bertfit.encoding import INPUT_KEYS, encode, is_blank, pool
from bertfit.errors import DataError, ModelLoadError, UsageError
from bertfit.folder import META_FILE, check_model_folder, read_meta, write_meta
from bertfit.labels import LabelSet
from bertfit.metrics import classification_metrics, expected_calibration_error, multilabel_metrics
from bertfit.progress import progress_bar
from bertfit.record import ModelRecord, Task
from bertfit.staging import check_folder, staged_folder

log = logging.getLogger(__name__)



class TextClassifier:
    """A fine-tuned classifier: ``predict`` / ``predict_proba`` / ``evaluate`` / ``save_pretrained``.

    ``TextClassifier(model, tokenizer, record)`` wraps a PyTorch model (``record``: a ModelRecord,
    or bertfit.json's dict); ``backend=`` takes a ready backend instead (``from_pretrained`` picks
    one for the folder). ``baseline``: the TF-IDF baseline a record's ``blend`` averages in (``bertfit.blend``).
    """

    def __init__(self, model: Any = None, tokenizer: Any = None, record: ModelRecord | dict[str, Any] | None = None,
                 *, backend: TorchBackend | OnnxBackend | None = None, baseline: LinearBaseline | None = None):
        if record is None:
            raise TypeError("TextClassifier needs a record (labels and settings); load a folder with from_pretrained")
        self.backend = backend if backend is not None else TorchBackend(model, tokenizer)
        self.baseline = baseline
        self.record = record if isinstance(record, ModelRecord) else ModelRecord.from_dict(record)

    @property
    def record(self) -> ModelRecord:
        """bertfit.json, typed: labels, task, thresholds, calibration, max_length, long_text, settings, ..."""
        return self._record

    @record.setter
    def record(self, value: ModelRecord) -> None:
        self._record = value
        self.labels = LabelSet(tuple(value.labels))
        if isinstance(self.backend, TorchBackend):
            self.backend.precision = value.precision

    @property
    def meta(self) -> dict[str, Any]:
        """bertfit.json as it would be written: a copy (change ``record`` to change the model's)."""
        return self.record.to_dict()

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
        """Inference in bf16 autocast, as the model was trained (the record's precision); torch backend only."""
        return bool(getattr(self.backend, "bf16", False))

    @property
    def max_length(self) -> int:
        return int(self.record.max_length)

    @property
    def multi_label(self) -> bool:
        return self.record.multi_label

    @property
    def text_pair_col(self) -> str | None:
        """The second text's column for a sentence-pair model, else None."""
        return self.record.text_pair_col

    @property
    def temperature(self) -> float:
        return float(self.record.calibration.temperature) if self.record.calibration else 1.0

    @property
    def thresholds(self) -> np.ndarray:
        """Multi-label decision thresholds per label (tuned on validation when trained by bertfit)."""
        return np.asarray(self.record.thresholds or [0.5] * len(self.labels), dtype=np.float64)

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
        check_model_folder(folder)
        record = read_meta(folder)
        baseline = _saved_baseline(folder, record)
        if resolve_backend(folder, backend) == "onnx":
            if record is None:
                raise ModelLoadError(f"{folder} has model.onnx but no {META_FILE}; export it with bertfit export, "
                                     "which writes the labels and settings beside")
            return cls(record=record, backend=OnnxBackend.load(folder, threads), baseline=baseline)
        runner = TorchBackend.load(folder, record.labels if record else None, threads)
        if record is None:  # a plain HF folder: take what its config says
            config, tokenizer = runner.model.config, runner.tokenizer
            id2label = config.id2label
            record = ModelRecord(
                labels=[id2label[i] for i in sorted(id2label)], max_length=min(tokenizer.model_max_length, 512),
                task=Task.MULTI_LABEL if config.problem_type == "multi_label_classification" else Task.SINGLE_LABEL)
        return cls(record=record, backend=runner, baseline=baseline)

    def save_pretrained(self, path: str | Path, overwrite: bool = False, files: dict[str, str] | None = None) -> Path:
        """Write the folder next to its destination, then rename: a crash leaves no half model.

        ``files``: more text files to write inside it (name: content), e.g. the test split.
        """
        if self.backend.name != "torch":
            raise UsageError("save_pretrained writes PyTorch weights; this classifier runs an ONNX export: copy its "
                             "folder instead, or export again with bertfit export")
        target = Path(path)
        check_folder(target, overwrite)
        with claimed(target), staged_folder(target) as staging:
            self.model.save_pretrained(str(staging), safe_serialization=True)
            self.tokenizer.save_pretrained(str(staging))
            write_meta(staging, self.record)
            if self.record.blend is not None:
                self._blend_baseline().save(staging)
            for name, content in (files or {}).items():
                (staging / name).write_text(content, encoding="utf-8")
        return target

    # -- inference ----------------------------------------------------------------------------

    def logits(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False,
               pairs: Sequence[str] | None = None) -> np.ndarray:
        """Scores, (len(texts), n_classes), in the order given; long texts pooled over their windows.

        Inputs are run in batches of similar token length (fewer pad tokens), then put back in order.
        A model whose record blends the TF-IDF baseline in (``bertfit.blend``) gives the logits of that
        average; the transformer's own are :meth:`model_logits`'s.
        """
        texts, _ = checked_texts(texts)
        return self._logits(texts, self._check_pairs(texts, pairs), batch_size, progress)

    def _logits(self, texts: list[str], pairs: list[str] | None, batch_size: int, progress: bool) -> np.ndarray:
        """:meth:`logits` of texts and pairs already checked."""
        logits = self._model_logits(texts, pairs, batch_size, progress)
        if self.record.blend is None or len(logits) == 0:
            return logits
        baseline = self._blend_baseline().proba(joined(texts, pairs))
        return blended_logits(self.probabilities(logits), baseline, float(self.record.blend["weight"]),
                              self.multi_label, self.temperature)

    def _blend_baseline(self) -> LinearBaseline:
        if self.baseline is None:
            raise UsageError("this model's record blends the TF-IDF baseline, but no baseline was given: load the "
                             "folder with TextClassifier.from_pretrained, or pass baseline=")
        return self.baseline

    def model_logits(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False,
                     pairs: Sequence[str] | None = None) -> np.ndarray:
        """The transformer's raw scores, as :meth:`logits` describes, without the blend."""
        texts, _ = checked_texts(texts)
        return self._model_logits(texts, self._check_pairs(texts, pairs), batch_size, progress)

    def _model_logits(self, texts: list[str], pairs: list[str] | None, batch_size: int,
                      progress: bool) -> np.ndarray:
        """:meth:`model_logits` of texts and pairs already checked."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive whole number, got {batch_size!r}")
        empty = next((i for i, text in enumerate(texts) if is_blank(text)), None)
        if empty is None and pairs is not None:
            empty = next((i for i, pair in enumerate(pairs) if is_blank(pair)), None)
        if empty is not None:
            raise DataError(f"text {empty} is empty; a model trained on texts has nothing to say about none: drop "
                            "empty texts, or use predict_records, which marks them")
        if len(texts) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        long_text = self.record.long_text
        encoded = encode(self.tokenizer, texts, pairs, max_length=self.max_length,
                         long_text=long_text.mode, stride=long_text.stride)
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
            for chosen, logits in progress_bar(done, total=len(batches), desc="scoring", unit="batches",
                                               disable=not progress, leave=False):
                out[chosen] = logits
        return pool(out, encoded.owner, encoded.n_texts, long_text.pool)

    def predict_proba(self, texts: Sequence[str] | str, batch_size: int = 64, progress: bool = False,
                      pairs: Sequence[str] | str | None = None) -> np.ndarray:
        """Probabilities, (len(texts), n_classes): softmax (calibrated when trained so), or per-label sigmoid.

        A single str is one text: its probabilities, (n_classes,).
        """
        texts, pairs, single = one_or_many(texts, pairs)
        proba = self.probabilities(self._logits(texts, self._check_pairs(texts, pairs), batch_size, progress))
        return proba[0] if single else proba

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """What this model's logits mean: calibrated softmax, or per-label sigmoid for multi-label."""
        if self.multi_label:
            return (1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))).astype(np.float32)
        return calibrated(logits, self.temperature)

    def predict(self, texts: Sequence[str] | str, batch_size: int = 64,
                pairs: Sequence[str] | str | None = None) -> Any:
        """A label per text; for a multi-label model, a list of labels per text (those over their threshold).

        A single str is one text: its label (multi-label: its list of labels), as setfit answers.
        """
        texts, pairs, single = one_or_many(texts, pairs)
        proba = self.probabilities(self._logits(texts, self._check_pairs(texts, pairs), batch_size, False))
        if self.multi_label:
            labels = self.labels.decode_multi(proba >= self.thresholds)
        else:
            labels = [self.labels.names[i] for i in proba.argmax(axis=1)]
        return labels[0] if single else labels

    def predict_records(self, texts: Sequence[str] | str, batch_size: int = 64,
                        pairs: Sequence[str] | str | None = None,
                        threshold: float | None = None) -> Iterator[dict[str, Any]]:
        """One dict per text (what `bertfit predict` prints): text, label and score, probabilities by label.

        Multi-label: ``labels`` (those at or over their threshold; ``threshold`` overrides them all)
        instead of label and score. An empty text or pair (:func:`~bertfit.encoding.is_blank`: invisible characters
        count as none) is not scored: its record has ``"empty": true`` and null label, score and probabilities, so
        every text keeps its place.
        """
        texts, pairs, single = one_or_many(texts, pairs)
        pairs = self._check_pairs(texts, pairs)
        blank = [is_blank(text) or (pairs is not None and is_blank(pairs[i])) for i, text in enumerate(texts)]
        scored = [i for i, empty in enumerate(blank) if not empty]
        logits = self._logits([texts[i] for i in scored], [pairs[i] for i in scored] if pairs is not None else None,
                              batch_size, False)
        records = self.records([texts[i] for i in scored], logits,
                               [pairs[i] for i in scored] if pairs is not None else None, threshold)
        for i, empty in enumerate(blank):
            yield self._empty_record(texts[i], pairs[i] if pairs is not None else None) if empty else next(records)

    def _empty_record(self, text: str, pair: str | None) -> dict[str, Any]:
        record: dict[str, Any] = {"text": text}
        if pair is not None:
            record["text_pair"] = pair
        record.update({"labels": None} if self.multi_label else {"label": None, "score": None})
        record.update(probabilities=None, empty=True)
        return record

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
        if isinstance(texts, str):
            raise TypeError("evaluate takes a list of texts and a list of labels; got one str: pass [text]")
        return self.score(self.logits(texts, batch_size, progress, pairs), list(labels))

    def score(self, logits: np.ndarray, labels: list[Any]) -> dict[str, Any]:
        """Metrics from logits and true label names, as this model decides (thresholds, temperature)."""
        if self.multi_label:
            y_true = self.labels.encode_multi([tuple(names) for names in labels], where="the evaluation data",
                                              trained=True)
            return multilabel_metrics(y_true, self.probabilities(logits), self.thresholds)
        y_true = self.labels.encode(labels, where="the evaluation data", trained=True)
        proba = self.probabilities(logits)
        metrics = classification_metrics(y_true, proba)
        metrics["ece"] = expected_calibration_error(y_true, proba)
        return metrics

    def _check_pairs(self, texts: Sequence[str], pairs: Sequence[str] | None) -> list[str] | None:
        if pairs is not None:
            if isinstance(pairs, str):
                raise TypeError("pairs is one str; pass a list with one pair text per text")
            pairs, _ = checked_texts(pairs, "pairs")
        if self.text_pair_col is not None and pairs is None and len(texts):
            raise DataError(f"this model classifies sentence pairs; give each text its pair (column "
                            f"{self.text_pair_col!r} in a file, or pairs= in Python)")
        if self.text_pair_col is None and pairs is not None:
            raise DataError("this model classifies single texts, not pairs; pass the texts alone")
        return list(pairs) if pairs is not None else None


def _saved_baseline(folder: Path, record: ModelRecord | None) -> LinearBaseline | None:
    """The TF-IDF baseline saved beside a model whose record blends it in, else None."""
    if record is None or record.blend is None:
        return None
    try:
        return LinearBaseline.load(folder, len(record.labels), record.multi_label)
    except ValueError as err:
        raise ModelLoadError(f"cannot load the model in {folder}: its {META_FILE} blends in the TF-IDF baseline, but "
                             f"{err}; copy the whole folder again, or retrain") from None


def one_or_many(texts: Any, pairs: Any) -> tuple[list[str], Any, bool]:
    """Texts checked (see checked_texts), their pairs (a single text's one pair made a list), and whether
    a single str was given."""
    texts, single = checked_texts(texts)
    return texts, [pairs] if single and isinstance(pairs, str) else pairs, single


def checked_texts(texts: Any, name: str = "texts") -> tuple[list[str], bool]:
    """``texts`` as a list of str, and whether a single str was given (one text, not its characters).

    Anything but str in the list is a TypeError naming its place; a str holding a lone surrogate (what
    Python makes of bytes that are not UTF-8 on the command line, or ``"\\ud800"`` in JSON) is a
    DataError naming the byte: no tokenizer can read it.
    """
    if isinstance(texts, str):
        return checked_texts([texts], name)[0], True
    if isinstance(texts, bytes) or not isinstance(texts, Iterable):
        raise TypeError(f"{name} must be a list of str (or one str), got {type(texts).__name__}")
    if _keyed(texts):  # iterating a table or a mapping gives its column names or keys, not its texts
        kind = type(texts).__name__
        if isinstance(texts, Mapping):
            raise TypeError(f"{name} is a {kind}, whose items are its keys, not texts; pass a list of str")
        raise TypeError(f"{name} is a {kind}, whose items are its column names, not texts; pass the column of "
                        f"texts, e.g. {name}=frame[{str(next(iter(texts.columns), 'text'))!r}]")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is {type(text).__name__} ({text!r:.40}), not a str; pass strings "
                            "(convert numbers with str(), drop missing values)")
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as err:
                raise DataError(f"text {i} is not valid UTF-8 text ({_bad_character(text[err.start])} at character "
                                f"{err.start}); pass UTF-8 (e.g. convert it with iconv -f cp1252 -t utf-8)") from None
    return texts, False


def _keyed(texts: Any) -> bool:
    """A table (pandas or Arrow) or a mapping: what ``for text in texts`` would read names from."""
    return isinstance(texts, Mapping) or hasattr(texts, "columns") and hasattr(texts, "shape")


def _bad_character(char: str) -> str:
    """What a lone surrogate stands for: a byte that was not UTF-8 (surrogateescape), or half a pair."""
    code = ord(char)
    return f"byte {code - 0xDC00:#04x}" if 0xDC80 <= code <= 0xDCFF else f"a lone surrogate {code:#06x}"
