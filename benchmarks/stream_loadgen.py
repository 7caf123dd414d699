"""Streaming load generator for stream_bench.py, run in its own interpreter (JSON spec on stdin,
JSON result on stdout). Raw asyncio streams (uvloop when installed) speaking HTTP/1.1 keep-alive,
so the client spends as little of the shared CPUs as possible and every server gets the same client.

Spec keys: ``host``, ``port``, ``path``, ``headers`` (dict), ``body`` (str: a ``"stream": true``
request), ``chunks`` (events each stream must carry before ``data: [DONE]``), ``mode``:

- ``"ttfc"``: one connection, ``warmup`` + ``repeats`` streams one after another; for each, the
  milliseconds from writing the request to holding the first whole event (``data: ...\\n\\n``);
  every stream is read to its end and checked.
- ``"throughput"``: ``clients`` connections, each opening streams back to back for ``warmup_s`` +
  ``duration_s``; events are counted as their bytes arrive, and ``chunks_per_s`` is the events
  received inside the measured window over its length (the streams still open at its end are read
  to their end and checked, not counted in the window).

A stream counts as an error unless it answers 200 with ``text/event-stream`` and carries exactly
``chunks`` events, then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

EVENT = b"\ndata: "  # an event starts a line; the body's first line gets a "\n" prepended
DONE = b"data: [DONE]\n\n"


class Conn:
    """One keep-alive HTTP/1.1 connection that sends the same request again and again."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        body = spec["body"].encode()
        head = [f"POST {spec['path']} HTTP/1.1", f"Host: {spec['host']}:{spec['port']}"]
        head += [f"{k}: {v}" for k, v in spec["headers"].items()]
        head += [f"Content-Length: {len(body)}", "", ""]
        self.request = "\r\n".join(head).encode() + body
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.spec["host"], self.spec["port"])
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None

    async def stream(self) -> AsyncIterator[bytes]:
        """Send the request; yield the body's pieces as they arrive (chunked or length or close)."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(self.request)
        reader = self.reader
        status = (await reader.readline()).split(b" ", 2)
        headers: dict[bytes, bytes] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            key, _, value = line.partition(b":")
            headers[key.strip().lower()] = value.strip()
        if (
            len(status) < 2
            or status[1] != b"200"
            or b"text/event-stream" not in headers.get(b"content-type", b"")
        ):
            raise RuntimeError(f"answer {status!r} {headers!r}")
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()  # the empty trailer
                    break
                data = await reader.readexactly(size + 2)
                yield data[:-2]
        elif b"content-length" in headers:
            yield await reader.readexactly(int(headers[b"content-length"]))
        else:
            while data := await reader.read(65536):
                yield data
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()


class Counter:
    """Events in a stream's body, counted across piece boundaries; whether it ended with [DONE]."""

    def __init__(self) -> None:
        self.events = 0
        self.tail = b"\n"
        self.first_at: float | None = None

    def feed(self, data: bytes) -> int:
        buf = self.tail + data
        found = buf.count(EVENT)
        self.events += found
        if self.first_at is None and self.events and b"\n\n" in buf[buf.find(EVENT) + 1 :]:
            self.first_at = time.perf_counter()
        self.tail = buf[-(len(DONE) + 1) :]
        return found

    def ok(self, chunks: int) -> bool:
        return self.events == chunks + 1 and self.tail.endswith(DONE)


async def ttfc(spec: dict[str, Any]) -> dict[str, Any]:
    conn, times, errors = Conn(spec), [], []
    for i in range(spec["warmup"] + spec["repeats"]):
        counter = Counter()
        started = time.perf_counter()
        try:
            async for data in conn.stream():
                counter.feed(data)
        except Exception as exc:
            errors.append(repr(exc)[:300])
            await conn.close()
            continue
        if not counter.ok(spec["chunks"]) or counter.first_at is None:
            errors.append(f"stream {i}: {counter.events} events, tail {counter.tail!r}")
        elif i >= spec["warmup"]:
            times.append((counter.first_at - started) * 1000)
    await conn.close()
    return {"ttfc_ms": times, "errors": len(errors), "error_samples": errors[:5]}


async def throughput(spec: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    window = (start + spec["warmup_s"], start + spec["warmup_s"] + spec["duration_s"])
    totals = {"window_chunks": 0, "all_chunks": 0, "streams": 0}
    errors: list[str] = []

    async def client() -> None:
        conn = Conn(spec)
        while time.perf_counter() < window[1]:
            counter = Counter()
            try:
                async for data in conn.stream():
                    found = counter.feed(data)
                    totals["all_chunks"] += found
                    if window[0] <= time.perf_counter() < window[1]:
                        totals["window_chunks"] += found
            except Exception as exc:
                errors.append(repr(exc)[:300])
                await conn.close()
                continue
            totals["streams"] += 1
            if not counter.ok(spec["chunks"]):
                errors.append(f"{counter.events} events, tail {counter.tail!r}")
        await conn.close()

    cpu = os.times()
    await asyncio.gather(*(client() for _ in range(spec["clients"])))
    used = os.times()
    return {
        "chunks_per_s": totals["window_chunks"] / spec["duration_s"],
        "chunks_received": totals["all_chunks"],  # [DONE] events included: what the server sent
        "streams": totals["streams"],
        "errors": len(errors),
        "error_samples": errors[:5],
        "client_cpu_s": (used.user - cpu.user) + (used.system - cpu.system),
        "wall_s": time.perf_counter() - start,
    }


def main() -> None:
    spec = json.load(sys.stdin)
    run = ttfc if spec["mode"] == "ttfc" else throughput
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
