"""Requests per second and latency of `bertfit serve` against a plain FastAPI endpoint, on loopback only.

    python bench/serve.py EXPORT_DIR                  # 30 s per run, at 8 then 32 clients, 3 runs per server
    python bench/serve.py EXPORT_DIR --seconds 10 --clients 1,8,32 --repeats 5
    python bench/serve.py EXPORT_DIR --max-wait-ms 0  # bertfit serve's own flags, passed on

EXPORT_DIR is a `bertfit export` folder (it must hold model.onnx; a folder without one is reported
and the bench exits 0). Two servers, each in a subprocess on a free 127.0.0.1 port:

  bertfit serve    `bertfit serve EXPORT_DIR --quiet` (its batcher; --backend, --max-batch ... passed on)
  plain FastAPI    bench/plain_server.py: the endpoint a user would write first, the same model.onnx on an
                   onnxruntime session with default options and tokenizer.json through `tokenizers`, a
                   synchronous `def` endpoint (FastAPI's thread pool), no batching, uvicorn with one worker

Both are warmed up (--warm-up seconds of load each), then for each client count every server takes
--repeats runs of load, alternating (bertfit, plain, bertfit, plain ...): a closed loop for --seconds
in which every client sends one text per request (texts from EXPORT_DIR/test.jsonl, cycled) and
the next as soon as the answer arrives. Each run is bounded twice, by time and by --max-requests;
both servers are stopped at the end, whatever happens. Printed after the commit and the machine, as
a Markdown table per server and client count: requests/s, p50 and p99 latency (medians over the
runs, with the min-max), errors, bertfit's mean batch (GET /info), the CPU time the server and the
load generator each spent per request; then the ratio of the median requests/s and the target
(bertfit serve at least 3x the plain endpoint at 8 clients), met or not.

The load generator shares the machine with the server, so it is kept lean: each client is one
keep-alive HTTP/1.1 connection on asyncio streams (standard library only; uvloop when installed),
and an answer counts only when it is a 200 whose JSON holds one prediction per text sent.
`--client httpx` uses httpx.AsyncClient instead, a common Python client, for comparison; it spends
several times the CPU per request. Needs the serve and onnx extras (pip install 'bertfit[serve,onnx]').
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

from timing import alternate, measured_on, spread, summary

HERE = Path(__file__).resolve().parent
BERTFIT, PLAIN = "bertfit serve", "plain FastAPI"
TARGET_CLIENTS, TARGET = 8, 3.0  # bertfit serve's requests/s over the plain endpoint's, ratio of medians

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


async def wait_until_up(url: str, process: subprocess.Popen, name: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} before answering")
        try:
            if http_get(f"{url}/health", timeout=2) == {"status": "ok"}:
                return
        except OSError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"{name} did not answer {url}/health within {timeout:.0f} s")


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
               server_pid: int | None = None, client_kind: str = "raw", batching: bool = True) -> dict:
    """A closed loop of `clients` concurrent clients for `seconds` (or `max_requests` in all); ``batching``:
    the server is bertfit serve, whose GET /info counts the batches."""
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

    before = http_get(f"{url}/info")["batching"] if batching else None
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
    after = http_get(f"{url}/info")["batching"] if batching else None
    batches = after["batches"] - before["batches"] if batching else 0
    ordered = sorted(latencies)

    def quantile(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")

    return {"clients": clients, "seconds": elapsed, "requests": len(latencies), "rps": len(latencies) / elapsed,
            "p50_ms": quantile(0.50), "p99_ms": quantile(0.99), "errors": sum(errors.values()),
            "error_kinds": errors, "mean_batch": (after["texts"] - before["texts"]) / batches if batches else None,
            # where the two cores went: the server's and the load generator's CPU per answered request
            "server_cpu_ms": 1000 * (cpu_after[0] - cpu_before[0]) / max(len(latencies), 1),
            "client_cpu_ms": 1000 * (cpu_after[1] - cpu_before[1]) / max(len(latencies), 1)}


def summarised(runs: list[dict]) -> list[dict]:
    """One row per (server, clients): medians and min-max over the runs, errors summed."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for one in runs:
        groups.setdefault((one["server"], one["clients"]), []).append(one)
    rows = []
    for (server, clients), group in groups.items():
        row = {"server": server, "backend": group[0]["backend"], "clients": clients, "runs": len(group),
               "requests": sum(r["requests"] for r in group), "errors": sum(r["errors"] for r in group)}
        for key in ("rps", "p50_ms", "p99_ms", "server_cpu_ms", "client_cpu_ms"):
            values = [r[key] for r in group]
            row[key], row[f"{key}_min"], row[f"{key}_max"] = summary(values)
            row[f"{key}_runs"] = values
        batches = [r["mean_batch"] for r in group if r["mean_batch"] is not None]
        row["mean_batch"] = summary(batches)[0] if batches else None
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| server | backend | clients | runs | requests/s (median) | min-max | p50 ms (median) | min-max "
             "| p99 ms (median) | min-max | errors | mean batch | server CPU ms / request | load generator CPU ms "
             "/ request |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r["clients"], r["server"] != BERTFIT)):
        batch = "-" if r["mean_batch"] is None else f"{r['mean_batch']:.1f}"
        lines.append(f"| {r['server']} | {r['backend']} | {r['clients']} | {r['runs']} | {r['rps']:.1f} | "
                     f"{spread(r['rps_runs'])} | {r['p50_ms']:.1f} | {spread(r['p50_ms_runs'])} | "
                     f"{r['p99_ms']:.1f} | {spread(r['p99_ms_runs'])} | {r['errors']} | {batch} | "
                     f"{r['server_cpu_ms']:.2f} | {r['client_cpu_ms']:.2f} |")
    return "\n".join(lines)


def verdicts(rows: list[dict]) -> list[str]:
    """The ratio of median requests/s per client count, and the target at TARGET_CLIENTS clients."""
    by = {(r["server"], r["clients"]): r for r in rows}
    lines, ratios = [], {}
    for clients in sorted({r["clients"] for r in rows}):
        ours, plain = by[BERTFIT, clients], by[PLAIN, clients]
        if plain["rps"] <= 0 or ours["rps"] <= 0:
            lines.append(f"{clients} clients: no ratio, a server answered nothing (see its errors)")
            continue
        ratios[clients] = ours["rps"] / plain["rps"]
        lines.append(f"{clients} clients: {BERTFIT} {ours['rps']:.1f} requests/s, {PLAIN} {plain['rps']:.1f}: "
                     f"{ratios[clients]:.2f}x (ratio of medians)")
    if TARGET_CLIENTS in ratios:
        met = "met" if ratios[TARGET_CLIENTS] >= TARGET else "NOT met"
        lines.append(f"target: {BERTFIT} at least {TARGET:g}x the plain endpoint in requests/s at {TARGET_CLIENTS} "
                     f"clients: {ratios[TARGET_CLIENTS]:.2f}x, {met}")
    else:
        lines.append(f"target ({TARGET:g}x at {TARGET_CLIENTS} clients) not checked: no ratio at {TARGET_CLIENTS} "
                     "clients (not among --clients, or a server answered nothing)")
    return lines


def start(name: str, command: list[str], url: str) -> subprocess.Popen:
    print(f"starting {name} on {url} ...", file=sys.stderr)
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def run(args: argparse.Namespace) -> int:
    model_dir = Path(args.model_dir)
    ports = {BERTFIT: free_port(), PLAIN: free_port()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    command = [sys.executable, "-m", "bertfit", "serve", args.model_dir, "--port", str(ports[BERTFIT]), "--quiet",
               "--backend", args.backend]
    for flag in ("max_batch", "max_wait_ms", "threads", "parallel_batches"):  # unset: the server's own default
        if getattr(args, flag) is not None:
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    commands = {BERTFIT: command,
                PLAIN: [sys.executable, str(HERE / "plain_server.py"), args.model_dir, "--port", str(ports[PLAIN])]}
    clients_levels = [int(c) for c in args.clients.split(",")]
    bodies = load_requests(model_dir)
    processes: dict[str, subprocess.Popen] = {}
    runs = []
    try:
        for name in (BERTFIT, PLAIN):
            processes[name] = start(name, commands[name], urls[name])
            await wait_until_up(urls[name], processes[name], name)
        info = http_get(f"{urls[BERTFIT]}/info")
        backends = {BERTFIT: info["backend"], PLAIN: "onnx"}

        async def one_run(name: str, clients: int, seconds: float) -> dict:
            return await load(urls[name], bodies, clients, seconds, args.max_requests, processes[name].pid,
                              args.client, batching=name == BERTFIT)

        if args.warm_up > 0:
            for name in (BERTFIT, PLAIN):
                print(f"warm-up: {name}, {max(clients_levels)} clients for {args.warm_up:g} s ...", file=sys.stderr)
                await one_run(name, max(clients_levels), args.warm_up)
        for clients in clients_levels:
            for repeat, name in alternate((BERTFIT, PLAIN), args.repeats, mirrored=False):
                print(f"run {repeat + 1}/{args.repeats}: {name}, {clients} clients for {args.seconds:g} s ...",
                      file=sys.stderr)
                row = await one_run(name, clients, args.seconds)
                runs.append({"server": name, "backend": backends[name], "repeat": repeat + 1, **row})
    finally:
        for process in processes.values():
            stop(process)
    limits = info["limits"]
    rows = summarised(runs)
    print(measured_on())
    print(f"client: {args.client}; runs of {args.seconds:g} s per server and client count: {args.repeats}, "
          f"alternating, after {args.warm_up:g} s of warm-up each; {BERTFIT}: --max-batch {limits['max_batch']}, "
          f"--max-wait-ms {limits['max_wait_ms']:g}, --threads {limits['threads']}, --parallel-batches "
          f"{limits.get('parallel_batches', 1)}; {PLAIN}: bench/plain_server.py (onnxruntime defaults, no batching)")
    print()
    print(table(rows))
    print()
    print("\n".join(verdicts(rows)))
    for one in runs:
        if one["error_kinds"]:
            print(f"errors, {one['server']} at {one['clients']} clients, run {one['repeat']}: "
                  f"{one['error_kinds']}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": rows}, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", metavar="EXPORT_DIR", help="a bertfit export folder (holding model.onnx)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run of load (default 30)")
    parser.add_argument("--clients", default="8,32", help="concurrent clients per level (default 8,32)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per server and client count, alternating bertfit, plain, ... (default 3)")
    parser.add_argument("--warm-up", type=float, default=2.0,
                        help="seconds of untimed load on each server before the runs (default 2; 0: none)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="stop a run after this many requests")
    parser.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                        help="bertfit serve's --backend (default auto: onnx for an export)")
    parser.add_argument("--max-batch", type=int, help="bertfit serve's --max-batch (default: its own)")
    parser.add_argument("--max-wait-ms", type=float, help="bertfit serve's --max-wait-ms (default: its own)")
    parser.add_argument("--threads", type=int, help="bertfit serve's --threads (default: its own)")
    parser.add_argument("--parallel-batches", type=int, help="bertfit serve's --parallel-batches (default: its own)")
    parser.add_argument("--client", default="raw", choices=("raw", "httpx"),
                        help="raw: lean keep-alive connections on asyncio streams (default); httpx: httpx.AsyncClient")
    parser.add_argument("--json", help="also write every run and the summary as JSON here")
    args = parser.parse_args(argv)
    try:
        clients = [int(c) for c in args.clients.split(",")]
    except ValueError:
        clients = []
    if not clients or min(clients) < 1:
        parser.error(f"--clients must be whole numbers of at least 1, comma-separated, got {args.clients!r}")
    if args.repeats < 1 or args.seconds <= 0 or args.warm_up < 0 or args.max_requests < 1:
        parser.error("--repeats and --max-requests must be at least 1, --seconds over 0, --warm-up at least 0")
    if not (Path(args.model_dir) / "model.onnx").exists():
        print(f"{args.model_dir} holds no model.onnx, and the plain reference serves the ONNX export: nothing "
              f"measured. Export one and pass that folder: bertfit export {args.model_dir} --quantize int8 --out "
              f"{args.model_dir.rstrip('/')}-int8", file=sys.stderr)
        return 0
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
