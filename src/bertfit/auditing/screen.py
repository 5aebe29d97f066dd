"""``bertfit train --audit``, ``--drop-suspects`` and ``--relabel-suspects``: the label audit as a step
between reading and training.

The audit runs on the splits training will use (same reading, cleaning and seed), and its files
(``audit.csv``, ``audit.json``) are saved in the model folder, whose report then has a "Label
audit" section. With ``--drop-suspects`` the flagged *training* rows, strongest first, are left out
before training; with ``--relabel-suspects`` they keep their place and take the audit's suggested
label. Validation and test are never touched, so the scores stay comparable with a run without it.
Every class keeps at least ``KEEP_PER_CLASS`` training rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import numpy as np

from bertfit.auditing.run import AUDIT_FILE, AuditResult, audit_prepared, check_audit, csv_text
from bertfit.data.cleaning import PreparedData
from bertfit.errors import UsageError
from bertfit.reporting.audit_section import AUDIT_SUMMARY
from bertfit.training.run import Screen

log = logging.getLogger(__name__)

KEEP_PER_CLASS = 2  # a class never loses its last training rows to --drop-suspects
DROPPED_KEY = "suspected label errors (--drop-suspects)"
RELABELLED_KEY = "relabelled_suspects"  # the report's count of training rows given the suggested label


def drop_count(value: Any, flag: str = "--drop-suspects") -> int | None:
    """--drop-suspects (or --relabel-suspects) as given: "auto" (every flagged training row: None) or a whole
    number K >= 0."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        count = int(str(value).strip())
    except ValueError:
        count = -1
    if isinstance(value, bool) or count < 0 or (isinstance(value, float) and not value.is_integer()):
        raise UsageError(f"{flag} takes 'auto' (every flagged training row) or a whole number of rows "
                         f"(the strongest suspects first), got {value!r}")
    return count


def audit_screen(*, folds: int = 5, method: str = "both", model: str | None = None, drop: Any = None,
                 relabel: Any = None, seed: int = 42, progress: bool = True) -> Screen:
    """A ``train(screen=...)`` step: audit the splits, save the audit with the model, optionally drop suspects
    or give them the suggested label.

    ``drop`` / ``relabel``: None leaves every row as it is; "auto" takes every flagged training row; K at
    most the K strongest. Checked now, so that a bad value fails before any data is read.
    """
    check_audit(folds, method, flags="--audit-")
    if drop is not None and relabel is not None:
        raise UsageError("--drop-suspects and --relabel-suspects each decide what becomes of a suspect; pass one")
    if relabel is not None:
        return _screen(folds, method, model, seed, progress, "--relabel-suspects", relabel)
    return _screen(folds, method, model, seed, progress, "--drop-suspects" if drop is not None else None, drop)


def _screen(folds: int, method: str, model: str | None, seed: int, progress: bool, flag: str | None,
            value: Any) -> Screen:
    most = drop_count(value, flag) if flag else 0
    relabelling = flag == "--relabel-suspects"

    def screen(prepared: PreparedData) -> tuple[PreparedData, dict[str, str]]:
        result = audit_prepared(prepared, folds=folds, method=method, model=model, seed=seed, progress=progress)
        flagged = sum(s["flagged"] for s in result.per_split.values())
        log.info("label audit (%s, %d folds, %.0f s): %d rows flagged as probably mislabelled (train %d); "
                 "audit.csv and the report's Label audit section have them", method, folds, result.seconds,
                 flagged, result.per_split["train"]["flagged"])
        changed = 0
        if flag:
            prepared, changed = (with_suggested_labels if relabelling else without_suspects)(prepared, result, most)
            log.info("%s %s: %d training rows %s (validation and test untouched)", flag, value, changed,
                     "given the suggested label" if relabelling else "left out")
        details = result.details() | ({("relabelled" if relabelling else "dropped"): changed} if flag else {})
        return prepared, {AUDIT_FILE: csv_text(result.rows), AUDIT_SUMMARY: json.dumps(details, indent=1)}

    return screen


def with_suggested_labels(prepared: PreparedData, result: AuditResult, most: int | None) -> tuple[PreparedData, int]:
    """The splits with the strongest flagged training rows (at most ``most``; None: all) given the suggested
    label; and how many were."""
    chosen = _strongest(prepared, result, most)
    if not chosen:
        return prepared, 0
    labels = prepared.train["label"].tolist()
    for row in chosen:
        labels[row["row"]] = row["suggested_label"]
    train = prepared.train.assign(label=labels)
    report = dict(prepared.report)
    report[RELABELLED_KEY] = len(chosen)
    report["class_balance"] = {**report.get("class_balance", {}), "train": prepared.labels.balance(train["label"])}
    return replace(prepared, train=train, report=report), len(chosen)


def _strongest(prepared: PreparedData, result: AuditResult, most: int | None) -> list[dict[str, Any]]:
    """The flagged training rows (the audit's rows) to act on, strongest first, while each given label keeps
    KEEP_PER_CLASS rows."""
    suspects = [row for row in result.rows if row["split"] == "train" and row["reason"] == "label"]
    suspects.sort(key=lambda row: -row["score"])
    train = prepared.train
    labels = train["label"].tolist()
    left = {name: labels.count(name) for name in set(labels)}
    chosen: list[dict[str, Any]] = []
    for row in suspects:
        if most is not None and len(chosen) >= most:
            break
        given = labels[row["row"]]
        if left[given] > KEEP_PER_CLASS:
            left[given] -= 1
            chosen.append(row)
    return chosen


def without_suspects(prepared: PreparedData, result: AuditResult, most: int | None) -> tuple[PreparedData, int]:
    """The splits without the strongest flagged training rows (at most ``most``; None: all); and how many went."""
    chosen = _strongest(prepared, result, most)
    if not chosen:
        return prepared, 0
    train = prepared.train
    keep = np.ones(len(train), dtype=bool)
    keep[[row["row"] for row in chosen]] = False
    kept = train[keep].reset_index(drop=True)
    report = dict(prepared.report)
    report["dropped"] = {**report.get("dropped", {}), DROPPED_KEY: len(chosen)}
    report["rows"] = {**report.get("rows", {}), "train": len(kept)}
    balance = dict(report.get("class_balance", {}))
    balance["train"] = prepared.labels.balance(kept["label"])
    report["class_balance"] = balance
    return replace(prepared, train=kept, report=report), len(chosen)
