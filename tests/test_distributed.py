"""Data-parallel training: two processes on CPU (gloo) under torchrun, against one process.

The comparison is built to be exact, not loose: one process at --batch-size 8 and two at 4 each
take the same optimizer steps on the same rows (the sampler's order depends on the seed only, rank
0 gets the first 4 rows of each 8 and rank 1 the next 4, and DDP averages the two gradients into the
batch-8 one). With dropout off in the tiny model, the two runs then agree up to float rounding.
48 training rows divide into batches of 8, and 18 validation rows into 9 + 9 (--eval-batch-size 9):
with uneven shards Trainer pads the last batch with repeated rows, which moves the validation
loss (see the README), so the test keeps the shards even.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from bertfit.training.run import train
from conftest import make_rows

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

# Length buckets are cut per process (batches of 4 here, of 8 in the single run), so the same batches
# need the plain shuffled order: the comparison is of data parallelism, not of batch order.
RUN = {"epochs": 3, "learning_rate": 1e-2, "patience": 0, "eval_batch_size": 9, "bucket_by_length": False}


@pytest.fixture(scope="module")
def no_dropout_model(tiny_model_dir, tmp_path_factory):
    """The session's tiny BERT with dropout off: the one source of per-process randomness in training."""
    folder = tmp_path_factory.mktemp("tiny-no-dropout")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("splits")
    rows = make_rows(per_class=28, seed=1)  # 84 rows: 48 train, 18 validation, 18 test
    rows[:48].to_csv(folder / "train.csv", index=False)
    rows[48:66].to_csv(folder / "validation.csv", index=False)
    rows[66:].to_csv(folder / "test.csv", index=False)
    return folder


def test_two_processes_match_one_with_the_same_effective_batch(no_dropout_model, splits, tmp_path):
    out = tmp_path / "model"
    flags = [f"--{name.replace('_', '-')}={value}" for name, value in RUN.items() if not isinstance(value, bool)]
    flags += [f"--{'' if value else 'no-'}{name.replace('_', '-')}" for name, value in RUN.items()
              if isinstance(value, bool)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "bertfit", "train", str(splits), "--model", str(no_dropout_model), "--out", str(out),
               "--batch-size", "4", "--no-report", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr

    # Rank 0 alone speaks and writes: one summary line, one set of progress lines, one model folder.
    summary_lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(summary_lines) == 1, run.stdout
    assert run.stderr.count("parameters (") == 1  # "training N of M parameters (...)", rank 1 is quiet
    meta = json.loads((out / "bertfit.json").read_text())
    assert meta["processes"] == 2
    assert "baseline" in meta  # fitted by rank 0 (rank 1 returns as soon as training ends)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no checkpoints, no staging folder

    single = train(splits, tmp_path / "single", model=str(no_dropout_model), batch_size=8, progress=False,
                   baseline=False, report=False, **RUN)
    assert single.classifier.meta["processes"] == 1
    summary = json.loads(summary_lines[0])
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3]
    for two, one in zip(summary["history"], single.history, strict=True):
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)
        assert two["validation"]["loss"] == pytest.approx(one["validation"]["loss"], rel=1e-4)
        assert two["validation"]["accuracy"] == one["validation"]["accuracy"]
    assert summary["best_epoch"] == single.best_epoch
    assert summary["test"]["accuracy"] == single.test["accuracy"]
    assert summary["test"]["loss"] == pytest.approx(single.test["loss"], rel=1e-4)
