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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import resource
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

GRACE_S = 10.0  # how long a stuck request may outlive the scenario before its client is cancelled
RECONNECT_PAUSE_S = 0.05


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)  # seconds, measured window only
    answers: int = 0  # every answer, warm-up included
    statuses: dict[str, int] = field(default_factory=dict)  # non-200 statuses
    mismatches: int = 0  # 200 with a body that differs from the reference
    connection_errors: int = 0
    first_bad_body: str | None = None


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one response; handles Content-Length and chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    keep_alive = b"\r\nconnection: close" not in lower
    at = lower.find(b"\r\ncontent-length:")
    if at >= 0:
        end = lower.index(b"\r\n", at + 2)
        return status, await reader.readexactly(int(lower[at + 17 : end])), keep_alive
    if b"\r\ntransfer-encoding: chunked" in lower:
        return status, await read_chunked(reader), keep_alive
    return status, await reader.read(), False


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # no trailers expected: just the final CRLF
    return b"".join(parts)


async def client(spec: dict[str, Any], index: int, tally: Tally, measure_from: float, until: float) -> None:
    requests = [r.encode() for r in spec["requests"]]
    expected = [e.encode() for e in spec["expected"]]
    k = index  # clients start at different requests, so concurrent batches mix rows
    quickack = getattr(socket, "TCP_QUICKACK", None) if spec.get("quickack") else None
    writer: asyncio.StreamWriter | None = None
    while time.perf_counter() < until:
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(spec["host"], spec["port"])
            which = k % len(requests)
            k += 1
            started = time.perf_counter()
            writer.write(requests[which])
            if quickack is not None:
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, quickack, 1)
            status, body, keep_alive = await read_response(reader)
            done = time.perf_counter()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            tally.connection_errors += 1
            writer = await close(writer)
            await asyncio.sleep(RECONNECT_PAUSE_S)
            continue
        tally.answers += 1
        if status != 200:
            tally.statuses[str(status)] = tally.statuses.get(str(status), 0) + 1
        elif body != expected[which]:
            tally.mismatches += 1
            tally.first_bad_body = tally.first_bad_body or body[:500].decode(errors="replace")
        if measure_from <= done <= until:
            tally.latencies.append(done - started)
        if not keep_alive:
            writer = await close(writer)
    await close(writer)


async def close(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    tally = Tally()
    measure_from = time.perf_counter() + spec["warmup_s"]
    until = measure_from + spec["duration_s"]
    tasks = [asyncio.create_task(client(spec, i, tally, measure_from, until)) for i in range(spec["clients"])]
    _, stuck = await asyncio.wait(tasks, timeout=until - time.perf_counter() + GRACE_S)
    for task in stuck:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return summarise(spec, tally, len(stuck))


def summarise(spec: dict[str, Any], tally: Tally, stuck: int) -> dict[str, Any]:
    lat = sorted(tally.latencies)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "clients": spec["clients"],
        "quickack": bool(spec.get("quickack")),
        "duration_s": spec["duration_s"],
        "requests": len(lat),
        "throughput_rps": len(lat) / spec["duration_s"],
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
