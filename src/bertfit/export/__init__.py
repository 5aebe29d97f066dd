"""Smaller and faster models out: ONNX export behind an accuracy check, and compression.

- ``onnx``: ``bertfit export``: ONNX (optionally int8), checked against PyTorch on validation.
- ``compress``: ``bertfit compress``: distil and quantize, searched on validation, test scored once.

Builds on the core, ``data`` and ``training`` (distillation).
"""
