"""The frame format between the server and its workers, over one Unix stream socket per replica.

A frame is a fixed header ``(request id, code, meta length, body length)`` followed by the meta
and body bytes. Requests carry the HTTP content type as meta and the client's raw body, so the
server never parses a payload (and, after a NUL, the server's request id for the worker's log
lines); responses carry the HTTP status as code, a small JSON meta
(execution time, client request id) and the response body. Frames are multiplexed by request
id: one connection carries many in-flight requests, which is what lets a worker see them all at
once and coalesce them into one predict call. Plain HTTP would cost a second parser and a
connection per in-flight request on both sides for no gain: the socket is private to us.
"""

from __future__ import annotations

import asyncio
import json
import struct
from dataclasses import dataclass
from typing import Any

HEADER = struct.Struct("!IHII")
INVOKE = 0
PING = 1
STREAM = 2  # a streaming request: answered by CHUNK frames, then one frame whose code is the status
CANCEL = 3  # the server's client left a stream: stop its generator
CHUNK = 1  # response frame code: Server-Sent Event bytes of a stream (statuses are >= 100)
MAX_FRAME = 1 << 31


@dataclass(slots=True)
class Frame:
    request_id: int
    code: int
    meta: bytes
    body: bytes

    def meta_json(self) -> dict[str, Any]:
        return json.loads(self.meta) if self.meta else {}


def request_meta(content_type: str, request_id: str) -> bytes:
    """An INVOKE or STREAM frame's meta: the content type, then NUL and the server's request id
    where there is one (the worker names it in its log lines). A header value never holds a NUL."""
    return f"{content_type}\0{request_id}".encode() if request_id else content_type.encode()


def split_request_meta(meta: bytes) -> tuple[str, str]:
    """(content type, server request id or "") of an INVOKE or STREAM frame's meta."""
    text = meta.decode(errors="replace")
    content_type, nul, request_id = text.rpartition("\0")
    return (content_type, request_id) if nul else (text, "")


def encode(request_id: int, code: int, meta: bytes, body: bytes) -> bytes:
    return HEADER.pack(request_id, code, len(meta), len(body)) + meta + body


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """Read one frame; None at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise ConnectionError("connection closed in the middle of a frame header") from exc
        return None
    request_id, code, meta_len, body_len = HEADER.unpack(header)
    payload = await reader.readexactly(meta_len + body_len)
    return Frame(request_id, code, payload[:meta_len], payload[meta_len:])
