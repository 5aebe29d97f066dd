"""Checkpoints of a training run, and resuming one after a crash.

While ``bertfit train --out M`` runs, Trainer writes a checkpoint at the end of every epoch into a
hidden folder beside the model folder, ``.M.checkpoints/``: the latest epoch, plus the best one
when that is an earlier epoch (``save_total_limit=1``; older ones are deleted as new ones come).
Beside them, ``run.json`` records the settings and a fingerprint of the data that made them, so a
resume with other settings or other data is refused instead of silently mixing two runs.

A run that finishes (once the model folder is written), or fails or is stopped with Ctrl-C while
training, removes the folder; a run that is killed (``kill -9``, the OOM killer, a lost machine)
leaves it, and ``--resume`` continues from its last complete checkpoint. This module finds,
checks and prepares that folder; it does not train.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bertfit.errors import OutputError, UsageError

log = logging.getLogger(__name__)

RUN_FILE = "run.json"
STATE_FILE = "trainer_state.json"  # Trainer writes it last: a checkpoint without it is incomplete
# Settings that act only after training (decisions, extras): a resumed run may change them.
AFTER_TRAINING = ("calibrate", "baseline", "report", "eval_batch_size")


def checkpoint_dir(target: Path | None) -> Path:
    """The hidden folder beside ``target`` (a fresh temporary one when the model is not saved)."""
    if target is not None:
        return target.parent / f".{target.name}.checkpoints"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("train(out=None) cannot run under torchrun or accelerate launch: every process must find "
                         "the same checkpoints; pass an out folder")
    return Path(tempfile.mkdtemp(prefix="bertfit-checkpoints-"))


def last_complete(folder: Path) -> Path | None:
    """The checkpoint with the most steps that was written to the end, or None."""
    if not folder.is_dir():
        return None
    steps = [(int(m.group(1)), path) for path in folder.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", path.name)) and (path / STATE_FILE).is_file()]
    return max(steps)[1] if steps else None


def check_stale(target: Path, resume: bool, overwrite: bool) -> None:
    """Before any work: refuse to start over on top of a killed run's checkpoints unless told to."""
    folder = checkpoint_dir(target)
    found = last_complete(folder)
    if found is None or resume or overwrite:
        return
    raise OutputError(f"{folder} holds checkpoints of an earlier run that did not finish ({_epoch_of(found)}); "
                      f"pass --resume to continue it, or --overwrite to start over")


def run_record(settings: dict[str, Any], splits: dict[str, Any], processes: int = 1) -> dict[str, Any]:
    """What must not change between a run and its resumption: training settings, the data, and the
    number of processes (with --batch-size per process, it sets the steps in an epoch)."""
    digest = hashlib.sha256()
    for name in ("train", "validation"):
        frame = splits[name]
        digest.update(name.encode())
        digest.update(frame.to_json(orient="records", force_ascii=False).encode())
    train = {k: v for k, v in settings["train"].items() if k not in AFTER_TRAINING}
    return {"settings": {"data": settings["data"], "train": train}, "data_sha256": digest.hexdigest(),
            "processes": processes}


def prepare_folder(folder: Path, record: dict[str, Any], resume: bool, is_main: bool,
                   wait: Callable[[], None]) -> Path | None:
    """Ready the checkpoint folder; returns the checkpoint to resume from, or None to start from the beginning.

    Every process reads, then the main process alone writes (under torchrun all ranks share the folder),
    and ``wait`` keeps the others from reading a half-changed folder.
    """
    found = last_complete(folder) if resume else None
    if found is not None:
        _check_same_run(folder, record)
    elif resume:
        log.info("--resume: no checkpoint in %s; starting from the beginning", folder)
    wait()
    if is_main:
        if found is None:
            shutil.rmtree(folder, ignore_errors=True)  # a stale folder is replaced (train() refused it unless told)
        else:
            _drop_incomplete(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RUN_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    wait()
    if found is not None:
        log.info("resuming from %s (%s)", found, _epoch_of(found))
    return found


def resumed_epoch(checkpoint: Path) -> int:
    """The number of whole epochs a checkpoint holds."""
    state = json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
    return round(state.get("epoch") or 0)


def _check_same_run(folder: Path, record: dict[str, Any]) -> None:
    try:
        saved = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise UsageError(f"--resume: {folder} has no readable {RUN_FILE}, so its run cannot be checked; "
                         "pass --overwrite instead of --resume to start over") from None
    changed = [f"--{name.replace('_', '-')} {saved['settings'][part].get(name)!r} -> {value!r}"
               for part in ("data", "train") for name, value in record["settings"][part].items()
               if saved["settings"][part].get(name) != value]
    if saved.get("processes", 1) != record["processes"]:
        changed.append(f"{saved.get('processes', 1)} -> {record['processes']} processes")
    if saved.get("data_sha256") != record["data_sha256"]:
        changed.append("the training or validation rows differ")
    if changed:
        raise UsageError(f"--resume: the checkpoints in {folder} come from a run with other settings or data "
                         f"({'; '.join(changed[:5])}); rerun with the same ones, or pass --overwrite instead of "
                         "--resume to start over")


def _drop_incomplete(folder: Path) -> None:
    """Checkpoints cut short by the crash (no trainer state yet) would confuse Trainer's rotation."""
    for path in folder.glob("checkpoint-*"):
        if path.is_dir() and not (path / STATE_FILE).is_file():
            log.info("removing %s: written only in part when the run stopped", path.name)
            shutil.rmtree(path, ignore_errors=True)


def _epoch_of(checkpoint: Path) -> str:
    try:
        return f"last saved at the end of epoch {resumed_epoch(checkpoint)}"
    except (OSError, json.JSONDecodeError):
        return checkpoint.name
