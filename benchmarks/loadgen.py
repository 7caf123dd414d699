"""A small closed-loop HTTP/1.1 load generator, run as its own process (stdlib only).

Reads a JSON spec on stdin, writes a JSON result on stdout. Each virtual client owns one keep-alive
connection and sends fixed, pre-encoded requests back to back (the next one as soon as the answer
arrives). An answer counts when it completes inside the measured window, which follows a warm-up;
every answer (warm-up included) is checked: status 200 and a body byte-identical to the reference.

With "quickack", the client re-arms TCP_QUICKACK after each request (Linux), so it ACKs the first
segment of an answer at once instead of up to 40 ms later. That removes the Nagle/delayed-ACK stall
a server without TCP_NODELAY incurs when it writes headers and body separately (uvicorn --workers N).

Spec: {"host", "port", "requests": [raw HTTP request text], "expected": [body text per request],
       "clients", "warmup_s", "duration_s", "quickack": bool (optional)}
Optional keys (used by scenarios.py):
  "stop_file": path: the run ends early once this file exists (checked every 20 ms); the measured
               window then ends there too, and throughput uses the window's actual length.
  "check_body": false: only the status must be 200 (float outputs of batched and single forward
               passes may differ in their last bits, as in gpu.py).
  "record_ids": true: the result lists the `x-request-id` of every 200 answer (`acknowledged_ids`).
  "samples": true: the result lists every attempt as [sent_at, seconds, ok] (`samples`, warm-up
             included), sent_at on the system-wide monotonic clock (time.monotonic() of any process
             on this machine); ok = 1 for a 200 with the reference body, 0 for anything else
             (a connection error or stuck client included, with the seconds until it was detected).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

GRACE_S = 10.0  # how long a stuck request may outlive the scenario before its client is cancelled
RECONNECT_PAUSE_S = 0.05
STOP_POLL_S = 0.02
REQUEST_ID = b"\r\nx-request-id:"


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, measured window only
    answers: int = 0  # every answer, warm-up included
    statuses: dict[str, int] = field(default_factory=dict)  # non-200 statuses
    mismatches: int = 0  # 200 with a body that differs from the reference
    connection_errors: int = 0
    first_bad_body: str | None = None
    acknowledged_ids: list[str] = field(default_factory=list)  # x-request-id of 200s ("record_ids")
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # ("samples")


@dataclass
class Window:
    """The measured window; `until` moves earlier when the stop file appears."""

    measure_from: float
    until: float
    clock_offset: float = field(default_factory=lambda: time.monotonic() - time.perf_counter())


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool, bytes]:
    """(status, body, keep_alive, lower-cased head) of one response; Content-Length and chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep_alive = b"\r\nconnection: close" not in lower
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        return status, await reader.readexactly(int(lower[at + 17 : end])), keep_alive, lower
    if b"\r\ntransfer-encoding: chunked" in lower:
        return status, await read_chunked(reader), keep_alive, lower
    return status, await reader.read(), False, lower


def header_value(lower_head: bytes, name: bytes) -> str | None:
    """A header's value from a lower-cased response head (`name` = b"\\r\\nname:")."""
    at = lower_head.find(name)
    if at < 0:
        return None
    end = lower_head.index(b"\r\n", at + 2)
    return lower_head[at + len(name) : end].strip().decode()


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # no trailers expected: just the final CRLF
    return b"".join(parts)


async def client(spec: dict[str, Any], index: int, tally: Tally, window: Window) -> None:
    requests = [r.encode() for r in spec["requests"]]
    expected = [e.encode() for e in spec["expected"]]
    k = index  # clients start at different requests, so concurrent batches mix rows
    quickack = getattr(socket, "TCP_QUICKACK", None) if spec.get("quickack") else None
    record_ids, samples = bool(spec.get("record_ids")), bool(spec.get("samples"))
    check_body = spec.get("check_body", True)
    writer: asyncio.StreamWriter | None = None
    started = time.perf_counter()
    try:
        while time.perf_counter() < window.until:
            started = time.perf_counter()
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(spec["host"], spec["port"])
                which = k % len(requests)
                k += 1
                started = time.perf_counter()
                writer.write(requests[which])
                if quickack is not None:
                    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, quickack, 1)
                status, body, keep_alive, head = await read_response(reader)
                done = time.perf_counter()
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                tally.connection_errors += 1
                if samples:
                    tally.samples.append((started + window.clock_offset, time.perf_counter() - started, 0))
                writer = await close(writer)
                await asyncio.sleep(RECONNECT_PAUSE_S)
                continue
            tally.answers += 1
            ok = 0
            if status != 200:
                tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
            elif check_body and body != expected[which]:
                tally.mismatches += 1
                tally.first_bad_body = tally.first_bad_body or body[:500].decode(errors="replace")
            else:
                ok = 1
            if record_ids and status == 200:
                tally.acknowledged_ids.append(header_value(head, REQUEST_ID) or "")
            if samples:
                tally.samples.append((started + window.clock_offset, done - started, ok))
            if window.measure_from <= done <= window.until:
                tally.latencies.append(done - started)
            if not keep_alive:
                writer = await close(writer)
    except asyncio.CancelledError:  # stuck past the grace period: the caller counts it
        if samples:
            tally.samples.append((started + window.clock_offset, time.perf_counter() - started, 0))
        raise
    finally:
        await close(writer)


async def close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def watch_stop_file(path: str, window: Window) -> None:
    while time.perf_counter() < window.until:
        if os.path.exists(path):
            window.until = time.perf_counter()
            return
        await asyncio.sleep(STOP_POLL_S)


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    tally = Tally()
    measure_from = time.perf_counter() + spec["warmup_s"]
    window = Window(measure_from, measure_from + spec["duration_s"])
    watcher = (
        asyncio.create_task(watch_stop_file(spec["stop_file"], window)) if spec.get("stop_file") else None
    )
    tasks = [asyncio.create_task(client(spec, i, tally, window)) for i in range(spec["clients"])]
    pending = set(tasks)
    while pending and (left := window.until + GRACE_S - time.perf_counter()) > 0:
        _, pending = await asyncio.wait(pending, timeout=min(left, 0.5))  # `until` may move earlier
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if watcher is not None:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return summarise(spec, tally, len(pending), max(window.until - window.measure_from, 1e-9))


def summarise(spec: dict[str, Any], tally: Tally, stuck: int, duration_s: float) -> dict[str, Any]:
    lat = sorted(tally.latencies)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "clients": spec["clients"],
        "quickack": bool(spec.get("quickack")),
        "duration_s": duration_s,
        "requests": len(lat),
        "throughput_rps": len(lat) / duration_s,
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "max_ms": 1000 * lat[-1] if lat else None,
        "mean_ms": 1000 * sum(lat) / len(lat) if lat else None,
        "answers_checked": tally.answers,
        "errors": sum(tally.statuses.values()) + tally.mismatches + tally.connection_errors + stuck,
        "error_statuses": tally.statuses,
        "mismatched_bodies": tally.mismatches,
        "connection_errors": tally.connection_errors,
        "stuck_clients": stuck,
        "first_bad_body": tally.first_bad_body,
        "loadgen_cpu_s": usage.ru_utime + usage.ru_stime,
        **({"acknowledged_ids": tally.acknowledged_ids} if spec.get("record_ids") else {}),
        **({"samples": tally.samples} if spec.get("samples") else {}),
    }


def percentile(sorted_s: list[float], pct: float) -> float | None:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_s:
        return None
    rank = min(len(sorted_s), max(1, math.ceil(pct / 100 * len(sorted_s)))) - 1
    return 1000 * sorted_s[rank]


def main() -> None:
    spec = json.load(sys.stdin)
    json.dump(asyncio.run(run(spec)), sys.stdout)


if __name__ == "__main__":
    main()
