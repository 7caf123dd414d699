"""A small HTTP/1.1 server on asyncio protocols, for the route-optimized data plane's one job.

Why not Tornado's `HTTPServer`, as the rest of the server uses: on the listener's path Tornado's
connection, stream and request-handler machinery was ~80% of the event loop's time per request
(profiled at 16 clients), several times the gateway and dispatch work it carries. Here the request
is parsed by httptools (llhttp, the parser uvicorn and Node.js use: chunked bodies, pipelining and
malformed input are its problem, not ours) straight into one `Request`, and the reply is one
`transport.write`.

What it does, per connection: keep-alive (HTTP/1.1 default, HTTP/1.0 on request), pipelined
requests answered one at a time in order, `Expect: 100-continue`, a body limit (413 before reading
a declared-too-large body), a header limit (431), 400 for what the parser refuses, and an idle
timeout that also bounds a client that never finishes its request. Reading pauses while requests
queue up or while the client is not reading its answers, so memory per connection stays bounded.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

log = logging.getLogger("jupyter_serving")

MAX_HEADER_BYTES = 64 * 1024
MAX_QUEUED = 8  # pipelined requests read ahead of the one being answered
IDLE_TIMEOUT_S = 75.0
LINGER_S = 5.0  # after a refusal, how long to read and discard what the client still sends


@dataclass(slots=True)
class Request:
    method: str
    target: bytes  # the raw request target (path and query), as sent
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    # A streamed answer (Server-Sent Events): sent with chunked transfer encoding, each part as it
    # comes; `on_disconnect` is called if the client leaves before the end.
    stream: AsyncIterator[bytes] | None = None
    on_disconnect: Callable[[], None] | None = None


Handler = Callable[[Request], Awaitable[Response]]


class _Refusal(Exception):
    """A request the connection answers itself (parse error, too large) and then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_body(error_code: str, message: str) -> bytes:
    return json.dumps({"error_code": error_code, "message": message}).encode()


_REFUSAL_CODES = {400: "BAD_REQUEST", 413: "BAD_REQUEST", 431: "BAD_REQUEST"}
_REASONS = {status.value: status.phrase for status in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Clock:
    """The Date header, formatted once a second rather than per reply."""

    second = -1
    value = ""

    @classmethod
    def date(cls) -> str:
        now = int(time.time())
        if now != cls.second:
            cls.second, cls.value = now, email.utils.formatdate(now, usegmt=True)
        return cls.value


def encode_stream_head(response: Response, keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
        f"Date: {_Clock.date()}",
        "Content-Type: text/event-stream",
        "Cache-Control: no-cache",
        "Transfer-Encoding: chunked",
    ]
    lines += [f"{key}: {value}" for key, value in response.headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def encode_response(response: Response, keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
        f"Date: {_Clock.date()}",
        "Content-Type: application/json",
        f"Content-Length: {len(response.body)}",
    ]
    lines += [f"{key}: {value}" for key, value in response.headers]
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


class HttpConnection(asyncio.Protocol):
    """One client connection of `server`, whose handler answers each complete request and whose
    settings (body limit, timeouts) it reads there."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: collections.deque[tuple[Request | _Refusal, bool]] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._refused = False  # stop parsing: the last queued item is a refusal, then close
        self._lingering = False  # the refusal is written; discarding input until the client leaves
        self._reading_paused = False
        self._writing_paused = False
        self._continue_owed = False
        self._eof = False
        self._lost = False
        self._on_disconnect: Callable[[], None] | None = None
        self._drained: asyncio.Future[None] | None = None
        # the message being parsed
        self._target = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._head_bytes = 0
        self._in_head = False

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._queue.clear()
        if self._idle is not None:
            self._idle.cancel()
        self._lost = True
        if self._on_disconnect is not None:
            self._on_disconnect()  # a stream in progress: stop its producer
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        # An answer in progress runs to its end (scoring and its inference-table row are not cut
        # short by a client that left); only its write is dropped.

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if not self._refused:
                self._refuse(400, "Protocol upgrades are not supported on the route-optimized URL.")
        except httptools.HttpParserError as exc:
            if not self._refused:
                self._refuse(400, f"Malformed HTTP request: {exc}.")
        # Headers still incomplete after this chunk: count it. Approximate (a pipelined chunk also
        # counts the previous request's tail), which is enough for a bound on a buffer's memory;
        # httptools does not report the offset an exact count would need.
        if self._in_head:
            self._head_bytes += len(data)
        if self._in_head and self._head_bytes > MAX_HEADER_BYTES and not self._refused:
            self._refuse(431, f"The request's headers exceed {MAX_HEADER_BYTES} bytes.")

    def eof_received(self) -> bool:
        """A client that half-closes after its requests still gets their answers, then the close."""
        self._eof = True
        return self._task is not None or bool(self._queue)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._flow()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._flow()
        self._next()

    # ------------------------------------------------------------------ httptools callbacks
    def on_message_begin(self) -> None:
        self._target, self._headers, self._body = b"", {}, []
        self._body_bytes, self._head_bytes, self._in_head = 0, 0, True

    def on_url(self, url: bytes) -> None:
        self._target += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._refused:
            return
        declared = self._headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._server.max_body_bytes:
            self._refuse(413, _too_large(int(declared), self._server.max_body_bytes))
            return
        if self._headers.get("expect", "").lower() == "100-continue":
            if self._task is None and not self._queue:
                self._write(_CONTINUE)
            else:  # owed once the answers before it are written, so the order on the wire holds
                self._continue_owed = True

    def on_body(self, chunk: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(chunk)
        if self._body_bytes > self._server.max_body_bytes:
            self._refuse(413, _too_large(self._body_bytes, self._server.max_body_bytes))
            return
        self._body.append(chunk)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        method = self._parser.get_method().decode("latin-1")
        request = Request(method, self._target, self._headers, b"".join(self._body))
        self._queue.append((request, self._parser.should_keep_alive()))
        self._flow()
        self._next()

    # ------------------------------------------------------------------ answering
    def _refuse(self, status: int, message: str) -> None:
        """Answer `status` after the requests before it, then close: the stream cannot be trusted."""
        self._refused = True
        self._queue.append((_Refusal(status, message), False))
        self._flow()
        self._next()

    def _next(self) -> None:
        if self._task is not None or not self._queue or self._writing_paused or self._transport is None:
            return
        if self._transport.is_closing():
            return
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        item, keep_alive = self._queue.popleft()
        self._flow()
        self._task = self._loop.create_task(self._answer(item, keep_alive))

    async def _answer(self, item: Request | _Refusal, keep_alive: bool) -> None:
        try:
            if isinstance(item, _Refusal):
                code = _REFUSAL_CODES.get(item.status, "BAD_REQUEST")
                response = Response(item.status, error_body(code, str(item)))
            else:
                try:
                    response = await self._server.handler(item)
                except Exception as exc:  # the handler maps every ServingError; this is a bug
                    log.exception("route-optimized listener: unhandled error")
                    message = f"The server failed to handle the request: {exc!r}"
                    response = Response(500, error_body("INTERNAL_ERROR", message))
            if response.stream is not None:
                await self._stream(response, keep_alive)
            else:
                self._write(encode_response(response, keep_alive))
            if isinstance(item, _Refusal):
                self._linger()
            elif not keep_alive and self._transport is not None:
                self._transport.close()
        finally:
            self._task = None
        if self._lingering:
            return
        if self._eof and not self._queue:
            self.close()
            return
        if self._continue_owed and not self._queue:
            self._continue_owed = False
            self._write(_CONTINUE)
        if self._queue:
            self._next()
        else:
            self._arm_idle()

    async def _stream(self, response: Response, keep_alive: bool) -> None:
        """Write a streamed answer part by part, waiting while the client is not reading."""
        assert response.stream is not None
        self._on_disconnect = response.on_disconnect
        try:
            self._write(encode_stream_head(response, keep_alive))
            async for part in response.stream:
                if self._lost:
                    continue  # the producer was told to stop; let the stream record its end
                self._write(b"%x\r\n%b\r\n" % (len(part), part))
                if self._writing_paused and not self._lost:
                    self._drained = self._loop.create_future()
                    await self._drained
            self._write(b"0\r\n\r\n")
        except Exception:  # the head is sent: all that is left to say is that the answer broke off
            log.exception("route-optimized listener: a stream failed")
            self.close()
        finally:
            self._on_disconnect = None
            self._drained = None

    def _linger(self) -> None:
        """Close only after reading away what the client is still sending (a body we refused),
        for up to `linger_s`: closing with unread input makes the kernel reset the connection,
        and the client would see a reset instead of the 413 it was sent."""
        self._lingering = True
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self._loop.call_later(self._server.linger_s, self.close)
        self._flow()

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _flow(self) -> None:
        """Read no further ahead than MAX_QUEUED requests, nor while the client is not reading."""
        if self._transport is None or self._transport.is_closing():
            return
        if self._lingering:
            hold = False
        else:
            hold = self._refused or self._writing_paused or len(self._queue) >= MAX_QUEUED
        if hold and not self._reading_paused:
            self._transport.pause_reading()
            self._reading_paused = True
        elif not hold and self._reading_paused:
            self._transport.resume_reading()
            self._reading_paused = False

    def _arm_idle(self) -> None:
        """Close a connection that sits idle, or half-sent, for `idle_timeout_s`."""
        if self._idle is not None:
            self._idle.cancel()
        self._idle = self._loop.call_later(self._server.idle_timeout_s, self._expire)

    def _expire(self) -> None:
        self._idle = None
        if self._task is None and not self._queue and self._transport is not None:
            self._transport.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _too_large(size: int, limit: int) -> str:
    return f"The request body is {size} bytes; the limit is {limit} bytes."


class HttpServer:
    """Listening sockets and their connections; `close()` ends both."""

    def __init__(
        self,
        handler: Handler,
        max_body_bytes: int,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
        linger_s: float = LINGER_S,
    ) -> None:
        self.handler = handler
        self.max_body_bytes = max_body_bytes
        self.idle_timeout_s = idle_timeout_s
        self.linger_s = linger_s
        self._servers: list[asyncio.Server] = []
        self.connections: set[HttpConnection] = set()

    def _protocol(self) -> HttpConnection:
        return HttpConnection(self)

    async def serve(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        for sock in sockets:
            self._servers.append(await loop.create_server(self._protocol, sock=sock))

    def close(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()
        for connection in list(self.connections):
            connection.close()
