"""Bad input through the `bertfit` command (issue 8): refused with exit 2 and one `error:` line
that names the problem and the fix, no traceback, and nothing written.

Each case writes its inputs into a fresh folder, runs ``bertfit.cli.main`` in-process, and checks
that the folder (also the working directory) holds exactly what it held before. No case may start
training: ``transformers.Trainer.train`` is a tripwire. Ctrl-C runs a real ``python -m bertfit``
process. Property tests throw random bytes and random table shapes at the loader: it reads them
or raises a BertfitError, never anything else.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertfit.cli import main
from bertfit.data.cleaning import prepare
from bertfit.data.reading import iter_texts, load_labelled
from bertfit.errors import BertfitError
from conftest import make_rows, stop_training

ROWS = make_rows(per_class=8)  # 24 valid rows, 3 classes: billing, sales, tech
ENV_SET_BY_CLI = ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")


class Models:
    """The conftest models, built only when a case asks (a data case never trains anything)."""

    def __init__(self, request: pytest.FixtureRequest):
        self._request = request

    @property
    def tiny(self) -> Path:
        return self._request.getfixturevalue("tiny_model_dir")

    @property
    def trained(self) -> Path:
        return self._request.getfixturevalue("trained_dir")


@dataclass(frozen=True)
class Case:
    command: str  # train | predict | evaluate | report | export | distill | compress | tune
    setup: Callable[[Path, Models], list]  # writes its inputs under the folder; the arguments after the command
    problem: tuple[str, ...]  # the error line names what is wrong with these words ...
    fix: tuple[str, ...]  # ... and how to fix it with these
    stdin: str | bytes | None = None
    offline: bool = False  # HF_HUB_OFFLINE=1


# -- inputs -----------------------------------------------------------------------------------------


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def good_csv(rows: pd.DataFrame = ROWS) -> str:
    return rows.to_csv(index=False)


def train_args(data: Path | str, models: Models, folder: Path, *extra: str, model: Path | str | None = None) -> list:
    return [data, "--model", model or models.tiny, "--out", folder / "model", "--quiet", *extra]


def trains(name: str, content: str | bytes, *extra: str) -> Callable[[Path, Models], list]:
    """A case that trains on one file with this content."""
    return lambda folder, models: train_args(write(folder, name, content), models, folder, *extra)


def trains_good(*extra: str) -> Callable[[Path, Models], list]:
    """A case whose data is fine and whose flags are not."""
    return trains("tickets.csv", good_csv(), *extra)


def trains_folder(files: dict[str, str]) -> Callable[[Path, Models], list]:
    def setup(folder: Path, models: Models) -> list:
        for name, content in files.items():
            write(folder / "data", name, content)
        return train_args(folder / "data", models, folder)
    return setup


def predicts(name: str | None, content: str | bytes = "", *extra: str) -> Callable[[Path, Models], list]:
    """A case that predicts with the trained model from a file (or stdin when name is None)."""
    def setup(folder: Path, models: Models) -> list:
        source = "-" if name is None else write(folder, name, content)
        return [models.trained, "--input", source, "--output", folder / "predictions.jsonl", *extra]
    return setup


def with_labels(labels: list) -> str:
    return good_csv(ROWS.assign(label=labels))


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def records(rows: pd.DataFrame = ROWS) -> list[dict]:
    return rows.to_dict("records")


def multi_label(rows: pd.DataFrame, extra: str = "urgent") -> list[dict]:
    """Rows whose labels are lists: every third row also carries ``extra``."""
    return [{"text": r["text"], "labels": [r["label"], extra] if i % 3 == 0 else [r["label"]]}
            for i, r in enumerate(records(rows))]


def huge_text() -> str:
    text = ("refund " * 1_500_000).strip()  # 10.5 MB in one cell
    return good_csv(pd.concat([ROWS, pd.DataFrame({"text": [text], "label": ["billing"]})]))


def parquet(folder: Path, frame: pd.DataFrame) -> Path:
    path = folder / "tickets.parquet"
    frame.to_parquet(path)
    return path


def parquet_with_numbers_for_text(folder: Path, models: Models) -> list:
    return train_args(parquet(folder, ROWS.assign(text=range(len(ROWS)))), models, folder)


def parquet_with_records_for_labels(folder: Path, models: Models) -> list:
    frame = ROWS.assign(label=[{"name": label, "score": 1} for label in ROWS["label"]])
    return train_args(parquet(folder, frame), models, folder)


def parquet_with_texts_in_an_unnamed_index(folder: Path, models: Models) -> list:
    frame = ROWS.set_index("text")
    frame.index.name = None  # named, it is read back as a column
    return train_args(parquet(folder, frame), models, folder)


def fifo(folder: Path, name: str) -> Path:
    path = folder / name
    os.mkfifo(path)  # never opened: a reader would wait for a writer
    return path


def model_without_weights(folder: Path, models: Models) -> list:
    model = folder / "base"
    shutil.copytree(models.tiny, model)
    for weights in model.glob("*.safetensors"):
        weights.unlink()
    return train_args(write(folder, "tickets.csv", good_csv()), models, folder, model=model)


def model_without_config(folder: Path, models: Models) -> list:
    model = folder / "base"
    shutil.copytree(models.tiny, model)
    (model / "config.json").unlink()
    return train_args(write(folder, "tickets.csv", good_csv()), models, folder, model=model)


def model_file(folder: Path, models: Models) -> list:
    return train_args(write(folder, "tickets.csv", good_csv()), models, folder,
                      model=write(folder, "model.bin", b"\x00" * 16))


def saved_model(folder: Path, models: Models, change: Callable[[Path], None]) -> Path:
    copy = folder / "saved"
    shutil.copytree(models.trained, copy)
    change(copy)
    return copy


def predicts_with(change: Callable[[Path], None]) -> Callable[[Path, Models], list]:
    return lambda folder, models: [saved_model(folder, models, change), "refund my card"]


def newer_format(folder: Path) -> None:
    meta = json.loads((folder / "bertfit.json").read_text())
    (folder / "bertfit.json").write_text(json.dumps({**meta, "format_version": 99}))


def drop_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def out_exists(folder: Path, models: Models) -> list:
    write(folder / "model", "keep.txt", "precious")
    return train_args(write(folder, "tickets.csv", good_csv()), models, folder)


def overwrite_other_files(folder: Path, models: Models) -> list:
    return out_exists(folder, models) + ["--overwrite"]


def out_is_a_file(folder: Path, models: Models) -> list:
    write(folder, "model", "not a folder")
    return train_args(write(folder, "tickets.csv", good_csv()), models, folder)


def out_under_a_file(folder: Path, models: Models) -> list:
    data = write(folder, "tickets.csv", good_csv())
    return [data, "--model", models.tiny, "--out", data / "model", "--quiet"]


def out_unwritable(folder: Path, models: Models) -> list:
    data = write(folder, "tickets.csv", good_csv())
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return [data, "--model", models.tiny, "--out", locked / "model", "--quiet"]


def predicts_over(target: Callable[[Path, Path], Path], *extra: str) -> Callable[[Path, Models], list]:
    """predict --input texts.txt --output TARGET, where target(folder, input) names the output."""
    def setup(folder: Path, models: Models) -> list:
        source = write(folder, "texts.txt", "refund my card\nthe app crashed\n")
        return [models.trained, "--input", source, "--output", target(folder, source), *extra]
    return setup


def link_to(folder: Path, source: Path) -> Path:
    link = folder / "link.jsonl"
    link.symlink_to(source)
    return link


def existing(folder: Path, source: Path) -> Path:
    return write(folder, "predictions.jsonl", "yesterday's predictions\n")


def train_out_holding_the_data(folder: Path, models: Models) -> list:
    data = write(folder / "project", "tickets.csv", good_csv())
    return [data, "--model", models.tiny, "--out", folder / "project", "--overwrite", "--quiet"]


def train_out_is_the_model(folder: Path, models: Models) -> list:
    base = Path(shutil.copytree(models.tiny, folder / "base"))
    return [write(folder, "tickets.csv", good_csv()), "--model", base, "--out", base, "--overwrite", "--quiet"]


def report_over(name: Callable[[Path, Path], Path], *extra: str) -> Callable[[Path, Models], list]:
    def setup(folder: Path, models: Models) -> list:
        model = Path(shutil.copytree(models.trained, folder / "model"))
        return [model, "--out", name(folder, model), *extra]
    return setup


def exports_over(folder: Path, models: Models) -> list:
    model = Path(shutil.copytree(models.trained, folder / "model"))
    return [model, "--out", model, "--overwrite", "--quiet"]


def exports_inside(folder: Path, models: Models) -> list:
    model = Path(shutil.copytree(models.trained, folder / "model"))
    return [model, "--out", model / "onnx", "--quiet"]


def trains_inside_its_base_model(folder: Path, models: Models) -> list:
    data = write(folder, "tickets.csv", good_csv())
    base = Path(shutil.copytree(models.trained, folder / "base"))
    return [data, "--model", base, "--out", base / "tuned", "--quiet"]


def distills_into_the_teacher(folder: Path, models: Models) -> list:
    teacher = Path(shutil.copytree(models.trained, folder / "teacher"))
    data = write(folder, "tickets.csv", good_csv())
    return [teacher, data, "--student-layers", "1", "--out", teacher, "--overwrite", "--quiet"]


def compresses_over_the_data(folder: Path, models: Models) -> list:
    data = write(folder / "work", "tickets.csv", good_csv())
    return [models.trained, data, "--out", folder / "work", "--overwrite", "--quiet"]


def damaged_model(change: Callable[[Path], None]) -> Callable[[Path, Models], list]:
    return lambda folder, models: [saved_model(folder, models, change), "refund my card"]


def truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])


def corrupt_tokenizer(folder: Path) -> None:
    (folder / "tokenizer.json").write_text("{ not json")


def nan_weights(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    head = next(name for name in weights if name.startswith("classifier."))
    weights[head] = torch.full_like(weights[head], float("nan"))
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})


def other_architecture(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="roberta", architectures=["RobertaForSequenceClassification"])
    (folder / "config.json").write_text(json.dumps(config))


def swapped(command: str) -> Callable[[Path, Models], list]:
    def setup(folder: Path, models: Models) -> list:
        data = write(folder, "holdout.csv", good_csv())
        return [data, models.trained] if command == "evaluate" else [data, "hello"]
    return setup


def evaluates(content: str) -> Callable[[Path, Models], list]:
    return lambda folder, models: [models.trained, write(folder, "holdout.csv", content), "--quiet"]


LATIN1 = "text,label\ncafé crème refund,billing\n".encode("latin-1")
DEEP = '{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n"  # past Python's recursion limit
LONE_SURROGATE = '{"text": "bad \\ud800 x", "label": "billing"}\n'  # the escape, as a file holds it
HAS_FIFO = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
UTF16 = ("\ufeff" + good_csv()).encode("utf-16-le")
GZIP = gzip.compress(good_csv().encode())
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
NOT_ROOT = pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                              reason="root writes anywhere, so no folder is unwritable to it")

CASES = [
    # -- reading the data ---------------------------------------------------------------------------
    pytest.param(Case("train", lambda folder, models: train_args(folder / "nope.csv", models, folder),
                      ("nope.csv", "not found"), ("check the path",)), id="missing-file"),
    pytest.param(Case("train", trains_folder({"reviews.csv": good_csv(), "notes.txt": "x"}),
                      ("no train file",), ("train.csv",)), id="folder-without-splits"),
    pytest.param(Case("train", trains("tickets.csv", ""), ("is empty",), ("header row",)), id="empty-file"),
    pytest.param(Case("train", trains("tickets.csv", "text,label\n"), ("header but no rows",), ("add labelled rows",)),
                 id="header-only"),
    pytest.param(Case("train", trains("tickets.csv", good_csv().replace(",", "|")),
                      ("one column", "'|'"), ("commas",)), id="wrong-delimiter"),
    pytest.param(Case("train", trains("tickets.tsv", good_csv()), ("one column", "','"), (".csv",)),
                 id="tsv-that-is-comma-separated"),
    pytest.param(Case("train", trains("tickets.csv", PNG), ("binary",), ("CSV/TSV/JSONL/Parquet",)),
                 id="binary-garbage"),
    pytest.param(Case("train", trains("tickets.csv", GZIP), ("compressed",), ("gunzip",)), id="gzip-file"),
    pytest.param(Case("train", trains("tickets.csv", b"PK\x03\x04" + bytes(64)), ("zip archive", ".xlsx"),
                      ("save the sheet as CSV",)), id="spreadsheet-renamed-csv"),
    pytest.param(Case("train", trains("tickets.parquet", PNG), ("Parquet",), ("to_parquet",)),
                 id="garbage-parquet"),
    pytest.param(Case("train", trains("tickets.csv", LATIN1), ("not UTF-8", "0xe9"), ("re-save it as UTF-8",)),
                 id="invalid-utf8"),
    pytest.param(Case("train", trains("tickets.csv", UTF16), ("UTF-16",), ("re-save it as UTF-8",)), id="utf16"),
    pytest.param(Case("train", trains("tickets.xlsx", b"PK\x03\x04"), ("'.xlsx'",), (".csv",)),
                 id="unknown-format"),
    pytest.param(Case("train", trains("tickets.csv", huge_text()), ("10,499,999 characters", "row 24"),
                      ("quoting", "split it")), id="10mb-single-text"),
    pytest.param(Case("train", trains("tickets.csv", 'text,label\n"refund my card,billing\napp crash,tech\n'),
                      ("cannot parse",), ("quoting",)), id="unclosed-quote"),
    pytest.param(Case("train", trains("tickets.csv", good_csv().replace("text,label", "text,label,text", 1)),
                      ("more than once", "'text'"), ("rename",)), id="duplicated-column-names"),
    pytest.param(Case("train", trains("tickets.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'
                                      '{"text": "c", "label": \n'), ("line 3", "not valid JSON"),
                      ("fix or delete that line",)), id="jsonl-broken-line"),
    pytest.param(Case("train", trains("tickets.jsonl", '["refund my card", "billing"]\n'),
                      ("line 1", "JSON list"), ('{"text"',)), id="jsonl-line-not-an-object"),
    pytest.param(Case("train", parquet_with_numbers_for_text, ("'text'", "int values", "e.g. 0)"), ("--text-col",)),
                 id="parquet-numbers-as-text"),
    pytest.param(Case("train", parquet_with_records_for_labels, ("'label'", "objects"), ("class names",)),
                 id="parquet-records-as-labels"),
    pytest.param(Case("train", trains("tickets.jsonl", jsonl(records()) + DEEP), (f"line {len(ROWS) + 1}",
                                                                             "too deeply"),
                      ("fix or delete that line",)), id="jsonl-nested-past-the-recursion-limit"),
    pytest.param(Case("predict", predicts("texts.txt", "refund my card\n" + "x" * 1_000_001 + "\n"),
                      ("text 2 of", "1,000,001 characters"), ("split it into smaller texts",)),
                 id="predict-a-text-over-a-million-characters"),
    pytest.param(Case("predict", predicts("new.jsonl", DEEP), ("new.jsonl line 1", "too deeply"),
                      ("fix or delete that line",)), id="predict-jsonl-nested-past-the-recursion-limit"),
    pytest.param(Case("train", trains("tickets.jsonl", jsonl(records()) + '{"text": "hi", "label": ' + "9" * 5000
                                      + "}\n"), (f"line {len(ROWS) + 1}", "digits"), ("in quotes",)),
                 id="jsonl-label-of-5000-digits"),
    pytest.param(Case("train", trains("tickets.jsonl", jsonl(records()) + LONE_SURROGATE),
                      (f"line {len(ROWS) + 1}", "lone surrogate"), ("whole characters",)), id="jsonl-lone-surrogate"),
    pytest.param(Case("predict", predicts("new.jsonl", LONE_SURROGATE), ("new.jsonl line 1", "lone surrogate"),
                      ("whole characters",)), id="predict-jsonl-lone-surrogate"),
    pytest.param(Case("train", trains("tickets.csv", jsonl(records())), ("tickets.csv", "holds JSON lines"),
                      ("rename it to .jsonl",)), id="csv-holding-json-lines"),
    pytest.param(Case("predict", predicts("new.csv", '{"text": "refund"}\n{"text": "app crash"}\n'),
                      ("new.csv", "holds JSON lines"), ("rename it to .jsonl",)), id="predict-csv-holding-json-lines"),
    pytest.param(Case("train", trains("tickets.csv", good_csv(ROWS.assign(text=[str(1000 + i) for i in
                                                                             range(len(ROWS))]))),
                      ("text column 'text' holds numbers", "'1000'", "ids"), ("--text-col",)),
                 id="csv-text-column-of-ids"),
    pytest.param(Case("train", trains("tickets.jsonl", jsonl([{**r, "text": 1000 + i} for i, r in
                                                              enumerate(records())])),
                      ("text column 'text' holds int values", "e.g. 1000)"), ("--text-col",)),
                 id="jsonl-text-column-of-ids"),
    pytest.param(Case("train", parquet_with_texts_in_an_unnamed_index, ("the table's index",),
                      ("reset_index()", "index=False")), id="parquet-texts-in-the-index"),
    pytest.param(Case("train", lambda folder, models: train_args(fifo(folder, "tickets.csv"), models, folder),
                      ("tickets.csv is a pipe", "not a regular file"), ("save the data to a file with a suffix",)),
                 id="train-data-from-a-pipe", marks=HAS_FIFO),
    # -- the labels --------------------------------------------------------------------------------
    pytest.param(Case("train", trains("tickets.jsonl", jsonl([{"text": r["text"], "labels": [[r["label"], "urgent"]]}
                                                              for r in records()])),
                      ("label column 'labels'", "list inside a list", "row 0"), ("flat list of class names",)),
                 id="multi-label-lists-inside-lists"),
    pytest.param(Case("train", trains("tickets.csv", with_labels([""] * len(ROWS))),
                      ("24 rows", "24 with no label in 'label'"), ("--label-col",)), id="nan-labels"),
    pytest.param(Case("train", trains("tickets.jsonl", jsonl(records(ROWS)).replace('"label": "billing"',
                                                                                  '"label": NaN')
                                      .replace('"label": "tech"', '"label": NaN')),
                      ("one class", "'sales'"), ("at least two",)), id="nan-labels-jsonl-leave-one-class"),
    pytest.param(Case("train", trains("tickets.csv", with_labels(["billing"] * len(ROWS))),
                      ("one class", "'billing'"), ("at least two",)), id="single-class"),
    pytest.param(Case("train", trains("tickets.csv", with_labels([f"ticket-{i}" for i in range(len(ROWS))])),
                      ("every class has a single row", "'ticket-0'"), ("--label-col",)), id="label-column-of-ids"),
    pytest.param(Case("train", trains("tickets.csv", "text,label,source\nmy card, charged twice,billing,web\n"
                                      "app crash,tech,app\n"), ("line 2 has 4 fields", "header names 3"),
                      ("double quotes",)), id="unquoted-comma-in-the-first-row"),
    pytest.param(Case("train", trains("tickets.csv", good_csv() + "my card, charged twice,billing\n"),
                      (f"line {len(ROWS) + 2} has 3 fields", "header names 2"), ("double quotes",)),
                 id="unquoted-comma-in-a-later-row"),
    pytest.param(Case("train", trains("tickets.csv", with_labels([0.5 + i % 3 for i in range(len(ROWS))])),
                      ("fractions", "0.5"), ("class names or whole numbers",)), id="label-column-of-floats"),
    pytest.param(Case("train", trains_folder({"train.csv": good_csv(ROWS),
                                              "test.csv": "text,label\nrefund my card please,refunds\n"}),
                      ("test split", "'refunds'"), ("add them to the training data",)),
                 id="unseen-label-in-test"),
    pytest.param(Case("train", trains_folder({"train.jsonl": jsonl(multi_label(ROWS[:18])),
                                              "validation.jsonl": jsonl(multi_label(ROWS[18:21])),
                                              "test.jsonl": jsonl(multi_label(ROWS[21:], extra="refunds"))}),
                      ("test split", "'refunds'"), ("add them to the training data",)),
                 id="multi-label-unknown-label"),
    pytest.param(Case("train", trains_folder({"train.csv": good_csv(ROWS), "test.csv": good_csv(ROWS[:3])}),
                      ("more than one split",), ("--drop-leaks",)), id="texts-leak-across-splits"),
    pytest.param(Case("train", trains("pairs.csv", "text_a,text_b,label\nmy card,was charged twice,billing\n"
                                      "the app,,tech\nbuy seats,for our team,sales\n"),
                      ("only one side", "'text_b'"), ("fill in both",)), id="sentence-pair-missing-a-side"),
    pytest.param(Case("train", trains_good("--label-col", "stars"), ("'stars' not found", "['text', 'label']"),
                      ("--label-col",)), id="label-column-not-found"),
    pytest.param(Case("train", trains_good("--text-col", "label"), ("--text-col 'label' is the label column",),
                      ("pass --label-col too",)), id="text-column-is-the-label-column"),
    pytest.param(Case("train", trains_good("--label-col", "text"), ("single row", f"{len(ROWS) - 3} of the "
                                                                    f"{len(ROWS)} rows", "repeated texts"),
                      ("columns swapped", "--label-col", "--text-col")), id="text-and-label-columns-swapped"),
    # -- the model and the flags -------------------------------------------------------------------------
    pytest.param(Case("train", model_without_weights, ("no weights",), ("copy the whole folder",)),
                 id="model-folder-missing-weights"),
    pytest.param(Case("train", model_without_config, ("no config.json",), ("Hugging Face model folder",)),
                 id="model-folder-without-config"),
    pytest.param(Case("train", model_file, ("is a file",), ("model folder",)), id="model-is-a-file"),
    pytest.param(Case("train", lambda folder, models: train_args(write(folder, "t.csv", good_csv()), models, folder,
                                                                 model="no-such-org/no-such-model"),
                      ("no-such-org/no-such-model", "unreachable"), ("--model PATH",), offline=True),
                 id="hub-model-offline"),
    pytest.param(Case("train", lambda folder, models: train_args("hf:no-such-org/no-such-data", models, folder),
                      ("no-such-org/no-such-data",), ("save_to_disk", "hf:PATH"), offline=True),
                 id="hub-dataset-offline"),
    pytest.param(Case("train", trains_good("--train-layers", "5"), ("more than the model's 2 encoder layers",),
                      ("pass 1 to 2",)), id="train-layers-above-the-model"),
    pytest.param(Case("train", trains_good("--train-layers", "0"), ("--train-layers", "'0'"), ("head, pooler",)),
                 id="train-layers-zero"),
    pytest.param(Case("train", trains_good("--epochs", "0"), ("--epochs", "got 0"), ("positive whole number",)),
                 id="zero-epochs"),
    pytest.param(Case("train", trains_good("--epochs", "-3"), ("--epochs", "got -3"), ("positive whole number",)),
                 id="negative-epochs"),
    pytest.param(Case("train", trains_good("--batch-size", "0"), ("--batch-size", "got 0"),
                      ("positive whole number",)), id="zero-batch-size"),
    pytest.param(Case("train", trains_good("--batch-size", "-8"), ("--batch-size", "got -8"),
                      ("positive whole number",)), id="negative-batch-size"),
    pytest.param(Case("train", trains_good("--max-length", "100000"), ("above the model's limit of 64",),
                      ("--max-length 64",)), id="max-length-above-the-model"),
    pytest.param(Case("train", trains_good("--max-length", "3"), ("--max-length 3", "2 special tokens"),
                      ("--max-length 4 or more",)), id="max-length-leaving-no-text"),
    pytest.param(Case("train", trains_good("--long-text", "head-tail", "--max-length", "3"), ("--max-length 3",),
                      ("--max-length 4 or more",)), id="head-tail-without-room-for-a-tail"),
    pytest.param(Case("train", trains_good("--seed", "-1"), ("--seed", "got -1"), ("from 0 to 4294967295",)),
                 id="negative-seed"),
    pytest.param(Case("train", trains_good("--seed", str(2**32)), ("--seed", f"got {2**32}"),
                      ("from 0 to 4294967295",)), id="seed-past-32-bits"),
    pytest.param(Case("tune", trains_good("--budget", "1m", "--storage", "nosuchdb://u:secret@host/x"),
                      ("cannot open --storage nosuchdb://***@host/x",), ("postgresql://", "journal:PATH")),
                 id="tune-storage-url-nothing-can-open"),
    pytest.param(Case("train", trains_good("--validation-fraction", "1.5"), ("--validation-fraction", "1.5"),
                      ("between 0 and 1",)), id="fraction-out-of-range"),
    # -- where the model goes -------------------------------------------------------------------------
    pytest.param(Case("train", out_exists, ("exists and is not empty",), ("--overwrite",)),
                 id="out-not-empty-without-overwrite"),
    pytest.param(Case("train", overwrite_other_files, ("holds files bertfit did not write (keep.txt)",),
                      ("pass a new --out",)), id="overwrite-a-folder-of-other-files"),
    pytest.param(Case("train", out_is_a_file, ("is a file",), ("folder path",)), id="out-is-a-file"),
    pytest.param(Case("train", out_under_a_file, ("tickets.csv", "is a file"), ("another --out",)),
                 id="out-inside-a-file"),
    pytest.param(Case("train", out_unwritable, ("permission denied",), ("--out you can write to",)),
                 id="out-unwritable", marks=NOT_ROOT),
    # -- predict and evaluate ---------------------------------------------------------------------------
    pytest.param(Case("predict", predicts_with(drop_weights), ("no weights",), ("copy the whole folder",)),
                 id="predict-model-missing-weights"),
    pytest.param(Case("predict", predicts_with(newer_format), ("format 99", "newer"), ("pip install -U bertfit",)),
                 id="predict-model-newer-format"),
    pytest.param(Case("predict", lambda folder, models: [models.tiny, "hello"], ("base model with no classification "
                      "head", "classifier."), ("bertfit train DATA --model",)), id="predict-with-a-base-model"),
    pytest.param(Case("predict", lambda folder, models: [folder / "no-model", "hello"], ("not found",),
                      ("bertfit train",)), id="predict-model-not-found"),
    pytest.param(Case("predict", predicts("new.csv", "id,stars\n1,5\n2,3\n"),
                      ("which column holds the text", "['id', 'stars']"), ("--text-col",)),
                 id="predict-input-without-text-column"),
    pytest.param(Case("predict", predicts("new.jsonl", '{"text": ["refund", "card"]}\n{"text": "app crash"}\n'),
                      ("column 'text'", "holds list values", "row 0"), ("--text-col", "into strings")),
                 id="predict-text-cells-holding-lists"),
    pytest.param(Case("predict", predicts("new.jsonl", '{"text": "refund"}\n{"text": {"body": "app crash"}}\n'),
                      ("holds record values", "row 1"), ("--text-col",)), id="predict-text-cells-holding-records"),
    pytest.param(Case("predict", predicts(None), ("no texts", "standard input"), ("--input FILE",), stdin=""),
                 id="predict-empty-stdin"),
    pytest.param(Case("predict", predicts("new.csv", "refund my card\nthe app crashed\nbuy seats\n"),
                      ("one column", "'refund my card'", "taken as the header"),
                      ("add a header line", ".txt file", "--text-col")), id="predict-csv-without-a-header-line"),
    pytest.param(Case("predict", lambda folder, models: [models.trained, "--input", fifo(folder, "texts")],
                      ("is a pipe", "not a regular file"), ("--input -",)), id="predict-input-is-a-pipe",
                 marks=HAS_FIFO),
    pytest.param(Case("predict", lambda folder, models: [models.trained, "--input", os.devnull],
                      ("is a device", "not a regular file"), ("--input -",)), id="predict-input-is-a-device"),
    pytest.param(Case("predict", predicts("new.txt", "caf\xe9\n".encode("latin-1")), ("not UTF-8",),
                      ("re-save it as UTF-8",)), id="predict-input-invalid-utf8"),
    pytest.param(Case("predict", lambda folder, models: [models.trained, "--input", folder / "nope.csv"],
                      ("nope.csv", "not found"), ("check the path",)), id="predict-input-missing"),
    pytest.param(Case("predict", lambda folder, models: [models.trained, "hi", "--threshold", "2"],
                      ("--threshold", "2"), ("between 0 and 1",)), id="predict-threshold-out-of-range"),
    # -- writing over what a command reads, or over an earlier output -----------------------------------
    pytest.param(Case("predict", predicts_over(lambda folder, source: source), ("is the input file",),
                      ("pass another --output",)), id="predict-output-is-its-input"),
    pytest.param(Case("predict", predicts_over(lambda folder, source: source, "--overwrite"), ("is the input file",),
                      ("pass another --output",)), id="predict-output-is-its-input-even-with-overwrite"),
    pytest.param(Case("predict", predicts_over(link_to), ("is the input file",), ("pass another --output",)),
                 id="predict-output-is-a-link-to-its-input"),
    pytest.param(Case("predict", predicts_over(existing), ("exists",), ("--overwrite",)),
                 id="predict-output-exists-without-overwrite"),
    pytest.param(Case("train", train_out_holding_the_data, ("holds the data",), ("pass another --out",)),
                 id="train-out-holds-its-data"),
    pytest.param(Case("train", train_out_is_the_model, ("is the --model folder",), ("pass another --out",)),
                 id="train-out-is-its-base-model"),
    pytest.param(Case("report", report_over(lambda folder, model: model / "bertfit.json", "--overwrite"),
                      ("is the model's bertfit.json",), ("pass another --out",)), id="report-over-its-model"),
    pytest.param(Case("report", report_over(lambda folder, model: folder / "report.pdf"),
                      ("the report is an HTML page",), ("name it .html",)), id="report-out-not-html"),
    pytest.param(Case("report", report_over(lambda folder, model: write(folder, "old.html", "<p>old</p>")),
                      ("exists",), ("--overwrite",)), id="report-out-exists-without-overwrite"),
    pytest.param(Case("export", exports_over, ("is the model folder",), ("pass another --out",)),
                 id="export-over-its-model"),
    pytest.param(Case("export", exports_inside, ("is inside the model folder",), ("pass a --out outside it",)),
                 id="export-inside-its-model"),
    pytest.param(Case("train", trains_inside_its_base_model, ("is inside the --model folder",),
                      ("pass a --out outside it",)), id="train-out-inside-its-base-model"),
    pytest.param(Case("distill", distills_into_the_teacher, ("is the teacher folder",), ("pass another --out",)),
                 id="distill-over-its-teacher"),
    pytest.param(Case("compress", compresses_over_the_data, ("holds the data",), ("pass another --out",)),
                 id="compress-out-holds-its-data"),
    # -- damaged models, swapped arguments, bytes that are not text ----------------------------------
    pytest.param(Case("predict", damaged_model(truncate_weights), ("damaged or incomplete",),
                      ("copy the whole folder",)), id="predict-model-with-truncated-weights"),
    pytest.param(Case("train", lambda folder, models: [""], ("DATA is empty",), ("pass a path",)),
                 id="train-empty-data-path"),
    pytest.param(Case("predict", lambda folder, models: [models.trained, "hi", "--output", ""], ("--output is empty",),
                      ("unset shell variable",)), id="predict-empty-output-path"),
    pytest.param(Case("predict", predicts("new.csv", "text,label\n17,tech\n42,billing\n"),
                      ("text column 'text' holds numbers", "reads words"), ("--text-col",)),
                 id="predict-a-text-column-of-numbers"),
    pytest.param(Case("predict", damaged_model(nan_weights), ("not finite", "in classifier."),
                      ("copy the whole folder",)), id="predict-model-with-nan-weights"),
    pytest.param(Case("predict", damaged_model(other_architecture), ("config.json does not describe its weights",),
                      ("copy the whole folder",)), id="predict-model-whose-config-names-another-architecture"),
    pytest.param(Case("predict", damaged_model(corrupt_tokenizer), ("damaged or incomplete",),
                      ("copy the whole folder",)), id="predict-model-with-corrupt-tokenizer"),
    pytest.param(Case("predict", swapped("predict"), ("holdout.csv", "is a data file"),
                      ("model folder comes first",)), id="predict-data-file-in-the-model-place"),
    pytest.param(Case("evaluate", swapped("evaluate"), ("holdout.csv", "is a data file"),
                      ("model folder comes first",)), id="evaluate-arguments-swapped"),
    pytest.param(Case("predict", lambda folder, models: [models.trained, "fine", "caf\udce9"],
                      ("text 1", "not valid UTF-8", "byte 0xe9"), ("iconv",)), id="predict-argument-not-utf8"),
    pytest.param(Case("predict", predicts(None), ("standard input", "not UTF-8", "0xe9"), ("iconv",),
                      stdin=b"fine\ncaf\xe9\n"), id="predict-stdin-not-utf8"),
    pytest.param(Case("predict", lambda folder, models: [models.trained, "--input", folder], ("is a folder",),
                      ("pass a file of texts",)), id="predict-input-is-a-folder"),
    pytest.param(Case("predict", lambda folder, models: [models.trained], ("no texts to predict",),
                      ("--input FILE",)), id="predict-without-texts-or-input"),
    pytest.param(Case("train", trains_good("--epcohs", "3"), ("unrecognized arguments: --epcohs",),
                      ("did you mean --epcohs -> --epochs",)), id="misspelled-flag"),
    pytest.param(Case("predict", lambda folder, models: [models.trained, "hello", "--format", "csv"],
                      ("unrecognized arguments: --format",), ("--format belongs to bertfit export",)),
                 id="flag-of-another-command"),
    pytest.param(Case("evaluate", evaluates("text,label\nrefund my card,refunds\n"), ("'refunds'",),
                      ("remove those rows",)), id="evaluate-unknown-label"),
    pytest.param(Case("evaluate", evaluates("text,stars\nrefund my card,5\n"), ("label",), ("--label-col",)),
                 id="evaluate-without-label-column"),
]


# -- running one case -------------------------------------------------------------------------------


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under the folder with its size and modification time: what a failed command must not change."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def training_started(*args, **kwargs):
    raise AssertionError("training started although the input should have been refused before it")


@contextlib.contextmanager
def cli_state_kept(monkeypatch: pytest.MonkeyPatch):
    """main() sets the 'bertfit' logger, two env defaults and a warnings filter; give them back.

    A fresh `bertfit` process quiets transformers (no progress bars, errors only) before importing
    it; here it is imported already, so that is done by hand, to see stderr as a user does.
    """
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("bertfit")
    saved = logger.handlers[:], logger.level, logger.propagate
    bars_were_on = hf_logging.is_progress_bar_enabled(), not hub_utils.are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # both transformers' and huggingface_hub's
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # as TRANSFORMERS_VERBOSITY=error does in a fresh process
    for name in ENV_SET_BY_CLI:
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])  # restored by monkeypatch at the end of the test
        else:
            monkeypatch.delenv(name, raising=False)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
        hf_logging.set_verbosity(verbosity)
        if bars_were_on[0]:
            hf_logging.enable_progress_bar()
        if not bars_were_on[1]:
            hub_utils.disable_progress_bars()


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # The hub libraries read the variable once, at import; this process may have imported them already.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    if "datasets" in sys.modules:
        monkeypatch.setattr(sys.modules["datasets"].config, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_with_one_line_and_nothing_written(case, tmp_path, request, monkeypatch, capsys):
    import transformers

    argv = [case.command, *map(str, case.setup(tmp_path, Models(request)))]
    before = tree(tmp_path)
    monkeypatch.chdir(tmp_path)  # a stray relative write lands in the watched folder
    monkeypatch.setattr(transformers.Trainer, "train", training_started)
    if isinstance(case.stdin, bytes):  # as a real process gets it: bytes under a text layer
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(case.stdin), errors="surrogateescape"))
    elif case.stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(case.stdin))
    if case.offline:
        go_offline(monkeypatch)
    capsys.readouterr()
    started = time.perf_counter()
    try:
        with cli_state_kept(monkeypatch):
            code = main(argv)
    finally:
        for locked in tmp_path.glob("locked"):
            locked.chmod(0o755)
    out, err = capsys.readouterr()
    assert time.perf_counter() - started < 30, "refusing should not take long"
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    line = lines[0]
    assert "unexpected" not in line, line  # the CLI's last line of defence: a bug, not a user error
    for words in (*case.problem, *case.fix):
        assert words in line, f"{words!r} not in {line!r}"
    assert code == 2, line
    assert out == ""
    assert tree(tmp_path) == before  # no output folder, no staging, no checkpoints, no partial file


# -- texts with nothing to see ----------------------------------------------------------------------

INVISIBLE = ["\u200b", "\x01\x02", "\u200e \u202e", "\ufeff\u2060"]  # zero-width, controls, bidi marks


def test_texts_of_invisible_characters_are_empty_to_predict_score_and_serve(trained_dir, tmp_path, capsys,
                                                                            monkeypatch):
    from types import SimpleNamespace

    from bertfit.config import ServeConfig
    from bertfit.model import TextClassifier
    from bertfit.serving.app import check_request

    source = tmp_path / "new.jsonl"
    source.write_text(jsonl([{"text": text} for text in [*INVISIBLE, "😀", "refund my card"]]), encoding="utf-8")
    with cli_state_kept(monkeypatch):
        assert main(["predict", str(trained_dir), "--input", str(source), "--quiet"]) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [record.get("empty", False) for record in printed] == [True] * len(INVISIBLE) + [False, False]
    assert printed[-2]["label"] is not None  # emoji are text
    classifier = TextClassifier.from_pretrained(trained_dir)
    with pytest.raises(BertfitError, match="text 1 is empty"):
        classifier.logits(["refund", "\u200b\u200e"])
    problem = check_request(SimpleNamespace(text_pair_col=None), ServeConfig(), ["ok", "\u200b"], None, None)
    assert problem is not None and "text 1 is empty (invisible characters only)" in problem
    assert check_request(SimpleNamespace(text_pair_col=None), ServeConfig(), ["😀"], None, None) is None


# -- Ctrl-C ------------------------------------------------------------------------------------------


def test_ctrl_c_during_training_exits_cleanly_and_saves_nothing(tiny_model_dir, data_csv, tmp_path):
    out_dir = tmp_path / "model"
    code, out, err = stop_training(signal.SIGINT, "epoch 1/", data_csv, tiny_model_dir, tmp_path)
    assert code in (1, 130), err
    assert "Traceback" not in err
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "interrupted" in errors[0] and "nothing was saved" in errors[0], err
    assert out == ""
    assert not out_dir.exists()
    assert list(tmp_path.iterdir()) == []  # no staging folder, no checkpoints: a stopped run cleans up


# -- random input at the loader ---------------------------------------------------------------------


def read_or_refuse(path: Path) -> None:
    """Read the file every way the CLI does; only a BertfitError may escape."""
    for read in (lambda: prepare(path), lambda: load_labelled(path, None, None), lambda: list(iter_texts(path))):
        try:
            read()
        except BertfitError:
            pass


SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")
FUZZ = settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
CELLS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", " ", "nan", "NaN", "NA", "null", "1", "2.0", "1.5", "-0", "inf", '"', '""', "a,b", "x\ny",
                     "\t", ";", "|", "label", "text", "\x00", "\ufeff", "é"]),
)
NAMES = st.sampled_from(["text", "label", "labels", "sentence", "text_a", "text_b", "stars", "", "Text", "id"])
VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8), CELLS),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=2)),
    max_leaves=4,
)


def with_valid_rows(draw) -> list[list[str]]:
    """Sometimes start from rows that would train, so the strange ones meet the later checks too."""
    return ROWS.values.tolist()[:draw(st.sampled_from([0, 0, 6, 24]))]


@st.composite
def delimited_files(draw) -> tuple[str, str]:
    names = draw(st.lists(NAMES, min_size=1, max_size=4))
    rows = with_valid_rows(draw) + draw(st.lists(st.lists(CELLS, max_size=len(names) + 1), max_size=20))
    sep = draw(st.sampled_from([",", ",", ";", "\t", "|"]))
    buffer = io.StringIO()
    if draw(st.booleans()):
        writer = csv.writer(buffer, delimiter=sep)
        writer.writerow(names)
        writer.writerows(rows)
    else:  # no quoting at all: stray quotes and separators inside cells stay as they are
        buffer.write("\n".join(sep.join(map(str, row)) for row in [names, *rows]))
    return draw(st.sampled_from([".csv", ".tsv"])), buffer.getvalue()


@st.composite
def jsonl_files(draw) -> tuple[str, str]:
    lines = [json.dumps({"text": t, "label": label}) for t, label in with_valid_rows(draw)]
    for _ in range(draw(st.integers(0, 12))):
        keys = draw(st.lists(NAMES, max_size=3))
        lines.append(json.dumps({key: draw(VALUES) for key in keys}))
    if draw(st.booleans()):
        lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=10)))
    return ".jsonl", "\n".join(lines)


def fuzz_file(suffix: str, content: str | bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"data{suffix}"
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        read_or_refuse(path)


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), content=st.one_of(st.binary(max_size=600),
                                                            st.text(max_size=300).map(str.encode)))
def test_random_bytes_are_read_or_refused_with_a_bertfit_error(suffix, content):
    fuzz_file(suffix, content)


@FUZZ
@given(file=delimited_files())
def test_random_csv_shapes_are_read_or_refused_with_a_bertfit_error(file):
    fuzz_file(*file)


@FUZZ
@given(file=jsonl_files())
def test_random_jsonl_values_are_read_or_refused_with_a_bertfit_error(file):
    fuzz_file(*file)
