"""`bertfit tune` against the default recipe and TF-IDF, side by side in one run, with a budget of default runs.

Reads the public splits in ../shared/datasets (never copied into this repo). Per data set:

  tfidf     bertfit's TF-IDF + logistic regression baseline
  default   `bertfit train` with no flags, over --default-seeds seeds (42, 43, ...): its mean and
            min-max are the noise a difference must clear; the first run's wall seconds set the budget
  tuned     `bertfit.tuning.run.tune` with --budget = --runs x the default's first wall time (3 by
            default), seed 42, its own journal in a temporary folder; trials complete and pruned

Printed: a Markdown table of test metrics (accuracy; micro F1 for multi-label), the tuned model's
difference from the default's mean, called noise when inside the default's min-max, the budget and
what the search spent. The first line gives the git commit and the machine.

    python bench/tune.py                          # trec, banking77, mrpc, phishing (many hours on 2 cores)
    python bench/tune.py --datasets trec --default-seeds 3
    python bench/tune.py --datasets trec --train-rows 600 --runs 2 --default-seeds 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from accuracy import load
from timing import measured_on, quiet, shared_missing

HERE = Path(__file__).resolve().parent
DATASETS = ("trec", "banking77", "mrpc", "phishing")
FIRST_SEED = 42


def main_value(metrics: dict) -> float:
    return metrics["accuracy"] if "accuracy" in metrics else metrics["f1_micro"]


def run(name: str, rows: int | None, seeds: int, runs: float) -> dict:
    from bertfit.training.baseline import fit_and_score
    from bertfit.training.run import train
    from bertfit.tuning.run import tune

    prepared = load(name, FIRST_SEED, rows)  # bench/accuracy.py's: the same leaks dropped, the same sample
    row: dict = {"dataset": name, "train_rows": len(prepared.train), "tfidf": main_value(fit_and_score(prepared))}
    defaults, seconds = [], []
    for seed in range(FIRST_SEED, FIRST_SEED + seeds):
        started = time.perf_counter()
        result = train(prepared, out=None, progress=False, baseline=False, report=False, seed=seed)
        seconds.append(time.perf_counter() - started)
        defaults.append(main_value(result.test))
        print(json.dumps({"dataset": name, "recipe": "default", "seed": seed, "value": defaults[-1],
                          "seconds": round(seconds[-1], 1)}), file=sys.stderr, flush=True)
    budget = runs * seconds[0]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        tuned = tune(prepared, Path(folder) / "tuned", budget=f"{budget:.0f}s", progress=False, seed=FIRST_SEED)
        spent = time.perf_counter() - started
    study = tuned.study
    value = main_value(tuned.trained.test)
    mean = statistics.mean(defaults)
    inside = min(defaults) <= value <= max(defaults)
    row |= {"default_mean": mean, "default_min": min(defaults), "default_max": max(defaults),
            "default_seconds": round(statistics.median(seconds), 1), "tuned": value,
            "tuned_minus_default": value - mean, "noise": inside and seeds > 1,
            "budget_seconds": round(budget), "tune_seconds": round(spent),
            "trials_complete": study["trials_complete"], "trials_pruned": study["trials_pruned"],
            "trials_skipped": study.get("trials_skipped", 0),
            "best_trial": study["best_trial"], "top_trial": study.get("top_trial"), "margin": study.get("margin"),
            "best_params": study["best_params"], "best_validation": study["best_validation"],
            "default_validation": study["default_validation"]}
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| data set | TF-IDF | default (mean, min-max) | tuned | tuned - default | trials (pruned; not started) "
             "| budget s / spent s |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        diff = f"{100 * r['tuned_minus_default']:+.1f} pt" + (" (noise)" if r["noise"] else "")
        lines.append(f"| {r['dataset']} | {r['tfidf']:.3f} | {r['default_mean']:.3f} ({r['default_min']:.3f}-"
                     f"{r['default_max']:.3f}) | {r['tuned']:.3f} | {diff} | {r['trials_complete']} "
                     f"({r['trials_pruned']}; {r.get('trials_skipped', 0)}) | "
                     f"{r['budget_seconds']} / {r['tune_seconds']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--default-seeds", type=int, default=3, help="default-recipe runs (their spread is the noise)")
    parser.add_argument("--runs", type=float, default=3.0, help="the budget, in default-recipe wall times (default 3)")
    parser.add_argument("--train-rows", type=int, help="a sample of this many training rows (random_state 0)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    if shared_missing():
        return 0
    try:
        import optuna  # noqa: F401
    except ImportError:
        print("skipped: optuna is not installed (pip install 'bertfit[tune]')")
        return 0
    quiet()
    print(measured_on(), flush=True)
    rows = [run(name, args.train_rows, args.default_seeds, args.runs) for name in args.datasets.split(",")]
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"measured_on": measured_on(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
