"""Shared fixtures: a tiny BERT built once per session from a config, and small labelled data.

The tiny model runs the real code path (tokenizer, BertForSequenceClassification, Trainer) in
well under a second per epoch; nothing is downloaded.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bertfit.errors import DataError

# The suite's data sets have under 30 rows per class, where --method auto trains contrastively; the tests of
# fine-tuning fine-tune (their subprocesses inherit this). tests/test_contrastive.py restores the threshold.
os.environ["BERTFIT_FEW_SHOT_ROWS"] = "0"

WORDS = {
    "billing": "invoice refund charge payment card bill price paid money overcharged receipt",
    "tech": "crash error bug install update login password screen slow broken freeze reboot",
    "sales": "buy quote demo plan upgrade discount trial pricing licence order seats contract",
}
FILLER = "please help the my our a an with for today again now it this is not can you".split()


def load_screenshot_script():
    """scripts/report_screenshot.py as a module: the Chromium helpers the report and page tests share."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "report_screenshot.py"
    spec = importlib.util.spec_from_file_location("report_screenshot", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _vocab() -> list[str]:
    words = sorted({w for text in WORDS.values() for w in text.split()} | set(FILLER))
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-:/")
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *(f"##{c}" for c in chars)]


def make_rows(per_class: int = 20, seed: int = 0) -> pd.DataFrame:
    """Short texts whose class shows in their words; unique, shuffled."""
    rng = random.Random(seed)
    rows, seen = [], set()
    for label, words in WORDS.items():
        vocab = words.split()
        while sum(r["label"] == label for r in rows) < per_class:
            text = " ".join(rng.sample(vocab, 3) + rng.sample(FILLER, 3))
            if text not in seen:
                seen.add(text)
                rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return pd.DataFrame(rows)


def tiny_tokenizer():
    """A word-piece BERT tokenizer over the test vocabulary, built without any download."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {token: i for i, token in enumerate(_vocab())}
    core = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    core.normalizer = normalizers.BertNormalizer(lowercase=True)
    core.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    core.decoder = decoders.WordPiece()
    core.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return BertTokenizerFast(tokenizer_object=core, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]", model_max_length=64)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with a word-level vocabulary, saved like a hub checkpoint."""
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = tiny_tokenizer()
    config = BertConfig(vocab_size=len(_vocab()), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def rows() -> pd.DataFrame:
    return make_rows()


@pytest.fixture(scope="session")
def data_csv(tmp_path_factory, rows) -> Path:
    path = tmp_path_factory.mktemp("data") / "tickets.csv"
    rows.to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, tiny_model_dir, data_csv) -> Path:
    """One small model trained once and shared by the tests that only read it."""
    from bertfit.training.run import train

    out = tmp_path_factory.mktemp("trained") / "model"
    train(data_csv, out, model=str(tiny_model_dir), epochs=5, learning_rate=1e-2, patience=0, batch_size=8,
          progress=False)
    return out


def softmax_rows(rng: np.random.Generator, y: np.ndarray, classes: int, signal: float = 2.0) -> np.ndarray:
    logits = rng.normal(size=(len(y), classes))
    logits[np.arange(len(y)), y] += signal
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def multi_label_case(seed: int = 2):
    """Synthetic multi-label truth and probabilities over 5 labels, one of them never present."""
    rng = np.random.default_rng(seed)
    names = ["urgent", "billing", "tech", "sales", "never"]
    truth = rng.random((120, 5)) < np.array([0.3, 0.5, 0.4, 0.2, 0.0])  # "never" has no positive row
    proba = np.clip(0.55 * truth + 0.6 * rng.random(truth.shape) - 0.05, 0, 1)
    labels = [[n for n, t in zip(names, row, strict=True) if t] for row in truth]
    return names, truth, proba, labels


def labelled(per_class: dict[str, int], prefix: str = "") -> pd.DataFrame:
    """Unique texts, ``per_class[label]`` rows of each label, interleaved."""
    rows = [{"text": f"{prefix}{label} example number {i}", "label": label}
            for label, count in per_class.items() for i in range(count)]
    return pd.DataFrame(rows).sample(frac=1, random_state=0).reset_index(drop=True)


def expect_data_error(call: Callable[[], object], *fragments: str) -> str:
    """Run ``call``; it must raise a one-line DataError containing every fragment."""
    with pytest.raises(DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def assert_kept_by_accuracy_then_loss(kept: dict, history: list[dict]) -> None:
    """The kept epoch has the best validation accuracy, and the lowest loss among epochs tied with it."""
    best_accuracy = max(h["validation"]["accuracy"] for h in history)
    assert kept["validation"]["accuracy"] == best_accuracy
    tied = [h["validation"]["loss"] for h in history if h["validation"]["accuracy"] == best_accuracy]
    assert round(kept["validation"]["loss"], 4) == round(min(tied), 4)


def stop_training(sent: int, after: str, data_csv: Path, model: Path, cwd: Path) -> tuple[int, str, str]:
    """Run a long ``bertfit train`` in a real process, send it signal ``sent`` once a stderr line holds
    ``after`` (an epoch's log), and return its exit code, stdout and stderr."""
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bertfit", "train", str(data_csv), "--model", str(model), "--out",
         str(cwd / "model"), "--epochs", "1000", "--patience", "0", "--batch-size", "8", "--max-length", "16"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
        # Ctrl-C as in a terminal: a suite started in the background (`make test &`) ignores SIGINT, and a child
        # would inherit that and never see the signal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = []
    try:
        deadline = time.monotonic() + 120
        for line in process.stderr:
            seen.append(line)
            if after in line or time.monotonic() > deadline:
                break
        assert any(after in line for line in seen), "".join(seen)
        process.send_signal(sent)
        out, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, out, "".join(seen) + rest


def emotion_lists():
    """A ``datasets.Dataset`` whose labels are lists of ClassLabel ids (joy, anger, fear), 32 rows."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=["joy", "anger", "fear"]))})
    ids = [[0], [1, 2], [2], [0, 1]] * 8
    return datasets.Dataset.from_dict({"text": [f"text number {i}" for i in range(len(ids))], "labels": ids},
                                      features=features)
