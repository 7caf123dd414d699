"""Capture measurements: record() throughput and latency under concurrency, and reading 1M rows.

Run: ``.venv/bin/python -m benchmarks.capture_bench [--rows 1000000] [--records 20000]``.
Everything lives in a temporary directory (on the same disk as the system temp dir, so fsync
costs are those of that disk).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_serving.capture import InferenceCapture, PayloadRow, request_metadata
from jupyter_serving.capture import table as delta
from jupyter_serving.tables import inference_table

COLS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
META = request_metadata("bench", "iris-lr", 1, "iris-lr-1")


def row(i: int, ts_ms: int) -> PayloadRow:
    request = {"dataframe_split": {"columns": COLS, "data": [[5.1, 3.5, 1.4, 0.2 + (i % 7) / 10]]}}
    return PayloadRow(f"r{i}", ts_ms, 200, 2, json.dumps(request), json.dumps({"predictions": [i % 3]}), META)


async def record_throughput(root: Path, records: int, clients: int) -> dict[str, float]:
    capture = InferenceCapture(root / f"spool-{clients}", flush_interval_s=2.0)
    await capture.start()
    table = root / f"throughput-{clients}_payload"
    latencies: list[float] = []
    per_client = records // clients
    now = int(time.time() * 1000)

    async def client(c: int) -> None:
        for k in range(per_client):
            t0 = time.perf_counter()
            await capture.record(table, row(c * per_client + k, now))
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - t0
    spool = (await capture.stats()).spool
    await capture.stop()
    latencies.sort()
    return {
        "clients": clients,
        "records_per_s": per_client * clients / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * len(latencies))],
        "records_per_sync": spool.records / spool.syncs,
    }


def build_table(path: Path, rows: int, batch: int = 5000) -> float:
    t0 = time.perf_counter()
    start = int(time.time() * 1000) - rows * 10
    for first in range(0, rows, batch):
        records = [row(i, start + i * 10).to_record() for i in range(first, min(first + batch, rows))]
        delta.append_records(path, records, app_id="bench", version=first // batch)
        if (first // batch + 1) % 50 == 0:
            delta.compact(path, vacuum=False)
    delta.compact(path, vacuum=False)
    return time.perf_counter() - t0


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for clients in (1, 16, 64):
            n = args.records // 10 if clients == 1 else args.records
            print("record()", asyncio.run(record_throughput(root, n, clients)))
        table = root / "million_payload"
        print(
            f"build {args.rows} rows: {build_table(table, args.rows):.1f} s, {delta.file_count(table)} files"
        )
        raw_s, raw = timed(inference_table, table, unpack=False)
        print(f"inference_table(unpack=False): {raw_s:.2f} s for {len(raw)} rows")
        unpacked_s, unpacked = timed(inference_table, table)
        print(f"inference_table(): {unpacked_s:.2f} s for {len(unpacked)} rows")
        print("columns:", list(unpacked.columns))


if __name__ == "__main__":
    main()
