"""Hub names: a model or data set that cannot load fails in seconds, before the data is read."""

from __future__ import annotations

import time

import pytest

from bertfit import hub
from bertfit.errors import DataError, ModelLoadError
from bertfit.training.run import train


@pytest.fixture
def unreachable_hub(monkeypatch):
    """A hub endpoint nothing listens on (HF_HUB_OFFLINE not set): the case a machine without a network meets."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    hub.hub_reachable.cache_clear()
    yield
    hub.hub_reachable.cache_clear()


def test_an_uncached_hub_model_without_a_network_fails_before_the_data_is_read(unreachable_hub, tmp_path):
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as caught:  # not the DataError the missing file would give
        train(tmp_path / "not-read.csv", tmp_path / "m", model="no-such-org/no-such-model", progress=False)
    assert time.perf_counter() - started < 10
    message = str(caught.value)
    assert "no-such-org/no-such-model" in message and "unreachable" in message and "--model PATH" in message
    assert list(tmp_path.iterdir()) == []


def test_the_hub_is_asked_once_per_process(unreachable_hub, monkeypatch):
    calls = []
    real = hub.socket.create_connection
    monkeypatch.setattr(hub.socket, "create_connection", lambda *a, **k: calls.append(a) or real(*a, **k))
    for _ in range(3):
        assert hub.hub_reachable() is False
    assert len(calls) == 1


def test_a_name_that_is_no_hub_name_is_refused(unreachable_hub):
    with pytest.raises(ModelLoadError, match="neither a local folder nor a valid hub name"):
        hub.check_hub_name("not a/valid name/at all")


def test_a_local_folder_needs_no_hub(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(hub, "hub_reachable", lambda: pytest.fail("asked the hub about a local folder"))
    assert hub.check_hub_name(str(tiny_model_dir)) is False
    assert hub.check_hub_name(None) is False


def test_an_hf_dataset_without_a_network_fails_fast(unreachable_hub, tmp_path):
    from bertfit.data.cleaning import prepare

    started = time.perf_counter()
    with pytest.raises(DataError, match="unreachable.*save_to_disk"):
        prepare("hf:no-such-org/no-such-data")
    assert time.perf_counter() - started < 10
