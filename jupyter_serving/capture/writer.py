"""`InferenceCapture`: the server's one object for payload logging, spool to Delta.

The work happens in the capture service, a helper process (`service`, which explains why and
defines the protocol). This side, on the server's event loop, encodes each row, hands it to the
service over a pipe, and returns once the service says the row is durable. Rows that arrive in the
same loop iteration go into the pipe with one write, and the service syncs whatever it finds in
the pipe at once, so concurrent requests share one disk flush. Rows nobody waits on (usage rows)
are held back a little longer and ride along with the next write (`HOLD_UNAWAITED_S`).

If the service dies, rows in flight fail with `SpoolWriteError` (the server answers 503 with
Retry-After: the row is not stored, so the request is not acknowledged) and the service is started
again; rows acknowledged before are in its spool and the new service commits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_serving.capture.committer import CommitStats
from jupyter_serving.capture.row import PayloadRow
from jupyter_serving.capture.spool import SpoolStats, SpoolWriteError, encode_json

log = logging.getLogger(__name__)

SERVICE_MODULE = "jupyter_serving.capture.service"
START_TIMEOUT_S = 120.0  # a predecessor may still be committing a long backlog (see service.open)
STOP_TIMEOUT_S = 120.0  # for the final commit of everything spooled; past it, the next start commits
RESTART_WAIT_S = 10.0  # a row waits this long for a restarting service before it fails
RESTART_BACKOFF_S = (0.0, 0.5, 2.0, 5.0)
PIPELINE_DEPTH = 2  # writes of rows into the pipe that may await their acknowledgement at once
# Rows submitted unawaited (usage rows) wait up to this long, or until this many are held, or until
# an awaited row or a call goes into the pipe (in order, with it): a tenth of a second's usage rows
# then cost the service one write and one sync instead of one per loop iteration, which cuts its
# CPU per row by about a third under load (0.042-0.057 -> 0.030-0.037 ms at 64 clients). Nobody
# waits on them, so only a kill -9 of the server notices the delay.
HOLD_UNAWAITED_S = 0.1
HOLD_UNAWAITED_ROWS = 2000


class CaptureServiceError(RuntimeError):
    """A call to the capture service failed (the message is the service's)."""


class _LineProtocol(asyncio.Protocol):
    """Hands each line of a pipe to `on_line` as it arrives; resolves `closed` at its end."""

    def __init__(self, on_line: Callable[[bytes], None], closed: asyncio.Future[None]) -> None:
        self._on_line = on_line
        self._closed = closed
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self._on_line(line)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed.done():
            self._closed.set_result(None)


@dataclass(slots=True)
class CaptureStats(CommitStats):
    """The service's counters since it started: its committer's, and its spool's."""

    spool: SpoolStats = field(default_factory=SpoolStats)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CaptureStats:
        return cls(**{**data, "spool": SpoolStats(**data.get("spool", {}))})


class InferenceCapture:
    """Durable, batched payload logging into Delta inference tables, through the capture service.

    One instance per server, used from its asyncio event loop.
    """

    def __init__(
        self,
        spool_dir: Path,
        *,
        flush_interval_s: float = 2.0,
        flush_rows: int = 5000,
        compact_every_commits: int = 50,
        log_path: Path | None = None,
        hold_unawaited_s: float = HOLD_UNAWAITED_S,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        self.compact_every_commits = compact_every_commits
        self.log_path = log_path
        self.hold_unawaited_s = hold_unawaited_s
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._restarting: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._acks: deque[asyncio.Future[None] | None] = deque()  # None: a row submitted unawaited
        self._calls: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._out: list[bytes] = []
        self._out_rows = 0  # rows among the lines in `_out`
        self._pushes: deque[int] = deque()  # per write into the pipe, its rows not yet answered
        self._push_scheduled = False
        self._urgent = False  # `_out` holds an awaited row or a call: push as soon as allowed
        self._held = 0  # unawaited rows in `_out` since the last push
        self._hold_timer: asyncio.TimerHandle | None = None
        self._errors: dict[str, str] = {}
        self._started = False
        self._stopping = False

    @property
    def pid(self) -> int | None:
        """The capture service's process id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the service; it commits anything a previous run left in the spool first."""
        self._stopping = False
        await self._launch()
        self._started = True

    async def _launch(self) -> None:
        cmd = [sys.executable, "-m", SERVICE_MODULE, str(self.spool_dir)]
        cmd += ["--flush-interval-s", str(self.flush_interval_s), "--flush-rows", str(self.flush_rows)]
        cmd += ["--compact-every-commits", str(self.compact_every_commits)]
        self.spool_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_path = self.log_path or self.spool_dir / "service.log"
        loop = asyncio.get_running_loop()
        # The service's output is read by a protocol, not a StreamReader task: an acknowledgement
        # then resolves its rows in the loop iteration it arrives in, one iteration sooner.
        read_fd, write_fd = os.pipe()
        try:
            with open(log_path, "ab") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=write_fd,
                    stderr=log_file,
                    # Ctrl-C in the server's terminal must not cut a final commit short: the server
                    # stops the service itself, and its stdin closing ends it if the server dies.
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        ready: asyncio.Future[bytes] = loop.create_future()
        closed: asyncio.Future[None] = loop.create_future()
        await loop.connect_read_pipe(
            lambda: _LineProtocol(lambda line: self._on_line(line, ready), closed),
            os.fdopen(read_fd, "rb", buffering=0),
        )
        either: set[asyncio.Future[Any]] = {ready, closed}
        await asyncio.wait(either, timeout=START_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            timed_out = not closed.done()
            if timed_out:
                proc.kill()
            code = await proc.wait()
            why = f"did not start within {START_TIMEOUT_S:g} s" if timed_out else f"exited with code {code}"
            raise RuntimeError(f"the capture service {why} on start-up (log: {log_path})")
        self._proc = proc
        self._watcher = loop.create_task(self._watch(proc, closed), name="capture-watcher")
        self._ready.set()

    async def stop(self) -> None:
        """Commit everything acknowledged so far and end the service."""
        if not self._started:
            return
        self._stopping = True
        if self._restarting is not None:
            self._restarting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._restarting
        if self.pid is not None:
            try:
                await asyncio.wait_for(self._call("stop"), STOP_TIMEOUT_S)
            except TimeoutError:
                # Acknowledged rows are in the spool: the next start commits them.
                log.error("the capture service did not stop within %g s; killing it", STOP_TIMEOUT_S)
                if self._proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        self._proc.kill()
            except (CaptureServiceError, SpoolWriteError):
                pass
        if self._proc is not None:
            await self._proc.wait()
        if self._watcher is not None:
            await self._watcher
        self._started = False

    # -- request path ----------------------------------------------------------------------------

    async def record(self, table_path: Path, row: PayloadRow) -> None:
        """Return once `row` is durably spooled; it reaches `table_path` at the next flush.

        Raises `SpoolWriteError` (an OSError) if the row could not be made durable.
        """
        await self.record_json(encode_json({"table": str(table_path), **row.to_record()}))

    async def record_json(self, payload: bytes) -> None:
        """`record` for a row already encoded as JSON with its "table" (see `row.RowEncoder`)."""
        await self._until_ready(SpoolWriteError)
        await self._enqueue(payload)

    def submit_json(self, payload: bytes) -> bool:
        """Queue a row now, in order with everything sent after it, and do not wait for it to be
        durable (no future per row: this is for rows no caller waits on, like usage rows); a row
        that cannot be stored is logged. It reaches the service with the next awaited row or call,
        or within `hold_unawaited_s`. False while the service is being restarted: then use
        `record_json`, which waits for it."""
        if not self._started:
            raise RuntimeError("InferenceCapture.start() has not been awaited")
        if not self._ready.is_set():
            return False
        self._acks.append(None)
        self._send(payload + b"\n", rows=1, hold=True)
        return True

    @property
    def unacknowledged(self) -> int:
        """Rows sent and not yet acknowledged: what a caller that does not wait bounds itself by."""
        return len(self._acks)

    def _enqueue(self, payload: bytes) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks.append(done)
        self._send(payload + b"\n", rows=1)
        return done

    async def _until_ready(self, error: type[Exception]) -> None:
        if not self._started:
            raise RuntimeError("InferenceCapture.start() has not been awaited")
        if not self._ready.is_set():  # the service is being restarted
            try:
                await asyncio.wait_for(self._ready.wait(), RESTART_WAIT_S)
            except TimeoutError:
                raise error("the capture service is not running") from None

    def _send(self, line: bytes, rows: int = 0, *, hold: bool = False) -> None:
        """Queue `line` for the pipe: pushed soon, or (`hold`, an unawaited row) held back."""
        self._out.append(line)
        self._out_rows += rows
        if not hold:
            self._schedule_push()
            return
        self._held += 1
        if self._held >= HOLD_UNAWAITED_ROWS:
            self._release_held()
        elif self._hold_timer is None:
            loop = asyncio.get_running_loop()
            self._hold_timer = loop.call_later(self.hold_unawaited_s, self._release_held)

    def _release_held(self) -> None:
        """Unawaited rows have waited long enough (or are many): push them as an awaited row."""
        self._hold_timer = None  # a push cancels the timer, so held rows are waiting when it fires
        self._schedule_push()

    def _schedule_push(self) -> None:
        self._urgent = True
        if not self._push_scheduled and len(self._pushes) < PIPELINE_DEPTH:
            self._push_scheduled = True
            asyncio.get_running_loop().call_soon(self._push)

    def _cancel_hold(self) -> None:
        self._held = 0
        self._urgent = False
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None

    def _push(self) -> None:
        """Write what is waiting into the pipe: at most once per loop iteration, and with at most
        PIPELINE_DEPTH writes of rows unacknowledged. With two, the service finds the next batch in
        the pipe the moment a sync ends; rows arriving after that could not be synced sooner than
        the next acknowledgement anyway, so they wait here for it (see `_answered`), which saves the
        server a write and the service a wake-up per loop iteration."""
        self._push_scheduled = False
        if not self._out:
            return
        self._cancel_hold()
        data, self._out = b"".join(self._out), []
        if self._out_rows:
            self._pushes.append(self._out_rows)
        self._out_rows = 0
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return  # the reader fails what was waiting for this data when it sees the exit
        proc.stdin.write(data)

    def _answered(self, rows: int) -> None:
        pushes = self._pushes
        while rows and pushes:
            done = min(rows, pushes[0])
            rows -= done
            if pushes[0] == done:
                pushes.popleft()
            else:
                pushes[0] -= done
        if len(pushes) < PIPELINE_DEPTH and self._urgent:
            self._push()

    # -- replies ---------------------------------------------------------------------------------

    def _on_line(self, line: bytes, ready: asyncio.Future[bytes]) -> None:
        if not ready.done():
            if line.startswith(b"ready "):
                ready.set_result(line)
            return
        kind, _, rest = line.partition(b" ")
        if kind in (b"A", b"F"):  # the next n rows are durable / could not be made durable
            count, _, message = rest.partition(b" ")
            error = SpoolWriteError(message.decode()) if kind == b"F" else None
            self._resolve_next(int(count), error)
            self._answered(int(count))
        elif kind == b"T":
            status = json.loads(rest)
            if status["error"] is None:
                self._errors.pop(status["table"], None)
            else:
                self._errors[status["table"]] = status["error"]
        elif kind == b"R":
            reply = json.loads(rest)
            future = self._calls.pop(reply["id"], None)
            if future is not None and not future.done():
                if reply.get("error") is not None:
                    future.set_exception(CaptureServiceError(reply["error"]))
                else:
                    future.set_result(reply.get("result"))

    async def _watch(self, proc: asyncio.subprocess.Process, closed: asyncio.Future[None]) -> None:
        """Once the service's output ends, wait for its exit and fail what was waiting on it."""
        await closed
        code = await proc.wait()
        self._on_exit(code)

    def _resolve_next(self, count: int, error: Exception | None) -> None:
        """Settle the next `count` rows: their waiters, or a log line for unawaited ones that failed."""
        unawaited = 0
        acks = self._acks
        for _ in range(min(count, len(acks))):
            future = acks.popleft()
            if future is None:
                unawaited += 1
            elif not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)
        if error is not None and unawaited:
            log.error("%d unawaited rows (usage tracking) could not be stored durably: %s", unawaited, error)

    def _on_exit(self, code: int) -> None:
        """Fail whatever waited on the dead service; start a new one unless we are stopping."""
        self._ready.clear()
        self._proc = None
        self._out.clear()
        self._out_rows = 0
        self._cancel_hold()
        self._pushes.clear()
        why = f"the capture service exited with code {code}"
        self._resolve_next(len(self._acks), SpoolWriteError(why))
        for future in self._calls.values():
            if not future.done():
                future.set_exception(CaptureServiceError(why))
        self._calls.clear()
        if self._stopping:
            return
        log.error("%s; starting it again", why)
        self._restarting = asyncio.get_running_loop().create_task(self._restart(), name="capture-restart")

    async def _restart(self) -> None:
        for attempt in itertools.count():
            await asyncio.sleep(RESTART_BACKOFF_S[min(attempt, len(RESTART_BACKOFF_S) - 1)])
            try:
                await self._launch()
            except Exception:
                log.exception("could not restart the capture service")
            else:
                self.restarts += 1
                self._restarting = None
                return

    async def _call(self, op: str, **args: Any) -> Any:
        await self._until_ready(CaptureServiceError)
        call_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls[call_id] = future
        self._send(b"!" + json.dumps({"id": call_id, "op": op, **args}).encode() + b"\n")
        return await future

    # -- flushing, compaction, table management --------------------------------------------------

    async def flush_now(self) -> int:
        """Commit every acknowledged row to Delta now; return the number of rows committed."""
        return int(await self._call("flush"))

    async def rotate(self) -> int | None:
        """Close the spool's open segment (if it holds rows); the closed segment's number."""
        return await self._call("rotate")

    async def commit_closed(self) -> int:
        """Commit closed segments only (rows still in the open segment wait); rows committed."""
        return int(await self._call("commit"))

    async def optimize(self, table_path: Path) -> dict[str, int]:
        """Compact `table_path` now (after committing pending rows); return file counts."""
        return dict(await self._call("optimize", table=str(table_path)))

    async def ensure_table(self, table_path: Path, form: str = "legacy") -> None:
        """Create the (empty) table, e.g. when an endpoint is created with capture enabled;
        `form` "ai_gateway" gives a payload table the AI Gateway schema."""
        await self._call("ensure_table", table=str(table_path), form=form)

    async def stats(self) -> CaptureStats:
        """The service's counters, after every row and call sent before this one is handled."""
        return CaptureStats.from_json(await self._call("stats"))

    def table_status(self, table_path: Path) -> tuple[str, str]:
        """`("ACTIVE", "")`, or `("FAILED", why)` if the last commit to the table failed.

        Maps onto `auto_capture_config.state.payload_table.{status, status_message}`.
        """
        error = self._errors.get(str(table_path))
        return ("FAILED", error) if error else ("ACTIVE", "")
