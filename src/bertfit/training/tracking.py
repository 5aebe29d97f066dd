"""``--report-to tensorboard,mlflow``: a run's figures sent where users already track experiments.

During training, Trainer's own integrations (``TensorBoardCallback``, ``MLflowCallback``) log the
per-step and per-epoch figures, built here with bertfit's destinations: TensorBoard event files in
``OUT.tensorboard/run-TIME/`` beside the model (``runs/`` without an ``--out``), and the MLflow run
that :class:`Tracking` opens first, so that Trainer logs into it instead of opening its own. At the
end :meth:`Tracking.finish` adds what only bertfit knows: the test metrics (scored once), the
baseline's, calibration, the method and settings, and the saved ``bertfit.json``, ``report.html``
and model card (MLflow artifacts; TensorBoard text). MLflow writes to ``MLFLOW_TRACKING_URI`` when
set, else to MLflow's own default (a local ``mlflow.db``): nothing leaves the machine unless asked.

The trackers open when training begins (Trainer's ``on_train_begin``), after every check that can
refuse the run, so a refused run leaves no event files or MLflow run behind. A run refused later
(exit code 2: the output, say) has what its trackers wrote removed again, though never a tracking
folder or store that was there before it; a run that fails or is interrupted keeps its figures,
marked FAILED or KILLED in MLflow.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from transformers import TrainerCallback

from bertfit.config import report_destinations
from bertfit.environment import require
from bertfit.errors import BertfitError
from bertfit.metrics import headline

log = logging.getLogger(__name__)

EXPERIMENT = "bertfit"  # MLflow's experiment when MLFLOW_EXPERIMENT_NAME is not set
SAVED_FILES = ("bertfit.json", "report.html", "README.md")


def tensorboard_dir(target: Path | None) -> Path:
    """Where this run's event files go: beside the model, one folder per run."""
    base = target.parent / f"{target.name}.tensorboard" if target is not None else Path("runs")
    return base / time.strftime("run-%Y%m%d-%H%M%S")


class Tracking:
    """One run's tracking: Trainer callbacks while it trains, the results once it is saved. A context manager."""

    def __init__(self, report_to: str | None, target: Path | None, command: str = "bertfit train"):
        # Under torchrun / accelerate launch the main process alone tracks (Trainer's callbacks also log from it only).
        self.names = report_destinations(report_to) if os.environ.get("RANK", "0") == "0" else []
        self.target = target
        self.command = command
        self.writer: Any = None
        self.mlflow: Any = None
        self.run_id: str | None = None
        self.log_dir: Path | None = None
        self.created: list[Path] = []  # what open() made that was not there before, parents first
        if "tensorboard" in self.names:
            require("tensorboard", f"{command} --report-to tensorboard")
        if "mlflow" in self.names:
            require("mlflow", f"{command} --report-to mlflow")

    def __enter__(self) -> Tracking:
        return self  # the trackers open with the training (:meth:`open`), after the checks that can refuse it

    def open(self) -> None:
        """Create this run's event folder and MLflow run (once); what did not exist before is noted, to undo."""
        if "tensorboard" in self.names and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir = tensorboard_dir(self.target)
            self.created += [path for path in (self.log_dir.parent, self.log_dir) if not path.exists()]
            self.writer = SummaryWriter(log_dir=str(self.log_dir))
            log.info("TensorBoard: event files in %s (tensorboard --logdir %s)", self.log_dir, self.log_dir.parent)
        if "mlflow" in self.names and self.mlflow is None:
            import mlflow

            if os.environ.get("MLFLOW_TRACKING_URI"):  # as Trainer's callback does, and before it: one store
                mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
            self.created += [path for path in _mlflow_stores(mlflow.get_tracking_uri()) if not path.exists()]
            self.mlflow = mlflow
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
            run = mlflow.start_run(run_name=self.target.name if self.target is not None else None)
            self.run_id = run.info.run_id
            log.info("MLflow: run %s in %s", self.run_id, mlflow.get_tracking_uri())

    def __exit__(self, kind, error, traceback) -> None:
        if self.writer is not None:
            self.writer.close()
        refused = isinstance(error, BertfitError) and error.exit_code == 2
        if self.mlflow is not None and self.mlflow.active_run() is not None:
            status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
            self.mlflow.end_run(status=status)
        if refused:
            self.discard()

    def discard(self) -> None:
        """Remove what this run's trackers wrote: its event folder, its MLflow run, and stores it created."""
        if self.mlflow is not None and self.run_id is not None:
            try:
                self.mlflow.delete_run(self.run_id)
            except Exception as err:  # noqa: BLE001 - a store that cannot be reached keeps the run, marked FAILED
                log.warning("MLflow run %s kept (marked FAILED): %s", self.run_id, err)
        for path in reversed(self.created):  # the deepest first; a folder others wrote into meanwhile stays
            if path == self.log_dir or path.is_dir() and not any(path.iterdir()):
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_file():
                path.unlink()

    def callbacks(self) -> list[Any]:
        """Trainer's own integrations, pointed at this run's destinations (none when not tracking).

        The first, :class:`OpenTrackers`, opens the destinations as training begins and hands the
        event writer to TensorBoard's callback before that one looks for it.
        """
        if not self.names:
            return []  # and transformers.integrations (which looks for every tracker installed) is not imported
        from transformers.integrations import MLflowCallback, TensorBoardCallback

        board = TensorBoardCallback(tb_writer=self.writer) if "tensorboard" in self.names else None
        # MLflow's finds the run opened first and logs into it
        return [OpenTrackers(self, board), *([board] if board else []),
                *([MLflowCallback()] if "mlflow" in self.names else [])]

    def series(self, name: str, points: list[tuple[int, float]]) -> None:
        """A figure over steps (``tune``: each trial's validation score by trial number)."""
        self.open()
        for step, value in points:
            if self.writer is not None:
                self.writer.add_scalar(name, value, step)
            if self.mlflow is not None:
                self.mlflow.log_metric(name, value, step=step)

    def finished(self, result: Any) -> Any:
        """:meth:`finish` with a training result (None off the main process: nothing to send); the result back."""
        if result is not None:
            self.finish(result.classifier.record, result.model_dir)
        return result

    def finish(self, record: Any, folder: Path | None) -> None:
        """The run's results: test metrics, the baseline's, calibration, method and settings, the saved files."""
        self.open()
        figures = {f"test/{key}": value for key, value in headline((record.metrics or {}).get("test") or {}).items()}
        figures |= {f"validation/{key}": value
                    for key, value in headline((record.metrics or {}).get("validation") or {}).items()}
        baseline = ((record.baseline or {}).get("test")) or {}
        figures |= {f"baseline_test/{key}": value for key, value in headline(baseline).items()}
        if record.calibration is not None:
            figures["calibration/temperature"] = record.calibration.temperature
            for name in ("test_ece_before", "test_ece_after"):
                if getattr(record.calibration, name) is not None:
                    figures[f"calibration/{name}"] = getattr(record.calibration, name)
        if record.blend is not None:
            figures["blend/weight"] = record.blend.get("weight")
        if record.train_seconds is not None:
            figures["train_seconds"] = record.train_seconds
        figures = {key: float(value) for key, value in figures.items() if isinstance(value, int | float)}
        settings = {"method": (record.method or {}).get("name", "finetune"), **(record.settings or {})}
        files = [folder / name for name in SAVED_FILES if folder is not None and (folder / name).is_file()]
        if self.writer is not None:
            for key, value in figures.items():
                self.writer.add_scalar(key, value, 0)
            self.writer.add_text("bertfit/settings", f"```\n{json.dumps(settings, indent=2, default=str)}\n```")
            for path in files:
                if path.suffix in (".json", ".md"):
                    self.writer.add_text(f"bertfit/{path.name}", f"```\n{path.read_text(encoding='utf-8')}\n```")
            self.writer.flush()
        if self.mlflow is not None:
            self.mlflow.log_metrics({key.replace("/", "_"): value for key, value in figures.items()})
            self.mlflow.set_tags({"bertfit.command": self.command, "bertfit.method": settings["method"],
                                  "bertfit.model_dir": str(folder) if folder is not None else ""})
            self.mlflow.log_dict(settings, "bertfit_settings.json")
            for path in files:
                self.mlflow.log_artifact(str(path))


class OpenTrackers(TrainerCallback):
    """Opens a :class:`Tracking`'s destinations as training begins, before the callbacks that write to them."""

    def __init__(self, tracking: Tracking, board: Any = None):
        self.tracking, self.board = tracking, board

    def on_train_begin(self, args, state, control, **kwargs):
        self.tracking.open()
        if self.board is not None:
            self.board.tb_writer = self.tracking.writer  # TensorBoard's callback closes it when training ends


def _mlflow_stores(uri: str) -> list[Path]:
    """The local files an MLflow tracking URI writes to: a SQLite file or a file store, and ./mlruns (artifacts)."""
    parsed = urlparse(uri)
    stores = [Path("mlruns")]
    if parsed.scheme == "sqlite" and parsed.path not in ("", "/", "/:memory:"):
        stores.insert(0, Path(unquote(parsed.path[1:])) if uri.startswith("sqlite:///") else Path(parsed.path))
    elif parsed.scheme in ("", "file"):
        stores.insert(0, Path(unquote(parsed.path)))
    return [store.absolute() for store in stores]
