"""The kinds of task users bring: multi-label, sentence pairs, long texts, imbalance, calibration, a baseline."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bertfit.calibration import calibrated, fit_temperature
from bertfit.config import DataConfig
from bertfit.data.cleaning import clean, prepare
from bertfit.encoding import encode, pool
from bertfit.errors import DataError, UsageError
from bertfit.metrics import expected_calibration_error, multilabel_metrics, tune_thresholds
from bertfit.model import TextClassifier
from bertfit.training.run import train
from bertfit.training.trainer import resolve_class_weights
from conftest import FILLER, WORDS, tiny_tokenizer

# Learning rates that move a tiny model in a few steps; the head keeps that rate (10x of it would diverge).
FAST = {"epochs": 3, "learning_rate": 1e-2, "batch_size": 8, "patience": 0, "head_lr_scale": 1.0}
TOPICS = sorted(WORDS)


def multi_label_rows(n: int = 90, seed: int = 0) -> pd.DataFrame:
    """Texts about one or two topics, labelled with the topics they mention."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        topics = sorted(rng.sample(TOPICS, rng.choice([1, 1, 2])))
        words = [w for t in topics for w in rng.sample(WORDS[t].split(), 3)] + rng.sample(FILLER, 2)
        rng.shuffle(words)
        text = " ".join(words)
        if text not in seen:
            seen.add(text)
            rows.append({"text": text, "labels": topics})
    return pd.DataFrame(rows)


def pair_rows(n: int = 90, seed: int = 0) -> pd.DataFrame:
    """Two short texts; 'same' when they are about the same topic."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        a, b = rng.choice(TOPICS), rng.choice(TOPICS)
        first = " ".join(rng.sample(WORDS[a].split(), 3) + rng.sample(FILLER, 1))
        second = " ".join(rng.sample(WORDS[b].split(), 3) + rng.sample(FILLER, 1))
        if (first, second) not in seen:
            seen.add((first, second))
            rows.append({"text_a": first, "text_b": second, "label": "same" if a == b else "different"})
    return pd.DataFrame(rows)


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertfit", *args], capture_output=True, text=True, input=stdin,
                          timeout=300)


# -- multi-label ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def multi_label_dir(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("ml")
    multi_label_rows().to_json(folder / "data.jsonl", orient="records", lines=True)
    result = train(folder / "data.jsonl", folder / "model", model=str(tiny_model_dir), progress=False,
                   **{**FAST, "epochs": 6})
    return folder / "model", result


def test_multi_label_lists_train_with_tuned_thresholds(multi_label_dir):
    folder, result = multi_label_dir
    meta = json.loads((folder / "bertfit.json").read_text())
    assert meta["task"] == "multi_label" and meta["labels"] == TOPICS
    assert len(meta["thresholds"]) == 3 and all(0 < t < 1 for t in meta["thresholds"])
    assert {"f1_micro", "f1_macro", "subset_accuracy", "hamming_loss", "per_label", "at_threshold_0.5"} <= \
        set(result.test)
    assert len(result.test["per_label"]) == 3
    assert result.test["f1_micro"] > 0.6  # the topics show in the words; an untrained head scores ~0.4
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"  # pipeline applies a sigmoid too


def test_multi_label_predict_returns_label_lists(multi_label_dir):
    folder, _ = multi_label_dir
    classifier = TextClassifier.from_pretrained(folder)
    texts = ["invoice refund crash error please", "buy quote demo today"]
    predicted = classifier.predict(texts)
    assert all(isinstance(p, list) for p in predicted)
    records = list(classifier.predict_records(texts, threshold=0.01))
    assert all(set(r["labels"]) == set(TOPICS) for r in records)  # every label clears a 0.01 threshold
    assert all("label" not in r and set(r["probabilities"]) == set(TOPICS) for r in records)
    proba = classifier.predict_proba(texts)
    assert not np.allclose(proba.sum(axis=1), 1.0)  # a sigmoid per label, not a softmax


def test_multi_label_delimited_strings_with_label_sep(tmp_path):
    frame = multi_label_rows(30)
    frame["labels"] = frame["labels"].map(";".join)
    rows, _ = clean(frame, "text", "labels", label_sep=";")
    assert all(isinstance(v, tuple) for v in rows["label"])
    assert set(frame["labels"].str.split(";").map(tuple)) >= set(rows["label"])


def test_multi_label_cli_evaluate_and_predict(multi_label_dir, tmp_path):
    folder, _ = multi_label_dir
    data = tmp_path / "holdout.jsonl"
    multi_label_rows(20, seed=5).to_json(data, orient="records", lines=True)
    done = run_cli("evaluate", str(folder), str(data))
    assert done.returncode == 0, done.stderr
    assert {"f1_micro", "subset_accuracy"} <= set(json.loads(done.stdout))
    done = run_cli("predict", str(folder), "invoice refund crash", "--threshold", "0.3")
    assert done.returncode == 0, done.stderr
    assert isinstance(json.loads(done.stdout)["labels"], list)


@pytest.mark.parametrize("name", ["labels.csv", "labels.parquet"])
def test_multi_label_predict_output_table_keeps_each_rows_label_list(multi_label_dir, tmp_path, name):
    folder, _ = multi_label_dir
    texts = ["invoice refund crash", "screen login"]
    done = run_cli("predict", str(folder), *texts, "--threshold", "0.3", "--output", str(tmp_path / name), "--quiet")
    assert done.returncode == 0, done.stderr
    table = pd.read_parquet(tmp_path / name) if name.endswith(".parquet") else pd.read_csv(tmp_path / name)
    lists = [list(v) if name.endswith(".parquet") else json.loads(v) for v in table["labels"]]
    expected = TextClassifier.from_pretrained(folder).predict_records(texts, threshold=0.3)
    assert lists == [record["labels"] for record in expected]


def test_empty_label_list_is_an_error_naming_the_row():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "labels": [["x"], [], ["y"]]})
    with pytest.raises(DataError, match="empty label list at row 1"):
        clean(frame, "text", "labels")


def test_unknown_label_in_test_is_an_error(tmp_path):
    folder = tmp_path / "splits"
    folder.mkdir()
    multi_label_rows(40).to_json(folder / "train.jsonl", orient="records", lines=True)
    test = multi_label_rows(10, seed=3)
    test.loc[0, "labels"] = ["billing", "weather"]
    test.to_json(folder / "test.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match="weather"):
        prepare(folder)


def test_threshold_tuning_raises_micro_f1_above_each_labels_own_best_cut():
    """A rare label's own-F1 cut is low and its false positives cost micro F1; the micro-F1 cuts avoid that."""
    rng = np.random.default_rng(1)
    y = np.zeros((1000, 2), dtype=int)
    y[:, 0] = rng.random(1000) < 0.4  # common label, well separated
    y[:, 1] = rng.random(1000) < 0.02  # rare label, its scores overlapping the negatives'
    rare_negatives = np.where(rng.random(1000) < 0.9, rng.uniform(0, 0.2, 1000), rng.uniform(0.2, 0.4, 1000))
    proba = np.stack([np.where(y[:, 0] == 1, rng.uniform(0.55, 1, 1000), rng.uniform(0, 0.45, 1000)),
                      np.where(y[:, 1] == 1, rng.uniform(0.2, 0.4, 1000), rare_negatives)], axis=1)
    grid = np.round(np.arange(0.05, 0.951, 0.05), 2)

    def own_f1(k: int, cut: float) -> float:
        called = proba[:, k] >= cut
        return 2 * (called & (y[:, k] == 1)).sum() / (called.sum() + y[:, k].sum())

    own = np.array([max(grid, key=lambda cut: own_f1(k, cut)) for k in range(2)])  # as bertfit chose them before
    tuned = tune_thresholds(y, proba)
    assert tuned[1] > own[1]
    assert multilabel_metrics(y, proba, tuned)["f1_micro"] > multilabel_metrics(y, proba, own)["f1_micro"]


def test_threshold_tuning_finds_each_labels_best_cut():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(400, 2))
    proba = np.where(y == 1, rng.uniform(0.25, 0.6, y.shape), rng.uniform(0.0, 0.2, y.shape))
    thresholds = tune_thresholds(y, proba)
    assert 0.2 <= thresholds[0] <= 0.25 and 0.2 <= thresholds[1] <= 0.25
    assert multilabel_metrics(y, proba, thresholds)["f1_micro"] == 1.0
    assert multilabel_metrics(y, proba, 0.5)["f1_micro"] < 0.5


# -- sentence pairs -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("pairs")
    pair_rows().to_csv(folder / "pairs.csv", index=False)
    result = train(folder / "pairs.csv", folder / "model", model=str(tiny_model_dir), progress=False, **FAST)
    return folder / "model", result


def test_pairs_are_found_by_column_names_and_encoded_together(pair_dir):
    folder, result = pair_dir
    meta = json.loads((folder / "bertfit.json").read_text())
    assert meta["text_col"] == "text_a" and meta["text_pair_col"] == "text_b"
    classifier = TextClassifier.from_pretrained(folder)
    encoded = encode(classifier.tokenizer, ["refund please"], ["crash now"], max_length=32)
    assert encoded.features["token_type_ids"][0].count(1) > 0  # the second text is segment B
    with pytest.raises(DataError, match="sentence pairs"):
        classifier.predict(["refund please"])
    assert classifier.predict(["refund please"], pairs=["crash now"])[0] in ("same", "different")
    test_rows = [json.loads(line) for line in (folder / "test.jsonl").read_text().splitlines()]
    assert {"text", "text_pair", "label"} == set(test_rows[0])


def test_pairs_predict_from_a_file_and_from_tab_separated_stdin(pair_dir, tmp_path):
    folder, _ = pair_dir
    done = run_cli("predict", str(folder), "--input", "-", stdin="refund invoice\tbill charge\ncrash\tbuy demo\n")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["text_pair"] for r in records] == ["bill charge", "buy demo"]
    done = run_cli("predict", str(folder), "--input", "-", stdin="no tab here\n")
    assert done.returncode == 2 and "no tab" in done.stderr
    done = run_cli("predict", str(folder), "refund")
    assert done.returncode == 2 and "sentence pairs" in done.stderr


def test_pairs_predict_from_a_file_with_the_models_own_column_names(pair_dir, tmp_path):
    folder, _ = pair_dir
    source = tmp_path / "new.csv"
    pd.DataFrame({"id": ["7", "8"], "text_a": ["refund invoice", "crash"], "text_b": ["bill charge", "buy demo"]}
                 ).to_csv(source, index=False)
    done = run_cli("predict", str(folder), "--input", str(source), "--quiet")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["text"], r["text_pair"]) for r in records] == [("refund invoice", "bill charge"), ("crash", "buy demo")]


def test_a_pair_missing_one_side_is_an_error():
    frame = pd.DataFrame({"text_a": ["a b", "c d"], "text_b": ["e f", None], "label": ["x", "y"]})
    with pytest.raises(DataError, match="only one side"):
        clean(frame, "text_a", "label", pair_col="text_b")


def test_the_same_pair_in_two_splits_is_a_leak(tmp_path):
    rows = pair_rows(60)
    folder = tmp_path / "splits"
    folder.mkdir()
    rows.iloc[:40].to_csv(folder / "train.csv", index=False)
    rows.iloc[[0, *range(40, 50)]].to_csv(folder / "validation.csv", index=False)
    rows.iloc[50:].to_csv(folder / "test.csv", index=False)
    with pytest.raises(DataError, match="1 text"):
        prepare(folder)
    swapped = rows.iloc[[0]].rename(columns={"text_a": "text_b", "text_b": "text_a"})  # same texts, other order
    pd.concat([swapped, rows.iloc[40:50]]).to_csv(folder / "validation.csv", index=False)
    assert prepare(folder).report["leaks"]["validation"] == 0  # (b, a) asks a different question than (a, b)


# -- long texts -----------------------------------------------------------------------------------


LONG = " ".join(["invoice refund"] * 20 + ["crash error"] * 20)  # 80 words


def test_windows_cover_the_whole_text_and_pool_back_per_text():
    tokenizer = tiny_tokenizer()
    encoded = encode(tokenizer, [LONG, "refund please"], max_length=16, long_text="window", stride=4)
    assert encoded.over_length == 1
    owners = encoded.owner.tolist()
    assert owners.count(1) == 1 and owners.count(0) > 5 and owners == sorted(owners)
    words = [tokenizer.decode(ids, skip_special_tokens=True).split() for ids, o in
             zip(encoded.features["input_ids"], owners, strict=True) if o == 0]
    assert words[0][0] == "invoice" and words[-1][-1] == "error"  # the start and the end are both seen
    logits = np.arange(len(owners) * 2, dtype=np.float32).reshape(-1, 2)
    pooled = pool(logits, encoded.owner, 2, "mean")
    np.testing.assert_allclose(pooled[0], logits[np.array(owners) == 0].mean(axis=0))
    np.testing.assert_allclose(pool(logits, encoded.owner, 2, "max")[0], logits[np.array(owners) == 0].max(axis=0))
    np.testing.assert_allclose(pooled[1], logits[-1])


def test_head_tail_keeps_the_start_and_the_end():
    tokenizer = tiny_tokenizer()
    encoded = encode(tokenizer, [LONG], max_length=18, long_text="head-tail")
    words = tokenizer.decode(encoded.features["input_ids"][0], skip_special_tokens=True).split()
    assert len(encoded.features["input_ids"][0]) <= 18 and encoded.over_length == 1
    assert words[0] == "invoice" and words[-1] == "error"
    truncated = tokenizer.decode(encode(tokenizer, [LONG], max_length=18).features["input_ids"][0],
                                 skip_special_tokens=True).split()
    assert "error" not in truncated


def test_window_mode_trains_and_predicts_pooled(tiny_model_dir, rows, tmp_path):
    long_rows = rows.copy()
    long_rows["text"] = long_rows["text"] + " " + long_rows["text"].str.repeat(4)  # about 30 tokens each
    train(long_rows, tmp_path / "m", model=str(tiny_model_dir), progress=False, max_length=12, long_text="window",
          stride=2, **FAST)
    classifier = TextClassifier.from_pretrained(tmp_path / "m")
    assert classifier.meta["long_text"] == {"mode": "window", "stride": 2, "pool": "mean"}
    assert classifier.meta["data"]["too_long"]["train"] > 0
    texts = long_rows["text"].tolist()[:5]
    encoded = encode(classifier.tokenizer, texts, max_length=12, long_text="window", stride=2)
    import torch

    with torch.no_grad():
        raw = np.vstack([classifier.model(**classifier.tokenizer.pad(
            {k: [v[i]] for k, v in encoded.features.items()}, return_tensors="pt")).logits.numpy()
            for i in range(len(encoded))])
    np.testing.assert_allclose(classifier.logits(texts), pool(raw, encoded.owner, len(texts)), atol=1e-5)


def test_pairs_with_a_long_text_mode_are_refused():
    with pytest.raises(UsageError, match="single texts"):
        encode(tiny_tokenizer(), ["a"], ["b"], max_length=16, long_text="window")


# -- imbalance ------------------------------------------------------------------------------------


def imbalanced_rows() -> pd.DataFrame:
    rows = pd.concat([pair_rows(300).assign(text=lambda f: f["text_a"] + " " + f["text_b"])[["text", "label"]]])
    same = rows[rows["label"] == "same"].iloc[:6]  # 6 of about 200 rows: 3%
    return pd.concat([rows[rows["label"] == "different"], same]).reset_index(drop=True)


def test_many_even_classes_are_not_called_imbalanced(caplog):
    rows = pd.DataFrame({"text": [f"row {i} of class {i % 40} here" for i in range(400)],
                         "label": [f"c{i % 40}" for i in range(400)]})  # 40 classes of 10: each 2.5% of rows
    with caplog.at_level(logging.WARNING, logger="bertfit"):
        prepare(rows, DataConfig())
    assert "imbalanced classes" not in caplog.text


def test_balanced_class_weights_follow_inverse_frequency(caplog):
    with caplog.at_level(logging.WARNING, logger="bertfit"):
        prepared = prepare(imbalanced_rows(), DataConfig())
    assert "imbalanced classes" in caplog.text and "'same'" in caplog.text
    weights = resolve_class_weights("balanced", prepared).numpy()
    counts = prepared.train["label"].value_counts()
    expected = [len(prepared.train) / (2 * counts[name]) for name in prepared.labels.names]
    np.testing.assert_allclose(weights, expected, rtol=1e-6)
    assert weights[prepared.labels.names.index("same")] > 5


def test_class_weights_from_a_file_and_bad_files(tmp_path):
    prepared = prepare(imbalanced_rows(), DataConfig())
    good = tmp_path / "w.json"
    good.write_text(json.dumps({"same": 4}))
    weights = resolve_class_weights(str(good), prepared).numpy()
    assert weights.tolist() == [1.0, 4.0]  # different (unnamed: 1), same
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"maybe": 2}))
    with pytest.raises(UsageError, match="maybe"):
        resolve_class_weights(str(bad), prepared)
    with pytest.raises(UsageError, match="none, balanced or a JSON file"):
        resolve_class_weights("balancd", prepared)


def test_class_weights_change_the_loss_and_are_saved(tiny_model_dir, tmp_path):
    rows = imbalanced_rows()
    plain = train(rows, None, model=str(tiny_model_dir), progress=False, **FAST)
    weighted = train(rows, tmp_path / "w", model=str(tiny_model_dir), progress=False, class_weights="balanced",
                     **FAST)
    assert plain.history[0]["train_loss"] != weighted.history[0]["train_loss"]
    meta = json.loads((tmp_path / "w" / "bertfit.json").read_text())
    assert len(meta["class_weights"]) == 2 and meta["class_weights"][1] > meta["class_weights"][0]


def test_class_weights_with_multi_label_are_refused(tmp_path):
    with pytest.raises(UsageError, match="single-label"):
        resolve_class_weights("balanced", prepare(multi_label_rows(60), DataConfig()))


# -- calibration ----------------------------------------------------------------------------------


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(4000, 3))
    proba = calibrated(true_logits, 1.0)
    y = np.array([rng.choice(3, p=p / p.sum()) for p in proba])
    overconfident = true_logits * 3  # a model three times too sure
    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(y, calibrated(overconfident, 1.0))
    after = expected_calibration_error(y, calibrated(overconfident, temperature))
    assert after < before / 2


def test_calibration_is_saved_applied_and_keeps_the_labels(trained_dir):
    classifier = TextClassifier.from_pretrained(trained_dir)
    calibration = classifier.meta["calibration"]
    assert calibration["method"] == "temperature" and calibration["temperature"] > 0
    assert {"validation_ece_before", "validation_ece_after", "test_ece_before", "test_ece_after"} <= set(calibration)
    texts = ["refund my card", "the screen froze", "a quote please"]
    logits = classifier.logits(texts)
    np.testing.assert_allclose(classifier.predict_proba(texts), calibrated(logits, calibration["temperature"]),
                               atol=1e-6)
    assert (classifier.predict_proba(texts).argmax(1) == logits.argmax(1)).all()


def test_no_calibrate_leaves_the_softmax_alone(tiny_model_dir, rows, tmp_path):
    train(rows, tmp_path / "m", model=str(tiny_model_dir), progress=False, calibrate=False, **FAST)
    classifier = TextClassifier.from_pretrained(tmp_path / "m")
    assert "calibration" not in classifier.meta and classifier.temperature == 1.0


# -- the baseline beside --------------------------------------------------------------------------


def test_the_baseline_is_scored_on_the_same_test_split(trained_dir):
    meta = json.loads((trained_dir / "bertfit.json").read_text())
    baseline = meta["baseline"]
    assert baseline["name"] == "tfidf-logreg"
    assert baseline["test"]["rows"] == meta["metrics"]["test"]["rows"]
    assert 0 <= baseline["test"]["accuracy"] <= 1


def test_a_baseline_that_wins_is_said_plainly(tiny_model_dir, rows, caplog):
    with caplog.at_level(logging.WARNING, logger="bertfit"):
        result = train(rows, None, model=str(tiny_model_dir), progress=False, epochs=1, learning_rate=1e-6,
                       batch_size=8, patience=0)  # too little training to beat TF-IDF on these word-coded texts
    assert result.baseline["test"]["accuracy"] > result.test["accuracy"]
    assert "baseline beats this model" in caplog.text


def test_no_baseline_turns_it_off(tiny_model_dir, rows):
    result = train(rows, None, model=str(tiny_model_dir), progress=False, baseline=False, **FAST)
    assert result.baseline is None and result.summary()["baseline_test"] is None


def test_train_writes_the_report_unless_told_not_to(trained_dir, tiny_model_dir, rows, tmp_path):
    page = (trained_dir / "report.html").read_text()
    assert 'id="training"' in page and "data:image/png;base64," in page
    train(rows, tmp_path / "m", model=str(tiny_model_dir), progress=False, report=False, **FAST)
    assert not (tmp_path / "m" / "report.html").exists()


def test_multi_label_trains_through_encode_once(tiny_model_dir, tmp_path):
    result = train(multi_label_rows(), None, model=str(tiny_model_dir), progress=False, train_layers="pooler",
                   baseline=False, **{**FAST, "learning_rate": 5e-2})
    assert result.classifier.meta["task"] == "multi_label" and result.history[-1]["train_loss"] < 0.7
    assert {"f1_micro", "subset_accuracy"} <= set(result.test)


def test_a_multi_label_head_starts_at_each_labels_base_rate(tiny_model_dir):
    import torch

    from bertfit.training.backbone import load_base, start_at_base_rates

    model, tokenizer = load_base(str(tiny_model_dir), ("common", "rare", "never"), multi_label=True)
    targets = np.zeros((200, 3))
    targets[:100, 0] = 1  # 50%
    targets[:10, 1] = 1  # 5%
    start_at_base_rates(model, targets)
    model.eval()
    batch = tokenizer(["refund my card please", "the printer jammed again", "hello"], padding=True,
                      return_tensors="pt")
    with torch.no_grad():
        probabilities = torch.sigmoid(model(**batch).logits).mean(0).numpy()
    # the fresh head's weights are small, so each label starts near its rate; a label never seen stays finite
    assert probabilities[0] == pytest.approx(0.5, abs=0.1)
    assert probabilities[1] == pytest.approx(0.05, abs=0.03)
    assert 0 < probabilities[2] < 0.01
    assert model.classifier.bias[2].item() == pytest.approx(np.log(0.0025 / 0.9975), rel=1e-4)
