"""The HTML report: the analysis on synthetic probabilities (binary, multi-class, multi-label), the page,
``write_report`` and ``bertfit report`` on real tiny models, and the pages checked in headless Chromium."""

from __future__ import annotations

import inspect
import json
import logging
import re
import shlex
import shutil
import struct
from collections import Counter
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertfit.cli import build_parser, main
from bertfit.data.cleaning import prepare
from bertfit.data.reading import load_labelled
from bertfit.errors import DataError, ModelLoadError, OutputError
from bertfit.model import TextClassifier
from bertfit.record import ModelRecord
from bertfit.reporting import report
from bertfit.reporting.analysis import analyse
from bertfit.reporting.report import render_html, write_report
from bertfit.training.run import train
from conftest import load_screenshot_script, multi_label_case

ROOT = Path(__file__).resolve().parents[1]
EVIL = "crash error bug freeze <script>alert(1)</script> & reboot"  # labelled as the model does not predict it
SECTIONS = ("summary", "training", "test", "data", "model", "settings", "versions")


screenshots = load_screenshot_script()


def table_rows(page: str, element_id: str, after: str = "") -> list[list[str]]:
    """The cells of the first table inside the element with this id (and after the text ``after``), as text."""
    start = page.index(after, page.index(f'id="{element_id}"'))
    table = page[page.index("<table>", start):page.index("</table>", start)]
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The page, from meta and an analysis


def test_page_of_a_bare_folder_says_not_recorded_everywhere():
    page = render_html(ModelRecord(labels=["a", "b"]), None, "This folder has no test.jsonl.", title="plain")
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert '<p id="test-missing" class="missing">This folder has no test.jsonl.</p>' in page
    assert "<img" not in page and 'id="confusion"' not in page
    for what in ("Training history", "Data report", "Settings"):
        assert f"{what}: not recorded." in page
    assert "Baseline: <span class='missing'>not recorded</span>" in page


def test_multi_label_page_has_per_label_table_curves_mistakes_and_no_confusion_matrix():
    names, truth, proba, labels = multi_label_case()
    texts = [f"<b>row {i}</b>" for i in range(len(labels))]
    meta = {"task": "multi_label", "labels": names, "thresholds": [0.5] * 5, "calibration": {"temperature": 1.2},
            "history": [{"epoch": 1, "train_loss": 0.6, "validation": {"loss": 0.5, "f1_micro": 0.7}}],
            "best_epoch": 1, "baseline": {"name": "tfidf", "test": {"f1_micro": 0.61}}}
    analysis = analyse(ModelRecord.from_dict(meta), texts, labels, proba)
    page = render_html(ModelRecord.from_dict(meta), analysis, "120 rows from test.jsonl")
    assert 'id="confusion"' not in page
    rows = table_rows(page, "per-class")
    assert rows[0] == ["label", "precision", "recall", "F1", "support"]
    assert {r[0]: r[4] for r in rows[1:6]} == {n: str(int(s)) for n, s in zip(names, truth.sum(axis=0), strict=True)}
    assert [r[0] for r in rows[6:]] == ["micro avg", "macro avg", "weighted avg", "samples avg"]
    mistakes = table_rows(page, "mistakes")
    assert len(mistakes) == 21 and "&lt;b&gt;row" in mistakes[1][0] and "<b>row" not in page
    assert all(re.search(r"\((false positive|missed)\)$", r[3]) for r in mistakes[1:])
    assert page.count("<img") == 3  # training curves, ROC + PR (one image), reliability
    summary = table_rows(page, "summary")
    assert summary[0] == ["metric", "scored for this report (120 rows)", "baseline: tfidf (test split)"]
    assert ["f1_micro", f"{analysis.metrics['f1_micro']:.4f}", "0.6100"] in summary
    assert dict(table_rows(page, "calibration")) == {"temperature": "1.2000", "method": "temperature"}
    del meta["calibration"]
    assert 'id="calibration"' not in render_html(ModelRecord.from_dict(meta), analysis, "x")


# ---------------------------------------------------------------------------------------------
# write_report and `bertfit report` on real tiny models


def model_with_test_rows(source: Path, folder: Path, data_csv: Path, **meta_extra) -> Path:
    """A copy of a trained folder holding our own test.jsonl (the test split, plus one hostile text that is
    a mistake), and bertfit.json without calibration and baseline unless given: the same page whether or
    not `bertfit train` writes those."""
    shutil.copytree(source, folder)
    test = prepare(data_csv).test
    records = [{"text": t, "label": lab} for t, lab in zip(test["text"], test["label"], strict=True)]
    classifier = TextClassifier.from_pretrained(folder)
    wrong = next(name for name in classifier.labels.names if name != classifier.predict([EVIL])[0])
    write_jsonl(folder / "test.jsonl", [*records, {"text": EVIL, "label": wrong}])
    meta = {key: value for key, value in classifier.meta.items() if key not in ("calibration", "baseline")}
    (folder / "bertfit.json").write_text(json.dumps({**meta, **meta_extra}))
    return folder


@pytest.fixture(scope="module")
def binary_trained(tmp_path_factory, tiny_model_dir, rows) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("binary")
    data = folder / "two.csv"
    rows[rows["label"].isin(["billing", "tech"])].to_csv(data, index=False)
    train(data, folder / "model", model=str(tiny_model_dir), epochs=3, learning_rate=1e-2, patience=0,
          batch_size=8, progress=False)
    return folder / "model", data


@pytest.fixture(scope="module")
def multi_class_report(tmp_path_factory, trained_dir, data_csv) -> tuple[Path, str]:
    folder = model_with_test_rows(trained_dir, tmp_path_factory.mktemp("multi") / "model", data_csv)
    path = write_report(folder)
    return path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def binary_report(tmp_path_factory, binary_trained) -> tuple[Path, str]:
    model, data = binary_trained
    baseline = {"name": "TF-IDF + logistic regression", "test": {"accuracy": 0.5, "f1_macro": 0.25}}
    folder = model_with_test_rows(model, tmp_path_factory.mktemp("bin") / "model", data, baseline=baseline,
                                  calibration={"method": "none"})
    path = write_report(folder, folder.parent / "binary.html")
    return path, path.read_text(encoding="utf-8")


def test_multi_class_report_from_test_jsonl(multi_class_report):
    path, page = multi_class_report
    folder = path.parent
    assert path == folder / "report.html"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # no staging file left
    records = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    texts, truth = [r["text"] for r in records], [r["label"] for r in records]
    predicted = TextClassifier.from_pretrained(folder).predict(texts)
    meta = json.loads((folder / "bertfit.json").read_text())

    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert 'id="test-missing"' not in page
    support = {r[0]: r[4] for r in table_rows(page, "per-class")[1:4]}
    assert support == {name: str(count) for name, count in Counter(truth).items()}
    mistakes = table_rows(page, "mistakes")[1:]
    wrong = sum(p != t for p, t in zip(predicted, truth, strict=True))
    assert len(mistakes) == min(20, wrong) >= 1
    assert "<script>alert" not in page
    escaped = "crash error bug freeze &lt;script&gt;alert(1)&lt;/script&gt; &amp; reboot"
    assert [r[1] for r in mistakes if r[0] == escaped] == [records[-1]["label"]]
    summary = table_rows(page, "summary")
    assert summary[0][1:] == ["recorded at training (test split)", f"scored for this report ({len(records)} rows)"]
    assert f"Scored for this report: {len(records)} rows from {folder / 'test.jsonl'}." in page
    accuracy = next(r for r in summary if r[0] == "accuracy")
    assert accuracy[1] == f"{meta['metrics']['test']['accuracy']:.4f}"
    assert accuracy[2] == f"{np.mean([p == t for p, t in zip(predicted, truth, strict=True)]):.4f}"
    assert "one-vs-rest, the 3 classes with the most test rows" in page
    assert 'id="calibration"' not in page  # no calibration key in this meta
    assert "Baseline: <span class='missing'>not recorded</span>" in page
    facts = dict(r for r in table_rows(page, "training") if len(r) == 2)
    assert facts["best epoch (restored)"] == str(meta["best_epoch"])
    assert facts["epochs run"] == f"{len(meta['history'])} of {meta['epochs_planned']} planned"
    assert dict(table_rows(page, "model"))["base model"] == meta["base_model"]
    assert dict(table_rows(page, "versions"))["torch"] == meta["versions"]["torch"]
    assert dict(table_rows(page, "data"))["source"] == meta["data"]["source"]
    balance = table_rows(page, "data", after="Class balance per split")
    assert balance[0] == ["class", "train", "validation", "test"]
    test_counts = meta["data"]["class_balance"]["test"]
    assert {r[0]: int(r[3].split()[0]) for r in balance[1:]} == test_counts


def test_binary_report_with_baseline_and_calibration(binary_report):
    path, page = binary_report
    assert path.name == "binary.html"
    assert "the positive class, label id 1" in page
    assert table_rows(page, "summary")[0][-1] == "baseline: TF-IDF + logistic regression (test split)"
    assert 'id="calibration"' in page and dict(table_rows(page, "calibration"))["method"] == "none"
    assert [r[0] for r in table_rows(page, "per-class")[1:3]] == ["billing", "tech"]
    assert page.count("<img") == 4  # training, confusion, ROC + PR, reliability


def test_training_reports_the_test_split_as_it_scored_it(tiny_model_dir, data_csv, tmp_path, monkeypatch):
    class NoReload:
        @staticmethod
        def from_pretrained(*args, **kwargs):
            pytest.fail("the report loaded the model to score the test split a second time")

    monkeypatch.setattr(report, "TextClassifier", NoReload)
    result = train(data_csv, tmp_path / "m", model=str(tiny_model_dir), epochs=1, learning_rate=1e-2, batch_size=8,
                   baseline=False, progress=False)
    page = (tmp_path / "m" / "report.html").read_text(encoding="utf-8")
    rows = result.test["rows"]
    assert f"{rows} rows from" in page
    summary = table_rows(page, "summary")
    accuracy = next(row for row in summary if row[0] == "accuracy")
    assert accuracy[1] == accuracy[2] == f"{result.test['accuracy']:.4f}"  # recorded at training == in the report


def test_report_without_test_rows_says_why(trained_dir, tmp_path):
    folder = shutil.copytree(trained_dir, tmp_path / "model")
    (folder / "test.jsonl").unlink(missing_ok=True)  # as in folders from before the report
    page = write_report(folder).read_text()
    assert "has no test.jsonl" in page and "--data FILE" in page
    assert 'id="confusion"' not in page and 'id="mistakes"' not in page
    assert page.count("<img") == 1  # the training curves still


def test_report_of_a_plain_hugging_face_folder(tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path / "hf"  # a classifier saved by transformers alone: labels in config.json, no bertfit.json
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2,
                                                               id2label={0: "ham", 1: "spam"})
    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(str(tiny_model_dir)).save_pretrained(str(folder))
    page = write_report(folder, tmp_path / "r.html").read_text()
    assert "Training history: not recorded." in page and "2: ham, spam" in page


def test_report_of_a_base_model_is_refused_as_predict_refuses_it(tiny_model_dir, tmp_path):
    with pytest.raises(ModelLoadError, match="is a base model with no classification head"):
        write_report(tiny_model_dir, tmp_path / "r.html")
    assert list(tmp_path.iterdir()) == []  # no page of made-up LABEL_0, LABEL_1


def test_report_inside_the_model_folder_is_its_own_report_html_or_nothing(trained_dir, tmp_path):
    folder = shutil.copytree(trained_dir, tmp_path / "model")
    before = sorted(p.name for p in folder.iterdir())
    for out in (folder / "other.html", folder / "sub" / "r.html", folder / "bertfit.json"):
        with pytest.raises(OutputError, match="inside the model folder|is the model's bertfit.json"):
            write_report(folder, out, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert write_report(folder, folder / "report.html", overwrite=True) == folder / "report.html"


class FakeClassifier:
    """Stands in for a model kind whose code is not there yet (multi-label, sentence pairs)."""

    calls: list[dict] = []

    def __init__(self, meta, proba):
        self.meta, self.proba = meta, proba

    @classmethod
    def from_pretrained(cls, folder):
        meta = json.loads((Path(folder) / "bertfit.json").read_text())
        return cls(meta, np.load(Path(folder) / "proba.npy"))

    def predict_proba(self, texts, batch_size=64, progress=False, **kwargs):
        FakeClassifier.calls.append({"texts": list(texts), **kwargs})
        return self.proba[[int(text.split()[1]) for text in texts]]  # texts are "row {i}"


@pytest.fixture
def fake_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "TextClassifier", FakeClassifier)
    FakeClassifier.calls.clear()
    names, truth, proba, labels = multi_label_case()
    folder = tmp_path / "fake"
    folder.mkdir()
    (folder / "bertfit.json").write_text(json.dumps({"format_version": 1, "task": "multi_label", "labels": names,
                                                     "thresholds": [0.5] * 5}))
    np.save(folder / "proba.npy", proba)
    return folder, labels


def test_multi_label_report_from_test_jsonl_with_label_lists(fake_folder):
    folder, labels = fake_folder
    write_jsonl(folder / "test.jsonl", [{"text": f"row {i}", "label": row} for i, row in enumerate(labels)])
    page = write_report(folder).read_text()
    assert FakeClassifier.calls == [{"texts": [f"row {i}" for i in range(len(labels))]}]  # no pairs= passed
    assert 'id="confusion"' not in page and 'id="per-class"' in page
    assert "one-vs-rest, the 4 labels with the most test rows" in page
    assert table_rows(page, "summary")[1][0] == "subset_accuracy"


def test_sentence_pairs_are_passed_as_pairs_and_shown(fake_folder):
    folder, labels = fake_folder
    write_jsonl(folder / "test.jsonl", [{"text": f"row {i}", "text_pair": f"second {i}", "label": row}
                                        for i, row in enumerate(labels)])
    page = write_report(folder).read_text()
    assert FakeClassifier.calls[0]["pairs"] == [f"second {i}" for i in range(len(labels))]
    assert "<br><small>pair: second " in page


@pytest.mark.skipif("pair_col" not in inspect.signature(load_labelled).parameters,
                    reason="bertfit.data.reading.load_labelled reads no sentence pairs or label lists yet")
def test_data_file_for_a_multi_label_sentence_pair_model(fake_folder, tmp_path):
    folder, labels = fake_folder
    meta = json.loads((folder / "bertfit.json").read_text())
    (folder / "bertfit.json").write_text(json.dumps({**meta, "text_pair_col": "second", "label_sep": ";"}))
    rows = [{"text": f"row {i}", "second": f"pair {i}", "label": ";".join(row)} for i, row in enumerate(labels) if row]
    pd.DataFrame(rows).to_csv(tmp_path / "holdout.csv", index=False)
    page = write_report(folder, data=tmp_path / "holdout.csv").read_text()
    assert sorted(FakeClassifier.calls[0]["pairs"]) == sorted(r["second"] for r in rows)
    assert f"Scored for this report: {len(rows)} rows from {tmp_path / 'holdout.csv'}." in page
    support = {r[0]: r[4] for r in table_rows(page, "per-class")[1:6]}
    assert support == {name: str(sum(name in row for row in labels)) for name in meta["labels"]}


@pytest.mark.parametrize("line, message", [
    ("{not json", "test.jsonl line 2 is not JSON"),
    ('{"text": "x"}', "test.jsonl line 2 lacks a 'text' or a 'label'"),
])
def test_damaged_test_jsonl_names_the_line(fake_folder, line, message):
    folder, _ = fake_folder
    (folder / "test.jsonl").write_text('{"text": "a", "label": ["tech"]}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        write_report(folder)


def test_failed_write_leaves_no_report_and_no_staging(fake_folder, monkeypatch):
    folder, _ = fake_folder

    def refuse(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("bertfit.staging.os.replace", refuse)
    with pytest.raises(OutputError, match="Permission denied"):
        write_report(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["bertfit.json", "proba.npy"]


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `bertfit ...` in-process; the logger and env defaults main() sets are put back afterwards."""
    logger = logging.getLogger("bertfit")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        monkeypatch.delenv(name, raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    logger.handlers[:], logger.level, logger.propagate = saved


def test_cli_report_with_data_file(cli, trained_dir, data_csv, tmp_path):
    out = tmp_path / "from-data.html"
    code, stdout, _ = cli("report", str(trained_dir), "--data", str(data_csv), "--out", str(out), "--quiet")
    assert code == 0 and json.loads(stdout) == {"report": str(out)}
    page = out.read_text()
    assert f"rows from {data_csv}" in page and 'id="confusion"' in page


@pytest.mark.parametrize("args, message", [
    (["report", "no-such-folder"], "error: model folder not found: no-such-folder"),
    (["report", "{model}", "--out", "{tmp}/missing/r.html"], "does not exist; create it or pass another --out"),
    (["report", "{model}", "--out", "{tmp}"], "is a folder; pass a file path"),
])
def test_cli_report_errors_are_one_line_exit_2(cli, trained_dir, tmp_path, args, message):
    argv = [a.format(model=trained_dir, tmp=tmp_path) for a in args]
    code, stdout, stderr = cli(*argv)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1 and message in stderr


def test_readme_report_commands_parse():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Report"):readme.index("## Modules")]
    commands = [line.split(" # ")[0].strip() for line in section.splitlines() if line.startswith("bertfit report")]
    assert len(commands) == 3
    parsed = [build_parser().parse_args(shlex.split(command)[1:]) for command in commands]
    assert {args.handler for args in parsed} == {"report"}
    assert [(args.out, args.data) for args in parsed] == [(None, None), ("run-42.html", None), (None, "holdout.csv")]


# ---------------------------------------------------------------------------------------------
# In a real browser


needs_chromium = pytest.mark.skipif(screenshots.find_chromium() is None,
                                    reason="no chromium on PATH (apt-get install -y chromium); the browser check "
                                           "of the report is skipped")


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.fixture
def multi_label_page(tmp_path) -> Path:
    names, truth, proba, labels = multi_label_case()
    meta = {"task": "multi_label", "labels": names, "calibration": {"temperature": 1.0},
            "history": [{"epoch": e, "train_loss": 1 / e, "validation": {"loss": 1 / e + 0.1, "f1_micro": e / 4}}
                        for e in (1, 2, 3)], "best_epoch": 3}
    path = tmp_path / "multi-label.html"
    record = ModelRecord.from_dict(meta)
    path.write_text(render_html(record, analyse(record, [f"t{i}" for i in range(120)], labels, proba), "synthetic"))
    return path


@needs_chromium
@pytest.mark.parametrize("kind, images, parts", [
    ("binary", 4, ("confusion", "per-class", "curves", "calibration", "mistakes")),
    ("multi-class", 3, ("confusion", "per-class", "curves", "mistakes")),
    ("multi-label", 3, ("per-class", "curves", "calibration", "mistakes")),
])
def test_report_renders_in_chromium(request, tmp_path, kind, images, parts):
    page = {"binary": lambda: request.getfixturevalue("binary_report")[0],
            "multi-class": lambda: request.getfixturevalue("multi_class_report")[0],
            "multi-label": lambda: request.getfixturevalue("multi_label_page")}[kind]()
    facts = screenshots.page_facts(page)
    assert len(facts["images"]) == images
    assert all(img["complete"] and img["width"] > 0 for img in facts["images"]), facts["images"]
    assert set(SECTIONS) | set(parts) <= set(facts["ids"])
    assert "confusion" in facts["ids"] if kind != "multi-label" else "confusion" not in facts["ids"]
    shot = screenshots.screenshot(page, tmp_path / f"{kind}.png", width=1200, height=3000)
    assert png_size(shot) == (1200, 3000) and shot.stat().st_size > 50_000  # a drawn page, not a blank one


@needs_chromium
def test_browser_check_catches_a_broken_image(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text('<html><body><img alt="bad" src="data:image/png;base64,AAAA"></body></html>')
    assert screenshots.page_facts(page)["images"] == [{"alt": "bad", "width": 0, "complete": True}]


@needs_chromium
def test_screenshot_script_end_to_end(trained_dir, data_csv, tmp_path):
    out = tmp_path / "readme.png"
    assert screenshots.main([str(trained_dir), str(out), "--data", str(data_csv), "--height", "1600"]) == 0
    assert png_size(out) == (1200, 1600)


@pytest.mark.parametrize("kind", ["multi-label", "pair"])
def test_the_report_of_a_real_multi_label_or_pair_model(kind, tiny_model_dir, tmp_path):
    """Trained for real (not a stand-in): the report training writes scores the kept test split as it was
    recorded, and shows what the task needs (a per-label table; both texts of a pair)."""
    from bertfit.training.run import train
    from test_tasks import multi_label_rows, pair_rows

    data = multi_label_rows() if kind == "multi-label" else pair_rows()
    out = tmp_path / kind
    train(data, out, model=str(tiny_model_dir), epochs=2, learning_rate=1e-2, batch_size=8, patience=0,
          progress=False)
    page = (out / "report.html").read_text(encoding="utf-8")
    for section in ('id="summary"', 'id="training"', 'id="per-class"', 'id="curves"', 'id="mistakes"', 'id="data"'):
        assert section in page, section
    meta = json.loads((out / "bertfit.json").read_text())
    test_rows = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    again = write_report(out, tmp_path / "again.html")  # scored afresh from the saved folder
    fresh = again.read_text(encoding="utf-8")
    metric = "f1_micro" if kind == "multi-label" else "accuracy"
    recorded = f"{meta['metrics']['test'][metric]:.4f}"
    assert fresh.count(recorded) >= 2  # recorded at training and scored for this report: the same figure
    if kind == "multi-label":
        assert 'id="confusion"' not in page and "<th>label</th>" in page
        assert all(isinstance(r["label"], list) for r in test_rows)
    else:
        assert 'id="confusion"' in page
        assert "pair:" in page or "No mistakes" in page
        assert any(escape(r["text_pair"]) in page for r in test_rows) or "No mistakes" in page

