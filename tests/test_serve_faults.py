"""bertfit serve under faults, on loopback: a real `bertfit serve` (the tiny model) takes 1,000 requests mixing
valid ones with malformed JSON, wrong schemas, oversized bodies and headers, too many or too long texts,
and slow or vanishing clients; then the pieces behind it (a client that leaves is not scored, a request
the model fails on fails alone) against a fake model whose timing the test controls.

The load test asserts: no 5xx (seen by the clients, or in the server's access log), every valid request
answered right (its texts, in order, each with the probabilities the model gives it alone), every bad
one the 4xx it should get (or, for headers that never end, a closed connection), /health still ok, the
server's open files back where they were, and its RSS within 20% of what it was after a warm-up."""

from __future__ import annotations

import functools
import http.client
import importlib.util
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="pip install 'bertfit[serve]' for the serving tests")
pytest.importorskip("uvicorn", reason="pip install 'bertfit[serve]' for the serving tests")

from bertfit.model import TextClassifier  # noqa: E402
from bertfit.serving.app import ServeConfig, create_app  # noqa: E402
from conftest import FILLER, WORDS  # noqa: E402
from serving import LABELS, CliServer, LiveServer, fake_classifier, get, post, request, run_all  # noqa: E402

MAX_TEXTS, MAX_CHARS, MAX_BODY = 16, 2000, 64 * 1024
READ_TIMEOUT = 2.0  # s; a stalled client costs this much of one client thread
LIMITS = ["--max-texts", str(MAX_TEXTS), "--max-chars", str(MAX_CHARS), "--max-body-bytes", str(MAX_BODY),
          "--read-timeout", str(READ_TIMEOUT), "--max-batch", "32"]
CLIENTS = 24
PROC = Path("/proc")


# -- the clients: one function per kind of request, each sending one and checking what came back ----------


class Load:
    """What the clients draw texts from, and what each text must score (the model's answer for it alone)."""

    def __init__(self, url: str, classifier: TextClassifier, seed: int = 0):
        rng = random.Random(seed)
        vocab = [w for words in WORDS.values() for w in words.split()] + FILLER
        texts = {" ".join(rng.choices(vocab, k=rng.randint(2, 12))) for _ in range(150)}
        texts |= {"é ü ñ 日本語 refund 🙂", "a\u0000b", "x" * MAX_CHARS, ("crash " * 400)[:MAX_CHARS]}
        self.texts = sorted(texts)
        self.expected = {r["text"]: r["probabilities"] for r in classifier.predict_records(self.texts)}
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])

    def pick(self, rng: random.Random, count: int) -> list[str]:
        return [rng.choice(self.texts) for _ in range(count)]

    def check_records(self, texts: list[str], records: list[dict]) -> None:
        assert [r["text"] for r in records] == texts, "not this request's texts, in its order"
        for record in records:
            assert record["label"] in LABELS and set(record["probabilities"]) == set(LABELS), record
            want = self.expected[record["text"]]
            assert all(abs(record["probabilities"][k] - want[k]) < 1e-3 for k in LABELS), (record, want)
            assert record["label"] == max(want, key=want.get), (record, want)

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=READ_TIMEOUT + 20)


def head(length: int, path: str = "/predict") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"content-length: {length}\r\n\r\n").encode()


def answer_on(sock: socket.socket) -> tuple[int, bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


def closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def expect(answer_status: int, body: bytes, status: int, *words: str) -> int:
    assert answer_status == status, (answer_status, status, body[:300])
    detail = json.dumps(json.loads(body)["detail"])
    assert all(word in detail for word in words), (words, detail)
    return status


def valid(load: Load, rng: random.Random) -> int:
    texts = load.pick(rng, rng.choice([1, 1, 2, 3, 5, 8, MAX_TEXTS]))
    body = json.dumps({"texts": texts}, ensure_ascii=rng.random() < 0.5).encode()
    answer = request(load.url, "/predict", body, timeout=60)
    assert answer.status == 200, (answer.status, answer.body[:300])
    load.check_records(texts, answer.json()["predictions"])
    return 200


def trickled(load: Load, rng: random.Random) -> int:
    """Slow but in time: the body in four pieces, 0.1 s apart."""
    texts = load.pick(rng, 3)
    body = json.dumps({"texts": texts}).encode()
    with load.connect() as sock:
        sock.sendall(head(len(body)))
        for i in range(4):
            time.sleep(0.1)
            sock.sendall(body[i * len(body) // 4:(i + 1) * len(body) // 4])
        status, data = answer_on(sock)
    assert status == 200, (status, data[:300])
    load.check_records(texts, json.loads(data)["predictions"])
    return 200


MALFORMED = [b'{"texts": ["refund"', b"refund my card", b'{"texts": ["\xff\xfe"]}', b"[" * 20_000 + b"]" * 20_000,
             b'{"texts": ["a"], "threshold": 1' + b"0" * 5000 + b"}", b""]
WRONG_SCHEMA = [{"texts": "refund"}, {"texts": [1, 2]}, {"text": ["refund"]}, ["refund"], None, {"texts": []},
                {"texts": ["refund"], "pairs": ["buy"]}, {"texts": ["refund"], "threshold": 0.5},
                {"texts": ["refund", ""]}, {"texts": ["   "]}]


def malformed(load: Load, rng: random.Random) -> int:
    answer = request(load.url, "/predict", rng.choice(MALFORMED))
    return expect(answer.status, answer.body, 422)


def wrong_schema(load: Load, rng: random.Random) -> int:
    answer = request(load.url, "/predict", json.dumps(rng.choice(WRONG_SCHEMA)).encode())
    return expect(answer.status, answer.body, 422)


def too_many_texts(load: Load, rng: random.Random) -> int:
    count = rng.randint(MAX_TEXTS + 1, 4 * MAX_TEXTS)
    answer = request(load.url, "/predict", json.dumps({"texts": load.pick(rng, count)}).encode())
    return expect(answer.status, answer.body, 422, f"got {count} texts", f"--max-texts {count}")


def too_long_text(load: Load, rng: random.Random) -> int:
    texts = load.pick(rng, 3) + ["refund " * (MAX_CHARS // 7 + rng.randint(1, 100))]
    answer = request(load.url, "/predict", json.dumps({"texts": texts}).encode())
    return expect(answer.status, answer.body, 422, "text 3 has", "--max-chars")


def lone_surrogate(load: Load, rng: random.Random) -> int:
    answer = request(load.url, "/predict", b'{"texts": ["refund", "half a pair \\ud83d here"]}')
    return expect(answer.status, answer.body, 422, "text 1", "lone surrogate")


def oversized(load: Load, rng: random.Random) -> int:
    body = json.dumps({"texts": ["refund " * 280] * rng.randint(40, 60)}).encode()  # 80-120 kB, over 64 KiB
    if rng.random() < 0.5:  # declared by Content-Length: refused before it is read
        answer = request(load.url, "/predict", body)
    else:  # chunked, no length: counted as it arrives
        answer = request(load.url, "/predict", (body[i:i + 8192] for i in range(0, len(body), 8192)))
    return expect(answer.status, answer.body, 413, f"limit of {MAX_BODY}", "--max-body-bytes")


def stalled_body(load: Load, rng: random.Random) -> int:
    """Headers, half the body, then nothing: 408 once the read timeout has passed."""
    body = json.dumps({"texts": load.pick(rng, 4)}).encode()
    with load.connect() as sock:
        sock.sendall(head(len(body)) + body[:len(body) // 2])
        started = time.monotonic()
        status, data = answer_on(sock)
    assert time.monotonic() - started > READ_TIMEOUT / 2
    return expect(status, data, 408, "--read-timeout")


def stalled_headers(load: Load, rng: random.Random) -> str:
    """Half the headers, then nothing: the server closes the connection."""
    with load.connect() as sock:
        sock.sendall(head(100)[:rng.randint(5, 40)])
        assert closed_by_server(sock, READ_TIMEOUT + 10), "a connection with half its headers was kept open"
    return "closed"


def idle(load: Load, rng: random.Random) -> str:
    with load.connect() as sock:
        assert closed_by_server(sock, READ_TIMEOUT + 10), "a connection that sent nothing was kept open"
    return "closed"


def huge_headers(load: Load, rng: random.Random) -> int:
    """Headers past 16 KiB, unfinished or whole in one write: 431 before any parser or the app sees them."""
    ending = b"\r\n\r\n" if rng.random() < 0.5 else b""
    with load.connect() as sock:
        try:
            sock.sendall(b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\nx-padding: "
                         + b"a" * rng.randint(17_000, 100_000) + ending)
            status, body = answer_on(sock)
        except (BrokenPipeError, ConnectionResetError):  # closed while the rest was still on its way: refused too
            return "closed"
    return expect(status, body, 431, "limit of 16384")


def leaves_before_answer(load: Load, rng: random.Random) -> str:
    """A whole valid request, then gone: closed (FIN), or reset (RST), without reading a byte."""
    body = json.dumps({"texts": load.pick(rng, rng.randint(1, MAX_TEXTS))}).encode()
    sock = load.connect()
    sock.sendall(head(len(body)) + body)
    if rng.random() < 0.5:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    return "left"


def leaves_mid_body(load: Load, rng: random.Random) -> str:
    body = json.dumps({"texts": load.pick(rng, 4)}).encode()
    with load.connect() as sock:
        sock.sendall(head(len(body)) + body[:rng.randint(1, len(body) - 1)])
    return "left"


MIX = {valid: 560, trickled: 20, malformed: 60, wrong_schema: 60, too_many_texts: 40, too_long_text: 40,
       lone_surrogate: 20, oversized: 60, stalled_body: 20, stalled_headers: 20, idle: 10, huge_headers: 10,
       leaves_before_answer: 60, leaves_mid_body: 20}


def run_mix(load: Load, mix: dict, seed: int) -> Counter:
    """Every kind of request its number of times, shuffled, CLIENTS at a time; what came back, counted.

    Fails naming how many of each kind failed, and the first failure in full."""
    rng = random.Random(seed)
    kinds = [kind for kind, count in mix.items() for _ in range(count)]
    rng.shuffle(kinds)
    results = run_all([functools.partial(kind, load, random.Random(rng.random())) for kind in kinds], CLIENTS)
    failed = [(kind.__name__, r) for kind, r in zip(kinds, results, strict=True) if isinstance(r, BaseException)]
    assert not failed, f"failed: {dict(Counter(name for name, _ in failed))}; first: {failed[0][0]}: {failed[0][1]!r}"
    return Counter(results)


def rss_kib(pid: int) -> int:
    status = (PROC / str(pid) / "status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1))


def open_files(pid: int) -> int:
    return len(list((PROC / str(pid) / "fd").iterdir()))


# -- the load test ----------------------------------------------------------------------------------------


@pytest.mark.skipif(not (PROC / "self" / "status").exists(), reason="reads the server's RSS from /proc (Linux)")
def test_a_thousand_requests_with_faults_no_5xx_right_answers_flat_memory(trained_dir, tmp_path):
    classifier = TextClassifier.from_pretrained(trained_dir)
    with CliServer(trained_dir, *LIMITS, log=tmp_path / "server.log") as server:
        load = Load(server.url, classifier)
        run_mix(load, {kind: max(2, count // 20) for kind, count in MIX.items()}, seed=1)  # warm-up: every path
        rss_start, files_start = rss_kib(server.pid), open_files(server.pid)
        started = time.monotonic()
        outcomes = run_mix(load, MIX, seed=2)
        seconds = time.monotonic() - started
        assert outcomes.total() == 1000 and outcomes[200] == MIX[valid] + MIX[trickled], outcomes
        assert get(server.url, "/health") == {"status": "ok"}
        deadline = time.monotonic() + 10  # the server closes its side of the last connections
        while open_files(server.pid) > files_start + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        files_end, rss_end = open_files(server.pid), rss_kib(server.pid)
        batching = get(server.url, "/info")["batching"]
    log = server.log_text()
    print(f"1,000 in {seconds:.1f} s: {dict(outcomes)}; server RSS {rss_start / 1024:.0f} MiB after warm-up, "
          f"{rss_end / 1024:.0f} MiB after the 1,000; open files {files_start} -> {files_end}; batching {batching}")
    assert len(re.findall(r'" 422 ', log)) >= outcomes[422], "the access log is missing"
    assert not re.findall(r'" 5\d\d ', log), "the access log shows a 5xx"
    assert "Traceback" not in log and "Exception in ASGI" not in log, log[-3000:]
    assert files_end <= files_start + 2, (files_start, files_end)
    assert batching["queued"] == 0 and batching["requests"] >= outcomes[200], batching  # nothing left behind
    assert rss_end <= 1.2 * rss_start, (rss_start, rss_end)


# -- the pieces behind it, on a fake model whose timing the test controls -----------------------------------


def send_and_leave(url: str, body: dict) -> None:
    """A whole request, then gone 0.1 s later: by then the server has read it and queued its texts."""
    data = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(head(len(data)) + data)
        time.sleep(0.1)


def test_a_client_that_leaves_before_its_answer_is_not_scored():
    classifier = fake_classifier(delay=1.0)
    with LiveServer(create_app(classifier, ServeConfig(max_wait_ms=1, parallel_batches=1))) as live:  # one model, busy
        busy = threading.Thread(target=post, args=(live.url, {"texts": ["refund"]}))  # the model is busy for 1 s
        busy.start()
        time.sleep(0.15)
        words = ("crash", "buy", "invoice", "error", "quote")  # queued behind it, then gone
        run_all([functools.partial(send_and_leave, live.url, {"texts": [word, word]}) for word in words], len(words))
        busy.join()
        after = post(live.url, {"texts": ["login"]})["predictions"]  # the batcher lives on
        stats = get(live.url, "/info")["batching"]
    assert [r["text"] for r in after] == ["login"]
    assert classifier.backend.batches == [1, 1], classifier.backend.batches  # nothing of the five was scored
    assert stats["requests"] == 2 and stats["texts"] == 2, stats


def test_a_request_the_model_fails_on_fails_alone_not_its_batch():
    # The model is busy for 1 s a batch, long enough for the five to queue behind it even on a loaded machine
    # (at 0.5 s a full test run on 2 cores once let them arrive one by one).
    classifier = fake_classifier(delay=1.0, fails_on="crash")
    with LiveServer(create_app(classifier, ServeConfig(max_wait_ms=1, parallel_batches=1))) as live:  # one model, busy
        busy = threading.Thread(target=post, args=(live.url, {"texts": ["refund"]}))
        busy.start()
        time.sleep(0.2)
        bodies = [{"texts": [word]} for word in ("buy", "invoice", "crash", "quote", "error")]  # one batch, next
        answers = run_all([functools.partial(request, live.url, "/predict", json.dumps(b).encode()) for b in bodies],
                          clients=len(bodies))
        busy.join()
        after = post(live.url, {"texts": ["login"]})["predictions"]
    assert [a.status for a in answers] == [200, 200, 500, 200, 200]
    assert [a.json()["predictions"][0]["text"] for a in answers if a.status == 200] == ["buy", "invoice", "quote",
                                                                                          "error"]
    assert classifier.backend.failed[0] > 1  # a shared batch failed first; then each of it was scored alone
    assert [r["text"] for r in after] == ["login"]


PARSERS = ["h11", pytest.param("httptools", marks=pytest.mark.skipif(
    importlib.util.find_spec("httptools") is None, reason="httptools is not installed"))]


@pytest.mark.parametrize("parser", PARSERS)
def test_either_parser_closes_idle_connections_and_refuses_huge_headers(parser):
    from bertfit.serving.http_protocol import MAX_HEADER_BYTES, deadline_protocol

    protocol = functools.partial(deadline_protocol(parser), read_timeout=1.0)
    body = json.dumps({"texts": ["refund my order"]}).encode()
    app = create_app(fake_classifier(), ServeConfig(max_wait_ms=1, max_body_bytes=50_000))
    with LiveServer(app, http=protocol) as live:
        port = live.port
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # keep-alive: two answers, then idle
            for _ in range(2):
                sock.sendall(head(len(body)) + body)
                status, data = answer_on(sock)
                assert status == 200 and json.loads(data)["predictions"][0]["label"] in LABELS
            assert closed_by_server(sock, 5), "an idle keep-alive connection outlived --read-timeout"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # half a request line, then silence
            sock.sendall(b"POST /pred")
            assert closed_by_server(sock, 5)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # headers that never end
            sock.sendall(b"POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\nx-padding: " + b"a" * (MAX_HEADER_BYTES + 1000))
            status, data = answer_on(sock)
            assert status == 431 and f"limit of {MAX_HEADER_BYTES}" in json.loads(data)["detail"]
        for huge in (head(len(body)).replace(b"\r\n\r\n", b"\r\nx-padding: " + b"a" * 100_000 + b"\r\n\r\n") + body,
                     b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\ncookie: " + b"a" * 100_000 + b"\r\n\r\n"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # a whole request, one write
                sock.sendall(huge)
                status, data = answer_on(sock)
                assert status == 431 and closed_by_server(sock, 5), (status, data[:200])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # headers just under the cap
            request = head(len(body)).replace(b"\r\n\r\n", b"\r\nx-padding: " + b"a" * 16_000 + b"\r\n\r\n") + body
            end = request.index(b"\r\n\r\n")
            for piece in (request[:end + 1], request[end + 1:end + 3], request[end + 3:]):  # their blank line split
                sock.sendall(piece)
                time.sleep(0.05)
            status, data = answer_on(sock)
            assert status == 200 and json.loads(data)["predictions"][0]["label"] in LABELS
            again = head(len(body)).replace(b"\r\n\r\n", b"\r\nx-padding: " + b"a" * 10_000 + b"\r\n\r\n") + body
            sock.sendall(again)  # the next request on the connection is counted afresh: not 16 + 10 KB
            status, _ = answer_on(sock)
            assert status == 200
            sock.sendall(again.replace(b"a" * 10_000, b"a" * 100_000))  # ... and counted: over the cap
            status, _ = answer_on(sock)
            assert status == 431
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:  # answered 413 before its body came:
            sock.sendall(head(100_000))
            status, _ = answer_on(sock)
            assert status == 413
            sock.sendall(b"x" * 100_000)  # ... which is still read as a body, not counted as the next headers
            sock.sendall(head(len(body)) + body)
            status, _ = answer_on(sock)
            assert status == 200
        assert get(live.url, "/health") == {"status": "ok"}
