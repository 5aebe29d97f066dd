"""The benchmarks still run: each one on a small stand-in for the shared data sets, in its own process.

The figures in the README come from `bench/`, which the rest of the suite never imports; code there
rots silently (a bench once read bertfit.json as a dict after it became a record). Here each bench
runs its real code path end to end on a few dozen rows written in the shared layout
(BERTFIT_SHARED), with the embedded model, and must finish, print its table and name every recipe it
was asked for. What the figures are is not judged here: the rows are too few to mean anything.
References that are bench-only (cleanlab, setfit) are left out where they are not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_rows

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A stand-in shared folder: datasets/trec and datasets/banking77, three classes, fixed splits."""
    root = tmp_path_factory.mktemp("shared")
    rows = make_rows(per_class=45, seed=3)
    for name in ("trec", "banking77"):
        folder = root / "datasets" / name
        folder.mkdir(parents=True)
        for split, part in (("train", rows.iloc[:90]), ("validation", rows.iloc[90:112]), ("test", rows.iloc[112:])):
            part.to_csv(folder / f"{split}.csv", index=False)
    return root


def bench(script: str, shared: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "BERTFIT_SHARED": str(shared)}
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=BENCH, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "skipped" not in done.stdout, done.stdout
    return done


def table_rows(stdout: str) -> list[list[str]]:
    """The Markdown table's body rows, cells stripped."""
    lines = [line for line in stdout.splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_accuracy_bench_runs_every_recipe(shared, tmp_path):
    out = tmp_path / "rows.json"
    done = bench("accuracy.py", shared, "--datasets", "trec", "--recipes", "tfidf,plain,v0.1,default", "--seeds", "1",
                 "--epochs", "1", "--json", str(out))
    recipes = [row[2].split()[0] for row in table_rows(done.stdout)]
    assert recipes == ["tfidf", "plain", "v0.1", "default"]
    saved = json.loads(out.read_text())
    assert {row["recipe"].split()[0] for row in saved["rows"]} == {"tfidf", "plain", "v0.1", "default"}


def test_audit_bench_runs(shared):
    done = bench("audit.py", shared, "--datasets", "trec", "--shares", "0.1", "--kinds", "uniform",
                 "--methods", "both")
    methods = [row[2] for row in table_rows(done.stdout)]
    assert "bertfit audit (both)" in methods


def test_audit_rules_bench_reads_what_the_audit_bench_kept(shared, tmp_path):
    bench("audit.py", shared, "--datasets", "trec", "--shares", "0.1", "--kinds", "uniform", "--methods", "both",
          "--keep", str(tmp_path))
    kept = sorted(tmp_path.glob("*.npz"))
    done = bench("audit_rules.py", shared, *map(str, kept))
    rules = [row[1] for row in table_rows(done.stdout) if row[0] == ""]
    assert {"bertfit", "elsewhere", "strict count"} <= set(rules)


def test_retrain_kept_bench_retrains_on_a_kept_audit_dropped_and_relabelled(shared, tmp_path):
    bench("audit.py", shared, "--datasets", "trec", "--shares", "0.1", "--kinds", "uniform", "--methods", "tfidf",
          "--keep", str(tmp_path))
    kept = sorted(tmp_path.glob("*.npz"))
    done = bench("retrain_kept.py", shared, str(kept[0]), "--dataset", "trec")
    assert "flagged" in done.stdout
    assert "relabel: test accuracy" in done.stdout and "drop: test accuracy" in done.stdout


def test_fewshot_bench_runs(shared, tmp_path):
    done = bench("fewshot.py", shared, "--datasets", "trec", "--sizes", "8", "--recipes", "tfidf,finetune",
                 "--seeds", "1", "--json", str(tmp_path / "runs.jsonl"))
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert {run["recipe"] for run in runs} == {"tfidf", "finetune"}
    assert "trec" in done.stdout


def test_pair_steps_bench_runs_every_way(shared):
    done = bench("pair_steps.py", shared, "--dataset", "banking77", "--steps", "2", "--repeats", "1")
    ways = [row[0] for row in table_rows(done.stdout)]
    assert ways == ["layer+joint", "pooled+joint", "pooled+sides"]


def test_tune_bench_runs(shared, tmp_path):
    pytest.importorskip("optuna")
    bench("tune.py", shared, "--datasets", "trec", "--default-seeds", "1", "--runs", "2", "--json",
          str(tmp_path / "tune.json"))
    row = json.loads((tmp_path / "tune.json").read_text())["rows"][0]
    assert row["dataset"] == "trec" and row["trials_complete"] >= 1


def test_predict_bench_runs(shared, trained_dir):
    pytest.importorskip("onnxruntime")
    done = bench("predict.py", shared, str(trained_dir), "--datasets", "banking77", "--repeats", "1")
    assert "pipeline" in done.stdout and "bertfit" in done.stdout


def test_phases_bench_times_both_recipes(shared):
    done = bench("phases.py", shared, "--dataset", "trec", "--repeats", "1")
    rows = {row[0]: row for row in table_rows(done.stdout)}
    assert set(rows) == {"plain", "default"} and "default / plain" in done.stdout
    validation = rows["default"][4]  # the default scores validation after each epoch, plain does not
    assert float(validation.split()[0]) > 0 and float(rows["plain"][4].split()[0]) == 0


def test_epoch_choice_bench_scores_every_rule_from_one_run(shared, tmp_path):
    folder = shared / "datasets" / "multi"
    folder.mkdir(parents=True, exist_ok=True)
    rows = make_rows(per_class=30, seed=5)
    rows["labels"] = [[label, "urgent"] if i % 3 == 0 else [label] for i, label in enumerate(rows["label"])]
    rows = rows.drop(columns="label")
    for split, part in (("train", rows.iloc[:60]), ("validation", rows.iloc[60:75]), ("test", rows.iloc[75:])):
        part.to_json(folder / f"{split}.jsonl", orient="records", lines=True)
    out = tmp_path / "epochs.json"
    done = bench("epoch_choice.py", shared, "--dataset", "multi", "--rows", "60", "--seeds", "42", "--json", str(out))
    assert [row[0] for row in table_rows(done.stdout)] == ["at 0.5", "shared cut", "tuned cuts", "loss", "(best test)"]
    run = json.loads(out.read_text())[0]
    best_test = max(epoch["test"] for epoch in run["epochs"])
    assert run["chosen"]["(best test)"]["test"] == best_test
    assert all(pick["test"] <= best_test for pick in run["chosen"].values())


def test_blend_bench_weighs_model_and_baseline_by_the_beat_both_rule(shared):
    done = bench("blend.py", shared, "--datasets", "trec", "--seeds", "1")
    assert [row[0] for row in table_rows(done.stdout)] == ["trec"]
    run = json.loads(next(line for line in done.stderr.splitlines() if line.startswith("{")))
    valid = run["validation"]
    if run["weight"] == 1.0:  # the model alone: the blend is it
        assert run["blend"] == run["model"] and valid["blend"] == valid["model"]
    else:  # a blend is taken only where it beats both on validation
        assert 0.0 < run["weight"] < 1.0 and valid["blend"] > max(valid["model"], valid["baseline"])
