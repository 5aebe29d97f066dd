"""Compress a trained model in one command: distil it into a smaller student and export that to ONNX with
int8 weights (``int8-emb4``: the embedding tables in 4 bits too), choosing the configuration on validation.

The search: every (student layers, precision) pair is a configuration. Its size on disk is known before
any training (estimated from the parameter counts, then measured once exported), so only the layer counts
that can reach ``target_size_ratio`` are distilled, the most layers first, each exported in the precisions
that can reach it. The first configuration that is at least ``target_size_ratio`` times smaller than the
teacher and scores on VALIDATION within ``max_drop`` of the teacher's validation score is kept, and
fewer layers are not tried. When none does, the configuration closest to the limits is kept and the miss
is said plainly. ``student_layers``, ``student`` or ``quantize`` narrow the search to what they name.

Only then is the test split scored, once, for the teacher, the kept student and its export. The result
is one folder holding ``student/`` (PyTorch) and ``student-int8/`` (or ``student-int8-emb4/``), built
beside its destination and renamed when complete, the search table (validation) and the final table
(test: size, metrics, texts/s).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertfit.backends import WEIGHT_FILES, refuse_without_weights
from bertfit.blend import BASELINE_FILES
from bertfit.claims import claimed
from bertfit.config import QUANTIZE_CHOICES
from bertfit.errors import UsageError
from bertfit.export import compressed_out
from bertfit.folder import SplitRows, read_split
from bertfit.model import TextClassifier
from bertfit.staging import check_folder, refuse_inputs, staged_folder

log = logging.getLogger(__name__)

# Bytes per parameter once exported: int8 matmul weights; embedding tables in int8, or in 4-bit blocks of 32
# with one fp32 scale each (0.5 + 4 / 32). ONNX adds a little on top (biases, norms and the graph stay fp32).
BYTES_PER_PARAMETER = {"int8": {"tables": 1.0, "rest": 1.0}, "int8-emb4": {"tables": 0.625, "rest": 1.0}}
ESTIMATE_OVERHEAD = 1.04
ESTIMATE_SLACK = 0.97  # a configuration estimated this close to the target is tried; its measured size decides


@dataclass
class CompressResult:
    out: Path
    rows: list[dict[str, Any]]  # test split: teacher, student, its export
    size_ratio: float  # teacher bytes / exported student bytes
    target_size_ratio: float
    search: list[dict[str, Any]] = field(default_factory=list)  # validation: every configuration tried
    chosen: dict[str, Any] = field(default_factory=dict)
    max_drop: float = 0.01

    @property
    def met(self) -> bool:
        return bool(self.chosen.get("passes"))

    def summary(self) -> dict[str, Any]:
        return {"out": str(self.out), "size_ratio": round(self.size_ratio, 2),
                "target_size_ratio": self.target_size_ratio, "max_drop": self.max_drop, "met": self.met,
                "chosen": self.chosen, "search": self.search, "rows": self.rows}

    def table(self) -> str:
        metric = "accuracy" if "accuracy" in self.rows[0] else "f1_micro"
        teacher = self.search[0]["teacher_validation"] if self.search else float("nan")
        lines = [f"search, on validation (teacher {metric} {teacher:.4f}; within limits: at least "
                 f"{self.target_size_ratio:g}x smaller and at most {self.max_drop:g} below the teacher):",
                 f"| layers | precision | size (MB) | smaller by | validation {metric} | within limits |",
                 "| --- | --- | --- | --- | --- | --- |"]
        for row in self.search:
            verdict = ("yes" if row["passes"] else "no") + (", kept" if row is self.chosen else "")
            lines.append(f"| {row['layers']} | {row['precision']} | {row['bytes'] / 1e6:.1f} | "
                         f"{row['smaller_by']:.2f}x | {row['validation']:.4f} | {verdict} |")
        lines += ["", "chosen configuration, on the test split (scored once):",
                  f"| model | size (MB) | smaller by | test {metric} | macro F1 | ROC AUC | texts/s |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in self.rows:
            auc = f"{row['auc']:.3f}" if row.get("auc") is not None else "n/a"
            lines.append(f"| {row['model']} | {row['bytes'] / 1e6:.1f} | {row['smaller_by']:.2f}x | "
                         f"{row[metric]:.4f} | {row['f1_macro']:.4f} | {auc} | {row['texts_per_s']:.0f} |")
        return "\n".join(lines)


def model_bytes(folder: Path) -> int:
    """Bytes of a folder's weights: PyTorch safetensors/bin, or model.onnx with its external data, and the
    TF-IDF baseline a model may blend in (prediction reads it too)."""
    names = [*WEIGHT_FILES, "model.onnx", "model.onnx.data", *BASELINE_FILES]
    return sum((folder / name).stat().st_size for name in names if (folder / name).exists())


def estimated_bytes(teacher: TextClassifier, layers: int, precision: str) -> float:
    """What a student of ``layers`` of the teacher's encoder layers weighs once exported in ``precision``."""
    from torch import nn

    from bertfit.training.backbone import encoder_layers

    model = teacher.model
    tables = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Embedding))
    stack = encoder_layers(model)
    per_layer = sum(p.numel() for p in stack[0].parameters())
    rest = sum(p.numel() for p in model.parameters()) - tables - per_layer * len(stack)
    rate = BYTES_PER_PARAMETER[precision]
    return ESTIMATE_OVERHEAD * (tables * rate["tables"] + (per_layer * layers + rest) * rate["rest"])


def plan(teacher: TextClassifier, teacher_bytes: int, target: float, layers: list[int],
         precisions: list[str]) -> list[tuple[int, list[str]]]:
    """Layer counts to distil, most first, each with the precisions estimated to reach ``target``; when none
    can, the fewest layers in every precision (the closest the search can get, reported as a miss)."""
    found = []
    for count in sorted(layers, reverse=True):
        fits = [p for p in precisions if teacher_bytes / estimated_bytes(teacher, count, p) >= ESTIMATE_SLACK * target]
        if fits:
            found.append((count, fits))
    return found or [(min(layers), list(precisions))]


def compress(
    teacher_dir: str | Path, data: Any, out: str | Path | None = None, *, target_size_ratio: float = 7.0,
    student_layers: int | None = None, student: str | None = None, temperature: float = 2.0, alpha: float = 0.5,
    max_drop: float = 0.01, quantize: str | None = None, overwrite: bool = False, progress: bool = True,
    **settings: Any,
) -> CompressResult:
    """Distil ``teacher_dir`` on ``data`` and export the student, searching layers x precision on validation."""
    from bertfit.training.distill import STUDENT_FIX, kept_layers

    _check_arguments(quantize, target_size_ratio, max_drop)
    teacher_folder = Path(teacher_dir)
    refuse_without_weights(teacher_folder, "TEACHER_DIR", "bertfit compress needs the teacher's PyTorch folder, the "
                           "one bertfit train wrote: pass that folder")
    refuse_without_weights(student, "--student", STUDENT_FIX)
    target = Path(out) if out is not None else compressed_out(teacher_folder)
    refuse_inputs(target, "--out", {"the teacher folder": teacher_folder, "the data": data if isinstance(
        data, str | Path) else None, "the --student folder": student},
                  sealed=("the teacher folder", "the --student folder"))
    check_folder(target, overwrite)
    teacher = TextClassifier.from_pretrained(teacher_folder, backend="torch")
    teacher_bytes = model_bytes(teacher_folder)
    precisions = [quantize] if quantize else list(QUANTIZE_CHOICES)
    if student is not None:
        steps = [(None, precisions)]
    else:
        n_layers = teacher.model.config.num_hidden_layers
        if student_layers is not None:
            kept_layers(n_layers, student_layers)  # the range check, before any work
        steps = plan(teacher, teacher_bytes, target_size_ratio,
                     [student_layers] if student_layers else list(range(1, n_layers)), precisions)
    # The students stand alone: a blended baseline (megabytes of vocabulary and weights) would undo the size sought.
    settings = {"report": False, "blend": False, **settings}
    search: list[dict[str, Any]] = []
    with claimed(target), staged_folder(target) as staging:
        for count, fits in steps:
            search += _try(teacher, teacher_folder, teacher_bytes, data, staging / "search", count, fits, search,
                           student=student, temperature=temperature, alpha=alpha, progress=progress,
                           target_size_ratio=target_size_ratio, max_drop=max_drop, settings=settings)
            if any(row["passes"] for row in search):
                break  # fewer layers would only cost accuracy
        chosen = choose(search, target_size_ratio, max_drop)
        shutil.move(chosen["folder"] / "student", staging / "student")
        small = f"student-{chosen['precision']}"
        shutil.move(chosen["folder"] / small, staging / small)
        shutil.rmtree(staging / "search")
        # The test split, scored once, for the chosen configuration only.
        test = read_split(staging / "student", "test")
        rows = [measure("teacher", teacher, teacher_folder, None, test),
                measure("student", TextClassifier.from_pretrained(staging / "student", backend="torch"),
                        staging / "student", None, test),
                measure(small, TextClassifier.from_pretrained(staging / small, backend="onnx"), staging / small,
                        None, test)]
        for row in rows:
            row["smaller_by"] = rows[0]["bytes"] / row["bytes"]
    for row in search:
        row.pop("folder")
    ratio = rows[0]["bytes"] / rows[2]["bytes"]
    if not chosen["passes"]:
        _say_missed(chosen, target_size_ratio, max_drop)
    return CompressResult(target, rows, ratio, target_size_ratio, search, chosen, max_drop)


def _say_missed(chosen: dict[str, Any], target_size_ratio: float, max_drop: float) -> None:
    log.warning("no configuration tried is both %.1fx smaller than the teacher and within %.3f of its validation "
                "score; kept %d layers %s, %.2fx smaller, validation %.4f against the teacher's %.4f (short of the "
                "%.1fx asked, or of the accuracy limit): a smaller --student or more training data may get there",
                target_size_ratio, max_drop, chosen["layers"], chosen["precision"], chosen["smaller_by"],
                chosen["validation"], chosen["teacher_validation"], target_size_ratio)


def _check_arguments(quantize: str | None, target_size_ratio: float, max_drop: float) -> None:
    """Refused before distilling, which takes minutes (export would refuse some only afterwards)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("bertfit compress runs in one process; under torchrun or accelerate launch run "
                         "bertfit distill, then bertfit export --quantize int8 in one process")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise UsageError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    if not 1 < target_size_ratio < float("inf"):  # the teacher's size over the student's: infinity is no size
        raise UsageError(f"--target-size-ratio must be a number above 1 (e.g. 4: a quarter of the teacher's size), "
                         f"got {target_size_ratio}")
    if not 0 <= max_drop <= 1:
        raise UsageError(f"--max-drop must be between 0 and 1 (a share, e.g. 0.01 for one point), got {max_drop}")


def _try(teacher: TextClassifier, teacher_folder: Path, teacher_bytes: int, data: Any, search_dir: Path,
         count: int | None, fits: list[str], tried: list[dict[str, Any]], *, student: str | None, temperature: float,
         alpha: float, progress: bool, target_size_ratio: float, max_drop: float,
         settings: dict[str, Any]) -> list[dict[str, Any]]:
    """One student (``count`` layers, or ``student``) distilled, exported at each precision in ``fits``, and
    scored on validation; one row per precision."""
    from bertfit.export.onnx import export
    from bertfit.training.distill import distill

    where = search_dir / f"layers-{count or 'student'}"
    log.info("compress: distilling a %s student", f"{count}-layer" if count else student)
    distill(teacher_folder, data, where / "student", student=student, student_layers=count,
            temperature=temperature, alpha=alpha, progress=progress, **settings)
    validation = read_split(where / "student", "validation")
    teacher_validation = tried[0]["teacher_validation"] if tried else _main_score(teacher, validation)
    rows = []
    for precision in fits:
        exported = export(where / "student", where / f"student-{precision}", quantize=precision, max_drop=1.0)
        row = {"layers": count or TextClassifier.from_pretrained(where / "student").model.config
               .num_hidden_layers, "precision": precision, "bytes": exported.size_after,
               "smaller_by": teacher_bytes / exported.size_after, "validation": exported.check["onnx"],
               "teacher_validation": teacher_validation, "folder": where, "student_layers": count}
        row["passes"] = row["smaller_by"] >= target_size_ratio and teacher_validation - row["validation"] <= max_drop
        rows.append(row)
    return rows


def choose(search: list[dict[str, Any]], target: float, max_drop: float) -> dict[str, Any]:
    """The passing configuration with the best validation score; else the one closest to both limits."""
    passing = [row for row in search if row["passes"]]
    if passing:
        return max(passing, key=lambda row: (row["validation"], row["smaller_by"]))

    def shortfall(row: dict[str, Any]) -> tuple[float, float]:
        accuracy = max(0.0, row["teacher_validation"] - row["validation"] - max_drop)
        return (accuracy + max(0.0, 1 - row["smaller_by"] / target), -row["validation"])

    return min(search, key=shortfall)


def _main_score(classifier: TextClassifier, rows: SplitRows) -> float:
    metrics = classifier.evaluate(rows.texts, rows.labels, pairs=rows.pairs)
    return float(metrics["accuracy"] if "accuracy" in metrics else metrics["f1_micro"])


def measure(name: str, classifier: TextClassifier, folder: Path, metrics: dict[str, Any] | None,
            rows: SplitRows, batch_size: int = 64) -> dict[str, Any]:
    """Size, metrics (scored here when not given) and texts/s of one model on the rows.

    The first batch runs once untimed: onnxruntime and PyTorch set themselves up on the first call.
    """
    texts, labels, pairs = rows.texts, rows.labels, rows.pairs
    classifier.logits(texts[:16], batch_size, pairs=pairs[:16] if pairs is not None else None)
    started = time.perf_counter()
    logits = classifier.logits(texts, batch_size, pairs=pairs)
    seconds = time.perf_counter() - started
    metrics = metrics or classifier.score(logits, labels)
    keys = ("accuracy", "f1_micro", "f1_macro", "auc")
    return {"model": name, "bytes": model_bytes(folder), **{k: metrics[k] for k in keys if k in metrics},
            "texts_per_s": len(texts) / seconds}
