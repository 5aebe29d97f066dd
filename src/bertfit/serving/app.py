"""``bertfit serve``: a model folder behind HTTP (FastAPI + uvicorn), with concurrent requests batched.

Four stages, as LitServe lays a server out:

1. **Load once**: :func:`create_app` takes a loaded :class:`~bertfit.model.TextClassifier` (torch or
   ONNX backend); :func:`serve` binds the port (a port in use is a one-line error), loads the folder
   and runs uvicorn on that socket.
2. **Decode a request**: ``POST /predict`` takes ``{"texts": [...], "pairs": [...], "threshold": x}``,
   checked against the limits (body size: 413; texts per request, characters per text, an empty text,
   a pair missing or unwanted, text that is not valid Unicode, a body that is not JSON or not of the
   schema: 422, each message naming the limit and the flag that raises it), and against slow clients
   (a body still arriving ``read_timeout`` s after its headers: 408; headers that take that long: the
   connection is closed; headers over 16 KiB: 431, see :mod:`bertfit.serving.http_protocol`). Every 4xx
   answer is ``{"detail": "<one line>"}``.
3. **Predict a batch**: :class:`~bertfit.serving.batcher.Batcher` gathers the texts of concurrent requests into
   batches of up to ``max_batch`` texts, runs up to ``parallel_batches`` forward passes at once in
   worker threads and hands each caller its own rows. A caller that disconnects first is dropped from the queue
   unscored, and a batch that fails is retried request by request, so one request cannot fail another.
4. **Encode the response**: per text, the record ``bertfit predict`` prints.

Also ``GET /health``, ``GET /info`` (labels, task, metrics, versions, limits, batching counts; folder
names, never their paths), ``GET /docs`` (the API as plain HTML rendered here, :mod:`bertfit.serving.docs_page`:
no CDN, so it works offline; the schema at ``/openapi.json``), and ``GET /`` a small page
(``static/index.html``, plain HTML + JS) to try texts by hand; each of those four answers ``HEAD`` too.
Needs ``pip install 'bertfit[serve]'``; this module has no authentication and binds 127.0.0.1 unless
told otherwise. It does not train, export or decide labels (``model`` does).
"""

# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at run time,
# and the request models are defined inside create_app (fastapi and pydantic load only when serving).

import asyncio
import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import socket
from collections.abc import Sequence
from importlib import resources
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from bertfit import __version__
from bertfit.config import ServeConfig, check
from bertfit.encoding import is_blank
from bertfit.environment import require, versions
from bertfit.errors import UsageError
from bertfit.serving.batcher import Batcher
from bertfit.serving.http_protocol import BodyLimit, http_with_deadline

log = logging.getLogger(__name__)

ENV_SETTINGS = "BERTFIT_SERVE_SETTINGS"  # how `--workers N` hands the settings to each worker process
LOOPBACK = ("127.0.0.1", "localhost", "::1")
BACKLOG = 2048  # connections waiting to be accepted, uvicorn's default
EXAMPLE_BODY = '{"texts": ["..."]}'
PATH_KEYS = ("source", "data")  # fields of bertfit.json's export record that hold a file or folder


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
            if is_blank(value):  # training drops empty texts: the model never learnt what one means
                what = " (whitespace only)" if value.strip() == "" else " (invisible characters only)"
                what = what if value else ""
                return f"{name} {i} is empty{what}; send non-empty texts (training drops empty ones)"
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


def validation_detail(errors: Sequence[dict]) -> str:
    """FastAPI's list of validation errors as one line: where, what is wrong, what was sent, and the fix."""
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = error.get("ctx", {}).get("error", "JSON decode error")
            return (f"the body is not valid JSON ({reason} at character {error['loc'][-1]}); send JSON such as "
                    f"{EXAMPLE_BODY}")
        if isinstance(error.get("input"), bytes | bytearray):  # FastAPI reads JSON only when the request says so
            return ("the body was not sent as JSON (its content-type is not application/json); send it with the "
                    f"header content-type: application/json, e.g. {EXAMPLE_BODY}")
    problems = [f"{_where(error.get('loc', ()))}: {error.get('msg', 'invalid')}"
                + ("" if error.get("type") == "missing" else f", got {_short(error.get('input'))}")
                for error in errors]
    more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + f"{more}; send JSON such as {EXAMPLE_BODY}"


def _where(loc: Sequence[str | int]) -> str:
    """("body", "texts", 0) as ``texts[0]``; the body itself as ``body``."""
    parts = list(loc)[1:] if list(loc)[:1] == ["body"] else list(loc)
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".") or "body"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."


async def _disconnected(request: Any) -> None:
    """Returns when the client of ``request`` disconnects (its body is read: the next ASGI message says so)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def page() -> str:
    """The try-it page served at / (plain HTML + JS, no build step)."""
    return (resources.files("bertfit") / "serving" / "static" / "index.html").read_text(encoding="utf-8")


def create_app(classifier: Any, config: ServeConfig | None = None, model_dir: str | None = None) -> Any:
    """The FastAPI app serving ``classifier``; the batcher starts and stops with the app (its lifespan).

    Long because FastAPI reads a route's request model and handler where they are defined, and both
    close over this app's classifier, config and batcher; the pages are added by ``_add_pages``.
    """
    require("serve", "bertfit serve")
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, Field

    config = config or ServeConfig()
    check(config)
    batcher = Batcher(classifier, config.max_batch, config.max_wait_ms / 1000, config.parallel_batches)
    multi_label = classifier.multi_label

    class PredictRequest(BaseModel):
        texts: list[str] = Field(description="the texts to classify, none empty", examples=[["the screen cracked"]])
        pairs: list[str] | None = Field(None, description="sentence-pair models: the second text of each text")
        threshold: float | None = Field(None, strict=True,  # true and "0.5" are no thresholds, though pydantic
                                        # would read them as 1.0 and 0.5
                                        description="multi-label models: one threshold for every label, instead of "
                                                    "the per-label ones tuned on validation")

    class PredictResponse(BaseModel):
        predictions: list[dict[str, Any]] = Field(description=(
            "per text, in order, what `bertfit predict` prints: text (and text_pair), "
            + ("labels (a list)" if multi_label else "label and score") + ", probabilities by label"))

    class Problem(BaseModel):
        detail: str = Field(description="what was wrong, what is valid and the fix, in one line")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    # FastAPI's /docs and /redoc load their scripts from a CDN: blank offline. _add_pages serves its own /docs.
    app = FastAPI(title="bertfit", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description=f"A bertfit text classifier ({classifier.record.task.value}, "
                              f"{len(classifier.labels)} labels, {classifier.backend.name} backend).")
    app.add_middleware(BodyLimit, limit=config.max_body_bytes, timeout=config.read_timeout)
    app.state.batcher = batcher

    _add_error_handlers(app)

    @app.post("/predict", response_model=PredictResponse, summary="Classify texts",
              responses={408: {"model": Problem, "description": "the body took over --read-timeout to arrive"},
                         413: {"model": Problem, "description": "the body is over --max-body-bytes"},
                         422: {"model": Problem, "description": "a limit, an empty text, or a body that is not "
                                                                "JSON of this schema"}})
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

    _add_pages(app, classifier, config, model_dir)
    return app


def _add_error_handlers(app: Any) -> None:
    """Every 4xx answer as {"detail": "<one line>"}: FastAPI's list of validation errors made one line too."""
    from fastapi import Request
    from fastapi.exception_handlers import http_exception_handler
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def unreadable_body(request: Request, exc: StarletteHTTPException):
        # FastAPI answers a body its JSON parser gives up on with a bare 400 (invalid UTF-8, nesting too deep,
        # a number too long); like any other malformed JSON it is a 422 here, saying why.
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, (ValueError, RecursionError)):
            return JSONResponse({"detail": f"the body is not valid JSON ({cause}); send UTF-8 JSON such as "
                                           f"{EXAMPLE_BODY}"}, status_code=422)
        return await http_exception_handler(request, exc)


def _add_pages(app: Any, classifier: Any, config: ServeConfig, model_dir: str | None) -> None:
    """GET (and HEAD) /health, /info, /docs and the try-it page /."""
    from fastapi.responses import HTMLResponse, JSONResponse

    from bertfit.serving import docs_page

    batcher = app.state.batcher
    versions = _versions(classifier)
    page_html = page()

    def get(path: str, **kwargs: Any) -> Any:
        def register(endpoint: Any) -> Any:
            # HEAD answers as GET does (uvicorn sends no body); left out of the schema, whose operation ids are unique
            app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False,
                              response_class=kwargs.get("response_class", JSONResponse))
            return app.get(path, **kwargs)(endpoint)
        return register

    @get("/health", summary="Liveness")
    async def health():
        return {"status": "ok"}

    @get("/info", summary="The model: labels, task, metrics, versions, limits (folder names, not paths)")
    async def info():
        record = classifier.record
        return {"model_dir": Path(model_dir).resolve().name if model_dir else None,
                "labels": list(classifier.labels.names), "task": record.task.value,
                "text_pair_col": classifier.text_pair_col, "backend": classifier.backend.name,
                "export": _without_paths(record.export), "max_length": classifier.max_length,
                "metrics": record.metrics or None, "versions": versions, "limits": dataclasses.asdict(config),
                "batching": {**batcher.stats, "queued": batcher.queued()}}

    @get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs():
        return HTMLResponse(docs_page.render(app.openapi()))

    @get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page_html)


def _without_paths(value: Any, key: str = "") -> Any:
    """``value`` with each file or folder cut to its name: /info says what a model is, not where things live."""
    if isinstance(value, dict):
        return {k: _without_paths(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_paths(v) for v in value]
    if isinstance(value, str) and (key in PATH_KEYS or PurePosixPath(value).is_absolute()
                                   or PureWindowsPath(value).is_absolute() or value.startswith("~")):
        return PureWindowsPath(value).name or value  # (a Windows path splits on both / and \\)
    return value


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          backend: str = "auto", config: ServeConfig | None = None, log_level: str = "info") -> None:
    """Load the folder and serve it with uvicorn until interrupted; ``workers`` > 1 runs that many processes.

    The port is bound first, here, so that a port in use is one clear error before the model loads, and
    ``port=0`` serves on the port the system picks (the log line names it)."""
    require("serve", "bertfit serve")
    from bertfit.model import TextClassifier

    config = config or ServeConfig()
    check(config)
    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {port}")
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if not host.strip():  # an empty name binds every interface: what an unset "$HOST" would do without a word
        raise UsageError(f"--host is empty ({host!r}); pass --host 127.0.0.1 (this machine only) or --host 0.0.0.0 "
                         "(every interface, on purpose)")
    with listen(host, port) as sock:
        if host not in LOOPBACK:
            log.warning("bound %s: other machines can reach this server, and it has no authentication", host)
        # fails here, once, if it cannot load
        classifier = TextClassifier.from_pretrained(model_dir, backend=backend, threads=config.threads)
        port = sock.getsockname()[1]
        log.info("serving %s (%s backend) on http://%s:%d  (docs: /docs, try it: /)", model_dir,
                 classifier.backend.name, f"[{host}]" if ":" in host else host, port)
        if workers == 1:
            app = create_app(classifier, config, str(model_dir))
        else:
            del classifier  # each worker process loads its own
            os.environ[ENV_SETTINGS] = json.dumps({"model_dir": str(model_dir), "backend": backend,
                                                   "config": dataclasses.asdict(config)})
            app = "bertfit.serving.app:app_from_environment"
        _run_uvicorn(app, sock, host, port, workers, config.read_timeout, log_level)


def _run_uvicorn(app: Any, sock: socket.socket, host: str, port: int, workers: int, read_timeout: float,
                 log_level: str) -> None:
    """uvicorn on the bound ``sock``, as ``uvicorn.run`` would run it: one server, or its supervisor of ``workers``
    processes, each importing the app factory ``app`` names."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(app, host=host, port=port, workers=workers, factory=workers > 1, log_level=log_level,
                            http=functools.partial(http_with_deadline, read_timeout))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C stops the server; uvicorn.run swallows it the same way
        if workers > 1:
            Multiprocess(config, sockets=[sock]).run()
            return
        server = uvicorn.Server(config)
        server.run(sockets=[sock])
        if not server.started:  # stopped before it served (uvicorn has logged why): its exit code, as uvicorn.run
            raise SystemExit(STARTUP_FAILURE)


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` as uvicorn binds one (SO_REUSEADDR), or a UsageError naming the fix."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            fix = "the port is in use; pass --port N (--port 0 picks a free one), or stop the process using it"
        elif err.errno == errno.EACCES:
            fix = "permission denied (ports below 1024 need root); pass --port N with N over 1023"
        elif isinstance(err, socket.gaierror) or err.errno == errno.EADDRNOTAVAIL:
            fix = (f"{host!r} is not an address of this machine ({err.strerror}); pass --host 127.0.0.1 (this "
                   "machine only) or --host 0.0.0.0 (every interface)")
        else:
            fix = f"{err.strerror or err}; pass another --port N or --host"
        raise UsageError(f"cannot listen on {where}: {fix}") from None
    sock.set_inheritable(True)  # the worker processes of --workers serve on it too
    return sock


def app_from_environment() -> Any:
    """The app of one worker process of ``serve(workers=N)``: settings come from $BERTFIT_SERVE_SETTINGS."""
    from bertfit.model import TextClassifier

    settings = json.loads(os.environ[ENV_SETTINGS])
    config = ServeConfig(**settings["config"])
    classifier = TextClassifier.from_pretrained(settings["model_dir"], backend=settings["backend"],
                                                threads=config.threads)
    return create_app(classifier, config, settings["model_dir"])


def _versions(classifier: Any) -> dict[str, Any]:
    runtime = "onnxruntime" if classifier.backend.name == "onnx" else "torch"
    serving = versions("fastapi", "uvicorn", runtime, machine=False)
    return {"trained_with": classifier.record.versions or None, "serving": serving}
