"""The `bertfit` command: in-process through ``main(argv)``, plus real processes for exit codes."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import bertfit
from bertfit import cli
from bertfit.cli import main
from bertfit.data.reading import load_labelled
from bertfit.model import TextClassifier
from bertfit.training import run as training

HEADLINE = {"accuracy", "f1_macro", "precision_macro", "recall_macro", "auc", "loss"}
SUMMARY = {"model_dir", "best_epoch", "train_seconds", "validation", "test", "baseline_test", "blend", "method",
           "history"}
ENV_SET_BY_CLI = ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")


@contextlib.contextmanager
def cli_state_restored():
    """main() configures the 'bertfit' logger and sets env defaults; put them back for other tests.

    In a fresh `bertfit` process HF_HUB_DISABLE_PROGRESS_BARS is set before transformers is imported,
    so library bars ("Loading weights") stay off; here transformers is imported already, so they are
    switched off by hand for the duration, to see stderr as a user sees it.
    """
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("bertfit")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    env = {name: os.environ.get(name) for name in ENV_SET_BY_CLI}
    bars_were_on = hf_logging.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # both transformers' and huggingface_hub's
    try:
        yield
    finally:
        if bars_were_on[0]:
            hf_logging.enable_progress_bar()
        if not bars_were_on[1]:
            hub_utils.disable_progress_bars()
        logger.handlers[:], logger.level, logger.propagate = saved
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(autouse=True)
def _restore_cli_state():
    with cli_state_restored():
        yield


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()  # drop anything printed before
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _must_not_train(*args, **kwargs):
    raise AssertionError("training started although the command should have failed before it")


# -- train ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_model_dir):
    """`bertfit train` with no DATA (the embedded demo tickets), run once; small --max-length keeps it quick."""
    out_dir = tmp_path_factory.mktemp("demo") / "m"
    argv = ["train", "--model", str(tiny_model_dir), "--epochs", "2", "--learning-rate", "1e-2",
            "--max-length", "16", "--batch-size", "32", "--out", str(out_dir), "--quiet"]
    stdout, stderr = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32-wide model gains nothing from more, and loses much when cores are busy
    try:
        with cli_state_restored(), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(argv)
    finally:
        torch.set_num_threads(threads)
    return code, stdout.getvalue(), stderr.getvalue(), out_dir


def test_train_without_data_uses_the_demo_set_and_prints_one_json_summary(demo_run):
    code, out, err, out_dir = demo_run
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out  # stdout holds the summary and nothing else
    summary = json.loads(lines[-1])
    assert set(summary) == SUMMARY
    assert summary["model_dir"] == str(out_dir)
    assert set(summary["test"]) == HEADLINE | {"ece"}  # calibration error, after temperature scaling
    assert set(summary["baseline_test"]) == HEADLINE  # TF-IDF + logistic regression on the same splits
    assert set(summary["validation"]) == HEADLINE
    # What the summary says of test is what the saved model says on the test split it kept.
    kept = TextClassifier.from_pretrained(out_dir)
    test = [json.loads(line) for line in (out_dir / "test.jsonl").read_text().splitlines()]
    again = kept.evaluate([r["text"] for r in test], [r["label"] for r in test])
    assert summary["test"]["accuracy"] == pytest.approx(again["accuracy"])
    assert summary["test"]["loss"] == pytest.approx(again["loss"], rel=1e-4)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    assert summary["best_epoch"] in (1, 2)
    assert summary["train_seconds"] > 0
    meta = json.loads((out_dir / "bertfit.json").read_text())
    assert meta["labels"] == ["tier1", "tier2", "tier3"]
    assert Path(meta["data"]["source"]) == cli.demo_data_path()
    assert sum(meta["data"]["rows_read"].values()) == 600
    assert meta["max_length"] == 16
    assert [p.name for p in out_dir.parent.iterdir()] == ["m"]  # no checkpoints or staging left


def test_evaluate_prints_one_json_object(demo_run, capsys):
    out_dir = demo_run[3]
    code, out, err = run(["evaluate", out_dir, cli.demo_data_path(), "--quiet"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 1
    metrics = json.loads(lines[0])
    assert metrics["labels"] == ["tier1", "tier2", "tier3"]
    matrix = metrics["confusion_matrix"]
    assert metrics["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(3)) / metrics["rows"])
    rows = load_labelled(cli.demo_data_path(), None, None)
    direct = TextClassifier.from_pretrained(out_dir).evaluate(rows["text"].tolist(), rows["label"].tolist())
    assert metrics["accuracy"] == pytest.approx(direct["accuracy"]) and metrics["auc"] == pytest.approx(direct["auc"])
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert sum(map(sum, matrix)) == metrics["rows"] == len(load_labelled(cli.demo_data_path(), None, None))


def test_evaluate_with_an_unknown_label_exits_2(trained_dir, tmp_path, capsys):
    data = tmp_path / "eval.csv"
    pd.DataFrame({"text": ["refund my card", "app crash"], "label": ["billing", "refunds"]}).to_csv(data, index=False)
    code, out, err = run(["evaluate", trained_dir, data], capsys)
    assert code == 2
    assert "refunds" in one_error_line(err)
    assert out == ""


def test_train_with_explicit_columns(tiny_model_dir, rows, tmp_path, capsys):
    # Neither column has a name bertfit would guess, so only the flags can find them.
    data = tmp_path / "tickets.csv"
    rows.rename(columns={"text": "ticket", "label": "tier"}).assign(note="x").to_csv(data, index=False)
    out_dir = tmp_path / "m"
    code, out, err = run(["train", data, "--text-col", "ticket", "--label-col", "tier", "--model", tiny_model_dir,
                          "--epochs", "1", "--max-length", "16", "--out", out_dir, "--quiet"], capsys)
    assert code == 0, err
    summary = json.loads(out.splitlines()[-1])
    assert summary["model_dir"] == str(out_dir)
    meta = json.loads((out_dir / "bertfit.json").read_text())
    assert (meta["text_col"], meta["label_col"]) == ("ticket", "tier")
    assert meta["labels"] == ["billing", "sales", "tech"]


def test_train_with_a_wrong_label_col_exits_2_naming_the_columns(tiny_model_dir, data_csv, tmp_path, capsys):
    out_dir = tmp_path / "m"
    code, out, err = run(["train", data_csv, "--label-col", "stars", "--model", tiny_model_dir,
                          "--out", out_dir], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "'stars'" in line and "['text', 'label']" in line
    assert out == ""
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []  # no checkpoints folder either


def test_train_into_a_non_empty_out_fails_before_training(tiny_model_dir, data_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training, "fit", _must_not_train)
    out_dir = tmp_path / "m"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("precious")
    started = time.perf_counter()
    code, out, err = run(["train", data_csv, "--model", tiny_model_dir, "--out", out_dir, "--quiet"], capsys)
    assert time.perf_counter() - started < 5
    assert code == 2
    assert "--overwrite" in one_error_line(err)
    assert [p.name for p in out_dir.iterdir()] == ["keep.txt"]
    assert (out_dir / "keep.txt").read_text() == "precious"


def test_train_with_an_out_that_is_a_file_exits_2(data_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training, "fit", _must_not_train)
    out_file = tmp_path / "model"
    out_file.write_text("x")
    code, _, err = run(["train", data_csv, "--out", out_file, "--quiet"], capsys)
    assert code == 2
    assert "is a file" in one_error_line(err)


def test_invalid_flags_are_reported_together(data_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training, "fit", _must_not_train)
    code, out, err = run(["train", data_csv, "--epochs", "0", "--batch-size", "-1", "--out", tmp_path / "m"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "--epochs" in line and "got 0" in line
    assert "--batch-size" in line and "got -1" in line
    assert out == ""
    assert not (tmp_path / "m").exists()


def test_unknown_hub_model_offline_fails_fast_with_the_fix(data_csv, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads the variable once, at import; this process imported it already.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    code, out, err = run(["train", data_csv, "--model", "no-such-org/no-such-model", "--out", tmp_path / "m",
                          "--quiet"], capsys)
    assert time.perf_counter() - started < 30
    assert code == 2
    line = one_error_line(err)
    assert "no-such-org/no-such-model" in line
    assert "unreachable" in line and "--model PATH" in line
    assert out == ""
    assert list(tmp_path.iterdir()) == []


# -- predict --------------------------------------------------------------------------------------


def check_records(records: list[dict], texts: list[str], model_dir: Path) -> None:
    expected = TextClassifier.from_pretrained(model_dir).predict(texts)
    assert [r["text"] for r in records] == texts
    assert [r["label"] for r in records] == expected
    for record in records:
        assert set(record) == {"text", "label", "score", "probabilities"}
        assert list(record["probabilities"]) == ["billing", "sales", "tech"]
        assert record["score"] == max(record["probabilities"].values())
        assert sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_predict_texts_given_as_arguments(trained_dir, capsys):
    texts = ["refund my card payment", "the app crashed on login", "a quote for 40 seats, café ☕"]
    code, out, err = run(["predict", trained_dir, *texts, "--quiet"], capsys)
    assert code == 0, err
    assert len(out.splitlines()) == len(texts)
    check_records(json_lines(out), texts, trained_dir)


def scored_and_empty(records: list[dict], lines: list[str], model_dir: Path) -> None:
    """One record per input line, in order: blank lines marked empty, the others scored as usual."""
    assert [r["text"] for r in records] == lines
    blank = [not line.strip() for line in lines]
    assert [r.get("empty", False) for r in records] == blank
    assert all(r["label"] is None and r["probabilities"] is None for r, b in zip(records, blank, strict=True) if b)
    check_records([r for r, b in zip(records, blank, strict=True) if not b],
                  [line for line, b in zip(lines, blank, strict=True) if not b], model_dir)


def test_predict_from_a_text_per_line_file(trained_dir, tmp_path, capsys):
    texts = ["refund my card payment", "", "the app crashed on login", "  ", "upgrade our plan"]
    source = tmp_path / "texts.txt"
    # a byte-order mark (as Windows editors write) is not part of the first text; CRLF endings neither
    source.write_bytes(("\ufeff" + texts[0] + "\n\n" + texts[2] + "\r\n  \n" + texts[4] + "\n").encode("utf-8"))
    code, out, err = run(["predict", trained_dir, "--input", source, "--quiet"], capsys)
    assert code == 0, err
    scored_and_empty(json_lines(out), texts, trained_dir)


def test_predict_from_a_gzipped_text_per_line_file(trained_dir, tmp_path, capsys):
    import gzip

    texts = ["refund my card payment", "", "the app crashed on login"]
    source = tmp_path / "texts.txt.gz"
    source.write_bytes(gzip.compress("\n".join(texts).encode("utf-8")))
    code, out, err = run(["predict", trained_dir, "--input", source, "--quiet"], capsys)
    assert code == 0, err
    scored_and_empty(json_lines(out), texts, trained_dir)


def test_predict_from_a_csv_with_empty_cells_keeps_every_row(trained_dir, tmp_path, capsys):
    source = tmp_path / "new.csv"
    source.write_bytes("\ufeffid,text\n1,refund my card\n2,\n3,the app crashed\n".encode("utf-8"))
    code, out, err = run(["predict", trained_dir, "--input", source, "--quiet"], capsys)
    assert code == 0, err
    scored_and_empty(json_lines(out), ["refund my card", "", "the app crashed"], trained_dir)


def test_predict_an_empty_argument_is_marked_not_scored(trained_dir, capsys):
    code, out, err = run(["predict", trained_dir, "refund", "", "--quiet"], capsys)
    assert code == 0, err
    scored_and_empty(json_lines(out), ["refund", ""], trained_dir)


def test_predict_from_a_csv_uses_its_text_column(trained_dir, data_csv, rows, capsys):
    code, out, err = run(["predict", trained_dir, "--input", data_csv, "--batch-size", "8", "--quiet"], capsys)
    assert code == 0, err
    check_records(json_lines(out), rows["text"].tolist(), trained_dir)


def test_predict_from_stdin(trained_dir, capsys, monkeypatch):
    raw = io.BytesIO("\ufeffrefund my card\n\nscreen is broken\n".encode("utf-8"))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(raw, encoding="ascii", errors="surrogateescape"))  # C locale
    code, out, err = run(["predict", trained_dir, "--input", "-", "--quiet"], capsys)
    assert code == 0, err
    scored_and_empty(json_lines(out), ["refund my card", "", "screen is broken"], trained_dir)


def test_predict_from_empty_stdin_exits_2(trained_dir, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, out, err = run(["predict", trained_dir, "--input", "-", "--quiet"], capsys)
    assert code == 2
    assert "no texts" in one_error_line(err)
    assert out == ""


def test_predict_output_file(trained_dir, tmp_path, capsys):
    target = tmp_path / "predictions.jsonl"
    texts = ["refund my card", "screen is broken"]
    code, out, err = run(["predict", trained_dir, *texts, "--output", target, "--quiet"], capsys)
    assert code == 0, err
    assert out == ""
    check_records(json_lines(target.read_text(encoding="utf-8")), texts, trained_dir)
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.jsonl"]  # no staging file left


@pytest.mark.parametrize("name", ["predictions.csv", "predictions.tsv", "predictions.parquet"])
def test_predict_output_as_the_table_its_suffix_names(trained_dir, tmp_path, capsys, name):
    source = tmp_path / "new.csv"
    source.write_text("id,text\n1,refund my card\n2,\n3,\"screen, broken\"\n", encoding="utf-8")
    target = tmp_path / name
    code, out, err = run(["predict", trained_dir, "--input", source, "--output", target, "--quiet"], capsys)
    assert code == 0, err
    table = (pd.read_parquet(target) if name.endswith(".parquet")
             else pd.read_csv(target, sep="\t" if name.endswith(".tsv") else ",", keep_default_na=False))
    assert table["text"].tolist() == ["refund my card", "", "screen, broken"]
    assert table["empty"].astype(str).tolist() == ["False", "True", "False"]
    classifier = TextClassifier.from_pretrained(trained_dir)
    expected = classifier.predict_proba(["refund my card", "screen, broken"])
    probabilities = table[[f"probability:{n}" for n in ["billing", "sales", "tech"]]].iloc[[0, 2]]
    assert probabilities.astype(float).to_numpy() == pytest.approx(expected, abs=1e-5)
    assert table["label"].iloc[[0, 2]].tolist() == classifier.predict(["refund my card", "screen, broken"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["new.csv", name])  # no staging file left


def test_predict_output_in_a_format_it_cannot_write_exits_2_before_scoring(trained_dir, tmp_path, capsys):
    code, out, err = run(["predict", trained_dir, "hello", "--output", tmp_path / "p.xlsx"], capsys)
    assert code == 2
    assert ".csv" in one_error_line(err) and ".xlsx" in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_predict_output_dash_is_standard_output(trained_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["predict", trained_dir, "refund my card", "--output", "-", "--quiet"], capsys)
    assert code == 0, err
    check_records(json_lines(out), ["refund my card"], trained_dir)
    assert list(tmp_path.iterdir()) == []  # no file named "-"


def test_predict_output_in_a_missing_folder_exits_2(trained_dir, tmp_path, capsys):
    code, out, err = run(["predict", trained_dir, "hello", "--output", tmp_path / "no" / "p.jsonl"], capsys)
    assert code == 2
    assert "--output" in one_error_line(err)
    assert out == ""


def test_predict_failure_leaves_no_output_file(trained_dir, tmp_path, capsys, monkeypatch):
    target = tmp_path / "predictions.jsonl"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code, _, _ = run(["predict", trained_dir, "--input", "-", "--output", target, "--quiet"], capsys)
    assert code == 2
    assert list(tmp_path.iterdir()) == []


def test_predict_output_that_is_a_folder_exits_2(trained_dir, tmp_path, capsys):
    code, out, err = run(["predict", trained_dir, "hello", "--output", tmp_path, "--quiet"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert "--output" in line and "unexpected" not in line


@pytest.mark.parametrize(
    ("command", "size"), [("predict", "0"), ("predict", "-1"), ("evaluate", "-1")],
)
def test_batch_size_below_one_is_a_usage_error(trained_dir, data_csv, capsys, command, size):
    extra = ["hello", "world"] if command == "predict" else [data_csv]
    code, out, err = run([command, trained_dir, *extra, "--batch-size", size, "--quiet"], capsys)
    assert out == ""
    assert code == 2
    assert "--batch-size" in one_error_line(err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [([], "no texts to predict"), (["hello", "--input", "-"], "not both")],
)
def test_predict_needs_texts_or_input_but_not_both(trained_dir, capsys, extra, message):
    code, out, err = run(["predict", trained_dir, *extra], capsys)
    assert code == 2
    assert message in one_error_line(err)
    assert out == ""


# -- the real process -----------------------------------------------------------------------------


def _bertfit(*args: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-m", "bertfit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def test_process_exit_codes_and_tracebacks(tmp_path):
    missing = str(tmp_path / "nonexistent")
    plain, debug = _bertfit("predict", missing, "hello"), _bertfit("predict", missing, "hello", "--debug")
    out, err = plain.communicate(timeout=120)
    assert plain.returncode == 2
    line = one_error_line(err)
    assert missing in line and "bertfit train" in line
    assert out == ""
    out, err = debug.communicate(timeout=120)
    assert debug.returncode == 1  # an uncaught exception
    assert "Traceback" in err and "ModelLoadError" in err
    assert out == ""


@pytest.mark.parametrize("split", ["test", "train", "validation"])
def test_evaluate_a_folder_holding_one_split_scores_it(trained_dir, rows, tmp_path, capsys, split):
    folder = tmp_path / "holdout"
    folder.mkdir()
    rows.to_csv(folder / f"{split}.csv", index=False)
    code, out, err = run(["evaluate", trained_dir, folder, "--quiet"], capsys)
    assert code == 0, err
    assert json.loads(out)["rows"] == len(rows)


def test_train_takes_every_cli_flag_as_a_keyword(tiny_model_dir, rows, tmp_path, capsys):
    result = training.train(rows, tmp_path / "m", model=str(tiny_model_dir), epochs=1, max_length=16, quiet=True,
                            debug=False, baseline=False, report=False)
    assert result.best_epoch == 1
    err = capsys.readouterr().err
    assert "%|" not in err and "steps" not in err  # quiet: no progress, bar or line


def test_predict_into_a_closed_pipe_stops_quietly(trained_dir):
    """`bertfit predict ... | head -1`: the reader leaves; bertfit stops without a word, as Unix tools do."""
    process = subprocess.Popen([sys.executable, "-m", "bertfit", "predict", str(trained_dir), "--input", "-",
                                "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def feed() -> None:  # in a thread: the pipes fill both ways, and bertfit may stop reading first
        with contextlib.suppress(BrokenPipeError):
            process.stdin.write(b"".join(b"refund my card number %d\n" % i for i in range(20000)))
            process.stdin.close()

    import threading

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    first = process.stdout.readline()
    process.stdout.close()  # what head does after its line
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert json.loads(first)["text"] == "refund my card number 0"
    assert err == "", err
    assert process.returncode == 141


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("train", "evaluate", "predict", "report", "export", "serve", "distill", "compress"):
        assert f"    {command} " in out, command


def test_progress_is_plain_lines_when_stderr_is_not_a_terminal(tiny_model_dir, data_csv, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "BERTFIT_PROGRESS_SECONDS": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "bertfit", "train", str(data_csv), "--model", str(tiny_model_dir),
                           "--out", str(tmp_path / "m"), "--epochs", "1", "--max-length", "16", "--no-report"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr and "\x1b[" not in done.stderr  # no bar redrawn over itself
    assert "training: " in done.stderr and "steps" in done.stderr
    evaluated = subprocess.run([sys.executable, "-m", "bertfit", "evaluate", str(tmp_path / "m"), str(data_csv)],
                               capture_output=True, text=True, env=env, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "scoring: " in evaluated.stderr and "\r" not in evaluated.stderr


def test_version(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"bertfit {bertfit.__version__}"


# -- where outputs may go, and what a failed write says -------------------------------------------


def test_predict_output_inside_the_model_folder_is_refused(trained_dir, tmp_path, capsys):
    model = Path(shutil.copytree(trained_dir, tmp_path / "model"))
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    for name, extra in (("bertfit.json", ["--overwrite"]), ("new.jsonl", []), ("sub/x.csv", [])):
        code, out, err = run(["predict", model, "refund my card", "--output", model / name, "--quiet", *extra], capsys)
        assert code == 2 and out == ""
        assert "is inside the model folder" in one_error_line(err) and "beside it" in err
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before


def test_predict_output_that_is_a_fifo_is_refused_before_the_model_loads(trained_dir, tmp_path, capsys, monkeypatch):
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    monkeypatch.setattr(TextClassifier, "from_pretrained", _must_not_train)
    code, _, err = run(["predict", trained_dir, "hello", "--output", fifo, "--overwrite", "--quiet"], capsys)
    assert code == 2
    assert "is a FIFO (named pipe), not a file" in one_error_line(err) and "standard output" in err
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_predict_output_json_is_one_json_array(trained_dir, tmp_path, capsys):
    target = tmp_path / "predictions.json"
    texts = ["refund my card", "screen is broken", "buy a plan"]
    code, _, err = run(["predict", trained_dir, *texts, "--output", target, "--quiet"], capsys)
    assert code == 0, err
    check_records(json.loads(target.read_text(encoding="utf-8")), texts, trained_dir)


@pytest.mark.parametrize("argv", [["--quiet", "--", "-5 stars is bad", "--epochs"],
                                  ["--", "-5 stars is bad", "--epochs"],
                                  ["--batch-size", "8", "--", "-5 stars is bad", "--epochs"]])
def test_everything_after_a_double_dash_is_a_text(argv):
    args = cli.build_parser().parse_args(["predict", "model", *argv])
    assert args.model_dir == "model" and args.texts == ["-5 stars is bad", "--epochs"]


def test_a_newline_in_a_path_keeps_the_error_one_line(trained_dir, tmp_path, capsys):
    for flag in ("--output", "--input"):
        code, _, err = run(["predict", trained_dir, *(["hi"] if flag == "--output" else []), flag,
                            tmp_path / "no\ndir" / "x.jsonl", "--quiet"], capsys)
        assert code == 2
        assert "no\\ndir" in one_error_line(err)


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9664 vs 9556"),  # torch.save's
])
def test_a_full_disk_anywhere_while_training_names_the_output(data_csv, tmp_path, capsys, monkeypatch, failure):
    def full(*args, **kwargs):
        raise failure  # e.g. while the Trainer saves a checkpoint beside --out

    monkeypatch.setattr(training, "train", full)
    code, out, err = run(["train", data_csv, "--out", tmp_path / "m", "--quiet"], capsys)
    assert code == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"error: cannot write {tmp_path / 'm'} (") and "nothing was changed there" in line
    monkeypatch.setattr(training, "train", lambda *a, **k: _raise(OSError(errno.EIO, "Input/output error")))
    code, _, err = run(["train", data_csv, "--out", tmp_path / "m", "--quiet"], capsys)
    assert code == 1 and "Input/output error" in one_error_line(err) and "nothing was saved" not in err


def _raise(err: Exception) -> None:
    raise err


def test_a_summary_line_that_cannot_be_written_says_what_was_saved(trained_dir, tmp_path):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full here")
    target = tmp_path / "r.html"
    with open("/dev/full", "w") as full:  # every write fails as on a full disk
        done = subprocess.run([sys.executable, "-m", "bertfit", "report", str(trained_dir), "--out", str(target),
                               "--quiet"], stdout=full, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert "cannot write to standard output" in line and f"the report {target} was saved" in line
    assert target.read_text(encoding="utf-8").startswith("<!doctype html>")
