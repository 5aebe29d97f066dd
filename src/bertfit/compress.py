"""Compress a trained model in one command: distil it into a smaller student, then export the student
to ONNX with int8 weights (``int8-emb4``: the embedding tables in 4 bits too), and compare all three
on the same test split.

The int8 export goes through ``export``'s accuracy gate (it refuses a student that int8 drops by
more than ``max_drop``). The result is one folder holding ``student/`` (PyTorch) and
``student-int8/`` (ONNX; ``student-int8-emb4/``), built beside its destination and renamed when complete, and a table:
size on disk, test metrics and texts/s for teacher, student and student-int8. When the size
ratio misses the target, it says so and by how much; it never pretends.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertfit.backends import WEIGHT_FILES
from bertfit.config import QUANTIZE_CHOICES
from bertfit.errors import UsageError
from bertfit.model import TextClassifier
from bertfit.staging import check_folder, refuse_inputs, staged_folder

log = logging.getLogger(__name__)


@dataclass
class CompressResult:
    out: Path
    rows: list[dict[str, Any]]  # teacher, student, student-int8
    size_ratio: float  # teacher bytes / student-int8 bytes
    target_size_ratio: float

    def summary(self) -> dict[str, Any]:
        return {"out": str(self.out), "size_ratio": round(self.size_ratio, 2),
                "target_size_ratio": self.target_size_ratio, "met": self.size_ratio >= self.target_size_ratio,
                "rows": self.rows}

    def table(self) -> str:
        metric = "accuracy" if "accuracy" in self.rows[0] else "f1_micro"
        lines = [f"| model | size (MB) | smaller by | test {metric} | macro F1 | ROC AUC | texts/s |",
                 "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in self.rows:
            auc = f"{row['auc']:.3f}" if row.get("auc") is not None else "n/a"
            lines.append(f"| {row['model']} | {row['bytes'] / 1e6:.1f} | {row['smaller_by']:.2f}x | "
                         f"{row[metric]:.4f} | {row['f1_macro']:.4f} | {auc} | {row['texts_per_s']:.0f} |")
        return "\n".join(lines)


def model_bytes(folder: Path) -> int:
    """Bytes of a folder's weights: PyTorch safetensors/bin, or model.onnx with its external data."""
    names = [*WEIGHT_FILES, "model.onnx", "model.onnx.data"]
    return sum((folder / name).stat().st_size for name in names if (folder / name).exists())


def compress(
    teacher_dir: str | Path, data: Any, out: str | Path | None = None, *, target_size_ratio: float = 7.0,
    student_layers: int | None = None, student: str | None = None, temperature: float = 2.0, alpha: float = 0.5,
    max_drop: float = 0.01, quantize: str = "int8", overwrite: bool = False, progress: bool = True,
    **settings: Any,
) -> CompressResult:
    """Distil ``teacher_dir`` on ``data`` (a third of its layers unless told), export int8, compare; see above."""
    from bertfit.distill import distill
    from bertfit.export import export

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("bertfit compress runs in one process; under torchrun or accelerate launch run "
                         "bertfit distill, then bertfit export --quantize int8 in one process")
    # checked before distilling, which takes minutes; export would refuse it only afterwards
    if quantize not in QUANTIZE_CHOICES:
        raise UsageError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {quantize!r}")
    if not target_size_ratio > 1:
        raise UsageError(f"--target-size-ratio must be above 1, got {target_size_ratio}")
    teacher_folder = Path(teacher_dir)
    target = Path(out) if out is not None else teacher_folder.parent / f"{teacher_folder.name}-compressed"
    refuse_inputs(target, "--out", {"the teacher folder": teacher_folder, "the data": data if isinstance(
        data, str | Path) else None, "the --student folder": student})
    check_folder(target, overwrite)
    teacher = TextClassifier.from_pretrained(teacher_folder, backend="torch")
    if student is None and student_layers is None:
        student_layers = max(1, teacher.model.config.num_hidden_layers // 3)
    with staged_folder(target) as staging:
        settings = {"report": False, **settings}
        result = distill(teacher_folder, data, staging / "student", student=student, student_layers=student_layers,
                         temperature=temperature, alpha=alpha, progress=progress, **settings)
        small = f"student-{quantize}"
        export(staging / "student", staging / small, quantize=quantize, max_drop=max_drop)
        test = result.classifier.meta["distilled"]["teacher_test"]
        texts = _test_texts(staging / "student")
        rows = [
            measure("teacher", teacher, teacher_folder, test, texts),
            measure("student", result.classifier, staging / "student", result.test, texts),
        ]
        int8 = TextClassifier.from_pretrained(staging / small, backend="onnx")
        rows.append(measure(small, int8, staging / small, None, texts))
        for row in rows:
            row["smaller_by"] = rows[0]["bytes"] / row["bytes"]
    ratio = rows[0]["bytes"] / rows[2]["bytes"]
    if ratio < target_size_ratio:
        log.warning("the int8 student is %.2fx smaller than the teacher, short of the %.1fx asked; fewer "
                    "--student-layers, or a smaller --student, shrink it further", ratio, target_size_ratio)
    return CompressResult(target, rows, ratio, target_size_ratio)


def _test_texts(folder: Path) -> tuple[list[str], list[Any], list[str] | None]:
    import json

    rows = [json.loads(line) for line in (folder / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    pairs = [r["text_pair"] for r in rows] if rows and "text_pair" in rows[0] else None
    return [r["text"] for r in rows], [r["label"] for r in rows], pairs


def measure(name: str, classifier: TextClassifier, folder: Path, metrics: dict[str, Any] | None,
            rows: tuple[list[str], list[Any], list[str] | None], batch_size: int = 64) -> dict[str, Any]:
    """Size, test metrics (scored here when not given) and texts/s of one model on the test texts.

    The first batch runs once untimed: onnxruntime and PyTorch set themselves up on the first call.
    """
    texts, labels, pairs = rows
    classifier.logits(texts[:16], batch_size, pairs=pairs[:16] if pairs is not None else None)
    started = time.perf_counter()
    logits = classifier.logits(texts, batch_size, pairs=pairs)
    seconds = time.perf_counter() - started
    metrics = metrics or classifier.score(logits, labels)
    keys = ("accuracy", "f1_micro", "f1_macro", "auc")
    return {"model": name, "bytes": model_bytes(folder), **{k: metrics[k] for k in keys if k in metrics},
            "texts_per_s": len(texts) / seconds}
