"""Resume after a crash: a real training process killed with SIGKILL mid-epoch, then --resume.

The killed run stalls itself at a chosen training step (after the first epoch's checkpoint is on
disk) and says so through a marker file; the test then sends SIGKILL, so the kill lands mid-epoch
every time rather than by luck of timing. The resumed run must end with the metrics of an
uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertfit.errors import OutputError, UsageError
from bertfit.training.checkpoints import checkpoint_dir, last_complete
from bertfit.training.run import train
from bertfit.training.trainer import LengthBuckets

# 42 training rows of the conftest data in batches of 8: 6 steps an epoch, a checkpoint at each epoch's end.
RUN = {"epochs": 4, "learning_rate": 1e-2, "batch_size": 8, "patience": 0, "report": False, "baseline": False}
STEPS_PER_EPOCH = 6

# The training process under test: bertfit's own CLI, made to stall (not fail) at one training step.
STALLING_CLI = """
import os, sys, time
from bertfit import cli
from bertfit.training import trainer

stall_at = int(os.environ["STALL_AT_STEP"])
step = trainer.ClassifierTrainer.training_step

def stalling_step(self, *args, **kwargs):
    if self.state.global_step == stall_at:
        open(os.environ["STALL_MARKER"], "w").close()
        time.sleep(600)
    return step(self, *args, **kwargs)

trainer.ClassifierTrainer.training_step = stalling_step
sys.exit(cli.main(sys.argv[1:]))
"""


def _flags(settings: dict) -> list[str]:
    flags = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        flags += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    return flags


def _wait_for(path: Path, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the training process ended (exit {process.returncode}) before stalling: "
                        f"{process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the training process did not reach the stalling step in {seconds:.0f} s")
        time.sleep(0.1)


def test_killed_run_resumes_to_the_metrics_of_an_uninterrupted_one(tiny_model_dir, data_csv, tmp_path, capsys):
    from bertfit.cli import main

    out = tmp_path / "model"
    command = ["train", str(data_csv), "--model", str(tiny_model_dir), "--out", str(out), *_flags(RUN)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "STALL_AT_STEP": str(STEPS_PER_EPOCH + 2), "STALL_MARKER": str(tmp_path / "stalled")}
    killed = subprocess.Popen([sys.executable, "-c", STALLING_CLI, *command, "--quiet"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(tmp_path / "stalled", killed, seconds=120)
    checkpoints = checkpoint_dir(out)
    assert last_complete(checkpoints) == checkpoints / f"checkpoint-{STEPS_PER_EPOCH}"  # epoch 1 is on disk
    killed.send_signal(signal.SIGKILL)  # mid-epoch 2: no handler runs, nothing is cleaned up
    killed.communicate(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    assert not out.exists() and checkpoints.is_dir()

    # The rerun goes through the same CLI, in this process (a second interpreter start costs seconds).
    assert main([*command, "--resume"]) == 0
    printed = capsys.readouterr()
    assert "resuming from" in printed.err and "end of epoch 1" in printed.err
    summary = json.loads(printed.out.strip().splitlines()[-1])
    meta = json.loads((out / "bertfit.json").read_text())
    assert meta["resumed_after_epoch"] == 1
    assert not checkpoints.exists()  # removed once the model folder is in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "stalled"]  # no staging folder left

    reference = train(data_csv, tmp_path / "reference", model=str(tiny_model_dir), progress=False, **RUN)
    assert [h["epoch"] for h in summary["history"]] == [1, 2, 3, 4]
    for got, want in zip(summary["history"], reference.history, strict=True):
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
        assert got["validation"]["loss"] == pytest.approx(want["validation"]["loss"], rel=1e-4)
    assert summary["best_epoch"] == reference.best_epoch
    assert summary["test"]["accuracy"] == reference.test["accuracy"]
    assert summary["test"]["loss"] == pytest.approx(reference.test["loss"], rel=1e-4, abs=1e-6)


class Crash(Exception):
    """Stands in for kill -9 in-process: raised at a training step, with cleanup switched off."""


def crash(monkeypatch, at_step: int, *args, **kwargs) -> None:
    """train(*args, **kwargs), stopped at a training step the way SIGKILL would: no cleanup runs."""
    from bertfit.training import run as training
    from bertfit.training import trainer

    step = trainer.ClassifierTrainer.training_step

    def crashing_step(self, *step_args, **step_kwargs):
        if self.state.global_step == at_step:
            raise Crash
        return step(self, *step_args, **step_kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer.ClassifierTrainer, "training_step", crashing_step)
        patch.setattr(training.shutil, "rmtree", lambda *_, **__: None)
        with pytest.raises(Crash):
            train(*args, progress=False, **kwargs)


@pytest.fixture
def crashed(tiny_model_dir, data_csv, tmp_path, monkeypatch):
    """A run stopped in epoch 2 of the encode-once path (--train-layers 1) that left its checkpoints."""
    settings = {**RUN, "model": str(tiny_model_dir), "train_layers": "1"}
    crash(monkeypatch, STEPS_PER_EPOCH + 2, data_csv, tmp_path / "model", **settings)
    assert last_complete(checkpoint_dir(tmp_path / "model")) is not None
    return tmp_path / "model", settings


def test_encode_once_path_resumes_too(crashed, data_csv, tmp_path):
    out, settings = crashed
    resumed = train(data_csv, out, resume=True, progress=False, **settings)
    reference = train(data_csv, tmp_path / "reference", progress=False, **settings)
    assert resumed.classifier.meta["resumed_after_epoch"] == 1
    assert [h["validation"]["loss"] for h in resumed.history] == pytest.approx(
        [h["validation"]["loss"] for h in reference.history], rel=1e-5)
    assert resumed.test["loss"] == pytest.approx(reference.test["loss"], rel=1e-5)
    assert not checkpoint_dir(out).exists()


def test_early_stopping_keeps_its_count_across_a_resume(tiny_model_dir, data_csv, tmp_path, monkeypatch):
    # At this learning rate validation loss is lowest at epoch 2 and patience 2 stops the run at epoch 4;
    # the crash comes in epoch 4, so the checkpoint it resumes from has counted one epoch without gain.
    settings = {**RUN, "model": str(tiny_model_dir), "epochs": 12, "learning_rate": 0.1, "patience": 2,
                "select_by": "loss", "bucket_by_length": False}  # the order this loss pattern was seen in
    reference = train(data_csv, tmp_path / "reference", progress=False, **settings)
    assert (reference.best_epoch, len(reference.history)) == (2, 4)
    crash(monkeypatch, 3 * STEPS_PER_EPOCH + 2, data_csv, tmp_path / "model", **settings)
    resumed = train(data_csv, tmp_path / "model", resume=True, progress=False, **settings)
    assert resumed.classifier.meta["resumed_after_epoch"] == 3
    assert len(resumed.history) == 4 and resumed.best_epoch == 2  # not a fresh count of 0 at epoch 3


def test_checkpoints_of_a_killed_run_are_refused_without_resume(crashed, data_csv, capsys):
    from bertfit.cli import main

    out, settings = crashed
    before = sorted(p.name for p in checkpoint_dir(out).iterdir())
    with pytest.raises(OutputError, match="pass --resume to continue it, or --overwrite to start over"):
        train(data_csv, out, progress=False, **settings)
    flags = ["train", str(data_csv), "--out", str(out), "--model", settings["model"], "--train-layers", "1"]
    assert main(flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--resume" in err[0]
    assert sorted(p.name for p in checkpoint_dir(out).iterdir()) == before  # nothing touched


def test_resume_with_other_settings_is_refused_and_keeps_the_checkpoints(crashed, data_csv):
    out, settings = crashed
    before = sorted(p.name for p in checkpoint_dir(out).iterdir())
    with pytest.raises(UsageError, match=r"--epochs 4 -> 5.*pass --overwrite instead of --resume"):
        train(data_csv, out, resume=True, progress=False, **{**settings, "epochs": 5})
    assert sorted(p.name for p in checkpoint_dir(out).iterdir()) == before


def test_overwrite_starts_over(crashed, data_csv):
    out, settings = crashed
    result = train(data_csv, out, overwrite=True, progress=False, **settings)
    assert result.classifier.meta["resumed_after_epoch"] is None
    assert len(result.history) == RUN["epochs"] and not checkpoint_dir(out).exists()


def test_resume_with_nothing_to_resume_trains_from_the_beginning(tiny_model_dir, data_csv, tmp_path):
    result = train(data_csv, tmp_path / "m", resume=True, model=str(tiny_model_dir), progress=False,
                   **{**RUN, "epochs": 2})
    assert result.classifier.meta["resumed_after_epoch"] is None and len(result.history) == 2


def test_resume_checks_the_processes_and_lets_after_training_settings_change(tmp_path, rows):
    from bertfit.training.checkpoints import prepare_folder, run_record

    splits = {"train": rows[:40], "validation": rows[40:]}
    settings = {"data": {"seed": 1}, "train": {"epochs": 2, "report": True}}
    folder = tmp_path / ".m.checkpoints"
    assert prepare_folder(folder, run_record(settings, splits, processes=2), False, True, lambda: None) is None
    (folder / "checkpoint-4").mkdir()
    (folder / "checkpoint-4" / "trainer_state.json").write_text('{"epoch": 1.0}')
    with pytest.raises(UsageError, match="2 -> 1 processes"):
        prepare_folder(folder, run_record(settings, splits, processes=1), True, True, lambda: None)
    with pytest.raises(UsageError, match="rows differ"):
        prepare_folder(folder, run_record(settings, {**splits, "train": rows[:39]}, processes=2), True, True,
                       lambda: None)
    no_report = {**settings, "train": {"epochs": 2, "report": False}}  # acts after training: may change
    assert prepare_folder(folder, run_record(no_report, splits, processes=2), True, True,
                          lambda: None) == folder / "checkpoint-4"


def test_a_checkpoint_cut_short_by_the_crash_is_not_resumed_from(tmp_path):
    for step, complete in ((6, True), (12, True), (18, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-99-junk").mkdir()
    assert last_complete(tmp_path) == tmp_path / "checkpoint-12"
    assert last_complete(tmp_path / "absent") is None


def test_length_buckets_order_follows_the_epoch_not_the_history():
    """A resumed run's sampler starts fresh; Trainer names the epoch, and the order must follow it."""
    lengths = list(range(3, 103))
    served = LengthBuckets(lengths, batch_size=8, seed=5, pool_batches=2)
    epochs = [list(served) for _ in range(3)]
    fresh = LengthBuckets(lengths, batch_size=8, seed=5, pool_batches=2)
    fresh.set_epoch(2)
    assert list(fresh) == epochs[2]
    assert epochs[0] != epochs[1] != epochs[2]
