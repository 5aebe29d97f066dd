"""Prediction speed and accuracy of one model through four paths, side by side in one process.

    python bench/predict.py MODEL_DIR [MODEL_DIR ...]
    python bench/predict.py phishing-model banking77-model --rows 1000 --batch-size 32

Paths, all on the same model and the same rows:

  pipeline     transformers.pipeline("text-classification", model=MODEL_DIR), batched, truncated at the
               model's max length: what a user without bertfit would write
  torch        bertfit's TextClassifier on PyTorch (batches of similar length)
  onnx fp32    `bertfit export` to ONNX, run on onnxruntime
  onnx int8    `bertfit export --quantize int8` (dynamic int8 weights)

Rows: the test splits of ../shared/datasets/phishing and banking77 (not part of this repository;
skipped when absent), each for the model folder whose labels are that data set's (a model trained
on phishing scores phishing); a folder that matches neither is scored on its own test.jsonl. Each
path is warmed up on a few texts first; times are wall time of predicting every row. Prints a
Markdown table with texts/s, accuracy and the speed-up over the pipeline. Both exports are written
to a temporary folder and never refused here (--max-drop 1): the table shows what they score.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("BERTFIT_SHARED", HERE.parent.parent / "shared")) / "datasets"
DATASETS = ("phishing", "banking77")
PATHS = ("pipeline", "torch", "onnx fp32", "onnx int8")
WARM_UP = 8  # texts predicted before timing each path


def rows_for(model_dir: Path, names: list[str], limit: int | None) -> list[tuple[str, Path, list, list, list | None]]:
    """(name, file, texts, labels, pairs) for each data set whose labels are the model's, else its test.jsonl."""
    from bertfit.data import load_labelled
    from bertfit.model import read_meta

    meta = read_meta(model_dir) or {}
    wanted = {str(label) for label in meta.get("labels", [])}
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
        pair = meta.get("text_pair_col")
        rows = load_labelled(model_dir / "test.jsonl", "text", "label", pair_col="text_pair" if pair else None,
                             multi_label=meta.get("task") == "multi_label")
        found.append((f"{model_dir.name} test.jsonl", model_dir / "test.jsonl", rows))
    out = []
    for name, file, rows in found:
        rows = rows.iloc[:limit] if limit else rows
        pairs = rows["text_pair"].tolist() if "text_pair" in rows else None
        out.append((name, file, rows["text"].tolist(), rows["label"].tolist(), pairs))
    return out


def timed(predict, texts: list[str], pairs: list[str] | None) -> tuple[list, float]:
    """predict(texts, pairs) warmed up on a few texts, then timed on all of them."""
    predict(texts[:WARM_UP], pairs[:WARM_UP] if pairs is not None else None)
    started = time.perf_counter()
    predicted = predict(texts, pairs)
    return predicted, time.perf_counter() - started


def score(classifier, predicted: list, labels: list) -> float:
    """Accuracy (single-label) or subset accuracy (multi-label: the whole label set right)."""
    if classifier.multi_label:
        return sum(set(p) == set(t) for p, t in zip(predicted, labels, strict=True)) / len(labels)
    return sum(str(p) == str(t) for p, t in zip(predicted, labels, strict=True)) / len(labels)


def bench_model(model_dir: Path, names: list[str], limit: int | None, batch_size: int, workdir: Path) -> list[dict]:
    from bertfit.export import export
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
        runs: dict[str, tuple[list, float]] = {}
        size = {}
        pipe = make_pipeline(model_dir, torch_model, batch_size)
        if pipe is not None and pairs is None:
            runs["pipeline"] = timed(lambda t, _, f=pipe: f(t), texts, pairs)
        runs["torch"] = timed(lambda t, p: torch_model.predict(t, batch_size, pairs=p), texts, pairs)
        for path, quantize in (("onnx fp32", None), ("onnx int8", "int8")):
            out = workdir / f"{model_dir.name}-{name}-{quantize or 'fp32'}".replace(" ", "_")
            exported = export(model_dir, out, quantize=quantize, data=check, max_drop=1.0, overwrite=True)
            size[path] = exported.size_after
            onnx_model = TextClassifier.from_pretrained(exported.model_dir, backend="onnx")
            runs[path] = timed(lambda t, p, m=onnx_model: m.predict(t, batch_size, pairs=p), texts, pairs)
        base = runs.get("pipeline", runs["torch"])[1]
        for path in PATHS:
            if path not in runs:
                continue
            predicted, seconds = runs[path]
            results.append({"model": model_dir.name, "data": name, "rows": len(texts), "path": path,
                            "texts_per_s": len(texts) / seconds, "seconds": seconds,
                            "accuracy": score(torch_model, predicted, labels), "speedup": base / seconds,
                            "size_mb": size.get(path, _weights(model_dir)) / 1e6})
    return results


def _cut(pairs: list | None, texts: list) -> list | None:
    """The pairs of the texts being predicted (the warm-up takes the first few)."""
    return pairs[:len(texts)] if pairs is not None else None


def _weights(model_dir: Path) -> int:
    return sum((model_dir / name).stat().st_size for name in ("model.safetensors", "pytorch_model.bin")
               if (model_dir / name).exists())


def make_pipeline(model_dir: Path, classifier, batch_size: int):
    """transformers' pipeline on the same folder, returning label names (None for a multi-label model)."""
    from transformers import pipeline

    if classifier.multi_label:
        return None
    pipe = pipeline("text-classification", model=str(model_dir), device=-1)
    max_length = classifier.max_length

    def predict(texts: list[str]) -> list[str]:
        return [out["label"] for out in pipe(texts, batch_size=batch_size, truncation=True, max_length=max_length)]

    return predict


def table(results: list[dict]) -> str:
    lines = ["| model | data set | rows | path | texts/s | accuracy | speed-up over the first path | model MB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['model']} | {r['data']} | {r['rows']} | {r['path']} | {r['texts_per_s']:.1f} | "
                     f"{r['accuracy']:.4f} | {r['speedup']:.2f}x | {r['size_mb']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+", metavar="MODEL_DIR", help="model folders written by bertfit train")
    parser.add_argument("--datasets", default=",".join(DATASETS),
                        help=f"comma-separated (default {','.join(DATASETS)})")
    parser.add_argument("--rows", type=int, help="score only the first N rows of each data set")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    results = []
    with tempfile.TemporaryDirectory(prefix="bertfit-bench-predict-") as workdir:
        for model_dir in args.model_dirs:
            results += bench_model(Path(model_dir), args.datasets.split(","), args.rows, args.batch_size,
                                   Path(workdir))
    if not results:
        print("nothing was measured (see the messages above)", file=sys.stderr)
        return 0
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
