"""Where bertfit writes: checked before any work, built beside the destination, renamed into place.

Every command that writes a file or a folder goes through here, so that the same rules hold for all:

- an output may not be one of the command's own inputs, a link to one, or a folder holding one
  (:func:`refuse_inputs`): nothing a command read may change;
- an existing output is replaced only when the user said ``--overwrite`` (:func:`check_folder`,
  :func:`check_file`), and a folder only when it is an earlier bertfit output, never the current
  folder or one above it;
- the output is written beside its destination and renamed over it only when complete
  (:func:`staged_folder`, :func:`staged_file`): a crash, a full disk or Ctrl-C leaves the old
  output as it was and no half-written one;
- saved files get the permissions the process's umask gives (:func:`share_like_umask`); some
  writers (safetensors) create theirs readable by their owner alone.

This module knows nothing of models or data; it does paths and files only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from bertfit.errors import BertfitError, OutputError

# What the OS says when a write fails for want of room or rights: the one-line fix for each.
WRITE_FIXES = {
    errno.ENOSPC: "free some space, or write elsewhere",
    errno.EDQUOT: "free some of your quota, or write elsewhere",
    errno.EROFS: "the filesystem is read-only: write elsewhere",
    errno.EACCES: "write to a place you may write to",
    errno.EPERM: "write to a place you may write to",
}


def refuse_inputs(target: Path, flag: str, inputs: dict[str, str | Path | None], sealed: tuple[str, ...] = ()) -> None:
    """Refuse an output that is one of the inputs (also through a link), or a folder that contains one.

    ``inputs`` maps what each input is ("the data", "the model folder") to its path; None and
    names that are not local paths (hub names) are skipped. ``sealed`` names the inputs (model folders)
    that an output may not go inside either: it would be copied, served and replaced with them.
    """
    out = _resolved(target)
    for role, given in inputs.items():
        if given is None or str(given) == "-" or str(given).startswith("hf:") and not Path(str(given)[3:]).exists():
            continue
        path = Path(str(given)[3:] if str(given).startswith("hf:") else given)
        if not path.exists():
            continue
        source = _resolved(path)
        same = out == source or (target.exists() and _same_file(target, path))
        if same or out in source.parents:
            how = "is" if same else "holds"
            raise OutputError(f"{flag} {target} {how} {role} {given}, which this command reads; writing there "
                              f"would destroy it: pass another {flag}")
        if role in sealed and source in out.parents:
            raise OutputError(f"{flag} {target} is inside {role} {given}; an output there would be copied, served and "
                              f"replaced (--overwrite) with it: pass a {flag} outside it, e.g. beside it")


# What every output folder bertfit writes holds at its top (a model, an export, an audit): --overwrite
# replaces only such a folder, never one that is something else (a home folder, a project).
OUTPUT_MARKERS = ("bertfit.json", "config.json", "model.onnx", "audit.csv")


def check_folder(target: Path, overwrite: bool, flag: str = "--out") -> None:
    """Fail early (before any work) when a folder cannot be written at ``target``."""
    if target.exists() and not target.is_dir():
        raise OutputError(f"{flag} {target} is a file; pass a folder path")
    here, out = _resolved(Path.cwd()), _resolved(target)
    if out == here or out in here.parents:
        where = "the current folder" if out == here else "above the current folder"
        raise OutputError(f"{flag} {target} is {where}, which replacing it would remove; pass a new folder, "
                          f"e.g. {flag} model")
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise OutputError(f"{flag} {target} exists and is not empty; pass --overwrite to replace it, or another "
                              f"{flag}")
        if not any((target / marker).exists() for marker in OUTPUT_MARKERS):
            held = sorted(path.name for path in target.iterdir())
            raise OutputError(f"{flag} {target} holds files bertfit did not write ({', '.join(held[:3])}"
                              f"{', ...' if len(held) > 3 else ''}); --overwrite replaces only an earlier bertfit "
                              f"output (a model, an export or an audit), never other files: pass a new {flag}")
    _check_writable_parent(target, flag)


def check_file(target: Path, overwrite: bool, flag: str = "--output") -> None:
    """Fail early when a file cannot be written at ``target``: a folder, an existing file (without
    ``overwrite``), or a place that cannot be written."""
    if target.is_dir():
        raise OutputError(f"{flag} {target} is a folder; pass a file path such as {target / 'out.jsonl'}")
    if target.exists() and not overwrite:
        raise OutputError(f"{flag} {target} exists; pass --overwrite to replace it, or another {flag}")
    if not target.parent.is_dir() and target.parent != Path(""):
        raise OutputError(f"{flag} {target}: folder {target.parent} does not exist; create it or pass another {flag}")
    _check_writable_parent(target, flag)


def _check_writable_parent(target: Path, flag: str) -> None:
    probe = target.parent if str(target.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{flag} {target} is inside {probe}, which is a file; pass another {flag}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write to {probe} (permission denied); pass a {flag} you can write to")


STAGING_PREFIX = "."


def final_name(folder: Path) -> str:
    """The name a folder will have: a staging folder's target's, else its own (e.g. for the model card's title)."""
    name = folder.name
    stem, dot, pid = name.rpartition(".tmp-")
    if name.startswith(STAGING_PREFIX) and dot and pid.isdigit():
        return stem[len(STAGING_PREFIX):]
    return name


@contextlib.contextmanager
def staged_folder(target: Path, flag: str = "--out") -> Iterator[Path]:
    """A fresh folder beside ``target`` to fill; renamed over ``target`` when the block ends without error.

    On any error (a full disk, Ctrl-C) the staging folder goes and ``target`` is left as it was.
    """
    staging = target.parent / f"{STAGING_PREFIX}{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            staging.mkdir(parents=True)
            yield staging
            share_like_umask(staging)
        except OSError as err:
            raise write_error(err, target, flag) from None
        _replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_path(target: Path, flag: str = "--output") -> Iterator[Path]:
    """A file name beside ``target`` for a writer to fill; renamed over ``target`` when the block ends without error."""
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        try:
            yield staging
            os.replace(staging, target)
        except OSError as err:
            raise write_error(err, target, flag) from None
    finally:
        staging.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_file(target: Path, flag: str = "--output") -> Iterator[IO[str]]:
    """A text file beside ``target`` to write (UTF-8); renamed over ``target`` when the block ends without error."""
    with staged_path(target, flag) as staging, staging.open("w", encoding="utf-8") as handle:
        yield handle


def write_error(err: OSError, target: Path, flag: str) -> OSError:
    """The one-line error for a write the OS refused (no room, no rights), naming the output and the fix;
    any other error (a bertfit error, a missing input) is returned as it is."""
    if isinstance(err, BertfitError) or err.errno not in WRITE_FIXES:
        return err
    return OutputError(f"cannot write {target} ({err.strerror or err}); nothing was changed there: "
                       f"{WRITE_FIXES[err.errno]}")


def share_like_umask(folder: Path) -> None:
    """Give every file and folder under ``folder`` the permissions a plain ``open`` or ``mkdir`` would.

    safetensors writes its weights readable by their owner alone (0600), so a service account that
    did not train the model could not load it, though it can read the folder's other files.
    """
    mask = _umask()
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _replace(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(target)


def _resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
