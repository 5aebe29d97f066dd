"""``--report-to tensorboard,mlflow``: a run's figures sent where users already track experiments.

During training, Trainer's own integrations (``TensorBoardCallback``, ``MLflowCallback``) log the
per-step and per-epoch figures, built here with bertfit's destinations: TensorBoard event files in
``OUT.tensorboard/run-TIME/`` beside the model (``runs/`` without an ``--out``), and the MLflow run
that :class:`Tracking` opens first, so that Trainer logs into it instead of opening its own. At the
end :meth:`Tracking.finish` adds what only bertfit knows: the test metrics (scored once), the
baseline's, calibration, the method and settings, and the saved ``bertfit.json``, ``report.html``
and model card (MLflow artifacts; TensorBoard text). MLflow writes to ``MLFLOW_TRACKING_URI`` when
set, else to MLflow's own default (a local ``mlflow.db``): nothing leaves the machine unless asked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from bertfit.config import report_destinations
from bertfit.environment import require
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
        if "tensorboard" in self.names:
            require("tensorboard", f"{command} --report-to tensorboard")
        if "mlflow" in self.names:
            require("mlflow", f"{command} --report-to mlflow")

    def __enter__(self) -> Tracking:
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            self.log_dir = tensorboard_dir(self.target)
            self.writer = SummaryWriter(log_dir=str(self.log_dir))
            log.info("TensorBoard: event files in %s (tensorboard --logdir %s)", self.log_dir, self.log_dir.parent)
        if "mlflow" in self.names:
            import mlflow

            self.mlflow = mlflow
            mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
            run = mlflow.start_run(run_name=self.target.name if self.target is not None else None)
            self.run_id = run.info.run_id
            log.info("MLflow: run %s in %s", self.run_id, mlflow.get_tracking_uri())
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.mlflow is not None and self.mlflow.active_run() is not None:
            status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
            self.mlflow.end_run(status=status)

    def callbacks(self) -> list[Any]:
        """Trainer's own integrations, pointed at this run's destinations (none when not tracking)."""
        if self.writer is None and self.mlflow is None:
            return []  # and transformers.integrations (which looks for every tracker installed) is not imported
        from transformers.integrations import MLflowCallback, TensorBoardCallback

        found = []
        if self.writer is not None:
            found.append(TensorBoardCallback(tb_writer=self.writer))
        if self.mlflow is not None:
            found.append(MLflowCallback())  # it finds the run opened in __enter__ and logs into it
        return found

    def series(self, name: str, points: list[tuple[int, float]]) -> None:
        """A figure over steps (``tune``: each trial's validation score by trial number)."""
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
