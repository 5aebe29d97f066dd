"""A self-contained HTML report of a trained model folder: ``bertfit report MODEL_DIR``.

One HTML file that opens from disk: training curves from the saved history, the test rows scored
again (confusion matrix, per-class table, ROC and precision-recall curves, reliability plot, the
most confident mistakes), and the run's facts (data report, model, settings, versions, the
TF-IDF baseline). Plots are matplotlib PNGs inlined as base64; no network, no JavaScript.
The analysis functions take probabilities and label names and know nothing about models; only
:func:`write_report` loads one. This module does not train or change a model.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    classification_report,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from bertfit.errors import BertfitError, DataError, ModelLoadError, OutputError
from bertfit.labels import LabelSet
from bertfit.metrics import classification_metrics, headline
from bertfit.model import TextClassifier, read_meta

log = logging.getLogger(__name__)

TEST_FILE = "test.jsonl"  # written beside the model by `bertfit train`: text, label (and text_pair)
MAX_CURVES = 8  # one-vs-rest curves for the classes with the most test rows
MAX_MISTAKES = 20
NOT_RECORDED = "not recorded"


@dataclass
class Curve:
    """One ROC or precision-recall curve: x and y points and the area under it."""

    name: str
    x: np.ndarray
    y: np.ndarray
    area: float


@dataclass
class TestAnalysis:
    """What the report says about the scored test rows: numbers only, no drawing."""

    task: str
    labels: list[str]
    rows: int
    metrics: dict[str, Any]  # headline metrics of this scoring
    per_class: dict[str, Any]  # scikit-learn classification_report(output_dict=True)
    confusion: np.ndarray | None  # (classes, classes) counts, rows = true; single-label only
    roc: list[Curve] = field(default_factory=list)
    pr: list[Curve] = field(default_factory=list)
    reliability: dict[str, Any] = field(default_factory=dict)
    mistakes: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Analysis: probabilities in, numbers out


def analyse(meta: dict[str, Any], texts: list[str], labels: list[Any], proba: np.ndarray,
            pairs: list[str] | None = None) -> TestAnalysis:
    """The test analysis for a model's task: ``labels`` are names (lists of names for multi-label)."""
    names = list(meta["labels"])
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (len(texts), len(names)):
        raise ModelLoadError(f"the model gave probabilities of shape {proba.shape} for {len(texts)} texts and "
                             f"{len(names)} labels in bertfit.json; the folder is damaged: retrain or restore it")
    if meta.get("task") == "multi_label":
        thresholds = meta.get("thresholds") or [0.5] * len(names)
        return multi_label_analysis(names, texts, labels, proba, thresholds, pairs)
    return single_label_analysis(names, texts, labels, proba, pairs)


def single_label_analysis(names: list[str], texts: list[str], labels: list[str], proba: np.ndarray,
                          pairs: list[str] | None = None) -> TestAnalysis:
    """Confusion matrix, per-class table, curves and mistakes; ``proba`` is (rows, classes) softmax."""
    y_true = LabelSet(tuple(names)).encode(list(labels), where="the test rows")
    y_pred = proba.argmax(axis=1)
    classes = np.arange(len(names))
    per_class = classification_report(y_true, y_pred, labels=classes, target_names=names, output_dict=True,
                                      zero_division=0)
    onehot = y_true[:, None] == classes[None, :]
    # Binary: the positive class, label id 1; else one-vs-rest for the classes with the most test rows.
    curves = _curves([1] if len(names) == 2 else _top_by_support(onehot), onehot, proba, names)
    confidence = proba[np.arange(len(y_pred)), y_pred]
    calibration = reliability(y_pred == y_true, confidence)  # 15 bins, as the ECE recorded at training
    wrong = np.flatnonzero(y_pred != y_true)
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:MAX_MISTAKES]
    mistakes = [_row(texts, pairs, i, true=names[y_true[i]], predicted=names[y_pred[i]],
                     probability=float(confidence[i])) for i in worst]
    return TestAnalysis(
        task="single_label", labels=names, rows=len(y_true),
        metrics={**headline(classification_metrics(y_true, proba)), "ece": calibration["ece"]},
        per_class=per_class, confusion=confusion_matrix(y_true, y_pred, labels=classes),
        roc=curves[0], pr=curves[1], reliability=calibration, mistakes=mistakes,
    )


def multi_label_analysis(names: list[str], texts: list[str], labels: list[list[str]], proba: np.ndarray,
                         thresholds: list[float], pairs: list[str] | None = None) -> TestAnalysis:
    """Per-label table at the thresholds, per-label curves and mistakes; ``proba`` is (rows, labels) sigmoid."""
    if len(thresholds) != len(names):
        raise ModelLoadError(f"bertfit.json has {len(thresholds)} thresholds for {len(names)} labels; "
                             "the folder is damaged: retrain or restore it")
    truth = label_matrix(names, labels)
    predicted = proba >= np.asarray(thresholds, dtype=np.float64)[None, :]
    per_class = classification_report(truth, predicted, target_names=names, output_dict=True, zero_division=0)
    present = [k for k in range(len(names)) if 0 < truth[:, k].sum() < len(truth)]
    metrics = {
        "subset_accuracy": float((predicted == truth).all(axis=1).mean()),
        "f1_micro": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "precision_micro": float(precision_score(truth, predicted, average="micro", zero_division=0)),
        "recall_micro": float(recall_score(truth, predicted, average="micro", zero_division=0)),
        "auc": float(np.mean([roc_auc_score(truth[:, k], proba[:, k]) for k in present])) if present else None,
        "rows": len(truth),
    }
    roc, pr = _curves(_top_by_support(truth), truth, proba, names)
    # Each wrong decision, by how sure the model was of it: p for a false positive, 1 - p for a miss.
    errors = predicted != truth
    sureness = np.where(errors, np.where(predicted, proba, 1 - proba), -1.0)
    worst_label = sureness.argmax(axis=1)
    wrong = np.flatnonzero(errors.any(axis=1))
    worst = wrong[np.argsort(-sureness[wrong, worst_label[wrong]], kind="stable")][:MAX_MISTAKES]
    mistakes = [
        _row(texts, pairs, i, true=[n for n, t in zip(names, truth[i], strict=True) if t],
             predicted=[n for n, p in zip(names, predicted[i], strict=True) if p],
             probability=float(proba[i, worst_label[i]]), label=names[worst_label[i]],
             error="false positive" if predicted[i, worst_label[i]] else "missed")
        for i in worst
    ]
    return TestAnalysis(
        task="multi_label", labels=names, rows=len(truth), metrics=metrics, per_class=per_class, confusion=None,
        roc=roc, pr=pr, reliability=reliability(truth.ravel(), proba.ravel()), mistakes=mistakes,
    )


def label_matrix(names: list[str], labels: list[list[str]]) -> np.ndarray:
    """(rows, labels) booleans from lists of names; an unknown name is an error naming it."""
    lookup = {name: k for k, name in enumerate(names)}
    truth = np.zeros((len(labels), len(names)), dtype=bool)
    for i, row in enumerate(labels):
        row = [row] if isinstance(row, str) else row
        unknown = [name for name in row if name not in lookup]
        if unknown:
            raise DataError(f"test row {i + 1} has label(s) {unknown[:5]} the model does not know "
                            f"(known: {names[:10]}); remove those rows or retrain with them")
        truth[i, [lookup[name] for name in row]] = True
    return truth


def reliability(outcome: np.ndarray, probability: np.ndarray, bins: int = 15) -> dict[str, Any]:
    """Reliability diagram points per non-empty bin of equal width (mean probability, observed rate, rows)
    and the expected calibration error (the row-weighted mean gap between the two)."""
    outcome, probability = np.asarray(outcome, dtype=np.float64), np.asarray(probability, dtype=np.float64)
    if len(outcome) == 0:
        return {}
    bin_of = np.minimum((probability * bins).astype(int), bins - 1)
    counts = np.bincount(bin_of, minlength=bins)
    used = counts > 0
    predicted = np.bincount(bin_of, weights=probability, minlength=bins)[used] / counts[used]
    observed = np.bincount(bin_of, weights=outcome, minlength=bins)[used] / counts[used]
    ece = float(np.sum(np.abs(observed - predicted) * counts[used]) / len(outcome))
    return {"predicted": predicted, "observed": observed, "counts": counts[used], "ece": ece}


def _top_by_support(onehot: np.ndarray) -> list[int]:
    """Up to MAX_CURVES columns with the most positives, leaving out any a curve is undefined for."""
    support = onehot.sum(axis=0)
    drawable = [k for k in np.argsort(-support, kind="stable") if 0 < support[k] < len(onehot)]
    return [int(k) for k in drawable[:MAX_CURVES]]


def _curves(columns: list[int], onehot: np.ndarray, proba: np.ndarray, names: list[str]
            ) -> tuple[list[Curve], list[Curve]]:
    """ROC and precision-recall curves of the given columns, each one against the rest."""
    roc, pr = [], []
    for k in columns:
        truth, score = onehot[:, k], proba[:, k]
        if not 0 < truth.sum() < len(truth):
            continue
        fpr, tpr, _ = roc_curve(truth, score)
        precision, recall, _ = precision_recall_curve(truth, score)
        roc.append(Curve(names[k], fpr, tpr, float(roc_auc_score(truth, score))))
        pr.append(Curve(names[k], recall, precision, float(average_precision_score(truth, score))))
    return roc, pr


def _row(texts: list[str], pairs: list[str] | None, i: int, **fields: Any) -> dict[str, Any]:
    row = {"text": texts[i], **fields}
    if pairs is not None:
        row["text_pair"] = pairs[i]
    return row


# ---------------------------------------------------------------------------------------------
# Test rows and the file


@dataclass
class TestRows:
    texts: list[str]
    labels: list[Any]  # names, or lists of names for multi-label
    pairs: list[str] | None
    source: str


def load_test_rows(folder: Path, meta: dict[str, Any], data: str | Path | None = None
                   ) -> tuple[TestRows | None, str]:
    """The rows to score (``--data``, else the folder's test.jsonl) or None with the reason why not."""
    if data is not None:
        from bertfit.data import load_labelled

        # A sentence-pair model reads its second text column; a multi-label model its label lists.
        options: dict[str, Any] = {}
        if meta.get("text_pair_col"):
            options["pair_col"] = meta["text_pair_col"]
        if meta.get("task") == "multi_label":
            options.update(multi_label=True, label_sep=meta.get("label_sep"))
        rows = load_labelled(data, None, None, preferred=(meta.get("text_col"), meta.get("label_col")), **options)
        pairs = rows["text_pair"].tolist() if "pair_col" in options else None
        return TestRows(rows["text"].tolist(), rows["label"].tolist(), pairs, str(data)), ""
    file = folder / TEST_FILE
    if not file.exists():
        return None, (f"This folder has no {TEST_FILE} (folders from bertfit before the report, and plain Hugging "
                      "Face folders, do not keep their test rows), so the test sections are left out; run "
                      f"bertfit report {folder} --data FILE to score a labelled file.")
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{file} line {number} is not JSON ({err.msg}); the folder is damaged: "
                            "retrain, or pass --data FILE") from None
        if not isinstance(record, dict) or "text" not in record or "label" not in record:
            raise DataError(f"{file} line {number} lacks 'text' or 'label'; the folder is damaged: "
                            "retrain, or pass --data FILE")
        records.append(record)
    if not records:
        return None, f"The folder's {TEST_FILE} is empty, so the test sections are left out."
    has_pairs = any(r.get("text_pair") is not None for r in records)  # sentence-pair models only
    pairs = [r.get("text_pair") or "" for r in records] if has_pairs else None
    return TestRows([r["text"] for r in records], [r["label"] for r in records], pairs, str(file)), ""


def write_report(model_dir: str | Path, out: str | Path | None = None, data: str | Path | None = None,
                 progress: bool = False) -> Path:
    """Score the folder's test rows and write the HTML report (atomically); returns its path."""
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelLoadError(f"model folder not found: {folder}; pass the folder bertfit train wrote")
    target = Path(out) if out is not None else folder / "report.html"
    if target.is_dir():
        raise OutputError(f"--out {target} is a folder; pass a file path such as {target / 'report.html'}")
    if not target.parent.is_dir():
        raise OutputError(f"--out {target}: folder {target.parent} does not exist; create it or pass another --out")
    meta = read_meta(folder) or _plain_meta(folder)
    rows, reason = load_test_rows(folder, meta, data)
    analysis = None
    if rows is not None:
        classifier = TextClassifier.from_pretrained(folder)
        meta = {**classifier.meta, **meta}
        pairs = {"pairs": rows.pairs} if rows.pairs is not None else {}  # sentence-pair models only
        proba = classifier.predict_proba(rows.texts, progress=progress, **pairs)
        analysis = analyse(meta, rows.texts, rows.labels, proba, rows.pairs)
        reason = f"{analysis.rows} rows from {rows.source}"
    page = render_html(meta, analysis, reason, title=folder.resolve().name)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        staging.write_text(page, encoding="utf-8")
        os.replace(staging, target)
    except OSError as err:
        raise OutputError(f"cannot write {target} ({err.strerror}); pass an --out you can write to") from None
    finally:
        staging.unlink(missing_ok=True)
    log.info("report written to %s", target)
    return target


def _plain_meta(folder: Path) -> dict[str, Any]:
    """What a plain Hugging Face folder says about itself: its labels, as transformers reads them."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"cannot read {folder}/config.json: {str(err).splitlines()[0]}") from None
    return {"labels": [config.id2label[i] for i in sorted(config.id2label)]}

# ---------------------------------------------------------------------------------------------
# Drawing: matplotlib on its Agg canvas (no pyplot, no display), PNGs inlined as base64


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise BertfitError("the report draws with matplotlib, which is not installed; "
                           "pip install 'matplotlib>=3.7'") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _img(figure: Any, alt: str) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def plot_training(history: list[dict[str, Any]], best_epoch: int | None, metric: str, metric_name: str) -> str:
    """Training and validation loss, and the validation metric, per epoch; the best epoch dashed."""
    figure = _figure(10, 3.4)
    loss_ax, metric_ax = figure.subplots(1, 2)
    epochs = [h.get("epoch") for h in history]
    validation = [h.get("validation") or {} for h in history]
    _line(loss_ax, epochs, [h.get("train_loss") for h in history], "training loss")
    _line(loss_ax, epochs, [v.get("loss") for v in validation], "validation loss")
    if not _line(metric_ax, epochs, [v.get(metric) for v in validation], f"validation {metric_name}"):
        metric_ax.text(0.5, 0.5, NOT_RECORDED, ha="center", va="center", transform=metric_ax.transAxes)
    for ax, title in ((loss_ax, "loss"), (metric_ax, metric_name)):
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        ax.set(xlabel="epoch", title=title)
        ax.legend(fontsize="small")
    return _img(figure, f"training and validation loss, and validation {metric_name}, per epoch")


def _line(ax: Any, xs: list[Any], ys: list[Any], label: str) -> bool:
    points = [(x, y) for x, y in zip(xs, ys, strict=True) if x is not None and y is not None]
    if points:
        ax.plot(*zip(*points, strict=True), marker="o", label=label)
    return bool(points)


def plot_confusion(counts: np.ndarray, names: list[str]) -> str:
    """Counts and the share of each true class (rows sum to 1), side by side."""
    n = len(names)
    size = min(max(4.0, 0.45 * n + 2), 12.0)
    figure = _figure(2 * size, size)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    for ax, values, title, form in zip(figure.subplots(1, 2), (counts, rates),
                                       ("counts", "share of each true class"), ("{:d}", "{:.2f}"), strict=True):
        ax.imshow(values, cmap="Blues", vmin=0)
        ax.set(title=title, xlabel="predicted", ylabel="true", xticks=range(n), yticks=range(n))
        ax.set_xticklabels(names, rotation=90, fontsize=8 if n <= 30 else 5)
        ax.set_yticklabels(names, fontsize=8 if n <= 30 else 5)
        if n <= 20:  # numbers in the cells while they are still readable
            for (i, j), value in np.ndenumerate(values):
                ax.text(j, i, form.format(value), ha="center", va="center", fontsize=8,
                        color="white" if value > values.max() / 2 else "black")
    return _img(figure, "confusion matrix: counts and share of each true class")


def plot_curves(roc: list[Curve], pr: list[Curve]) -> str:
    """ROC and precision-recall curves, one line per class (or label)."""
    figure = _figure(10, 4.2)
    roc_ax, pr_ax = figure.subplots(1, 2)
    for curve in roc:
        roc_ax.plot(curve.x, curve.y, label=f"{curve.name} (AUC {curve.area:.3f})")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    for curve in pr:
        pr_ax.plot(curve.x, curve.y, drawstyle="steps-post", label=f"{curve.name} (AP {curve.area:.3f})")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC", xlim=(0, 1), ylim=(0, 1.02))
    pr_ax.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.legend(fontsize="small")
    return _img(figure, "ROC and precision-recall curves")


def plot_reliability(points: dict[str, Any], task: str) -> str:
    """Observed rate against mean predicted probability per bin; the diagonal is perfect calibration."""
    figure = _figure(5.5, 4.5)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    ax.plot(points["predicted"], points["observed"], marker="o", label=f"this model (ECE {points['ece']:.3f})")
    single = task != "multi_label"
    ax.set(xlabel="confidence in the predicted class" if single else "predicted probability of a label",
           ylabel="share correct" if single else "share of rows with the label", title="reliability",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(fontsize="small")
    return _img(figure, "reliability diagram")


# ---------------------------------------------------------------------------------------------
# The page

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: 0.5em 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; }
th { background: #f4f4f4; text-align: left; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; } .note { background: #fff4d6; padding: 0.5em 1em; border-left: 4px solid #e0a800; }
.missing { color: #666; font-style: italic; } td.text { max-width: 600px; overflow-wrap: anywhere; }
"""
METRIC_ORDER = ("accuracy", "subset_accuracy", "f1_micro", "f1_macro", "precision_macro", "recall_macro",
                "precision_micro", "recall_micro", "auc", "loss", "rows")


def render_html(meta: dict[str, Any], analysis: TestAnalysis | None, test_note: str, title: str = "model") -> str:
    """The whole page; ``test_note`` says where the scored rows came from, or why there are none."""
    body = "".join([
        f"<h1>bertfit report: {escape(title)}</h1>",
        _summary(meta, analysis, test_note),
        _training(meta),
        _test(meta, analysis, test_note),
        _data(meta.get("data")),
        _model(meta),
        _settings(meta.get("settings")),
        _section("versions", "Machine and versions", _facts(list((meta.get("versions") or {}).items()))),
    ])
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>bertfit report: {escape(title)}'
            f"</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def _summary(meta: dict[str, Any], analysis: TestAnalysis | None, test_note: str) -> str:
    columns = []
    recorded = (meta.get("metrics") or {}).get("test")
    if recorded:
        columns.append(("recorded at training (test split)", recorded))
    if analysis is not None:
        columns.append((f"scored for this report ({analysis.rows} rows)", analysis.metrics))
    baseline = meta.get("baseline") or {}
    if baseline.get("test"):
        columns.append((f"baseline: {baseline.get('name', 'TF-IDF + logistic regression')} (test split)",
                        baseline["test"]))
    keys = [key for key in METRIC_ORDER if any(key in values for _, values in columns)]
    keys += sorted({key for _, values in columns for key, value in values.items()
                    if key not in keys and isinstance(value, (int, float)) and not isinstance(value, bool)})
    table = _table(["metric", *(name for name, _ in columns)],
                   [[key, *(values.get(key) for _, values in columns)] for key in keys]) if columns else _missing()
    if not baseline:
        note = "<p>Baseline: <span class='missing'>not recorded</span>.</p>"
    else:
        described = baseline.get("description", baseline.get("name", ""))
        note = f"<p>Baseline: {escape(str(described))}, on the same splits.</p>"
    return _section("summary", "Test metrics", table + note)


def _training(meta: dict[str, Any]) -> str:
    history = meta.get("history") or []
    multi = meta.get("task") == "multi_label"
    parts = [plot_training(history, meta.get("best_epoch"), "f1_micro" if multi else "accuracy",
                           "micro F1" if multi else "accuracy") if history else _missing("training history")]
    parts.append(_facts([("best epoch (restored)", meta.get("best_epoch")),
                         ("epochs run", len(history) if history else None),
                         ("training seconds", meta.get("train_seconds"))]))
    parts += [f'<p class="note">{escape(str(note))}</p>' for note in meta.get("notes") or []]
    return _section("training", "Training", "".join(parts))


def _test(meta: dict[str, Any], analysis: TestAnalysis | None, test_note: str) -> str:
    if analysis is None:
        return _section("test", "Test rows", f'<p id="test-missing" class="missing">{escape(test_note)}</p>')
    multi = analysis.task == "multi_label"
    parts = [f"<p>Scored for this report: {escape(test_note)}.</p>"]
    if not multi:
        parts.append(_part("confusion", "Confusion matrix", plot_confusion(analysis.confusion, analysis.labels)))
    thresholds = " at the thresholds in bertfit.json (0.5 where none)" if multi else ""
    parts.append(_part("per-class", f"Per {'label' if multi else 'class'}{thresholds}", _per_class(analysis)))
    which = ("the positive class, label id 1" if len(analysis.labels) == 2 and not multi
             else f"one-vs-rest, the {len(analysis.roc)} {'labels' if multi else 'classes'} with the most test rows")
    curves = (f"<p>{escape(which)}.</p>" + plot_curves(analysis.roc, analysis.pr) if analysis.roc
              else "<p class='missing'>No class has both positive and negative test rows; no curve to draw.</p>")
    parts.append(_part("curves", "ROC and precision-recall", curves))
    if "calibration" in meta and analysis.reliability:
        calibration = meta["calibration"]
        facts = _facts(list(calibration.items())) if isinstance(calibration, dict) else f"<p>{_fmt(calibration)}</p>"
        parts.append(_part("calibration", "Calibration", facts + plot_reliability(analysis.reliability, analysis.task)))
    parts.append(_part("mistakes", f"The {MAX_MISTAKES} most confident mistakes", _mistakes(analysis)))
    return _section("test", "Test rows", "".join(parts))


def _per_class(analysis: TestAnalysis) -> str:
    rows = []
    for name, scores in analysis.per_class.items():
        if isinstance(scores, dict):
            rows.append([name, scores["precision"], scores["recall"], scores["f1-score"], int(scores["support"])])
        else:  # classification_report's single "accuracy" entry
            rows.append([name, None, None, scores, analysis.rows])
    first = "label" if analysis.task == "multi_label" else "class"
    return _table([first, "precision", "recall", "F1", "support"], rows)


def _mistakes(analysis: TestAnalysis) -> str:
    if not analysis.mistakes:
        return "<p>No mistakes on these rows.</p>"
    multi = analysis.task == "multi_label"
    header = "<tr><th>text</th><th>true</th><th>predicted</th><th>probability</th></tr>"
    rows = []
    for m in analysis.mistakes:
        text = escape(m["text"]) + (f"<br><small>pair: {escape(m['text_pair'])}</small>" if "text_pair" in m else "")
        true, predicted = (", ".join(m[k]) if multi else m[k] for k in ("true", "predicted"))
        probability = f"{m['label']} {m['probability']:.3f} ({m['error']})" if multi else f"{m['probability']:.3f}"
        rows.append(f'<tr><td class="text">{text}</td><td>{escape(true) or "(none)"}</td>'
                    f'<td>{escape(predicted) or "(none)"}</td><td class="n">{escape(probability)}</td></tr>')
    return f"<table>{header}{''.join(rows)}</table>"


def _data(report: dict[str, Any] | None) -> str:
    if not report:
        return _section("data", "Data", _missing("data report"))
    dropped = {key: count for key, count in (report.get("dropped") or {}).items() if count}
    leaks = report.get("leaks_dropped", report.get("leaks"))
    facts = _facts([
        ("source", report.get("source")), ("text column", report.get("text_col")),
        ("label column", report.get("label_col")), ("rows read", report.get("rows_read")),
        ("dropped", dropped or ("nothing" if "dropped" in report else None)), ("split", report.get("split")),
        ("leaks dropped (--drop-leaks)" if "leaks_dropped" in report else "leaks", leaks),
        ("rows per split", report.get("rows")), ("texts cut at max length", report.get("truncated")),
    ])
    balance = report.get("class_balance") or {}
    splits = list(balance)
    classes = list(dict.fromkeys(name for counts in balance.values() for name in counts))
    totals = {split: sum(balance[split].values()) or 1 for split in splits}
    cells = [[name, *(f"{balance[s].get(name, 0)} ({balance[s].get(name, 0) / totals[s]:.0%})" for s in splits)]
             for name in classes]
    table = _table(["class", *splits], cells) if balance else _missing()
    return _section("data", "Data", facts + "<h3>Class balance per split</h3>" + table)


def _model(meta: dict[str, Any]) -> str:
    trainable, total = meta.get("trainable_parameters"), meta.get("total_parameters")
    share = f"{trainable:,} of {total:,} ({trainable / total:.1%})" if trainable and total else None
    labels = meta.get("labels") or []
    return _section("model", "Model", _facts([
        ("base model", meta.get("base_model")), ("task", meta.get("task")),
        ("labels", f"{len(labels)}: {', '.join(map(str, labels[:20]))}{', ...' if len(labels) > 20 else ''}"),
        ("trainable / total parameters", share), ("max length (tokens)", meta.get("max_length")),
        ("precision", meta.get("precision")), ("learning rate", meta.get("learning_rate")),
        ("thresholds", meta.get("thresholds")), ("created", meta.get("created")),
    ]))


def _settings(settings: dict[str, Any] | None) -> str:
    if not settings:
        return _section("settings", "Settings", _missing("settings"))
    groups = settings if all(isinstance(v, dict) for v in settings.values()) else {"": settings}
    body = "".join((f"<h3>{escape(name)}</h3>" if name else "") + _facts(list(values.items()))
                   for name, values in groups.items())
    return _section("settings", "Settings", body)


def _section(id_: str, title: str, body: str) -> str:
    return f'<section id="{id_}"><h2>{escape(title)}</h2>{body}</section>\n'


def _part(id_: str, title: str, body: str) -> str:
    return f'<div id="{id_}"><h3>{escape(title)}</h3>{body}</div>\n'


def _missing(what: str = "") -> str:
    return f'<p class="missing">{escape(what.capitalize() + ": " if what else "")}{NOT_RECORDED}.</p>'


def _facts(pairs: list[tuple[str, Any]]) -> str:
    """A two-column table; a value of None reads 'not recorded'."""
    if not pairs:
        return _missing()
    rows = "".join(f"<tr><th>{escape(str(key))}</th><td>{_fmt(value, NOT_RECORDED)}</td></tr>" for key, value in pairs)
    return f"<table>{rows}</table>"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(name))}</th>" for name in header)
    body = "".join("<tr>" + "".join(f'<td{" class=n" if isinstance(v, (int, float)) else ""}>{_fmt(v, "")}</td>'
                                    for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any, none: str = "n/a") -> str:
    """A value as escaped text: floats to 4 places (small ones in e-notation), containers as compact JSON."""
    if value is None:
        return escape(none)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"
    if isinstance(value, (dict, list, tuple)):
        return escape(json.dumps(value, default=str))
    return escape(str(value))
