"""What the report says about scored rows (bertfit.reporting.analysis), on synthetic probabilities checked
against scikit-learn: binary, multi-class and multi-label."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, roc_auc_score

from bertfit.errors import DataError, ModelLoadError
from bertfit.record import ModelRecord
from bertfit.reporting.analysis import analyse, multi_label_analysis, single_label_analysis
from conftest import multi_label_case, softmax_rows


def test_multi_class_analysis_matches_scikit_learn():
    rng = np.random.default_rng(0)
    names = [f"class{k}" for k in range(10)]
    y = rng.choice(10, size=400, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    proba = softmax_rows(rng, y, 10)
    texts = [f"text {i}" for i in range(len(y))]
    result = single_label_analysis(names, texts, [names[k] for k in y], proba)

    predicted = proba.argmax(axis=1)
    assert result.confusion.tolist() == confusion_matrix(y, predicted, labels=range(10)).tolist()
    assert [result.per_class[name]["support"] for name in names] == np.bincount(y, minlength=10).tolist()
    assert result.metrics["accuracy"] == pytest.approx((predicted == y).mean())
    # One-vs-rest curves for the 8 classes with the most rows, each with its own AUC.
    support = np.bincount(y, minlength=10)
    assert len(result.roc) == len(result.pr) == 8
    assert {c.name for c in result.roc} == {names[k] for k in np.argsort(-support, kind="stable")[:8]}
    for curve in result.roc:
        k = names.index(curve.name)
        assert curve.area == pytest.approx(roc_auc_score(y == k, proba[:, k]))
    # The 20 most confident mistakes, most confident first.
    wrong = int((predicted != y).sum())
    assert wrong > 20 and len(result.mistakes) == 20
    shown = [m["probability"] for m in result.mistakes]
    assert shown == sorted(shown, reverse=True)
    assert shown[0] == pytest.approx(proba[predicted != y].max())
    for m in result.mistakes:
        i = int(m["text"].split()[1])
        assert m["true"] == names[y[i]] != m["predicted"] == names[predicted[i]]


def test_binary_curves_are_of_label_id_1_whatever_the_balance():
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.2).astype(int)  # label id 1 is the rare class
    proba = softmax_rows(rng, y, 2, signal=1.5)
    result = single_label_analysis(["ham", "spam"], [str(i) for i in range(300)], [["ham", "spam"][k] for k in y],
                                   proba)
    assert [c.name for c in result.roc] == [c.name for c in result.pr] == ["spam"]
    assert result.roc[0].area == pytest.approx(roc_auc_score(y, proba[:, 1]))
    assert result.metrics["auc"] == pytest.approx(result.roc[0].area)


def test_single_label_unknown_test_label_is_an_error_naming_it():
    with pytest.raises(DataError, match="'dog'"):
        single_label_analysis(["a", "b"], ["x", "y"], ["a", "dog"], np.array([[0.6, 0.4], [0.3, 0.7]]))


def test_multi_label_analysis_per_label_at_the_thresholds():
    names, truth, proba, labels = multi_label_case()
    thresholds = [0.5, 0.3, 0.7, 0.5, 0.5]
    texts = [f"row {i}" for i in range(len(truth))]
    result = multi_label_analysis(names, texts, labels, proba, thresholds)

    predicted = proba >= np.array(thresholds)
    assert result.confusion is None and result.task == "multi_label"
    assert [result.per_class[n]["support"] for n in names] == truth.sum(axis=0).tolist()
    for k, name in enumerate(names):
        expected = precision_score(truth[:, k], predicted[:, k], zero_division=0)
        assert result.per_class[name]["precision"] == pytest.approx(expected)
    assert result.metrics["f1_micro"] == pytest.approx(f1_score(truth, predicted, average="micro"))
    assert result.metrics["subset_accuracy"] == pytest.approx((predicted == truth).all(axis=1).mean())
    # Curves only for labels with positive and negative rows.
    assert "never" not in {c.name for c in result.roc} and len(result.roc) == 4
    # Mistakes: rows whose predicted set differs from the true set, by how sure the wrong decision was.
    wrong_rows = {f"row {i}" for i in np.flatnonzero((predicted != truth).any(axis=1))}
    assert len(wrong_rows) > 20 and len(result.mistakes) == 20
    assert {m["text"] for m in result.mistakes} <= wrong_rows
    sureness = [m["probability"] if m["error"] == "false positive" else 1 - m["probability"] for m in result.mistakes]
    assert sureness == sorted(sureness, reverse=True)
    for m in result.mistakes:
        i = int(m["text"].split()[1])
        k = names.index(m["label"])
        assert m["true"] == labels[i] and m["predicted"] != m["true"]
        assert m["probability"] == pytest.approx(proba[i, k])
        assert (m["error"] == "false positive") == bool(predicted[i, k] and not truth[i, k])


def test_multi_label_thresholds_move_the_decisions():
    names, truth, proba, labels = multi_label_case()
    low = multi_label_analysis(names, [""] * len(labels), labels, proba, [0.1] * 5)
    high = multi_label_analysis(names, [""] * len(labels), labels, proba, [0.9] * 5)
    assert low.per_class["billing"]["recall"] > high.per_class["billing"]["recall"]
    assert low.per_class["billing"]["precision"] < high.per_class["billing"]["precision"]


def test_analyse_reads_task_and_default_thresholds_from_meta():
    names, truth, proba, labels = multi_label_case()
    texts = [""] * len(labels)
    result = analyse(ModelRecord.from_dict({"task": "multi_label", "labels": names}), texts, labels, proba)
    expected = multi_label_analysis(names, texts, labels, proba, [0.5] * 5)
    assert result.metrics == expected.metrics


@pytest.mark.parametrize("how, error, message", [
    ("unknown label", DataError, "test row 2 has label.*'dog'"),
    ("thresholds", ModelLoadError, "2 thresholds for 5 labels"),
    ("shape", ModelLoadError, "shape"),
])
def test_multi_label_errors_name_the_problem(how, error, message):
    names, truth, proba, labels = multi_label_case()
    meta = {"task": "multi_label", "labels": names}
    if how == "unknown label":
        labels = [labels[0], ["tech", "dog"], *labels[2:]]
    elif how == "thresholds":
        meta["thresholds"] = [0.5, 0.5]
    else:
        proba = proba[:, :3]
    with pytest.raises(error, match=message):
        analyse(ModelRecord.from_dict(meta), [""] * len(labels), labels, proba)
