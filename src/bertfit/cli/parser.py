"""The ``bertfit`` command line: one subcommand parser per command, flags built from the config fields.

Each config field (``bertfit.config``) is a flag with its help and default; a misspelled flag gets
one error line with a guess. Each subcommand names its handler in ``bertfit.cli.commands``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import shlex
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from bertfit import __version__
from bertfit.config import QUANTIZE_CHOICES, DataConfig, ServeConfig, TrainConfig, value_type
from bertfit.errors import UsageError

SCORED_COLUMNS = ("text_col", "label_col", "text_pair_col", "label_sep")  # how a labelled file to score is read


def demo_data_path() -> Path:
    """The embedded demo set: IT support tickets labelled by tier (see bertfit/demo/README.md)."""
    return Path(str(resources.files("bertfit") / "demo" / "tickets.csv"))


def _add_config_flags(parser: argparse.ArgumentParser, cls: type, only: tuple[str, ...] | None = None,
                      skip: tuple[str, ...] = ()) -> None:
    """A flag per config field (``--field-name``), its help and default read from the field."""
    for f in dataclasses.fields(cls):
        if (only is not None and f.name not in only) or f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if flag in parser._option_string_actions:  # a field both configs share, like seed
            continue
        kind, _ = value_type(cls, f.name)
        help_text = f"{f.metadata.get('help', '')}{_default_text(f, kind)}"
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=kind, default=None, help=help_text, metavar=f.name.upper())


def _default_text(f: dataclasses.Field, kind: type) -> str:
    if f.metadata.get("shown"):
        return f" (default: {f.metadata['shown']})"
    if f.default is None or f.default is dataclasses.MISSING:
        return ""
    if kind is bool:
        return f" (default {'on' if f.default else 'off'})"
    return f" (default {f.default:g})" if kind is float else f" (default {f.default})"


def given(args: argparse.Namespace, *classes: type) -> dict[str, Any]:
    """The config flags the user gave (unset ones keep the configs' defaults)."""
    return {f.name: getattr(args, f.name) for cls in classes for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


class Parser(argparse.ArgumentParser):
    """argparse with bertfit's error line: one ``error: ...`` line naming the fix, and a guess for a misspelled flag.

    A command's parser (``siblings``: every command's parser, by name) takes its arguments between its flags
    (``predict MODEL --quiet TEXT``), and every string after ``--`` as one; its errors name its own --help.
    """

    siblings: dict[str, argparse.ArgumentParser] | None = None
    received: list[str] = []  # the command's strings, for an error about one of them

    def error(self, message: str) -> None:  # type: ignore[override]
        if self.siblings is None:
            unrecognized = message.partition("unrecognized arguments:")[2].partition(" -- ")[0]  # after --: texts
            known = [option for action in self._actions for option in action.option_strings]
            guess = _did_you_mean(re.findall(r"(--?[\w-]+)", unrecognized), known, _owners(subcommands(self)))
        else:
            message, guess = _explained(self, message)
        raise UsageError(f"{self.prog}: {message}{guess}; see {self.prog} --help")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> tuple[argparse.Namespace, list[str]]:
        """A command's flags first, its positionals set aside (as ``parse_intermixed_args`` does); then what is
        left, in order, and every string after ``--``, as its positionals. Anything else is an error here."""
        if self.siblings is None:
            return super().parse_known_args(args, namespace)
        self.received = args = list(sys.argv[1:] if args is None else args)
        cut = args.index("--") if "--" in args else len(args)
        if glued := [arg for arg in args[:cut] if _not_a_flag(self, arg) and arg[:2] in self._option_string_actions]:
            self.error(f"unrecognized arguments: {' '.join(glued)}")  # -hello: argparse would run -h, or -h ello
        positionals = [action for action in self._actions if not action.option_strings]
        saved, usage = [(action.nargs, action.default) for action in positionals], self.usage
        try:
            self.usage = self.usage or self.format_usage()[len("usage: "):]  # --help shows the positionals too
            for action in positionals:
                action.nargs = action.default = argparse.SUPPRESS
            namespace, rest = super().parse_known_args(args[:cut], namespace)
        finally:
            for action, (nargs, default) in zip(positionals, saved, strict=True):
                action.nargs, action.default = nargs, default
            self.usage = usage
        namespace, extras = super().parse_known_args([*rest, "--", *args[cut + 1:]] if cut < len(args) else rest,
                                                     namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The parser of each command (train, predict, ...) by name; empty for a parser without commands."""
    action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    return dict(action.choices) if action is not None else {}


def _owners(commands: dict[str, argparse.ArgumentParser]) -> dict[str, list[str]]:
    """Each flag of the commands, and the commands that take it."""
    flags = {name: [option for action in sub._actions for option in action.option_strings]
             for name, sub in commands.items()}
    return {flag: [name for name in flags if flag in flags[name]] for flag in set().union(*flags.values())}


def _did_you_mean(unknown: list[str], known: list[str], owners: dict[str, list[str]]) -> str:
    """' (--format belongs to bertfit export, ...)' for a flag of another command; '; did you mean --epochs?' for
    one close to a ``known`` flag (the command's own: a guess never offers a flag the command lacks)."""
    elsewhere = [f"{flag} belongs to bertfit {' / '.join(owners[flag])}" for flag in unknown
                 if flag in owners and flag not in known]
    guesses = [f"{flag} -> {match}" for flag in unknown if flag not in owners if (match := _close(flag, known))]
    return (f" ({', '.join(elsewhere)}, not to this command)" if elsewhere else "") + \
        (f"; did you mean {', '.join(guesses)}?" if guesses else "")


def _close(flag: str, known: list[str]) -> str | None:
    match = difflib.get_close_matches(flag, sorted(set(known)), n=1, cutoff=0.8)
    return match[0] if match else None


def _not_a_flag(parser: argparse.ArgumentParser, arg: str) -> bool:
    """Whether argparse reads ``arg`` as a flag (a dash first, not a number, no space unless it begins with a
    short flag: ``-hello`` is ``-h ello``) that is none of ``parser``'s (exactly, with =VALUE, or a --prefix)."""
    flags, name = parser._option_string_actions, arg.split("=", 1)[0]
    if (not arg.startswith("-") or arg in ("-", "--") or re.fullmatch(r"-\d+|-\d*\.\d+", arg)
            or (" " in arg and arg[:2] not in flags)):
        return False
    return name not in flags and not (name.startswith("--") and any(flag.startswith(name) for flag in flags))


def _explained(parser: Parser, message: str) -> tuple[str, str]:
    """A command's error and what to do about it: the flag meant, the command a flag belongs to, or how to
    pass a text or path that starts with '-' (after ``--``, or as ./-name)."""
    args = parser.received[:parser.received.index("--")] if "--" in parser.received else parser.received
    dashed = [arg for arg in args if _not_a_flag(parser, arg)]
    expected = re.match(r"argument (\S+): expected one argument", message)
    if expected:  # --out -name: the value read as a flag
        flag = expected.group(1).split("/")[-1]
        value = next((b for a, b in zip(args, args[1:], strict=False) if a == flag and b in dashed), None)
        return message, (f" ({value} starts with '-', so it reads as a flag): write {flag}={value}, or "
                         f"{flag} ./{value} for a path") if value else ""
    known = [option for action in parser._actions for option in action.option_strings]
    owners = _owners(parser.siblings or {})
    pathlike = [arg for arg in dashed if "." in arg or "/" in arg or os.path.exists(arg)]
    strays = [arg for arg in dashed if arg.split("=", 1)[0] not in owners and (arg in pathlike or (
        not arg.startswith("--") and _close(arg.split("=", 1)[0], known) is None))]
    guess = _did_you_mean([arg.split("=", 1)[0] for arg in dashed if arg not in strays], known, owners)
    if not strays:
        return message, guess
    rest = [arg for arg in parser.received if arg not in strays]
    cut = rest.index("--") + 1 if "--" in rest else len(rest)
    example = shlex.join([*parser.prog.split(), *rest[:cut], *([] if "--" in rest else ["--"]), *strays, *rest[cut:]])
    said = f"{', '.join(strays)} {'is' if len(strays) == 1 else 'are'} not a flag of this command"
    if set(strays) & set(pathlike):
        return said, f"{guess}; a path that starts with '-' is written ./{strays[0]} (or goes after --: {example})"
    return said, f"{guess}; a text or path that starts with '-' goes after --: {example} (or a file as ./{strays[0]})"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bertfit", description="The bertfit command: train, evaluate, predict, report, export, "
                                                "serve, distill, compress.")
    parser.add_argument("--version", action="version", version=f"bertfit {__version__}")
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    common.add_argument("--quiet", action="store_true", help="no progress on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    _add_train_parser(commands, common)
    _add_evaluate_parser(commands, common)
    _add_predict_parser(commands, common)
    _add_distill_parser(commands, common)
    _add_compress_parser(commands, common)
    _add_report_parser(commands, common)
    _add_export_parser(commands, common)
    _add_serve_parser(commands, common)
    _add_audit_parser(commands, common)
    _add_tune_parser(commands, common)
    for sub in subcommands(parser).values():
        sub.siblings = subcommands(parser)
    return parser


def _add_train_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    train = commands.add_parser("train", parents=[common], help="fine-tune a classifier on labelled data",
                                description="Fine-tune a classifier; the last stdout line is a JSON summary.")
    train.add_argument("data", nargs="?", help="file, folder of splits, or hf:NAME (default: the demo tickets)")
    _add_config_flags(train, DataConfig)
    _add_config_flags(train, TrainConfig)
    train.add_argument("--out", default="bertfit-model", help="model folder to write (default bertfit-model)")
    train.add_argument("--overwrite", action="store_true",
                       help="replace --out if it exists, and start over from a killed run's checkpoints")
    train.add_argument("--resume", action="store_true",
                       help="continue a killed run from its last checkpoint (.OUT.checkpoints beside --out)")
    audit = train.add_argument_group("label audit (see bertfit audit)")
    audit.add_argument("--audit", action="store_true",
                       help="audit the labels first; audit.csv and a Label audit section go with the model")
    audit.add_argument("--drop-suspects", metavar="K|auto",
                       help="audit, then train without the K strongest suspects among the training rows (auto: "
                            "every flagged one); validation and test are never touched")
    audit.add_argument("--relabel-suspects", metavar="K|auto",
                       help="audit, then give the K strongest suspects among the training rows the audit's "
                            "suggested label (auto: every flagged one); validation and test are never touched")
    audit.add_argument("--audit-folds", type=int, default=5, help="folds for the audit (default 5)")
    audit.add_argument("--audit-method", choices=("embed", "tfidf", "both", "finetune"), default="both",
                       help="the audit's evidence (default both)")
    train.set_defaults(handler="train")


def _add_evaluate_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    evaluate = commands.add_parser("evaluate", parents=[common], help="score a saved model on labelled data")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("data", help="labelled file (or folder: its test split)")
    _add_config_flags(evaluate, DataConfig, only=SCORED_COLUMNS)
    evaluate.add_argument("--batch-size", type=int, default=64)
    _add_backend_flag(evaluate)
    evaluate.set_defaults(handler="evaluate")


def _add_predict_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    predict = commands.add_parser("predict", parents=[common], help="label new texts; prints JSON lines")
    predict.add_argument("model_dir")
    predict.add_argument("texts", nargs="*", default=[], help="texts to label")
    predict.add_argument("--input", help="text-per-line file, CSV/TSV/JSONL/Parquet with a text column, or - for stdin")
    predict.add_argument("--output", help="write here instead of stdout (- is stdout): JSON lines, or a table "
                                            "for .csv, .tsv, .parquet")
    predict.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    _add_config_flags(predict, DataConfig, only=("text_col", "text_pair_col"))
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--threshold", type=float, help="multi-label: one threshold for every label, instead of "
                         "the per-label ones tuned on validation")
    _add_backend_flag(predict)
    ray = predict.add_argument_group("--engine ray: many files on a Ray cluster (pip install 'bertfit[ray]')")
    ray.add_argument("--engine", choices=("local", "ray"), default="local",
                     help="local: this process (default); ray: --input files (a glob, a folder) scored by Ray "
                          "actors into --output FOLDER, one .jsonl per input")
    ray.add_argument("--address", help="an existing Ray cluster: auto, or ray://HOST:PORT (default: start Ray here)")
    ray.add_argument("--workers", type=int, help="actors scoring at once (default: one per CPU of the cluster)")
    ray.add_argument("--resume", action="store_true", help="skip the inputs whose output file exists")
    predict.set_defaults(handler="predict")


def _add_distill_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    distil = commands.add_parser("distill", parents=[common], help="distil a trained model into a smaller student",
                                 description="Train a small student on a teacher's soft targets and the labels.")
    distil.add_argument("teacher_dir", help="a model folder written by bertfit train")
    distil.add_argument("data", help="labelled data (the teacher's columns are used unless given)")
    distil.add_argument("--student", help="the student checkpoint: hub name or local folder")
    distil.add_argument("--student-layers", type=int, help="or: the teacher cut to N layers (every k-th kept)")
    distil.add_argument("--temperature", type=float, default=2.0, help="softens both models' logits (default 2)")
    distil.add_argument("--alpha", type=float, default=0.5,
                        help="weight of the teacher's soft targets against the labels (default 0.5)")
    _add_config_flags(distil, DataConfig)
    _add_config_flags(distil, TrainConfig, skip=("model", "method"))
    distil.add_argument("--out", default="bertfit-student", help="model folder to write (default bertfit-student)")
    distil.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    distil.set_defaults(handler="distill")


def _add_compress_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    squeeze = commands.add_parser("compress", parents=[common], help="distil, then export int8, and compare",
                                  description="Search student layers x export precision on validation for the "
                                              "smallest model within the limits, then score it once on test.")
    squeeze.add_argument("teacher_dir", help="a model folder written by bertfit train")
    squeeze.add_argument("data", help="labelled data (the teacher's columns are used unless given)")
    squeeze.add_argument("--target-size-ratio", type=float, default=7.0,
                         help="how many times smaller the int8 student should be (default 7); a miss is reported")
    squeeze.add_argument("--student", help="the student checkpoint: hub name or local folder")
    squeeze.add_argument("--student-layers", type=int, help="or: only the teacher cut to N layers (default: every "
                         "layer count that can reach --target-size-ratio is searched, the most first)")
    squeeze.add_argument("--temperature", type=float, default=2.0, help="distillation temperature (default 2)")
    squeeze.add_argument("--alpha", type=float, default=0.5, help="weight of the soft targets (default 0.5)")
    squeeze.add_argument("--max-drop", type=float, default=0.01,
                         help="largest drop below the teacher's validation score a kept configuration may cost, as "
                              "a share (default 0.01)")
    squeeze.add_argument("--quantize", choices=QUANTIZE_CHOICES,
                         help="only this export precision: int8, or int8-emb4 (embedding tables in 4 bits); default: "
                              "both are searched")
    _add_config_flags(squeeze, DataConfig)
    _add_config_flags(squeeze, TrainConfig, skip=("model", "method"))
    squeeze.add_argument("--out", help="folder to write student/ and student-QUANTIZE/ (default TEACHER-compressed)")
    squeeze.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    squeeze.set_defaults(handler="compress")


def _add_report_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    report = commands.add_parser("report", parents=[common], help="write a self-contained HTML report of a model",
                                 description="Write one HTML file: training curves, test results, the run's facts.")
    report.add_argument("model_dir")
    report.add_argument("--out", help="HTML file to write (default: MODEL_DIR/report.html, replaced if there)")
    report.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    report.add_argument("--data", help="labelled file to score instead of the folder's test.jsonl")
    _add_config_flags(report, DataConfig, only=SCORED_COLUMNS)  # the --data file's columns
    report.set_defaults(handler="report")


def _add_backend_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="torch (model.safetensors) | onnx (model.onnx from bertfit export, on onnxruntime) | "
                             "auto: onnx when the folder has model.onnx and onnxruntime is installed (default auto)")


def _add_export_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    export = commands.add_parser("export", parents=[common], help="export a model to ONNX (optionally int8), checked",
                                 description="Export to ONNX; refused (nothing written) when the export scores more "
                                             "than --max-drop below the PyTorch model. The last stdout line is JSON.")
    export.add_argument("model_dir")
    export.add_argument("--format", default="onnx", choices=("onnx",), help="export format (default onnx)")
    export.add_argument("--quantize", choices=QUANTIZE_CHOICES, help="int8: dynamic quantization of the weights "
                        "(onnxruntime), smaller and usually faster on CPU; int8-emb4: also the embedding tables "
                        "in 4 bits, smaller still")
    export.add_argument("--out", help="folder to write (default: MODEL_DIR-onnx, or MODEL_DIR-onnx-QUANTIZE)")
    export.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    export.add_argument("--data", help="labelled file to check the export on, instead of MODEL_DIR/validation.jsonl")
    _add_config_flags(export, DataConfig, only=SCORED_COLUMNS)  # the --data file's columns
    export.add_argument("--no-fuse", dest="fuse", action="store_false",
                        help="plain ONNX operators only, for runtimes other than onnxruntime (default: a BERT "
                             "model's attention, embeddings and layer norms in onnxruntime's fused operators)")
    export.add_argument("--max-drop", type=float, default=0.01, help="refuse when the main metric (accuracy; micro "
                        "F1 for multi-label) drops more than this below PyTorch's (default 0.01)")
    export.add_argument("--batch-size", type=int, default=64)
    export.set_defaults(handler="export")


def _add_serve_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[common], help="serve a model over HTTP (FastAPI + uvicorn)",
                                description="Serve POST /predict, GET /health, GET /info, docs at /docs (plain HTML, "
                                            "works offline) and a try-it page at /. Concurrent requests are "
                                            "batched together.")
    serve.add_argument("model_dir")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000,
                       help="port (default 8000; 0: a free one, named in the 'serving ... on' line)")
    serve.add_argument("--workers", type=int, default=1, help="server processes, each with its own model (default 1)")
    _add_backend_flag(serve)
    _add_config_flags(serve, ServeConfig)
    serve.set_defaults(handler="serve")


def _add_audit_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    audit = commands.add_parser("audit", parents=[common], help="find rows whose label is probably wrong",
                                description="Score every row out of fold (no row by a model that saw it), then "
                                            "flag the rows confident learning says are mislabelled; also "
                                            "near-duplicates labelled apart and outliers. The last stdout line "
                                            "is JSON.")
    audit.add_argument("data", help="labelled data, as bertfit train reads it")
    _add_config_flags(audit, DataConfig)
    audit.add_argument("--folds", type=int, default=5, help="folds for the out-of-fold scores (default 5)")
    audit.add_argument("--method", choices=("embed", "tfidf", "both", "finetune"), default="both",
                       help="the evidence: logistic regression on the embedded model's sentence embeddings, on "
                            "TF-IDF, or the mean of both (default both: fast); finetune: a fine-tuned model per "
                            "fold (the top 2 layers; slower, fewer false alarms)")
    audit.add_argument("--model", help="the model for --method embed, both (sentence embeddings) or finetune "
                                       "(default: the embedded all-MiniLM-L6-v2)")
    audit.add_argument("--out", default="audit", help="folder for audit.csv and audit.html (default audit)")
    audit.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    audit.set_defaults(handler="audit")


def _add_tune_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    tune = commands.add_parser("tune", parents=[common], help="search training settings in a time budget (Optuna)",
                               description="Train trials with settings chosen by an Optuna study (TPE, seeded; "
                                           "the first trial is the default recipe), each judged on validation "
                                           "and pruned when it trails; the best trial's model is saved as it "
                                           "was trained and its test split scored once. Training flags fix a "
                                           "setting's starting point. The last stdout line is JSON.")
    tune.add_argument("data", help="labelled data, as bertfit train reads it")
    _add_config_flags(tune, DataConfig)
    _add_config_flags(tune, TrainConfig)
    tune.add_argument("--budget", default="30m", help="time for the whole search: 90s, 30m, 2h (default 30m; a "
                                                      "bare number is minutes); a trial running past it is stopped")
    tune.add_argument("--trials", type=int, help="stop after this many trials in the study (default: until the budget)")
    tune.add_argument("--out", default="bertfit-tuned", help="model folder for the winner (default bertfit-tuned); "
                                                             "the study's journal file goes beside it")
    tune.add_argument("--storage", help="Optuna storage shared by workers: postgresql://..., mysql://..., or "
                                        "journal:PATH on a shared disk (default: OUT.study.journal beside --out)")
    tune.add_argument("--study", default="bertfit", help="study name in the storage (default bertfit)")
    tune.add_argument("--worker", action="store_true", help="join the study and run trials until the budget; save "
                                                            "nothing (the process without --worker saves the winner)")
    tune.add_argument("--resume", action="store_true", help="continue the study in the journal beside --out")
    tune.add_argument("--overwrite", action="store_true", help="replace --out and start the study over")
    tune.set_defaults(handler="tune")

