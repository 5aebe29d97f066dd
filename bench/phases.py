"""Where a run's seconds go: the plain Trainer recipe against bertfit's default, phase by phase.

`bench/accuracy.py` gives each recipe's whole wall time over several seeds; when the default takes
longer than plain, this says on what. Both recipes run on one data set with the same seed, each
--repeats times in mirrored order (plain, default, default, plain, ...), after accuracy.py's
untimed warm-up, with these phases timed inside every run:

  steps        Trainer.train less the evaluations and checkpoints inside it: the training loop
  validation   Trainer.evaluate: the validation pass after each epoch (plain runs none)
  checkpoints  Trainer's checkpoint per epoch and the best one loaded back (plain keeps none)
  test         scoring the test split (plain: Trainer.predict; bertfit: the predict code path)
  rest         the whole run less the above: loading the model, tokenizing, calibration

Printed: per recipe, the median and min-max of each phase, and the ratio of the medians of the
whole runs (default / plain).

    python bench/phases.py --dataset mrpc
    python bench/phases.py --dataset goemotions --train-rows 5000 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict

from accuracy import load, run_once, warm_up
from timing import SHARED, alternate, measured_on, quiet, shared_missing, spread, summary

RECIPES = ("plain", "default")
PHASES = ("steps", "validation", "checkpoints", "test", "rest")


class Clock:
    """Seconds spent inside chosen methods, summed per label until reset."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, owner: type, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - started

        setattr(owner, name, timed)


def instrumented() -> Clock:
    from transformers import Trainer

    from bertfit.model import TextClassifier

    clock = Clock()
    clock.wrap(Trainer, "train", "train")
    clock.wrap(Trainer, "evaluate", "validation")
    clock.wrap(Trainer, "_save_checkpoint", "checkpoints")
    clock.wrap(Trainer, "_load_best_model", "checkpoints")
    clock.wrap(Trainer, "predict", "test")
    clock.wrap(TextClassifier, "logits", "test")  # bertfit scores the test split only, once
    return clock


def phases(clock: Clock, whole: float) -> dict[str, float]:
    spent = clock.seconds
    inside = spent["validation"] + spent["checkpoints"]  # both run inside Trainer.train
    figures = {"steps": spent["train"] - inside, "validation": spent["validation"],
               "checkpoints": spent["checkpoints"], "test": spent["test"]}
    figures["rest"] = whole - sum(figures.values())
    return {"whole": whole, **figures}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--dataset", default="mrpc")
    parser.add_argument("--train-rows", type=int, help="a sample of this many training rows")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each recipe, mirrored order (default 2)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if shared_missing():
        return 0
    quiet()
    prepared = load(args.dataset, args.seed, args.train_rows)
    warm_up(list(RECIPES), prepared, args.seed, {})
    clock = instrumented()
    runs: dict[str, list[dict[str, float]]] = {recipe: [] for recipe in RECIPES}
    metric: dict[str, float] = {}
    for _, recipe in alternate(RECIPES, args.repeats):
        clock.seconds.clear()
        measured = run_once(recipe, prepared, args.seed, None, {})
        runs[recipe].append(phases(clock, measured["seconds"]))
        metric[recipe] = measured["value"]
        print(json.dumps({"recipe": recipe, **{k: round(v, 1) for k, v in runs[recipe][-1].items()}}),
              file=sys.stderr, flush=True)
    print(f"{args.dataset} ({len(prepared.train)} training rows, seed {args.seed}), {measured_on()}; data: {SHARED}")
    print("| recipe | test metric | whole run, s | " + " | ".join(PHASES) + " |")
    print("| --- " * (3 + len(PHASES)) + "|")
    for recipe in RECIPES:
        cells = []
        for phase in ("whole", *PHASES):
            values = [r[phase] for r in runs[recipe]]
            cells.append(f"{summary(values)[0]:.1f} ({spread(values)})")
        print(f"| {recipe} | {metric[recipe]:.4f} | " + " | ".join(cells) + " |")
    medians = {recipe: summary([r["whole"] for r in runs[recipe]])[0] for recipe in RECIPES}
    print(f"default / plain, medians of whole runs: {medians['default'] / medians['plain']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
