"""bertfit serve: the HTTP API in-process (FastAPI's TestClient), batching under real concurrency, the
limits, the CLI, and the try-it page in headless Chromium against a live server."""

from __future__ import annotations

import asyncio
import functools
import html as html_lib
import http.client
import importlib.util
import json
import logging
import re
import socket
import urllib.parse
from pathlib import Path

import pytest

from conftest import load_screenshot_script

pytest.importorskip("fastapi", reason="pip install 'bertfit[serve]' for the serving tests")
pytest.importorskip("uvicorn", reason="pip install 'bertfit[serve]' for the serving tests")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402

from bertfit.cli import main  # noqa: E402
from bertfit.model import TextClassifier  # noqa: E402
from bertfit.serving import app as serve  # noqa: E402
from bertfit.serving.app import ServeConfig, create_app  # noqa: E402
from conftest import tiny_tokenizer  # noqa: E402
from serving import LABELS, CliServer, LiveServer, fake_classifier, get, post, run_all  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


screenshots = load_screenshot_script()


def expected_label(text: str) -> str:
    return LABELS[tiny_tokenizer()(text)["input_ids"][1] % len(LABELS)]


@pytest.fixture(autouse=True)
def restore_bertfit_logging():
    """main() points the "bertfit" logger at this test's captured stderr; later servers' threads must not log there."""
    logger = logging.getLogger("bertfit")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(scope="module")
def classifier(trained_dir) -> TextClassifier:
    return TextClassifier.from_pretrained(trained_dir)


@pytest.fixture(scope="module")
def client(classifier, trained_dir):
    config = ServeConfig(max_texts=8, max_chars=200, max_body_bytes=4000)
    with TestClient(create_app(classifier, config, str(trained_dir))) as test_client:
        yield test_client


# -- the API --------------------------------------------------------------------------------------


def test_predict_answers_what_bertfit_predict_prints(client, classifier):
    texts = ["refund my card please", "the screen froze again", "a quote for more seats"]
    response = client.post("/predict", json={"texts": texts})
    assert response.status_code == 200
    records = response.json()["predictions"]
    expected = list(classifier.predict_records(texts))
    assert [r["text"] for r in records] == texts
    assert [r["label"] for r in records] == [r["label"] for r in expected]
    for got, want in zip(records, expected, strict=True):
        assert set(got) == set(want) == {"text", "label", "score", "probabilities"}
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)


def test_health_info_docs_and_page(client, trained_dir):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["model_dir"] == trained_dir.name  # the folder's name: /info tells no filesystem path
    meta = json.loads((trained_dir / "bertfit.json").read_text())
    assert info["labels"] == LABELS and info["task"] == "single_label" and info["backend"] == "torch"
    assert info["metrics"] == meta["metrics"]
    assert info["versions"]["serving"]["bertfit"] and info["versions"]["trained_with"] == meta["versions"]
    assert info["limits"]["max_texts"] == 8 and "batches" in info["batching"]
    assert client.get("/docs").status_code == 200
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="text"' in page.text and 'id="bars"' in page.text


def test_the_docs_page_is_plain_html_that_needs_no_internet(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    page = docs.text
    for shown in ("/predict", "POST", "Classify texts", "texts", "threshold", "required", "413", "422", "/health",
                  "/info", 'href="openapi.json"'):
        assert shown in page, shown
    assert not re.search(r"https?://|<script|<link|cdn", page, re.I), "the docs page loads something from elsewhere"
    assert client.get("/redoc").status_code == 404  # FastAPI's other CDN page is gone too


@pytest.mark.parametrize("path", ["/", "/health", "/info", "/docs"])
def test_head_answers_as_get_does(client, path):
    assert client.head(path).status_code == 200


def test_head_over_http_has_headers_and_no_body():
    from bertfit.serving.http_protocol import http_with_deadline

    server = LiveServer(create_app(fake_classifier()), http=functools.partial(http_with_deadline, 5.0))  # as serve
    with server as live, socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(b"HEAD / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/html" in head and body == b""


def test_info_shows_folder_names_not_paths():
    classifier = fake_classifier()
    classifier.record.export = {"format": "onnx", "source": "/home/someone/models/tickets", "opset": 18,
                                 "check": {"data": "/home/someone/data/test.jsonl", "metric": "accuracy"}}
    with TestClient(create_app(classifier, model_dir="/srv/private/models/tickets-onnx")) as absolute:
        answer = absolute.get("/info")
    info = answer.json()
    assert info["model_dir"] == "tickets-onnx"
    assert info["export"]["source"] == "tickets" and info["export"]["check"]["data"] == "test.jsonl"
    assert info["export"]["opset"] == 18 and info["export"]["check"]["metric"] == "accuracy"  # the rest is kept
    assert "/home/" not in answer.text and "/srv/" not in answer.text


@pytest.mark.parametrize("body", [
    {"text": ["a"]},  # texts missing
    {"texts": "not a list"},
    {"texts": [1, 2]},
    {"texts": ["a"], "threshold": "high"},
    ["a"],
    b'{"texts": ["a"',  # invalid JSON
    b"",
    b'{"texts": ["\xff"]}',  # not UTF-8
    {"texts": ["refund " * 25] * 30},  # 413: over the 4000-byte limit
], ids=["missing", "not-a-list", "not-strings", "threshold-text", "not-an-object", "invalid-json", "no-body",
        "not-utf8", "too-large"])
def test_every_4xx_detail_is_one_line_of_text(client, body):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post("/predict", content=content, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and detail, detail
    assert response.status_code == 413 or "send" in detail  # each names the fix


def test_a_slow_body_is_a_408_with_one_line_of_text():
    with LiveServer(create_app(fake_classifier(), ServeConfig(read_timeout=0.3))) as live, \
            socket.create_connection(("127.0.0.1", live.port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                     b"content-length: 100\r\n\r\n{\"texts\": [")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 408
        detail = json.loads(response.read())["detail"]
    assert isinstance(detail, str) and "--read-timeout" in detail


@pytest.mark.parametrize("body, status, words", [
    ({"texts": [f"text {i}" for i in range(9)]}, 422, ["9 texts", "limit is 8", "--max-texts 9"]),
    ({"texts": ["ok", "x" * 201]}, 422, ["text 1 has 201 characters", "limit is 200", "--max-chars 201"]),
    ({"texts": []}, 422, ["texts is empty"]),
    ({"texts": ["ok", "fine", ""]}, 422, ["text 2 is empty", "send non-empty texts"]),  # training drops them
    ({"texts": ["ok", " \n\t"]}, 422, ["text 1 is empty (whitespace only)", "send non-empty texts"]),
    ({"texts": ["a"], "pairs": ["b"]}, 422, ["single texts", "pairs"]),
    ({"texts": ["a"], "threshold": 0.3}, 422, ["multi-label"]),
])
def test_limits_and_bad_requests_are_clear_422s(client, body, status, words):
    response = client.post("/predict", json=body)
    assert response.status_code == status
    assert all(word in response.json()["detail"] for word in words), response.json()


def test_malformed_json_and_wrong_types_are_422(client):
    assert client.post("/predict", content=b'{"texts": ["a"', headers={"content-type": "application/json"}
                       ).status_code == 422
    assert client.post("/predict", json={"texts": "not a list"}).status_code == 422
    assert client.post("/predict", json={"texts": [1, 2]}).status_code == 422
    assert client.post("/predict", json={"text": ["a"]}).status_code == 422
    # JSON sent as text/plain: FastAPI hands over bytes, answered with the header to send
    response = client.post("/predict", content=b'{"texts": ["a"]}', headers={"content-type": "text/plain"})
    assert response.status_code == 422 and "content-type: application/json" in response.json()["detail"]
    for threshold in (True, "0.5"):  # pydantic would read them as 1.0 and 0.5
        response = client.post("/predict", json={"texts": ["a"], "threshold": threshold})
        assert response.status_code == 422 and "threshold" in response.json()["detail"]


def test_a_body_over_the_limit_is_413_declared_or_streamed(client):
    big = json.dumps({"texts": ["refund " * 25] * 30}).encode()  # about 5 kB, over the 4000-byte limit
    response = client.post("/predict", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "--max-body-bytes" in response.json()["detail"]
    chunks = (big[i:i + 1000] for i in range(0, len(big), 1000))  # no Content-Length: counted as it arrives
    response = client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "limit of 4000" in response.json()["detail"]
    assert client.get("/health").status_code == 200  # the server lives on


def test_multi_label_and_pair_models_answer_in_their_shape():
    with TestClient(create_app(fake_classifier("multi_label"))) as multi:
        records = multi.post("/predict", json={"texts": ["refund", "crash"]}).json()["predictions"]
        assert all(isinstance(r["labels"], list) and "label" not in r for r in records)
        assert records[0]["labels"] == [expected_label("refund")]
        everything = multi.post("/predict", json={"texts": ["refund"], "threshold": 0.01}).json()["predictions"]
        assert everything[0]["labels"] == LABELS
        assert multi.post("/predict", json={"texts": ["refund"], "threshold": 1.5}).status_code == 422
    with TestClient(create_app(fake_classifier(pair=True))) as pairs:
        assert "pairs" in pairs.post("/predict", json={"texts": ["refund"]}).json()["detail"]
        uneven = pairs.post("/predict", json={"texts": ["a", "b"], "pairs": ["c"]})
        assert "one pair per text" in uneven.json()["detail"]
        empty_pair = pairs.post("/predict", json={"texts": ["refund", "crash"], "pairs": ["buy", "  "]})
        assert empty_pair.status_code == 422 and "pair 1 is empty" in empty_pair.json()["detail"]
        records = pairs.post("/predict", json={"texts": ["refund", "crash"], "pairs": ["buy", "demo"]}).json()
        assert [r["text_pair"] for r in records["predictions"]] == ["buy", "demo"]


def test_the_worker_factory_reads_its_settings_from_the_environment(trained_dir, monkeypatch):
    monkeypatch.setenv(serve.ENV_SETTINGS, json.dumps({"model_dir": str(trained_dir), "backend": "torch",
                                                       "config": {"max_texts": 3}}))
    with TestClient(serve.app_from_environment()) as worker:
        assert worker.get("/info").json()["limits"]["max_texts"] == 3
        assert worker.post("/predict", json={"texts": ["a"] * 4}).status_code == 422


def test_missing_serving_libraries_name_the_install_line(trained_dir, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "fastapi" else real(name, *a))
    assert main(["serve", str(trained_dir)]) == 2
    assert "pip install 'bertfit[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize("host, words", [
    ("127.0.0.1", ["127.0.0.1:{port}", "in use", "--port N", "stop the process using it"]),
    ("192.0.2.1", ["192.0.2.1:{port}", "not an address of this machine", "--host 127.0.0.1"]),  # TEST-NET-1
    ("", ["--host is empty", "--host 127.0.0.1", "--host 0.0.0.0"]),  # "$HOST" unset: would bind every interface
], ids=["port-in-use", "foreign-host", "empty-host"])
def test_a_port_it_cannot_listen_on_is_one_error_line_and_no_serving_line(trained_dir, capsys, host, words):
    with socket.socket() as taken:  # another server on the port
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", str(trained_dir), "--host", host, "--port", str(port)])
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert all(word.format(port=port) in lines[0] for word in words), lines[0]
    assert "serving" not in captured.err + captured.out


def test_bad_limits_are_usage_errors(trained_dir, capsys):
    assert main(["serve", str(trained_dir), "--max-batch", "0", "--max-chars", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--max-batch must be positive" in err and "--max-chars must be positive" in err


# -- a live server ----------------------------------------------------------------------------------


def test_concurrent_requests_are_batched_and_each_caller_gets_its_own_rows():
    classifier = fake_classifier(delay=0.05)
    words = ["refund", "crash", "buy", "invoice", "error", "quote", "login", "demo", "price", "bug"]
    requests = [[words[i % len(words)]] + ([words[(i + 3) % len(words)]] if i % 3 == 0 else []) for i in range(48)]
    with LiveServer(create_app(classifier, ServeConfig(max_batch=16, max_wait_ms=20))) as live:
        answers = run_all([functools.partial(post, live.url, {"texts": texts}) for texts in requests], clients=16)
        stats = get(live.url, "/info")["batching"]
    assert not [answer for answer in answers if isinstance(answer, Exception)], answers
    for texts, answer in zip(requests, answers, strict=True):
        records = answer["predictions"]
        assert [r["text"] for r in records] == texts  # this caller's texts, in its order
        assert [r["label"] for r in records] == [expected_label(t) for t in texts]
    assert stats["requests"] == len(requests) and stats["texts"] == sum(map(len, requests))
    assert stats["batches"] < len(requests) / 2  # requests that arrived together shared forward passes
    assert stats["largest_batch"] <= 16 and max(classifier.backend.batches) <= 16


@pytest.mark.parametrize("parallel, expect_batches", [(1, [8]), (2, [4, 4])])
def test_queued_texts_are_shared_among_the_free_slots(parallel, expect_batches):
    from bertfit.serving.batcher import Batcher

    classifier = fake_classifier(delay=0.3)
    words = ["refund", "crash", "buy", "invoice", "error", "quote", "login", "demo"]

    async def scenario():
        batcher = Batcher(classifier, max_batch=8, max_wait=0.05, parallel=parallel)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([word]) for word in words))
        finally:
            await batcher.stop()

    answers = asyncio.run(scenario())
    assert [records[0]["text"] for records in answers] == words  # each caller its own row
    assert [records[0]["label"] for records in answers] == [expected_label(word) for word in words]
    assert sorted(classifier.backend.batches) == expect_batches  # eight queued texts: one batch, or two of four
    assert classifier.backend.most_in_flight == parallel  # ... and the two ran side by side


@pytest.fixture(scope="module")
def cli(trained_dir, tmp_path_factory):
    """`bertfit serve --port 0` itself, in a subprocess on the loopback port the system picked."""
    with CliServer(trained_dir, log=tmp_path_factory.mktemp("serve") / "server.log", port=0) as server:
        yield server


@pytest.fixture(scope="module")
def cli_server(cli) -> str:
    return cli.url


def test_port_0_serves_on_the_port_the_system_picked_and_names_it(cli):
    assert cli.port != 0 and cli.url.startswith("http://127.0.0.1:")
    assert re.search(rf"^serving .* on http://127\.0\.0\.1:{cli.port} ", cli.log_text(), re.M), cli.log_text()
    assert get(cli.url, "/health") == {"status": "ok"}


def test_the_cli_serves_on_loopback(cli_server, classifier):
    assert cli_server.startswith("http://127.0.0.1:")
    records = post(cli_server, {"texts": ["refund my card please"]})["predictions"]
    assert records[0]["label"] == classifier.predict(["refund my card please"])[0]


needs_chromium = pytest.mark.skipif(screenshots.find_chromium() is None,
                                    reason="no chromium on PATH (apt-get install -y chromium); the browser check "
                                           "of the serving page is skipped")


@needs_chromium
def test_the_page_classifies_a_typed_text_in_chromium(cli_server, classifier, tmp_path):
    text = "the screen froze after the update"
    url = f"{cli_server}/?text={urllib.parse.quote(text)}"
    dom = screenshots.run_chromium(url, "--dump-dom", "--virtual-time-budget=15000", timeout=90)
    state = re.search(r'<body[^>]*data-state="(\w+)"', dom)
    assert state is not None and state.group(1) == "done", dom[-3000:]
    label = html_lib.unescape(re.search(r'<span id="label">(.*?)</span>', dom).group(1))
    assert label == classifier.predict([text])[0]
    bars = re.findall(r'<li class="bar( chosen)?" data-label="([^"]+)" data-probability="([^"]+)"', dom)
    assert sorted(name for _, name, _ in bars) == LABELS
    assert [name for chosen, name, _ in bars if chosen] == [label]
    assert sum(float(p) for _, _, p in bars) == pytest.approx(1.0, abs=1e-3)
    shot = tmp_path / "serve-page.png"
    screenshots.run_chromium(url, f"--screenshot={shot}", "--window-size=900,640", "--virtual-time-budget=15000",
                             timeout=90)
    assert shot.exists() and shot.stat().st_size > 10_000


def test_readme_serve_commands_parse():
    import shlex

    from bertfit.cli import build_parser

    section = (ROOT / "README.md").read_text().split("\n## Serving\n", 1)[1].split("\n## ", 1)[0]
    commands = [line.split(" # ")[0].strip() for line in section.splitlines() if line.startswith("bertfit ")]
    assert len(commands) >= 2
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command == "serve" and args.host == "127.0.0.1"
