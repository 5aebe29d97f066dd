"""The errors bertfit raises for things a user can fix.

Each error subclasses the built-in it specialises (scikit-learn's habit), so callers that catch
``ValueError`` or ``OSError`` keep working, and each carries the exit code the CLI uses: 2 for a
problem with the input or the flags, 1 for a failure while running. Messages are one line that
says what was received, what is valid and how to fix it. This module does no I/O.
"""

from __future__ import annotations


class BertfitError(Exception):
    """Base class: a problem bertfit can explain in one line."""

    exit_code = 1


class UsageError(BertfitError, ValueError):
    """A flag or argument is invalid (bad value, out of range, conflicting options)."""

    exit_code = 2


class DataError(BertfitError, ValueError):
    """The data cannot be read or is unfit for training (columns, labels, splits, leaks)."""

    exit_code = 2


class ModelLoadError(BertfitError, OSError):
    """A model or a saved bertfit folder cannot be found or loaded."""

    exit_code = 2


class OutputError(BertfitError, OSError):
    """The output location cannot be written (exists, not writable)."""

    exit_code = 2


class TrainingError(BertfitError, RuntimeError):
    """Training failed or was interrupted; nothing was saved."""

    exit_code = 1


class TrainingInterrupted(TrainingError):
    """Ctrl-C while training: the run stopped; what the caller had kept (a tuning study's best trial) stays."""


class TrainingDiverged(TrainingError):
    """The model's outputs stopped being finite numbers while it trained (too high a learning rate or weight decay)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``docker stop``, a scheduler's preemption), raised where the command was, as Ctrl-C is:
    what was being written is removed and the command ends, but a training run keeps its checkpoints, so that
    ``--resume`` goes on from the last finished epoch."""
