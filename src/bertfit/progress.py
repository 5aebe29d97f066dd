"""Progress for people: a tqdm bar on a terminal, plain periodic lines anywhere else.

A bar redraws itself with carriage returns and cursor moves, which a terminal shows as one line
and a CI log or a ``2> log`` file keeps as thousands of fragments. When standard error is not a
terminal, progress is one ordinary log line every ``BERTFIT_PROGRESS_SECONDS`` seconds (30 by
default) through the ``bertfit`` logger, so ``--quiet`` silences it like any other line. This
module draws nothing else and knows nothing of models.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger("bertfit.progress")


def interval() -> float:
    return float(os.environ.get("BERTFIT_PROGRESS_SECONDS", "30"))


def on_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", disable: bool = False, leave: bool = True) -> Any:
    """A tqdm bar on a terminal; elsewhere a :class:`PlainProgress` with the same calls (update, close, iteration)."""
    if not disable and not on_terminal():
        return PlainProgress(iterable, total=total, desc=desc, unit=unit)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc or None, unit=unit, disable=disable, leave=leave, file=sys.stderr)


class PlainProgress:
    """Counts like a tqdm bar and says so in a log line every ``interval()`` seconds, and once at the end
    when it said anything before (short tasks stay silent)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it"):
        self.iterable = iterable
        self.total = total if total is not None else _length(iterable)
        self.desc = desc or "progress"
        self.unit = unit.strip() or "it"
        self.n = 0
        self.started = self.last = time.monotonic()
        self.spoke = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= interval():
            self.last = now
            self._say()

    def close(self) -> None:
        if self.spoke:
            self._say(done=True)
            self.spoke = False

    def _say(self, done: bool = False) -> None:
        self.spoke = True
        share = f" of {self.total:,} ({self.n / self.total:.0%})" if self.total else ""
        log.info("%s: %s%s %s%s, %.0f s", self.desc, f"{self.n:,}", share, self.unit, ", done" if done else "",
                 time.monotonic() - self.started)


def _length(iterable: Iterable[Any] | None) -> int | None:
    try:
        return len(iterable)  # type: ignore[arg-type]
    except TypeError:
        return None
