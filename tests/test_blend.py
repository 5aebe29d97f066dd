"""The TF-IDF baseline kept as arrays beside a multi-label model, and its blend with the transformer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import bertfit.training.decisions as decisions_module
from bertfit.blend import BASELINE_FILES, LinearBaseline, blended_logits, choose_weight, joined
from bertfit.calibration import calibrated
from bertfit.errors import ModelLoadError
from bertfit.labels import LabelSet
from bertfit.metrics import tune_thresholds
from bertfit.model import TextClassifier
from bertfit.record import FORMAT_VERSION, ModelRecord, Task
from bertfit.training.baseline import tfidf_logreg
from bertfit.training.run import train
from conftest import WORDS, make_rows
from test_tasks import FAST, TOPICS, multi_label_rows, pair_rows


def topic_matrix(frame, extra_columns=()):
    y = LabelSet(tuple(TOPICS)).encode_multi(frame["labels"].tolist())
    return np.hstack([y, *[np.full((len(y), 1), value) for value in extra_columns]])


def test_the_arrays_predict_as_the_fitted_pipeline(tmp_path):
    frame = multi_label_rows(60)
    y = topic_matrix(frame, extra_columns=(0, 1))  # a label on no row and one on every row: sklearn predicts those
    with pytest.warns(UserWarning):
        pipeline = tfidf_logreg(0, multi_label=True).fit(frame["text"].tolist(), y)
    kept = LinearBaseline.from_pipeline(pipeline, y.shape[1])
    unseen = multi_label_rows(20, seed=9)["text"].tolist() + ["", "words it never saw", "Ünïcode café!!"]
    np.testing.assert_allclose(kept.proba(unseen), pipeline.predict_proba(unseen), atol=1e-6)
    kept.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(BASELINE_FILES)
    again = LinearBaseline.load(tmp_path, labels=y.shape[1], multi_label=True)
    np.testing.assert_allclose(again.proba(unseen), pipeline.predict_proba(unseen), atol=1e-6)
    assert kept.proba([]).shape == (0, y.shape[1])


@pytest.mark.parametrize("classes", [2, 3])
def test_single_label_arrays_predict_as_the_fitted_pipeline(tmp_path, classes):
    frame = make_rows(per_class=15)
    frame = frame[frame["label"].isin(sorted(WORDS)[:classes])]
    labels = LabelSet(tuple(sorted(WORDS)[:classes]))
    pipeline = tfidf_logreg(0).fit(frame["text"].tolist(), labels.encode(frame["label"].tolist()))
    kept = LinearBaseline.from_pipeline(pipeline, classes)
    assert kept.kind == ("binary" if classes == 2 else "softmax")
    unseen = make_rows(per_class=5, seed=3)["text"].tolist() + ["", "words it never saw"]
    kept.save(tmp_path)
    again = LinearBaseline.load(tmp_path, labels=classes)
    np.testing.assert_allclose(again.proba(unseen), pipeline.predict_proba(unseen), atol=1e-6)
    with pytest.raises(ValueError, match="do not agree"):
        LinearBaseline.load(tmp_path, labels=classes + 1)


@pytest.mark.parametrize("seen", [(0, 2), (0, 1, 3)])
def test_classes_the_training_rows_lack_get_probability_0(seen):
    ids = dict(zip(sorted(WORDS), seen, strict=False))  # the topics as class ids, with gaps between them
    frame = make_rows(per_class=15)
    frame = frame[frame["label"].isin(ids)]
    classes = max(seen) + 1
    pipeline = tfidf_logreg(0).fit(frame["text"].tolist(), [ids[label] for label in frame["label"]])
    kept = LinearBaseline.from_pipeline(pipeline, classes)
    unseen = make_rows(per_class=5, seed=3)["text"].tolist()
    expected = np.zeros((len(unseen), classes))
    expected[:, pipeline[-1].classes_] = pipeline.predict_proba(unseen)
    np.testing.assert_allclose(kept.proba(unseen), expected, atol=1e-6)


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: (d / "baseline.safetensors").unlink(), "baseline.safetensors is missing"),
    (lambda d: (d / "baseline.json").write_text("{"), "cannot be read"),
    (lambda d: (d / "baseline.json").write_text("[]"), "not a baseline this bertfit reads"),
    (lambda d: (d / "baseline.safetensors").write_bytes(b"\0" * 10), "cannot be read"),
    (lambda d: _edit(d, lambda parts: parts[0].update(analyzer="sentences")), "do not agree"),
    (lambda d: _edit(d, lambda parts: parts[0]["terms"].pop()), "do not agree"),
    (lambda d: _edit(d, lambda parts: parts[0].update(token_pattern="(")), "cannot be used"),
    (lambda d: _edit(d, lambda parts: None, kind="softmax"), "do not agree"),  # a softmax for a multi-label model
    (lambda d: _edit_arrays(d, coef=np.nan), "not finite"),
    (lambda d: _edit_arrays(d, intercept=np.inf), "not finite"),
])
def test_a_damaged_baseline_is_named(tmp_path, damage, fragment):
    frame = multi_label_rows(40)
    LinearBaseline.from_pipeline(tfidf_logreg(0, multi_label=True).fit(frame["text"].tolist(), topic_matrix(frame)),
                                 len(TOPICS)).save(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=fragment):
        LinearBaseline.load(tmp_path, labels=len(TOPICS), multi_label=True)


def _edit(folder, change, **fields):
    described = json.loads((folder / "baseline.json").read_text())
    change(described["parts"])
    (folder / "baseline.json").write_text(json.dumps(described | fields))


def _edit_arrays(folder, **values):
    from safetensors.numpy import load_file, save_file

    arrays = load_file(str(folder / "baseline.safetensors"))
    for name, value in values.items():
        arrays[name] = np.full_like(arrays[name], value)
    save_file(arrays, str(folder / "baseline.safetensors"))


def test_blended_logits_are_the_weighted_average_of_probabilities():
    rng = np.random.default_rng(0)
    model, baseline = rng.random((50, 3)), rng.random((50, 3))
    blended = blended_logits(model, baseline, 0.3, multi_label=True)
    np.testing.assert_allclose(1 / (1 + np.exp(-blended.astype(np.float64))), 0.3 * model + 0.7 * baseline, atol=1e-6)
    assert np.isfinite(blended_logits(np.array([[1.0, 0.0]]), np.array([[1.0, 0.0]]), 0.5, multi_label=True)).all()
    # single-label: logits that the model's calibrated softmax (logits / T) turns back into the average
    model, baseline = rng.dirichlet(np.ones(4), 50), rng.dirichlet(np.ones(4), 50)
    blended = blended_logits(model, baseline, 0.6, multi_label=False, temperature=1.7)
    np.testing.assert_allclose(calibrated(blended, 1.7), 0.6 * model + 0.4 * baseline, atol=1e-5)


def test_the_weight_is_taken_only_where_the_blend_beats_both():
    rng = np.random.default_rng(1)
    truth = (rng.random((400, 2)) < 0.4).astype(int)
    noise = rng.random((400, 2))
    # each knows one label well and guesses the other: together they know both
    model = np.column_stack([0.8 * truth[:, 0] + 0.2 * noise[:, 0], noise[:, 1]])
    linear = np.column_stack([noise[:, 0], 0.8 * truth[:, 1] + 0.2 * noise[:, 1]])
    weight, figures = choose_weight(model, linear, truth, multi_label=True)
    assert weight is not None and 0 < weight < 1
    assert figures["blend"] > max(figures["model"], figures["baseline"])
    # a baseline that says what the model says adds nothing: no weight beats both, the model stands alone
    weight, figures = choose_weight(model, model.copy(), truth, multi_label=True)
    assert weight is None and figures["blend"] == figures["model"] == figures["baseline"]
    # single-label, by accuracy: the model sure of classes 0-1 and unsure of 2-3, the baseline the other way round
    classes = rng.integers(0, 4, 400)
    sure, unsure = np.eye(4)[classes] * 0.9 + 0.025, rng.dirichlet(np.ones(4), 400)
    model = np.where((classes < 2)[:, None], sure, unsure)
    linear = np.where((classes < 2)[:, None], rng.dirichlet(np.ones(4), 400), sure * 0.8 + 0.05)
    weight, figures = choose_weight(model, linear, classes, multi_label=False)
    assert weight is not None and figures["blend"] > max(figures["model"], figures["baseline"])


@pytest.mark.parametrize("task", [Task.SINGLE_LABEL, Task.MULTI_LABEL])
def test_a_record_blends_with_a_weight_between_0_and_1(task):
    record = ModelRecord(labels=["a", "b"], task=task, max_length=32)
    assert ModelRecord(**{**record.__dict__, "blend": {"weight": 0.4}}).problems() == []
    assert "between 0 and 1" in ModelRecord(**{**record.__dict__, "blend": {"weight": 1.5}}).problems()[0]
    assert "between 0 and 1" in ModelRecord(**{**record.__dict__, "blend": "0.4"}).problems()[0]


@pytest.fixture(scope="module")
def blended(tmp_path_factory, tiny_model_dir):
    """A multi-label model trained with the blend taken at weight 0.5 (a tiny model on easy words rarely gains
    from it on its own: the choice of the weight is tested above, what follows from it here)."""
    folder = tmp_path_factory.mktemp("blended")
    chosen = {}

    def forced(model_proba, baseline_proba, targets, multi_label):
        chosen["validation"] = (model_proba, baseline_proba, targets)
        return 0.5, choose_weight(model_proba, baseline_proba, targets, multi_label)[1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(decisions_module, "choose_weight", forced)
        result = train(multi_label_rows(), folder / "model", model=str(tiny_model_dir), progress=False, **FAST)
    return folder / "model", result, chosen


def test_a_taken_blend_is_saved_without_pickle_and_predicts_as_decided(blended):
    folder, result, chosen = blended
    meta = json.loads((folder / "bertfit.json").read_text())
    assert meta["blend"]["weight"] == 0.5 and meta["format_version"] == FORMAT_VERSION
    assert set(meta["blend"]["validation"]) == {"model", "baseline", "blend"} and meta["blend"]["metric"] == "f1_micro"
    assert all((folder / name).is_file() for name in BASELINE_FILES)
    assert result.summary()["blend"] == meta["blend"]
    assert not list(folder.glob("*.pkl")) and not list(folder.glob("*.joblib"))
    assert "average this model's (weight 0.50) with the TF-IDF baseline's" in (folder / "README.md").read_text()
    classifier = TextClassifier.from_pretrained(folder)
    rows = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    texts = [r["text"] for r in rows]
    alone = 1 / (1 + np.exp(-classifier.model_logits(texts).astype(np.float64)))
    np.testing.assert_allclose(classifier.predict_proba(texts),
                               0.5 * alone + 0.5 * classifier.baseline.proba(texts), atol=1e-5)
    # the test split was scored once, by the blend; the thresholds were tuned on the blended validation
    assert classifier.evaluate(texts, [r["label"] for r in rows])["f1_micro"] == pytest.approx(result.test["f1_micro"])
    model_proba, baseline_proba, targets = chosen["validation"]
    blend = 0.5 * model_proba + 0.5 * baseline_proba
    np.testing.assert_allclose(classifier.thresholds, tune_thresholds(targets, blend), atol=1e-6)


@pytest.mark.parametrize("kind", ["classes", "pairs"])
def test_a_single_label_blend_averages_the_calibrated_model_with_the_baseline(tiny_model_dir, tmp_path, monkeypatch,
                                                                                kind):
    figures = {"model": 0.0, "baseline": 0.0, "blend": 0.0}
    monkeypatch.setattr(decisions_module, "choose_weight", lambda model, baseline, targets, multi_label: (0.5, figures))
    data = make_rows(per_class=30) if kind == "classes" else pair_rows()
    result = train(data, tmp_path / "model", model=str(tiny_model_dir), progress=False, report=False, **FAST)
    classifier = TextClassifier.from_pretrained(tmp_path / "model")
    assert classifier.record.blend["metric"] == "accuracy" and classifier.baseline.kind == (
        "softmax" if kind == "classes" else "binary")
    rows = [json.loads(line) for line in (tmp_path / "model" / "test.jsonl").read_text().splitlines()]
    texts, pairs = [r["text"] for r in rows], [r["text_pair"] for r in rows] if kind == "pairs" else None
    alone = calibrated(classifier.model_logits(texts, pairs=pairs), classifier.temperature)
    linear = classifier.baseline.proba(joined(texts, pairs))
    np.testing.assert_allclose(classifier.predict_proba(texts, pairs=pairs), 0.5 * alone + 0.5 * linear, atol=1e-5)
    assert classifier.evaluate(texts, [r["label"] for r in rows], pairs=pairs)["accuracy"] == result.test["accuracy"]
    calibration = classifier.record.calibration
    assert calibration.test_ece_before is None and calibration.test_ece_after == pytest.approx(result.test["ece"])


def test_without_the_blend_the_model_stands_alone(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(decisions_module, "choose_weight", lambda *a: pytest.fail("--no-blend still weighed a blend"))
    result = train(multi_label_rows(), tmp_path / "model", model=str(tiny_model_dir), progress=False, blend=False,
                   **FAST)
    assert result.classifier.record.blend is None and result.baseline is not None
    meta = json.loads((tmp_path / "model" / "bertfit.json").read_text())
    assert "blend" not in meta and meta["format_version"] < FORMAT_VERSION
    assert not any((tmp_path / "model" / name).exists() for name in BASELINE_FILES)


def test_a_blended_folder_missing_its_baseline_is_refused_by_name(blended, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(blended[0], copy)
    (copy / "baseline.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="blends in the TF-IDF baseline, but baseline.safetensors is missing"):
        TextClassifier.from_pretrained(copy)


def test_the_blend_carries_to_the_onnx_export(blended, tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'bertfit[onnx]' for the export tests")
    pytest.importorskip("onnxscript", reason="pip install 'bertfit[onnx]' for the export tests")
    from bertfit.export.onnx import export

    result = export(blended[0], tmp_path / "onnx", max_drop=0.0)
    assert all((result.model_dir / name).is_file() for name in BASELINE_FILES)
    torch_model = TextClassifier.from_pretrained(blended[0], backend="torch")
    onnx_model = TextClassifier.from_pretrained(result.model_dir, backend="onnx")
    assert onnx_model.record.blend == torch_model.record.blend
    texts = multi_label_rows(12, seed=4)["text"].tolist()
    np.testing.assert_allclose(onnx_model.predict_proba(texts), torch_model.predict_proba(texts), atol=1e-4)
    assert result.check["drop"] == 0


def test_a_blended_teacher_teaches_with_its_transformer_alone(blended, tmp_path, monkeypatch):
    import bertfit.training.distill as distill_module

    taught = {}

    def caught(prepared, config, target, *, start, **_):
        taught.update(texts=prepared.train["text"].tolist(), soft=start.teacher_logits)

    monkeypatch.setattr(distill_module, "fit", caught)
    data = tmp_path / "data.jsonl"
    multi_label_rows().to_json(data, orient="records", lines=True)
    distill_module.distill(blended[0], data, tmp_path / "student", student_layers=1, progress=False)
    teacher = TextClassifier.from_pretrained(blended[0])
    np.testing.assert_allclose(taught["soft"], teacher.model_logits(taught["texts"]), atol=1e-5)
    assert not np.allclose(taught["soft"], teacher.logits(taught["texts"]), atol=1e-3)


@pytest.mark.parametrize("asked, wanted", [({}, False), ({"blend": True}, True)])
def test_compress_trains_its_students_alone_unless_asked(blended, tmp_path, monkeypatch, asked, wanted):
    import bertfit.export.compress as compress_module

    class Stop(Exception):
        pass

    def caught(*args, settings, **kwargs):
        raise Stop(settings)

    monkeypatch.setattr(compress_module, "_try", caught)
    data = tmp_path / "data.jsonl"
    multi_label_rows().to_json(data, orient="records", lines=True)
    with pytest.raises(Stop) as stopped:
        compress_module.compress(blended[0], data, tmp_path / "small", student_layers=1, progress=False, **asked)
    assert stopped.value.args[0]["blend"] is wanted
