"""Outputs under way: one process writes an output at a time, links are written through, a killed run's
leftovers go, and a stopped command says what it had saved (``bertfit.claims``, ``bertfit.staging``, the CLI)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bertfit import cli
from bertfit.claims import claimed
from bertfit.errors import OutputError, Terminated
from bertfit.model import TextClassifier
from bertfit.staging import SAVED, check_file, staged_file
from bertfit.training.run import train
from conftest import stop_training

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _holder(target: Path, ready: Path) -> subprocess.Popen:
    """Another process holding ``target`` (as a run writing it would) until it is killed."""
    script = ("import sys, time; from pathlib import Path; from bertfit.claims import claimed\n"
              "with claimed(Path(sys.argv[1])):\n    Path(sys.argv[2]).touch()\n    time.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(target), str(ready)], env=ENV)
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert ready.exists(), "the holding process did not start"
    return process


def test_a_run_on_an_out_another_process_writes_is_refused_at_once(tiny_model_dir, data_csv, tmp_path):
    target = tmp_path / "model"
    holder = _holder(target, tmp_path / "ready")
    try:
        began = time.monotonic()
        with pytest.raises(OutputError) as caught:
            train(data_csv, target, model=str(tiny_model_dir), epochs=1, progress=False)
        assert time.monotonic() - began < 30  # refused before the data is read or the model loaded
        message = str(caught.value)
        assert f"--out {target} is being written by another bertfit run (process {holder.pid})" in message
        assert "wait for it to end, or pass another --out" in message
    finally:
        holder.kill()
        holder.wait()
    # the OS let go of the killed holder's lock: the output can be written now, and no lock file stays
    with claimed(target):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ready"]


def test_holding_an_output_removes_what_a_killed_run_left_beside_it(tmp_path):
    target = tmp_path / "model"
    left = [tmp_path / ".model.tmp-999999", tmp_path / ".model.old-999998"]
    for folder in left:
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"half")
    kept = [tmp_path / ".model.checkpoints", tmp_path / ".model.tmp-notes", tmp_path / ".modelx.tmp-12"]
    for folder in kept:
        folder.mkdir()
    with claimed(target):
        assert not any(folder.exists() for folder in left)
    assert all(folder.exists() for folder in kept)  # a resumable run's checkpoints, and what is not staging
    assert not (tmp_path / ".model.lock").exists()


def test_holding_is_reentrant_in_one_process(tmp_path):
    with claimed(tmp_path / "model"), claimed(tmp_path / "model"):
        assert (tmp_path / ".model.lock").exists()


def test_an_out_given_as_a_link_is_written_where_the_link_points(trained_dir, tmp_path):
    real = tmp_path / "models" / "current"
    real.parent.mkdir()
    shutil.copytree(trained_dir, real)
    link = tmp_path / "model"
    link.symlink_to(real, target_is_directory=True)
    TextClassifier.from_pretrained(trained_dir).save_pretrained(link, overwrite=True, files={"marker.txt": "new"})
    assert link.is_symlink() and (real / "marker.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "models"]  # no set-aside copy or link left
    assert sorted(p.name for p in real.parent.iterdir()) == ["current"]
    assert SAVED[-1] == real


def test_an_output_file_given_as_a_link_is_written_where_the_link_points(tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_text("old\n")
    link = tmp_path / "out.jsonl"
    link.symlink_to(real)
    with staged_file(link) as handle:
        handle.write("new\n")
    assert link.is_symlink() and real.read_text() == "new\n"


def test_a_read_only_filesystem_is_named_as_such(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    monkeypatch.setattr(os, "statvfs", lambda path: type("Stat", (), {"f_flag": os.ST_RDONLY})())
    with pytest.raises(OutputError, match=r"\(a read-only file system\); pass a --output elsewhere"):
        check_file(tmp_path / "out.jsonl", overwrite=False)


# -- what a stopped command says -------------------------------------------------------------------


def test_an_interruption_after_the_model_was_saved_says_so(trained_dir, tmp_path, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(trained_dir, model)
    (model / "report.html").unlink(missing_ok=True)
    monkeypatch.setattr(cli, "SAVED", [model])
    said = cli._interrupted(KeyboardInterrupt())
    assert said == (f"interrupted after {model} was saved in full; what was to follow it was not done: "
                    f"`bertfit report {model}` writes its report")
    assert cli._interrupted(Terminated()).startswith(f"terminated after {model} was saved in full")
    monkeypatch.setattr(cli, "SAVED", [])
    assert cli._interrupted(KeyboardInterrupt()) == "interrupted; nothing was saved"


def test_a_deleted_working_folder_is_one_line(monkeypatch, capsys):
    def gone():
        raise FileNotFoundError(2, "No such file or directory")

    monkeypatch.setattr(os, "getcwd", gone)
    assert cli.main(["predict", "model", "hello"]) == 2
    assert capsys.readouterr().err == ("error: the current folder no longer exists (it was deleted or moved); cd "
                                       "into a folder and run again\n")


def _bertfit(args: list[str], close: int, cwd: Path) -> subprocess.CompletedProcess:
    """``bertfit ARGS`` with file descriptor ``close`` (0: stdin, 1: stdout) closed, as ``<&-`` / ``>&-`` do."""
    return subprocess.run([sys.executable, "-m", "bertfit", *args], env=ENV, cwd=cwd, capture_output=close != 1,
                          stderr=subprocess.PIPE if close == 1 else None, text=True, timeout=300,
                          preexec_fn=lambda: os.close(close))


def test_closed_standard_input_or_output_is_one_line(trained_dir, tmp_path):
    shut_in = _bertfit(["predict", str(trained_dir), "--input", "-"], 0, tmp_path)
    assert shut_in.returncode == 2 and shut_in.stderr.strip().splitlines()[-1] == (
        "error: --input - reads standard input, which is closed; pipe texts in (one per line), or pass --input FILE "
        "or the texts themselves")
    shut_out = _bertfit(["predict", str(trained_dir), "refund my card"], 1, tmp_path)
    assert shut_out.returncode == 2 and shut_out.stderr.strip().splitlines()[-1] == (
        "error: standard output is closed, so the predictions would go nowhere; pass --output FILE, or run with "
        "standard output open")


def test_sigterm_mid_training_keeps_the_finished_epochs_for_resume(tiny_model_dir, data_csv, tmp_path):
    out_dir = tmp_path / "model"
    # epoch 2's log: epoch 1's checkpoint is on disk
    code, out, err = stop_training(signal.SIGTERM, "epoch 2/", data_csv, tiny_model_dir, tmp_path)
    assert code == 143, err
    assert "Traceback" not in err and out == ""
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith("error: terminated; nothing was saved, but the epochs done "
                                                     "are kept in"), err
    assert "--resume" in errors[0]
    assert not out_dir.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".model.checkpoints"]  # no staging, no lock
    assert any((tmp_path / ".model.checkpoints").glob("checkpoint-*"))
