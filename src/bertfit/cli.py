"""The bertfit command: train, evaluate, predict, report, export, serve, distill, compress.

Flags are the config fields with dashes. Human progress goes to stderr, results for machines
(JSON, JSON lines) to stdout. A user error prints one line ``error: ...`` and exits 2, a runtime
failure exits 1, and ``--debug`` shows the traceback. The work itself is done by the library.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm.contrib.logging import logging_redirect_tqdm

from bertfit import __version__
from bertfit.config import QUANTIZE_CHOICES, DataConfig, ServeConfig, TrainConfig, value_type
from bertfit.errors import BertfitError, DataError, UsageError
from bertfit.staging import WRITE_FIXES, check_file, refuse_inputs, staged_file

log = logging.getLogger("bertfit")

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


def _given(args: argparse.Namespace, *classes: type) -> dict[str, Any]:
    """The config flags the user gave (unset ones keep the configs' defaults)."""
    return {f.name: getattr(args, f.name) for cls in classes for f in dataclasses.fields(cls)
            if getattr(args, f.name, None) is not None}


class Parser(argparse.ArgumentParser):
    """argparse with bertfit's error line: one ``error: ...`` line naming the fix, and a guess for a misspelled flag."""

    def error(self, message: str) -> None:  # type: ignore[override]
        guess = _did_you_mean(self, message)
        raise UsageError(f"{self.prog}: {message}{guess}; see {self.prog} --help")


def _did_you_mean(parser: argparse.ArgumentParser, message: str) -> str:
    """'; did you mean --epochs?' for an unrecognized flag close to a known one of the command given."""
    import difflib
    import re

    unknown = re.findall(r"(--?[\w-]+)", message.partition("unrecognized arguments:")[2])
    if not unknown:
        return ""
    known = [option for action in parser._actions for option in action.option_strings]
    command = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if command is not None:  # the flag was given to a command: its flags are the ones to match
        known += [option for sub in command.choices.values() for action in sub._actions
                  for option in action.option_strings]
    guesses = [f"{flag} -> {match[0]}" for flag in unknown
               if (match := difflib.get_close_matches(flag, sorted(set(known)), n=1, cutoff=0.6))]
    return f"; did you mean {', '.join(guesses)}?" if guesses else ""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bertfit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"bertfit {__version__}")
    common = Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    common.add_argument("--quiet", action="store_true", help="no progress on stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

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
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", parents=[common], help="score a saved model on labelled data")
    evaluate.add_argument("model_dir")
    evaluate.add_argument("data", help="labelled file (or folder: its test split)")
    _add_config_flags(evaluate, DataConfig, only=("text_col", "label_col", "text_pair_col", "label_sep"))
    evaluate.add_argument("--batch-size", type=int, default=64)
    _add_backend_flag(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", parents=[common], help="label new texts; prints JSON lines")
    predict.add_argument("model_dir")
    predict.add_argument("texts", nargs="*", help="texts to label")
    predict.add_argument("--input", help="text-per-line file, CSV/TSV/JSONL/Parquet with a text column, or - for stdin")
    predict.add_argument("--output", help="write JSON lines here instead of stdout")
    predict.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    _add_config_flags(predict, DataConfig, only=("text_col", "text_pair_col"))
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--threshold", type=float, help="multi-label: one threshold for every label, instead of "
                         "the per-label ones tuned on validation")
    _add_backend_flag(predict)
    predict.set_defaults(handler=cmd_predict)

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
    _add_config_flags(distil, TrainConfig, skip=("model",))
    distil.add_argument("--out", default="bertfit-student", help="model folder to write (default bertfit-student)")
    distil.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    distil.set_defaults(handler=cmd_distill)

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
    _add_config_flags(squeeze, TrainConfig, skip=("model",))
    squeeze.add_argument("--out", help="folder to write student/ and student-QUANTIZE/ (default TEACHER-compressed)")
    squeeze.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    squeeze.set_defaults(handler=cmd_compress)

    report = commands.add_parser("report", parents=[common], help="write a self-contained HTML report of a model",
                                 description="Write one HTML file: training curves, test results, the run's facts.")
    report.add_argument("model_dir")
    report.add_argument("--out", help="HTML file to write (default: MODEL_DIR/report.html, replaced if there)")
    report.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    report.add_argument("--data", help="labelled file to score instead of the folder's test.jsonl")
    report.set_defaults(handler=cmd_report)
    _add_export_parser(commands, common)
    _add_serve_parser(commands, common)
    return parser


# -- export and serve (issue 5) ---------------------------------------------------------------------


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
    export.add_argument("--data", help="labelled file to check the export on, instead of MODEL_DIR/test.jsonl")
    export.add_argument("--max-drop", type=float, default=0.01, help="refuse when the main metric (accuracy; micro "
                        "F1 for multi-label) drops more than this below PyTorch's (default 0.01)")
    export.add_argument("--batch-size", type=int, default=64)
    export.set_defaults(handler=cmd_export)


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
    serve.set_defaults(handler=cmd_serve)


def cmd_export(args: argparse.Namespace) -> int:
    from bertfit.export.onnx import export

    result = export(args.model_dir, args.out, format=args.format, quantize=args.quantize, data=args.data,
                    max_drop=args.max_drop, overwrite=args.overwrite, batch_size=args.batch_size)
    check = result.check
    log.info("check on %d rows of %s: %s %.4f (PyTorch) vs %.4f (%s), drop %.4f (allowed %g); decisions agree "
             "on %.1f%%, largest logit difference %.2g", check["rows"], check["data"], check["metric"], check["torch"],
             check["onnx"], args.quantize or "ONNX", check["drop"], args.max_drop,
             100 * check["agreement"], check["max_abs_logit_diff"])
    log.info("size: %.1f MB (PyTorch weights) -> %.1f MB (model.onnx%s)", result.size_before / 1e6,
             result.size_after / 1e6, f", {args.quantize}" if args.quantize else "")
    log.info("saved to %s", result.model_dir)
    print(json.dumps(result.summary()))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bertfit.serving.app import serve

    config = ServeConfig(**_given(args, ServeConfig))
    serve(args.model_dir, args.host, args.port, args.workers, args.backend, config,
          log_level="debug" if args.debug else "warning" if args.quiet else "info")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from bertfit.training.run import train

    settings = _config_settings(args)
    data = args.data
    if data is None:
        data = demo_data_path()
        log.info("no DATA given: training on the embedded demo set (IT support tickets by tier), %s", data)
    result = train(data, args.out, overwrite=args.overwrite, resume=args.resume, progress=not args.quiet,
                   **settings)
    if result is None:
        return 0  # torchrun / accelerate launch: not the main process, which reports and saves
    test = result.test
    auc = f"{test['auc']:.3f}" if test.get("auc") is not None else "n/a"
    log.info("best epoch %d of %d; %.0f s of training", result.best_epoch, len(result.history), result.train_seconds)
    for note in result.notes:
        log.warning(note)
    if "accuracy" in test:
        log.info("test (scored once, %d rows): accuracy %.3f, F1 macro %.3f, AUC %s", test["rows"],
                 test["accuracy"], test["f1_macro"], auc)
    else:
        log.info("test (scored once, %d rows): F1 micro %.3f, F1 macro %.3f, subset accuracy %.3f, AUC %s",
                 test["rows"], test["f1_micro"], test["f1_macro"], test["subset_accuracy"], auc)
    calibration = result.classifier.record.calibration
    if calibration is not None and calibration.test_ece_before is not None:
        log.info("calibration: temperature %.2f; test expected calibration error %.4f before, %.4f after",
                 calibration.temperature, calibration.test_ece_before, calibration.test_ece_after)
    log.info("saved to %s", result.model_dir)
    print(json.dumps(result.summary()))
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    from bertfit.export.compress import compress

    settings = _config_settings(args)
    result = compress(args.teacher_dir, args.data, args.out, target_size_ratio=args.target_size_ratio,
                      student=args.student, student_layers=args.student_layers, temperature=args.temperature,
                      alpha=args.alpha, max_drop=args.max_drop, quantize=args.quantize, overwrite=args.overwrite,
                      progress=not args.quiet,
                      **settings)
    print(result.table(), file=sys.stderr)
    print(json.dumps(result.summary()))
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from bertfit.training.distill import distill

    settings = _config_settings(args)
    result = distill(args.teacher_dir, args.data, args.out, student=args.student, student_layers=args.student_layers,
                     temperature=args.temperature, alpha=args.alpha, overwrite=args.overwrite,
                     progress=not args.quiet, **settings)
    if result is None:
        return 0  # torchrun / accelerate launch: not the main process, which reports and saves
    teacher = result.classifier.record.distilled["teacher_test"]
    name = "accuracy" if "accuracy" in result.test else "f1_micro"
    log.info("test %s: teacher %.4f, student %.4f (%d of the teacher's parameters)", name, teacher[name],
             result.test[name], result.classifier.record.total_parameters)
    log.info("saved to %s", result.model_dir)
    summary = result.summary()
    summary["teacher_test"] = {k: teacher[k] for k in summary["test"] if k in teacher}
    print(json.dumps(summary))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bertfit.data.cleaning import load_labelled
    from bertfit.model import TextClassifier

    _check_batch_size(args.batch_size)
    classifier = TextClassifier.from_pretrained(args.model_dir, backend=args.backend)
    trained_with = (classifier.record.text_col, classifier.record.label_col)
    pair_col = args.text_pair_col or classifier.text_pair_col
    rows = load_labelled(args.data, args.text_col, args.label_col, preferred=trained_with,
                         pair_col=pair_col, label_sep=args.label_sep or classifier.record.label_sep,
                         multi_label=classifier.multi_label)
    pairs = rows["text_pair"].tolist() if pair_col else None
    metrics = classifier.evaluate(rows["text"].tolist(), rows["label"].tolist(), args.batch_size,
                                  progress=not args.quiet, pairs=pairs)
    metrics["labels"] = list(classifier.labels.names)
    print(json.dumps(metrics))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bertfit.reporting.report import write_report

    path = write_report(args.model_dir, args.out, args.data, progress=not args.quiet, overwrite=args.overwrite)
    print(json.dumps({"report": str(path)}))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from bertfit.data.cleaning import iter_texts
    from bertfit.model import TextClassifier
    from bertfit.progress import progress_bar

    if args.texts and args.input:
        raise UsageError("pass texts as arguments or --input FILE, not both")
    if not args.texts and not args.input:
        raise UsageError("no texts to predict; pass TEXT ..., --input FILE, or --input - to read stdin")
    _check_batch_size(args.batch_size)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.output is not None:  # checked before the model loads or anything is scored
        refuse_inputs(Path(args.output), "--output", {"the input file": args.input, "the model folder": args.model_dir})
        check_file(Path(args.output), args.overwrite)
    classifier = TextClassifier.from_pretrained(args.model_dir, backend=args.backend)
    pair_col = args.text_pair_col or classifier.text_pair_col
    if pair_col and args.texts:
        raise UsageError("this model classifies sentence pairs; pass --input FILE with both columns, or "
                         "--input - with 'first<TAB>second' lines")
    if args.threshold is not None and not classifier.multi_label:
        raise UsageError("--threshold applies to multi-label models; this one picks the most likely label")
    chunks = iter([args.texts] if args.texts else iter_texts(args.input, args.text_col, args.batch_size * 8,
                                                             pair_col=pair_col))
    first = next(chunks, None)  # a file that cannot be read fails here, before a progress bar is drawn
    if first is None:
        where = "standard input (--input -)" if args.input == "-" else args.input
        raise DataError(f"no texts found in {where}; pipe in one text per line, or pass --input FILE or texts "
                        "as arguments")
    with contextlib.ExitStack() as stack:
        sink = sys.stdout if args.output is None else stack.enter_context(staged_file(Path(args.output)))
        bar = stack.enter_context(progress_bar(unit=" texts", disable=args.quiet))
        for chunk in itertools.chain([first], chunks):
            texts, pairs = (list(chunk), None) if not pair_col else map(list, zip(*chunk, strict=True))
            for record in classifier.predict_records(texts, args.batch_size, pairs=pairs, threshold=args.threshold):
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            bar.update(len(chunk))
    return 0


def _config_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The DataConfig / TrainConfig flags the user gave (unset ones keep the configs' defaults)."""
    return _given(args, DataConfig, TrainConfig)


def _check_batch_size(value: int) -> None:
    if value < 1:
        raise UsageError(f"--batch-size must be a positive whole number, got {value}")


def _setup_logging(debug: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("bertfit")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    root.propagate = False
    # Library-internal bars (e.g. "Writing model shards") say nothing useful; Trainer's own bars stay.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if not debug:
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import warnings

        warnings.filterwarnings("ignore")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:  # a flag or argument argparse could not take
        _error(str(err))
        return err.exit_code
    if os.environ.get("RANK", "0") != "0":
        args.quiet = True  # torchrun / accelerate launch: the main process (rank 0) alone shows progress
    _setup_logging(args.debug, args.quiet)
    try:
        # Log lines go through tqdm.write, so progress bars do not draw over them.
        with logging_redirect_tqdm(loggers=[logging.getLogger("bertfit")]):
            return args.handler(args)
    except BertfitError as err:
        if args.debug:
            raise
        _error(str(err))
        return err.exit_code
    except KeyboardInterrupt:
        _error("interrupted; nothing was saved")
        return 130
    except BrokenPipeError:
        # The reader went away (`bertfit predict ... | head -1`): stop quietly, as Unix tools do. Later writes,
        # the interpreter's last flush included, go nowhere instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool the pipe ended
    except OSError as err:  # the OS refused (a full disk, no rights): what and where, not a traceback
        if args.debug:
            raise
        where = f" ({err.filename})" if err.filename else ""
        _error(f"{err.strerror or err}{where}; nothing was saved: "
               f"{WRITE_FIXES.get(err.errno, 'check the path and try again')}")
        return 1
    except Exception as err:  # the last line of defence: one line, not a traceback
        if args.debug:
            raise
        _error(f"unexpected {type(err).__name__}: {err} (run again with --debug for the traceback)")
        return 1


def _error(message: str) -> None:
    """The one ``error:`` line, on a line of its own: progress bars a failure left open are ended first."""
    from tqdm import tqdm

    bars = list(tqdm._instances)  # every live bar, Trainer's included (tqdm keeps them for nesting)
    for bar in bars:
        bar.close()
    print(f"{chr(10) if bars else ''}error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
