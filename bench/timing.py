"""Repeats, run order and summaries shared by the benchmarks, and the line saying where a run was measured.

A benchmark that compares paths (A, B, ...) times each one several times, interleaved, so that a
machine that slows down or speeds up during the run (another job, a warming CPU, a filling cache)
touches every path alike:

    for repeat, path in alternate(["A", "B", "C"], 3):   # A B C, C B A, A B C
        seconds[path].append(run(path))
    middle, low, high = summary(seconds["A"])

Figures are then reported as the median with the min-max beside it, and paths are compared by the
ratio of their medians. ``measured_on()`` gives the git commit (``+dirty`` when the work tree has
changes) and the CPU, so a table copied into the README can say where it came from. ``SHARED``,
``shared_missing()`` and ``quiet()`` are what every benchmark starts with: where the public data
sets are (never in this repository), the line that skips without them, and logs kept to warnings.
This module only orders and summarises; it runs and times nothing itself.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BERTFIT_SHARED", REPO.parent / "shared")) / "datasets"
# CPU features that decide how fast int8 and bf16 matmuls run, as /proc/cpuinfo names them
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16")


def alternate(paths: Sequence[T], repeats: int, mirrored: bool = True) -> Iterator[tuple[int, T]]:
    """(repeat, path) in run order: every path once per repeat; with ``mirrored`` every other repeat runs
    backwards (A B C, C B A, A B C: each path's average position is the same), else always forwards
    (A B, A B: strict alternation)."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for repeat in range(repeats):
        order = list(paths)[::-1] if mirrored and repeat % 2 else list(paths)
        for path in order:
            yield repeat, path


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of one path's repeated measurements (seconds, texts/s, requests/s ...)."""
    if not values:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(values), min(values), max(values)


def spread(values: Sequence[float], digits: int = 1) -> str:
    """'min-max' of ``values`` for a table cell ('-' for none)."""
    if not values:
        return "-"
    return f"{min(values):.{digits}f}-{max(values):.{digits}f}"


def commit() -> str:
    """The short hash of HEAD, with '+dirty' when ``git status --porcelain`` lists anything; 'unknown' without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True,
                                timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if status.strip() else "")


def machine() -> str:
    """The CPU model and its matmul features (/proc/cpuinfo on Linux), and the cores this process may use."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "flags" in fields:
        flags = set(fields["flags"].split())
        model += f" ({', '.join(f for f in FEATURES if f in flags) or 'no AVX2'})"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    total = os.cpu_count() or usable
    cores = f"{usable} cores" if usable == total else f"{usable} of {total} cores"
    return f"{model}, {cores}"


def measured_on() -> str:
    """One line for the top of a benchmark's output: commit and machine."""
    return f"commit {commit()}; machine: {machine()}"


def shared_missing() -> bool:
    """True, after printing the line that says the run is skipped, when the shared data sets are absent."""
    if SHARED.is_dir():
        return False
    print(f"skipped: {SHARED} not found (set BERTFIT_SHARED to the folder holding datasets/)")
    return True


def quiet() -> None:
    """Warnings on stderr, one line each; offline, no download bars, transformers' errors only."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    for key, value in (("TRANSFORMERS_VERBOSITY", "error"), ("HF_HUB_OFFLINE", "1"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
        os.environ.setdefault(key, value)
