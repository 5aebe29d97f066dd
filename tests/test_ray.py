"""predict --engine ray: a local Ray (2 CPUs) gives, row by row, what plain predict gives; resumed runs too."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from bertfit.errors import DataError, OutputError, UsageError
from bertfit.model import TextClassifier
from conftest import make_rows

ray = pytest.importorskip("ray", reason="the ray extra: pip install 'bertfit[ray]'")

from bertfit.batch.ray_engine import predict_dataset, predict_files  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Three files of a few thousand rows in all, one per format, with a missing text among them."""
    folder = tmp_path_factory.mktemp("inputs")
    rows = pd.concat([make_rows(per_class=400, seed=seed) for seed in (1, 2)], ignore_index=True)
    rows = rows.rename(columns={"text": "body"})[["body"]]
    rows.loc[7, "body"] = None
    parts = [rows.iloc[index].reset_index(drop=True) for index in np.array_split(np.arange(len(rows)), 3)]
    parts[0].to_parquet(folder / "a.parquet", index=False)
    parts[1].to_csv(folder / "b.csv", index=False)
    parts[2].to_json(folder / "c.jsonl", orient="records", lines=True)
    return folder, parts


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _expected(trained_dir, part):
    classifier = TextClassifier.from_pretrained(trained_dir)
    texts = ["" if value is None or (isinstance(value, float) and np.isnan(value)) else value for value in part["body"]]
    return list(classifier.predict_records(texts, 64))


def test_ray_gives_plain_predict_s_records_row_by_row_in_input_order(trained_dir, inputs, tmp_path):
    folder, parts = inputs
    summary = predict_files(trained_dir, str(folder / "*"), tmp_path / "out", text_col="body", workers=2)  # 1 runs
    assert summary == {"inputs": 3, "scored": 3, "skipped": 0, "rows": sum(map(len, parts)),
                       "output": str(tmp_path / "out")}
    for name, part in zip(("a", "b", "c"), parts, strict=True):
        got, expected = _read(tmp_path / "out" / f"{name}.jsonl"), _expected(trained_dir, part)
        assert [r["id"] for r in got] == list(range(len(part)))
        assert [r["text"] for r in got] == [r["text"] for r in expected]
        assert [r["label"] for r in got] == [r["label"] for r in expected]
        for mine, theirs in zip(got, expected, strict=True):
            if theirs.get("empty"):
                assert mine["empty"] is True and mine["probabilities"] is None
            else:
                assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-5)
    assert any(r.get("empty") for r in _read(tmp_path / "out" / "a.jsonl"))  # the missing text kept its place


def test_a_resumed_run_scores_only_what_is_missing_and_the_same(trained_dir, inputs, tmp_path):
    folder, parts = inputs
    out = tmp_path / "out"
    predict_files(trained_dir, folder, out, text_col="body")
    first = (out / "b.jsonl").read_text()
    (out / "b.jsonl").unlink()  # as if the run had stopped before writing it
    with pytest.raises(UsageError, match="pass --resume to skip their inputs, or --overwrite"):
        predict_files(trained_dir, folder, out, text_col="body")
    summary = predict_files(trained_dir, folder, out, text_col="body", resume=True)
    assert (summary["scored"], summary["skipped"]) == (1, 2)
    assert (out / "b.jsonl").read_text() == first
    assert not list(out.glob(".*"))  # no staging file left behind


def test_predict_dataset_is_the_python_entry(trained_dir, inputs):
    import bertfit

    folder, parts = inputs
    assert bertfit.predict_dataset is predict_dataset
    dataset = predict_dataset(trained_dir, folder / "c.jsonl", text_col="body")
    rows = dataset.take_all()
    records = [json.loads(r["record"]) for r in rows]
    assert [r["label"] for r in records] == [r["label"] for r in _expected(trained_dir, parts[2])]
    assert {r["path"] for r in rows} == {str((folder / "c.jsonl").resolve())}


def test_the_pool_leaves_a_cpu_for_reading():
    from bertfit.batch.ray_engine import _pool_size

    assert [_pool_size(cpus, None, 1) for cpus in (1, 2, 4, 16)] == [1, 1, 3, 15]
    assert _pool_size(16, 4, 1) == 4 and _pool_size(16, None, 4) == 3 and _pool_size(2, 5, 1) == 1


def test_bad_requests_fail_in_one_clear_line(trained_dir, inputs, tmp_path):
    folder, _ = inputs
    with pytest.raises(DataError, match="no input files match"):
        predict_files(trained_dir, str(tmp_path / "nothing-*.parquet"), tmp_path / "out")
    with pytest.raises(UsageError, match="holds input files"):
        predict_files(trained_dir, folder, folder)
    odd = tmp_path / "odd"
    odd.mkdir()
    pd.DataFrame({"zzz": ["a text"]}).to_parquet(odd / "odd.parquet", index=False)
    with pytest.raises(DataError, match="which column holds the text"):
        predict_files(trained_dir, odd, tmp_path / "out2")
    lists = tmp_path / "lists"
    lists.mkdir()
    pd.DataFrame({"text": [["a", "text"], ["another"]]}).to_parquet(lists / "lists.parquet", index=False)
    with pytest.raises(DataError, match="column 'text' of .*lists.parquet holds list<.*> values, not texts"):
        predict_files(trained_dir, lists, tmp_path / "out3")  # plain predict refuses them too, not str(list)
    assert not (tmp_path / "out3").exists()


def test_outputs_into_the_model_folder_are_refused_before_any_work(trained_dir, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(trained_dir, model)
    before = (model / "test.jsonl").read_bytes()
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"text": ["a text to score"]}).to_csv(data / "test.csv", index=False)
    for output in (model, model / "scored"):
        with pytest.raises(OutputError, match="is inside the model folder"):
            predict_files(model, data, output, overwrite=True)
    assert (model / "test.jsonl").read_bytes() == before and not (model / "scored").exists()


def test_cli_engine_ray_prints_one_json_summary(trained_dir, inputs, tmp_path, capsys):
    from bertfit.cli import main

    folder, parts = inputs
    code = main(["predict", str(trained_dir), "--engine", "ray", "--input", str(folder / "a.parquet"),
                 "--output", str(tmp_path / "o"), "--text-col", "body", "--quiet"])
    assert code == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"] == len(parts[0])
    code = main(["predict", str(trained_dir), "some text", "--engine", "ray", "--quiet"])
    assert code != 0 and "--engine ray scores files" in capsys.readouterr().err


def test_a_file_without_rows_gets_an_empty_output_and_a_path_column_is_not_read_as_text(trained_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    # Ray Data names each row's file under "path": a column of that name in the data is shadowed by it.
    pd.DataFrame({"path": ["/a/b", "/c"], "body": ["one text", "another"]}).to_parquet(folder / "a.parquet")
    pd.DataFrame({"path": pd.Series([], dtype=str), "body": pd.Series([], dtype=str)}).to_parquet(folder / "b.parquet")
    summary = predict_files(trained_dir, folder, tmp_path / "out", text_col="body")
    assert summary["rows"] == 2 and (tmp_path / "out" / "b.jsonl").read_text() == ""
    assert [r["text"] for r in _read(tmp_path / "out" / "a.jsonl")] == ["one text", "another"]
    with pytest.raises(UsageError, match="cannot read a text column named 'path'"):
        predict_files(trained_dir, folder, tmp_path / "out2", text_col="path")
    assert not (tmp_path / "out2").exists()


def test_csv_texts_of_digits_are_scored_as_written(trained_dir, tmp_path):
    path = tmp_path / "codes.csv"
    path.write_text("body,n\n007,1\n0120,2\n42,3\n", encoding="utf-8")  # Ray's reader alone would read 7, 120, 42
    records = [json.loads(row["record"]) for row in predict_dataset(trained_dir, path, text_col="body").take_all()]
    assert [r["text"] for r in records] == ["007", "0120", "42"]
    expected = TextClassifier.from_pretrained(trained_dir).predict_records(["007", "0120", "42"], 64)
    assert [r["label"] for r in records] == [r["label"] for r in expected]
