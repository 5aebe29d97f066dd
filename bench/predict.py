"""Prediction speed and accuracy of one model: three transformers pipeline settings against bertfit's three paths.

    python bench/predict.py MODEL_DIR [MODEL_DIR ...]
    python bench/predict.py phishing-model banking77-model --rows 1000 --batch-size 32 --repeats 5
    python bench/predict.py phishing-model --engine ray   # files on Ray against plain predict (pip install ray)

--engine ray: four Parquet files of the test split (repeated up to --ray-rows), scored by `predict
--engine ray` and by plain predict file by file, and the same for their first 64 rows, which take
the start alone (Ray's actors loading the model: seconds); per repeat, the rows past those 64 over
the seconds past theirs is the rate once running, what a long job gets. Both rates are printed.

Paths, all on the same model and the same rows, in one process:

  pipeline, batch 1          transformers.pipeline("text-classification", model=MODEL_DIR), one text at
                             a time (no padding at all)
  pipeline, batch 64,        the texts sorted by their token count (the pipeline's own tokenizer),
    sorted by length         predicted in batches, the answers put back in the given order; the sorting
                             is timed with the prediction
  pipeline, batch 64,        batches in the order given (on mixed lengths mostly padding)
    given order
  bertfit torch              bertfit's TextClassifier on PyTorch (it batches texts of similar length)
  bertfit ONNX fp32          `bertfit export` to ONNX, run on onnxruntime (a BERT model's attention in
                             onnxruntime's fused operators)
  bertfit ONNX int8          `bertfit export --quantize int8` (dynamic int8 weights)
  ..., --no-fuse             the same two exported with plain ONNX operators (dynamo's graph)

Every pipeline truncates at the model's max length, as bertfit does. The three pipeline settings are
what a careful user would try; the speed-up column is over the fastest of them (by median), named in
the output, and the targets are checked against it: bertfit fp32 (the faster of torch and ONNX fp32)
at least 1.5x, ONNX int8 at least 2x. Multi-label and sentence-pair models skip the pipeline; their
speed-up is over bertfit torch and no target is checked.

Timing: each path predicts the rows once untimed (on a few texts, a warm-up), then every path predicts
all the rows --repeats times, the paths in alternating order (forwards, backwards, forwards ...: see
bench/timing.py). Printed per path: the median texts/s with the min-max, the accuracy, the speed-up
(ratio of medians) and the weights' size, as a Markdown table, after the commit and the machine.

Rows: the test splits of ../shared/datasets/phishing and banking77 (not part of this repository;
skipped when absent), each for the model folder whose labels are that data set's (a model trained
on phishing scores phishing); a folder that matches neither is scored on its own test.jsonl. Both
exports are written to a temporary folder and never refused here (--max-drop 1): the table shows what
they score.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from timing import SHARED, alternate, measured_on, quiet, spread, summary

HERE = Path(__file__).resolve().parent
DATASETS = ("phishing", "banking77")
WARM_UP = 8  # texts in each path's untimed warm-up call
TARGETS = {"fp32": 1.5, "int8": 2.0}  # bertfit's path over the fastest pipeline setting, ratio of median texts/s
START_ROWS = 64  # --engine ray: the run whose seconds are (nearly) the start alone

Predict = Callable[[list[str], list[str] | None], list]


def rows_for(model_dir: Path, names: list[str], limit: int | None) -> list[tuple[str, Path, list, list, list | None]]:
    """(name, file, texts, labels, pairs) for each data set whose labels are the model's, else its test.jsonl."""
    from bertfit.data.reading import load_labelled
    from bertfit.folder import read_meta

    meta = read_meta(model_dir)  # None for a plain Hugging Face folder
    wanted = {str(label) for label in (meta.labels if meta else [])}
    found = []
    for name in names:
        folder = SHARED / name
        files = sorted(folder.glob("test.*")) if folder.is_dir() else []
        if not files:
            print(f"{name}: skipped, no test split in {folder}", file=sys.stderr)
            continue
        rows = load_labelled(files[0], None, None)
        if {str(label) for label in rows["label"]} != wanted:
            print(f"{name}: skipped for {model_dir}: its labels are not this model's", file=sys.stderr)
            continue
        found.append((name, files[0], rows))
    if not found and (model_dir / "test.jsonl").exists():
        pair = meta.text_pair_col if meta else None
        rows = load_labelled(model_dir / "test.jsonl", "text", "label", pair_col="text_pair" if pair else None,
                             multi_label=meta is not None and meta.task == "multi_label")
        found.append((f"{model_dir.name} test.jsonl", model_dir / "test.jsonl", rows))
    out = []
    for name, file, rows in found:
        rows = rows.iloc[:limit] if limit else rows
        pairs = rows["text_pair"].tolist() if "text_pair" in rows else None
        out.append((name, file, rows["text"].tolist(), rows["label"].tolist(), pairs))
    return out


def pipelines(model_dir: Path, classifier, batch_size: int) -> dict[str, Predict]:
    """The three pipeline settings on the same folder, each answering label names in the given order."""
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model_dir), device=-1)
    max_length = classifier.max_length

    def run(texts: list[str], size: int) -> list[str]:
        return [out["label"] for out in pipe(texts, batch_size=size, truncation=True, max_length=max_length)]

    def length_sorted(texts: list[str], _pairs=None) -> list[str]:
        # (rows,) token counts as the pipeline's tokenizer will cut them; shortest first, so a batch pads little
        lengths = [len(ids) for ids in pipe.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        answers = [""] * len(texts)
        for i, label in zip(order, run([texts[i] for i in order], batch_size), strict=True):
            answers[i] = label
        return answers

    return {"pipeline, batch 1": lambda texts, _pairs=None: run(texts, 1),
            f"pipeline, batch {batch_size}, sorted by length": length_sorted,
            f"pipeline, batch {batch_size}, given order": lambda texts, _pairs=None: run(texts, batch_size)}


def measure(paths: dict[str, Predict], texts: list[str], pairs: list[str] | None, repeats: int) -> dict[str, dict]:
    """Per path: texts/s of each repeat and the first repeat's predictions (warm-up first, then alternating)."""
    for predict in paths.values():
        predict(texts[:WARM_UP], pairs[:WARM_UP] if pairs is not None else None)
    runs = {name: {"texts_per_s": [], "predicted": None} for name in paths}
    for repeat, name in alternate(list(paths), repeats):
        print(f"  repeat {repeat + 1}/{repeats}: {name} ...", file=sys.stderr)
        started = time.perf_counter()
        predicted = paths[name](texts, pairs)
        runs[name]["texts_per_s"].append(len(texts) / (time.perf_counter() - started))
        if runs[name]["predicted"] is None:
            runs[name]["predicted"] = predicted
    return runs


def score(classifier, predicted: list, labels: list) -> float:
    """Accuracy (single-label) or subset accuracy (multi-label: the whole label set right)."""
    if classifier.multi_label:
        return sum(set(p) == set(t) for p, t in zip(predicted, labels, strict=True)) / len(labels)
    return sum(str(p) == str(t) for p, t in zip(predicted, labels, strict=True)) / len(labels)


def bench_model(model_dir: Path, names: list[str], limit: int | None, batch_size: int, repeats: int,
                workdir: Path) -> list[dict]:
    from bertfit.export.onnx import export
    from bertfit.model import TextClassifier

    datasets = rows_for(model_dir, names, limit)
    if not datasets:
        print(f"{model_dir}: nothing to score (no matching data set and no test.jsonl)", file=sys.stderr)
        return []
    torch_model = TextClassifier.from_pretrained(model_dir, backend="torch")
    results = []
    for name, _, texts, labels, pairs in datasets:
        # The export checks itself; here on up to 200 of the rows, under the model's own column names.
        meta = torch_model.meta
        columns = (meta.get("text_col") or "text", meta.get("label_col") or "label", meta.get("text_pair_col"))
        check = workdir / f"{model_dir.name}-{len(results)}-check.jsonl"
        with check.open("w", encoding="utf-8") as sink:
            for i in range(min(200, len(texts))):
                row = {columns[0]: texts[i], columns[1]: labels[i], **({columns[2]: pairs[i]} if pairs else {})}
                sink.write(json.dumps(row, default=list) + "\n")
        paths: dict[str, Predict] = {}
        kinds = {}
        size = {}
        if torch_model.multi_label or pairs is not None:
            why = "a multi-label model" if torch_model.multi_label else "sentence pairs"
            print(f"{model_dir.name}, {name}: no pipeline reference ({why})", file=sys.stderr)
        else:
            for path, predict in pipelines(model_dir, torch_model, batch_size).items():
                paths[path], kinds[path] = predict, "pipeline"
        paths["bertfit torch"] = lambda t, p: torch_model.predict(t, batch_size, pairs=p)
        kinds["bertfit torch"] = "fp32"
        for path, quantize, fuse in (("bertfit ONNX fp32", None, True), ("bertfit ONNX int8", "int8", True),
                                     ("bertfit ONNX fp32, --no-fuse", None, False),
                                     ("bertfit ONNX int8, --no-fuse", "int8", False)):
            out = workdir / f"{model_dir.name}-{name}-{quantize or 'fp32'}-{fuse}".replace(" ", "_")
            exported = export(model_dir, out, quantize=quantize, data=check, max_drop=1.0, overwrite=True, fuse=fuse)
            size[path] = exported.size_after
            onnx_model = TextClassifier.from_pretrained(exported.model_dir, backend="onnx")
            paths[path] = lambda t, p, m=onnx_model: m.predict(t, batch_size, pairs=p)
            kinds[path] = quantize or "fp32"
        print(f"{model_dir.name}, {name}: {len(paths)} paths x {repeats} repeats on {len(texts)} rows",
              file=sys.stderr)
        runs = measure(paths, texts, pairs, repeats)
        medians = {path: summary(run["texts_per_s"])[0] for path, run in runs.items()}
        references = [path for path in paths if kinds[path] == "pipeline"] or ["bertfit torch"]
        reference = max(references, key=medians.__getitem__)
        for path, run in runs.items():
            middle, low, high = summary(run["texts_per_s"])
            results.append({"model": model_dir.name, "data": name, "rows": len(texts), "path": path,
                            "kind": kinds[path], "texts_per_s": middle, "texts_per_s_min": low,
                            "texts_per_s_max": high, "texts_per_s_runs": run["texts_per_s"],
                            "accuracy": score(torch_model, run["predicted"], labels), "reference": reference,
                            "speedup": middle / medians[reference],
                            "size_mb": size.get(path, _weights(model_dir)) / 1e6})
    return results


def bench_ray(model_dir: Path, names: list[str], limit: int | None, batch_size: int, repeats: int,
              workdir: Path, at_least: int) -> list[dict]:
    """--engine ray: files of texts scored by `predict --engine ray` against plain predict on this machine.

    Both read the same four Parquet files and write one JSON-lines file per input with the same
    records; Ray runs already (a cluster users have): its start is not timed, its actors' start is.
    A test split of fewer than ``at_least`` rows is repeated up to that many, so that the actors'
    start (a few seconds, once per run) weighs as it would on a file of that size.
    """
    import pandas as pd
    import ray

    from bertfit.batch.ray_engine import predict_files
    from bertfit.model import TextClassifier

    classifier = TextClassifier.from_pretrained(model_dir)
    if not ray.is_initialized():
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    results = []
    for name, _, texts, _, pairs in rows_for(model_dir, names, limit):
        if pairs is not None:
            continue
        texts = (texts * -(-at_least // len(texts)))[:max(at_least, len(texts))]
        sizes = {"full": texts, "start": texts[:START_ROWS]}
        runs = {}
        for size, rows in sizes.items():
            inputs, outputs = workdir / f"ray-{name}-{size}-in", workdir / f"ray-{name}-{size}-out"
            inputs.mkdir()
            for part in range(4):
                pd.DataFrame({"text": rows[part::4]}).to_parquet(inputs / f"part{part}.parquet", index=False)

            def plain(inputs=inputs, outputs=outputs):
                outputs.mkdir(exist_ok=True)
                for path in sorted(inputs.glob("*.parquet")):
                    column = pd.read_parquet(path)["text"].tolist()
                    with (outputs / f"{path.stem}.jsonl").open("w", encoding="utf-8") as sink:
                        for i, record in enumerate(classifier.predict_records(column, batch_size)):
                            sink.write(json.dumps({"id": i, **record}, ensure_ascii=False) + "\n")

            def on_ray(inputs=inputs, outputs=outputs):
                predict_files(model_dir, inputs, outputs, overwrite=True, text_col="text", batch_size=batch_size)

            runs[("bertfit predict", size)] = plain
            runs[("bertfit predict --engine ray", size)] = on_ray
        seconds: dict[tuple, list[float]] = {key: [] for key in runs}
        for key in runs:
            runs[key]()  # warm-up (and the first actor start is in every timed Ray run anyway)
        for _, key in alternate(list(runs), repeats):
            started = time.perf_counter()
            runs[key]()
            seconds[key].append(time.perf_counter() - started)
        # Per repeat: all rows against the first START_ROWS (which take the start alone, nearly): the
        # rows past those, over the seconds past theirs, is the rate once running (a long job's rate).
        marginal = {path: [(len(texts) - START_ROWS) / (full - first)
                           for full, first in zip(seconds[(path, "full")], seconds[(path, "start")], strict=True)]
                    for path, _ in runs}
        plain_rate = len(texts) / summary(seconds[("bertfit predict", "full")])[0]
        plain_marginal = summary(marginal["bertfit predict"])[0]
        for path in ("bertfit predict", "bertfit predict --engine ray"):
            middle, low, high = summary([len(texts) / run for run in seconds[(path, "full")]])
            running, running_low, running_high = summary(marginal[path])
            results.append({"model": model_dir.name, "data": name, "rows": len(texts), "path": path,
                            "texts_per_s": middle, "texts_per_s_min": low, "texts_per_s_max": high,
                            "of_plain": middle / plain_rate,
                            "start_s": summary(seconds[(path, "start")])[0],
                            "running_texts_per_s": running, "running_min": running_low, "running_max": running_high,
                            "running_of_plain": running / plain_marginal})
    return results


def ray_table(results: list[dict]) -> str:
    lines = [f"| model | data | rows | path | texts/s, all rows (median) | min-max | of plain predict | "
             f"seconds for the first {START_ROWS} rows | texts/s once running | min-max | of plain predict |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['data']} | {r['rows']} | {r['path']} | {r['texts_per_s']:.0f} | "
              f"{r['texts_per_s_min']:.0f}-{r['texts_per_s_max']:.0f} | {r['of_plain']:.0%} | {r['start_s']:.1f} | "
              f"{r['running_texts_per_s']:.0f} | {r['running_min']:.0f}-{r['running_max']:.0f} | "
              f"{r['running_of_plain']:.0%} |" for r in results]
    ray_rows = [r for r in results if "ray" in r["path"]]
    lines += ["", *(f"{r['model']}, {r['data']}: Ray at {r['running_of_plain']:.0%} of plain predict once running "
                    f"(target: at least 85%): {'met' if r['running_of_plain'] >= 0.85 else 'missed'}; "
                    f"{r['of_plain']:.0%} over all {r['rows']} rows, its start included" for r in ray_rows)]
    return "\n".join(lines)


def _weights(model_dir: Path) -> int:
    return sum((model_dir / name).stat().st_size for name in ("model.safetensors", "pytorch_model.bin")
               if (model_dir / name).exists())


def table(results: list[dict]) -> str:
    lines = ["| model | data set | rows | path | texts/s (median) | min-max | accuracy | speed-up over the best "
             "pipeline | model MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['model']} | {r['data']} | {r['rows']} | {r['path']} | {r['texts_per_s']:.1f} | "
                     f"{spread(r['texts_per_s_runs'])} | {r['accuracy']:.4f} | {r['speedup']:.2f}x | "
                     f"{r['size_mb']:.1f} |")
    return "\n".join(lines)


def verdicts(results: list[dict]) -> list[str]:
    """Per model and data set: the reference the speed-ups are over, and each target with met / not met."""
    lines = []
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in results:
        groups.setdefault((r["model"], r["data"]), []).append(r)
    for (model, data), rows in groups.items():
        by_path = {r["path"]: r for r in rows}
        reference = by_path[rows[0]["reference"]]
        if reference["kind"] != "pipeline":
            lines.append(f"{model}, {data}: no pipeline reference; speed-ups are over bertfit torch, "
                         "targets not checked")
            continue
        lines.append(f"{model}, {data}: the fastest pipeline setting is '{reference['path']}' "
                     f"({reference['texts_per_s']:.1f} texts/s median); speed-ups are over it")
        for kind, target in TARGETS.items():
            best = max((r for r in rows if r["kind"] == kind), key=lambda r: r["texts_per_s"])
            met = "met" if best["speedup"] >= target else "NOT met"
            lines.append(f"  target: bertfit {kind} at least {target:g}x the best pipeline: {best['path']} "
                         f"{best['speedup']:.2f}x, {met}")
    return lines


def versions() -> str:
    found = []
    for name in ("torch", "transformers", "onnxruntime"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} absent")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR", help="model folders written by bertfit train")
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated (default {','.join(DATASETS)})")
    parser.add_argument("--rows", type=int, help="score only the first N rows of each data set")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="batch of the batched pipeline settings and of bertfit (default 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path, alternating (default 3)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    parser.add_argument("--ray-rows", type=int, default=4000,
                        help="--engine ray: repeat a shorter test split up to this many rows (default 4000)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="ray: files scored by `predict --engine ray` against plain predict (pip install ray)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1 or (args.rows is not None and args.rows < 1):
        parser.error("--repeats, --batch-size and --rows must be at least 1")
    quiet()
    print(measured_on())
    print(f"{versions()}; batch {args.batch_size}; {args.repeats} timed runs per path in alternating order "
          f"after one warm-up; texts/s: median and min-max")
    sys.stdout.flush()
    results = []
    if args.engine == "ray":
        with tempfile.TemporaryDirectory(prefix="bertfit-bench-ray-") as workdir:
            for model_dir in args.model_dirs:
                results += bench_ray(Path(model_dir), args.datasets.split(","), args.rows, args.batch_size,
                                     args.repeats, Path(workdir), args.ray_rows)
        print(ray_table(results) if results else "nothing was measured (see the messages above)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bertfit-bench-predict-") as workdir:
        for model_dir in args.model_dirs:
            results += bench_model(Path(model_dir), args.datasets.split(","), args.rows, args.batch_size,
                                   args.repeats, Path(workdir))
    if not results:
        print("nothing was measured (see the messages above)", file=sys.stderr)
        return 0
    print()
    print(table(results))
    print()
    print("\n".join(verdicts(results)))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
