"""Where bertfit writes: checked before any work, built beside the destination, renamed into place.

Every command that writes a file or a folder goes through here, so that the same rules hold for all:

- an output may not be one of the command's own inputs, a link to one, a folder holding one, or
  inside an input folder (:func:`refuse_inputs`): nothing a command read may change;
- an output may not be a device, a FIFO or a socket (``/dev/null``, ``/dev/stdout``): writing a file
  in its place would replace it (:func:`check_file`, :func:`check_folder`);
- an existing output is replaced only when the user said ``--overwrite`` (:func:`check_folder`,
  :func:`check_file`), and a folder only when it is an earlier bertfit output, never the current
  folder or one above it;
- the output is written beside its destination and renamed over it only when complete
  (:func:`staged_folder`, :func:`staged_file`): a crash, a full disk or Ctrl-C leaves the old
  output as it was and no half-written one, and a write the disk refused anywhere in it is named as
  such (:func:`write_failure`);
- saved files get the permissions the process's umask gives (:func:`share_like_umask`); some
  writers (safetensors) create theirs readable by their owner alone;
- an output is held by one process at a time (``bertfit.claims``): a second run writing the same
  output is refused at once, and the staging a killed run left beside it is removed;
- an output given as a symbolic link is written where the link points, the link kept.

This module knows nothing of models or data; it does paths and files only.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from bertfit.errors import BertfitError, OutputError

# What the OS says when a write fails for want of room or rights: the one-line fix for each.
WRITE_FIXES = {
    errno.ENOSPC: "free some space, or write elsewhere",
    errno.EDQUOT: "free some of your quota, or write elsewhere",
    errno.EROFS: "the filesystem is read-only: write elsewhere",
    errno.EACCES: "write to a place you may write to",
    errno.EPERM: "write to a place you may write to",
}


def refuse_inputs(target: Path, flag: str, inputs: dict[str, str | Path | None], sealed: tuple[str, ...] = (),
                  allowed: tuple[Path, ...] = ()) -> None:
    """Refuse an output that is one of the inputs (also through a link), a folder that contains one, or a
    path inside an input model folder.

    ``inputs`` maps what each input is ("the data", "the model folder") to its path; None and
    names that are not local paths (hub names) are skipped. ``sealed`` names the inputs that are model
    folders: an output inside one would be copied, served and replaced with it. An output inside a data
    folder is fine: a folder of splits is read only at its top (train, validation, test files).
    ``allowed``: outputs that may go inside an input folder all the same (a model folder's own report.html).
    """
    out = resolved(target)
    exceptions = {resolved(path) for path in allowed}
    present = {role: (given, path) for role, given in inputs.items() if (path := _local(given)) is not None}
    for role, (given, path) in present.items():  # first: an output that would replace an input
        source = resolved(path)
        same = out == source or (target.exists() and _same_file(target, path))
        if same or out in source.parents:
            how = "is" if same else "holds"
            raise OutputError(f"{flag} {shown(target)} {how} {role} {shown(given)}, which this command reads; "
                              f"writing there would destroy it: pass another {flag}")
    for role, (given, path) in present.items():  # then: an output that would go inside a model folder
        if role in sealed and path.is_dir() and resolved(path) in out.parents and out not in exceptions:
            raise OutputError(f"{flag} {shown(target)} is inside {role} {shown(given)}; an output there would be "
                              f"copied, served and replaced (--overwrite) with it: pass a {flag} outside it, "
                              "e.g. beside it")


def _local(given: str | Path | None) -> Path | None:
    """The local path an input names, when it exists; None for None, stdin (-) and hub names."""
    if given is None or str(given) == "-":
        return None
    path = Path(str(given)[3:] if str(given).startswith("hf:") else given)
    return path if path.exists() else None


# What every output folder bertfit writes holds at its top (a model, an export, an audit): --overwrite
# replaces only such a folder, never one that is something else (a home folder, a project).
OUTPUT_MARKERS = ("bertfit.json", "config.json", "model.onnx", "audit.csv")


def check_folder(target: Path, overwrite: bool, flag: str = "--out") -> None:
    """Fail early (before any work) when a folder cannot be written at ``target``."""
    kind = _special(target)
    if kind is not None:
        raise OutputError(f"{flag} {shown(target)} is {kind}, not a folder: pass a folder path")
    if target.exists() and not target.is_dir():
        raise OutputError(f"{flag} {shown(target)} is a file; pass a folder path")
    here, out = resolved(Path.cwd()), resolved(target)
    if out == here or out in here.parents:
        where = "the current folder" if out == here else "above the current folder"
        raise OutputError(f"{flag} {shown(target)} is {where}, which replacing it would remove; pass a new folder, "
                          f"e.g. {flag} model")
    if target.exists() and any(target.iterdir()):
        if not overwrite:
            raise OutputError(f"{flag} {shown(target)} exists and is not empty; pass --overwrite to replace it, "
                              f"or another {flag}")
        if not any((target / marker).exists() for marker in OUTPUT_MARKERS):
            held = sorted(path.name for path in target.iterdir())
            raise OutputError(f"{flag} {shown(target)} holds files bertfit did not write ({', '.join(held[:3])}"
                              f"{', ...' if len(held) > 3 else ''}); --overwrite replaces only an earlier bertfit "
                              f"output (a model, an export or an audit), never other files: pass a new {flag}")
    _check_writable_parent(target, flag)


def check_file(target: Path, overwrite: bool, flag: str = "--output", instead: str = "") -> None:
    """Fail early when a file cannot be written at ``target``: a folder, a device or FIFO, an existing file
    (without ``overwrite``), or a place that cannot be written. ``instead``: what leaving out ``flag`` does
    ("print to standard output"), offered as the other fix for a device."""
    kind = _special(target)
    if kind is not None:
        other = f", or leave out {flag} to {instead}" if instead else ""
        raise OutputError(f"{flag} {shown(target)} is {kind}, not a file: give a file path{other}")
    if target.is_dir():
        raise OutputError(f"{flag} {shown(target)} is a folder; pass a file path such as {shown(target / 'out.jsonl')}")
    if target.exists() and not overwrite:
        raise OutputError(f"{flag} {shown(target)} exists; pass --overwrite to replace it, or another {flag}")
    if not target.parent.is_dir() and target.parent != Path(""):
        raise OutputError(f"{flag} {shown(target)}: folder {shown(target.parent)} does not exist; create it or "
                          f"pass another {flag}")
    _check_writable_parent(target, flag)


def _special(target: Path) -> str | None:
    """What ``target`` is when it is neither a regular file, a folder nor missing ("a device", "a FIFO"),
    links followed. A name in /dev itself or in /proc counts as a device whatever it points to:
    ``/dev/stdout`` may lead to a file, which renaming over the name would not write but replace."""
    where = os.path.abspath(target)
    if where.startswith("/proc/") or os.path.dirname(where) in ("/dev", "/dev/fd"):  # not /dev/shm/...
        return "a device"
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    return "a socket" if stat.S_ISSOCK(mode) else None


def shown(path: str | Path) -> str:
    """A path as error lines show it: as it is, or quoted with escapes when it holds a newline or another
    control character, so that the message stays one line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _check_writable_parent(target: Path, flag: str) -> None:
    probe = target.parent if str(target.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{flag} {shown(target)} is inside {shown(probe)}, which is a file; pass another {flag}")
    if not os.access(probe, os.W_OK | os.X_OK):
        if _read_only(probe):
            raise OutputError(f"cannot write to {shown(probe)} (a read-only file system); pass a {flag} elsewhere")
        raise OutputError(f"cannot write to {shown(probe)} (permission denied); pass a {flag} you can write to")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        return False


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
    target = through_link(target)
    staging = target.parent / f"{STAGING_PREFIX}{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            staging.mkdir(parents=True)
            yield staging
            share_like_umask(staging)
        except Exception as err:  # noqa: BLE001 - a write the disk refused is named; anything else goes on as it is
            error = write_error(err, target, flag)
            if error is err:
                raise
            raise error from None
        _replace(staging, target)
        SAVED.append(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_path(target: Path, flag: str = "--output") -> Iterator[Path]:
    """A file name beside ``target`` for a writer to fill; renamed over ``target`` when the block ends without error."""
    target = through_link(target)
    staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
    try:
        try:
            yield staging
            os.replace(staging, target)
            SAVED.append(target)
        except Exception as err:  # noqa: BLE001 - a write the disk refused is named; anything else goes on as it is
            error = write_error(err, target, flag)
            if error is err:
                raise
            raise error from None
    finally:
        staging.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_file(target: Path, flag: str = "--output") -> Iterator[IO[str]]:
    """A text file beside ``target`` to write (UTF-8); renamed over ``target`` when the block ends without error."""
    with staged_path(target, flag) as staging, staging.open("w", encoding="utf-8") as handle:
        yield handle


def write_error(err: BaseException, target: Path, flag: str = "--out") -> BaseException:
    """The one-line error for a write the disk refused (no room, no rights), naming the output and the fix;
    any other error (a bertfit error, a missing input) is returned as it is."""
    failure = write_failure(err, target)
    if failure is None:
        return err
    said, fix = failure
    return OutputError(f"cannot write {shown(target)} ({said}); nothing was changed there: {fix}")


# What writers that raise no OSError say when the disk refuses: PyTorch's zip writer (torch.save).
TORCH_WRITE_SIGNS = ("inline_container.cc", "PytorchStreamWriter failed writing", "iostream error")


def write_failure(err: BaseException, target: Path | None = None) -> tuple[str, str] | None:
    """(what was said, the fix) when ``err`` is a write the disk refused, found anywhere in its chain of
    causes (exporters and serializers wrap the OS's error in their own); None for anything else.

    No room, no quota and a read-only filesystem count wherever they happen; no rights (EACCES,
    EPERM) only at ``target`` or its staging beside it (or naming no file), since an input that cannot
    be read says the same.
    A bertfit error is explained already: it and what it wraps are left alone.
    """
    seen: BaseException | None = err
    for _ in range(8):  # a chain is short; the bound guards against a cycle
        if seen is None or isinstance(seen, BertfitError):
            return None
        if isinstance(seen, OSError) and seen.errno in WRITE_FIXES and (
                seen.errno not in (errno.EACCES, errno.EPERM) or _at_output(seen.filename, target)):
            return seen.strerror or str(seen), WRITE_FIXES[seen.errno]
        text = str(seen)
        for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            if os.strerror(code) in text:  # safetensors: 'IoError(Os { code: 28, ... "No space left on device" })'
                return os.strerror(code), WRITE_FIXES[code]
        if any(sign in text for sign in TORCH_WRITE_SIGNS):
            return "PyTorch could not finish writing a file; the disk is probably full", WRITE_FIXES[errno.ENOSPC]
        seen = seen.__cause__ or seen.__context__
    return None


def _at_output(filename: Any, target: Path | None) -> bool:
    """Whether ``filename`` is ``target``, inside it, or beside it under its staging names (``.NAME...``);
    an error naming no file counts as the output's when there is one."""
    if target is None:
        return False
    if not isinstance(filename, str | Path):
        return filename is None
    path, out = resolved(Path(filename)), resolved(target)
    if path == out or out in path.parents:
        return True
    return out.parent in path.parents and path.relative_to(out.parent).parts[0].startswith(f".{out.name}")


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
        remove(old)
    else:
        staging.rename(target)


def resolved(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def through_link(target: Path) -> Path:
    """Where ``target`` leads: the path a symbolic link points to (followed to the end), else ``target`` itself.
    Renaming a finished output over the link would replace the link and leave what it points to as it was."""
    return resolved(target) if target.is_symlink() else target


# Outputs completed (renamed into place) by this process, in order: what an interrupted command had saved.
SAVED: list[Path] = []


def remove(path: Path) -> None:
    """A folder, a file or a link, gone (a link itself, never what it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
