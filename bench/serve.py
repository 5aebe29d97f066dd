"""Requests per second and latency of `bertfit serve` under concurrent clients, on loopback only.

    python bench/serve.py MODEL_DIR                            # 30 s at 8, then at 32 concurrent clients
    python bench/serve.py MODEL_DIR --seconds 10 --clients 1,8,32 --backend onnx
    python bench/serve.py MODEL_DIR --max-wait-ms 0            # compare: no waiting for company

Starts `bertfit serve MODEL_DIR` in a subprocess on a free 127.0.0.1 port, waits for /health, then
for each client count runs a closed loop for --seconds: every client sends one text per request
(texts from MODEL_DIR/test.jsonl, cycled) and sends the next as soon as the answer arrives. The
load is bounded twice, by time and by --max-requests, and the server is stopped at the end.
Prints requests/s, p50 / p99 latency, errors, the server's mean batch (from GET /info) and the CPU
time the server and the load generator each spent per request, as a Markdown table.

The load generator shares the machine with the server, so it is kept lean: each client is one
keep-alive HTTP/1.1 connection on asyncio streams (standard library only; uvloop when installed),
and an answer counts only when it is a 200 whose JSON holds one prediction per text sent.
`--client httpx` uses httpx.AsyncClient instead, a common Python client, for comparison; it spends
several times the CPU per request. Needs the serve extra (pip install 'bertfit[serve]').
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

FALLBACK_TEXTS = ["the screen froze after the update", "I was charged twice for one order",
                  "can I get a quote for ten more seats", "my password reset link does not work"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_requests(model_dir: Path) -> list[dict]:
    """One request body per test row: {"texts": [text]} (and "pairs" for a sentence-pair model)."""
    file = model_dir / "test.jsonl"
    if not file.exists():
        return [{"texts": [text]} for text in FALLBACK_TEXTS]
    bodies = []
    for line in file.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            bodies.append({"texts": [row["text"]], **({"pairs": [row["text_pair"]]} if "text_pair" in row else {})})
    return bodies or [{"texts": [text]} for text in FALLBACK_TEXTS]


def http_get(url: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


async def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bertfit serve exited with {process.returncode} before answering")
        try:
            if http_get(f"{url}/health", timeout=2) == {"status": "ok"}:
                return
        except OSError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"bertfit serve did not answer {url}/health within {timeout:.0f} s")


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads each answer whole (Content-Length bodies)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        try:
            return await asyncio.wait_for(self._answer(), timeout)
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise

    async def _answer(self) -> tuple[int, bytes]:
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        body = await self.reader.readexactly(int(headers.get("content-length", 0)))
        if headers.get("connection") == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) used so far by process ``pid`` (Linux /proc), or by this process."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")  # not Linux: the column reads nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, bodies: list[dict], clients: int, seconds: float, max_requests: int,
               server_pid: int | None = None, client_kind: str = "raw") -> dict:
    """A closed loop of `clients` concurrent clients for `seconds` (or `max_requests` in all)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    stop_at = time.perf_counter() + seconds
    encoded = [(json.dumps(body).encode(), len(body["texts"])) for body in bodies]
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)

    def failed(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def client_loop(post, offset: int) -> None:
        nonlocal sent
        i = offset
        while time.perf_counter() < stop_at and sent < max_requests:
            sent += 1
            body, count = encoded[i % len(encoded)]
            i += clients
            started = time.perf_counter()
            try:
                status, answer = await post(body)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as err:
                failed(type(err).__name__)
                continue
            if status != 200:
                failed(str(status))
            elif len(json.loads(answer)["predictions"]) != count:
                failed("wrong number of predictions")
            else:
                latencies.append(time.perf_counter() - started)

    before = http_get(f"{url}/info")["batching"]
    cpu_before = cpu_seconds(server_pid), cpu_seconds()
    started = time.perf_counter()
    if client_kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(limits=limits) as client:
            async def post(body: bytes) -> tuple[int, bytes]:
                response = await client.post(f"{url}/predict", content=body, timeout=60,
                                             headers={"content-type": "application/json"})
                return response.status_code, response.content

            await asyncio.gather(*(client_loop(post, k) for k in range(clients)))
    else:
        connections = [Connection(host, int(port)) for _ in range(clients)]
        await asyncio.gather(*(client_loop(functools.partial(c.post, "/predict", timeout=60), k)
                               for k, c in enumerate(connections)))
        for connection in connections:
            connection.close()
    elapsed = time.perf_counter() - started
    cpu_after = cpu_seconds(server_pid), cpu_seconds()
    after = http_get(f"{url}/info")["batching"]
    batches = after["batches"] - before["batches"]
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {"clients": clients, "seconds": elapsed, "requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": quantile(0.50), "p99_ms": quantile(0.99), "errors": sum(errors.values()),
            "error_kinds": errors, "mean_batch": (after["texts"] - before["texts"]) / batches if batches else 0.0,
            # where the two cores went: the server's and the load generator's CPU per answered request
            "server_cpu_ms": 1000 * (cpu_after[0] - cpu_before[0]) / max(len(latencies), 1),
            "client_cpu_ms": 1000 * (cpu_after[1] - cpu_before[1]) / max(len(latencies), 1)}


def table(rows: list[dict], backend: str) -> str:
    lines = ["| backend | clients | seconds | requests | requests/s | p50 ms | p99 ms | errors | mean batch "
             "| server CPU ms / request | load generator CPU ms / request |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {backend} | {r['clients']} | {r['seconds']:.1f} | {r['requests']} | {r['rps']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['mean_batch']:.1f} | "
                     f"{r['server_cpu_ms']:.2f} | {r['client_cpu_ms']:.2f} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bertfit", "serve", args.model_dir, "--port", str(port), "--quiet",
               "--backend", args.backend]
    for flag in ("max_batch", "max_wait_ms", "threads", "parallel_batches"):  # unset: the server's own default
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        await wait_until_up(url, process)
        info = http_get(f"{url}/info")
        bodies = load_requests(Path(args.model_dir))
        rows = []
        for clients in [int(c) for c in args.clients.split(",")]:
            print(f"{clients} clients for {args.seconds:g} s ...", file=sys.stderr)
            rows.append(await load(url, bodies, clients, args.seconds, args.max_requests, process.pid, args.client))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    limits = info["limits"]
    print(f"client: {args.client}; server: --max-batch {limits['max_batch']}, --max-wait-ms {limits['max_wait_ms']:g}, "
          f"--threads {limits['threads']}, --parallel-batches {limits.get('parallel_batches', 1)}")
    print(table(rows, info["backend"]))
    for row in rows:
        if row["error_kinds"]:
            print(f"errors at {row['clients']} clients: {row['error_kinds']}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each load level (default 30)")
    parser.add_argument("--clients", default="8,32", help="concurrent clients per level (default 8,32)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="stop a level after this many requests")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    parser.add_argument("--max-batch", type=int, help="the server's --max-batch (default: its own)")
    parser.add_argument("--max-wait-ms", type=float, help="the server's --max-wait-ms (default: its own)")
    parser.add_argument("--threads", type=int, help="the server's --threads (default: the server's own default)")
    parser.add_argument("--parallel-batches", type=int, help="the server's --parallel-batches (default: its own)")
    parser.add_argument("--client", default="raw", choices=("raw", "httpx"),
                        help="raw: lean keep-alive connections on asyncio streams (default); httpx: httpx.AsyncClient")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.client == "httpx" and importlib.util.find_spec("httpx") is None:
        print("error: --client httpx needs httpx: pip install httpx", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import uvloop  # the load generator's own event loop costs less CPU on uvloop
    except ImportError:
        return asyncio.run(run(args))
    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
