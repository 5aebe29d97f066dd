"""Compression trade-off: layers x precision against the fp32 teacher, chosen on validation, judged on test once.

    python bench/compress.py TEACHER_DIR [TEACHER_DIR ...] [--layers 1,2,3] [--epochs 3] [--keep DIR]
    python bench/compress.py DIR --remeasure      # time a --keep run's folders again, on a quiet machine

Each TEACHER_DIR is a folder written by `bertfit train` on one of ../shared/datasets/phishing or
banking77 (the data set is found from the teacher's labels; that data is not part of this
repository, and a teacher whose data is absent is skipped). The README's teachers were made with

    bertfit train ../shared/datasets/phishing  --out phishing-teacher  --epochs 3 --bucket-by-length
    bertfit train ../shared/datasets/banking77 --out banking77-teacher --epochs 3 --bucket-by-length --drop-leaks

For every teacher the bench distils the students and scores, on the VALIDATION split the students chose
their epochs on:

  teacher  fp32   the PyTorch folder as trained
  teacher  int8        `bertfit export --quantize int8` of the teacher itself (no distillation)
  teacher  int8-emb4   `--quantize int8-emb4`: int8 matmuls, embedding tables in 4-bit blocks
  L layers fp32        `bertfit distill --student-layers L` (every k-th layer kept, embeddings copied)
  L layers int8 / int8-emb4   that student exported to ONNX the same two ways

It keeps the configuration `bertfit compress` would keep (within --target and --max-drop on validation,
the best validation score among those), and only then scores the TEST split, once, for the teacher and
that configuration. One Markdown table: size of the weights on disk, how many times smaller than the fp32
teacher, accuracy and its change against the teacher, macro F1, and texts/s (batch 64, this machine).
`--keep DIR` keeps every folder and rows.json, so `--remeasure` reproduces the whole table's speeds
later on a quiet machine from the same folders.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from timing import SHARED, quiet, shared_missing

HERE = Path(__file__).resolve().parent
DATASETS = ("phishing", "banking77")


def dataset_for(teacher_dir: Path) -> Path | None:
    """The shared data set whose labels are the teacher's, or None."""
    from bertfit.data.reading import load_labelled
    from bertfit.folder import read_meta

    meta = read_meta(teacher_dir)  # None for a plain Hugging Face folder
    wanted = {str(label) for label in (meta.labels if meta else [])}
    for name in DATASETS:
        files = sorted((SHARED / name).glob("test.*"))
        if files and {str(label) for label in load_labelled(files[0], None, None)["label"]} == wanted:
            return SHARED / name
    return None


def measure(name: str, layers: int, precision: str, folder: Path, rows) -> dict:
    """Size, metrics and texts/s of one folder (PyTorch or ONNX) on ``rows`` (a bertfit SplitRows)."""
    from bertfit.export.compress import measure as measure_model
    from bertfit.model import TextClassifier

    classifier = TextClassifier.from_pretrained(folder, backend="torch" if precision == "fp32" else "onnx")
    row = measure_model(name, classifier, folder, None, rows)
    return {"teacher": name, "layers": layers, "precision": precision, "folder": str(folder), "bytes": row["bytes"],
            "accuracy": row["accuracy"], "f1_macro": row["f1_macro"], "texts_per_s": row["texts_per_s"]}


def bench_teacher(teacher_dir: Path, layers: list[int], epochs: int, precisions: list[str], workdir: Path,
                  target: float, max_drop: float) -> list[dict]:
    """Every configuration scored on validation; the one compress's rule keeps, and the teacher, on test once."""
    from bertfit.export.compress import choose
    from bertfit.export.onnx import export
    from bertfit.folder import read_split
    from bertfit.training.distill import distill

    data = dataset_for(teacher_dir)
    if data is None:
        print(f"{teacher_dir}: skipped, no data set under {SHARED} has its labels", file=sys.stderr)
        return []
    name = data.name
    students = {}
    for n in layers:
        started = time.perf_counter()
        students[n] = workdir / f"{name}-student-{n}"
        # drop_leaks: banking77's shared splits repeat 7 test texts from train; its teacher dropped them too
        distill(teacher_dir, data, students[n], student_layers=n, epochs=epochs, progress=False, report=False,
                drop_leaks=True, baseline=False, overwrite=True)
        print(f"{name}: {n}-layer student distilled in {(time.perf_counter() - started) / 60:.1f} min",
              file=sys.stderr, flush=True)
    # One validation split for every row: the one the students chose their epochs on (the teacher's own data).
    validation = read_split(students[layers[0]], "validation")
    folders = [(_layers(teacher_dir), "fp32", teacher_dir)]
    for depth, source in [(_layers(teacher_dir), teacher_dir), *((n, students[n]) for n in layers)]:
        if source is not teacher_dir:
            folders.append((depth, "fp32", source))
        for precision in precisions:
            out = export(source, workdir / f"{source.name}-{precision}", quantize=precision,
                         data=None if source is not teacher_dir else students[layers[0]] / "validation.jsonl",
                         max_drop=1.0, overwrite=True)
            folders.append((depth, precision, out.model_dir))
    rows = [{**measure(name, depth, precision, folder, validation), "split": "validation"}
            for depth, precision, folder in folders]
    teacher = rows[0]
    for row in rows:
        row["smaller_by"] = teacher["bytes"] / row["bytes"]
        row["validation"] = row["accuracy"]
        row["teacher_validation"] = teacher["accuracy"]
        row["passes"] = row["smaller_by"] >= target and teacher["accuracy"] - row["accuracy"] <= max_drop
    chosen = choose([row for row in rows if row["precision"] != "fp32"], target, max_drop)
    chosen["chosen"] = True
    test = read_split(students[layers[0]], "test")
    finals = [{**measure(name, teacher["layers"], "fp32", teacher_dir, test), "split": "test"},
              {**measure(name, chosen["layers"], chosen["precision"], Path(chosen["folder"]), test), "split": "test",
               "chosen": True}]
    return _ratios(rows) + _ratios(finals)


def _ratios(rows: list[dict]) -> list[dict]:
    """Size, accuracy and speed against the first row (the fp32 teacher on the same split)."""
    for row in rows:
        row["smaller_by"] = rows[0]["bytes"] / row["bytes"]
        row["accuracy_change"] = row["accuracy"] - rows[0]["accuracy"]
        row["speedup"] = row["texts_per_s"] / rows[0]["texts_per_s"]
    return rows


def remeasure(rows: list[dict]) -> list[dict]:
    """Time every kept folder again, one after the other (on a quiet machine), and redo the ratios."""
    from bertfit.folder import read_split

    students = [Path(row["folder"]) for row in rows if row["precision"] == "fp32" and row["split"] == "validation"
                and (Path(row["folder"]) / "validation.jsonl").exists() and "student" in Path(row["folder"]).name]
    splits = {split: read_split(students[0], split) for split in ("validation", "test")}
    for row in rows:
        row["texts_per_s"] = measure(row["teacher"], row["layers"], row["precision"], Path(row["folder"]),
                                     splits[row["split"]])["texts_per_s"]
    return (_ratios([r for r in rows if r["split"] == "validation"])
            + _ratios([r for r in rows if r["split"] == "test"]))


def _layers(folder: Path) -> int:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return int(config["num_hidden_layers"])


def table(rows: list[dict], target: float, max_drop: float) -> str:
    lines = [f"Every configuration on VALIDATION (it chooses): within limits = at least {target:g}x smaller and "
             f"at most {max_drop * 100:g} pt below the teacher; the kept one is the within-limits configuration with "
             "the best validation score (bertfit compress's rule). Then the TEST split, scored once, for the "
             "teacher and the kept configuration only.", "",
             "| data set | split | layers | weights | MB | smaller by | accuracy | change | macro F1 | texts/s | "
             "speed-up | within limits |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        verdict = "" if r["split"] == "test" else ("yes" if r.get("passes") else "no")
        kept = " (kept)" if r.get("chosen") else ""
        lines.append(f"| {r['teacher']} | {r['split']} | {r['layers']} | {r['precision']}{kept} | "
                     f"{r['bytes'] / 1e6:.1f} | {r['smaller_by']:.2f}x | {r['accuracy']:.4f} | "
                     f"{r['accuracy_change'] * 100:+.1f} pt | "
                     f"{r['f1_macro']:.4f} | {r['texts_per_s']:.0f} | {r['speedup']:.1f}x | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("teachers", nargs="+", metavar="TEACHER_DIR")
    parser.add_argument("--layers", default="1,2,3", help="student depths to distil (default 1,2,3)")
    parser.add_argument("--epochs", type=int, default=3, help="distillation epochs per student (default 3)")
    parser.add_argument("--precisions", default="int8,int8-emb4", help="exports of each model (default int8,int8-emb4)")
    parser.add_argument("--target", type=float, default=7.0, help="size ratio asked (default 7)")
    parser.add_argument("--max-drop", type=float, default=0.01,
                        help="validation accuracy drop allowed against the teacher (default 0.01)")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--keep", help="write the exports and students here (kept), with rows.json")
    parser.add_argument("--remeasure", action="store_true",
                        help="no training: time again the folders a --keep run left in each TEACHER_DIR given as "
                             "the --keep folder (for a quiet machine), and print the table")
    args = parser.parse_args(argv)
    if shared_missing():
        return 0
    quiet()
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
                rows += bench_teacher(Path(teacher), layers, args.epochs, args.precisions.split(","), workdir,
                                       args.target, args.max_drop)
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
