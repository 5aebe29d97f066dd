"""A self-contained HTML report of a trained model folder: ``bertfit report MODEL_DIR``.

One HTML file that opens from disk: training curves from the saved history, the test rows scored
(confusion matrix, per-class table, ROC and precision-recall curves, reliability plot, the most
confident mistakes), and the run's facts (data report, model, settings, versions, the TF-IDF
baseline). No network, no JavaScript. The numbers come from ``analysis``, the pictures from
``plots``; this module finds the rows, scores them (or takes the probabilities training already
computed), and writes the page atomically. It does not train or change a model.
"""

from __future__ import annotations

import json
import logging
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.errors import DataError, ModelLoadError, OutputError, UsageError
from bertfit.folder import SPLIT_FILES, SplitRows, check_model_folder, read_meta, read_split
from bertfit.labels import LabelSet, label_names
from bertfit.model import TextClassifier
from bertfit.record import DataReport, ModelRecord
from bertfit.reporting.analysis import MAX_MISTAKES, TestAnalysis, analyse
from bertfit.reporting.audit_section import AUDIT_SUMMARY, audit_section
from bertfit.reporting.html import CSS, facts, missing, part, section, table
from bertfit.reporting.plots import plot_confusion, plot_curves, plot_reliability, plot_training
from bertfit.reporting.tune_section import study_section
from bertfit.staging import check_file, refuse_inputs, shown, staged_file

log = logging.getLogger(__name__)


def read_labelled(data: str | Path, record: ModelRecord, *, text_col: str | None = None, label_col: str | None = None,
                  text_pair_col: str | None = None, label_sep: str | None = None) -> SplitRows:
    """A labelled file read for a saved model (``evaluate``, ``report --data``, ``export --data``): the columns
    given, else the model's own where the file has them, else the obvious ones; a sentence-pair model's second
    text, a multi-label model's label lists. A guessed label column with none of the model's labels is refused."""
    from bertfit.data.reading import load_labelled

    pair_col = text_pair_col or record.text_pair_col
    rows = load_labelled(data, text_col, label_col, preferred=(record.text_col, record.label_col),
                         pair_col=text_pair_col, saved_pair_col=record.text_pair_col,
                         label_sep=label_sep or record.label_sep, multi_label=record.multi_label)
    unknown, column = LabelSet(tuple(record.labels)).unknown(rows["label"]), rows.attrs.get("label_col")
    if unknown and len(unknown) == len(label_names(rows["label"])) and record.label_col not in (None, column):
        raise DataError(f"none of the labels in column {column!r} of {data} is one this model knows (e.g. "
                        f"{unknown[:3]}; known: {list(record.labels)[:10]}); pass --label-col with the column of "
                        "class names")
    pairs = rows["text_pair"].tolist() if pair_col else None
    return SplitRows(rows["text"].tolist(), rows["label"].tolist(), pairs, str(data))


def refuse_columns_without_data(data: str | Path | None, columns: dict[str, str | None], instead: str) -> None:
    """Column flags say how to read --data; without it they would be ignored. ``instead``: what is read then."""
    given = [f"--{name.replace('_', '-')}" for name, value in columns.items() if value is not None]
    if data is None and given:
        raise UsageError(f"{' and '.join(given)} {'says' if len(given) == 1 else 'say'} how to read the --data file; "
                         f"pass --data FILE too, or leave {'it' if len(given) == 1 else 'them'} out ({instead} is "
                         "read by the model's own columns)")


def load_test_rows(folder: Path, record: ModelRecord, data: str | Path | None = None,
                   **columns: str | None) -> tuple[SplitRows | None, str]:
    """The rows to score (``--data``, read by ``columns``: text_col, label_col, text_pair_col, label_sep; else
    the folder's test split) or None with the reason why not."""
    if data is not None:
        return read_labelled(data, record, **columns), ""
    try:
        rows = read_split(folder, "test")
    except ModelLoadError as err:
        raise DataError(str(err)) from None
    test_file = SPLIT_FILES["test"]
    if rows is None:
        return None, (f"This folder has no {test_file} (folders from bertfit before the report, and plain Hugging "
                      "Face folders, do not keep their test rows), so the test sections are left out; run "
                      f"bertfit report {folder} --data FILE to score a labelled file.")
    if not rows.texts:
        return None, f"The folder's {test_file} is empty, so the test sections are left out."
    return rows, ""


def write_report(model_dir: str | Path, out: str | Path | None = None, data: str | Path | None = None,
                 progress: bool = False, test_proba: np.ndarray | None = None, overwrite: bool = False,
                 **columns: str | None) -> Path:
    """Score the folder's test rows (or ``data``, its ``columns`` as ``read_labelled`` takes them) and write
    the HTML report (atomically); returns its path.

    ``test_proba``: the probabilities of the folder's own test rows, in their order, when the caller
    has them already (training has just scored them); they are then not scored a second time.
    ``out`` None: the folder's own report.html, replaced if there; another existing file is replaced
    only with ``overwrite``.
    """
    folder = Path(model_dir)
    check_model_folder(folder)
    own = folder / "report.html"  # the folder's own report: the one output allowed inside it
    target = Path(out) if out is not None else own
    model_files = {f"the model's {path.name}": path for path in folder.iterdir() if path.name != own.name}
    refuse_inputs(target, "--out", {"the model folder": folder, "the --data file": data, **model_files},
                  sealed=("the model folder",), allowed=(own,))
    refuse_columns_without_data(data, columns, f"the folder's {SPLIT_FILES['test']}")
    if target.is_dir():
        raise OutputError(f"--out {shown(target)} is a folder; pass a file path such as {shown(target / own.name)}")
    if target.suffix.lower() not in (".html", ".htm"):  # a .pdf would open as a broken PDF
        raise UsageError(f"--out {shown(target)}: the report is an HTML page; name it .html (print it to PDF from a "
                         "browser)")
    check_file(target, overwrite or out is None, "--out", instead=f"write {shown(own)}")
    record, classifier = read_meta(folder), None
    if record is None:  # a plain Hugging Face folder: loading it refuses a base model, whose labels would be made up
        classifier = TextClassifier.from_pretrained(folder)
        record = classifier.record
    rows, reason = load_test_rows(folder, record, data, **columns)
    analysis = None
    if rows is not None:
        if test_proba is not None and data is None and len(test_proba) == len(rows.texts):
            proba = test_proba
        else:
            classifier = classifier or TextClassifier.from_pretrained(folder)
            pairs = {"pairs": rows.pairs} if rows.pairs is not None else {}  # sentence-pair models only
            proba = classifier.predict_proba(rows.texts, progress=progress, **pairs)
        analysis = analyse(record, rows.texts, rows.labels, proba, rows.pairs)
        reason = f"{analysis.rows} rows from {rows.source}"
    page = render_html(record, analysis, reason, title=folder.resolve().name, audit=_audit_summary(folder))
    with staged_file(target, "--out") as handle:
        handle.write(page)
    log.info("report written to %s", target)
    return target


def _audit_summary(folder: Path) -> dict[str, Any] | None:
    """The folder's label audit (``train --audit``), or None; an unreadable one is left out with a warning."""
    path = folder / AUDIT_SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        log.warning("%s left out of the report: %s", path, str(err).splitlines()[0])
        return None


# ---------------------------------------------------------------------------------------------
# The page

METRIC_ORDER = ("accuracy", "subset_accuracy", "f1_micro", "f1_macro", "precision_macro", "recall_macro",
                "precision_micro", "recall_micro", "auc", "loss", "rows")


def render_html(record: ModelRecord, analysis: TestAnalysis | None, test_note: str, title: str = "model",
                audit: dict[str, Any] | None = None) -> str:
    """The whole page; ``test_note`` says where the scored rows came from, or why there are none.

    ``audit``: the label audit's summary, when the model was trained with ``--audit``.
    """
    body = "".join([
        f"<h1>bertfit report: {escape(title)}</h1>",
        _summary(record, analysis, test_note),
        _training(record),
        _test(record, analysis, test_note),
        _data(record.data),
        audit_section(audit) if audit is not None else "",
        study_section(record.study) if record.study else "",
        _model(record),
        _settings(record.settings),
        section("versions", "Machine and versions", facts(list(record.versions.items()))),
    ])
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>bertfit report: {escape(title)}'
            f"</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def _summary(record: ModelRecord, analysis: TestAnalysis | None, test_note: str) -> str:
    columns = []
    recorded = record.metrics.get("test")
    if recorded:
        columns.append(("recorded at training (test split)", recorded))
    if analysis is not None:
        columns.append((f"scored for this report ({analysis.rows} rows)", analysis.metrics))
    baseline = record.baseline or {}
    if baseline.get("test"):
        columns.append((f"baseline: {baseline.get('name', 'TF-IDF + logistic regression')} (test split)",
                        baseline["test"]))
    keys = [key for key in METRIC_ORDER if any(key in values for _, values in columns)]
    keys += sorted({key for _, values in columns for key, value in values.items()
                    if key not in keys and isinstance(value, (int, float)) and not isinstance(value, bool)})
    metrics = table(["metric", *(name for name, _ in columns)],
                    [[key, *(values.get(key) for _, values in columns)] for key in keys]) if columns else missing()
    if not baseline:
        note = "<p>Baseline: <span class='missing'>not recorded</span>.</p>"
    else:
        described = baseline.get("description", baseline.get("name", ""))
        note = f"<p>Baseline: {escape(str(described))}, on the same splits.</p>"
    return section("summary", "Test metrics", metrics + note)


def _training(record: ModelRecord) -> str:
    history = record.history
    multi = record.multi_label
    parts = [plot_training(history, record.best_epoch, "f1_micro" if multi else "accuracy",
                           "micro F1" if multi else "accuracy") if history else missing("training history")]
    method = record.method or {}
    chosen = [("method", f"{method['name']} ({method.get('why', '')})")] if method else []
    if "pairs_per_epoch" in method:
        chosen.append(("contrastive pairs per epoch", method["pairs_per_epoch"]))
    parts.append(facts([*chosen, ("best epoch (restored)", record.best_epoch),
                         ("epochs run", epochs_run(record, len(history))),
                         ("training seconds", record.train_seconds)]))
    parts += [f'<p class="note">{escape(str(note))}</p>' for note in record.notes]
    return section("training", "Training", "".join(parts))


def epochs_run(record: Any, run: int) -> str | int | None:
    """``6 of 6 planned``, ``8: 6 planned, 2 more while validation still improved``, or the count alone."""
    if not run or not record.epochs_planned:
        return run or None
    if record.epochs_added:
        return f"{run}: {record.epochs_planned} planned, {record.epochs_added} more while validation still improved"
    return f"{run} of {record.epochs_planned} planned"


def _test(record: ModelRecord, analysis: TestAnalysis | None, test_note: str) -> str:
    if analysis is None:
        return section("test", "Test rows", f'<p id="test-missing" class="missing">{escape(test_note)}</p>')
    multi = analysis.task == "multi_label"
    parts = [f"<p>Scored for this report: {escape(test_note)}.</p>"]
    if not multi:
        parts.append(part("confusion", "Confusion matrix", plot_confusion(analysis.confusion, analysis.labels)))
    thresholds = " at the thresholds in bertfit.json (0.5 where none)" if multi else ""
    parts.append(part("per-class", f"Per {'label' if multi else 'class'}{thresholds}", _per_class(analysis)))
    which = ("the positive class, label id 1" if len(analysis.labels) == 2 and not multi
             else f"one-vs-rest, the {len(analysis.roc)} {'labels' if multi else 'classes'} with the most test rows")
    curves = (f"<p>{escape(which)}.</p>" + plot_curves(analysis.roc, analysis.pr) if analysis.roc
              else "<p class='missing'>No class has both positive and negative test rows; no curve to draw.</p>")
    parts.append(part("curves", "ROC and precision-recall", curves))
    if record.calibration is not None and analysis.reliability:
        settled = facts(list(record.calibration.to_dict().items()))
        reliability = plot_reliability(analysis.reliability, analysis.task)
        parts.append(part("calibration", "Calibration", settled + reliability))
    parts.append(part("mistakes", f"The {MAX_MISTAKES} most confident mistakes", _mistakes(analysis)))
    return section("test", "Test rows", "".join(parts))


def _per_class(analysis: TestAnalysis) -> str:
    rows = []
    for name, scores in analysis.per_class.items():
        if isinstance(scores, dict):
            rows.append([name, scores["precision"], scores["recall"], scores["f1-score"], int(scores["support"])])
        else:  # classification_report's single "accuracy" entry
            rows.append([name, None, None, scores, analysis.rows])
    first = "label" if analysis.task == "multi_label" else "class"
    return table([first, "precision", "recall", "F1", "support"], rows)


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


def _data(report: DataReport | None) -> str:
    if report is None:
        return section("data", "Data", missing("data report"))
    dropped = {key: count for key, count in report.dropped.items() if count}
    dropping = report.leaks_dropped is not None
    read = facts([
        ("source", report.source), ("text column", report.text_col),
        ("label column", report.label_col), ("rows read", report.rows_read or None),
        ("dropped", dropped or ("nothing" if report.rows_read else None)), ("split", report.split),
        ("leaks dropped (--drop-leaks)" if dropping else "leaks", report.leaks_dropped if dropping else report.leaks),
        ("rows per split", report.rows or None), ("texts over max length", report.too_long),
    ])
    balance = report.class_balance
    splits = list(balance)
    classes = list(dict.fromkeys(name for counts in balance.values() for name in counts))
    totals = {split: sum(balance[split].values()) or 1 for split in splits}
    cells = [[name, *(f"{balance[s].get(name, 0)} ({balance[s].get(name, 0) / totals[s]:.0%})" for s in splits)]
             for name in classes]
    balance_table = table(["class", *splits], cells) if balance else missing()
    return section("data", "Data", read + "<h3>Class balance per split</h3>" + balance_table)


def _model(record: ModelRecord) -> str:
    trainable, total = record.trainable_parameters, record.total_parameters
    share = f"{trainable:,} of {total:,} ({trainable / total:.1%})" if trainable and total else None
    labels = record.labels
    long_text = record.long_text
    return section("model", "Model", facts([
        ("base model", record.base_model), ("task", record.task.value),
        ("labels", f"{len(labels)}: {', '.join(map(str, labels[:20]))}{', ...' if len(labels) > 20 else ''}"),
        ("trainable / total parameters", share), ("max length (tokens)", record.max_length),
        ("texts over max length", long_text.mode + (f" (stride {long_text.stride}, {long_text.pool} of windows)"
                                                    if long_text.mode == "window" else "")),
        ("precision", record.precision), ("learning rate", record.learning_rate),
        *([("thresholds", record.thresholds)] if record.multi_label else []), ("created", record.created),
    ]))


def _settings(settings: dict[str, Any]) -> str:
    if not settings:
        return section("settings", "Settings", missing("settings"))
    groups = settings if all(isinstance(v, dict) for v in settings.values()) else {"": settings}
    body = "".join((f"<h3>{escape(name)}</h3>" if name else "") + facts(list(values.items()), none="auto")
                   for name, values in groups.items())
    return section("settings", "Settings", body)
