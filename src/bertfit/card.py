"""The saved folder's ``README.md``: a Hugging Face model card written from ``bertfit.json``.

The YAML header is built by ``huggingface_hub``'s ``ModelCardData`` (``library_name``,
``pipeline_tag``, ``base_model`` where it is a hub name, tags, and a ``model-index`` holding the
test metrics); the prose below it says what the model classifies, what happened to the data, how it
scored beside the TF-IDF baseline, how it was trained, and the limits the run itself shows. Every
figure comes from the record: nothing here reads data, trains or scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bertfit.record import ModelRecord

CARD_FILE = "README.md"
EMBEDDED_HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"  # what the embedded default is on the hub
FEW_TEST_ROWS = 10  # a class with fewer test rows than this gets a per-class score that says little
METRIC_NAMES = {"accuracy": "Accuracy", "f1_micro": "F1 (micro)", "f1_macro": "F1 (macro)",
                "precision_macro": "Precision (macro)", "recall_macro": "Recall (macro)", "auc": "ROC AUC",
                "ece": "Expected calibration error", "subset_accuracy": "Subset accuracy"}


def model_card(record: ModelRecord, name: str) -> str:
    """The card's whole text: YAML header, then Markdown."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    test = (record.metrics or {}).get("test") or {}
    dataset, kind = _dataset(record)
    results = [EvalResult(task_type="text-classification", dataset_type=kind, dataset_name=dataset,
                          dataset_split="test", metric_type=key, metric_value=round(float(test[key]), 4),
                          metric_name=METRIC_NAMES[key])
               for key in ("accuracy", "f1_micro", "f1_macro", "auc") if test.get(key) is not None]
    data = ModelCardData(library_name="transformers", pipeline_tag="text-classification",
                         base_model=_hub_base(record), model_name=name, eval_results=results or None,
                         tags=["bertfit", "text-classification",
                               "multi-label" if record.multi_label else "single-label"])
    body = "\n\n".join(part for part in (
        _summary(record, name), _data(record), _scores(record), _training(record), _limits(record), _usage(name),
    ) if part)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n"))


def _hub_base(record: ModelRecord) -> str | None:
    """The base model as a hub name, or None (a local folder or a distilled student is not one)."""
    base = record.base_model or ""
    if base.startswith("embedded:"):
        return EMBEDDED_HUB_NAME
    if base.count("/") == 1 and not Path(base).exists() and " " not in base and not base.startswith((".", "/")):
        return base
    return None


def _dataset(record: ModelRecord) -> tuple[str, str]:
    """The data's name (its file or folder) and kind (the file's format, else "custom")."""
    source = record.data.source if record.data else None
    if not source:
        return "custom", "custom"
    path = Path(source)
    return path.name, path.suffix.lstrip(".").lower() or "custom"


def _summary(record: ModelRecord, name: str) -> str:
    kind = "several labels per text" if record.multi_label else "one label per text"
    pair = f" (sentence pairs: {record.text_col} and {record.text_pair_col})" if record.text_pair_col else ""
    base = record.base_model or "an unrecorded base model"
    if base.startswith("embedded:"):
        base = f"{EMBEDDED_HUB_NAME} (bertfit's embedded default)"
    labels = ", ".join(f"`{label}`" for label in record.labels[:30])
    more = f" and {len(record.labels) - 30} more" if len(record.labels) > 30 else ""
    return (f"# {name}\n\nA text classifier ({kind}{pair}) trained by bertfit from {base}. "
            f"{len(record.labels)} labels: {labels}{more}.")


def _data(record: ModelRecord) -> str:
    report = record.data
    if report is None:
        return ""
    lines = ["## Data", ""]
    if report.source:
        lines.append(f"- source: `{report.source}` (text column `{report.text_col}`, label column "
                     f"`{report.label_col}`)")
    if report.rows_read:
        lines.append(f"- rows read: {_counts(report.rows_read)}")
    dropped = {k: v for k, v in (report.dropped or {}).items() if v}
    lines.append(f"- dropped: {_counts(dropped) if dropped else 'none'}")
    if report.leaks_dropped and any(report.leaks_dropped.values()):
        lines.append(f"- dropped as seen in an earlier split: {_counts(report.leaks_dropped)}")
    if report.split:
        lines.append(f"- {report.split}; rows {_counts(report.rows)}")
    train = (report.class_balance or {}).get("train")
    if train:
        lines.append(f"- training rows per label: {_counts(train)}")
    return "\n".join(lines)


def _scores(record: ModelRecord) -> str:
    test = (record.metrics or {}).get("test")
    if not test:
        return ""
    baseline = ((record.baseline or {}).get("test")) or {}
    keys = [key for key in METRIC_NAMES if key in test and key != "ece"]
    rows = [f"| {METRIC_NAMES[key]} | {_number(test[key])} | {_number(baseline.get(key))} |" for key in keys]
    text = ["## Test metrics", "", "Scored once on the held-out test split, after every choice was made on "
            "validation.", "", "| metric | this model | TF-IDF + logistic regression |", "| --- | --- | --- |",
            *rows]
    calibration = record.calibration
    if calibration is not None:
        if calibration.fallback:
            text += ["", f"Calibration: {calibration.fallback}."]
        else:
            text += ["", f"Calibration: temperature {calibration.temperature:.3f} fitted on validation; expected "
                     f"calibration error on test {_number(calibration.test_ece_before)} before, "
                     f"{_number(calibration.test_ece_after)} after."]
    if record.blend:
        said = record.blend.get("validation") or {}
        metric = METRIC_NAMES.get(str(record.blend.get("metric")), "score").lower()
        text += ["", f"Probabilities average this model's (weight {_number(record.blend.get('weight'), 2)}) with the "
                 f"TF-IDF baseline's, saved beside it (`baseline.json`, `baseline.safetensors`): on validation "
                 f"{metric} the blend scored {_number(said.get('blend'))} against {_number(said.get('model'))} for "
                 f"the model alone and {_number(said.get('baseline'))} for the baseline alone."]
    if record.thresholds:
        text += ["", "Per-label decision thresholds were tuned on validation (in `bertfit.json`)."]
    return "\n".join(text)


def _training(record: ModelRecord) -> str:
    train = (record.settings or {}).get("train") or {}
    method = (record.method or {}).get("name", "finetune")
    why = (record.method or {}).get("why")
    lines = ["## Training", "", f"- method: {method}" + (f" ({why})" if why else "")]
    if record.distilled:
        lines.append(f"- distilled from `{record.distilled.get('teacher')}` ({record.distilled.get('student')})")
    if record.study:
        lines.append(f"- settings chosen by `bertfit tune`: {record.study.get('trials_complete', '?')} trials")
    lines += [f"- layers trained: {train.get('train_layers', '?')}; learning rate {_number(record.learning_rate)}; "
              f"batch {train.get('batch_size', '?')}; {record.epochs_planned} epochs planned"
              + (f", {record.epochs_added} more while validation still improved" if record.epochs_added else "")
              + f", epoch {record.best_epoch} kept",
              f"- texts cut at {record.max_length} tokens ({record.long_text.mode})",
              f"- training time: {_number(record.train_seconds, 1)} s; seed {train.get('seed', '?')}",
              "- every setting: `bertfit.json` (`settings`); the curves and mistakes: `report.html`"]
    return "\n".join(lines)


def _limits(record: ModelRecord) -> str:
    """What this run itself shows about where the model is weak."""
    found = []
    test_balance = ((record.data.class_balance if record.data else None) or {}).get("test") or {}
    small = sorted(label for label, count in test_balance.items() if count < FEW_TEST_ROWS)
    if small:
        found.append(f"labels with fewer than {FEW_TEST_ROWS} test rows, whose scores say little: "
                     f"{', '.join(small[:10])}{' ...' if len(small) > 10 else ''}")
    too_long = (record.data.too_long if record.data else None) or {}
    if any(too_long.values()):
        found.append(f"texts longer than {record.max_length} tokens ({_counts(too_long)}) were "
                     f"{'cut' if record.long_text.mode == 'truncate' else 'read as ' + record.long_text.mode}: "
                     "what lies past the cut is not read")
    test = (record.metrics or {}).get("test") or {}
    baseline = ((record.baseline or {}).get("test")) or {}
    key = "f1_micro" if record.multi_label else "accuracy"
    if key in test and key in baseline and baseline[key] >= test[key]:
        found.append(f"the TF-IDF baseline scored {baseline[key]:.4f} against this model's {test[key]:.4f}: on "
                     "these data a linear model on word counts is as good or better")
    if (record.method or {}).get("name") == "contrastive":
        found.append("trained on few rows per label (contrastive method): expect the test score to move by "
                     "several points with another sample of the same size")
    found += [str(note) for note in record.notes]
    lines = ["## Intended use and limits", "",
             "Intended for texts like the training data (same source, language and labels); it has not "
             "been tested on others."]
    return "\n".join(lines + ([""] + [f"- {item}" for item in found] if found else []))


def _usage(name: str) -> str:
    return ("## Use\n\n```\nbertfit predict " + name + " \"a text to classify\"\n```\n\n"
            "```python\nfrom transformers import pipeline\n\nclassify = pipeline(\"text-classification\", model=\""
            + name + "\")\n```\n\n`bertfit predict` applies the calibration and thresholds in `bertfit.json`; "
            "`pipeline` reads the same weights without them (scores before calibration; for multi-label, no tuned "
            "thresholds), and the transformer alone where bertfit blends in the TF-IDF baseline.")


def _counts(counts: dict[str, Any]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())


def _number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 else f"{value:.{digits}f}"
    return str(value)
