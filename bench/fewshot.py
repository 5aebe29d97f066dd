"""Few labelled rows per class: bertfit's methods beside TF-IDF and the setfit library, in one run.

Reads the public splits in ../shared/datasets (never copied into this repo). For each data set,
size (rows per class) and seed, a seeded sample of that many training rows per class (all of a
smaller class) is the labelled data; the full public test split is the test. What each side gets:

  bertfit    the sample as a training file beside the test file, as a user with those two files runs
             `bertfit train train.csv+test.csv`: validation is carved from the sample (15% by class, at
             least one row), the test split is scored once. Recipes: `finetune` (--method finetune),
             `contrastive` (--method contrastive); `auto` is whichever of the two `--method auto` picks
             for that sample (the same seeded run, so it is not run twice; the row says which).
  tfidf      bertfit's TF-IDF + logistic regression baseline on the same splits.
  setfit     the setfit library (bench-only: pip install setfit) on the same body (the embedded
             all-MiniLM-L6-v2) with its default recipe (TrainingArguments() defaults: 1 epoch of
             oversampled pairs, batch 16, body lr 2e-5, logistic-regression head), trained on the
             whole sample (it holds nothing out). Where its default epoch would exceed bertfit's pair
             cap (bertfit.training.contrastive.MAX_PAIRS), max_steps caps it at the same number of pairs,
             and the row says so.

Printed: per data set, size and recipe, the test accuracy as mean ± sample std over the seeds with
the min-max, and the wall seconds (median over the seeds, so one run slowed by another job does not
move it; setfit: load, train, predict; bertfit: `train` without its baseline or report). Every run
is also appended as one JSON line to --json as it finishes, so a run stopped half-way keeps what it
measured. Recipes run in mirrored order per seed.

    python bench/fewshot.py       # trec, sms-spam at 8-64 rows per class, banking77 at 8 and 16; 5 seeds
    python bench/fewshot.py --datasets trec --sizes 8,16 --seeds 3 --json fewshot.jsonl
    python bench/fewshot.py --recipes tfidf,contrastive,setfit  # without fine-tuning
    python bench/fewshot.py --datasets trec,sms-spam --seeds 3 --setfit-sizes 8,16  # setfit's large epochs skipped
    python bench/fewshot.py --sizes 32,64 --first-seed 45 --seeds 2 --json more.jsonl  # two more seeds
    python bench/fewshot.py --table fewshot.jsonl  # the table of a finished run, auto at today's threshold
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from timing import SHARED, measured_on, quiet, shared_missing

HERE = Path(__file__).resolve().parent
SIZES = {"trec": (8, 16, 32, 64), "sms-spam": (8, 16, 32, 64), "banking77": (8, 16)}
RECIPES = ("tfidf", "finetune", "contrastive", "setfit")
FIRST_SEED = 42


def sample(train: pd.DataFrame, per_class: int, seed: int) -> pd.DataFrame:
    """``per_class`` rows of each class (all of a smaller one), seeded, shuffled."""
    parts = [rows.sample(n=min(per_class, len(rows)), random_state=seed) for _, rows in train.groupby("label")]
    return pd.concat(parts).sample(frac=1, random_state=seed).reset_index(drop=True)


def prepared_for(rows: pd.DataFrame, test: pd.DataFrame, seed: int):
    """The splits bertfit makes of a training file (the sample) and a test file."""
    from bertfit.config import DataConfig
    from bertfit.data.cleaning import prepare

    with tempfile.TemporaryDirectory() as folder:
        rows.to_csv(Path(folder) / "train.csv", index=False)
        test.to_csv(Path(folder) / "test.csv", index=False)
        return prepare(folder, DataConfig(seed=seed, drop_leaks=True))


def run_setfit(rows: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from bertfit.training.backbone import default_model_path
    from bertfit.training.contrastive import MAX_PAIRS, distinct_pairs

    started = time.perf_counter()
    pairs = distinct_pairs(rows["label"].value_counts().tolist())  # one epoch of setfit's default oversampling
    capped = pairs > MAX_PAIRS
    model = SetFitModel.from_pretrained(default_model_path())
    with tempfile.TemporaryDirectory(prefix="bench-setfit-") as scratch:  # its checkpoints and logs, not in the repo
        # report_to="none": with a tracker installed (bertfit's tracking extra brings mlflow) setfit's default
        # "all" would log every run to it, a cost that is not the recipe's, and leave mlflow.db in the cwd
        args = TrainingArguments(output_dir=scratch, logging_dir=scratch, seed=seed, report_to="none",
                                 **({"max_steps": MAX_PAIRS // 16} if capped else {}))
        trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_pandas(rows[["text", "label"]]))
        trainer.train()
    predicted = model.predict(test["text"].tolist())
    accuracy = float((pd.Series(list(predicted)).astype(str).to_numpy() == test["label"].astype(str).to_numpy()).mean())
    return {"accuracy": accuracy, "seconds": time.perf_counter() - started,
            "note": f"capped at {MAX_PAIRS} pairs (default {pairs})" if capped else f"{pairs} pairs"}


def run_bertfit(method: str, prepared, seed: int) -> dict:
    from bertfit.training.run import train

    started = time.perf_counter()
    result = train(prepared, out=None, progress=False, baseline=False, report=False, seed=seed, method=method)
    return {"accuracy": result.test["accuracy"], "seconds": time.perf_counter() - started,
            "note": f"best epoch {result.best_epoch}/{len(result.history)}" if method == "finetune"
            else f"{result.classifier.record.method['pairs_per_epoch']} pairs"}


def run_once(recipe: str, rows: pd.DataFrame, prepared, test: pd.DataFrame, seed: int) -> dict:
    if recipe == "tfidf":
        from bertfit.training.baseline import fit_and_score

        started = time.perf_counter()
        metrics = fit_and_score(prepared, seed=seed)
        return {"accuracy": metrics["accuracy"], "seconds": time.perf_counter() - started, "note": ""}
    if recipe == "setfit":
        return run_setfit(rows, test, seed)
    return run_bertfit(recipe, prepared, seed)


def auto_choice(prepared) -> tuple[str, str]:
    from bertfit.config import TrainConfig
    from bertfit.training.contrastive import choose_method

    return choose_method(prepared, TrainConfig())


def run(name: str, sizes: list[int], recipes: list[str], seeds: list[int], out, setfit_sizes: set[int] | None
        ) -> list[dict]:
    frame = {split: pd.read_csv(SHARED / name / f"{split}.csv") for split in ("train", "test")}
    measured = []
    for size in sizes:
        for seed in seeds:
            rows = sample(frame["train"], size, seed)
            prepared = prepared_for(rows, frame["test"], seed)
            chosen, why = auto_choice(prepared)
            here = [r for r in recipes if r != "setfit" or setfit_sizes is None or size in setfit_sizes]
            for recipe in here if (seed - FIRST_SEED) % 2 == 0 else here[::-1]:  # mirrored per seed
                figures = run_once(recipe, rows, prepared, frame["test"], seed)
                row = {"dataset": name, "size": size, "seed": seed, "recipe": recipe,
                       "accuracy": round(figures["accuracy"], 4), "seconds": round(figures["seconds"], 1),
                       "note": figures["note"], "train_rows": len(prepared.train), "auto": chosen}
                print(json.dumps(row), file=sys.stderr, flush=True)
                if out:
                    out.write(json.dumps(row) + "\n")
                    out.flush()
                measured.append(row)
                if recipe == chosen:
                    measured.append({**row, "recipe": "auto", "note": f"= {chosen} ({why})"})
    return measured


def saved(path: Path) -> list[dict]:
    """The runs of a --json file (an "auto" row written by an older version is dropped: it is recomputed)."""
    return [row for row in map(json.loads, path.read_text().splitlines()) if row["recipe"] != "auto"]


def with_auto(rows: list[dict]) -> list[dict]:
    """Each sample's auto row: the run of the method this bertfit's threshold picks for its training rows."""
    from bertfit.training.contrastive import few_shot_threshold

    classes = {}
    for row in rows:  # the classes of a data set: its tfidf rows know nothing of them, so count from the file
        if row["dataset"] not in classes:
            classes[row["dataset"]] = pd.read_csv(SHARED / row["dataset"] / "train.csv")["label"].nunique()
    out = []
    for row in rows:
        out.append(row)
        per_class = row["train_rows"] / classes[row["dataset"]]
        chosen = "contrastive" if per_class < few_shot_threshold() else "finetune"
        if row["recipe"] == chosen:
            out.append({**row, "recipe": "auto", "note": f"= {chosen} ({per_class:.1f} training rows per class)"})
    return out


def table(rows: list[dict]) -> str:
    lines = ["| data set | rows per class | recipe | test accuracy (mean ± std) | min-max | seconds (median) | seeds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    keys = []
    for row in rows:
        key = (row["dataset"], row["size"], row["recipe"])
        if key not in keys:
            keys.append(key)
    for dataset, size, recipe in keys:
        runs = [r for r in rows if (r["dataset"], r["size"], r["recipe"]) == (dataset, size, recipe)]
        values = [r["accuracy"] for r in runs]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        name = recipe
        if recipe == "auto":
            picked = sorted({r["note"].split(" ")[1] for r in runs})
            name = f"auto (= {', '.join(picked)})"
        lines.append(f"| {dataset} | {size} | {name} | {statistics.mean(values):.3f} ± {std:.3f} | "
                     f"{min(values):.3f}-{max(values):.3f} | {statistics.median(r['seconds'] for r in runs):.0f} | "
                     f"{len(runs)} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(SIZES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--sizes", help="rows per class, comma-separated (default: 8,16,32,64; banking77 8,16)")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=5, help="this many seeds, counting up from --first-seed")
    parser.add_argument("--first-seed", type=int, default=FIRST_SEED,
                        help="the first seed (default: %(default)s); more seeds for a finished run: --first-seed 45")
    parser.add_argument("--setfit-sizes", help="run setfit only at these rows per class (default: every size)")
    parser.add_argument("--json", help="append every run to this JSON-lines file as it finishes")
    parser.add_argument("--table", metavar="JSONL", help="print the table of a finished run's --json file and exit; "
                        "auto is then what this bertfit's threshold picks for each sample")
    args = parser.parse_args()
    if args.table:
        print(table(with_auto(saved(Path(args.table)))))
        return 0
    quiet()
    names = [name.strip() for name in args.datasets.split(",") if name.strip()]
    recipes = [name.strip() for name in args.recipes.split(",") if name.strip()]
    unknown = [r for r in recipes if r not in RECIPES] + [n for n in names if n not in SIZES]
    if unknown:
        print(f"error: unknown {unknown}; recipes: {', '.join(RECIPES)}; data sets: {', '.join(SIZES)}",
              file=sys.stderr)
        return 2
    if shared_missing():
        return 0
    if "setfit" in recipes:
        try:
            import setfit  # noqa: F401
        except ImportError:
            print("skipped: setfit is not installed (a bench-only reference): pip install setfit", file=sys.stderr)
            return 0
    print(measured_on(), flush=True)
    seeds = [args.first_seed + i for i in range(args.seeds)]
    rows = []
    out = open(args.json, "a") if args.json else None  # noqa: SIM115 - kept open for the whole run
    try:
        for name in names:
            sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else list(SIZES[name])
            setfit_sizes = {int(s) for s in args.setfit_sizes.split(",")} if args.setfit_sizes else None
            rows += run(name, sizes, recipes, seeds, out, setfit_sizes)
            print(table([r for r in rows if r["dataset"] == name]), flush=True)
    finally:
        if out:
            out.close()
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
