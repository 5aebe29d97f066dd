"""bertfit tune: an Optuna study over training settings (tiny model; the search's worth is bench/tune.py's)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from bertfit.errors import UsageError  # noqa: E402
from bertfit.tuning.run import parse_budget, tune  # noqa: E402
from bertfit.tuning.storage import journal_path, open_journal, trials_dir  # noqa: E402

# The tiny test model learns at about 1e-3; the space spans a fifth to three times the rate given.
SETTINGS = {"learning_rate": 1e-3, "max_length": 16}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from conftest import make_rows

    path = tmp_path_factory.mktemp("tune-data") / "tickets.csv"
    make_rows(per_class=30).to_csv(path, index=False)
    return path


def test_budget_reads_seconds_minutes_hours():
    assert parse_budget("90s") == 90 and parse_budget("30m") == 1800 and parse_budget("1.5h") == 5400
    assert parse_budget("5") == 300 and parse_budget(" 2 M ") == 120
    for bad in ("", "0", "-3m", "soon", "3 days", "1e3"):
        with pytest.raises(UsageError, match="--budget"):
            parse_budget(bad)


def test_tune_saves_the_winner_as_trained_with_its_study(tmp_path, data, tiny_model_dir):
    from bertfit import TextClassifier

    out = tmp_path / "tuned"
    result = tune(data, out, budget="5m", trials=4, model=str(tiny_model_dir), progress=False, **SETTINGS)
    study = result.study
    record = json.loads((out / "bertfit.json").read_text(encoding="utf-8"))
    assert record["study"]["trials_complete"] + record["study"]["trials_pruned"] == 4
    trials = record["study"]["trials"]
    assert trials[0]["recipe"] == "default" and trials[0]["params"]["train_layers"] == "all"
    top = max((t for t in trials if t["state"] == "complete"), key=lambda t: t["value"])
    best = next(t for t in trials if t["number"] == study["best_trial"])
    assert study["top_trial"] == top["number"] and record["study"]["best_params"] == best["params"]
    if best is not top:  # the default kept: the top trial led it by no more than the margin
        assert best is trials[0] and top["value"] - best["value"] <= study["margin"]
    # the saved model is the winner as trained: same validation score, its settings, test scored once
    assert record["metrics"]["validation"]["accuracy"] == pytest.approx(best["validation"])
    assert record["settings"]["train"]["learning_rate"] == pytest.approx(best["params"]["learning_rate"])
    assert record["metrics"]["test"]["rows"] > 0 and record["baseline"]["test"]["accuracy"] is not None
    assert not trials_dir(out).exists() and journal_path(out).is_file()
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="study"' in page and "default recipe" in page and "one standard error" in page
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"settings chosen by `bertfit tune`: {record['study']['trials_complete']} trials" in card
    assert TextClassifier.from_pretrained(out).predict(["printer toner empty"])[0] in record["labels"]
    assert result.summary()["test"]["accuracy"] == record["metrics"]["test"]["accuracy"]


def test_a_second_run_resumes_or_is_refused(tmp_path, data, tiny_model_dir):
    out = tmp_path / "tuned"
    tune(data, out, budget="5m", trials=2, model=str(tiny_model_dir), progress=False, **SETTINGS)
    with pytest.raises(UsageError, match="--resume"):
        tune(data, out, budget="5m", trials=3, model=str(tiny_model_dir), progress=False, **SETTINGS)
    result = tune(data, out, budget="5m", trials=3, model=str(tiny_model_dir), progress=False, resume=True,
                  **SETTINGS)
    assert len(result.study["trials"]) == 3  # the two before, and one more
    assert sum(t["recipe"] == "default" for t in result.study["trials"]) == 1
    fresh = tune(data, out, budget="5m", trials=1, model=str(tiny_model_dir), progress=False, overwrite=True,
                 **SETTINGS)
    assert len(fresh.study["trials"]) == 1


def test_budget_stops_a_running_trial(tmp_path, data, tiny_model_dir, caplog):
    out = tmp_path / "tuned"
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="bertfit"), \
            pytest.raises(UsageError, match="no trial finished within --budget 20s"):
        tune(data, out, budget="20s", model=str(tiny_model_dir), progress=False,
             **SETTINGS | {"epochs": 400, "patience": 0})
    assert time.monotonic() - started < 20 + 60
    assert "0 trials complete, 1 pruned" in caplog.text
    # nothing to resume: the journal it began goes too, so the same command runs again as it is
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", [{"train_layers": "5"}, {"max_length": 3}])
def test_what_train_refuses_for_the_model_is_refused_before_the_study(tmp_path, data, tiny_model_dir, flag):
    with pytest.raises(UsageError, match=f"--{next(iter(flag)).replace('_', '-')} "):
        tune(data, tmp_path / "tuned", budget="5m", model=str(tiny_model_dir), progress=False, **SETTINGS | flag)
    assert not journal_path(tmp_path / "tuned").exists() and not (tmp_path / "tuned").exists()


@pytest.fixture(scope="module")
def postgresql():
    """A real PostgreSQL server (pgserver's wheel) for the length of this module; skipped where none starts."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver (a PostgreSQL server in a wheel) is not installed")
    pytest.importorskip("psycopg", reason="psycopg, SQLAlchemy's PostgreSQL driver, is not installed")
    folder = Path(tempfile.mkdtemp(prefix="bertfit-pg-"))  # not under pytest's 0700 folder: root runs it as a user
    try:
        server = pgserver.get_server(folder / "data", cleanup_mode="delete")
    except Exception as err:  # no binaries for this platform, no user to run it as, a port or socket refused
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {type(err).__name__}: {err}")
    yield server.get_uri()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("kind", ["journal", "postgresql"])
def test_a_worker_and_the_main_process_share_one_study_and_lose_no_trial(tmp_path, data, tiny_model_dir, request,
                                                                           kind):
    storage = f"journal:{tmp_path / 'shared.journal'}" if kind == "journal" else request.getfixturevalue(kind)
    out = tmp_path / "tuned"
    command = [sys.executable, "-m", "bertfit", "tune", str(data), "--model", str(tiny_model_dir), "--storage",
               storage, "--trials", "6", "--budget", "5m", "--learning-rate", "1e-3", "--max-length", "16",
               "--out", str(out), "--quiet"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    processes = [subprocess.Popen(command + extra, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for extra in ([], ["--worker"])]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert all(process.returncode == 0 for process in processes), [err[-2000:] for _, err in outputs]
    import optuna

    opened = open_journal(storage) if storage.startswith("journal:") else storage
    study = optuna.load_study(study_name="bertfit", storage=opened)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == list(range(len(numbers))) and len(numbers) >= 6
    assert all(t.state.is_finished() for t in study.trials)  # none lost or left running
    assert sum(t.user_attrs.get("recipe") == "default" for t in study.trials) == 1
    main, worker = (json.loads(stdout.splitlines()[-1]) for stdout, _ in outputs)
    assert main["model_dir"] == str(out) and "model_dir" not in worker
    ran = {t.number for t in study.trials}
    record = json.loads((out / "bertfit.json").read_text(encoding="utf-8"))
    assert record["study"]["best_trial"] in ran


def test_ctrl_c_keeps_the_best_trial_so_far(tmp_path, data, tiny_model_dir, monkeypatch):
    from bertfit.tuning import run

    def interrupt_third_trial(self, args, state, control, **kwargs):
        if self.trial.number == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(run.TrialWatch, "on_step_end", interrupt_third_trial)
    out = tmp_path / "tuned"
    result = tune(data, out, budget="5m", trials=5, model=str(tiny_model_dir), progress=False, **SETTINGS)
    states = [t["state"] for t in result.study["trials"]]
    assert states[:2] == ["complete", "complete"] and states[2] == "fail" and len(states) == 3
    assert result.study["best_trial"] in (0, 1) and (out / "bertfit.json").is_file()


def test_cli_names_the_problem_in_one_line(tmp_path, data, capsys, monkeypatch):
    from bertfit.cli import main

    assert main(["tune", str(data), "--budget", "soon", "--out", str(tmp_path / "t"), "--quiet"]) == 2
    assert "--budget takes a time like" in capsys.readouterr().err
    import bertfit.environment

    monkeypatch.setattr(bertfit.environment, "importable", lambda name: name != "optuna")
    assert main(["tune", str(data), "--out", str(tmp_path / "t"), "--quiet"]) == 2
    assert "pip install 'bertfit[tune]'" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_settings_that_cannot_finish_in_the_time_left_are_not_started():
    import optuna

    from bertfit.tuning.choice import expected_seconds
    from bertfit.tuning.run import SKIPPED, TrialCount

    distributions = {"train_layers": optuna.distributions.CategoricalDistribution(["all", "pooler"]),
                     "batch_size": optuna.distributions.CategoricalDistribution([8, 16]),
                     "epochs": optuna.distributions.IntDistribution(2, 8)}
    study = optuna.create_study(direction="maximize")
    assert expected_seconds(study, {"train_layers": "all", "batch_size": 16, "epochs": 3}) is None  # nothing known
    for params, per_epoch in (({"train_layers": "all", "batch_size": 16, "epochs": 3}, 40.0),
                              ({"train_layers": "all", "batch_size": 8, "epochs": 2}, 55.0)):
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=0.9,
                                                  user_attrs={"epoch_seconds": per_epoch}))
    assert expected_seconds(study, {"train_layers": "all", "batch_size": 8, "epochs": 6}) == 330  # its own kind
    assert expected_seconds(study, {"train_layers": "all", "batch_size": 32, "epochs": 5}) == 200  # the quickest
    assert expected_seconds(study, {"train_layers": "pooler", "batch_size": 16, "epochs": 8}) is None

    # A study of one trial that takes 100 s an epoch, with 30 s left: every later draw is skipped at once,
    # and after SKIPS_BEFORE_STOP of them in a row the study stops instead of drawing for ever.
    calls = []

    def objective(trial):
        chosen = {"train_layers": trial.suggest_categorical("train_layers", ["all"]),
                  "batch_size": trial.suggest_categorical("batch_size", [16]),
                  "epochs": trial.suggest_int("epochs", 2, 8)}
        if trial.number == 0:
            trial.set_user_attr("epoch_seconds", 100.0)
            return 0.5
        calls.append(chosen)
        if expected_seconds(trial.study, chosen) > 30:
            trial.set_user_attr("stopped", SKIPPED)
            raise optuna.TrialPruned("skipped")
        return 1.0

    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=8, callbacks=[TrialCount(3)])
    assert len(study.trials) == 8 and len(calls) == 7  # skipped trials do not count towards --trials
    assert [t.user_attrs.get("stopped") for t in study.trials[1:]] == [SKIPPED] * 7


def test_the_objective_skips_what_cannot_finish_and_stops_after_a_row_of_them():
    import types

    import optuna

    from bertfit.tuning.run import SKIPPED, SKIPS_BEFORE_STOP, _objective

    class Space:  # every draw trains all layers at batch 16 for 2 to 8 epochs
        def suggest(self, trial):
            return {"train_layers": trial.suggest_categorical("train_layers", ["all"]),
                    "batch_size": trial.suggest_categorical("batch_size", [16]),
                    "epochs": trial.suggest_int("epochs", 2, 8)}

    study = optuna.create_study(direction="maximize")
    distributions = {"train_layers": optuna.distributions.CategoricalDistribution(["all"]),
                     "batch_size": optuna.distributions.CategoricalDistribution([16]),
                     "epochs": optuna.distributions.IntDistribution(2, 8)}
    study.add_trial(optuna.trial.create_trial(params={"train_layers": "all", "batch_size": 16, "epochs": 3},
                                              distributions=distributions, value=0.5,
                                              user_attrs={"epoch_seconds": 100.0}))
    objective = _objective(optuna, types.SimpleNamespace(multi_label=False), None, Space(), None,
                           time.monotonic() + 60)  # 60 s left: 2 epochs take 200
    study.optimize(objective, n_trials=100)
    skipped = study.trials[1:]
    assert len(skipped) == SKIPS_BEFORE_STOP
    assert all(t.state.name == "PRUNED" and t.user_attrs["stopped"] == SKIPPED for t in skipped)


def test_a_searched_trial_wins_only_by_more_than_the_default_s_standard_error():
    from types import SimpleNamespace

    from bertfit.tuning.choice import winner

    def trial(number, score):
        return SimpleNamespace(number=number, value=score, user_attrs={"validation": score})

    default = trial(0, 0.96)
    margin = (0.96 * 0.04 / 600) ** 0.5  # 0.008
    assert winner(trial(5, 0.965), default, 600) == (default, pytest.approx(margin))  # a 3-row lead: noise
    assert winner(trial(5, 0.97), default, 600)[0].number == 5  # a 6-row lead clears it
    assert winner(trial(5, 0.97), default, 100)[0] is default  # the same lead on 100 rows does not
    assert winner(default, default, 600) == (default, None)
    assert winner(trial(5, 0.5), None, 600)[0].number == 5  # no default finished: the best
    assert winner(None, None, 600) == (None, None)


def test_opening_a_new_database_retries_the_catalogue_race_and_nothing_else(monkeypatch):
    from types import SimpleNamespace

    from bertfit.tuning import storage as opening

    monkeypatch.setattr(opening.time, "sleep", lambda seconds: None)
    calls = []

    def storage(failures: list[str]):
        def open_(url):
            calls.append(url)
            if failures:
                raise RuntimeError(failures.pop(0))
            return "storage"
        return SimpleNamespace(storages=SimpleNamespace(RDBStorage=open_))

    race = 'duplicate key value violates unique constraint "pg_type_typname_nsp_index"'
    assert opening.database(storage([race, race]), "postgresql://u:secret@db/optuna") == "storage" and len(calls) == 3
    calls.clear()
    with pytest.raises(UsageError, match=r"cannot open --storage postgresql://\*\*\*@db/optuna: connection refused"):
        opening.database(storage(["connection refused"]), "postgresql://u:secret@db/optuna")
    assert len(calls) == 1  # a server that does not answer is not waited for
    calls.clear()
    with pytest.raises(UsageError, match="already exists"):
        opening.database(storage(['relation "studies" already exists'] * 9), "postgresql://u:secret@db/optuna")
    assert len(calls) == 5


@pytest.mark.parametrize("where, expected", [
    ("data", "is the data"),
    ("model", "is inside the --model folder"),
    ("folder", "it is a folder"),
    ("jsonl", "it is not an Optuna journal"),
    ("json", "it is not an Optuna journal"),
    ("text", "it is not an Optuna journal"),
    ("under a file", "is a file, not a folder"),
])
def test_a_journal_that_is_an_input_or_no_journal_is_refused_before_the_data_is_read(
        tmp_path, data, tiny_model_dir, monkeypatch, capsys, where, expected):
    from bertfit.cli import main

    copied = tmp_path / "tickets.csv"
    shutil.copy(data, copied)
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    other = {"jsonl": ('{"text": "a", "label": "b"}\n', "rows.jsonl"), "json": ('{\n  "x": 1\n}\n', "c.json"),
             "text": ("hello\n", "notes.txt")}
    if where in other:
        content, name = other[where]
        (tmp_path / name).write_text(content)
    journal = {"data": copied, "model": model / "config.json", "folder": tmp_path,
               "under a file": copied / "study.journal"}.get(where) or tmp_path / other[where][1]
    before = {path: path.read_bytes() for path in [copied, *model.iterdir(), *tmp_path.glob("*.*")] if path.is_file()}
    monkeypatch.setattr("bertfit.tuning.run.prepare", lambda *a, **k: pytest.fail("the data was read"))
    code = main(["tune", str(copied), "--model", str(model), "--storage", f"journal:{journal}", "--budget", "20s",
                 "--trials", "1", "--out", str(tmp_path / "tuned"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert "unexpected" not in err
    assert {path: path.read_bytes() for path in before} == before  # nothing the command read has changed
    assert not (tmp_path / "tuned").exists() and not list(tmp_path.glob("*.lock"))


def test_a_damaged_journal_found_when_opened_is_one_line(tmp_path):
    journal = tmp_path / "study.journal"
    journal.write_text('{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}\n'
                       '{"text": "a row of data appended", "label": "b"}\n')
    with pytest.raises(UsageError, match=r"cannot open --storage journal:.*study.journal: it is not a readable Optuna"):
        open_journal(f"journal:{journal}")


def test_a_trial_whose_process_was_killed_is_marked_lost_and_not_counted():
    import socket

    from bertfit.tuning.run import TrialCount
    from bertfit.tuning.storage import LOST, fail_lost_trials, trial_owner

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(ended.stdout)  # a process that has ended: its trial was left running
    study = optuna.create_study(direction="maximize")
    lost, live, elsewhere = study.ask(), study.ask(), study.ask()
    lost.set_user_attr("process", f"{socket.gethostname()}:{dead}")
    live.set_user_attr("process", trial_owner())  # this process: running, not lost
    elsewhere.set_user_attr("process", f"another-machine-{socket.gethostname()}:{dead}")  # cannot be told from here
    assert fail_lost_trials(optuna, study) == 1
    states = [(t.number, t.state.name, t.user_attrs.get("stopped")) for t in study.get_trials()]
    assert states == [(0, "FAIL", LOST), (1, "RUNNING", None), (2, "RUNNING", None)]
    count = TrialCount(3)
    count(study, None)
    assert not study._stop_flag  # two trials count: the lost one does not
