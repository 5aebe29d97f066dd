"""bertfit.json as a typed record (bertfit.record): round trips, unknown keys kept, a real folder read whole."""

from __future__ import annotations

import json
import re

import pytest

from bertfit.errors import ModelLoadError
from bertfit.folder import read_meta, write_meta
from bertfit.record import FORMAT_VERSION, PLAIN_FORMAT, Calibration, DataReport, LongText, Task
from bertfit.reporting.plots import NOT_RECORDED
from bertfit.reporting.report import render_html


def test_a_trained_folder_round_trips_through_the_record(trained_dir, tmp_path):
    written = json.loads((trained_dir / "bertfit.json").read_text())
    record = read_meta(trained_dir)
    assert record.task is Task.SINGLE_LABEL and not record.multi_label
    assert isinstance(record.long_text, LongText) and isinstance(record.calibration, Calibration)
    assert isinstance(record.data, DataReport) and record.data.too_long == {"train": 0, "validation": 0, "test": 0}
    assert record.extra == {}  # training writes no key the record does not know
    assert json.loads(json.dumps(record.to_dict())) == written


def test_unknown_keys_survive_a_load_and_save(tmp_path):
    values = {"format_version": FORMAT_VERSION, "labels": ["a", "b"], "task": "multi_label", "from_the_future": [1],
              "data": {"rows": {"train": 3}, "new_count": 7}}
    (tmp_path / "bertfit.json").write_text(json.dumps(values))
    record = read_meta(tmp_path)
    assert record.multi_label and record.extra == {"from_the_future": [1]} and record.data.extra == {"new_count": 7}
    write_meta(tmp_path, record)
    again = json.loads((tmp_path / "bertfit.json").read_text())
    assert again["from_the_future"] == [1] and again["data"]["new_count"] == 7 and again["task"] == "multi_label"
    assert again["format_version"] == PLAIN_FORMAT  # written as what it needs: no blend


@pytest.mark.parametrize("change, message", [
    ({"task": "several"}, "cannot read"),
    ({"long_text": "head-tail"}, "cannot read"),
    ({"labels": ["only"]}, "no valid 'labels'"),
])
def test_a_field_of_the_wrong_kind_is_a_damaged_folder(tmp_path, change, message):
    values = {"format_version": FORMAT_VERSION, "labels": ["a", "b"], **change}
    (tmp_path / "bertfit.json").write_text(json.dumps(values))
    with pytest.raises(ModelLoadError, match=message):
        read_meta(tmp_path)


def test_every_fact_the_report_shows_is_recorded_by_training(trained_dir):
    """The report reads the record's fields; on a folder training just wrote, none reads 'not recorded'."""
    page = render_html(read_meta(trained_dir), None, "no test rows scored here")
    for section in ("training", "data", "model", "settings", "versions"):
        body = page[page.index(f'<section id="{section}">'):]
        body = body[:body.index("</section>")]
        missing = re.findall(rf"<tr><th>([^<]*)</th><td>{NOT_RECORDED}</td>", body)
        assert missing == [], f"{section}: {missing}"
        assert f"{NOT_RECORDED}." not in body, section
    assert re.search(r"<th>texts over max length</th><td>[^<]*train[^<]*0", page)


def _edited(trained_dir, tmp_path, edit) -> object:
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(trained_dir, folder)
    meta = json.loads((folder / "bertfit.json").read_text())
    edit(meta)
    (folder / "bertfit.json").write_text(json.dumps(meta))
    if meta.get("task") == "multi_label":  # config.json says the task too: a multi-label folder's says so
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "problem_type": "multi_label_classification"}))
    return folder


def _set(path: str, value):
    """An edit of bertfit.json setting ``path`` (dotted for nested objects) to ``value``."""
    def edit(meta):
        *parents, name = path.split(".")
        target = meta
        for part in parents:
            target = target[part]
        target[name] = value
    return edit


def _multi_label(thresholds):
    return lambda meta: meta.update(task="multi_label", thresholds=thresholds)


def _window(stride):
    return lambda meta: meta["long_text"].update(mode="window", stride=stride)


@pytest.mark.parametrize("edit, named", [
    (_set("max_length", -5), "max_length is -5; it must be a whole number from 4 to 64"),
    (_set("max_length", 100000), "64, the model's limit (config.json's max_position_embeddings"),
    (_set("max_length", 3), "max_length is 3"),  # under the special tokens and two of text
    (_set("max_length", "16"), "max_length is '16'"),
    (_set("max_length", True), "max_length is True"),
    (_set("calibration.temperature", "x"), "calibration.temperature is 'x'"),
    (_set("calibration.temperature", 0), "calibration.temperature is 0"),
    (_set("calibration.temperature", 1e-300), "calibration.temperature is 1e-300"),
    (_set("calibration.temperature", -1.5), "calibration.temperature is -1.5"),
    (_multi_label({"billing": 2}), "thresholds is {'billing': 2}"),
    (_multi_label([0.5, 0.5, 2]), "thresholds is [0.5, 0.5, 2]; it must be a list of 3 numbers from 0 to 1"),
    (_multi_label([0.5, 0.5]), "thresholds is [0.5, 0.5]"),
    (_multi_label([0.5, 0.5, True]), "thresholds is [0.5, 0.5, True]"),
    (_window(1000), "long_text.stride is 1000; with max_length 64 it must be below 62"),
    (_window(62), "long_text.stride is 62"),
    (_window(-1), "long_text.stride is -1"),
    (_set("long_text.mode", "middle"), "long_text.mode is 'middle'"),
    (_set("long_text.pool", "sum"), "long_text.pool is 'sum'"),
    (_set("precision", "fp8"), "precision is 'fp8'"),
    (_set("text_col", 5), "text_col is 5"),
    (_set("settings", [1]), "settings is [1]"),
])
def test_values_prediction_cannot_use_are_a_damaged_folder(trained_dir, tmp_path, edit, named):
    folder = _edited(trained_dir, tmp_path, edit)
    with pytest.raises(ModelLoadError) as info:
        read_meta(folder)
    message = str(info.value)
    assert message.startswith(f"cannot load the model in {folder}: bertfit.json is damaged or incomplete (")
    assert named in message and "copy the whole folder again" in message and "\n" not in message
    assert "--" not in message  # no flag the user never passed is blamed


@pytest.mark.parametrize("edit", [_window(61), _window(0), _set("long_text.stride", 1000),  # read in window mode only
                                  _multi_label([0.0, 0.3, 1.0]), _set("calibration.temperature", 25),
                                  _set("max_length", 4), _set("max_length", 64)])
def test_values_at_the_edges_still_load(trained_dir, tmp_path, edit):
    assert read_meta(_edited(trained_dir, tmp_path, edit)) is not None
