"""Label auditing (bertfit.auditing): confident learning on planted label errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bertfit.auditing.confident import confident_joint, error_rate_interval, find_suspects, thresholds


def _planted(rows=3000, classes=4, share=0.1, signal=3.0, seed=0):
    """Probabilities of a decent model for the true classes, and labels with `share` of them flipped."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, rows)
    logits = rng.normal(size=(rows, classes))
    logits[np.arange(rows), true] += signal
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(rows, int(share * rows), replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, classes, len(flipped))) % classes
    planted = np.zeros(rows, dtype=bool)
    planted[flipped] = True
    return proba, given, true, planted


def test_planted_flips_are_found_with_high_precision_and_recall():
    proba, given, true, planted = _planted()
    suspects = find_suspects(proba, given)
    hits = (suspects.flagged & planted).sum()
    precision, recall = hits / suspects.flagged.sum(), hits / planted.sum()
    assert precision > 0.9 and recall > 0.8, (precision, recall)
    assert (suspects.suggested[suspects.flagged & planted] == true[suspects.flagged & planted]).mean() > 0.9
    # the ranking puts planted rows first: precision at k (k = planted) beats the flagged share by far
    top = np.argsort(-suspects.score)[:planted.sum()]
    assert planted[top].mean() > 0.8


def test_clean_labels_give_few_flags_and_a_low_rate():
    proba, _, true, _ = _planted(share=0.0)
    suspects = find_suspects(proba, true)
    rate, low, high = error_rate_interval(int(suspects.flagged.sum()), len(true))
    assert rate < 0.06 and low <= rate <= high


def test_joint_rows_sum_to_each_labels_count_and_thresholds_are_class_means():
    proba, given, _, _ = _planted(rows=600, share=0.1)
    joint = confident_joint(proba, given)
    assert joint.sum(axis=1) == pytest.approx(np.bincount(given, minlength=4))
    assert thresholds(proba, given)[2] == pytest.approx(proba[given == 2, 2].mean())


def test_wilson_interval_is_inside_zero_one():
    assert error_rate_interval(0, 50)[1] == 0.0 and error_rate_interval(0, 50)[2] > 0
    assert error_rate_interval(50, 50)[2] == 1.0
    assert error_rate_interval(0, 0) == (0.0, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# bertfit audit, end to end


def _noisy_rows(flips: int = 8):
    from conftest import make_rows

    rows = make_rows(per_class=60, seed=3)
    names = sorted(rows["label"].unique())
    flipped = rows.sample(n=flips, random_state=0).index
    rows.loc[flipped, "label"] = [names[(names.index(label) + 1) % len(names)] for label in rows.loc[flipped, "label"]]
    return rows, set(rows.loc[flipped, "text"])


def _noisy_csv(folder) -> object:
    data = folder / "data.csv"
    _noisy_rows()[0].to_csv(data, index=False)
    return data


def test_audit_flags_planted_flips_and_writes_its_files(tmp_path):
    from bertfit.auditing.run import AUDIT_FILE, PAGE_FILE, audit

    rows, planted = _noisy_rows()
    data = tmp_path / "data.csv"
    rows.to_csv(data, index=False)
    before = data.read_bytes()
    result = audit(data, tmp_path / "audit", method="tfidf", progress=False)
    flagged = {row["text"] for row in result.rows if row["reason"] == "label"}
    assert len(flagged & planted) >= 0.75 * len(planted) and len(flagged - planted) <= 3, (flagged, planted)
    written = (tmp_path / "audit" / AUDIT_FILE).read_text(encoding="utf-8").splitlines()
    assert written[0] == "split,row,text,text_pair,given_label,suggested_label,score,reason"
    assert len(written) == len(result.rows) + 1
    page = (tmp_path / "audit" / PAGE_FILE).read_text(encoding="utf-8")
    assert 'id="rates"' in page and 'id="suspects"' in page
    assert set(result.per_split) == {"train", "validation", "test"}
    assert sum(s["rows"] for s in result.per_split.values()) == len(rows)
    assert data.read_bytes() == before  # the data is read, never changed


def test_audit_cli_refuses_what_it_should(tmp_path, tiny_model_dir, capsys):
    from bertfit.cli import main

    data = _noisy_csv(tmp_path)
    out = tmp_path / "audit"
    assert main(["audit", str(data), "--out", str(out), "--method", "embed", "--model", str(tiny_model_dir),
                 "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["method"] == "embed" and summary["out"] == str(out)
    assert main(["audit", str(data), "--out", str(out), "--quiet"]) == 2  # exists: --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert main(["audit", str(data), "--folds", "1", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--folds" in capsys.readouterr().err
    from test_tasks import multi_label_rows

    multi = tmp_path / "multi.jsonl"
    multi_label_rows().to_json(multi, orient="records", lines=True)
    assert main(["audit", str(multi), "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "single-label" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_audit_out_may_not_be_or_be_inside_its_model_folder(tmp_path, tiny_model_dir, capsys):
    from bertfit.cli import main

    data = _noisy_csv(tmp_path)
    base = shutil.copytree(tiny_model_dir, tmp_path / "base")
    before = sorted(p.name for p in base.iterdir())
    for out, message in ((base, "is the --model folder"), (base / "audit", "is inside the --model folder")):
        assert main(["audit", str(data), "--model", str(base), "--method", "embed", "--folds", "2", "--out", str(out),
                     "--overwrite", "--quiet"]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in base.iterdir()) == before


def test_audit_never_overwrites_a_trained_model_and_records_the_folds_that_ran(tmp_path, trained_dir, capsys):
    from bertfit.cli import main

    data = _noisy_csv(tmp_path)
    model = shutil.copytree(trained_dir, tmp_path / "model")
    before = sorted(p.name for p in model.iterdir())
    assert main(["audit", str(data), "--method", "tfidf", "--out", str(model), "--overwrite", "--quiet"]) == 2
    assert "holds a trained model (bertfit.json); an audit never replaces one" in capsys.readouterr().err
    assert sorted(p.name for p in model.iterdir()) == before
    small = pd.read_csv(data).groupby("label").head(4)  # 4 rows a class: under 4 labelled
    small.to_csv(data, index=False)
    assert main(["audit", str(data), "--method", "tfidf", "--folds", "1000", "--out", str(tmp_path / "a"),
                 "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["folds"] < 1000


# ---------------------------------------------------------------------------------------------
# bertfit train --audit / --drop-suspects


def test_drop_suspects_parses_auto_or_a_count():
    from bertfit.auditing.screen import drop_count
    from bertfit.errors import UsageError

    assert drop_count("auto") is None and drop_count("AUTO") is None
    assert drop_count("7") == 7 and drop_count(0) == 0
    for bad in ("-1", "some", "2.5", 2.5, True):
        with pytest.raises(UsageError, match="--drop-suspects"):
            drop_count(bad)


def test_without_suspects_takes_the_strongest_train_rows_and_keeps_every_class():
    import pandas as pd

    from bertfit.auditing.run import AuditResult
    from bertfit.auditing.screen import DROPPED_KEY, without_suspects
    from bertfit.data.cleaning import PreparedData
    from bertfit.labels import LabelSet

    train = pd.DataFrame({"text": [f"t{i}" for i in range(7)], "label": ["a", "a", "a", "a", "b", "b", "b"]})
    other = pd.DataFrame({"text": ["v"], "label": ["a"]})
    labels = LabelSet(("a", "b"))
    prepared = PreparedData(train, other, other, labels, "text", "label",
                            report={"dropped": {"duplicates": 1}, "rows": {"train": 7, "validation": 1, "test": 1},
                                    "class_balance": {"train": labels.balance(train["label"])}})

    def suspect(split, row, score, reason="label"):
        return {"split": split, "row": row, "score": score, "reason": reason}

    result = AuditResult([suspect("train", 0, 0.9), suspect("train", 4, 0.8), suspect("train", 5, 0.7),
                          suspect("train", 1, 0.6), suspect("validation", 0, 1.0), suspect("train", 2, 1.0, "outlier")],
                         {}, {}, "tfidf", 5, 0.0)
    kept, dropped = without_suspects(prepared, result, None)
    # b has 3 rows and keeps 2: only row 4 of b goes; a loses rows 0 and 1; outliers and validation stay
    assert dropped == 3 and kept.train["text"].tolist() == ["t2", "t3", "t5", "t6"]
    assert kept.validation is other and kept.test is other
    assert kept.report["dropped"] == {"duplicates": 1, DROPPED_KEY: 3} and kept.report["rows"]["train"] == 4
    assert prepared.report["rows"]["train"] == 7 and len(prepared.train) == 7  # the input is not changed
    assert without_suspects(prepared, result, 1)[0].train["text"].tolist() == ["t1", "t2", "t3", "t4", "t5", "t6"]
    assert without_suspects(prepared, result, 0) == (prepared, 0)


def test_train_drop_suspects_trains_without_them_and_reports_the_audit(tmp_path, tiny_model_dir, capsys):
    from bertfit.auditing.screen import DROPPED_KEY
    from bertfit.cli import main
    from bertfit.folder import read_split

    rows, planted = _noisy_rows()
    data = tmp_path / "data.csv"
    rows.to_csv(data, index=False)
    out = tmp_path / "model"
    assert main(["train", str(data), "--model", str(tiny_model_dir), "--epochs", "1", "--max-length", "16",
                 "--drop-suspects", "auto", "--audit-method", "tfidf", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    record = json.loads((out / "bertfit.json").read_text(encoding="utf-8"))
    assert summary["dropped"] > 0 and record["data"]["dropped"][DROPPED_KEY] == summary["dropped"]
    assert record["data"]["rows"]["train"] == summary["per_split"]["train"]["rows"] - summary["dropped"]
    # validation and test are the audit's, row for row: nothing dropped there
    assert len(read_split(out, "test").texts) == summary["per_split"]["test"]["rows"]
    suspects = (out / "audit.csv").read_text(encoding="utf-8")
    assert sum(text in suspects for text in planted) >= 0.75 * len(planted)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="audit"' in page and "--drop-suspects" in page
    assert data.read_bytes() == rows.to_csv(index=False).encode()


def test_relabel_suspects_gives_the_strongest_train_rows_the_suggested_label_and_keeps_every_class():
    from bertfit.auditing.run import AuditResult
    from bertfit.auditing.screen import RELABELLED_KEY, with_suggested_labels
    from bertfit.data.cleaning import PreparedData
    from bertfit.labels import LabelSet

    train = pd.DataFrame({"text": [f"t{i}" for i in range(7)], "label": ["a", "a", "a", "a", "b", "b", "b"]})
    other = pd.DataFrame({"text": ["v"], "label": ["a"]})
    labels = LabelSet(("a", "b"))
    prepared = PreparedData(train, other, other, labels, "text", "label",
                            report={"rows": {"train": 7}, "class_balance": {"train": labels.balance(train["label"])}})
    rows = [{"split": "train", "row": 0, "score": 0.9, "reason": "label", "suggested_label": "b"},
            {"split": "train", "row": 4, "score": 0.8, "reason": "label", "suggested_label": "a"},
            {"split": "train", "row": 5, "score": 0.7, "reason": "label", "suggested_label": "a"},
            {"split": "validation", "row": 0, "score": 1.0, "reason": "label", "suggested_label": "b"}]
    fixed, count = with_suggested_labels(prepared, AuditResult(rows, {}, {}, "tfidf", 5, 0.0), None)
    # every row stays; b keeps 2 of its given rows, so row 5 keeps its label; validation is not touched
    assert count == 2 and fixed.train["label"].tolist() == ["b", "a", "a", "a", "a", "b", "b"]
    assert fixed.train["text"].tolist() == train["text"].tolist() and fixed.validation is other
    assert fixed.report[RELABELLED_KEY] == 2 and fixed.report["class_balance"]["train"] == {"a": 4, "b": 3}
    assert train["label"].tolist() == ["a", "a", "a", "a", "b", "b", "b"]  # the input is not changed


def test_train_relabel_suspects_runs_and_says_so_and_refuses_with_drop(tmp_path, tiny_model_dir, capsys):
    from bertfit.cli import main

    data = _noisy_csv(tmp_path)
    out = tmp_path / "model"
    base = ["train", str(data), "--model", str(tiny_model_dir), "--epochs", "1", "--max-length", "16",
            "--audit-method", "tfidf", "--out", str(out), "--quiet"]
    assert main([*base, "--relabel-suspects", "auto", "--drop-suspects", "auto"]) == 2
    assert "pass one" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--relabel-suspects", "some"]) == 2
    assert "--relabel-suspects takes" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--relabel-suspects", "auto"]) == 0
    summary = json.loads((out / "audit.json").read_text(encoding="utf-8"))
    record = json.loads((out / "bertfit.json").read_text(encoding="utf-8"))
    assert summary["relabelled"] > 0 and "dropped" not in summary
    assert record["data"]["rows"]["train"] == summary["per_split"]["train"]["rows"]  # every row kept
    assert record["data"]["relabelled_suspects"] == summary["relabelled"]
    assert "--relabel-suspects" in (out / "report.html").read_text(encoding="utf-8")


def test_train_audit_refuses_before_training(tmp_path, tiny_model_dir, capsys):
    from bertfit.cli import main
    from test_tasks import multi_label_rows

    multi = tmp_path / "multi.jsonl"
    multi_label_rows().to_json(multi, orient="records", lines=True)
    out = tmp_path / "m"
    base = ["train", str(multi), "--model", str(tiny_model_dir), "--epochs", "1", "--out", str(out), "--quiet"]
    assert main([*base, "--audit"]) == 2
    assert "single-label" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--drop-suspects", "many"]) == 2
    assert "--drop-suspects" in capsys.readouterr().err and not out.exists()
    assert main([*base, "--audit", "--audit-folds", "1"]) == 2  # named as train names it
    assert "--audit-folds must be a whole number of at least 2" in capsys.readouterr().err and not out.exists()


def test_finetune_evidence_scores_every_row_out_of_fold(tmp_path, tiny_model_dir):
    from bertfit.auditing.run import audit

    rows, planted = _noisy_rows()
    data = tmp_path / "data.csv"
    rows.to_csv(data, index=False)
    result = audit(data, None, method="finetune", model=str(tiny_model_dir), folds=2, progress=False)
    assert result.proba.shape == (result.per_split["train"]["rows"] + result.per_split["validation"]["rows"], 3)
    assert np.allclose(result.proba.sum(1), 1.0, atol=1e-4)
    assert result.method == "finetune" and result.per_split["test"]["rows"] > 0


def test_finetune_evidence_is_averaged_with_the_cheap_evidence(tmp_path, tiny_model_dir, monkeypatch):
    from bertfit.auditing import run

    data = _noisy_csv(tmp_path)
    cheap = run.audit(data, None, method="both", model=str(tiny_model_dir), folds=2, progress=False).proba
    onehot = np.eye(3)[np.arange(len(cheap)) % 3]

    def tuned(prepared, labelled, labels, folds, seed, model_path, progress):
        return onehot[:len(labelled)], np.full((len(prepared.test), 3), 1 / 3)

    monkeypatch.setattr(run, "finetuned_out_of_fold", tuned)
    both = run.audit(data, None, method="finetune", model=str(tiny_model_dir), folds=2, progress=False)
    assert np.allclose(both.proba, (cheap + onehot) / 2)


def test_finetune_folds_never_score_a_row_they_trained_on(monkeypatch):
    import pandas as pd

    from bertfit.auditing import finetuned
    from bertfit.data.cleaning import PreparedData
    from bertfit.labels import LabelSet

    labelled = pd.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["a", "b", "c"] * 10})
    test = pd.DataFrame({"text": ["x", "y"], "label": ["a", "b"]})
    prepared = PreparedData(labelled, labelled.iloc[:0], test, LabelSet(("a", "b", "c")), "text", "label")
    calls = []

    def fake(prepared, rows, scored, seed, model_path, progress):
        calls.append((set(rows["text"]), list(scored["text"])))
        return np.full((len(scored), 3), 1 / 3)

    monkeypatch.setattr(finetuned, "_train_and_score", fake)
    ids = np.array([0, 1, 2] * 10)
    scored, test_proba = finetuned.finetuned_out_of_fold(prepared, labelled, ids, 3, 0, "m")
    folds, last = calls[:-1], calls[-1]
    assert len(folds) == 3 and scored.shape == (30, 3) and test_proba.shape == (2, 3)
    held = [text for _, texts in folds for text in texts]
    assert sorted(held) == sorted(labelled["text"])  # every labelled row scored once
    assert all(not (fit & set(texts)) for fit, texts in folds)  # by a model that never saw it
    assert last == (set(labelled["text"]), ["x", "y"])  # the test rows by one trained on all labelled rows


def test_rounding_keeps_each_rows_total_where_plain_rounding_loses_small_cells():
    from bertfit.auditing.confident import round_keeping_row_totals

    counts = np.array([[8.0, 0.4, 0.3, 0.3], [0.2, 9.6, 0.1, 0.1]])
    rounded = round_keeping_row_totals(counts)
    assert rounded.sum(axis=1).tolist() == [9.0, 10.0]
    assert rounded.tolist() == [[8, 1, 0, 0], [0, 10, 0, 0]]  # plain rounding: [8, 0, 0, 0], no error left


def test_many_classes_with_few_errors_each_are_still_found():
    proba, given, _, planted = _planted(rows=4000, classes=40, share=0.1, signal=5.0, seed=1)
    suspects = find_suspects(proba, given)
    found = suspects.flagged
    assert (found & planted).sum() >= 0.6 * planted.sum(), ((found & planted).sum(), planted.sum())
    assert (found & planted).sum() >= 0.95 * found.sum()
    # the joint, which the page shows per pair, still counts nearly every flip over its 40 x 39 cells
    off_diagonal = suspects.joint.sum() - np.trace(suspects.joint)
    assert 0.9 * planted.sum() <= off_diagonal <= 1.1 * planted.sum()


def test_the_count_is_the_mean_of_the_calibrated_and_the_confident_count_from_four_classes():
    from bertfit.auditing.confident import error_count

    joint = np.diag([50.0, 50.0, 50.0, 50.0])
    joint[0, 1] = joint[2, 3] = 10  # the calibrated joint: 20 off its diagonal
    elsewhere = np.zeros(220, dtype=bool)
    elsewhere[:12] = True  # 12 rows confidently in another class
    assert error_count(joint, elsewhere) == 16
    assert error_count(joint[:3, :3], elsewhere) == 10  # three classes: the calibrated count alone


def test_flagged_are_the_least_likely_given_labels_as_many_as_confidently_belong_elsewhere():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.45, 0.55], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]])
    given = np.array([0, 0, 0, 1, 1, 1])
    suspects = find_suspects(proba, given)
    # thresholds: class 0 mean of rows given 0 = 0.517, class 1 = 0.667; confidently elsewhere: row 1
    # (0.8 >= 0.667) and row 4 (0.6 >= 0.517); so two rows flagged, the two least likely given labels
    assert suspects.flagged.tolist() == [False, True, False, False, True, False]
    assert suspects.score.tolist() == pytest.approx([0.1, 0.8, 0.55, 0.3, 0.6, 0.1])
