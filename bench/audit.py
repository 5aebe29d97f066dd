"""How well `bertfit audit` finds planted label errors, beside cleanlab on TF-IDF probabilities, in one run.

Reads the public splits in ../shared/datasets (never copied into this repo). For each data set,
noise share and kind, a seeded share of the training rows gets a wrong label: `uniform` (any other
class) or `confusable` (the class a TF-IDF model most often mistakes the true one for, measured
out of fold on the clean training split: the harder case). Validation and test stay clean. Then,
side by side:

  bertfit   `bertfit.auditing.run.audit` on the noisy data (--methods, default both; 5 folds), its train rows
  cleanlab  `cleanlab.filter.find_label_issues` (its defaults) given TF-IDF + logistic regression
            out-of-fold probabilities (bertfit's baseline features, 5 stratified folds): the common
            cheap pipeline; and the same given bertfit's own out-of-fold probabilities (the audit's,
            so the two differ only in the rule that flags). cleanlab is AGPL and a bench-only
            dependency (pip install cleanlab).

Printed per row: flagged, precision, recall and F1 against the planted flips, precision at k
(k = rows planted; every training row ranked by self-confidence, 1 - the given label's out-of-fold
probability), and seconds. The first line gives the git commit and the machine.

    python bench/audit.py                                   # trec, banking77, sms-spam; 5% and 10%; both kinds
    python bench/audit.py --datasets trec --shares 0.1 --kinds uniform
    python bench/audit.py --retrain                         # also: the default recipe on noisy, cleaned, clean data

--retrain (slow: four `train` runs per row) adds the test accuracy of the default recipe trained on
the noisy data, on the noisy data without the rows bertfit flagged (--drop-suspects auto), on the
noisy data with those rows given the suggested label (--relabel-suspects auto), and on the clean
data, the share of the noisy-to-clean gap each recovered, and the noisy run's wall seconds
(train_seconds), to set beside the audit's own.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from timing import SHARED, measured_on, quiet, shared_missing

HERE = Path(__file__).resolve().parent
DATASETS = ("trec", "banking77", "sms-spam")


def tfidf_oof(texts: list[str], labels: np.ndarray, classes: int, seed: int) -> np.ndarray:
    from bertfit.auditing.evidence import out_of_fold

    proba, _ = out_of_fold({"tfidf": texts}, labels, {"tfidf": texts[:1]}, classes, 5, seed)
    return proba


def plant(labels: np.ndarray, share: float, kind: str, confusion: np.ndarray, seed: int) -> np.ndarray:
    """Noisy labels: `share` of rows flipped, to a random other class or to the true class's likeliest mistake."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    rows = rng.choice(len(labels), int(round(share * len(labels))), replace=False)
    classes = confusion.shape[0]
    for i in rows:
        if kind == "uniform":
            noisy[i] = (labels[i] + rng.integers(1, classes)) % classes
        else:
            mistakes = confusion[labels[i]].copy()
            mistakes[labels[i]] = -1
            noisy[i] = int(mistakes.argmax())
    return noisy


def scores(flagged: np.ndarray, ranking: np.ndarray, planted: np.ndarray) -> dict:
    hits = int((flagged & planted).sum())
    precision = hits / max(int(flagged.sum()), 1)
    recall = hits / max(int(planted.sum()), 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-12)
    k = int(planted.sum())
    at_k = float(planted[np.argsort(-ranking, kind="stable")[:k]].mean()) if k else 0.0
    return {"flagged": int(flagged.sum()), "precision": round(precision, 3), "recall": round(recall, 3),
            "f1": round(f1, 3), "precision_at_k": round(at_k, 3)}


def run(name: str, share: float, kind: str, seed: int, retrain: bool, methods: list[str],
        keep: str | None = None) -> list[dict]:
    from bertfit.config import DataConfig
    from bertfit.data import prepare

    prepared = prepare(SHARED / name, DataConfig(drop_leaks=True, seed=seed))
    labels = prepared.labels
    clean = labels.encode(prepared.train["label"].tolist())
    texts = prepared.train["text"].tolist()
    clean_proba = tfidf_oof(texts, clean, len(labels), seed)
    confusion = np.zeros((len(labels), len(labels)))
    np.add.at(confusion, (clean, clean_proba.argmax(1)), 1)
    noisy = plant(clean, share, kind, confusion, seed)
    planted = noisy != clean
    head = {"dataset": name, "share": share, "kind": kind}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "noisy"
        data.mkdir()
        train = prepared.train.assign(label=[labels.names[i] for i in noisy])
        for split, frame in (("train", train), ("validation", prepared.validation), ("test", prepared.test)):
            frame.to_csv(data / f"{split}.csv", index=False)
        find_label_issues = _cleanlab()
        if find_label_issues is not None:
            started = time.perf_counter()
            proba = tfidf_oof(texts, noisy, len(labels), seed)
            issues = find_label_issues(noisy, proba)
            self_confidence = 1 - proba[np.arange(len(noisy)), noisy]
            rows.append(head | {"method": "cleanlab on TF-IDF", **scores(issues, self_confidence, planted),
                                "seconds": round(time.perf_counter() - started, 1)})
        trained: dict[str, float] = {}
        for method in methods:
            row, flagged, own, suggested = audited(data, method, noisy, planted)
            if keep:
                np.savez(Path(keep) / f"{name}-{share}-{kind}-{method}.npz", proba=own, noisy=noisy, planted=planted)
            if retrain:
                row.update(retrained(train, flagged, suggested, prepared, folder, seed, trained))
            rows.append(head | row)
            if find_label_issues is not None:
                issues = find_label_issues(noisy, own / own.sum(1, keepdims=True))
                rows.append(head | {"method": f"cleanlab on bertfit's {method} probabilities",
                                    **scores(issues, 1 - own[np.arange(len(noisy)), noisy], planted)})
    return rows


def _cleanlab():
    """cleanlab's find_label_issues, or None where the reference is not installed (its rows are left out)."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    return find_label_issues


def audited(data: Path, method: str, noisy: np.ndarray,
            planted: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, dict[int, str]]:
    """bertfit audit's row, its flagged training rows, its out-of-fold probabilities of the training rows, and
    the label it suggests for each flagged one."""
    from bertfit.auditing.run import audit

    n_train = len(noisy)
    started = time.perf_counter()
    result = audit(data, None, method=method, progress=False)
    seconds = time.perf_counter() - started
    flagged = np.zeros(n_train, dtype=bool)
    suggested = {}
    for row in result.rows:
        if row["split"] == "train" and row["reason"] == "label":
            flagged[row["row"]] = True
            suggested[row["row"]] = row["suggested_label"]
    own = result.proba[:n_train]
    ranking = 1 - own[np.arange(n_train), noisy]  # every row ranked, as the audit's score ranks the flagged ones
    row = {"method": f"bertfit audit ({method})", **scores(flagged, ranking, planted), "seconds": round(seconds, 1)}
    return row, flagged, own, suggested


def trained_on(train_rows, prepared, place: Path, seed: int) -> tuple[float, float]:
    """The default recipe trained on these training rows with the data set's own validation and test splits
    (written as CSV files into ``place``): its test accuracy and wall seconds."""
    from bertfit.training.run import train

    for split, part in (("train", train_rows), ("validation", prepared.validation), ("test", prepared.test)):
        part.to_csv(place / f"{split}.csv", index=False)
    started = time.perf_counter()
    result = train(place, None, progress=False, baseline=False, report=False, seed=seed, overwrite=True)
    return result.test["accuracy"], time.perf_counter() - started


def retrained(noisy_train, flagged: np.ndarray, suggested: dict[int, str], prepared, folder: str, seed: int,
              trained: dict) -> dict:
    """Test accuracy of the default recipe on noisy, cleaned (flagged rows dropped), relabelled (flagged rows given
    the suggested label, as --relabel-suspects auto) and clean training data; ``trained`` keeps the noisy and
    clean runs (and the noisy run's seconds) for the next method."""
    relabelled = noisy_train["label"].tolist()
    for i, label in suggested.items():
        relabelled[i] = label
    runs = {"cleaned": noisy_train[~flagged], "relabelled": noisy_train.assign(label=relabelled)}
    runs |= {k: v for k, v in (("noisy", noisy_train), ("clean", prepared.train)) if k not in trained}
    for which, frame in runs.items():
        place = Path(folder) / which
        place.mkdir(exist_ok=True)
        trained[which], seconds = trained_on(frame, prepared, place, seed)
        if which == "noisy":
            trained["train_seconds"] = seconds
    gap = trained["clean"] - trained["noisy"]

    def recovered(which: str) -> float | None:
        return round((trained[which] - trained["noisy"]) / gap, 3) if gap > 0 else None

    return {f"test_{k}": round(trained[k], 4) for k in ("noisy", "cleaned", "relabelled", "clean")} | {
        "gap_recovered": recovered("cleaned"), "gap_recovered_relabelled": recovered("relabelled"),
        "train_seconds": round(trained["train_seconds"], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--shares", default="0.05,0.1", help="shares of training rows flipped (default 0.05,0.1)")
    parser.add_argument("--kinds", default="uniform,confusable")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--methods", default="both",
                        help="bertfit's evidence, comma-separated: both, embed, tfidf, finetune (default both)")
    parser.add_argument("--retrain", action="store_true", help="also train the default recipe three times per row")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--keep", help="also save each method's out-of-fold probabilities, the noisy labels and the "
                                       "planted rows to this folder (.npz), to study the flagging rule offline")
    args = parser.parse_args()
    if shared_missing():
        return 0
    if _cleanlab() is None:
        print("cleanlab is not installed (pip install cleanlab; a bench-only reference, AGPL): its rows are left "
              "out", file=sys.stderr)
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    quiet()
    print(measured_on(), flush=True)
    rows = []
    for name in args.datasets.split(","):
        for share in map(float, args.shares.split(",")):
            for kind in args.kinds.split(","):
                for row in run(name, share, kind, args.seed, args.retrain, args.methods.split(","), args.keep):
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
    keys = list(dict.fromkeys(k for row in rows for k in row if k not in ("dataset", "share", "kind", "method")))
    print("| data set | noise | method | " + " | ".join(keys) + " |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in keys) + " |")
    for row in rows:
        print(f"| {row['dataset']} | {row['share']:.0%} {row['kind']} | {row['method']} | "
              + " | ".join("" if row.get(k) is None else str(row[k]) for k in keys) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"measured_on": measured_on(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
