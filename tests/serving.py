"""Test-side helpers for a live `bertfit serve`: a free loopback port, a server (in a thread, or the CLI in a
subprocess) that is up once it answers, one HTTP request at a time, and a small bounded load generator.

Shared by tests/test_serve.py and tests/test_serve_faults.py; plain stdlib HTTP (http.client), so what
the server receives is exactly what a test wrote. Not a benchmark: bench/serve.py measures speed.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LABELS = ["billing", "sales", "tech"]  # conftest's classes, in LabelSet order


class FakeBackend:
    """Logits that say which text they came from: class = (first token id) mod classes. Counts its batches.

    ``delay`` stands for the time a forward pass takes (requests pile up meanwhile); a batch holding
    the word ``fails_on`` raises, as a model might on some input, and is counted in ``failed``."""

    name = "fake"
    model = None

    def __init__(self, classes: int, delay: float = 0.0, fails_on: str | None = None):
        from conftest import tiny_tokenizer

        self.tokenizer = tiny_tokenizer()
        self.classes = classes
        self.delay = delay
        self.poison = None if fails_on is None else self.tokenizer.convert_tokens_to_ids(fails_on)
        self.batches: list[int] = []
        self.failed: list[int] = []
        self.in_flight = self.most_in_flight = 0  # forward passes running at once (the batcher may run several)
        self.lock = threading.Lock()

    def logits(self, batch: dict) -> Any:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return self._logits(batch)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _logits(self, batch: dict) -> Any:
        import numpy as np

        time.sleep(self.delay)
        if any(self.poison in ids for ids in batch["input_ids"]):
            self.failed.append(len(batch["input_ids"]))
            raise ValueError(f"the fake model fails on {self.tokenizer.convert_ids_to_tokens(self.poison)!r}")
        self.batches.append(len(batch["input_ids"]))
        out = np.full((len(batch["input_ids"]), self.classes), -4.0, dtype=np.float32)
        for i, ids in enumerate(batch["input_ids"]):
            out[i, ids[1] % self.classes] = 4.0
        return out


def fake_classifier(task: str = "single_label", pair: bool = False, delay: float = 0.0,
                    fails_on: str | None = None) -> Any:
    from bertfit.model import TextClassifier

    meta = {"format_version": 2, "labels": LABELS, "task": task, "max_length": 32,
            "text_pair_col": "text_b" if pair else None}
    return TextClassifier(record=meta, backend=FakeBackend(len(LABELS), delay, fails_on))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def request(url: str, path: str, body: bytes | Iterable[bytes] | None = None, method: str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30) -> Answer:
    """One request on its own connection; an iterable body is sent chunked (no Content-Length)."""
    address = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout)
    try:
        chunked = body is not None and not isinstance(body, bytes)
        connection.request(method or ("GET" if body is None else "POST"), path, body=body,
                           headers={"content-type": "application/json", **(headers or {})}, encode_chunked=chunked)
        response = connection.getresponse()
        return Answer(response.status, response.read())
    finally:
        connection.close()


def post(url: str, body: dict, timeout: float = 30) -> dict:
    """POST /predict; the answer's JSON, or an error naming the status."""
    answer = request(url, "/predict", json.dumps(body).encode(), timeout=timeout)
    if answer.status != 200:
        raise AssertionError(f"POST /predict answered {answer.status}: {answer.body[:300]!r}")
    return answer.json()


def get(url: str, path: str, timeout: float = 30) -> Any:
    answer = request(url, path, timeout=timeout)
    if answer.status != 200:
        raise AssertionError(f"GET {path} answered {answer.status}: {answer.body[:300]!r}")
    return answer.json()


def run_all(calls: list[Callable[[], Any]], clients: int) -> list[Any]:
    """A bounded load: every call once, at most ``clients`` at a time, results in the calls' order.

    Each call bounds itself (socket timeouts), so the whole run is bounded too; an exception a call
    raises is returned in its place rather than stopping the others."""
    def guarded(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - the caller checks every result, failures included
            return err

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return list(pool.map(guarded, calls))


class LiveServer:
    """uvicorn in a thread on a free loopback port, for real concurrent HTTP to an app built in the test."""

    def __init__(self, app: Any, http: Any = "auto"):
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    http=http))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start within 30 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class CliServer:
    """`bertfit serve MODEL_DIR ARGS...` in a subprocess on a free loopback port, up once /health answers.

    ``port=0`` lets the server pick (``--port 0``): the port is then read from its "serving ... on" line.
    Its stdout and stderr go to a file (``log``, read with :meth:`log_text`), not a pipe nobody reads
    that would fill up and stall the server's logging; ``pid`` is the server process."""

    def __init__(self, model_dir: str | Path, *args: str, log: Path, startup_s: float = 180, port: int | None = None):
        self.port = free_port() if port is None else port
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "bertfit", "serve", str(model_dir), "--port", str(self.port), *args]
        self.log = log
        self.startup_s = startup_s
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def __enter__(self) -> CliServer:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + self.startup_s
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"bertfit serve exited {self.process.returncode}: {self.log_text()[-2000:]}")
                if self.port == 0:
                    self._read_port()
                try:
                    if get(self.url, "/health", timeout=2) == {"status": "ok"}:
                        return self
                except (OSError, http.client.HTTPException, AssertionError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bertfit serve did not answer /health within {self.startup_s:.0f} s")
                time.sleep(0.25)
        except BaseException:
            self.__exit__()
            raise

    def _read_port(self) -> None:
        serving = re.search(r"^serving .* on http://127\.0\.0\.1:(\d+)", self.log_text(), re.M)
        if serving is not None:
            if serving.group(1) == "0":
                raise RuntimeError(f"--port 0 and the server names port 0, not the one it got: {serving.group(0)}")
            self.port = int(serving.group(1))
            self.url = f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
