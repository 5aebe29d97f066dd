"""bertfit.json as a typed record (bertfit.record): round trips, unknown keys kept, a real folder read whole."""

from __future__ import annotations

import json
import re

import pytest

from bertfit.errors import ModelLoadError
from bertfit.folder import read_meta, write_meta
from bertfit.record import FORMAT_VERSION, Calibration, DataReport, LongText, Task
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
    assert again["format_version"] == FORMAT_VERSION


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
