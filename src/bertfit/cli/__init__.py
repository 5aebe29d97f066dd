"""The bertfit command: train, evaluate, predict, report, export, serve, distill, compress.

``parser`` builds the command line (flags are the config fields with dashes), ``commands`` runs
each command; here is ``main``: logging, and every failure turned into one line. Human progress
goes to stderr, results for machines (JSON, JSON lines) to stdout. A user error prints one line
``error: ...`` and exits 2, a runtime failure exits 1, and ``--debug`` shows the traceback. A
write the disk refused (no room, no rights), wherever it happened, is a user error naming the
output; one to standard output says what was saved all the same. The work itself is done by the
library.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from bertfit.cli import commands
from bertfit.cli.output import StdoutError
from bertfit.cli.parser import build_parser, demo_data_path, subcommands  # noqa: F401 - demo_data_path: for tests and scripts
from bertfit.errors import BertfitError, Terminated, UsageError
from bertfit.staging import SAVED, shown, write_failure

log = logging.getLogger("bertfit")


def _setup_logging(debug: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("bertfit")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    root.propagate = False
    # Library-internal bars (e.g. "Writing model shards") say nothing useful; Trainer's own bars stay.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import warnings

        warnings.filterwarnings("ignore")


PATH_FLAGS = ("out", "output", "input", "data", "model", "student", "storage", "class_weights")  # by dest


def main(argv: list[str] | None = None) -> int:
    SAVED.clear()  # what this command saves, for the line an interruption prints
    try:
        os.getcwd()
    except FileNotFoundError:  # relative paths would mean nothing, and some libraries fail to load (oneMKL)
        _error("the current folder no longer exists (it was deleted or moved); cd into a folder and run again")
        return 2
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:  # a flag or argument argparse could not take
        _error(str(err))
        return err.exit_code
    empty = next((name for name in PATH_FLAGS if getattr(args, name, None) == ""), None)
    if empty is not None:  # "" is the current folder to pathlib: --out "$UNSET" would write there
        _error(f"{_named(parser, args.command, empty)} is empty; pass a path (an unset shell variable gives an "
               "empty one)")
        return 2
    if os.environ.get("RANK", "0") != "0":
        args.quiet = True  # torchrun / accelerate launch: the main process (rank 0) alone shows progress
    _setup_logging(args.debug, args.quiet)
    try:
        # Log lines go through tqdm.write, so progress bars do not draw over them.
        with logging_redirect_tqdm(loggers=[logging.getLogger("bertfit")]), _sigterm_interrupts(args.handler):
            return getattr(commands, f"cmd_{args.handler}")(args)
    except StdoutError as err:
        _quiet_stdout()  # what stdout still buffers would fail again at exit, in a second message
        _error(str(err))
        return err.exit_code
    except BertfitError as err:
        if args.debug:
            raise
        _error(str(err))
        return err.exit_code
    except KeyboardInterrupt as err:
        _error(_interrupted(err))
        return 143 if isinstance(err, Terminated) else 130
    except BrokenPipeError:
        # The reader went away (`bertfit predict ... | head -1`): stop quietly, as Unix tools do. Later writes,
        # the interpreter's last flush included, go nowhere instead of raising again.
        _quiet_stdout()
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe ended
    except Exception as err:  # the last line of defence: one line, not a traceback
        if args.debug:
            raise
        message, code = _failure(err, commands.output_path(args))
        _error(message)
        return code


@contextlib.contextmanager
def _sigterm_interrupts(handler: str) -> Iterator[None]:
    """SIGTERM (``timeout``, ``docker stop``) stops the command as Ctrl-C does, so that what it was writing is
    removed, not left half-written; the server has its own graceful stop (uvicorn's)."""
    if handler == "serve" or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise Terminated  # no message: training adds its own account when it keeps checkpoints

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _interrupted(err: KeyboardInterrupt) -> str:
    """The line for Ctrl-C or SIGTERM: what was saved before it, complete, else that nothing was."""
    if isinstance(err, Terminated) and str(err):  # training's own account (its checkpoints kept for --resume)
        return str(err)
    how = "terminated" if isinstance(err, Terminated) else "interrupted"
    if not SAVED:
        return f"{how}; nothing was saved"
    last = SAVED[-1]
    follow = (f": `bertfit report {shown(last)}` writes its report" if (last / "bertfit.json").is_file()
              and not (last / "report.html").exists() else "")
    return f"{how} after {shown(last)} was saved in full; what was to follow it was not done{follow}"


def _named(parser: argparse.ArgumentParser, command: str, dest: str) -> str:
    """How the command line names a value: its flag (--out), or its place (DATA)."""
    action = next((a for a in subcommands(parser)[command]._actions if a.dest == dest), None)
    if action is None or not action.option_strings:
        return (action.metavar if action is not None and isinstance(action.metavar, str) else dest).upper()
    return action.option_strings[-1]


def _failure(err: Exception, output: Path | None) -> tuple[str, int]:
    """The error line and exit code for a failure no bertfit error explained.

    A write the disk refused (no room, no rights), wherever it happened (a checkpoint, an exporter's
    file), names the output: the output itself is only ever renamed into place when complete. Any other
    error of the OS is said in its words; anything else is a bertfit bug, said as such.
    """
    failure = write_failure(err, output)
    if failure is not None:
        said, fix = failure
        where = shown(output) if output is not None else shown(getattr(err, "filename", None) or "the output")
        return f"cannot write {where} ({said}); nothing was changed there: {fix}", 2
    if isinstance(err, OSError):  # the OS refused (a device error, a missing folder): what and where
        where = f" ({err.filename})" if err.filename else ""
        return f"{err.strerror or err}{where}: check the path and try again", 1
    return f"unexpected {type(err).__name__}: {err} (run again with --debug for the traceback)", 1


def _quiet_stdout() -> None:
    """Send what is still written to stdout (the interpreter's last flush included) nowhere."""
    try:
        fileno = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): nothing to redirect
        return
    os.dup2(os.open(os.devnull, os.O_WRONLY), fileno)


def _error(message: str) -> None:
    """The one ``error:`` line, on a line of its own: progress bars a failure left open are ended first.

    A newline or another control character in the message (a path given with one) is shown escaped,
    so that the message stays one line.
    """
    from tqdm import tqdm

    bars = list(tqdm._instances)  # every live bar, Trainer's included (tqdm keeps them for nesting)
    for bar in bars:
        bar.close()
    line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
    print(f"{chr(10) if bars else ''}error: {line}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
