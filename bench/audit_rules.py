"""Flagging rules side by side on the out-of-fold probabilities `bench/audit.py --keep DIR` saved.

Each kept file holds one audit's probabilities (rows x classes), the noisy labels and which rows were
planted. The same probabilities go through several rules that decide which rows to flag, so the
difference between two lines is the rule alone:

  bertfit            the rule `bertfit audit` flags by (bertfit.auditing.confident.find_suspects): as many
                     rows as confident.error_count estimates (from four classes, the mean of the calibrated
                     joint's off-diagonal and the rows confidently elsewhere; under four, the first alone),
                     lowest self-confidence first, unless their own label still wins (here on the training
                     rows alone; the audit judges train and validation together, so its counts differ by a
                     few rows)
  calibrated count   the rule before: as many rows as the calibrated joint counts off its diagonal
  elsewhere          every row confidently in another class (its probability there reaches that class's
                     threshold) that its own label does not win
  strict count       as many rows as are confidently elsewhere AND under their own class's threshold,
                     lowest self-confidence first: fewer flags, higher precision, lower recall
  cleanlab           cleanlab.filter.find_label_issues with its defaults (bench-only; skipped when absent)

Printed per file and rule: rows flagged, precision, recall and F1 against the planted rows, and once
per file the precision at k (k = rows planted, every row ranked by self-confidence). Numpy only, seconds.

    python bench/audit.py --datasets trec --shares 0.1 --kinds uniform --methods both --keep kept
    python bench/audit_rules.py kept/*.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from bertfit.auditing.confident import confident_classes, find_suspects, normalised_margin, thresholds  # noqa: E402


def scores(flagged: np.ndarray, planted: np.ndarray) -> tuple[int, float, float, float]:
    hits = int((flagged & planted).sum())
    precision, recall = hits / max(int(flagged.sum()), 1), hits / max(int(planted.sum()), 1)
    return int(flagged.sum()), precision, recall, 2 * precision * recall / max(precision + recall, 1e-12)


def rules(proba: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    rows = np.arange(len(labels))
    own = proba[rows, labels]
    wins = normalised_margin(proba, labels) >= 0
    confident = confident_classes(proba, labels)
    elsewhere = (confident >= 0) & (confident != labels) & ~wins
    below = elsewhere & (own < thresholds(proba, labels)[labels])
    strict = np.zeros(len(labels), dtype=bool)
    strict[np.argsort(own, kind="stable")[:int(below.sum())]] = True
    found = find_suspects(proba, labels)
    calibrated = np.zeros(len(labels), dtype=bool)
    calibrated[np.argsort(own, kind="stable")[:int(found.joint.sum() - np.trace(found.joint))]] = True
    out = {"bertfit": found.flagged, "calibrated count": calibrated & ~wins, "elsewhere": elsewhere,
           "strict count": strict & ~wins}
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return out
    out["cleanlab"] = find_label_issues(labels, proba)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kept", nargs="+", help=".npz files written by bench/audit.py --keep")
    args = parser.parse_args()
    print("| kept file | rule | flagged | precision | recall | F1 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in map(Path, args.kept):
        kept = np.load(path)
        proba = kept["proba"] / kept["proba"].sum(axis=1, keepdims=True)
        labels, planted = kept["noisy"].astype(np.int64), kept["planted"].astype(bool)
        own = proba[np.arange(len(labels)), labels]
        top = np.zeros(len(labels), dtype=bool)
        top[np.argsort(own, kind="stable")[:int(planted.sum())]] = True
        print(f"| {path.stem} ({len(labels)} rows, {int(planted.sum())} planted) | precision at k "
              f"{scores(top, planted)[1]:.3f} | | | | |")
        for name, flagged in rules(proba, labels).items():
            count, precision, recall, f1 = scores(flagged, planted)
            print(f"| | {name} | {count} | {precision:.3f} | {recall:.3f} | {f1:.3f} |")


if __name__ == "__main__":
    main()
