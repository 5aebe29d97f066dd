"""The guards of ``bertfit serve`` against slow or oversized clients, below the app: uvicorn's HTTP protocol with
a deadline for a request's headers and a cap on their size, and :class:`BodyLimit`, the same for its body.

uvicorn times an idle connection out only after an answer (``timeout_keep_alive``), and neither of its
parsers caps headers that arrive in one read (h11 counts only a request still incomplete, httptools
nothing), so a 100 KB header sent at once would reach the app: here the headers are counted before
the parser sees them. This module does not route, check or answer requests (``serve`` does), and
does not count the headers of a request pipelined in the same read as the end of the one before
(those go to the parser uncounted, as a body does). It imports uvicorn and starlette only when used.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
import logging
import re
from typing import Any

log = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024  # a request line and its headers, as h11 limits a request still arriving
HEAD_END = re.compile(rb"\n\r?\n")  # a blank line ends the headers (h11's rule: CRLF, or a bare LF)
REASONS = {400: b"Bad Request", 431: b"Request Header Fields Too Large"}


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

    The deadline runs whenever the server waits on the client for a new request (from the
    connection's start, or the end of the last exchange, to the end of the next request's headers);
    the body then has its own deadline in :class:`BodyLimit`, which answers 408. Headers over
    :data:`MAX_HEADER_BYTES` are answered 431, and the connection closed, before any of them is
    parsed. The parser is httptools (C) where it is installed, as uvicorn itself would choose, else
    h11 (pure Python, several times slower per request). ``serve`` hands uvicorn
    ``functools.partial(http_with_deadline, timeout)``, which pickles for ``--workers``.
    """
    return deadline_protocol(parser())(read_timeout=read_timeout, **kwargs)


@functools.cache
def parser() -> str:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "h11"


@functools.cache
def deadline_protocol(parser: str) -> type:
    """The protocol class over ``parser``, "httptools" or "h11" (the tests run both).

    Long because the class must subclass whichever uvicorn protocol the parser names, so it is
    defined here, around the import that picks it.
    """
    if parser == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base

    class DeadlineProtocol(Base):
        def __init__(self, *args: Any, read_timeout: float, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.read_timeout = read_timeout
            self.deadline: asyncio.TimerHandle | None = None
            self.head: bytearray | None = bytearray()  # the next request's headers so far; None once they are in

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.head is not None and not self._head_fits(data):
                return
            super().data_received(data)
            self._await_next_request()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._await_next_request()

        def send_400_response(self, msg: str) -> None:
            self._refuse(400, msg)  # the parser's own refusals, in the app's shape: {"detail": "..."}

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _head_fits(self, data: bytes) -> bool:
            """Count the headers arriving; False, and the connection answered 431 and closed, past the cap."""
            searched = max(len(self.head) - 2, 0)  # the blank line may have begun in the last read
            self.head += data
            skipped = len(self.head) - len(self.head.lstrip(b"\r\n"))  # blank lines before a request line
            end = HEAD_END.search(self.head, max(searched, skipped))
            size = len(self.head) if end is None else end.end()
            if size > MAX_HEADER_BYTES:
                self._refuse(431, f"request headers of {'over ' if end is None else ''}{size} bytes are over the "
                                  f"limit of {MAX_HEADER_BYTES}; send fewer or shorter headers (cookies, tokens)")
                return False
            if end is not None:  # the headers are in; the app reads the body under its own deadline
                self.head = None
                self._disarm()
            return True

        def _await_next_request(self) -> None:
            """Once a request is read and answered, the next one's headers are counted and timed from here."""
            if self.head is None and not self.transport.is_closing() and self._between_requests():
                self.head = bytearray()
                self._arm()

        def _between_requests(self) -> bool:
            return (self.cycle is None or self.cycle.response_complete) and self._request_received()

        def _refuse(self, status: int, detail: str) -> None:
            body = json.dumps({"detail": detail}).encode()
            head = [b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status])]
            head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                        % len(body))
            log.info("refused a request from %s: %d %s", self.client, status, detail)
            self.transport.write(b"".join(head) + body)
            self.transport.close()

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

    return _with_request_state(DeadlineProtocol, parser)


def _with_request_state(protocol: type, parser: str) -> type:
    """``protocol`` told whether the last request has been received whole, body included, as its parser knows it.

    uvicorn's own ``cycle.more_body`` stays set when the answer went out before the body was read (a 413)."""
    if parser == "h11":
        import h11

        class H11DeadlineProtocol(protocol):
            def _request_received(self) -> bool:
                return self.conn.their_state in (h11.IDLE, h11.DONE)

        return H11DeadlineProtocol

    class HttpToolsDeadlineProtocol(protocol):
        message_complete = True  # httptools calls back at a request's first byte and at its last

        def on_message_begin(self) -> None:
            self.message_complete = False
            super().on_message_begin()

        def on_message_complete(self) -> None:
            self.message_complete = True
            super().on_message_complete()

        def _request_received(self) -> bool:
            return self.message_complete

    return HttpToolsDeadlineProtocol
