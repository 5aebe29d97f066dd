"""The README's commands and code, run or parsed, so they cannot rot."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from bertfit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_setup_commands():
    first = BLOCKS[0][1].split("\n")
    assert [line.split("#")[0].strip() for line in first[:2]] == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    demo = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    test = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert demo and test
    assert demo.group(1).strip().splitlines()[-1].split("bertfit train")[0].endswith("$(BIN)/")
    assert "pytest" in test.group(1)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _bertfit_lines():
    for language, block in BLOCKS:
        if language:
            continue
        for line in block.splitlines():
            command = line.split(" # ")[0].strip()
            command = command.split("| ")[-1]
            if " -m bertfit " in command:  # torchrun / accelerate launch lines: the bertfit part
                command = "bertfit " + command.split(" -m bertfit ", 1)[1]
            if command.startswith("bertfit "):
                yield command


@pytest.mark.parametrize("command", list(_bertfit_lines()))
def test_readme_command_lines_parse(command):
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.command in {"train", "evaluate", "predict", "report", "export", "serve", "distill", "compress", "audit",
                            "tune"}


def test_readme_python_example_runs(tmp_path, monkeypatch, tiny_model_dir, rows):
    code = next(block for language, block in BLOCKS if language == "python")
    monkeypatch.chdir(tmp_path)
    rows.to_csv("tickets.csv", index=False)
    monkeypatch.setattr("bertfit.training.stages.default_model_path", lambda: str(tiny_model_dir))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "ticket-model" / "bertfit.json").exists()
    assert namespace["result"].best_epoch >= 1
    assert len(namespace["classifier"].predict(["a", "b"])) == 2
