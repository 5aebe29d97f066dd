"""What each ``bertfit`` command does with its parsed arguments: call the library, print the result.

Human progress goes to stderr, results for machines (JSON, JSON lines) to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import sys
from pathlib import Path
from typing import Any

from bertfit.cli.output import check_suffix, print_result, record_sink
from bertfit.cli.parser import SCORED_COLUMNS, demo_data_path, given
from bertfit.config import DataConfig, ServeConfig, TrainConfig
from bertfit.errors import DataError, UsageError
from bertfit.export import compressed_out, onnx_out
from bertfit.staging import check_file, refuse_inputs

log = logging.getLogger("bertfit")


def cmd_export(args: argparse.Namespace) -> int:
    from bertfit.export.onnx import export

    result = export(args.model_dir, args.out, format=args.format, quantize=args.quantize, data=args.data,
                    max_drop=args.max_drop, overwrite=args.overwrite, batch_size=args.batch_size, fuse=args.fuse,
                    **_columns(args))
    check = result.check
    log.info("check on %d rows of %s: %s %.4f (PyTorch) vs %.4f (%s), drop %.4f (allowed %g); decisions agree "
             "on %.1f%%, largest logit difference %.2g", check["rows"], check["data"], check["metric"], check["torch"],
             check["onnx"], args.quantize or "ONNX", check["drop"], args.max_drop,
             100 * check["agreement"], check["max_abs_logit_diff"])
    log.info("size: %.1f MB (PyTorch weights) -> %.1f MB (model.onnx%s)", result.size_before / 1e6,
             result.size_after / 1e6, f", {args.quantize}" if args.quantize else "")
    log.info("saved to %s", result.model_dir)
    print_result(result.summary(), f"the export in {result.model_dir}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from bertfit.serving.app import serve

    config = ServeConfig(**given(args, ServeConfig))
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
    screen = None
    if args.audit or args.drop_suspects is not None or args.relabel_suspects is not None:
        from bertfit.auditing.screen import audit_screen

        screen = audit_screen(folds=args.audit_folds, method=args.audit_method, drop=args.drop_suspects,
                              relabel=args.relabel_suspects, seed=settings.get("seed", DataConfig().seed),
                              progress=not args.quiet)
    result = train(data, args.out, overwrite=args.overwrite, resume=args.resume, progress=not args.quiet,
                   screen=screen, **settings)
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
    print_result(result.summary(), f"the model in {result.model_dir}")
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
    print_result(result.summary(), f"the compressed models in {result.out}")
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
    print_result(summary, f"the student in {result.model_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from bertfit.model import TextClassifier
    from bertfit.reporting.report import read_labelled

    _check_batch_size(args.batch_size)
    classifier = TextClassifier.from_pretrained(args.model_dir, backend=args.backend)
    rows = read_labelled(args.data, classifier.record, **_columns(args))
    metrics = classifier.evaluate(rows.texts, rows.labels, args.batch_size, progress=not args.quiet, pairs=rows.pairs)
    metrics["labels"] = list(classifier.labels.names)
    print_result(metrics)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bertfit.reporting.report import write_report

    path = write_report(args.model_dir, args.out, args.data, progress=not args.quiet, overwrite=args.overwrite,
                        **_columns(args))
    print_result({"report": str(path)}, f"the report {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from bertfit.data.reading import iter_texts
    from bertfit.model import TextClassifier
    from bertfit.progress import progress_bar

    if args.engine == "ray":
        return _predict_on_ray(args)
    if args.output == "-":  # the Unix way to say standard output
        args.output = None
    if args.resume or args.address or args.workers is not None:
        raise UsageError("--resume, --address and --workers go with --engine ray")
    if args.texts and args.input:
        raise UsageError("pass texts as arguments or --input FILE, not both")
    if not args.texts and not args.input:
        raise UsageError("no texts to predict; pass TEXT ..., --input FILE, or --input - to read stdin")
    _check_batch_size(args.batch_size)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.output is not None:  # checked before the model loads or anything is scored
        refuse_inputs(Path(args.output), "--output", {"the input file": args.input, "the model folder": args.model_dir},
                      sealed=("the model folder",))
        check_file(Path(args.output), args.overwrite, instead="print to standard output")
        check_suffix(Path(args.output))
    classifier = TextClassifier.from_pretrained(args.model_dir, backend=args.backend)
    pair_col = args.text_pair_col or classifier.text_pair_col
    if pair_col and args.texts:
        raise UsageError("this model classifies sentence pairs; pass --input FILE with both columns, or "
                         "--input - with 'first<TAB>second' lines")
    if args.threshold is not None and not classifier.multi_label:
        raise UsageError("--threshold applies to multi-label models; this one picks the most likely label")
    chunks = iter([args.texts] if args.texts else iter_texts(args.input, args.text_col, args.batch_size * 8,
                                                             pair_col=args.text_pair_col,
                                                             saved_col=classifier.record.text_col,
                                                             saved_pair_col=classifier.text_pair_col))
    first = next(chunks, None)  # a file that cannot be read fails here, before a progress bar is drawn
    if first is None:
        where = "standard input (--input -)" if args.input == "-" else args.input
        raise DataError(f"no texts found in {where}; pipe in one text per line, or pass --input FILE or texts "
                        "as arguments")
    with contextlib.ExitStack() as stack:
        write = stack.enter_context(record_sink(None if args.output is None else Path(args.output),
                                                list(classifier.labels.names)))
        bar = stack.enter_context(progress_bar(unit=" texts", disable=args.quiet))
        for chunk in itertools.chain([first], chunks):
            texts, pairs = (list(chunk), None) if not pair_col else map(list, zip(*chunk, strict=True))
            write(list(classifier.predict_records(texts, args.batch_size, pairs=pairs, threshold=args.threshold)))
            bar.update(len(chunk))
    return 0


def _predict_on_ray(args: argparse.Namespace) -> int:
    from bertfit.batch.ray_engine import predict_files

    if args.texts or not args.input or args.input == "-" or not args.output or args.output == "-":
        raise UsageError("--engine ray scores files: pass --input 'data/*.parquet' (a glob, a file or a folder) and "
                         "--output FOLDER, no texts as arguments and no stdin")
    _check_batch_size(args.batch_size)
    if args.threshold is not None and not 0 < args.threshold < 1:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be a positive whole number, got {args.workers}")
    summary = predict_files(args.model_dir, args.input, args.output, address=args.address, resume=args.resume,
                            overwrite=args.overwrite, text_col=args.text_col, pair_col=args.text_pair_col,
                            workers=args.workers, batch_size=args.batch_size, backend=args.backend,
                            threshold=args.threshold)
    print_result(summary, f"the predictions in {args.output}")
    return 0


def output_path(args: argparse.Namespace) -> Path | None:
    """Where the command writes (its --out or --output, else the default it writes to); None: nowhere, or stdout."""
    given_path = getattr(args, "out", None) or getattr(args, "output", None)
    if given_path not in (None, "-"):
        return Path(given_path)
    if args.handler == "report":
        return Path(args.model_dir) / "report.html"
    if args.handler == "export":
        return onnx_out(args.model_dir, args.quantize)
    if args.handler == "compress":
        return compressed_out(args.teacher_dir)
    return None


def _config_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The DataConfig / TrainConfig flags the user gave (unset ones keep the configs' defaults)."""
    return given(args, DataConfig, TrainConfig)


def _columns(args: argparse.Namespace) -> dict[str, str | None]:
    """How the --data file is read: the column flags (None: the model's own, else the obvious one)."""
    return {name: getattr(args, name) for name in SCORED_COLUMNS}


def _check_batch_size(value: int) -> None:
    if value < 1:
        raise UsageError(f"--batch-size must be a positive whole number, got {value}")


def cmd_audit(args: argparse.Namespace) -> int:
    from bertfit.auditing.run import audit

    result = audit(args.data, args.out, folds=args.folds, method=args.method, overwrite=args.overwrite,
                   progress=not args.quiet, model=args.model, **given(args, DataConfig))
    for split, counts in result.per_split.items():
        log.info("%s: %d of %d rows flagged as probably mislabelled (%.1f%%, 95%% interval %.1f%% to %.1f%%)",
                 split, counts["flagged"], counts["rows"], 100 * counts["error_rate"],
                 100 * counts["interval_95"][0], 100 * counts["interval_95"][1])
    for (given_label, suggested), count in list(result.pairs.items())[:5]:
        log.info("  given %s, suggested %s: %d", given_label, suggested, count)
    log.info("near-duplicates labelled apart: %d rows; outliers for their label: %d", result.duplicates,
             result.outliers)
    log.info("written: %s/audit.csv and audit.html", result.out)
    print_result(result.summary(), f"the audit in {result.out}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from bertfit.tuning.run import tune

    result = tune(args.data, args.out, budget=args.budget, trials=args.trials, storage=args.storage,
                  study_name=args.study, worker=args.worker, resume=args.resume, overwrite=args.overwrite,
                  progress=not args.quiet, **_config_settings(args))
    if result.trained is not None:
        test = result.trained.test
        key = "accuracy" if "accuracy" in test else "f1_micro"
        log.info("winner: trial %s, %s; test (scored once, %d rows): %s %.3f", result.study["best_trial"],
                 result.study["best_params"], test["rows"], key, test[key])
        log.info("saved to %s", result.trained.model_dir)
    saved = f"the winner in {result.trained.model_dir}" if result.trained is not None else None
    print_result(result.summary(), saved)
    return 0

