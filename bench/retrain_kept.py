"""The default recipe retrained on one kept audit's noisy labels, its flagged rows dropped or relabelled.

`bench/audit.py --keep DIR` saves each audit's out-of-fold probabilities, noisy labels and planted rows.
This flags rows from those probabilities with today's rule (bertfit.auditing.confident.find_suspects,
on the training rows), then trains the default recipe (seed 42) with the flagged rows left out
(`drop`, as --drop-suspects auto) or given the suggested label (`relabel`, as --relabel-suspects auto),
and prints the test accuracy of each, so a change of rule or of what is done with the flags is
measured without running the audit again. The noisy and clean runs are bench/audit.py --retrain's.

    python bench/retrain_kept.py kept/trec-0.1-uniform-finetune.npz --dataset trec --modes relabel,drop
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit import trained_on  # noqa: E402
from bertfit.auditing.confident import find_suspects  # noqa: E402
from timing import SHARED, measured_on, quiet, shared_missing  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kept", help="an .npz file written by bench/audit.py --keep")
    parser.add_argument("--dataset", required=True, help="the shared data set it was kept from (trec, ...)")
    parser.add_argument("--modes", default="relabel,drop")
    args = parser.parse_args()
    if shared_missing():
        return 0
    from bertfit.config import DataConfig
    from bertfit.data import prepare
    quiet()
    print(measured_on(), flush=True)
    prepared = prepare(SHARED / args.dataset, DataConfig(drop_leaks=True, seed=42))
    names = prepared.labels.names
    kept = np.load(args.kept)
    noisy, planted = kept["noisy"].astype(np.int64), kept["planted"].astype(bool)
    clean = np.asarray(prepared.labels.encode(prepared.train["label"].tolist()))
    if len(clean) != len(noisy) or not ((clean != noisy) == planted).all():
        print(f"error: {args.kept} was not kept from {args.dataset}'s training split as read here", file=sys.stderr)
        return 2
    found = find_suspects(kept["proba"] / kept["proba"].sum(1, keepdims=True), noisy)
    flagged = found.flagged
    fixed = np.where(flagged, found.suggested, noisy)
    right = int((fixed[flagged] == clean[flagged]).sum())
    print(f"flagged {int(flagged.sum())} (planted {int(planted.sum())}); relabelled right {right}; wrong labels "
          f"left: drop {int((noisy != clean)[~flagged].sum())}, relabel {int((fixed != clean).sum())}", flush=True)
    frames = {"drop": prepared.train[~flagged].assign(label=[names[i] for i in noisy[~flagged]]),
              "relabel": prepared.train.assign(label=[names[i] for i in fixed])}
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory() as folder:
            accuracy, seconds = trained_on(frames[mode], prepared, Path(folder), seed=42)
            print(f"{mode}: test accuracy {accuracy:.4f} ({seconds:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
