"""Compression trade-off: layers x precision, against the fp32 teacher, on the same test split.

    python bench/compress.py TEACHER_DIR [TEACHER_DIR ...] [--layers 1,2,3] [--epochs 3] [--keep DIR]
    python bench/compress.py DIR --remeasure      # time a --keep run's folders again, on a quiet machine

Each TEACHER_DIR is a folder written by `bertfit train` on one of ../shared/datasets/phishing or
banking77 (the data set is found from the teacher's labels; that data is not part of this
repository, and a teacher whose data is absent is skipped). The README's teachers were made with

    bertfit train ../shared/datasets/phishing  --out phishing-teacher  --epochs 3 --bucket-by-length
    bertfit train ../shared/datasets/banking77 --out banking77-teacher --epochs 3 --bucket-by-length --drop-leaks

For every teacher the bench measures, on that data set's test split:

  teacher  fp32   the PyTorch folder as trained
  teacher  int8        `bertfit export --quantize int8` of the teacher itself (no distillation)
  teacher  int8-emb4   `--quantize int8-emb4`: int8 matmuls, embedding tables in 4-bit blocks
  L layers fp32        `bertfit distill --student-layers L` (every k-th layer kept, embeddings copied)
  L layers int8 / int8-emb4   that student exported to ONNX the same two ways

and prints one Markdown table: size of the weights on disk, how many times smaller than the fp32
teacher, test accuracy and its change against the teacher, macro F1, and texts/s (batch 64, this
machine). Rows that are at least --target times smaller and within --max-drop of the teacher's
accuracy are marked. The exports are not refused here (the gate is opened to 1.0) so every point
of the curve is shown; `bertfit compress` keeps the gate at 1 point.
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


def dataset_for(teacher_dir: Path) -> Path | None:
    """The shared data set whose labels are the teacher's, or None."""
    from bertfit.data import load_labelled
    from bertfit.model import read_meta

    wanted = {str(label) for label in (read_meta(teacher_dir) or {}).get("labels", [])}
    for name in DATASETS:
        files = sorted((SHARED / name).glob("test.*"))
        if files and {str(label) for label in load_labelled(files[0], None, None)["label"]} == wanted:
            return SHARED / name
    return None


def measure(name: str, layers: int, precision: str, folder: Path, texts: list[str], labels: list) -> dict:
    """Size, test metrics and texts/s of one folder (PyTorch or ONNX) on the test rows."""
    from bertfit.compress import measure as measure_model
    from bertfit.model import TextClassifier

    classifier = TextClassifier.from_pretrained(folder, backend="torch" if precision == "fp32" else "onnx")
    row = measure_model(name, classifier, folder, None, (texts, labels, None))
    return {"teacher": name, "layers": layers, "precision": precision, "folder": str(folder), "bytes": row["bytes"],
            "accuracy": row["accuracy"], "f1_macro": row["f1_macro"], "texts_per_s": row["texts_per_s"]}


def bench_teacher(teacher_dir: Path, layers: list[int], epochs: int, precisions: list[str],
                  workdir: Path) -> list[dict]:
    from bertfit.data import load_labelled
    from bertfit.distill import distill
    from bertfit.export import export

    data = dataset_for(teacher_dir)
    if data is None:
        print(f"{teacher_dir}: skipped, no data set under {SHARED} has its labels", file=sys.stderr)
        return []
    test = load_labelled(sorted(data.glob("test.*"))[0], None, None)
    texts, labels = test["text"].tolist(), test["label"].tolist()
    name = data.name
    depth = _layers(teacher_dir)
    check = sorted(data.glob("test.*"))[0]

    def exported(folder: Path, label: str) -> list[dict]:
        found = []
        for precision in precisions:
            out = export(folder, workdir / f"{label}-{precision}", quantize=precision, data=check, max_drop=1.0,
                         overwrite=True)
            found.append(measure(name, _layers(folder), precision, out.model_dir, texts, labels))
        return found

    rows = [measure(name, depth, "fp32", teacher_dir, texts, labels), *exported(teacher_dir, f"{name}-teacher")]
    for n in layers:
        started = time.perf_counter()
        student = workdir / f"{name}-student-{n}"
        # drop_leaks: banking77's shared splits repeat 7 test texts from train; its teacher dropped them too
        distill(teacher_dir, data, student, student_layers=n, epochs=epochs, progress=False, report=False,
                drop_leaks=True, baseline=False, overwrite=True)
        minutes = (time.perf_counter() - started) / 60
        rows.append({**measure(name, n, "fp32", student, texts, labels), "distil_minutes": minutes})
        rows += exported(student, f"{name}-student-{n}")
        print(json.dumps(rows[-1 - len(precisions):]), file=sys.stderr, flush=True)
    for row in rows:
        row["smaller_by"] = rows[0]["bytes"] / row["bytes"]
        row["accuracy_change"] = row["accuracy"] - rows[0]["accuracy"]
        row["speedup"] = row["texts_per_s"] / rows[0]["texts_per_s"]
    return rows


def remeasure(rows: list[dict]) -> list[dict]:
    """Time every kept folder again, one after the other (on a quiet machine), and redo the ratios."""
    from bertfit.data import load_labelled

    for row in rows:
        test = load_labelled(sorted((SHARED / row["teacher"]).glob("test.*"))[0], None, None)
        again = measure(row["teacher"], row["layers"], row["precision"], Path(row["folder"]), test["text"].tolist(),
                        test["label"].tolist())
        row["texts_per_s"] = again["texts_per_s"]
    for row in rows:
        teacher = next(r for r in rows if r["teacher"] == row["teacher"] and r["precision"] == "fp32")
        row["speedup"] = row["texts_per_s"] / teacher["texts_per_s"]
    return rows


def _layers(folder: Path) -> int:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return int(config["num_hidden_layers"])


def table(rows: list[dict], target: float, max_drop: float) -> str:
    lines = ["| data set | layers | weights | MB | smaller by | test accuracy | change | macro F1 | texts/s | "
             f"speed-up | meets {target:g}x within {max_drop * 100:g} pt |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        met = r["smaller_by"] >= target and r["accuracy_change"] >= -max_drop
        lines.append(f"| {r['teacher']} | {r['layers']} | {r['precision']} | {r['bytes'] / 1e6:.1f} | "
                     f"{r['smaller_by']:.2f}x | {r['accuracy']:.4f} | {r['accuracy_change'] * 100:+.1f} pt | "
                     f"{r['f1_macro']:.4f} | {r['texts_per_s']:.0f} | {r['speedup']:.1f}x | {'yes' if met else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teachers", nargs="+", metavar="TEACHER_DIR")
    parser.add_argument("--layers", default="1,2,3", help="student depths to distil (default 1,2,3)")
    parser.add_argument("--epochs", type=int, default=3, help="distillation epochs per student (default 3)")
    parser.add_argument("--precisions", default="int8,int8-emb4", help="exports of each model (default int8,int8-emb4)")
    parser.add_argument("--target", type=float, default=7.0, help="size ratio to mark (default 7)")
    parser.add_argument("--max-drop", type=float, default=0.01, help="accuracy drop allowed (default 0.01)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--keep", help="write the exports and students here (kept), with rows.json")
    parser.add_argument("--remeasure", action="store_true",
                        help="no training: time again the folders a --keep run left in each TEACHER_DIR given as "
                             "the --keep folder (for a quiet machine), and print the table")
    args = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"skipped: {SHARED} not found (set BERTFIT_SHARED to the folder holding datasets/)")
        return 0
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    for key, value in (("TRANSFORMERS_VERBOSITY", "error"), ("HF_HUB_OFFLINE", "1"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1")):
        os.environ.setdefault(key, value)
    layers = [int(n) for n in args.layers.split(",")]
    rows = []
    if args.remeasure:
        for kept in args.teachers:
            rows += remeasure(json.loads((Path(kept) / "rows.json").read_text()))
    else:
        with tempfile.TemporaryDirectory(prefix="bertfit-bench-compress-") as scratch:
            workdir = Path(args.keep or scratch)
            workdir.mkdir(parents=True, exist_ok=True)
            for teacher in args.teachers:
                rows += bench_teacher(Path(teacher), layers, args.epochs, args.precisions.split(","), workdir)
            if args.keep:
                (workdir / "rows.json").write_text(json.dumps(rows, indent=2) + "\n")
    if not rows:
        print("nothing was measured (see the messages above)", file=sys.stderr)
        return 0
    print(table(rows, args.target, args.max_drop))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
