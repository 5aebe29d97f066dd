"""``bertfit predict --engine ray``: many files of texts scored on a Ray cluster, one output file per input.

Ray Data reads each input file (Parquet, CSV, JSON lines), a pool of actors scores its batches,
each actor holding one ``TextClassifier`` (the folder's ONNX export when it has one; as many
threads as the CPUs the actor asked for), and the driver writes the records, in the input's row
order with the row's ``id`` (its position in the file), to ``OUTPUT/<input name>.jsonl`` through a
staged file: a file that exists is whole. ``resume`` skips the inputs whose output exists, so an
interrupted run starts again where it stopped. :func:`predict_dataset` is the same from Python:
it returns the scored Ray Dataset of one input. The records are ``TextClassifier.predict_records``'s,
so the same texts give the same labels and probabilities as ``bertfit predict``.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from bertfit.data.columns import predict_text_column
from bertfit.data.reading import given_or_saved
from bertfit.environment import require
from bertfit.errors import DataError, OutputError, UsageError
from bertfit.folder import read_meta
from bertfit.staging import check_file, refuse_inputs, staged_file

log = logging.getLogger(__name__)

READERS = {".parquet": "read_parquet", ".csv": "read_csv", ".jsonl": "read_json", ".json": "read_json"}
ID = "id"  # the row's position in its input file
PATH = "path"  # Ray Data's column naming the input file of a row (include_paths)
# Rows per actor call, in prediction batches: the classifier sorts a call's texts by length, and on
# mixed lengths (phishing URLs) calls of 4 batches ran at 44% of the speed of calls of 31 (2,000 texts).
SORTED_BATCHES = 32


def input_files(pattern: str | Path | list) -> list[Path]:
    """The files a pattern (a glob, a file, a folder, or a list of them) names, sorted; each of a known format."""
    found: list[Path] = []
    for item in pattern if isinstance(pattern, list | tuple) else [pattern]:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in READERS)
        elif path.is_file():
            found.append(path)
        else:
            found += sorted(Path(p) for p in glob.glob(str(item)))
    if not found:
        raise DataError(f"no input files match {pattern!r}; pass a file, a folder or a glob such as 'data/*.parquet'")
    unknown = [str(p) for p in found if p.suffix.lower() not in READERS]
    if unknown:
        raise DataError(f"cannot read {unknown[:3]} with Ray Data; inputs must be {', '.join(sorted(READERS))}")
    names = [p.stem for p in found]
    twins = sorted({name for name in names if names.count(name) > 1})
    if twins:
        raise UsageError(f"several inputs share the name {twins[:3]}, so their outputs would collide; "
                         "give them distinct names or run them separately")
    return found


class Scorer:
    """A Ray actor's state: one classifier, loaded once; each call scores one batch into JSON records."""

    def __init__(self, model_dir: str, backend: str, threads: int, text_col: str, pair_col: str | None,
                 batch_size: int, threshold: float | None):
        from bertfit.model import TextClassifier

        self.classifier = TextClassifier.from_pretrained(model_dir, backend=backend, threads=threads)
        self.text_col, self.pair_col = text_col, pair_col
        self.batch_size, self.threshold = batch_size, threshold

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        texts = _strings(batch[self.text_col])
        pairs = _strings(batch[self.pair_col]) if self.pair_col else None
        records = self.classifier.predict_records(texts, self.batch_size, pairs=pairs, threshold=self.threshold)
        return pd.DataFrame({PATH: batch[PATH].to_numpy(),
                             "record": [json.dumps(r, ensure_ascii=False) for r in records]})


def _strings(column: pd.Series) -> list[str]:
    """Cells as texts; a missing one is empty (its record says so, as bertfit predict's does)."""
    return ["" if value is None or pd.isna(value) else str(value) for value in column]  # None, NaN, pd.NA


def predict_dataset(model_dir: str | Path, source: str | Path | list, *, text_col: str | None = None,
                    pair_col: str | None = None, workers: int | None = None, cpus_per_worker: int = 1,
                    batch_size: int = 64, backend: str = "auto", threshold: float | None = None) -> Any:
    """Input files scored on Ray: a Dataset with the columns ``path`` (the input file) and ``record``.

    ``source``: one file, or a list of files of one format; ``record`` is predict's JSON for the row.
    Ray must be running (``ray.init``). The dataset keeps the inputs' order, file by file and row by
    row: this sets Ray Data's ``preserve_order``. One pool of actors serves every file.
    """
    require("ray", "bertfit.predict_dataset")
    import ray

    paths = [Path(p).resolve() for p in (source if isinstance(source, list | tuple) else [source])]
    formats = {READERS[p.suffix.lower()] for p in paths}
    if len(formats) > 1:
        raise UsageError(f"predict_dataset reads files of one format at a time, got {sorted(formats)}")
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    reader = formats.pop()
    dataset = getattr(ray.data, reader)([str(p) for p in paths], include_paths=True, **_as_written(paths, reader))
    columns = [name for name in dataset.schema().names if name != PATH]
    meta = read_meta(Path(model_dir))  # its columns (None: a plain Hugging Face folder); the actors load the model
    if PATH in (text_col or (meta.text_col if meta is not None else None), pair_col):
        raise UsageError(f"--engine ray cannot read a text column named {PATH!r}: Ray Data puts each row's file "
                         f"name under that name; rename the column, or score the files with plain bertfit predict")
    named = given_or_saved(text_col, meta.text_col if meta is not None else None, columns)
    text = predict_text_column(columns, named, str(paths[0]))
    pair = pair_col or (meta.text_pair_col if meta is not None else None)
    if pair is not None and pair not in columns:
        raise DataError(f"{paths[0]} has no column {pair!r}, the second text of this sentence-pair model; columns "
                        f"are {columns}; pass --text-pair-col")
    _refuse_non_text(dataset.schema(), [text] + ([pair] if pair else []), paths[0])
    cpus = int(ray.cluster_resources().get("CPU", 1))
    pool = _pool_size(cpus, workers, cpus_per_worker)
    # The CPU kept for listing and reading is idle most of the time: a pool the default size spreads its
    # threads over it too (on 2 CPUs one actor of 2 threads, as plain predict runs; on 16, 15 of 1).
    threads = max(cpus_per_worker, cpus // pool) if workers is None else cpus_per_worker
    return dataset.select_columns([PATH, text] + ([pair] if pair else [])).map_batches(
        Scorer, fn_constructor_args=(str(model_dir), backend, threads, text, pair, batch_size, threshold),
        batch_size=batch_size * SORTED_BATCHES, batch_format="pandas", compute=ray.data.ActorPoolStrategy(size=pool),
        num_cpus=cpus_per_worker)


def _as_written(paths: list[Path], reader: str) -> dict[str, Any]:
    """Ray's CSV reader types a column by its look (texts "007", "012" become 7, 12): read each as its strings,
    as plain predict does."""
    if reader != "read_csv":
        return {}
    import pyarrow as pa
    from pyarrow import csv as arrow_csv

    names: set[str] = set()
    for path in paths:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            names.update(next(csv.reader(handle), []))
    return {"convert_options": arrow_csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))}


def _refuse_non_text(schema: Any, columns: list[str], path: Path) -> None:
    """A text column typed as lists, records or bytes is refused here, before any actor starts (plain
    predict refuses it too); texts and numbers are read as text."""
    import pyarrow as pa

    for name, kind in zip(schema.names, schema.types, strict=True):
        if name in columns and isinstance(kind, pa.DataType) and (
                pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
            raise DataError(f"column {name!r} of {path} holds {kind} values, not texts; pass --text-col with the "
                            "column that holds the texts, or turn those cells into strings")


def _pool_size(cpus: int, workers: int | None, cpus_per_worker: int) -> int:
    """Actors that fit beside one CPU kept for listing and reading the files (Ray Data starts the actors
    first: actors holding every CPU leave none for its listing task, and the run waits for ever)."""
    most = max(1, (cpus - 1) // cpus_per_worker) if cpus > cpus_per_worker else 1
    if workers is not None and workers > most:
        log.warning("--workers %d: the cluster's %d CPUs hold %d actor(s) of %d CPU beside one CPU for reading; "
                    "running %d", workers, cpus, most, cpus_per_worker, most)
    return min(workers or most, most)


def predict_files(model_dir: str | Path, inputs: str | Path | list, output: str | Path, *,
                  address: str | None = None, resume: bool = False, overwrite: bool = False,
                  **settings: Any) -> dict[str, Any]:
    """Every input file scored into ``output/<name>.jsonl`` (records with their row ``id``); a summary back.

    ``address``: an existing cluster ("auto", "ray://HOST:PORT"); None starts Ray on this machine.
    ``resume``: inputs whose output exists are skipped (outputs are written whole or not at all).
    ``settings``: :func:`predict_dataset`'s keywords.
    """
    require("ray", "bertfit predict --engine ray")
    import ray

    files = input_files(inputs)
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {folder} is a file; with --engine ray it is a folder, one file per input")
    if folder.resolve() in {path.resolve().parent for path in files}:
        raise UsageError(f"--output {folder} holds input files; pass a folder of its own for the outputs")
    targets = {path: folder / f"{path.stem}.jsonl" for path in files}
    for target in targets.values():  # e.g. test.csv into the model folder would replace its test split
        refuse_inputs(target, "--output", {"the model folder": model_dir, **{f"the input {p.name}": p for p in files}},
                      sealed=("the model folder",))
    done = [path for path, target in targets.items() if target.exists()]
    if done and not (resume or overwrite):
        raise UsageError(f"{len(done)} output file(s) exist already in {folder} (e.g. {targets[done[0]].name}); "
                         "pass --resume to skip their inputs, or --overwrite to score them again")
    todo = [path for path in files if overwrite or path not in done]
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    rows = 0
    try:
        for group in _by_format(todo):
            rows += _write_outputs(predict_dataset(model_dir, group, **settings), group, targets, overwrite)
    except BaseException:
        if created and not any(folder.iterdir()):
            folder.rmdir()  # a run refused before its first output leaves no trace
        raise
    finally:
        if started:
            ray.shutdown()
    return {"inputs": len(files), "scored": len(todo), "skipped": len(files) - len(todo), "rows": rows,
            "output": str(folder)}


def _by_format(files: list[Path]) -> list[list[Path]]:
    """The files in runs of one reader, in their order (one Ray dataset, so one actor pool, per run)."""
    runs: list[list[Path]] = []
    for path in files:
        if runs and READERS[runs[-1][-1].suffix.lower()] == READERS[path.suffix.lower()]:
            runs[-1].append(path)
        else:
            runs.append([path])
    return runs


def _write_outputs(scored: Any, files: list[Path], targets: dict[Path, Path], overwrite: bool) -> int:
    """The scored rows, which come file by file in input order, into each file's output; rows written back.

    Each output is staged and renamed when its file's last row is written, so an interruption
    leaves the finished files whole and no part of the one in progress.
    """
    by_name = {str(path.resolve()): path for path in files}
    rows, position, current = 0, 0, None
    with contextlib.ExitStack() as stack:

        def start(name: str) -> Any:
            if overwrite:
                check_file(targets[by_name[name]], overwrite=True)
            return stack.enter_context(staged_file(targets[by_name[name]]))

        def finish(name: str) -> None:
            stack.close()  # the file is whole: its output is renamed into place
            log.info("%s: %d rows scored into %s", by_name[name], position, targets[by_name[name]])

        finished: list[str] = []
        for batch in scored.iter_batches(batch_format="pandas"):
            for name, record in zip(batch[PATH], batch["record"], strict=True):
                if name != current:
                    if current is not None:
                        finish(current)
                    if name in finished or name not in by_name:
                        raise OutputError(f"Ray Data returned the rows of {name} out of order; "
                                           "rerun with --resume to score the files not written")
                    current, position, sink = name, 0, start(name)
                    finished.append(name)
                sink.write(f'{{"{ID}": {position}, {record[1:]}\n')  # a JSON object: the row's id goes first
                position += 1
                rows += 1
        if current is not None:
            finish(current)
        position = 0
        for name in by_name:  # a file without rows yields none: its output is empty, and whole
            if name not in finished:
                start(name)
                finish(name)
    return rows
