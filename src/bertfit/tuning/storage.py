"""Where a ``bertfit tune`` study lives: a journal file or a database, checked and opened.

The default is a journal file beside ``--out`` (``--resume`` continues it); ``--storage URL`` names
a database (PostgreSQL, MySQL, SQLite) or ``journal:PATH``. A database is connected before the data
is read, so a bad URL fails in seconds. A journal is appended to, so it may not be one of the
command's inputs (the data, the ``--model`` folder), and a file that is there already must be a
journal: both are checked before the data is read, without creating anything. Every failure to
open is one line naming the storage, its password hidden. The study itself is run in ``run``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from bertfit.errors import UsageError
from bertfit.staging import refuse_inputs

SNIFFED_BYTES = 1 << 20  # of a journal's first line, read to tell a journal from another file


def journal_path(target: Path) -> Path:
    """The default storage: a journal file beside ``--out``."""
    return target.parent / f"{target.name}.study.journal"


def trials_dir(target: Path) -> Path:
    """Where trials that lead the study keep their models until the winner is saved."""
    return target.parent / f".{target.name}.trials"


def local_storage(target: Path, resume: bool, overwrite: bool, worker: bool) -> str:
    """The default journal's URL; one already there is continued (--resume), replaced (--overwrite) or refused."""
    journal = journal_path(target)
    if journal.exists() and not (resume or worker):
        if not overwrite:
            raise UsageError(f"a study is already in {journal}: pass --resume to continue it, or --overwrite to "
                             "start over")
        journal.unlink()
        shutil.rmtree(trials_dir(target), ignore_errors=True)
    return f"journal:{journal}"


def journal_file(url: str) -> str | None:
    """The path of a journal-file storage (``journal:PATH``, or a path ending in .journal); None for a database."""
    return url[len("journal:"):] if url.startswith("journal:") else url if url.endswith(".journal") else None


def check_journal(url: str, inputs: dict[str, Any]) -> None:
    """Refuse a journal that is one of ``inputs`` (role: path) or inside the --model folder, a folder, or a
    file that is not an Optuna journal; nothing is created here."""
    path = Path(journal_file(url) or "")
    if path.is_dir():
        unreachable(url, "it is a folder; name a journal file in it, e.g. journal:" + str(path / "study.journal"))
    refuse_inputs(path, "--storage", inputs, sealed=("the --model folder",))
    if path.parent.exists() and not path.parent.is_dir():
        unreachable(url, f"{path.parent} is a file, not a folder")
    if path.is_file():
        try:
            with path.open("rb") as file:
                first = file.readline(SNIFFED_BYTES)
            entry = json.loads(first) if first.strip() else {"op_code": None}
        except (OSError, ValueError) as err:
            unreachable(url, f"it is not an Optuna journal ({type(err).__name__}: {err})")
        if not isinstance(entry, dict) or "op_code" not in entry:
            unreachable(url, "it is not an Optuna journal (its first line is no journal entry)")


def open_journal(url: str) -> Any:
    """Optuna's journal storage at ``url`` (the file and its folder are created when missing)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(journal_file(url))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    except (OSError, ValueError, KeyError, TypeError) as err:  # a damaged journal: not JSON, entries without op_code
        unreachable(url, f"it is not a readable Optuna journal ({type(err).__name__}: {err})")


def database(optuna: Any, url: str, attempts: int = 5) -> Any:
    """Optuna's RDB storage at ``url``, connected now; any failure to reach it is one line naming the URL.

    Workers started together on a new database all create its tables; PostgreSQL's CREATE ... IF NOT
    EXISTS is not atomic, so all but one can fail on a duplicate in its catalogue. Those retry after a
    moment, when the tables are there; any other failure does not.
    """
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url)
        except Exception as err:  # SQLAlchemy's errors, a driver not installed, a server not answering
            raced = re.search(r"duplicate key|already exists", str(err), flags=re.I) is not None
            if not raced or attempt == attempts - 1:
                unreachable(url, err)
            time.sleep(0.5 + np.random.default_rng().random())


def unreachable(url: str, err: Exception | str) -> NoReturn:
    """The storage could not be opened: one line naming the URL (its password hidden) and what to pass."""
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    raise UsageError(f"cannot open --storage {masked(url)}: {reason}; pass postgresql://USER:PASS@HOST/DB "
                     "(pip install 'psycopg[binary]'), mysql+pymysql://USER:PASS@HOST/DB (pip install pymysql) "
                     "or sqlite:///PATH, or journal:PATH for a file") from (err if isinstance(err, Exception) else None)


def masked(url: str) -> str:
    """``url`` with its password hidden: what may be printed or recorded."""
    return re.sub(r"//[^@/]*@", "//***@", url)


LOST = "lost"  # a trial's "stopped" when the process running it ended mid-trial (killed): it never finished


def trial_owner() -> str:
    """Which process runs a trial (machine:pid), kept on the trial, so that one its process left can be told."""
    return f"{socket.gethostname()}:{os.getpid()}"


def fail_lost_trials(optuna: Any, study: Any) -> int:
    """Trials left running by a process of this machine that has ended (killed mid-trial), marked failed and
    lost: a resumed study neither counts them nor waits on them. A trial running on another machine is left
    as it is (whether its process lives cannot be told from here). Returns how many were marked."""
    host, lost = socket.gethostname(), 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        where, _, pid = str(trial.user_attrs.get("process", "")).rpartition(":")
        if where == host and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            study._storage.set_trial_user_attr(trial._trial_id, "stopped", LOST)  # noqa: SLF001 - the storage API
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)  # noqa: SLF001
            lost += 1
    return lost


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
