"""Read labelled tables from files, folders of splits (also the hub's shards) and Hugging Face datasets.

Every way a file can be unreadable (missing, a pipe, empty, not UTF-8, binary, a broken JSON line or one
Python cannot read, a bad Parquet file, a column named twice) becomes one DataError line that names the fix.
ClassLabel ids are read as their names (``data.class_labels``), and a split whose labels are all -1 is
left out. Choosing columns, cleaning and splitting happen in ``data``; this module only reads.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path
from typing import Any

import pandas as pd

import bertfit.data.sniff as sniff
from bertfit.data.class_labels import (
    ClassLabels,
    dataset_class_labels,
    leave_out_unlabelled,
    name_class_labels,
    parquet_class_labels,
)
from bertfit.data.fasttext import read_fasttext
from bertfit.data.json_tables import read_json_table
from bertfit.data.sniff import check_text_file, compressed_table, decompressed
from bertfit.errors import DataError

log = logging.getLogger(__name__)

EXCEL_SEP = re.compile(r"sep=(.)\r?\n?")  # the first line Excel writes to name a CSV's delimiter
SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".parquet")  # also compressed: .gz, .bz2, .xz
LABELLED = (*SUFFIXES, ".txt")  # .txt: fastText's labelled lines, for training and evaluation only
SPLIT_NAMES = {  # file stem -> split; the first name of each is the canonical one
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}
SHARD = re.compile(r"(.+?)-\d+-of-\d+(?:-[0-9a-f]+)?", re.IGNORECASE)  # the hub's train-00000-of-00002.parquet

# ---------------------------------------------------------------------------------------------
# Reading


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one file by its suffix into a DataFrame; every failure is a one-line DataError.

    A Parquet file written by the datasets library has its ClassLabel ids as their names (-1: no label).
    """
    frame, labels = _read_with_class_labels(Path(path))
    return name_class_labels(frame, labels)


def _read_with_class_labels(path: Path) -> tuple[pd.DataFrame, ClassLabels]:
    """A file as written, and the ClassLabel columns its Parquet metadata names (none for other formats)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}; check the path")
    if path.is_dir():
        raise DataError(f"{path} is a folder; pass a file, or a folder holding train/validation/test files")
    sniff.refuse_a_stream(path, "save the data to a file with a suffix (e.g. data.csv) and pass that")
    suffix = path.suffix.lower()
    if compressed_table(path, LABELLED):
        with decompressed(path) as plain:
            return _read_with_class_labels(plain)
    if suffix not in LABELLED:
        raise DataError(
            f"unknown data format {suffix or '(no suffix)'!r} for {path}; use one of {', '.join(SUFFIXES)} "
            "(or one of those compressed: .csv.gz, .jsonl.bz2, .parquet.xz), or .txt in fastText's format"
        )
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty; it needs a header row and labelled rows")
    try:
        if suffix in (".csv", ".tsv"):
            return read_delimited(path), {}
        if suffix in (".jsonl", ".ndjson", ".json"):
            return read_json_table(path), {}
        if suffix == ".txt":
            return read_fasttext(path), {}
        return _read_parquet(path), parquet_class_labels(path)
    except UnicodeDecodeError as err:
        raise unreadable(path, err) from None


def _delimiter(path: Path) -> tuple[str, int]:
    """The header's delimiter (tab for .tsv; ';' when a '.csv' uses it, as many spreadsheet exports do), and
    how many lines come before the header: 1 when Excel's ``sep=;`` line declares the delimiter, else 0."""
    check_text_file(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header_line = handle.readline()
        declared = EXCEL_SEP.fullmatch(header_line)
        if declared:
            header_line = handle.readline()
    if declared:
        sep = declared.group(1)
    elif path.suffix.lower() == ".tsv":
        sep = "\t"
    else:
        sep = ";" if header_line.count(";") > header_line.count(",") else ","
    sniff.check_header_line(path, header_line, sep)
    header = next(csv.reader([header_line], delimiter=sep), [])
    _refuse_names_twice(header, str(path))
    skip = 1 if declared else 0
    _check_first_row(path, sep, header, skip)
    return sep, skip


def _check_first_row(path: Path, sep: str, header: list[str], skip: int) -> None:
    """Refuse a first row with more fields than the header: pandas would shift every column of the file.

    (It takes the first field of such a row for an index, so texts land in the label column and the
    rest of the file is read wrongly without a word.) Later rows with too many fields are refused by
    the parser itself (:func:`unreadable` says which line).
    """
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for _ in range(skip):
            handle.readline()
        reader = csv.reader(handle, delimiter=sep)
        try:
            next(reader, None)
            first = next(reader, None)
        except csv.Error:  # a field past the csv module's size limit: pandas reads it, and judges the row
            return
    if first is not None and len(first) > len(header):
        title = (f"; or, if the first line ({header[0][:60]!r}) is a title or a comment rather than the header, "
                 "delete it") if len(header) == 1 else ""
        raise DataError(_too_many_fields(path, 2 + skip, len(header), len(first), sep) + title)


def _too_many_fields(path: str | Path, line: int, expected: int, seen: int, sep: str) -> str:
    name = {"\t": "a tab", ",": "a comma", ";": "a semicolon"}.get(sep, repr(sep))
    return (f"{path} line {line} has {seen} fields but the header names {expected}: a text holding {name} must be "
            'in double quotes ("like, this"), as spreadsheet exports write it; quote that field or fix the line')


def read_delimited(path: Path, chunksize: int | None = None) -> Any:
    """Every cell as written (``dtype=str``): a label "007" stays "007", not 7 (texts of digits alone are refused
    later, as 17 in JSON is).

    Only an empty cell is missing: "NA", "None" and "null" are texts or class names like any other.
    """
    try:
        sep, skip = _delimiter(path)
        return pd.read_csv(path, sep=sep, skiprows=skip, encoding="utf-8", dtype=str, keep_default_na=False,
                           na_values=[""], chunksize=chunksize)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} has no header row; it needs a header (e.g. text,label) and rows") from None
    except pd.errors.ParserError as err:
        raise unreadable(path, err) from None


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file; an index pandas wrote into it under a name (``set_index("text")``) is a column again."""
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"cannot read {path} as Parquet ({type(err).__name__}: {first_line(err)}); check the "
                        "file: if it is Parquet, write it again (DataFrame.to_parquet), else give it its real suffix") \
            from None
    return _columns_by_name(frame, str(path))


def load_frames(source: Any, need_train: bool = True) -> tuple[dict[str, pd.DataFrame], str]:
    """Read a source into frames keyed by split ('all' when it is one unsplit table).

    ``need_train``: a folder must hold a train file (to train on); scoring takes any split.
    """
    if isinstance(source, pd.DataFrame):
        return {"all": _columns_by_name(source, "the DataFrame")}, "DataFrame"
    if _is_hf_dataset(source):
        what = f"a Hugging Face {type(source).__name__}"
        return _hf_frames(source, what, need_train), what
    if isinstance(source, dict) and source and all(isinstance(v, pd.DataFrame) for v in source.values()):
        return _split_frames(source, "the dict of DataFrames", need_train), "a dict of DataFrames"
    if not isinstance(source, str | Path):
        raise DataError(f"bertfit reads a file or folder path, 'hf:NAME', a pandas DataFrame, a dict of them by split "
                        f"({{'train': ..., 'validation': ..., 'test': ...}}) or a Hugging Face Dataset or "
                        f"DatasetDict; got a value of type {type(source).__name__}: pass one of those "
                        "(pd.DataFrame(...) for columns in a dict or lists)")
    text = str(source)
    if text.startswith("hf:"):
        return _load_hf(text[3:], need_train), text
    path = Path(text)
    if path.is_dir():
        return _load_folder(path, need_train), str(path)
    return {"all": read_table(path)}, str(path)


def _columns_by_name(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """A copy whose column names are strings (``--text-col 0`` finds column 0) and whose named index
    (``set_index("text")``) is a column again; a name held twice is refused."""
    named = [name for name in frame.index.names if name is not None and name not in frame.columns]
    frame = frame.reset_index(level=named) if named else frame
    names = [str(c) for c in frame.columns]
    _refuse_names_twice(names, what)
    return frame.set_axis(names, axis=1)


def _refuse_names_twice(names: list[str], what: str) -> None:
    # a header's empty names (trailing separators, as spreadsheets write them) become "Unnamed: N" when read
    twice = sorted({name for name in names if name.strip() and names.count(name) > 1})
    if twice:
        raise DataError(f"{what} names column(s) {twice} more than once; rename them so each is unique")


def _load_folder(folder: Path, need_train: bool = True) -> dict[str, pd.DataFrame]:
    """A folder's split files: train.csv, validation.csv, test.csv (any of :data:`LABELLED`), or the hub's
    shards (``train-00000-of-00002.parquet``, at the top or under ``data/``), read in name order and joined."""
    found = _split_files(folder)
    if not found and (folder / "data").is_dir():
        found = _split_files(folder / "data")
    if not found and not need_train:
        raise DataError(f"folder {folder} has no data file (train, validation or test, in any of "
                        f"{', '.join(SUFFIXES)}); pass a labelled file")
    if "train" not in found and need_train:
        raise DataError(
            f"folder {folder} has no train file; put train.csv (and validation.csv, test.csv) in it, "
            f"in any of {', '.join(SUFFIXES)}, or pass a single file"
        )
    parts = {split: _read_shards(files) for split, files in found.items()}
    return leave_out_unlabelled(parts, "train", str(folder))


def _split_files(folder: Path) -> dict[str, list[Path]]:
    """The files of each split in ``folder``, by name: one file, or a split's shards in name order."""
    found: dict[str, list[Path]] = {}
    shards: dict[str, bool] = {}
    for file in sorted(folder.iterdir()):
        table = Path(file.stem) if compressed_table(file, LABELLED) else file  # train.csv.gz is train.csv
        shard = SHARD.fullmatch(table.stem)
        split = SPLIT_NAMES.get((shard.group(1) if shard else table.stem).lower())
        if not split or table.suffix.lower() not in LABELLED or not file.is_file():
            continue
        if split in found and not (shard and shards[split]):
            raise DataError(f"{folder} has two {split} files ({found[split][0].name}, {file.name}); keep one")
        found.setdefault(split, []).append(file)
        shards[split] = shard is not None
    return found


def _read_shards(files: list[Path]) -> tuple[pd.DataFrame, ClassLabels]:
    """One split's files read and joined in order, with the ClassLabel columns any of them names."""
    read = [_read_with_class_labels(file) for file in files]
    labels: ClassLabels = {}
    for _, named in read:
        labels = {**named, **labels}
    frames = [frame for frame, _ in read]
    return (frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)), labels


def _load_hf(name: str, need_train: bool = True) -> dict[str, pd.DataFrame]:
    """hf:NAME[:CONFIG], or hf:PATH of a dataset saved with save_to_disk (any other local folder is read as a
    folder of data files)."""
    import datasets

    from bertfit.hub import hub_reachable

    local = Path(name)
    saved = local.is_dir() and any((local / f).exists() for f in ("dataset_dict.json", "state.json"))
    if local.is_dir() and not saved:
        log.info("hf:%s is a local folder of data files, not one saved with save_to_disk: reading it as a folder "
                 "(it can be passed without hf:)", name)
        return _load_folder(local, need_train)
    if not saved and not datasets.config.HF_HUB_OFFLINE and not hub_reachable():
        raise DataError(f"cannot load Hugging Face dataset {name!r}: it is not a saved dataset folder and the hub is "
                        "unreachable; load it where there is a network, save_to_disk(PATH), and pass hf:PATH (a "
                        "dataset already in the local cache loads with HF_HUB_OFFLINE=1)")
    try:
        if saved:
            loaded = datasets.load_from_disk(str(local))
        else:
            repo, _, subset = name.partition(":")
            loaded = datasets.load_dataset(repo, subset or None)
    except Exception as err:
        raise DataError(
            f"cannot load Hugging Face dataset {name!r} ({type(err).__name__}: {first_line(err)}); "
            "if the hub is unreachable, load it where there is a network, save_to_disk(PATH), and pass hf:PATH"
        ) from None
    return _hf_frames(loaded, f"Hugging Face dataset {name!r}", need_train)


def _is_hf_dataset(source: Any) -> bool:
    """A datasets.Dataset or DatasetDict, told without importing datasets (slow) for other sources."""
    return type(source).__module__.split(".")[0] == "datasets" and type(source).__name__ in ("Dataset",
                                                                                              "DatasetDict")


def _hf_frames(loaded: Any, what: str, need_train: bool = True) -> dict[str, pd.DataFrame]:
    """A Dataset's or DatasetDict's splits with ClassLabel ids as their names; a split whose labels are all -1
    is left out (:func:`leave_out_unlabelled`)."""
    if type(loaded).__name__ != "DatasetDict":
        return {"all": name_class_labels(loaded.to_pandas(), dataset_class_labels(loaded.features))}
    parts = {split: (part.to_pandas(), dataset_class_labels(part.features)) for split, part in loaded.items()}
    train = next((split for split in parts if SPLIT_NAMES.get(str(split).lower()) == "train"), None)
    return _split_frames(leave_out_unlabelled(parts, train, what), what, need_train)


def _split_frames(parts: dict[str, pd.DataFrame], what: str, need_train: bool = True) -> dict[str, pd.DataFrame]:
    """Named splits (train, validation/dev/valid/val, test) as bertfit's; other names are left out, said."""
    frames = {}
    for split, part in parts.items():
        canonical = SPLIT_NAMES.get(str(split).lower())
        if canonical in frames:
            raise DataError(f"{what} has two {canonical} splits ({', '.join(map(str, parts))}); keep one")
        if canonical:
            frames[canonical] = _columns_by_name(part, f"the {split} split of {what}")
    if ("train" not in frames and need_train) or not frames:
        raise DataError(f"{what} has no {'train' if need_train else 'train, validation or test'} split (has "
                        f"{list(parts)}); name the splits train, validation and test")
    ignored = [str(split) for split in parts if SPLIT_NAMES.get(str(split).lower()) is None]
    if ignored:
        log.warning("%s: split(s) %s left out: bertfit reads train, validation and test", what, ignored)
    return frames


def unreadable(source: str | Path, err: UnicodeDecodeError | pd.errors.ParserError) -> DataError:
    """The one-line error for a file that is not UTF-8 or does not parse as a table."""
    if isinstance(err, UnicodeDecodeError):
        where = "standard input" if str(source) == "-" else source
        return DataError(
            f"{where} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
            "re-save it as UTF-8 (e.g. iconv -f cp1252 -t utf-8, for a file from Windows or Excel)"
        )
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(err))
    if fields:
        expected, line, seen = map(int, fields.groups())
        sep = "\t" if str(source).lower().endswith(".tsv") else ","
        return DataError(_too_many_fields(source, line, expected, seen, sep))
    return DataError(f"cannot parse {source} as a table ({first_line(err)}); check its delimiter and quoting")


def first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or ["no message"])[0]
