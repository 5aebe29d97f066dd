"""bertfit export and the predict backends: ONNX folders predict as the PyTorch model does, without torch."""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="pip install 'bertfit[onnx]' for the export tests")
pytest.importorskip("onnxscript", reason="pip install 'bertfit[onnx]' for the export tests")

from bertfit.backends import LightTokenizer, resolve_backend  # noqa: E402
from bertfit.cli import main  # noqa: E402
from bertfit.encoding import encode  # noqa: E402
from bertfit.errors import ModelLoadError, OutputError, UsageError  # noqa: E402
from bertfit.export import onnx as export  # noqa: E402
from bertfit.model import TextClassifier  # noqa: E402
from bertfit.training.run import train  # noqa: E402
from conftest import tiny_tokenizer  # noqa: E402
from test_tasks import multi_label_rows, pair_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ONE_EPOCH = {"epochs": 1, "learning_rate": 1e-2, "batch_size": 8, "patience": 0, "baseline": False, "report": False}
# Lengths from one token to past the saved max_length (64), so padded batches mix lengths.
TEXTS = ["refund", "crash error bug install update login password screen slow broken freeze reboot " * 8,
         "buy quote demo plan", "please help", "my screen is broken again today", "discount please now"]


@pytest.fixture(scope="module")
def onnx_dir(trained_dir, tmp_path_factory) -> Path:
    """The session's trained model exported to fp32 ONNX once, for the tests that only read it."""
    return export.export(trained_dir, tmp_path_factory.mktemp("export") / "onnx").model_dir


# -- the exported folder ----------------------------------------------------------------------------


def test_export_writes_a_self_describing_onnx_folder(onnx_dir, trained_dir):
    import onnx

    names = {p.name for p in onnx_dir.iterdir()}
    assert {"model.onnx", "tokenizer.json", "tokenizer_config.json", "config.json", "bertfit.json",
            "test.jsonl"} <= names
    assert not names & {"model.safetensors", "pytorch_model.bin"}
    assert not [p for p in onnx_dir.parent.iterdir() if p.name.startswith(".")]  # no staging left beside
    meta = json.loads((onnx_dir / "bertfit.json").read_text())
    source = json.loads((trained_dir / "bertfit.json").read_text())
    assert meta["backend"] == "onnx" and meta["labels"] == source["labels"]
    assert meta["calibration"] == source["calibration"] and meta["metrics"] == source["metrics"]
    record = meta["export"]
    assert record["format"] == "onnx" and record["quantize"] is None and record["opset"] >= 17
    assert record["check"]["metric"] == "accuracy" and record["check"]["drop"] <= 0.01
    graph = onnx.load(str(onnx_dir / "model.onnx"))
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input}
    assert set(inputs) == {"input_ids", "attention_mask", "token_type_ids"}
    assert all(len(dims) == 2 and all(isinstance(d, str) for d in dims) for dims in inputs.values())  # both dynamic
    assert [o.name for o in graph.graph.output] == ["logits"]


def test_a_bert_export_fuses_attention_for_onnxruntime_and_no_fuse_keeps_plain_operators(onnx_dir, trained_dir,
                                                                                           tmp_path):
    import onnx

    record = json.loads((onnx_dir / "bertfit.json").read_text())["export"]
    layers = TextClassifier.from_pretrained(trained_dir).model.config.num_hidden_layers
    assert record["fused_operators"]["Attention"] == layers and record["exporter"] == export.FUSED_EXPORTER
    assert "Attention" in {node.op_type for node in onnx.load(str(onnx_dir / "model.onnx")).graph.node}
    plain = export.export(trained_dir, tmp_path / "plain", fuse=False)
    graph = onnx.load(str(plain.model_dir / "model.onnx")).graph
    assert {node.domain for node in graph.node} <= {"", "ai.onnx"}  # no com.microsoft operators
    meta = json.loads((plain.model_dir / "bertfit.json").read_text())["export"]
    assert meta["fused_operators"] is None and "dynamo" in meta["exporter"]
    fused, unfused = (TextClassifier.from_pretrained(folder).logits(TEXTS, batch_size=4)
                      for folder in (onnx_dir, plain.model_dir))
    np.testing.assert_allclose(fused, unfused, atol=1e-4)


def test_a_fusion_that_fails_falls_back_to_the_plain_export(trained_dir, tmp_path, monkeypatch):
    from onnxruntime.transformers import optimizer

    def broken(*args, **kwargs):
        raise RuntimeError("no pattern matched")

    monkeypatch.setattr(optimizer, "optimize_model", broken)
    result = export.export(trained_dir, tmp_path / "fallback")
    meta = json.loads((result.model_dir / "bertfit.json").read_text())["export"]
    assert meta["fused_operators"] is None and "dynamo" in meta["exporter"]
    assert result.check["agreement"] == 1.0


@pytest.mark.parametrize("fuse", [True, False])
def test_a_full_disk_while_exporting_names_the_output_not_the_exporter(trained_dir, tmp_path, monkeypatch, fuse):
    import torch

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full)
    with pytest.raises(OutputError) as caught:
        export.export(trained_dir, tmp_path / "onnx", fuse=fuse)
    message = str(caught.value)
    assert message.startswith(f"cannot write {tmp_path / 'onnx'} (No space left on device)"), message
    assert "torch.onnx" not in message and caught.value.exit_code == 2
    assert list(tmp_path.iterdir()) == []


def test_onnx_predicts_as_torch_does(onnx_dir, trained_dir):
    torch_model = TextClassifier.from_pretrained(trained_dir, backend="torch")
    onnx_model = TextClassifier.from_pretrained(onnx_dir)  # auto: model.onnx and onnxruntime present
    assert onnx_model.backend.name == "onnx" and torch_model.backend.name == "torch"
    np.testing.assert_allclose(onnx_model.logits(TEXTS, batch_size=4), torch_model.logits(TEXTS, batch_size=4),
                               atol=1e-4)
    np.testing.assert_allclose(onnx_model.logits(TEXTS[:1], batch_size=1), torch_model.logits(TEXTS[:1]), atol=1e-4)
    assert onnx_model.predict(TEXTS) == torch_model.predict(TEXTS)
    onnx_records, torch_records = list(onnx_model.predict_records(TEXTS)), list(torch_model.predict_records(TEXTS))
    assert [r["label"] for r in onnx_records] == [r["label"] for r in torch_records]
    assert onnx_records[0]["score"] == pytest.approx(torch_records[0]["score"], abs=1e-4)
    assert onnx_model.logits([]).shape == (0, 3)


def test_batches_side_by_side_give_each_text_its_own_row(onnx_dir):
    side_by_side = TextClassifier.from_pretrained(onnx_dir)  # default: one thread per batch, a batch per core
    one_at_a_time = TextClassifier.from_pretrained(onnx_dir, threads=1)
    side_by_side.backend.parallel = 3  # more batches at once than this machine may have cores
    assert one_at_a_time.backend.parallel == 1
    texts = [f"{text} {'again ' * (i % 7)}" for i, text in enumerate(TEXTS * 9)]  # lengths vary: sorted batches
    np.testing.assert_allclose(side_by_side.logits(texts, batch_size=2), one_at_a_time.logits(texts, batch_size=2),
                               atol=1e-5)


@pytest.fixture(scope="module")
def task_models(tiny_model_dir, rows, tmp_path_factory):
    """A pair, a multi-label and a window model, one epoch each (the parity test needs no accuracy)."""
    folder = tmp_path_factory.mktemp("tasks")
    long_rows = rows.copy()
    long_rows["text"] = long_rows["text"] + " " + long_rows["text"].str.repeat(4)  # about 30 tokens each
    made = {}
    for kind, data, extra in (("pair", pair_rows(), {}), ("multi-label", multi_label_rows(), {}),
                              ("window", long_rows, {"max_length": 12, "long_text": "window", "stride": 2})):
        train(data, folder / kind, model=str(tiny_model_dir), progress=False, **ONE_EPOCH, **extra)
        made[kind] = folder / kind
    return made


@pytest.mark.parametrize("kind", ["pair", "multi-label", "window"])
def test_exported_task_models_predict_the_same(task_models, kind, tmp_path):
    result = export.export(task_models[kind], tmp_path / "onnx", max_drop=0.0)
    torch_model = TextClassifier.from_pretrained(task_models[kind], backend="torch")
    onnx_model = TextClassifier.from_pretrained(result.model_dir, backend="onnx")
    texts = [r["text"] for r in map(json.loads, (task_models[kind] / "test.jsonl").read_text().splitlines())]
    pairs = None
    if kind == "pair":
        pairs = [json.loads(line)["text_pair"] for line in (task_models[kind] / "test.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(onnx_model.logits(texts, 4, pairs=pairs), torch_model.logits(texts, 4, pairs=pairs),
                               atol=1e-4)
    assert onnx_model.predict(texts, pairs=pairs) == torch_model.predict(texts, pairs=pairs)
    assert result.check["metric"] == ("f1_micro" if kind == "multi-label" else "accuracy")
    validation = [line for line in (task_models[kind] / "validation.jsonl").read_text().splitlines() if line]
    assert result.check["rows"] == len(validation) and result.check["drop"] == 0
    if kind == "window":
        assert onnx_model.meta["long_text"]["mode"] == "window"
        assert len(encode(onnx_model.tokenizer, texts[:1], max_length=12, long_text="window", stride=2)) > 1
    if kind == "multi-label":
        records = list(onnx_model.predict_records(texts[:2], threshold=0.01))
        assert all(isinstance(r["labels"], list) and "label" not in r for r in records)


def test_int8_export_is_smaller_and_checked(trained_dir, onnx_dir, tmp_path):
    result = export.export(trained_dir, tmp_path / "int8", quantize="int8", max_drop=1.0)
    assert result.size_after < (onnx_dir / "model.onnx").stat().st_size
    meta = json.loads((result.model_dir / "bertfit.json").read_text())
    assert meta["export"]["quantize"] == "int8" and meta["export"]["weight_bits"] in (7, 8)
    assert {"torch", "onnx", "drop", "agreement", "max_abs_logit_diff"} <= set(result.check)
    # int8 is an approximation, but of the same model: its decisions are fp32's on nearly every row
    assert result.check["agreement"] >= 0.98 and result.check["max_abs_logit_diff"] < 0.1
    texts = [json.loads(line)["text"] for line in (trained_dir / "test.jsonl").read_text().splitlines()]
    int8_labels = TextClassifier.from_pretrained(result.model_dir).predict(texts)
    fp32_labels = TextClassifier.from_pretrained(trained_dir, backend="torch").predict(texts)
    assert np.mean([a == b for a, b in zip(int8_labels, fp32_labels, strict=True)]) >= 0.98
    classifier = TextClassifier.from_pretrained(result.model_dir)
    assert classifier.predict_proba(TEXTS).shape == (len(TEXTS), 3)


def test_int8_emb4_stores_the_embedding_tables_in_4_bits(trained_dir, tmp_path):
    import onnx

    int8 = export.export(trained_dir, tmp_path / "int8", quantize="int8", max_drop=1.0)
    emb4 = export.export(trained_dir, tmp_path / "emb4", quantize="int8-emb4", max_drop=1.0)
    ops = {node.op_type for node in onnx.load(str(emb4.model_dir / "model.onnx")).graph.node}
    assert "GatherBlockQuantized" in ops
    word = TextClassifier.from_pretrained(trained_dir).model.bert.embeddings.word_embeddings.weight

    def word_table_bytes(folder: Path) -> int:  # the stored table and its scales, as written in the file
        graph = onnx.load(str(folder / "model.onnx")).graph
        return sum(len(t.raw_data) for t in graph.initializer if "word_embeddings" in t.name)

    # the word embeddings shrink from 1 byte to half a byte (plus a 2-byte scale per block) a value
    saved = word.numel() * (1 - 0.5 - 2 / export.EMBEDDING_BLOCK)
    assert word_table_bytes(int8.model_dir) - word_table_bytes(emb4.model_dir) > 0.8 * saved
    assert json.loads((emb4.model_dir / "bertfit.json").read_text())["export"]["quantize"] == "int8-emb4"
    assert emb4.check["agreement"] >= 0.9
    assert emb4.model_dir.name == "emb4"
    default = export.export(trained_dir, quantize="int8-emb4", max_drop=1.0)
    try:
        assert default.model_dir.name == f"{trained_dir.name}-onnx-int8-emb4"
    finally:
        shutil.rmtree(default.model_dir)


# -- the check refuses, and nothing is written --------------------------------------------------------


def _break_the_head(path: Path, embeddings_4bit: bool = False) -> None:
    """Stand-in for a quantizer that ruins the model: the classifier weights zeroed, so one class always wins."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for tensor in model.graph.initializer:
        if "classifier.weight" in tensor.name:
            tensor.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(tensor)), tensor.name))
    onnx.save(model, str(path))


def test_a_failing_check_writes_nothing_and_prints_both_scores(trained_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "quantize_int8", _break_the_head)
    out = tmp_path / "refused"
    code = main(["export", str(trained_dir), "--quantize", "int8", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "nothing written" in err and "--max-drop 0.01" in err
    assert "PyTorch model's" in err and err.count("accuracy") >= 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []  # no staging folder left


def test_cli_export_prints_sizes_scores_and_one_json_line(trained_dir, tmp_path, capsys):
    out = tmp_path / "cli-onnx"
    assert main(["export", str(trained_dir), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["model_dir"] == str(out) and summary["format"] == "onnx" and summary["quantize"] is None
    assert summary["size_before_bytes"] > 0 and summary["size_after_bytes"] > 0
    assert "(PyTorch)" in captured.err and "size:" in captured.err
    assert main(["export", str(trained_dir), "--out", str(out)]) == 2  # exists: --overwrite to replace
    assert "--overwrite" in capsys.readouterr().err


def test_the_export_check_decides_on_validation_never_on_test(trained_dir, tmp_path):
    result = export.export(trained_dir, tmp_path / "x")
    assert result.check["data"].endswith("validation.jsonl")
    validation = [line for line in (trained_dir / "validation.jsonl").read_text().splitlines() if line.strip()]
    assert result.check["rows"] == len(validation)
    for name in ("validation.jsonl", "test.jsonl"):  # the splits travel with the export
        assert (tmp_path / "x" / name).read_text() == (trained_dir / name).read_text()


def test_export_needs_rows_to_check_on(trained_dir, data_csv, tmp_path):
    bare = Path(shutil.copytree(trained_dir, tmp_path / "bare"))
    (bare / "validation.jsonl").unlink()  # an older folder keeps test.jsonl alone, which decides nothing
    with pytest.raises(UsageError, match="--data"):
        export.export(bare, tmp_path / "x")
    result = export.export(bare, tmp_path / "y", data=data_csv)  # the model's own columns, text and label
    assert result.check["data"] == str(data_csv) and result.check["rows"] == 60
    with pytest.raises(UsageError, match="--max-drop"):
        export.export(bare, tmp_path / "z", data=data_csv, max_drop=-0.1)
    with pytest.raises(UsageError, match="--quantize"):
        export.export(bare, tmp_path / "z", data=data_csv, quantize="int4")


# -- choosing a backend -------------------------------------------------------------------------------


def test_backend_choice_and_its_errors(onnx_dir, trained_dir, tmp_path, monkeypatch):
    assert resolve_backend(trained_dir) == "torch" and resolve_backend(onnx_dir) == "onnx"
    with pytest.raises(ModelLoadError, match="bertfit export"):
        TextClassifier.from_pretrained(trained_dir, backend="onnx")
    with pytest.raises(ModelLoadError, match="--backend onnx"):
        TextClassifier.from_pretrained(onnx_dir, backend="torch")
    with pytest.raises(UsageError, match="auto, torch, onnx"):
        TextClassifier.from_pretrained(onnx_dir, backend="tensorrt")
    both = Path(shutil.copytree(trained_dir, tmp_path / "both"))
    shutil.copy(onnx_dir / "model.onnx", both / "model.onnx")
    assert resolve_backend(both) == "onnx"
    monkeypatch.setattr("bertfit.backends.importable", lambda name: False)  # as if onnxruntime were missing
    assert resolve_backend(both) == "torch"
    with pytest.raises(UsageError, match="copy its folder"):
        TextClassifier.from_pretrained(onnx_dir).save_pretrained(tmp_path / "again")


def test_light_tokenizer_gives_the_ids_transformers_gives(tmp_path):
    hf = tiny_tokenizer()
    hf.save_pretrained(str(tmp_path))
    light = LightTokenizer.from_folder(tmp_path)
    long = " ".join(["invoice refund"] * 20 + ["crash error"] * 20)
    texts = ["Refund, please!", long, "", "crash"]
    for options in ({"max_length": 16}, {"max_length": 16, "long_text": "window", "stride": 4},
                    {"max_length": 18, "long_text": "head-tail"}):
        ours, theirs = encode(light, texts, **options), encode(hf, texts, **options)
        assert ours.features["input_ids"] == theirs.features["input_ids"]
        assert ours.features["attention_mask"] == theirs.features["attention_mask"]
        assert ours.owner.tolist() == theirs.owner.tolist()
    ours, theirs = encode(light, texts, ["a pair", long, "x", ""], max_length=16), \
        encode(hf, texts, ["a pair", long, "x", ""], max_length=16)
    assert ours.features["input_ids"] == theirs.features["input_ids"]
    assert ours.features["token_type_ids"] == theirs.features["token_type_ids"]
    padded = light.pad({"input_ids": [[2, 5, 3], [2, 3]], "attention_mask": [[1, 1, 1], [1, 1]]})
    assert padded["input_ids"].tolist() == [[2, 5, 3], [2, 3, hf.pad_token_id]]
    assert padded["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]


def test_onnx_prediction_never_imports_torch(onnx_dir, tmp_path):
    data = tmp_path / "holdout.csv"
    data.write_text("text,label\nrefund my card,billing\nthe screen froze,tech\n")
    script = textwrap.dedent(f"""
        import contextlib, io, json, sys
        from bertfit.model import TextClassifier
        from bertfit.cli import main
        classifier = TextClassifier.from_pretrained({str(onnx_dir)!r}, backend="onnx")
        labels = classifier.predict(["refund my card", "the screen froze"])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert main(["predict", {str(onnx_dir)!r}, "refund my card", "--quiet"]) == 0
            assert main(["evaluate", {str(onnx_dir)!r}, {str(data)!r}, "--quiet"]) == 0
        print(json.dumps({{"labels": labels, "cli": out.getvalue().splitlines(),
                          "torch": "torch" in sys.modules, "transformers": "transformers" in sys.modules}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.strip().splitlines()[-1])
    assert facts["torch"] is False and facts["transformers"] is False
    assert facts["labels"][0] in ("billing", "sales", "tech")
    assert json.loads(facts["cli"][0])["text"] == "refund my card"
    assert json.loads(facts["cli"][1])["rows"] == 2


# -- the README's section -----------------------------------------------------------------------------


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_export_commands_parse():
    import shlex

    from bertfit.cli import build_parser

    lines = [line.split(" # ")[0].strip() for line in readme_section("Export and predict backends").splitlines()]
    commands = [line for line in lines if line.startswith("bertfit ")]
    assert len(commands) >= 5
    for command in commands:
        assert build_parser().parse_args(shlex.split(command)[1:]).command in {"export", "predict", "evaluate"}


def test_readme_backend_example_runs(onnx_dir, tmp_path, monkeypatch):
    code = readme_section("Export and predict backends").split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "ticket-model-onnx").symlink_to(onnx_dir)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["fast"].backend.name == "onnx"
