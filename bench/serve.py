"""Requests per second and latency of `bertfit serve` under concurrent clients, on loopback only.

    python bench/serve.py MODEL_DIR                            # 30 s at 8, then at 32 concurrent clients
    python bench/serve.py MODEL_DIR --seconds 10 --clients 1,8,32 --backend onnx
    python bench/serve.py MODEL_DIR --max-wait-ms 0            # compare: no waiting for company

Starts `bertfit serve MODEL_DIR` in a subprocess on a free 127.0.0.1 port, waits for /health, then
for each client count runs a closed loop for --seconds: every client sends one text per request
(texts from MODEL_DIR/test.jsonl, cycled) and sends the next as soon as the answer arrives. The
load is bounded twice, by time and by --max-requests, and the server is stopped at the end.
Prints requests/s, p50 / p99 latency, errors and the server's mean batch (from GET /info) as a
Markdown table. Needs httpx (pip install 'bertfit[test]') and the serve extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
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


async def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"bertfit serve exited with {process.returncode} before answering")
            try:
                if (await client.get(f"{url}/health", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise RuntimeError(f"bertfit serve did not answer {url}/health within {timeout:.0f} s")


async def load(url: str, bodies: list[dict], clients: int, seconds: float, max_requests: int) -> dict:
    """A closed loop of `clients` concurrent clients for `seconds` (or `max_requests` in all)."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(client: httpx.AsyncClient, offset: int) -> None:
        nonlocal sent
        i = offset
        while time.perf_counter() < stop_at and sent < max_requests:
            sent += 1
            body = bodies[i % len(bodies)]
            i += clients
            started = time.perf_counter()
            try:
                response = await client.post(f"{url}/predict", json=body, timeout=60)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
            except httpx.HTTPError as err:
                errors[type(err).__name__] = errors.get(type(err).__name__, 0) + 1

    async with httpx.AsyncClient(limits=limits) as client:
        before = (await client.get(f"{url}/info")).json()["batching"]
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client, k) for k in range(clients)))
        elapsed = time.perf_counter() - started
        after = (await client.get(f"{url}/info")).json()["batching"]
    batches = after["batches"] - before["batches"]
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {"clients": clients, "seconds": elapsed, "requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": quantile(0.50), "p99_ms": quantile(0.99), "errors": sum(errors.values()),
            "error_kinds": errors, "mean_batch": (after["texts"] - before["texts"]) / batches if batches else 0.0}


def table(rows: list[dict], backend: str) -> str:
    lines = ["| backend | clients | seconds | requests | requests/s | p50 ms | p99 ms | errors | mean batch |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {backend} | {r['clients']} | {r['seconds']:.1f} | {r['requests']} | {r['rps']:.1f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['mean_batch']:.1f} |")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bertfit", "serve", args.model_dir, "--port", str(port), "--quiet",
               "--backend", args.backend, "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
               *(["--threads", str(args.threads)] if args.threads else [])]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
    try:
        await wait_until_up(url, process)
        async with httpx.AsyncClient() as client:
            info = (await client.get(f"{url}/info", timeout=10)).json()
        bodies = load_requests(Path(args.model_dir))
        rows = []
        for clients in [int(c) for c in args.clients.split(",")]:
            print(f"{clients} clients for {args.seconds:g} s ...", file=sys.stderr)
            rows.append(await load(url, bodies, clients, args.seconds, args.max_requests))
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
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
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, help="the server's --threads (default: the server's own default)")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    try:
        import httpx  # noqa: F401
    except ImportError:
        print("error: bench/serve.py needs httpx: pip install 'bertfit[test]'", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
