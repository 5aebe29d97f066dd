"""--report-to: the runs read back with TensorBoard's event reader and MLflow's client, from real local stores."""

from __future__ import annotations

import json

import pytest

from bertfit.config import TrainConfig, report_destinations
from bertfit.errors import UsageError
from bertfit.training.run import train
from conftest import make_rows

SETTINGS = {"epochs": 2, "learning_rate": 1e-2, "patience": 0, "batch_size": 8}


def test_report_to_reads_none_one_or_several():
    assert report_destinations("none") == [] and report_destinations(None) == []
    assert report_destinations("TensorBoard") == ["tensorboard"]
    assert report_destinations("mlflow, tensorboard,mlflow") == ["mlflow", "tensorboard"]
    for bad in ("wandb", "none,mlflow"):
        with pytest.raises(UsageError, match="--report-to takes none, or one or more of tensorboard, mlflow"):
            report_destinations(bad)
    assert any("--report-to" in p for p in TrainConfig(report_to="comet").problems())


def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return events


def test_tensorboard_gets_the_epochs_and_the_test_metrics_beside_the_model(tmp_path, tiny_model_dir):
    out = tmp_path / "model"
    result = train(make_rows(), out, model=str(tiny_model_dir), report_to="tensorboard", progress=False, **SETTINGS)
    runs = list((tmp_path / "model.tensorboard").iterdir())
    assert len(runs) == 1
    events = _scalars(runs[0])
    tags = events.Tags()["scalars"]
    assert "eval/accuracy" in tags and "train/loss" in tags  # Trainer's own integration, per epoch / step
    assert len(events.Scalars("eval/accuracy")) == 2  # one per epoch
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(result.test["accuracy"])
    assert events.Scalars("baseline_test/accuracy")[0].value == pytest.approx(result.baseline["test"]["accuracy"])
    texts = events.Tags()["tensors"]
    assert "bertfit/bertfit.json/text_summary" in texts and "bertfit/settings/text_summary" in texts


def test_mlflow_run_holds_params_epochs_test_metrics_and_the_saved_files(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("sqlalchemy", reason="MLflow's local store needs the whole mlflow package")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)  # MLflow keeps a SQLite store's artifacts in ./mlruns
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "tickets")
    out = tmp_path / "model"
    result = train(make_rows(), out, model=str(tiny_model_dir), report_to="mlflow", progress=False, **SETTINGS)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tickets")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.run_name == "model"
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test["accuracy"])
    assert run.data.metrics["baseline_test_accuracy"] == pytest.approx(result.baseline["test"]["accuracy"])
    assert "calibration_temperature" in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "eval_accuracy")) == 2  # per epoch, from Trainer
    assert run.data.params["learning_rate"] == "0.01"  # Trainer's arguments, logged by its callback
    assert run.data.tags["bertfit.method"] == "finetune"
    files = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert {"bertfit.json", "report.html", "README.md", "bertfit_settings.json"} <= files
    saved = json.loads((out / "bertfit.json").read_text())
    assert saved["metrics"]["test"]["accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])


def test_a_failed_run_is_marked_failed(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("sqlalchemy", reason="MLflow's local store needs the whole mlflow package")
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("bertfit.training.run.decide_then_score", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        train(make_rows(), tmp_path / "model", model=str(tiny_model_dir), report_to="mlflow", progress=False,
              **SETTINGS)
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("bertfit").experiment_id])
    assert run.info.status == "FAILED"


def test_a_missing_extra_fails_before_any_work_with_the_install_line(tmp_path, tiny_model_dir, monkeypatch):
    from bertfit import environment

    monkeypatch.setattr(environment, "importable", lambda name: name != "mlflow")
    with pytest.raises(UsageError, match=r"needs mlflow; install: pip install 'bertfit\[mlflow\]'"):
        train(make_rows(), tmp_path / "model", model=str(tiny_model_dir), report_to="mlflow", progress=False)
    assert not (tmp_path / "model").exists()


def test_tune_tracks_each_trial_s_score_and_the_winner(tmp_path, tiny_model_dir):
    from bertfit.tuning.run import tune

    out = tmp_path / "tuned"
    result = tune(make_rows(per_class=30), out, budget="5m", trials=2, model=str(tiny_model_dir), progress=False,
                  report_to="tensorboard", learning_rate=1e-3, max_length=16)
    (run,) = (tmp_path / "tuned.tensorboard").iterdir()
    events = _scalars(run)
    scored = [t for t in result.study["trials"] if t["value"] is not None]
    assert [e.step for e in events.Scalars("trial_validation")] == [t["number"] for t in scored]
    assert events.Scalars("test/accuracy")[0].value == pytest.approx(result.trained.test["accuracy"])


@pytest.mark.parametrize("report_to", ["tensorboard", "mlflow"])
@pytest.mark.parametrize("refused", [{"train_layers": "5"}, {"max_length": 100000}, {"max_length": 3},
                                     {"class_weights": "missing.json"}])
def test_a_run_refused_before_training_leaves_no_tracking_files(tmp_path, tiny_model_dir, monkeypatch, report_to,
                                                                 refused, caplog):
    if report_to == "mlflow":
        pytest.importorskip("sqlalchemy", reason="MLflow's local store needs the whole mlflow package")
    monkeypatch.chdir(tmp_path)  # MLflow's default store is ./mlflow.db
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UsageError):
        train(make_rows(), tmp_path / "model", model=str(tiny_model_dir), report_to=report_to, progress=False,
              **{**SETTINGS, **refused})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert "mlflow" not in caplog.text.lower()


def test_a_run_refused_after_its_trackers_opened_removes_only_what_it_wrote(tmp_path, tiny_model_dir, monkeypatch):
    from bertfit.errors import OutputError

    def refused(*args, **kwargs):
        raise OutputError("the output appeared meanwhile")

    monkeypatch.setattr("bertfit.training.run.decide_then_score", refused)
    with pytest.raises(OutputError, match="meanwhile"):
        train(make_rows(), tmp_path / "model", model=str(tiny_model_dir), report_to="tensorboard", progress=False,
              **SETTINGS)
    assert not (tmp_path / "model.tensorboard").exists()  # the event folder it made, and the folder above it
    earlier = tmp_path / "model.tensorboard" / "run-earlier"
    earlier.mkdir(parents=True)
    (earlier / "events.out.tfevents.1").write_text("an earlier run's")
    with pytest.raises(OutputError, match="meanwhile"):  # --overwrite: past the first run's checkpoints
        train(make_rows(), tmp_path / "model", model=str(tiny_model_dir), report_to="tensorboard", progress=False,
              overwrite=True, **SETTINGS)
    assert [p.name for p in (tmp_path / "model.tensorboard").iterdir()] == ["run-earlier"]


def test_a_refused_mlflow_run_is_deleted_and_a_store_it_made_removed(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("sqlalchemy", reason="MLflow's local store needs the whole mlflow package")
    from mlflow.entities import ViewType
    from mlflow.tracking import MlflowClient

    from bertfit.errors import OutputError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bertfit.training.run.decide_then_score",
                        lambda *a, **k: (_ for _ in ()).throw(OutputError("the output appeared meanwhile")))
    uri = f"sqlite:///{tmp_path / 'kept' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'new.db'}")
    with pytest.raises(OutputError, match="meanwhile"):
        train(make_rows(), tmp_path / "model", model=str(tiny_model_dir), report_to="mlflow", progress=False,
              **SETTINGS)
    assert not (tmp_path / "new.db").exists()
    (tmp_path / "kept").mkdir()
    client = MlflowClient(uri)
    client.create_experiment("bertfit")  # a store that was there before the run
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(OutputError, match="meanwhile"):  # --overwrite: past the first run's checkpoints
        train(make_rows(), tmp_path / "model", model=str(tiny_model_dir), report_to="mlflow", progress=False,
              overwrite=True, **SETTINGS)
    assert (tmp_path / "kept" / "mlflow.db").exists()
    experiment = client.get_experiment_by_name("bertfit").experiment_id
    assert client.search_runs([experiment]) == []  # the refused run is deleted
    (run,) = client.search_runs([experiment], run_view_type=ViewType.ALL)
    assert run.info.lifecycle_stage == "deleted"
