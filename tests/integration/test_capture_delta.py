"""Capture into real Delta tables: round trip, batching triggers, exactly-once after kill -9, compaction."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psutil
import pytest
from deltalake import DeltaTable

from jupyter_serving.capture import (
    InferenceCapture,
    PayloadRow,
    SpoolWriteError,
    payload_table_path,
    request_metadata,
    writer,
)
from jupyter_serving.tables import inference_table

REPO = Path(__file__).resolve().parents[2]
COLS = ["sepal length (cm)", "petal length (cm)"]


def make_row(i: int, entity: str = "iris-lr-1", status: int = 200, ts_ms: int | None = None) -> PayloadRow:
    request = {
        "client_request_id": f"c{i}",
        "dataframe_split": {"columns": COLS, "data": [[5.0 + i % 3, 1.4]]},
    }
    response = (
        {"predictions": [i % 3]} if status == 200 else {"error_code": "BAD_REQUEST", "message": "bad input"}
    )
    return PayloadRow(
        databricks_request_id=f"r{i}",
        client_request_id=f"c{i}",
        timestamp_ms=ts_ms if ts_ms is not None else int(time.time() * 1000),
        status_code=status,
        execution_time_ms=3 + i % 5,
        request=json.dumps(request),
        response=json.dumps(response),
        request_metadata=request_metadata("ep", "iris-lr", entity[-1], entity),
    )


def segments(spool: Path) -> list[Path]:
    return sorted(spool.glob("segment-*.log"))


def ids_in(table: Path) -> list[str]:
    return DeltaTable(str(table)).to_pyarrow_table(columns=["databricks_request_id"]).column(0).to_pylist()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())


def test_rows_round_trip_into_a_databricks_shaped_delta_table(tmp_path: Path) -> None:
    table = payload_table_path(tmp_path / "catalog", "main", "default", "ep")
    day = int(dt.datetime(2024, 3, 1, 23, 59, tzinfo=dt.UTC).timestamp() * 1000)

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=60)
        await capture.start()
        await asyncio.gather(*(capture.record(table, make_row(i, ts_ms=day + i * 30_000)) for i in range(4)))
        await capture.record(table, make_row(4, entity="iris-lr-2", status=400, ts_ms=day))
        await capture.stop()

    run(scenario)
    assert table == tmp_path / "catalog" / "main" / "default" / "ep_payload"
    dtable = DeltaTable(str(table))
    assert dtable.metadata().partition_columns == ["date"]
    schema = {f.name: str(f.type) for f in dtable.schema().fields}
    assert (
        schema["request_metadata"].startswith("Map") and schema["status_code"] == 'PrimitiveType("integer")'
    )
    raw = inference_table(table, unpack=False).set_index("databricks_request_id")
    assert sorted(raw.index) == ["r0", "r1", "r2", "r3", "r4"]
    # Rows straddling midnight UTC land in the partition of their own day.
    assert {str(d) for d in raw["date"]} == {"2024-03-01", "2024-03-02"}
    assert raw.loc["r4", "served_entity_name"] == "iris-lr-2" and raw.loc["r4", "status_code"] == 400
    assert json.loads(raw.loc["r0", "request"])["client_request_id"] == "c0"
    rows = inference_table(table).set_index("databricks_request_id")
    assert rows.loc["r1", "sepal length (cm)"] == 6.0 and rows.loc["r1", "prediction"] == 1
    assert rows.loc["r4", "error"] == "bad input"
    window = inference_table(table, start=dt.datetime(2024, 3, 2), end=dt.datetime(2024, 3, 3))
    assert sorted(window["databricks_request_id"]) == ["r2", "r3"]


def test_full_batch_is_committed_without_waiting_for_the_interval(tmp_path: Path) -> None:
    table = tmp_path / "t_payload"

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=3600, flush_rows=100)
        await capture.start()
        await asyncio.gather(*(capture.record(table, make_row(i)) for i in range(100)))
        await wait_until(lambda: DeltaTable.is_deltatable(str(table)) and len(ids_in(table)) == 100)
        await capture.stop()

    run(scenario)


def test_rows_are_committed_every_flush_interval(tmp_path: Path) -> None:
    table = tmp_path / "t_payload"

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=0.2)
        await capture.start()
        await capture.record(table, make_row(1))
        await wait_until(lambda: DeltaTable.is_deltatable(str(table)) and ids_in(table) == ["r1"])
        await capture.record(table, make_row(2))
        await wait_until(lambda: sorted(ids_in(table)) == ["r1", "r2"])
        # The spool is truncated once its rows are in Delta: only the open segment is left.
        await wait_until(lambda: len(segments(tmp_path / "spool")) == 1)
        await capture.stop()

    run(scenario)


def test_each_endpoint_gets_its_own_table(tmp_path: Path) -> None:
    a, b = tmp_path / "a_payload", tmp_path / "b_payload"

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=3600)
        await capture.start()
        await asyncio.gather(*(capture.record(a if i % 2 else b, make_row(i)) for i in range(10)))
        await capture.stop()

    run(scenario)
    assert sorted(ids_in(a)) == ["r1", "r3", "r5", "r7", "r9"]
    assert sorted(ids_in(b)) == ["r0", "r2", "r4", "r6", "r8"]


def test_concurrent_rows_share_disk_flushes_and_sequential_rows_each_get_one(tmp_path: Path) -> None:
    table = tmp_path / "t_payload"

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=3600)
        await capture.start()
        # 500 requests answered at once cost a handful of disk flushes, not 500.
        await asyncio.gather(*(capture.record(table, make_row(i)) for i in range(500)))
        concurrent = (await capture.stats()).spool
        assert concurrent.records == 500 and concurrent.syncs <= 5
        # A lone request is never held back waiting for company: it gets its own flush.
        for i in range(500, 520):
            await capture.record(table, make_row(i))
        sequential = (await capture.stats()).spool
        assert sequential.records == 520 and sequential.syncs - concurrent.syncs == 20
        await capture.stop()

    run(scenario)
    assert sorted(ids_in(table)) == sorted(f"r{i}" for i in range(520))


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from test_capture_delta import make_row
    from jupyter_serving.capture import InferenceCapture

    async def main():
        capture = InferenceCapture(Path(sys.argv[1]), flush_interval_s=0.05, flush_rows=64)
        await capture.start()
        sys.stdout.write(f"service {capture.pid}\\n")
        table = Path(sys.argv[2])

        async def one(i):
            await capture.record(table, make_row(i))
            sys.stdout.write(f"{i}\\n")  # printed only after the row is acknowledged
            sys.stdout.flush()

        i = 0
        while True:
            await asyncio.gather(*(one(i + k) for k in range(16)))
            i += 16

    asyncio.run(main())
    """
)


def kill_9_under_load(spool: Path, table: Path, *, service_too: bool) -> tuple[set[str], psutil.Process]:
    """Run a capturing process until rows flow and several flushes committed, then SIGKILL it
    (and, with `service_too`, its capture service at the same instant: frozen first, so it
    cannot commit after the server is gone).

    Returns the ids of every row it acknowledged, and its capture service process.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(spool), str(table), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        cwd=REPO,
        env=env,
    )
    assert child.stdout is not None
    first = child.stdout.readline().split()
    assert first[0] == b"service", first
    service = psutil.Process(int(first[1]))
    acked: set[str] = set()
    buffer = b""
    deadline = time.monotonic() + 90
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while len(acked) < 3000 or not (
            DeltaTable.is_deltatable(str(table)) and DeltaTable(str(table)).version() >= 3
        ):
            assert time.monotonic() < deadline and child.poll() is None, "child did not make progress"
            if selector.select(timeout=1.0):
                buffer += os.read(child.stdout.fileno(), 65536)
                *lines, buffer = buffer.split(b"\n")
                acked.update(f"r{int(n)}" for n in lines)
    if service_too:
        service.suspend()
    child.send_signal(signal.SIGKILL)
    if service_too:
        service.kill()
    rest, _ = child.communicate(timeout=30)
    acked.update(f"r{int(n)}" for n in (buffer + rest).split(b"\n")[:-1])
    return acked, service


def wait_gone(process: psutil.Process, timeout_s: float = 60.0) -> None:
    """Until `process` has exited (a zombie left for init to reap counts as exited)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        deadline = time.monotonic() + timeout_s
        while process.status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, f"process {process.pid} is still running"
            with contextlib.suppress(psutil.TimeoutExpired):
                process.wait(0.05)


def test_kill_9_of_the_server_loses_no_acknowledged_row(tmp_path: Path) -> None:
    spool, table = tmp_path / "spool", tmp_path / "t_payload"
    acked, service = kill_9_under_load(spool, table, service_too=False)
    # The service outlives the server, commits everything it acknowledged, and exits by itself.
    wait_gone(service)
    ids = ids_in(table)
    assert acked <= set(ids)
    assert len(ids) == len(set(ids)), "a row was committed twice"
    # Only the empty segment that keeps segment numbers growing is left in the spool.
    assert [p.stat().st_size for p in segments(spool)] == [0]


def test_kill_9_of_server_and_service_loses_nothing_and_replay_adds_no_duplicate(tmp_path: Path) -> None:
    """What a power cut leaves: acknowledged rows only in the spool, committed by the next start."""
    spool, table = tmp_path / "spool", tmp_path / "t_payload"
    acked, service = kill_9_under_load(spool, table, service_too=True)
    wait_gone(service)
    committed_before = len(ids_in(table))
    assert committed_before < len(acked), "the kill should leave acknowledged rows only in the spool"

    async def restart() -> None:
        capture = InferenceCapture(spool)
        await capture.start()
        assert (await capture.stats()).replayed_rows >= len(acked) - committed_before
        await capture.stop()

    run(restart)
    ids = ids_in(table)
    assert acked <= set(ids)
    assert len(ids) == len(set(ids)), "a replayed row was committed twice"


def test_a_killed_service_is_restarted_and_no_acknowledged_row_is_lost(tmp_path: Path) -> None:
    spool, table = tmp_path / "spool", tmp_path / "t_payload"
    acked: list[str] = []

    async def one(capture: InferenceCapture, i: int) -> None:
        await capture.record(table, make_row(i))
        acked.append(f"r{i}")

    async def scenario() -> None:
        capture = InferenceCapture(spool, flush_interval_s=3600)
        await capture.start()
        await asyncio.gather(*(one(capture, i) for i in range(100)))
        first = capture.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        # Rows in flight when the service dies fail clearly (the server answers 503 for them)
        # or are acknowledged by its successor; none hangs.
        outcomes = await asyncio.gather(*(one(capture, i) for i in range(100, 200)), return_exceptions=True)
        assert all(isinstance(o, SpoolWriteError) for o in outcomes if o is not None)
        await one(capture, 200)
        assert capture.pid not in (None, first) and capture.restarts == 1
        await capture.stop()

    run(scenario)
    ids = ids_in(table)
    assert set(acked) <= set(ids) and "r200" in acked
    assert len(ids) == len(set(ids))


def test_crash_between_delta_commit_and_spool_truncation_commits_nothing_twice(tmp_path: Path) -> None:
    spool, table = tmp_path / "spool", tmp_path / "t_payload"
    saved = tmp_path / "saved"

    async def first_run() -> None:
        capture = InferenceCapture(spool, flush_interval_s=3600)
        await capture.start()
        await asyncio.gather(*(capture.record(table, make_row(i)) for i in range(50)))
        await capture.rotate()
        # What a crash right after the Delta commit leaves: the committed segment still on disk.
        shutil.copytree(spool, saved)
        assert await capture.commit_closed() == 50
        await capture.record(table, make_row(50))
        await capture.stop()

    run(first_run)
    for leftover in saved.glob("segment-*.log"):
        shutil.copy(leftover, spool / leftover.name)

    async def second_run() -> None:
        capture = InferenceCapture(spool)
        await capture.start()
        assert (await capture.stats()).replayed_rows == 0
        await capture.record(table, make_row(51))
        await capture.stop()

    run(second_run)
    ids = ids_in(table)
    assert sorted(ids) == sorted(f"r{i}" for i in range(52))


def test_unwritable_table_is_reported_failed_and_its_rows_wait_in_the_spool(tmp_path: Path) -> None:
    table = tmp_path / "blocked_payload"
    table.write_text("a file where the table should be")

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=3600)
        await capture.start()
        await capture.record(table, make_row(1))
        assert await capture.flush_now() == 0
        status, message = capture.table_status(table)
        assert status == "FAILED" and message
        table.unlink()
        assert await capture.flush_now() == 1
        assert capture.table_status(table) == ("ACTIVE", "")
        await capture.stop()

    run(scenario)
    assert ids_in(table) == ["r1"]


def test_compaction_reduces_files_and_keeps_every_row(tmp_path: Path) -> None:
    table = tmp_path / "t_payload"

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=3600, compact_every_commits=1000)
        await capture.start()
        for batch in range(12):
            await asyncio.gather(*(capture.record(table, make_row(batch * 10 + i)) for i in range(10)))
            await capture.flush_now()
        before = len(DeltaTable(str(table)).file_uris())
        result = await capture.optimize(table)
        assert before == 12 and result["files_before"] == 12
        assert result["files_after"] == len(DeltaTable(str(table)).file_uris()) == 1
        await capture.stop()

    run(scenario)
    assert sorted(ids_in(table)) == sorted(f"r{i}" for i in range(120))
    frame = inference_table(table)
    assert len(frame) == 120 and frame["prediction"].notna().all()


def test_background_compaction_runs_after_enough_commits(tmp_path: Path) -> None:
    table = tmp_path / "t_payload"

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=3600, compact_every_commits=5)
        await capture.start()
        for i in range(5):
            await capture.record(table, make_row(i))
            await capture.flush_now()
        assert (await capture.stats()).compactions == 1
        assert len(DeltaTable(str(table)).file_uris()) == 1
        await capture.stop()

    run(scenario)
    assert sorted(ids_in(table)) == [f"r{i}" for i in range(5)]


def test_submitted_rows_are_queued_in_order_and_a_flush_right_after_covers_them(tmp_path: Path) -> None:
    """`submit_json` (usage rows) does not wait for the sync, but a flush sent after it includes it."""
    table = tmp_path / "t_payload"

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=3600)
        await capture.start()
        rows = [json.dumps({"table": str(table), **make_row(i).to_record()}).encode() for i in range(50)]
        assert all(capture.submit_json(row) for row in rows) and capture.unacknowledged == 50
        assert await capture.flush_now() == 50  # sent straight after, without awaiting the rows
        assert capture.unacknowledged == 0
        assert sorted(ids_in(table)) == sorted(f"r{i}" for i in range(50))
        await capture.stop()

    run(scenario)
    with pytest.raises(RuntimeError, match="start"):
        InferenceCapture(tmp_path / "other").submit_json(b"{}")


class _CountingStdin:
    """The service's real stdin transport, counting the server's writes into the pipe."""

    def __init__(self, stdin: asyncio.StreamWriter) -> None:
        self.stdin = stdin
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.stdin.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self.stdin, name)


def test_unawaited_rows_are_held_and_ride_with_the_next_awaited_row(tmp_path: Path) -> None:
    """Usage rows wait (here: without a deadline) and go into the pipe in order with the next
    awaited row, in one write; the service syncs them together."""
    table = tmp_path / "t_payload"
    encode = lambda i: json.dumps({"table": str(table), **make_row(i).to_record()}).encode()  # noqa: E731

    async def scenario() -> None:
        capture = InferenceCapture(tmp_path / "spool", flush_interval_s=3600, hold_unawaited_s=3600)
        await capture.start()
        assert capture._proc is not None
        counting = capture._proc.stdin = _CountingStdin(capture._proc.stdin)  # type: ignore[assignment]
        for i in range(4):
            assert capture.submit_json(encode(i))
            await asyncio.sleep(0)  # a loop iteration: without the hold, each would be pushed
        assert counting.writes == 0 and capture.unacknowledged == 4
        await capture.record_json(encode(4))
        assert counting.writes == 1 and capture.unacknowledged == 0
        stats = await capture.stats()
        assert (stats.spool.records, stats.spool.syncs) == (5, 1)
        assert await capture.flush_now() == 5
        assert ids_in(table) == [f"r{i}" for i in range(5)]
        await capture.stop()

    run(scenario)


def test_held_rows_are_pushed_after_the_hold_or_once_there_are_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With nothing awaited after them, held rows still become durable: after the hold, or at once
    when HOLD_UNAWAITED_ROWS are waiting."""
    monkeypatch.setattr(writer, "HOLD_UNAWAITED_ROWS", 10)
    table = tmp_path / "t_payload"
    encode = lambda i: json.dumps({"table": str(table), **make_row(i).to_record()}).encode()  # noqa: E731

    async def scenario(hold_s: float, rows: int) -> None:
        capture = InferenceCapture(tmp_path / f"spool{rows}", flush_interval_s=3600, hold_unawaited_s=hold_s)
        await capture.start()
        assert all(capture.submit_json(encode(i)) for i in range(rows))
        await wait_until(lambda: capture.unacknowledged == 0)  # acknowledged as durable: no call sent
        assert (await capture.stats()).spool.records == rows
        await capture.stop()

    run(lambda: scenario(0.05, 3))  # pushed by the hold's timer
    run(lambda: scenario(3600, 10))  # pushed for their number
    assert len(ids_in(table)) == 13  # the stops committed both


def test_record_before_start_is_refused(tmp_path: Path) -> None:
    capture = InferenceCapture(tmp_path / "spool")
    with pytest.raises(RuntimeError, match="start"):
        asyncio.run(capture.record(tmp_path / "t", make_row(1)))


def test_a_service_that_cannot_open_its_spool_fails_the_start_clearly(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "spool-id").mkdir(parents=True)  # where the spool's id file should be
    capture = InferenceCapture(spool)
    with pytest.raises(RuntimeError, match=r"exited with code 1 on start-up \(log: .*service\.log\)"):
        asyncio.run(capture.start())
    assert "IsADirectoryError" in (spool / "service.log").read_text()


def test_a_hung_service_is_killed_at_stop_and_its_rows_wait_for_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_serving.capture import writer

    monkeypatch.setattr(writer, "STOP_TIMEOUT_S", 0.5)
    spool, table = tmp_path / "spool", tmp_path / "t_payload"

    async def hang_then_stop() -> None:
        capture = InferenceCapture(spool, flush_interval_s=3600)
        await capture.start()
        await asyncio.gather(*(capture.record(table, make_row(i)) for i in range(20)))
        assert capture.pid is not None
        service = psutil.Process(capture.pid)
        service.suspend()  # a service stuck in its final commit
        await capture.stop()  # returns after the timeout instead of hanging the server's shutdown
        wait_gone(service)

    run(hang_then_stop)
    assert not DeltaTable.is_deltatable(str(table))

    async def restart() -> None:
        capture = InferenceCapture(spool)
        await capture.start()
        assert (await capture.stats()).replayed_rows == 20
        await capture.stop()

    run(restart)
    assert sorted(ids_in(table)) == sorted(f"r{i}" for i in range(20))
