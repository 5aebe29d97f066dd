"""``bertfit export``: a model folder to ONNX (optionally int8), checked against PyTorch before it is kept.

The export is a folder of its own: ``model.onnx`` (inputs ``input_ids``, ``attention_mask`` and,
when the model takes them, ``token_type_ids``, each ``(batch, sequence)``; output ``logits``,
``(batch, classes)``), the tokenizer files, ``config.json``, the kept splits and ``bertfit.json``
(everything the source folder's says, plus ``backend: onnx`` and an ``export`` record). Every
decision a prediction makes (temperature, thresholds, windows) stays in ``TextClassifier``, so the
exported folder predicts as the original does, through ``backends.OnnxBackend``.

The export checks itself: it scores the folder's ``validation.jsonl`` (or ``data``) with both models and
refuses, writing nothing, when the main metric (accuracy; micro F1 for multi-label) of the export
is more than ``max_drop`` below PyTorch's. The folder is built beside its destination and renamed
only when the check passes. This module needs ``pip install 'bertfit[onnx]'`` (torch.onnx's
default exporter, dynamo, needs onnx and onnxscript; the check and the int8 quantizer need
onnxruntime); it does not serve (``serve``) or predict (``model``).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.backends import ONNX_FILE, WEIGHT_FILES, cpu_has_vnni, refuse_without_weights
from bertfit.blend import BASELINE_FILES
from bertfit.claims import claimed
from bertfit.config import QUANTIZE_CHOICES
from bertfit.environment import require, versions
from bertfit.errors import BertfitError, UsageError
from bertfit.export import onnx_out
from bertfit.folder import SPLIT_FILES, SplitRows, read_split, write_meta
from bertfit.model import TextClassifier
from bertfit.reporting.report import read_labelled, refuse_columns_without_data
from bertfit.staging import check_folder, refuse_inputs, staged_folder, write_failure

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
EMBEDDING_BLOCK = 32  # values sharing one 4-bit scale, along the hidden axis
EXTERNAL_DATA_BYTES = 1_500_000_000  # past this, weights go to model.onnx.data (one protobuf holds at most 2 GB)
FUSED_EXPORTER = "torch.onnx.export (TorchScript, eager attention) + onnxruntime.transformers BERT fusion"
FUSED_OPSET = 17  # the TorchScript exporter's; onnxruntime's fusion reads its LayerNormalization


class ExportError(BertfitError, RuntimeError):
    """The export failed, or scored too far below the PyTorch model; nothing was written."""

    exit_code = 1


@dataclass
class ExportResult:
    """What was written and how it scored beside the PyTorch model."""

    model_dir: Path
    format: str
    quantize: str | None
    size_before: int  # bytes of the PyTorch weights
    size_after: int  # bytes of model.onnx (and its external data)
    check: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The JSON line ``bertfit export`` prints."""
        return {"model_dir": str(self.model_dir), "format": self.format, "quantize": self.quantize,
                "size_before_bytes": self.size_before, "size_after_bytes": self.size_after,
                "check": self.check, "seconds": round(self.seconds, 1)}


def export(
    model_dir: str | Path, out: str | Path | None = None, *, format: str = "onnx", quantize: str | None = None,
    data: str | Path | None = None, max_drop: float = 0.01, overwrite: bool = False, batch_size: int = 64,
    fuse: bool = True, **columns: str | None,
) -> ExportResult:
    """Export ``model_dir`` to ONNX in ``out`` (default: MODEL_DIR-onnx, or MODEL_DIR-onnx-int8), checked.

    ``columns``: how ``data`` is read (text_col, label_col, text_pair_col, label_sep; default: the model's).

    ``fuse``: a BERT model's attention, embeddings and layer norms in onnxruntime's fused operators
    (faster on onnxruntime, which bertfit predicts and serves with; other runtimes lack them).
    """
    folder = Path(model_dir)
    _check_arguments(folder, format, quantize, max_drop, batch_size)
    refuse_columns_without_data(data, columns, f"MODEL_DIR/{SPLIT_FILES['validation']}")
    require("onnx", "bertfit export")
    started = time.perf_counter()
    target = Path(out) if out is not None else onnx_out(folder, quantize)
    refuse_inputs(target, "--out", {"the model folder": folder, "the --data file": data},
                  sealed=("the model folder",))
    check_folder(target, overwrite)
    classifier = TextClassifier.from_pretrained(folder, backend="torch")
    rows = check_rows(folder, classifier, data, **columns)
    with claimed(target), staged_folder(target) as staging:
        fused = fused_export(classifier, staging / ONNX_FILE, quantize != "int8-emb4") if fuse else None
        if fused is None:
            log.info("exporting %s to ONNX with torch.onnx (dynamo)", folder)
            opset, inputs = to_onnx(classifier, staging / ONNX_FILE)
        else:
            opset, inputs = fused["opset"], fused["inputs"]
        if quantize:
            log.info("quantizing the weights to %s (onnxruntime dynamic quantization)", _kind(quantize))
            quantize_int8(staging / ONNX_FILE, embeddings_4bit=quantize == "int8-emb4")
        record = {"format": "onnx", "quantize": quantize, "source": folder.resolve().name, "opset": opset,
                  "inputs": inputs, "outputs": ["logits"],
                  "exporter": fused["exporter"] if fused else "torch.onnx.export (dynamo)",
                  "fused_operators": fused["operators"] if fused else None,
                  "versions": versions("torch", "onnx", "onnxscript", "onnxruntime", machine=False)}
        if quantize:
            record["weight_bits"] = 8 if cpu_has_vnni() else 7  # 7: reduce_range, for x86 without VNNI
        _write_beside(classifier, folder, staging, record)
        check = compare(classifier, staging, rows, batch_size)
        record["check"] = check
        _write_meta(classifier, staging, record)
        if check["drop"] > max_drop:
            raise ExportError(
                f"the {_kind(quantize)} export scores {check['metric']} {check['onnx']:.4f} against the PyTorch "
                f"model's {check['torch']:.4f} on {check['rows']} rows of {check['data']} (a drop of "
                f"{check['drop']:.4f}, over --max-drop {max_drop}); nothing written"
                + ("; export without --quantize, or raise --max-drop" if quantize else "; raise --max-drop to keep it")
            )
        size_before = sum((folder / name).stat().st_size for name in WEIGHT_FILES if (folder / name).exists())
        size_after = sum(path.stat().st_size for path in staging.glob(f"{ONNX_FILE}*"))
    return ExportResult(target, format, quantize, size_before, size_after, check, time.perf_counter() - started)


def _check_arguments(folder: Path, format: str, quantize: str | None, max_drop: float, batch_size: int) -> None:
    """Refused before anything is loaded: an option out of range, or a folder without PyTorch weights to export."""
    if format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise UsageError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    if not 0 <= max_drop <= 1:
        raise UsageError(f"--max-drop must be between 0 and 1 (a share, e.g. 0.01 for one point), got {max_drop}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"--batch-size must be a positive whole number, got {batch_size}")
    refuse_without_weights(folder, "MODEL_DIR", "bertfit export needs the PyTorch folder bertfit train wrote: "
                           "pass that folder")


def check_rows(folder: Path, classifier: TextClassifier, data: str | Path | None, **columns: str | None) -> SplitRows:
    """The labelled rows the export is checked on: ``data`` (read by ``columns``), else the folder's validation split.

    The check decides whether the export is kept, so it reads validation, as every decision in bertfit
    does; the test split stays for judging, once.
    """
    if data is None:
        rows = read_split(folder, "validation")
        if rows is None:
            raise UsageError(f"{folder} has no {SPLIT_FILES['validation']} (the validation split bertfit train keeps; "
                             "folders from before it kept only test.jsonl, which judges and decides nothing) to check "
                             "the export against; pass --data FILE, a labelled file with the model's columns")
        return rows
    return read_labelled(data, classifier.record, **columns)


def fused_export(classifier: TextClassifier, path: Path, embeddings: bool = True) -> dict[str, Any] | None:
    """A BERT model exported with its attention in onnxruntime's fused ``Attention`` operator; None otherwise.

    onnxruntime's transformer optimizer recognises BERT's attention in the graph the TorchScript exporter
    writes from eager attention, not in dynamo's graph of SDPA (measured on the embedded MiniLM: no
    Attention fused from dynamo's; all 6 from TorchScript's, and 1.2x the texts/s on phishing's URLs).
    ``embeddings``: fuse the embedding lookups and their layer norm too (not when the tables go to 4
    bits, which needs them as Gather nodes). Any other architecture, an exporter that fails, or a
    graph where fewer attention layers fused than the model has gives None: the caller exports with
    dynamo instead, and the check against PyTorch judges whichever graph is kept.
    """
    config = classifier.model.config
    if getattr(config, "model_type", None) != "bert":
        return None
    import torch
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    model = classifier.model.float().eval()
    inputs = _input_names(classifier)
    sample = _sample(classifier, inputs)
    previous = getattr(config, "_attn_implementation", None)
    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the optimizer's own progress lines
    try:
        model.set_attn_implementation("eager")
        with warnings.catch_warnings():  # TorchScript's deprecation and tracing notes
            warnings.simplefilter("ignore")
            torch.onnx.export(_logits(model), tuple(sample[name] for name in inputs), str(path),
                              input_names=inputs, output_names=["logits"],
                              dynamic_axes={name: {0: "batch", 1: "sequence"} for name in inputs},
                              opset_version=FUSED_OPSET, dynamo=False)
            options = FusionOptions("bert")
            options.enable_embed_layer_norm = embeddings
            fused = optimizer.optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                                             hidden_size=config.hidden_size, optimization_options=options)
        counts = {op: n for op, n in fused.get_fused_operator_statistics().items() if n}
        if counts.get("Attention", 0) != config.num_hidden_layers:
            log.info("onnxruntime fused %d of %d attention layers; exporting with dynamo instead",
                     counts.get("Attention", 0), config.num_hidden_layers)
            return None
        fused.save_model_to_file(str(path), use_external_data_format=False)
    except Exception as err:  # noqa: BLE001 - an optional speed-up: any failure falls back to the plain graph
        if write_failure(err) is not None:
            raise  # a full disk: the plain graph would fail the same way (staged_folder names the output)
        log.info("the fused export failed (%s: %s); exporting with dynamo instead", type(err).__name__,
                 str(err).strip().splitlines()[0] if str(err).strip() else "no message")
        return None
    finally:
        if previous is not None:
            model.set_attn_implementation(previous)
        quiet.setLevel(level)
    log.info("exported %s with onnxruntime's fused operators: %s", path.name, counts)
    return {"opset": _opset(path), "inputs": inputs, "operators": counts, "exporter": FUSED_EXPORTER}


def _opset(path: Path) -> int:
    """The default-domain opset of the graph written at ``path``."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False)
    return int(next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), 0))


def _input_names(classifier: TextClassifier) -> list[str]:
    takes_types = "token_type_ids" in getattr(classifier.tokenizer, "model_input_names", ())
    return ["input_ids", "attention_mask", *(["token_type_ids"] if takes_types else [])]


def _sample(classifier: TextClassifier, inputs: list[str]) -> dict[str, Any]:
    """2 rows of 6+ tokens: sizes an exporter would otherwise specialise (0, 1, batch == sequence) avoided."""
    pairs = ["a second text", "and its pair"] if classifier.text_pair_col else None
    sample = classifier.tokenizer(["bertfit export sample text one two", "a short one"], pairs, padding="longest",
                                  truncation=True, max_length=classifier.max_length, return_tensors="pt")
    return {name: sample[name] for name in inputs}


def _logits(model: Any) -> Any:
    """The model with named tensor inputs and one output, (batch, classes)."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self, wrapped: Any):
            super().__init__()
            self.wrapped = wrapped

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
            return self.wrapped(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return Logits(model).eval()


def to_onnx(classifier: TextClassifier, path: Path) -> tuple[int, list[str]]:
    """Write the classifier's logits as an ONNX graph with batch and sequence dynamic; returns (opset, inputs)."""
    import torch

    model = classifier.model.float().eval()
    inputs = _input_names(classifier)
    kwargs = _sample(classifier, inputs)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=classifier.max_length)
    external = sum(p.numel() * p.element_size() for p in model.parameters()) > EXTERNAL_DATA_BYTES
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # e.g. 'torchvision is not installed', which a text model never needs
    try:
        with warnings.catch_warnings():  # the exporter's notes on its own internals (deprecations, axis renames)
            warnings.simplefilter("ignore")
            torch.onnx.export(_logits(model), (), str(path), kwargs=kwargs, input_names=inputs,
                              output_names=["logits"], dynamic_shapes={name: {0: batch, 1: sequence}
                                                                       for name in inputs},
                              dynamo=True, external_data=external, verbose=False)
    except Exception as err:  # noqa: BLE001 - the exporter raises many kinds; one line says which
        if write_failure(err) is not None:
            raise  # the disk, not the exporter: staged_folder names the output
        raise ExportError(f"torch.onnx could not export this model ({type(err).__name__}: "
                          f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no message'}); "
                          "run again with --debug for the exporter's report") from err
    finally:
        quiet.setLevel(level)
    return _opset(path), inputs


# Shape inference cannot type the outputs of onnxruntime's fused operators; the quantizer then needs telling.
FUSED_TYPES = {"DefaultTensorType": 1}  # onnx.TensorProto.FLOAT


def quantize_int8(path: Path, embeddings_4bit: bool = False) -> None:
    """Replace model.onnx by its dynamically quantized version: int8 weights, activations quantized per batch.

    With ``embeddings_4bit`` the embedding tables (Gather) are left out of the int8 pass and stored
    instead in 4-bit blocks of EMBEDDING_BLOCK values with one scale each (onnxruntime's
    GatherBlockQuantized): a small model's vocabulary is most of its weights, and a lookup loses
    less to 4 bits than a matmul does.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    reduce_range = not cpu_has_vnni()  # x86 without VNNI: 7-bit weights, clear of u8 x s8 saturation
    fp32 = path.with_name("model.fp32.onnx")
    path.rename(fp32)
    for data in path.parent.glob(f"{ONNX_FILE}.data"):  # external weights travel with their graph
        data.rename(path.parent / "model.fp32.onnx.data")
    # The quantizer logs through the root logger, which would install a handler there for good; keep it as it was.
    # (Its advice to pre-process first does not apply: ORT's symbolic shape inference fails on dynamo graphs.)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.setLevel(logging.ERROR)
    try:
        if embeddings_4bit:
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, reduce_range=reduce_range,
                             op_types_to_quantize=["MatMul", "Attention"], extra_options=FUSED_TYPES)
            _embeddings_to_4bit(path)
        else:
            quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, reduce_range=reduce_range,
                             extra_options=FUSED_TYPES)
    except Exception as err:  # noqa: BLE001 - the quantizer raises many kinds; one line says which
        if write_failure(err) is not None:
            raise  # the disk, not the quantizer: staged_folder names the output
        if shutil.disk_usage(path.parent).free < fp32.stat().st_size:
            # Its shape inference writes a copy of the graph beside it and does not say when the disk cut it short.
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from err
        raise ExportError(f"onnxruntime could not quantize this model ({type(err).__name__}: {err}); "
                          "export without --quantize") from err
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    for leftover in path.parent.glob("model.fp32.onnx*"):
        leftover.unlink()


def _embeddings_to_4bit(path: Path) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    quantizer = MatMulNBitsQuantizer(onnx.load(str(path)), block_size=EMBEDDING_BLOCK, is_symmetric=True,
                                     op_types_to_quantize=("Gather",), quant_axes=(("Gather", 1),))
    with warnings.catch_warnings():  # an all-zero block (the padding row) divides 0 by a 0 scale, then keeps 0
        warnings.filterwarnings("ignore", "invalid value encountered in divide", RuntimeWarning)
        quantizer.process()
    quantizer.model.save_model_to_file(str(path), use_external_data_format=False)


def compare(classifier: TextClassifier, exported: Path, rows: SplitRows, batch_size: int = 64) -> dict[str, Any]:
    """Score the rows with the PyTorch model and with the export; both metrics, the drop, and how alike they are."""
    onnx_classifier = TextClassifier.from_pretrained(exported, backend="onnx")
    started = time.perf_counter()
    torch_logits = classifier.logits(rows.texts, batch_size, pairs=rows.pairs)
    torch_seconds = time.perf_counter() - started
    started = time.perf_counter()
    onnx_logits = onnx_classifier.logits(rows.texts, batch_size, pairs=rows.pairs)
    onnx_seconds = time.perf_counter() - started
    metric = "f1_micro" if classifier.multi_label else "accuracy"
    before = classifier.score(torch_logits, rows.labels)[metric]
    after = onnx_classifier.score(onnx_logits, rows.labels)[metric]
    same = _decisions(classifier, torch_logits) == _decisions(classifier, onnx_logits)
    return {"data": rows.source, "rows": len(rows.texts), "metric": metric, "torch": round(float(before), 6),
            "onnx": round(float(after), 6), "drop": round(float(before - after), 6),
            "agreement": round(float(np.mean(same)), 6) if len(same) else 1.0,
            "max_abs_logit_diff": float(np.max(np.abs(torch_logits - onnx_logits))) if len(rows.texts) else 0.0,
            "seconds": {"torch": round(torch_seconds, 3), "onnx": round(onnx_seconds, 3)}}


def _decisions(classifier: TextClassifier, logits: np.ndarray) -> np.ndarray:
    """Per row, whether each decision (argmax, or each label over its threshold) -- comparable across models."""
    proba = classifier.probabilities(logits)
    if classifier.multi_label:
        return np.array([tuple(row) for row in (proba >= classifier.thresholds)], dtype=object)
    return proba.argmax(axis=1)


def _write_beside(classifier: TextClassifier, folder: Path, staging: Path, record: dict[str, Any]) -> None:
    """Tokenizer files, config.json, the kept splits, the blended baseline and bertfit.json next to model.onnx."""
    classifier.tokenizer.save_pretrained(str(staging))
    if not (staging / "tokenizer.json").exists():
        raise ExportError(f"{folder}'s tokenizer has no fast version (tokenizer.json), which ONNX prediction reads; "
                          "this model cannot be exported")
    classifier.model.config.to_json_file(str(staging / "config.json"))
    for name in (*SPLIT_FILES.values(), *BASELINE_FILES):  # as in the source folder: the splits, the baseline
        if (folder / name).exists():
            shutil.copy2(folder / name, staging / name)
    _write_meta(classifier, staging, record)


def _write_meta(classifier: TextClassifier, staging: Path, record: dict[str, Any]) -> None:
    write_meta(staging, dataclasses.replace(classifier.record, backend="onnx", export=record))


def _kind(quantize: str | None) -> str:
    return {None: "ONNX", "int8": "int8 ONNX", "int8-emb4": "int8 ONNX with 4-bit embeddings"}[quantize]
