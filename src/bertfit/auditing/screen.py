"""``bertfit train --audit`` and ``--drop-suspects``: the label audit as a step between reading and training.

The audit runs on the splits training will use (same reading, cleaning and seed), and its files
(``audit.csv``, ``audit.json``) are saved in the model folder, whose report then has a "Label
audit" section. With ``--drop-suspects`` the flagged *training* rows, strongest first, are left out
before training; validation and test are never touched, so the scores stay comparable with a run
without it. Every class keeps at least ``KEEP_PER_CLASS`` training rows.
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


def drop_count(value: Any) -> int | None:
    """--drop-suspects as given: "auto" (every flagged training row: None) or a whole number K >= 0."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        count = int(str(value).strip())
    except ValueError:
        count = -1
    if isinstance(value, bool) or count < 0 or (isinstance(value, float) and not value.is_integer()):
        raise UsageError(f"--drop-suspects takes 'auto' (every flagged training row) or a whole number of rows "
                         f"(the strongest suspects first), got {value!r}")
    return count


def audit_screen(*, folds: int = 5, method: str = "both", model: str | None = None, drop: Any = None,
                 seed: int = 42, progress: bool = True) -> Screen:
    """A ``train(screen=...)`` step: audit the splits, save the audit with the model, optionally drop suspects.

    ``drop``: None keeps every row; "auto" drops every flagged training row; K drops at most the K
    strongest. Checked now, so that a bad value fails before any data is read.
    """
    check_audit(folds, method)
    dropping = drop is not None
    most = drop_count(drop) if dropping else 0

    def screen(prepared: PreparedData) -> tuple[PreparedData, dict[str, str]]:
        result = audit_prepared(prepared, folds=folds, method=method, model=model, seed=seed, progress=progress)
        flagged = sum(s["flagged"] for s in result.per_split.values())
        log.info("label audit (%s, %d folds, %.0f s): %d rows flagged as probably mislabelled (train %d); "
                 "audit.csv and the report's Label audit section have them", method, folds, result.seconds,
                 flagged, result.per_split["train"]["flagged"])
        dropped = 0
        if dropping:
            prepared, dropped = without_suspects(prepared, result, most)
            log.info("--drop-suspects %s: %d training rows left out (validation and test untouched)",
                     drop, dropped)
        details = result.details() | ({"dropped": dropped} if dropping else {})
        return prepared, {AUDIT_FILE: csv_text(result.rows), AUDIT_SUMMARY: json.dumps(details, indent=1)}

    return screen


def without_suspects(prepared: PreparedData, result: AuditResult, most: int | None) -> tuple[PreparedData, int]:
    """The splits without the strongest flagged training rows (at most ``most``; None: all); and how many went."""
    suspects = [row for row in result.rows if row["split"] == "train" and row["reason"] == "label"]
    suspects.sort(key=lambda row: -row["score"])
    train = prepared.train
    labels = train["label"].tolist()
    left = {name: labels.count(name) for name in set(labels)}
    chosen: list[int] = []
    for row in suspects:
        if most is not None and len(chosen) >= most:
            break
        given = labels[row["row"]]
        if left[given] > KEEP_PER_CLASS:
            left[given] -= 1
            chosen.append(row["row"])
    if not chosen:
        return prepared, 0
    keep = np.ones(len(train), dtype=bool)
    keep[chosen] = False
    kept = train[keep].reset_index(drop=True)
    report = dict(prepared.report)
    report["dropped"] = {**report.get("dropped", {}), DROPPED_KEY: len(chosen)}
    report["rows"] = {**report.get("rows", {}), "train": len(kept)}
    balance = dict(report.get("class_balance", {}))
    balance["train"] = prepared.labels.balance(kept["label"])
    report["class_balance"] = balance
    return replace(prepared, train=kept, report=report), len(chosen)
