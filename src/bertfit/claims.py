"""One process at a time writes an output: a second run aimed at the same ``--out`` is refused at once.

Two runs writing one output would share its checkpoints and staging, and the first to finish would
delete what the other still uses. :func:`claimed` holds an output for the length of a command with
an advisory lock (``flock``) on a hidden ``.NAME.lock`` beside it, which the OS releases when the
process ends however it ends, so no stale lock outlives a killed run. Holding it, a run also removes
the staging a killed run left beside the output. The lock is local to one machine's view of the
filesystem (a network filesystem may not honour it); where the OS has no ``fcntl`` (Windows),
outputs are not held.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from pathlib import Path

from bertfit.errors import OutputError
from bertfit.staging import STAGING_PREFIX, remove, resolved, shown

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

_HELD: set[Path] = set()  # outputs this process holds (claimed is re-entrant: a run that saves through save_pretrained)


@contextlib.contextmanager
def claimed(target: Path | None, flag: str = "--out") -> Iterator[None]:
    """Hold ``target`` while this process writes it: another bertfit process already writing it is refused at once.

    The hold is an advisory lock on a hidden ``.NAME.lock`` beside the output, which the OS releases
    when the process ends however it ends (a kill too), so no stale lock outlives a run. Once held,
    staging that a killed run left beside the output (``.NAME.tmp-PID``, ``.NAME.old-PID``) is removed.
    """
    real = resolved(target) if target is not None else None
    others = os.environ.get("RANK", "0") != "0"  # torchrun / accelerate launch: the main process holds the output
    if real is None or fcntl is None or others or real in _HELD:
        yield
        return
    lock = real.parent / f".{real.name}.lock"
    try:
        handle = lock.open("a+", encoding="utf-8")
    except OSError:  # no folder to hold it in, or no right to write there: the output's own checks say which
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            raise OutputError(f"{flag} {shown(target)} is being written by another bertfit run"
                              f"{f' (process {holder})' if holder.isdigit() else ''}; wait for it to end, or pass "
                              f"another {flag}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        _HELD.add(real)
        try:
            _remove_leftovers(real)
            yield
        finally:
            _HELD.discard(real)
            lock.unlink(missing_ok=True)


def _remove_leftovers(target: Path) -> None:
    """Staging and set-aside copies of ``target`` that a killed process left (it holds no lock, so none writes them)."""
    for kind in (".tmp-", ".old-"):
        for path in target.parent.glob(f"{STAGING_PREFIX}{glob.escape(target.name)}{kind}*"):
            if path.name.rpartition(kind)[2].isdigit():
                remove(path)
