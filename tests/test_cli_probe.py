"""The command line where a probe found it wrong: texts between flags, a string that starts with '-', an ONNX
export (or a folder without weights) where PyTorch weights are needed, and the columns of a --data file.

Every refusal is one ``error:`` line that names what was given and a fix that works.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from bertfit.cli import build_parser
from bertfit.errors import DataError
from bertfit.folder import read_meta
from test_cli import cli_state_restored, run
from test_cli import one_error_line as cli_error_line


@pytest.fixture(autouse=True)
def _restore_cli_state():
    with cli_state_restored():
        yield


def one_error_line(err: str) -> str:
    line = cli_error_line(err)
    assert "unexpected" not in err, err
    return line


def refused(argv: list, capsys) -> str:
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "", err
    return one_error_line(err)


# -- texts between flags, and strings that start with '-' --------------------------------------------


@pytest.mark.parametrize("argv, texts", [
    (["--quiet", "refund my card"], ["refund my card"]),
    (["--batch-size", "4", "x"], ["x"]),
    (["a", "--batch-size", "4", "b"], ["a", "b"]),
    (["a", "--quiet", "b", "--batch-size", "4", "c"], ["a", "b", "c"]),
    (["--quiet", "--", "-hello", "--epochs"], ["-hello", "--epochs"]),
    (["a", "--", "-hello"], ["a", "-hello"]),
    (["-5 stars is bad", "--quiet"], ["-5 stars is bad"]),
    (["-5", "--quiet"], ["-5"]),
])
def test_predict_takes_its_texts_between_its_flags(argv, texts):
    args = build_parser().parse_args(["predict", "model", *argv])
    assert args.model_dir == "model" and args.texts == texts


def test_texts_after_a_flag_are_predicted(trained_dir, capsys):
    code, out, err = run(["predict", trained_dir, "--quiet", "refund my card", "--batch-size", "4", "crash"], capsys)
    assert code == 0, err
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["refund my card", "crash"]


def test_other_commands_take_their_arguments_after_flags_too():
    args = build_parser().parse_args(["evaluate", "--batch-size", "8", "model", "--quiet", "data.csv"])
    assert (args.model_dir, args.data, args.batch_size) == ("model", "data.csv", 8)
    args = build_parser().parse_args(["train", "--epochs", "2", "--", "-data.csv"])
    assert args.data == "-data.csv" and args.epochs == 2


def test_an_unrecognized_argument_names_the_commands_own_help(capsys):
    line = refused(["predict", "model", "hi", "--format", "csv"], capsys)
    assert "--format belongs to bertfit export" in line and line.endswith("see bertfit predict --help")
    line = refused(["evaluate", "model", "data.csv", "extra"], capsys)
    assert "unrecognized arguments: extra" in line and line.endswith("see bertfit evaluate --help")


def test_predict_without_a_model_names_only_what_is_missing(capsys):
    line = refused(["predict", "--quiet"], capsys)
    assert "the following arguments are required: model_dir;" in line


def test_a_text_that_starts_with_a_dash_is_told_to_go_after_double_dash(capsys):
    line = refused(["predict", "good", "-hello"], capsys)
    assert "ignored explicit argument" not in line and "-h/--help" not in line
    assert "-hello is not a flag" in line and "goes after --" in line
    assert "bertfit predict good -- -hello" in line and "./-hello" in line
    assert line.endswith("see bertfit predict --help")


def test_a_file_name_that_starts_with_a_dash_gets_dot_slash_not_a_made_up_flag(capsys):
    line = refused(["train", "-data.csv", "--model", "tiny"], capsys)
    assert "--data" not in line.replace("-- -data.csv", "")  # train has no --data flag
    assert "./-data.csv" in line and "bertfit train --model tiny -- -data.csv" in line
    assert line.endswith("see bertfit train --help")


def test_a_flag_value_that_starts_with_a_dash_is_written_with_equals(capsys):
    line = refused(["train", "./-data.csv", "--out", "-dashout"], capsys)
    assert "--out=-dashout" in line and "--out ./-dashout" in line


@pytest.mark.parametrize("argv, meant, not_offered", [
    (["train", "data.csv", "--epcohs", "3"], "did you mean --epcohs -> --epochs?", None),
    (["train", "data.csv", "-epochs", "3"], "did you mean -epochs -> --epochs?", None),
    (["predict", "model", "hi", "--epcohs", "3"], "unrecognized arguments: --epcohs", "--epochs"),
    (["report", "model", "--overwirte"], "did you mean --overwirte -> --overwrite?", None),
    (["predict", "model", "-help"], "did you mean -help -> --help?", "ignored explicit argument"),
])
def test_a_guess_only_offers_a_flag_the_command_has(argv, meant, not_offered, capsys):
    line = refused(argv, capsys)
    assert meant in line
    if not_offered:
        assert not_offered not in line.replace("--epcohs", "")  # --epochs is train's, not predict's


# -- an ONNX export, or a folder without weights, where PyTorch weights are needed ---------------------


def _without_weights(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    return folder


@pytest.fixture(scope="module")
def onnx_like(tmp_path_factory, trained_dir) -> Path:
    """What bertfit export writes, as far as the checks look: model.onnx beside the tokenizer, no PyTorch weights."""
    folder = _without_weights(trained_dir, tmp_path_factory.mktemp("exported") / "model-onnx")
    (folder / "model.onnx").write_bytes(b"not read by these checks")
    return folder


@pytest.fixture(scope="module")
def weightless(tmp_path_factory, tiny_model_dir) -> Path:
    return _without_weights(tiny_model_dir, tmp_path_factory.mktemp("weightless") / "base")


def _cases(onnx: Path, bare: Path, trained: Path, data: Path, out: Path) -> list[tuple[list, str]]:
    return [
        (["distill", onnx, data, "--student-layers", "1", "--epochs", "1", "--out", out], f"TEACHER_DIR {onnx}"),
        (["export", onnx, "--out", out], f"MODEL_DIR {onnx}"),
        (["compress", onnx, data, "--epochs", "1", "--out", out], f"TEACHER_DIR {onnx}"),
        (["distill", trained, data, "--student", onnx, "--epochs", "1", "--out", out], f"--student {onnx}"),
        (["audit", data, "--model", onnx, "--method", "embed", "--out", out], f"--model {onnx}"),
        (["audit", data, "--model", bare, "--method", "embed", "--out", out], f"--model {bare}"),
        (["distill", trained, data, "--student", bare, "--out", out], f"--student {bare}"),
        (["distill", bare, data, "--student-layers", "1", "--out", out], f"TEACHER_DIR {bare}"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_a_folder_without_pytorch_weights_is_named_by_its_flag(case, onnx_like, weightless, trained_dir, data_csv,
                                                                tmp_path, capsys):
    argv, named = _cases(onnx_like, weightless, trained_dir, data_csv, tmp_path / "out")[case]
    line = refused(argv, capsys)
    assert named in line
    assert ("is an ONNX export (model.onnx, no PyTorch weights)" if "onnx" in named else "has no PyTorch weights") \
        in line
    assert "bertfit train wrote" in line
    for wrong in ("--backend", "copy the whole folder", "pickle", "no file named"):
        assert wrong not in line
    if argv[0] != "audit":
        assert "--model" not in line
    assert not (tmp_path / "out").exists()


# -- the columns of a --data file, for report and export -----------------------------------------------


@pytest.fixture(scope="module")
def odd_columns(tmp_path_factory, rows) -> Path:
    path = tmp_path_factory.mktemp("odd") / "oddcols.csv"
    rows.rename(columns={"text": "body", "label": "outcome"}).to_csv(path, index=False)
    return path


def test_report_reads_a_data_file_by_the_column_flags_it_names(trained_dir, odd_columns, tmp_path, capsys):
    line = refused(["report", trained_dir, "--data", odd_columns, "--out", tmp_path / "r.html"], capsys)
    assert "--label-col" in line
    out = tmp_path / "r.html"
    code, stdout, err = run(["report", trained_dir, "--data", odd_columns, "--label-col", "outcome",
                             "--text-col", "body", "--out", out, "--quiet"], capsys)
    assert code == 0, err
    assert json.loads(stdout) == {"report": str(out)}
    assert f"rows from {odd_columns}" in out.read_text(encoding="utf-8")


def test_export_checks_on_a_data_file_read_by_the_column_flags(trained_dir, odd_columns, tmp_path, capsys):
    line = refused(["export", trained_dir, "--data", odd_columns, "--out", tmp_path / "x"], capsys)
    assert "--label-col" in line and not (tmp_path / "x").exists()
    code, stdout, err = run(["export", trained_dir, "--data", odd_columns, "--label-col", "outcome",
                             "--out", tmp_path / "x", "--quiet"], capsys)
    assert code == 0, err
    check = json.loads(stdout.splitlines()[-1])["check"]
    assert check["data"] == str(odd_columns) and check["rows"] == 60


@pytest.mark.parametrize("command", ["report", "export"])
def test_column_flags_without_data_are_refused(command, trained_dir, tmp_path, capsys):
    line = refused([command, trained_dir, "--label-col", "outcome", "--out", tmp_path / "x.html"], capsys)
    assert "--label-col says how to read the --data file" in line and "pass --data FILE" in line


def test_a_pair_models_data_file_takes_the_text_pair_col_it_names(trained_dir, tmp_path):
    from bertfit.reporting.report import read_labelled  # report, export and evaluate read --data through it

    pair_model = dataclasses.replace(read_meta(trained_dir), text_pair_col="sentence2")
    data = tmp_path / "pairs.csv"
    data.write_text("text,second,label\nrefund my card,please,billing\nscreen is broken,again,tech\n")
    with pytest.raises(DataError, match="pass --text-pair-col"):
        read_labelled(data, pair_model)
    rows = read_labelled(data, pair_model, text_pair_col="second")
    assert rows.pairs == ["please", "again"] and rows.labels == ["billing", "tech"]
    assert build_parser().parse_args(["report", "m", "--data", "f.csv", "--text-pair-col", "second"]).text_pair_col \
        == "second"


def test_a_guessed_label_column_with_none_of_the_models_labels_is_refused(trained_dir, odd_columns, capsys):
    line = refused(["report", trained_dir, "--data", odd_columns, "--label-col", "body", "--text-col", "outcome",
                    "--quiet"], capsys)
    assert "none of the labels in column 'body'" in line and "pass --label-col" in line


def test_a_report_out_that_is_a_folder_is_offered_report_html(trained_dir, tmp_path, capsys):
    line = refused(["report", trained_dir, "--out", tmp_path], capsys)
    assert f"pass a file path such as {tmp_path / 'report.html'}" in line and "out.jsonl" not in line


def test_training_from_an_onnx_export_names_the_folder_it_came_from(onnx_like, data_csv, tmp_path, capsys):
    line = refused(["train", data_csv, "--model", onnx_like, "--out", tmp_path / "out"], capsys)
    assert f"--model {onnx_like} is an ONNX export (model.onnx, no PyTorch weights)" in line
    assert "the folder it was exported from" in line and "copy the whole folder" not in line
    assert not (tmp_path / "out").exists()
