"""The files of a saved model folder besides the weights: ``bertfit.json``, its model card, the kept splits.

``bertfit.json`` is read (checked for a format this bertfit can read, its labels, and the values
prediction reads, against the model's limits in its config and tokenizer files) and written
here, with ``README.md`` (the model card, built by ``card``) beside it; ``validation.jsonl`` and
``test.jsonl`` (the splits ``bertfit train`` keeps beside the model: validation for later decisions
such as the export's check, test for reports) are read and written here; and a path given where a
model folder belongs is told apart from a data file or folder. No weights are loaded here
(``model`` and ``backends`` do that).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bertfit.card import CARD_FILE, model_card
from bertfit.errors import ModelLoadError
from bertfit.record import FORMAT_VERSION, PLAIN_FORMAT, ModelRecord
from bertfit.staging import final_name

META_FILE = "bertfit.json"


SPLIT_FILES = {"validation": "validation.jsonl", "test": "test.jsonl"}  # kept beside the model by bertfit train


@dataclass
class SplitRows:
    """Labelled rows of one split: texts, labels (names; lists of names for multi-label), pairs, and their file."""

    texts: list[str]
    labels: list[Any]
    pairs: list[str] | None
    source: str


def read_split(folder: Path, split: str = "test") -> SplitRows | None:
    """The validation or test split ``bertfit train`` kept in ``folder`` (JSON lines of text, label, text_pair);
    None when the folder has none (older folders, plain Hugging Face folders)."""
    file = folder / SPLIT_FILES[split]
    if not file.exists():
        return None
    records = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ModelLoadError(f"{file} line {number} is not JSON ({err.msg}); the folder is damaged: retrain, "
                                 "or pass --data FILE") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str) or "label" not in record:
            raise ModelLoadError(f"{file} line {number} lacks a 'text' or a 'label'; the folder is damaged: retrain, "
                                 "or pass --data FILE")
        records.append(record)
    has_pairs = any(r.get("text_pair") is not None for r in records)  # sentence-pair models only
    pairs = [r.get("text_pair") or "" for r in records] if has_pairs else None
    return SplitRows([r["text"] for r in records], [r["label"] for r in records], pairs, str(file))


def split_file(frame: Any) -> str:
    """A split (DataFrame of text, label, text_pair) as the JSON lines read_split reads."""
    return "".join(json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in row.items()},
                              ensure_ascii=False) + "\n" for row in frame.to_dict(orient="records"))


DATA_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")


def check_model_folder(folder: Path) -> None:
    """Refuse what is not a model folder, saying what it is: missing, a data file or data folder given in
    the model's place (arguments swapped), or a folder with nothing of a model in it."""
    if folder.is_file():
        if folder.suffix.lower() in DATA_SUFFIXES:
            raise ModelLoadError(f"{folder} is a data file, not a model folder; the model folder comes first "
                                 f"(bertfit predict MODEL_DIR TEXT..., bertfit evaluate MODEL_DIR DATA)")
        raise ModelLoadError(f"{folder} is a file, not a model folder; pass the folder bertfit train wrote")
    if not folder.is_dir():
        raise ModelLoadError(f"model folder not found: {folder}; train one with: bertfit train DATA --out {folder}")
    if not any((folder / name).exists() for name in (META_FILE, "config.json")):
        data = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in DATA_SUFFIXES)[:3]
        if data:
            raise ModelLoadError(f"{folder} holds data ({', '.join(data)}), not a model (no {META_FILE} or "
                                 "config.json); the model folder comes first: bertfit evaluate MODEL_DIR DATA")


def read_meta(folder: Path) -> ModelRecord | None:
    """bertfit.json, checked for a format this version can read and for its labels; None for a plain HF folder."""
    file = folder / META_FILE
    if not file.exists():
        if (folder / "config.json").exists():
            return None
        raise ModelLoadError(
            f"{folder} is not a model folder (no {META_FILE} or config.json); pass the folder bertfit train wrote"
        )
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{file} is not valid JSON ({err}); the folder is damaged: retrain or restore it") \
            from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if type(version) is not int or version < 1:  # bool is an int to isinstance
        raise damaged_meta(folder, "no format_version")
    if version > FORMAT_VERSION:
        raise ModelLoadError(
            f"{folder} was saved in bertfit format {version!r}, newer than this bertfit reads "
            f"(up to {FORMAT_VERSION}); upgrade: pip install -U bertfit"
        )
    labels = meta.get("labels")
    if (not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(n, str) for n in labels)
            or len(set(labels)) != len(labels)):
        raise damaged_meta(folder, "no valid 'labels': a list of two or more distinct names")
    try:
        record = ModelRecord.from_dict(meta)
    except (TypeError, ValueError) as err:
        raise damaged_meta(folder, f"a field this bertfit cannot read: {err}") from None
    config = _json_object(folder / "config.json")
    problems = record.problems(_position_limit(folder, config), _special_tokens(folder))
    problems += _config_disagrees(config, record)
    if problems:
        raise damaged_meta(folder, "; ".join(problems[:3]))
    return record


TASK_OF_PROBLEM = {"multi_label_classification": True, "single_label_classification": False}  # multi-label?


def _config_disagrees(config: dict[str, Any], record: ModelRecord) -> list[str]:
    """Where config.json says otherwise than bertfit.json: the task, or the labels (what transformers'
    pipeline reads), where config.json names them (transformers' LABEL_0 ... are no names)."""
    found = []
    problem_type = config.get("problem_type")
    if problem_type in TASK_OF_PROBLEM and TASK_OF_PROBLEM[problem_type] != record.multi_label:
        found.append(f"its task is {'multi' if record.multi_label else 'single'}-label, but config.json's "
                     f"problem_type is {problem_type}")
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and len(id2label) == len(record.labels):
        named = [id2label.get(str(i), id2label.get(i)) for i in range(len(record.labels))]
        if named != [f"LABEL_{i}" for i in range(len(named))] and named != list(record.labels):
            found.append(f"its labels are {list(record.labels)[:4]}, but config.json's id2label names "
                         f"{named[:4]}")
    return found


def damaged_meta(folder: Path, why: str) -> ModelLoadError:
    """The one-line error for a bertfit.json that is there but cannot be used as it is."""
    return ModelLoadError(f"cannot load the model in {folder}: {META_FILE} is damaged or incomplete ({why}); copy the "
                          "whole folder again, or retrain")


def _position_limit(folder: Path, config: dict[str, Any]) -> int | None:
    """The most tokens the model takes, as its config (``config.json``, read) and tokenizer config say (None
    where neither says)."""
    said = [config.get("max_position_embeddings"),
            _json_object(folder / "tokenizer_config.json").get("model_max_length")]
    # tokenizers without a limit say a huge sentinel (1e30): no limit
    return min((n for n in said if isinstance(n, int) and not isinstance(n, bool) and 0 < n < 10**9), default=None)


def _special_tokens(folder: Path) -> tuple[int, int]:
    """Tokens the tokenizer adds to a single text and to a pair, from tokenizer.json's post-processor (0: unknown)."""
    processor = _json_object(folder / "tokenizer.json").get("post_processor")
    steps = processor.get("processors", [processor]) if isinstance(processor, dict) else []
    counts = [0, 0]
    for step in steps if isinstance(steps, list) else []:
        kind = step.get("type") if isinstance(step, dict) else None
        for index, side in enumerate(("single", "pair")):
            if kind == "TemplateProcessing" and isinstance(step.get(side), list):
                counts[index] += sum(isinstance(piece, dict) and "SpecialToken" in piece for piece in step[side])
            elif kind in ("BertProcessing", "RobertaProcessing"):
                counts[index] += {"single": 2, "pair": 3 if kind == "BertProcessing" else 4}[side]
    return counts[0], counts[1]


def _json_object(file: Path) -> dict[str, Any]:
    """A JSON file's object, or {} where it is missing, unreadable or not an object (the loader says why later)."""
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_meta(folder: Path, record: ModelRecord) -> None:
    """bertfit.json in ``folder``, stamped with this bertfit's format version, and the model card made from it."""
    version = FORMAT_VERSION if record.blend is not None else PLAIN_FORMAT  # older bertfits read what they can
    (folder / META_FILE).write_text(json.dumps({**record.to_dict(), "format_version": version}, indent=2,
                                               default=_jsonable) + "\n", encoding="utf-8")
    (folder / CARD_FILE).write_text(model_card(record, final_name(folder)), encoding="utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
