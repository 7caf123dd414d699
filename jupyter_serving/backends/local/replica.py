"""Worker processes as the server sees them: spawning, the warm pool, and one replica's connection.

`WarmPool` keeps interpreters started with MLflow imported (see `jupyter_serving/worker/`); `Replica`
turns one into a serving replica of a model and multiplexes requests to it over one Unix socket.
Every step that starts a process kills it again if the step is cancelled half-way: a cancelled
deploy or a deleted endpoint must leave no interpreter behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_serving.backends.base import ScoringReply, StreamEnd
from jupyter_serving.backends.local.forking import ForkedWorker, ForkServer
from jupyter_serving.errors import DeadlineExceeded, InternalError
from jupyter_serving.worker import protocol

log = logging.getLogger("jupyter_serving")

WORKER_MODULE = "jupyter_serving.worker"


class _Expired(Exception):
    """The request timeout ran out before the worker answered."""


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


class WorkerProcess:
    """A started worker interpreter, warm until assigned a model."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.pid = proc.pid

    @classmethod
    async def spawn(
        cls, log_path: Path, env: dict[str, str] | None = None, python: str = sys.executable
    ) -> WorkerProcess:
        """Start a worker under `python`: any interpreter with MLflow can run the self-contained
        `jupyter_serving.worker` package (per-model environments start workers in their own)."""
        with open(log_path, "ab") as log_file:
            proc = await asyncio.create_subprocess_exec(
                python,
                "-m",
                WORKER_MODULE,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                start_new_session=True,  # a signal to the server's group must not hit workers
                env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
            )
        worker = cls(proc)
        try:
            event = await worker.next_event()
        except BaseException:  # cancelled while it imported: never leave the interpreter running
            await worker.kill()
            raise
        if event.get("event") != "warm":
            raise RuntimeError(f"worker {worker.pid} did not start: {event.get('message', 'it exited')}")
        return worker

    async def next_event(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            return {"event": "exited", "message": f"the worker process exited with code {code}"}
        return json.loads(line)

    def assign(self, assignment: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(assignment) + "\n").encode())

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    async def wait(self) -> int:
        """Its exit code, once it exits: what supervision waits on."""
        return await self.proc.wait()

    async def kill(self, grace_s: float = 5.0) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()


Worker = WorkerProcess | ForkedWorker
SPAWN, FORK = "spawn", "fork"


class WarmPool:
    """Keeps `size` warm worker interpreters ready so a deploy skips MLflow's import time.

    Spares are tasks, so a deploy that arrives while a spare is still importing waits for it
    rather than starting a second interpreter that would compete with it for the CPU. With
    `start="fork"` workers are forked from this environment's fork server (shared imports, see
    `forking.py`) instead of spawned as interpreters of their own.
    """

    def __init__(
        self,
        size: int,
        log_path: Path,
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        start: str = SPAWN,
    ) -> None:
        self.size = size
        self.log_path = log_path
        self.python = python
        self.env = env
        self.start_method = start
        self.forks = ForkServer(log_path, python, env) if start == FORK else None
        self._spares: deque[asyncio.Task[Worker]] = deque()
        self._closed = False

    def _new_worker(self) -> Any:
        if self.forks is not None:
            return self.forks.fork(self.log_path)
        return WorkerProcess.spawn(self.log_path, self.env, self.python)

    def start(self) -> None:
        self._refill()

    async def acquire(self) -> Worker:
        """A warm worker: the oldest spare (waiting for it if it is still starting), else a new one."""
        while self._spares:
            spare = self._spares.popleft()
            try:
                # Shielded: a cancelled deploy must not cancel (and so orphan) a spare half-started;
                # the spare goes back to the pool for the next deploy instead.
                worker = await asyncio.shield(spare)
            except asyncio.CancelledError:
                if self._closed:
                    spare.add_done_callback(_kill_when_started)
                else:
                    self._spares.appendleft(spare)
                raise
            except Exception:
                log.exception("a warm worker failed to start")
                continue
            if worker.alive:
                self._refill()
                return worker
        worker = await self._new_worker()
        self._refill()
        return worker

    def _refill(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed and len(self._spares) < self.size:
            self._spares.append(loop.create_task(self._new_worker()))

    async def stop(self) -> None:
        self._closed = True
        spares, self._spares = list(self._spares), deque()
        for result in await asyncio.gather(*spares, return_exceptions=True):
            if isinstance(result, WorkerProcess | ForkedWorker):
                await result.kill()
        if self.forks is not None:
            await self.forks.stop()


def _kill_when_started(spare: asyncio.Task[Worker]) -> None:
    """A spare that finished starting after its pool closed: stop it rather than orphan it."""
    if not spare.cancelled() and spare.exception() is None:
        task = asyncio.get_running_loop().create_task(spare.result().kill())
        _KILLING.add(task)  # the loop holds tasks weakly
        task.add_done_callback(_KILLING.discard)


_KILLING: set[asyncio.Task[None]] = set()


class WarmPools:
    """One warm pool per interpreter in use: the server's, and each model environment's, so a cold
    start in a built environment skips MLflow's import like one in the server's environment does."""

    def __init__(self, default: WarmPool) -> None:
        self.default = default
        self._pools: dict[str, WarmPool] = {default.python: default}

    def pool(self, python: str, env: dict[str, str] | None = None) -> WarmPool:
        pool = self._pools.get(python)
        if pool is None:
            pool = self._pools[python] = WarmPool(
                self.default.size, self.default.log_path, python, env, self.default.start_method
            )
            pool.start()
        return pool

    async def acquire(self, python: str, env: dict[str, str] | None = None) -> Worker:
        return await self.pool(python, env).acquire()

    async def stop(self) -> None:
        # A spare in a new environment can take a minute to import MLflow (no bytecode yet): stopping
        # cancels spares still starting instead of waiting for them.
        for pool in self._pools.values():
            for spare in pool._spares:
                spare.cancel()
        await asyncio.gather(*(p.stop() for p in self._pools.values()))


class Replica:
    """One worker serving one model: its process and the multiplexed connection to it."""

    _ids = itertools.count(1)

    def __init__(self, worker: Worker, socket_path: Path, label: str) -> None:
        self.worker = worker
        self.socket_path = socket_path
        self.label = label
        self.inflight = 0
        self.draining = False
        self.broken = False  # the connection ended: the worker is gone, even before its exit is reaped
        self._pending: dict[int, asyncio.Future[ScoringReply]] = {}
        self._streams: dict[int, ReplicaStream] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self.on_broken: Callable[[], None] | None = None
        self.gpus: list[int] = []
        self.on_release: Callable[[], None] | None = None

    @property
    def pid(self) -> int:
        return self.worker.pid

    async def connect(self) -> None:
        reader, self._writer = await asyncio.open_unix_connection(str(self.socket_path))
        self._reader_task = asyncio.get_running_loop().create_task(self._read_replies(reader))

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while (frame := await protocol.read_frame(reader)) is not None:
                if self._streams and (stream := self._streams.get(frame.request_id)) is not None:
                    stream.feed(frame)
                    continue
                fut = self._pending.pop(frame.request_id, None)
                if fut is not None and not fut.done():
                    meta = frame.meta_json()
                    fut.set_result(
                        ScoringReply(
                            frame.code,
                            frame.body,
                            meta.get("ms", 0.0),
                            meta.get("crid"),
                            meta.get("b", 1),
                            meta.get("trace"),
                        )
                    )
        except (ConnectionError, OSError):
            pass
        finally:
            self.broken = True
            self._fail_pending()
            if self.on_broken is not None:
                self.on_broken()

    def _fail_pending(self) -> None:
        code = self.worker.returncode
        error = InternalError(
            f"The replica serving this request ({self.label}) stopped while the request was in flight"
            + (f" (exit code {code})." if code is not None else ".")
        )
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._pending.clear()
        for stream in list(self._streams.values()):
            stream.end(StreamEnd(500, json.dumps(error.to_json()).encode(), 0.0, None))

    @property
    def usable(self) -> bool:
        return not (self.draining or self.broken)

    async def invoke(
        self, content_type: str, body: bytes, timeout_s: float, server_request_id: str = ""
    ) -> ScoringReply:
        if self.broken or self._writer is None or self._writer.is_closing():
            raise InternalError(f"The replica {self.label} is not connected.")
        request_id = next(self._ids) & 0xFFFFFFFF
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[ScoringReply] = loop.create_future()
        self._pending[request_id] = fut
        self.inflight += 1
        # A bare timer on the reply future: asyncio.wait_for wraps it in a second future and two
        # callbacks, which is a measurable share of the server's CPU per request.
        deadline = loop.call_later(timeout_s, _expire, fut)
        try:
            meta = protocol.request_meta(content_type, server_request_id)
            self._writer.write(protocol.encode(request_id, protocol.INVOKE, meta, body))
            return await fut
        except _Expired:
            raise DeadlineExceeded(
                f"The model did not answer within the request timeout of {timeout_s:g} s "
                "(setting JUPYTER_SERVING_REQUEST_TIMEOUT_S)."
            ) from None
        finally:
            deadline.cancel()
            self._pending.pop(request_id, None)
            self.inflight -= 1

    def open_stream(self, content_type: str, body: bytes, server_request_id: str = "") -> ReplicaStream:
        """Send a streaming request; its frames arrive on the returned stream."""
        if self.broken or self._writer is None or self._writer.is_closing():
            raise InternalError(f"The replica {self.label} is not connected.")
        request_id = next(self._ids) & 0xFFFFFFFF
        stream = self._streams[request_id] = ReplicaStream(self, request_id)
        self.inflight += 1
        meta = protocol.request_meta(content_type, server_request_id)
        self._writer.write(protocol.encode(request_id, protocol.STREAM, meta, body))
        return stream

    def _stream_done(self, stream: ReplicaStream, cancel: bool) -> None:
        if self._streams.pop(stream.request_id, None) is None:
            return
        self.inflight -= 1
        if cancel and self._writer is not None and not self._writer.is_closing():
            self._writer.write(protocol.encode(stream.request_id, protocol.CANCEL, b"", b""))

    def feature_tables(self) -> list[dict[str, Any]]:
        """The feature tables the worker looks up and their served versions (it rewrites the file on
        every refresh); empty for models without a feature spec."""
        try:
            return json.loads(Path(f"{self.socket_path}.features.json").read_text())
        except (OSError, ValueError):
            return []

    async def drain(self, timeout_s: float) -> None:
        """Wait until requests already sent are answered; new ones are routed elsewhere."""
        self.draining = True
        waiting: list[asyncio.Future[Any]] = [f for f in self._pending.values() if not f.done()]
        waiting += [s.finished for s in self._streams.values()]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout_s)

    def release(self) -> None:
        """Give back what the replica held (its GPUs), once."""
        on_release, self.on_release = self.on_release, None
        if on_release is not None:
            on_release()

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        await self.drain(drain_timeout_s)
        if self._writer is not None:
            self._writer.close()
        await self.worker.kill()
        self.release()
        if self._reader_task is not None:
            await asyncio.gather(self._reader_task, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        with contextlib.suppress(FileNotFoundError):
            Path(f"{self.socket_path}.features.json").unlink()


class ReplicaStream:
    """One streaming request on a replica: the worker's frames in order, an inactivity timeout.

    Chunks are queued by the connection's reader task; `next` waits on one bare future (no
    `asyncio.wait_for` per chunk) and a timer that fires only when no chunk came for `timeout_s`."""

    def __init__(self, replica: Replica, request_id: int) -> None:
        self.replica = replica
        self.request_id = request_id
        self._chunks: deque[bytes] = deque()
        self._end: StreamEnd | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def feed(self, frame: protocol.Frame) -> None:
        if frame.code == protocol.CHUNK:
            self._chunks.append(frame.body)
            self._wake()
            return
        meta = frame.meta_json()
        usage = meta.get("usage")
        self.end(
            StreamEnd(
                frame.code,
                frame.body,
                meta.get("ms", 0.0),
                meta.get("crid"),
                meta.get("first_ms"),
                usage if isinstance(usage, dict) else None,
                meta.get("trace"),
            )
        )

    def end(self, end: StreamEnd, cancel: bool = False) -> None:
        if self._end is None:
            self._end = end
            self.replica._stream_done(self, cancel)
            if not self.finished.done():
                self.finished.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self, timeout_s: float) -> bytes | StreamEnd:
        while not self._chunks:
            if self._end is not None:
                return self._end
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = loop.call_later(timeout_s, _expire, self._waiter)
            try:
                await self._waiter
            except _Expired:
                self.close()
                raise DeadlineExceeded(
                    f"The model sent nothing for {timeout_s:g} s during a stream "
                    "(inactivity timeout: setting JUPYTER_SERVING_REQUEST_TIMEOUT_S)."
                ) from None
            finally:
                timer.cancel()
                self._waiter = None
        if len(self._chunks) == 1:
            return self._chunks.popleft()
        joined = b"".join(self._chunks)
        self._chunks.clear()
        return joined

    def close(self) -> None:
        """The client left (or the stream timed out): tell the worker to stop the generator."""
        cancelled = StreamEnd(
            499,
            json.dumps(
                {"error_code": "CANCELLED", "message": "The client disconnected during the stream."}
            ).encode(),
            0.0,
            None,
        )
        self.end(cancelled, cancel=True)
