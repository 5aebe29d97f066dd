"""Smaller and faster models out: ONNX export behind an accuracy check, and compression.

- ``onnx``: ``bertfit export``: ONNX (optionally int8), checked against PyTorch on validation.
- ``compress``: ``bertfit compress``: distil and quantize, searched on validation, test scored once.

Builds on the core, ``data`` and ``training`` (distillation).
"""

from __future__ import annotations

from pathlib import Path


def onnx_out(model_dir: str | Path, quantize: str | None) -> Path:
    """Where ``bertfit export`` writes without --out: MODEL_DIR-onnx, or MODEL_DIR-onnx-QUANTIZE, beside it."""
    folder = Path(model_dir)
    return folder.parent / f"{folder.name}-onnx{'-' + quantize if quantize else ''}"


def compressed_out(teacher_dir: str | Path) -> Path:
    """Where ``bertfit compress`` writes without --out: TEACHER_DIR-compressed, beside it."""
    folder = Path(teacher_dir)
    return folder.parent / f"{folder.name}-compressed"
