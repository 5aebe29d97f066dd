"""Where logits come from: a PyTorch model, or an ONNX Runtime session over an exported model.

:class:`~bertfit.model.TextClassifier` owns everything a prediction means (tokenizing by the
long-text mode, batching by length, pooling windows, temperature, thresholds, records, metrics);
a backend only turns one batch of token ids into logits, ``(batch, classes)``.

- ``torch``: the Hugging Face model and tokenizer of a trained folder (``model.safetensors``).
- ``onnx``: ``model.onnx`` written by ``bertfit export``, run by onnxruntime, with the folder's
  ``tokenizer.json`` read by the ``tokenizers`` library. This path never imports torch or
  transformers, so an exported folder predicts in a small install (``pip install 'bertfit[onnx]'``).

Exporting lives in ``export``; this module only loads and runs.
"""

from __future__ import annotations

import json
import os
import platform
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.environment import importable, install_line
from bertfit.errors import ModelLoadError, UsageError

BACKENDS = ("auto", "torch", "onnx")
ONNX_FILE = "model.onnx"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
# A classification head's modules in transformers' models (BERT: classifier; DistilBERT: pre_classifier too).
HEAD_MODULES = frozenset({"classifier", "pre_classifier", "score"})
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


def resolve_backend(folder: Path, requested: str = "auto") -> str:
    """'torch' or 'onnx' for this folder: auto takes ONNX when model.onnx is there and onnxruntime is installed."""
    if requested not in BACKENDS:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    has_onnx = (folder / ONNX_FILE).exists()
    has_weights = any((folder / name).exists() for name in WEIGHT_FILES)
    if requested == "onnx":
        if not has_onnx:
            raise ModelLoadError(f"{folder} has no {ONNX_FILE}; export one with: bertfit export {folder}, "
                                 "or pass --backend torch")
        return "onnx"
    if requested == "torch":
        if has_onnx and not has_weights:
            raise ModelLoadError(f"{folder} holds an ONNX export only ({ONNX_FILE}, no PyTorch weights); pass "
                                 "--backend onnx (or auto), or use the folder bertfit train wrote")
        return "torch"
    if has_onnx and (importable("onnxruntime") or not has_weights):
        return "onnx"  # without onnxruntime and without weights, the onnx loader names the install line
    return "torch"


def refuse_without_weights(folder: str | Path | None, named: str, fix: str) -> None:
    """Refuse a local folder with no PyTorch weights where they are needed (distilling, exporting, embedding):
    an ONNX export (``model.onnx`` alone) or an incomplete folder. ``named``: how the command line names it
    (``--student``, ``TEACHER_DIR``); ``fix``: what to pass instead. A hub name is left to its loader."""
    path = Path(folder) if folder is not None else None
    if path is None or not path.is_dir() or any((path / name).exists() for name in WEIGHT_FILES) or any(
            any(path.glob(pattern)) for pattern in ("*.safetensors", "*.bin")):  # a checkpoint's own shard names
        return
    what = (f"is an ONNX export ({ONNX_FILE}, no PyTorch weights)" if (path / ONNX_FILE).exists()
            else f"has no PyTorch weights ({' or '.join(WEIGHT_FILES[::2])})")
    raise ModelLoadError(f"{named} {folder} {what}; {fix}")


# -- PyTorch ----------------------------------------------------------------------------------------


class TorchBackend:
    """A Hugging Face sequence-classification model and its tokenizer, in eval mode."""

    name = "torch"

    def __init__(self, model: Any, tokenizer: Any, precision: str = "fp32"):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.precision = precision  # as trained; the classifier keeps it in step with its record

    @classmethod
    def load(cls, folder: Path, labels: list[str] | None, threads: int | None = None) -> TorchBackend:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)  # process-wide: torch has one intra-op pool

        if not any((folder / name).exists() for name in WEIGHT_FILES):
            raise ModelLoadError(
                f"{folder} has no weights ({' or '.join(WEIGHT_FILES[::2])}); the folder is incomplete: "
                "copy the whole folder again or retrain"
            )
        if not any((folder / name).exists() for name in TOKENIZER_FILES):
            raise ModelLoadError(
                f"{folder} has no tokenizer (tokenizer.json or vocab.txt); the folder is incomplete: "
                "copy the whole folder again or retrain"
            )
        try:
            model, loading = AutoModelForSequenceClassification.from_pretrained(str(folder), output_loading_info=True)
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as err:  # noqa: BLE001 - safetensors, tokenizers and json each raise their own kinds
            raise damaged(folder, err) from None
        body_missing = sorted(key for key in loading["missing_keys"] if key.split(".")[0] not in HEAD_MODULES)
        if body_missing and loading["unexpected_keys"]:  # weights of one architecture, config.json of another
            unused = sorted(loading["unexpected_keys"])
            raise ModelLoadError(f"cannot load the model in {folder}: its config.json does not describe its weights "
                                 f"({len(unused)} weights unused, e.g. {unused[0]}; {len(body_missing)} missing, e.g. "
                                 f"{body_missing[0]}); the folder mixes two models or config.json was edited: copy the "
                                 "whole folder again, or retrain")
        untrained = sorted(key for key in loading["missing_keys"] if key.split(".")[0] in HEAD_MODULES)
        if untrained:  # transformers made a random head: its labels would be noise
            raise ModelLoadError(
                f"{folder} is a base model with no classification head (its weights lack {untrained[0]}), so its "
                f"predictions would be random; train a classifier from it first: bertfit train DATA --model {folder}"
            )
        if labels is not None and model.config.num_labels != len(labels):
            raise ModelLoadError(f"{folder}: the weights answer {model.config.num_labels} classes but bertfit.json "
                                 f"names {len(labels)} labels; the folder mixes two models: copy it again whole")
        known, rows = len(tokenizer), model.config.vocab_size
        if not rows // 2 <= known <= rows:  # ids past the embeddings fail; half the table unused is another model's
            raise ModelLoadError(f"cannot load the model in {folder}: its tokenizer knows {known:,} tokens but its "
                                 f"embeddings hold {rows:,}; the folder mixes two models or a tokenizer file was "
                                 "edited: copy the whole folder again, or retrain")
        broken = next((name for name, weights in model.state_dict().items()
                       if weights.is_floating_point() and not torch.isfinite(weights).all()), None)
        if broken is not None:  # every answer would be NaN, printed as if it were a score
            raise ModelLoadError(f"cannot load the model in {folder}: its weights hold numbers that are not finite "
                                 f"(NaN or infinity, in {broken}); the file is damaged: copy the whole folder again, "
                                 "or retrain")
        return cls(model, tokenizer)

    @property
    def bf16(self) -> bool:
        """Inference in bf16 autocast, as the model was trained (its record's 'precision')."""
        # bf16 where it was trained so and this CPU has it natively; emulated bf16 would be slower than fp32
        return self.precision == "bf16" and self.model.device.type == "cpu" and cpu_has_bf16()

    def logits(self, batch: dict[str, list[list[int]]]) -> np.ndarray:
        """Logits (batch, classes) of unpadded token-id lists."""
        import torch

        padded = self.tokenizer.pad(batch, return_tensors="pt").to(self.model.device)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(**padded).logits.float().cpu().numpy()


# -- ONNX Runtime -----------------------------------------------------------------------------------


class OnnxBackend:
    """An exported ``model.onnx`` on onnxruntime (CPU), fed by the folder's tokenizer.json."""

    name = "onnx"

    def __init__(self, session: Any, tokenizer: LightTokenizer, parallel: int = 1):
        self.session = session
        self.tokenizer = tokenizer
        self.input_names = [node.name for node in session.get_inputs()]
        self.parallel = parallel  # batches TextClassifier.logits may run side by side (session.run is thread-safe)

    @classmethod
    def load(cls, folder: Path, threads: int | None = None) -> OnnxBackend:
        """``threads`` None: onnxruntime's own intra-op pool (one thread per core), and one batch per core
        side by side, longest first: short texts make small matrices that split poorly over the pool,
        so batches side by side keep the cores busier (bench/predict.py measures it). A number: each
        batch on that many threads, one batch at a time (``bertfit serve`` runs its own batches side
        by side)."""
        try:
            import onnxruntime
        except ImportError:
            raise ModelLoadError(f"{folder} holds an ONNX model and onnxruntime is not installed; "
                                 f"install it: {install_line('onnx')}") from None
        tokenizer = LightTokenizer.from_folder(folder)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only; ORT's warnings about unused initializers say nothing useful
        # Idle pool threads sleep instead of spinning: a spinning pool takes the cores a server's event loop (and
        # the tokenizer) need between batches, and gains little once a batch is more than a few texts.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = onnxruntime.InferenceSession(str(folder / ONNX_FILE), options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - ORT raises its own untyped errors for a damaged file
            raise ModelLoadError(f"cannot load {folder / ONNX_FILE}: {str(err).splitlines()[0]}; export it again "
                                 "with bertfit export") from None
        return cls(session, tokenizer, parallel=1 if threads else cores())

    @property
    def model(self) -> Any:
        return self.session

    def logits(self, batch: dict[str, list[list[int]]]) -> np.ndarray:
        """Logits (batch, classes) of unpadded token-id lists."""
        padded = self.tokenizer.pad(batch)
        feed = {name: padded[name] for name in self.input_names}
        return np.asarray(self.session.run(["logits"], feed)[0], dtype=np.float32)


class LightTokenizer:
    """A folder's tokenizer.json through the ``tokenizers`` library, answering the calls ``encoding`` makes.

    It gives the ids a transformers fast tokenizer gives (same truncation, pairs, overflowing
    windows, offsets) without importing transformers, whose tokenizers pull in torch.
    """

    def __init__(self, core: Any, pad_id: int, truncation_side: str = "right", padding_side: str = "right"):
        self.core = core
        self.core.no_padding()
        self.core.no_truncation()
        self.pad_token_id = pad_id
        self.truncation_side = truncation_side
        self.padding_side = padding_side
        self._lock = threading.Lock()  # truncation is state on the core; one call at a time sets and uses it

    @classmethod
    def from_folder(cls, folder: Path) -> LightTokenizer:
        from tokenizers import Tokenizer

        file = folder / "tokenizer.json"
        if not file.exists():
            raise ModelLoadError(f"{folder} has no tokenizer.json, which ONNX prediction reads; export the model "
                                 f"again with bertfit export")
        try:
            core = Tokenizer.from_file(str(file))
        except Exception as err:  # noqa: BLE001 - the tokenizers library raises a bare Exception for a bad file
            raise damaged(folder, err) from None
        config = _read_json(folder / "tokenizer_config.json")
        pad = config.get("pad_token") or _read_json(folder / "special_tokens_map.json").get("pad_token")
        if isinstance(pad, dict):
            pad = pad.get("content")
        pad_id = core.token_to_id(pad) if isinstance(pad, str) else None
        return cls(core, pad_id if pad_id is not None else 0, config.get("truncation_side") or "right",
                   config.get("padding_side") or "right")

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.core.num_special_tokens_to_add(pair)

    def __call__(self, texts: Sequence[str], pairs: Sequence[str] | None = None, *, truncation: bool = False,
                 max_length: int | None = None, stride: int = 0, add_special_tokens: bool = True,
                 return_overflowing_tokens: bool = False, return_offsets_mapping: bool = False,
                 ) -> dict[str, list]:
        inputs = list(zip(texts, pairs, strict=True)) if pairs is not None else list(texts)
        with self._lock:
            if truncation and max_length is not None:
                self.core.enable_truncation(max_length, stride=stride, strategy="longest_first",
                                            direction=self.truncation_side)
            else:
                self.core.no_truncation()
            encodings = self.core.encode_batch(inputs, add_special_tokens=add_special_tokens)
        out: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        if return_offsets_mapping:
            out["offset_mapping"] = []
        owners = []
        for index, encoding in enumerate(encodings):
            pieces = [encoding, *encoding.overflowing] if return_overflowing_tokens else [encoding]
            for piece in pieces:
                out["input_ids"].append(piece.ids)
                out["token_type_ids"].append(piece.type_ids)
                out["attention_mask"].append(piece.attention_mask)
                if return_offsets_mapping:
                    out["offset_mapping"].append(piece.offsets)
                owners.append(index)
        if return_overflowing_tokens:
            out["overflow_to_sample_mapping"] = owners
        return out

    def pad(self, batch: dict[str, list[list[int]]]) -> dict[str, np.ndarray]:
        """Token-id lists into (batch, longest) int64 arrays; the mask is 0 and ids are the pad token past the end."""
        ids = batch["input_ids"]
        width = max((len(row) for row in ids), default=0)
        out = {}
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            fill = self.pad_token_id if key == "input_ids" else 0
            array = np.full((len(ids), width), fill, dtype=np.int64)
            rows = batch.get(key)
            if rows is None:  # a model without token types takes zeros; a mask is ones over the tokens
                rows = [[0 if key == "token_type_ids" else 1] * len(row) for row in ids]
            for i, row in enumerate(rows):
                if self.padding_side == "left":
                    array[i, width - len(row):] = row
                else:
                    array[i, :len(row)] = row
            out[key] = array
        return out


def damaged(folder: Path, err: BaseException) -> ModelLoadError:
    """The one-line error for a model folder whose files are there but cannot be read (truncated, corrupt)."""
    if isinstance(err, ModelLoadError):
        return err
    text = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    return ModelLoadError(f"cannot load the model in {folder}: a file is damaged or incomplete ({type(err).__name__}: "
                          f"{text}); copy the whole folder again, or retrain")


def _read_json(file: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _cpu_flags() -> set[str]:
    """The CPU's feature flags as /proc/cpuinfo names them (empty where there is none to read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return set()
    return {flag for line in lines if line.startswith("flags") for flag in line.partition(":")[2].split()}


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_vnni() -> bool:
    """Whether this CPU has VNNI (AVX512-VNNI or AVX-VNNI) for int8 dot products.

    Without it onnxruntime multiplies u8 x s8 with an instruction whose 16-bit sums can saturate,
    which int8 weights at full range trip over; 7-bit weights (``reduce_range``) stay clear of it.
    """
    return bool(_cpu_flags() & {"avx512_vnni", "avx_vnni"}) or platform.machine().lower() not in ("x86_64", "amd64")


def resolve_precision(requested: str) -> str:
    """fp32 or bf16: 'auto' is bf16 where the CPU (or a GPU) supports it natively, else fp32."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS says, else the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
