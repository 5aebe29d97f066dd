"""``bertfit audit``: the rows whose given label is probably wrong, near-duplicates labelled apart, outliers.

The data is read, cleaned and split as ``bertfit train`` would (same flags, same seed). Train and
validation rows are scored out of fold, the test rows by models fitted on train and validation
(``evidence``); confident learning weighs those probabilities against the given labels
(``confident``). The result: one row per suspect in ``audit.csv``, a page ``audit.html``, and a
summary (printed as one JSON line by the command).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.auditing.confident import error_rate_interval, find_suspects
from bertfit.auditing.evidence import (
    METHODS,
    fold_splitter,
    near_duplicates,
    out_of_fold,
    outliers,
    sentence_embeddings,
)
from bertfit.auditing.finetuned import finetuned_out_of_fold
from bertfit.backends import refuse_without_weights
from bertfit.claims import claimed
from bertfit.config import DataConfig, check
from bertfit.data.cleaning import PreparedData, prepare
from bertfit.errors import OutputError, UsageError
from bertfit.folder import META_FILE
from bertfit.reporting.audit_section import audit_page
from bertfit.staging import check_folder, refuse_inputs, shown, staged_folder
from bertfit.training.baseline import joined_texts

log = logging.getLogger(__name__)

AUDIT_FILE, PAGE_FILE = "audit.csv", "audit.html"
MODEL_FIX = ("the audit embeds with PyTorch weights: pass the folder bertfit train wrote or a downloaded checkpoint "
             "folder, or leave --model out for the embedded all-MiniLM-L6-v2")
COLUMNS = ("split", "row", "text", "text_pair", "given_label", "suggested_label", "score", "reason")


@dataclass
class AuditResult:
    """Suspect rows and the counts behind them; ``rows`` are dicts with COLUMNS, most suspect first."""

    rows: list[dict[str, Any]]
    per_split: dict[str, dict[str, Any]]  # rows, flagged, estimated error rate and its interval
    pairs: dict[tuple[str, str], int]  # (given, suggested): flagged rows
    method: str
    folds: int
    seconds: float
    out: Path | None = None
    duplicates: int = 0
    outliers: int = 0
    notes: list[str] = field(default_factory=list)
    proba: np.ndarray | None = None  # (train + validation rows, classes): the out-of-fold probabilities

    def summary(self) -> dict[str, Any]:
        label_errors = sum(1 for r in self.rows if r["reason"] == "label")
        return {"out": str(self.out) if self.out else None, "method": self.method, "folds": self.folds,
                "suspected_label_errors": label_errors, "near_duplicate_rows": self.duplicates,
                "outliers": self.outliers, "per_split": self.per_split, "seconds": round(self.seconds, 1)}

    def details(self, top: int = 50) -> dict[str, Any]:
        """The summary, the (given, suggested) counts and the ``top`` strongest suspects: what the page shows."""
        return self.summary() | {"pairs": [[given, suggested, n] for (given, suggested), n in self.pairs.items()],
                                 "top": self.rows[:top]}


def audit(data: Any, out: str | Path | None = "audit", *, folds: int = 5, method: str = "both",
          overwrite: bool = False, progress: bool = True, model: str | None = None, **settings: Any) -> AuditResult:
    """Audit the labels of ``data`` (anything ``train`` reads; ``settings`` are its DataConfig fields)."""
    check_audit(folds, method)
    refuse_without_weights(model, "--model", MODEL_FIX)
    data_config = DataConfig(**settings)
    check(data_config)
    target = Path(out) if out is not None else None
    if target is not None:
        refuse_inputs(target, "--out", {"the data": data if isinstance(data, str | Path) else None,
                                        "the --model folder": model}, sealed=("the --model folder",))
        if overwrite and (target / META_FILE).is_file():  # --overwrite replaces an earlier audit, not a model
            raise OutputError(f"--out {shown(target)} holds a trained model ({META_FILE}); an audit never replaces "
                              "one: pass another --out, e.g. --out audit")
        check_folder(target, overwrite)
    started = time.perf_counter()
    prepared = prepare(data, data_config)
    result = audit_prepared(prepared, folds=folds, method=method, model=model, seed=data_config.seed,
                            progress=progress)
    result.seconds = time.perf_counter() - started  # reading and splitting too
    if target is not None:
        with claimed(target), staged_folder(target) as staging:
            (staging / AUDIT_FILE).write_text(csv_text(result.rows), encoding="utf-8")
            (staging / PAGE_FILE).write_text(audit_page(result.details()), encoding="utf-8")
        result.out = target
    return result


def check_audit(folds: Any, method: Any, flags: str = "--") -> None:
    """Refuse a --method or --folds the audit cannot run, before any data is read. ``flags``: how the
    command names them (``--audit-`` for train's --audit-folds and --audit-method)."""
    if method not in METHODS:
        raise UsageError(f"{flags}method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise UsageError(f"{flags}folds must be a whole number of at least 2, got {folds!r}")


def audit_prepared(prepared: PreparedData, *, folds: int = 5, method: str = "both", model: str | None = None,
                   seed: int = 42, progress: bool = True) -> AuditResult:
    """The audit of splits already read and split (what ``train --audit`` runs before training)."""
    from bertfit.training.backbone import default_model_path

    check_audit(folds, method)
    refuse_without_weights(model, "--model", MODEL_FIX)
    if prepared.multi_label:
        raise UsageError("the label audit checks single-label data (one class per row); for multi-label data, "
                         "read the report's most confident mistakes instead")
    started = time.perf_counter()
    model_path = model or default_model_path()
    kinds = ("embed", "tfidf") if method in ("both", "finetune") else (method,)
    evidence = _evidence(prepared, kinds, model_path, progress)
    labelled, test_proba = out_of_fold({k: evidence[k]["labelled"] for k in kinds}, evidence["labels"],
                                       {k: evidence[k]["test"] for k in kinds}, len(prepared.labels), folds, seed)
    if method == "finetune":  # the fine-tuned folds' probabilities, averaged with the cheap evidence's
        tuned, tuned_test = finetuned_out_of_fold(prepared, evidence["frames"]["labelled"], evidence["labels"],
                                                  folds, seed, model_path, progress)
        labelled, test_proba = (labelled + tuned) / 2, (test_proba + tuned_test) / 2
    used = fold_splitter(evidence["labels"], len(prepared.labels), folds, seed).n_splits
    if used < folds:
        log.info("%d folds, not %d: the smallest class has %d labelled rows", used, folds, used)
    result = _judge(prepared, evidence, labelled, test_proba, method, used)  # the folds that ran
    result.seconds = time.perf_counter() - started
    result.proba = labelled
    return result


def _evidence(prepared: PreparedData, kinds: tuple[str, ...], model_path: str, progress: bool) -> dict[str, Any]:
    """Features per kind for the labelled rows (train then validation) and the test rows, and the class ids."""
    labelled = [prepared.train, prepared.validation]
    frames = {"labelled": _concat(labelled), "test": prepared.test}
    evidence: dict[str, Any] = {"labels": prepared.labels.encode(frames["labelled"]["label"].tolist()),
                                "test_labels": prepared.labels.encode(prepared.test["label"].tolist()),
                                "frames": frames}
    if "tfidf" in kinds:
        evidence["tfidf"] = {part: joined_texts(frame) for part, frame in frames.items()}
    if "embed" in kinds:  # the model loaded once, every text encoded once
        every = _concat(list(frames.values()))
        pairs = every["text_pair"].tolist() if "text_pair" in every else None
        embedded = sentence_embeddings(every["text"].tolist(), pairs, model_path, progress=progress)
        cut = len(frames["labelled"])
        evidence["embed"] = {"labelled": embedded[:cut], "test": embedded[cut:]}
    if "embed" not in evidence:  # near-duplicates and outliers read embeddings; tfidf alone skips them
        evidence["embed"] = None
    return evidence


def _concat(frames: list[Any]) -> Any:
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def _judge(prepared: PreparedData, evidence: dict[str, Any], labelled: np.ndarray, test_proba: np.ndarray,
           method: str, folds: int) -> AuditResult:
    names = prepared.labels.names
    n_train = len(prepared.train)
    found = {"labelled": find_suspects(labelled, evidence["labels"]),
             "test": find_suspects(test_proba, evidence["test_labels"])}
    rows, per_split, pairs = [], {}, {}
    for part, suspects in found.items():
        frame = evidence["frames"][part]
        given = evidence["labels"] if part == "labelled" else evidence["test_labels"]
        for i in np.flatnonzero(suspects.flagged):
            split, row = _place(part, i, n_train)
            rows.append(_row(frame, i, split, row, names[given[i]], names[suspects.suggested[i]],
                             suspects.score[i], "label"))
            key = (names[given[i]], names[suspects.suggested[i]])
            pairs[key] = pairs.get(key, 0) + 1
        splits = {"train": slice(0, n_train), "validation": slice(n_train, None)} if part == "labelled" \
            else {"test": slice(None)}
        for split, where in splits.items():
            total, flagged = len(given[where]), int(suspects.flagged[where].sum())
            rate, low, high = error_rate_interval(flagged, total)
            per_split[split] = {"rows": total, "flagged": flagged, "error_rate": round(rate, 4),
                                "interval_95": [round(low, 4), round(high, 4)]}
    duplicates = far = 0
    if evidence["embed"] is not None:
        embedded = evidence["embed"]["labelled"]
        for group in near_duplicates(embedded, evidence["labels"]):
            duplicates += len(group)
            for i in group:
                split, row = _place("labelled", i, n_train)
                rows.append(_row(evidence["frames"]["labelled"], i, split, row, names[evidence["labels"][i]],
                                 "", 1.0, f"near-duplicate of rows {sorted(set(group) - {i})[:5]} labelled apart"))
        for i in np.flatnonzero(outliers(embedded, evidence["labels"])):
            far += 1
            split, row = _place("labelled", i, n_train)
            rows.append(_row(evidence["frames"]["labelled"], i, split, row, names[evidence["labels"][i]], "",
                             0.5, "outlier for its label"))
    rows.sort(key=lambda r: (r["reason"] != "label", -r["score"]))
    return AuditResult(rows, per_split, dict(sorted(pairs.items(), key=lambda kv: -kv[1])), method, folds, 0.0,
                       duplicates=duplicates, outliers=far)


def _place(part: str, i: int, n_train: int) -> tuple[str, int]:
    """(split, row within it) of row i of the labelled rows (train, then validation) or of the test rows."""
    if part == "test":
        return "test", int(i)
    return ("train", int(i)) if i < n_train else ("validation", int(i - n_train))


def _row(frame: Any, i: int, split: str, row: int, given: str, suggested: str, score: float,
         reason: str) -> dict[str, Any]:
    return {"split": split, "row": int(row), "text": frame["text"].iloc[i],
            "text_pair": frame["text_pair"].iloc[i] if "text_pair" in frame else "",
            "given_label": given, "suggested_label": suggested, "score": round(float(score), 4), "reason": reason}


def csv_text(rows: list[dict[str, Any]]) -> str:
    """The suspects as CSV (COLUMNS), most suspect first."""
    handle = io.StringIO()
    writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return handle.getvalue()
