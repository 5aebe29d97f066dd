"""``bertfit serve``: a model folder behind HTTP (FastAPI + uvicorn), with concurrent requests batched.

Four stages, as LitServe lays a server out:

1. **Load once**: :func:`create_app` takes a loaded :class:`~bertfit.model.TextClassifier` (torch or
   ONNX backend); :func:`serve` loads the folder and runs uvicorn.
2. **Decode a request**: ``POST /predict`` takes ``{"texts": [...], "pairs": [...], "threshold": x}``,
   checked against the limits (body size: 413; texts per request, characters per text, a pair
   missing or unwanted, text that is not valid Unicode, a body that is not JSON: 422, each message
   naming the limit and the flag that raises it), and against slow clients (a body still arriving
   ``read_timeout`` s after its headers: 408; headers that take that long: the connection is closed).
3. **Predict a batch**: :class:`~bertfit.batcher.Batcher` gathers the texts of concurrent requests into
   batches of up to ``max_batch`` texts, runs up to ``parallel_batches`` forward passes at once in
   worker threads and hands each caller its own rows. A caller that disconnects first is dropped from the queue
   unscored, and a batch that fails is retried request by request, so one request cannot fail another.
4. **Encode the response**: per text, the record ``bertfit predict`` prints.

Also ``GET /health``, ``GET /info`` (labels, task, metrics, versions, limits, batching counts),
OpenAPI docs at ``/docs``, and ``GET /`` a small page (``static/index.html``, plain HTML + JS) to
try texts by hand. Needs ``pip install 'bertfit[serve]'``; this module has no authentication and
binds 127.0.0.1 unless told otherwise. It does not train, export or decide labels (``model`` does).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run time,
# and the request models are defined inside create_app (fastapi and pydantic load only when serving).

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from bertfit import __version__
from bertfit.backends import cores
from bertfit.batcher import Batcher
from bertfit.errors import UsageError

log = logging.getLogger(__name__)

SERVE_INSTALL = "pip install 'bertfit[serve]'"
ENV_SETTINGS = "BERTFIT_SERVE_SETTINGS"  # how `--workers N` hands the settings to each worker process
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_HEADER_BYTES = 16 * 1024  # a request's headers, as h11 limits them


@dataclass
class ServeConfig:
    """Limits and batching of the server; each field is a `bertfit serve` flag (dashes for underscores)."""

    # The defaults suit a CPU, measured with bench/serve.py: a batch of small texts costs about as much
    # as its texts one by one there, so batches stay small, and one batch per core runs on one thread
    # each. On a GPU, large batches pay: --max-batch 64 --parallel-batches 1 --threads 1.
    max_batch: int = 2  # texts in one forward pass, gathered from concurrent requests
    max_wait_ms: float = 2.0  # how long a batch waits for company when no other batch could start
    max_texts: int = 256  # texts in one request
    max_chars: int = 10_000  # characters in one text (and in its pair)
    max_body_bytes: int = 4 * 1024 * 1024  # size of one request body
    read_timeout: float = 30.0  # seconds a client has to send a request's headers, and then its body
    threads: int = 1  # the model's intra-op threads in each forward pass
    parallel_batches: int = field(default_factory=cores)  # forward passes at once, per worker process

    def validate(self) -> None:
        # max_wait_ms may be 0: no waiting for company, a batch is whatever has queued
        problems = [f"--{f.name.replace('_', '-')} must be positive, got {getattr(self, f.name)}"
                    for f in dataclasses.fields(self)
                    if not (getattr(self, f.name) >= 0 if f.name == "max_wait_ms" else getattr(self, f.name) > 0)]
        if problems:
            raise UsageError("; ".join(problems))


def check_request(classifier: Any, config: ServeConfig, texts: list[str], pairs: list[str] | None,
                  threshold: float | None) -> str | None:
    """What is wrong with a request, in one line naming the fix, or None."""
    if not texts:
        return "texts is empty; send at least one text"
    if len(texts) > config.max_texts:
        return (f"got {len(texts)} texts in one request; the limit is {config.max_texts}: send fewer per request, "
                f"or start the server with --max-texts {len(texts)}")
    if classifier.text_pair_col is not None and pairs is None:
        return f"this model classifies sentence pairs; send \"pairs\": one second text per text ({len(texts)})"
    if classifier.text_pair_col is None and pairs is not None:
        return "this model classifies single texts; leave out \"pairs\""
    if pairs is not None and len(pairs) != len(texts):
        return f"got {len(texts)} texts but {len(pairs)} pairs; send one pair per text"
    for name, values in (("text", texts), ("pair", pairs or [])):
        for i, value in enumerate(values):
            if len(value) > config.max_chars:
                return (f"{name} {i} has {len(value)} characters; the limit is {config.max_chars}: shorten it, or "
                        f"start the server with --max-chars {len(value)}")
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError as err:  # JSON can spell half a surrogate pair ("\ud800"); no model reads it
                    return (f"{name} {i} is not valid Unicode: a lone surrogate {value[err.start]!r} at character "
                            f"{err.start}; send whole characters (UTF-8, or both halves of a \\u surrogate pair)")
    if threshold is not None:
        if not classifier.multi_label:
            return "threshold applies to multi-label models; this one picks the most likely label"
        if not 0 < threshold < 1:
            return f"threshold must be between 0 and 1, got {threshold}"
    return None


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 (by its Content-Length, or as it
    streams); one still arriving ``timeout`` s after the request's headers is answered 408, and closed."""

    def __init__(self, app: Any, limit: int, timeout: float = 30.0):
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"detail": self._detail(int(declared))}, status_code=413)(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        seen, complete = 0, False

        async def guarded_receive() -> dict:
            # Raised while the endpoint reads the body, an HTTPException is answered as is (FastAPI re-raises it).
            nonlocal seen, complete
            if complete:  # the body is in: what comes next is a disconnect, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                raise HTTPException(status_code=408, headers={"connection": "close"}, detail=(
                    f"the request body took over {self.timeout:g} s to arrive ({seen} bytes by then); send it "
                    f"at once, or start the server with a larger --read-timeout")) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(status_code=413, detail=self._detail(seen, at_least=True))
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, guarded_receive, send)

    def _detail(self, size: int, at_least: bool = False) -> str:
        return (f"request body of {'over ' if at_least else ''}{size} bytes is over the limit of {self.limit}; "
                f"send fewer or shorter texts per request, or start the server with --max-body-bytes {size}")


def http_with_deadline(read_timeout: float, **kwargs: Any) -> Any:
    """uvicorn's HTTP protocol for one connection, closed when a request's headers take over ``read_timeout`` s.

    uvicorn times an idle connection out only after an answer (``timeout_keep_alive``): a client that
    connects and sends nothing, or half its headers, would hold its connection, and a file
    descriptor, for good. Here the deadline runs whenever the server waits on the client for a new
    request (from the connection's start, or the end of the last answer, to the end of the next
    request's headers); the body then has its own deadline in :class:`BodyLimit`, which answers 408.
    The parser is httptools (C) where it is installed, as uvicorn itself would choose, else h11 (pure
    Python, several times slower per request). ``serve`` hands uvicorn
    ``functools.partial(http_with_deadline, timeout)``, which pickles for ``--workers``.
    """
    return _deadline_protocol(_parser())(read_timeout=read_timeout, **kwargs)


@functools.cache
def _parser() -> str:
    import importlib.util

    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


@functools.cache
def _deadline_protocol(parser: str) -> type:
    if parser == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class DeadlineProtocol(Base):
        def __init__(self, *args: Any, read_timeout: float, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.read_timeout = read_timeout
            self.deadline: asyncio.TimerHandle | None = None
            self.waiting_bytes = 0  # received since the last answer, while a request's headers are incomplete

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._answering():  # the headers are in; the app reads the body under its own deadline
                self._disarm()
                self.waiting_bytes = 0
                return
            # h11 refuses headers past 16 KiB itself; httptools has no cap, so one is kept here
            self.waiting_bytes += len(data)
            if self.waiting_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
                self.send_400_response(f"request headers over {MAX_HEADER_BYTES} bytes")
                self.transport.close()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self._answering():  # (a pipelined request may be)
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _answering(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self.deadline = self.loop.call_later(self.read_timeout, self._too_slow)

        def _disarm(self) -> None:
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _too_slow(self) -> None:
            self.deadline = None
            log.info("closed a connection from %s: no complete request headers within %g s (--read-timeout)",
                     self.client, self.read_timeout)
            self.transport.close()

    return DeadlineProtocol


async def _disconnected(request: Any) -> None:
    """Returns when the client of ``request`` disconnects (its body is read: the next ASGI message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def page() -> str:
    """The try-it page served at / (plain HTML + JS, no build step)."""
    return (resources.files("bertfit") / "static" / "index.html").read_text(encoding="utf-8")


def create_app(classifier: Any, config: ServeConfig | None = None, model_dir: str | None = None) -> Any:
    """The FastAPI app serving ``classifier``; the batcher starts and stops with the app (its lifespan)."""
    require_serve()
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from pydantic import BaseModel, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    config = config or ServeConfig()
    config.validate()
    batcher = Batcher(classifier, config.max_batch, config.max_wait_ms / 1000, config.parallel_batches)
    multi_label = classifier.multi_label

    class PredictRequest(BaseModel):
        texts: list[str] = Field(description="the texts to classify", examples=[["the screen cracked"]])
        pairs: list[str] | None = Field(None, description="sentence-pair models: the second text of each text")
        threshold: float | None = Field(None, description="multi-label models: one threshold for every label, "
                                                          "instead of the per-label ones tuned on validation")

    class PredictResponse(BaseModel):
        predictions: list[dict[str, Any]] = Field(description=(
            "per text, in order, what `bertfit predict` prints: text (and text_pair), "
            + ("labels (a list)" if multi_label else "label and score") + ", probabilities by label"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="bertfit", version=__version__, lifespan=lifespan,
                  description=f"A bertfit text classifier ({classifier.meta.get('task', 'single_label')}, "
                              f"{len(classifier.labels)} labels, {classifier.backend.name} backend).")
    app.add_middleware(BodyLimit, limit=config.max_body_bytes, timeout=config.read_timeout)
    app.state.batcher = batcher
    versions = _versions(classifier)
    page_html = page()

    @app.exception_handler(StarletteHTTPException)
    async def unreadable_body(request: Request, exc: StarletteHTTPException):
        # FastAPI answers a body its JSON parser gives up on with a bare 400 (invalid UTF-8, nesting too deep,
        # a number too long); like any other malformed JSON it is a 422 here, saying why.
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, (ValueError, RecursionError)):
            return JSONResponse({"detail": f"the body is not valid JSON ({cause}); send UTF-8 JSON such as "
                                           '{"texts": ["..."]}'}, status_code=422)
        return await http_exception_handler(request, exc)

    @app.post("/predict", response_model=PredictResponse, summary="Classify texts",
              responses={408: {"description": "body too slow"}, 413: {"description": "body too large"},
                         422: {"description": "a limit, or bad JSON"}})
    async def predict(body: PredictRequest, request: Request):
        problem = check_request(classifier, config, body.texts, body.pairs, body.threshold)
        if problem is not None:
            raise HTTPException(status_code=422, detail=problem)
        answer = asyncio.ensure_future(batcher.submit(body.texts, body.pairs, body.threshold))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # this endpoint cancelled (server stopping) or the client gone: its texts leave the queue unscored
            for task in (answer, gone):
                task.cancel()
        if not answer.done():
            return Response(status_code=499)  # nginx's "client closed request"; nobody reads it
        return JSONResponse({"predictions": answer.result()})  # already plain JSON: skip re-validating the records

    @app.get("/health", summary="Liveness")
    async def health():
        return {"status": "ok"}

    @app.get("/info", summary="The model: labels, task, metrics, versions, limits")
    async def info():
        meta = classifier.meta
        return {"model_dir": model_dir, "labels": list(classifier.labels.names),
                "task": meta.get("task", "single_label"), "text_pair_col": classifier.text_pair_col,
                "backend": classifier.backend.name, "export": meta.get("export"), "max_length": classifier.max_length,
                "metrics": meta.get("metrics"), "versions": versions, "limits": dataclasses.asdict(config),
                "batching": {**batcher.stats, "queued": batcher.queued()}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page_html)

    return app


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          backend: str = "auto", config: ServeConfig | None = None, log_level: str = "info") -> None:
    """Load the folder and serve it with uvicorn until interrupted; ``workers`` > 1 runs that many processes."""
    require_serve()
    import uvicorn

    from bertfit.model import TextClassifier

    config = config or ServeConfig()
    config.validate()
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if host not in LOOPBACK:
        log.warning("binding %s: other machines can reach this server, and it has no authentication", host)
    # fails here, once, if it cannot load
    classifier = TextClassifier.from_pretrained(model_dir, backend=backend, threads=config.threads)
    log.info("serving %s (%s backend) on http://%s:%d  (docs: /docs, try it: /)", model_dir,
             classifier.backend.name, host, port)
    protocol = functools.partial(http_with_deadline, config.read_timeout)
    if workers == 1:
        uvicorn.run(create_app(classifier, config, str(model_dir)), host=host, port=port, log_level=log_level,
                    http=protocol)
        return
    del classifier  # each worker process loads its own
    os.environ[ENV_SETTINGS] = json.dumps({"model_dir": str(model_dir), "backend": backend,
                                           "config": dataclasses.asdict(config)})
    uvicorn.run("bertfit.serve:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, http=protocol)


def app_from_environment() -> Any:
    """The app of one worker process of ``serve(workers=N)``: settings come from $BERTFIT_SERVE_SETTINGS."""
    from bertfit.model import TextClassifier

    settings = json.loads(os.environ[ENV_SETTINGS])
    config = ServeConfig(**settings["config"])
    classifier = TextClassifier.from_pretrained(settings["model_dir"], backend=settings["backend"],
                                                threads=config.threads)
    return create_app(classifier, config, settings["model_dir"])


def require_serve() -> None:
    """Fail with the install line when FastAPI or uvicorn is missing."""
    import importlib.util

    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"bertfit serve needs {' and '.join(missing)}; install them: {SERVE_INSTALL}")


def _versions(classifier: Any) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    serving = {"bertfit": __version__}
    for name in ("fastapi", "uvicorn", "onnxruntime" if classifier.backend.name == "onnx" else "torch"):
        with contextlib.suppress(PackageNotFoundError):
            serving[name] = version(name)
    return {"trained_with": classifier.meta.get("versions"), "serving": serving}
