"""Replicas forked from a warm fork server (`jupyter_serving/worker/forkserver.py`), as the server sees them.

`ForkServer` starts and talks to one fork server per Python environment; `ForkedWorker` is one of its
children with the interface of a spawned `WorkerProcess` (pid, next_event, assign, alive, wait,
kill), so warm pools, replicas and their supervision do not care how a worker was started.

For each child the server makes the pipes itself and hands the child's ends to the fork server
(SCM_RIGHTS), keeping the others: the child's stdin is its lifeline to this process exactly as a
spawned worker's is, so kill -9 of the server still ends every replica, whoever forked it. The fork
server is the child's parent, so it reaps it and reports the exit status on the control socket; a
pidfd on the child notices the exit even if the fork server itself is gone by then.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("jupyter_serving")

FORK_SERVER_MODULE = "jupyter_serving.worker.forkserver"
MAX_PACKET = 64 * 1024
UNKNOWN_EXIT = -1  # the child's parent (the fork server) died before it could report the status
ORPHAN_EXIT_GRACE_S = 2.0


class ForkServer:
    """One fork server process: started on first use, restarted if it died, stopped with its pool."""

    def __init__(self, log_path: Path, python: str = sys.executable, env: dict[str, str] | None = None):
        self.log_path = log_path
        self.python = python
        self.env = env
        self.pid: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._warm: asyncio.Future[None] | None = None
        self._starting = asyncio.Lock()
        self._forks: dict[int, asyncio.Future[tuple[int, asyncio.Future[int]]]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._ids = 0

    @property
    def running(self) -> bool:
        return self._sock is not None

    async def fork(self, log_path: Path) -> ForkedWorker:
        """A new warm worker, forked; its stderr (until it is assigned a model) goes to `log_path`."""
        await self._ensure_started()
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        child_in, stdin_w = os.pipe()
        stdout_r, child_out = os.pipe()
        err = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._ids += 1
        request = self._ids
        reply: asyncio.Future[tuple[int, asyncio.Future[int]]] = loop.create_future()
        self._forks[request] = reply
        try:
            socket.send_fds(self._sock, [json.dumps({"fork": request}).encode()], [child_in, child_out, err])
        except OSError:  # it died and we have not read its end-of-file yet: the next fork restarts it
            self._forks.pop(request, None)
            self._lost()
            for fd in (stdin_w, stdout_r):
                os.close(fd)
            raise
        finally:
            for fd in (child_in, child_out, err):
                os.close(fd)
        try:
            pid, exited = await reply
            worker = await ForkedWorker.attach(self, pid, exited, stdin_w, stdout_r)
        except BaseException:  # the child, if any, exits on the end-of-file of its lifeline
            with contextlib.suppress(OSError):
                os.close(stdin_w)
            with contextlib.suppress(OSError):
                os.close(stdout_r)
            raise
        try:
            event = await worker.next_event()
        except BaseException:
            await worker.kill()
            raise
        if event.get("event") != "warm":
            await worker.kill()
            raise RuntimeError(f"forked worker {pid} did not start: {event.get('message', 'it exited')}")
        return worker

    async def _ensure_started(self) -> None:
        async with self._starting:
            if self._sock is None:
                await self._start()

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with open(self.log_path, "ab") as log_file:
                self._proc = await asyncio.create_subprocess_exec(
                    self.python,
                    "-m",
                    FORK_SERVER_MODULE,
                    stdin=theirs.fileno(),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=log_file,
                    start_new_session=True,  # a signal to the server's group must not hit it
                    env={**os.environ, **(self.env or {}), "PYTHONUNBUFFERED": "1"},
                )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock, self.pid = ours, self._proc.pid
        self._warm = loop.create_future()
        loop.add_reader(ours.fileno(), self._readable)
        try:
            await self._warm
        except BaseException:
            await self.stop()
            raise
        log.info("fork server %s started for %s", self.pid, self.python)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                packet = self._sock.recv(MAX_PACKET)
            except BlockingIOError:
                return
            except OSError:
                packet = b""
            if not packet:
                self._lost()
                return
            self._handle(json.loads(packet))

    def _handle(self, message: dict[str, Any]) -> None:
        if message.get("event") == "warm":
            if self._warm is not None and not self._warm.done():
                self._warm.set_result(None)
        elif "forked" in message:
            reply = self._forks.pop(message["forked"], None)
            if "error" in message or "pid" not in message:
                if reply is not None and not reply.done():
                    reply.set_exception(
                        RuntimeError(f"the fork server could not fork: {message.get('error')}")
                    )
                return
            # Made here, before any exit report for the child can arrive.
            exited = self._exits[message["pid"]] = asyncio.get_running_loop().create_future()
            if reply is not None and not reply.done():
                reply.set_result((message["pid"], exited))
        elif "exited" in message:
            done = self._exits.pop(message["exited"], None)
            if done is not None and not done.done():
                done.set_result(message["code"])

    def _lost(self) -> None:
        """The fork server exited: fail what waits on it; the next fork starts a new one. Its children
        live on (their lifelines are ours) and their pidfds report their exits."""
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        error = RuntimeError(f"the fork server {self.pid} exited (see {self.log_path})")
        waiting_on: list[asyncio.Future[Any]] = [*self._forks.values()]
        if self._warm is not None:
            waiting_on.append(self._warm)
        for waiting in waiting_on:
            if not waiting.done():
                waiting.set_exception(error)
        self._forks.clear()

    async def stop(self) -> None:
        if self._sock is not None:
            self._lost()  # closing our end is its end-of-file: it exits
        if self._proc is not None and self._proc.returncode is None:
            try:
                await asyncio.wait_for(self._proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                await self._proc.wait()


class ForkedWorker:
    """A worker forked by a `ForkServer`: the same interface as a spawned `WorkerProcess`."""

    def __init__(
        self,
        server: ForkServer,
        pid: int,
        exited: asyncio.Future[int],
        stdin_fd: int,
        reader: asyncio.StreamReader,
    ) -> None:
        self.server = server
        self.pid = pid
        self._stdin = stdin_fd
        self._reader = reader
        self._transport: asyncio.BaseTransport | None = None
        self._exit = exited
        self._pidfd: int | None = None
        self.returncode: int | None = None
        self._exit.add_done_callback(self._exited)

    @classmethod
    async def attach(
        cls, server: ForkServer, pid: int, exited: asyncio.Future[int], stdin_fd: int, stdout_fd: int
    ) -> ForkedWorker:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**20)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(stdout_fd, "rb", buffering=0)
        )
        worker = cls(server, pid, exited, stdin_fd, reader)
        worker._transport = transport
        # Gone already (its exit report is on its way), or a kernel without pidfds (< 5.3): the fork
        # server's report alone then tells the exit.
        with contextlib.suppress(OSError):
            worker._pidfd = os.pidfd_open(pid)
            loop.add_reader(worker._pidfd, worker._pidfd_readable)
        return worker

    def _pidfd_readable(self) -> None:
        """The child exited. Its status comes from the fork server (its parent) unless that is gone."""
        loop = asyncio.get_running_loop()
        self._close_pidfd()
        grace = 0.0 if not self.server.running else ORPHAN_EXIT_GRACE_S

        def settle() -> None:
            if not self._exit.done():
                self._exit.set_result(UNKNOWN_EXIT)

        loop.call_later(grace, settle)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def _exited(self, done: asyncio.Future[int]) -> None:
        self.returncode = done.result() if not done.cancelled() else UNKNOWN_EXIT
        self._close_pidfd()

    async def next_event(self) -> dict[str, Any]:
        line = await self._reader.readline()
        if not line:
            code = await self.wait()
            return {"event": "exited", "message": f"the worker process exited with code {code}"}
        return json.loads(line)

    def assign(self, assignment: dict[str, Any]) -> None:
        with contextlib.suppress(BrokenPipeError):  # it died: next_event reports how
            os.write(self._stdin, (json.dumps(assignment) + "\n").encode())

    @property
    def alive(self) -> bool:
        return self.returncode is None

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self._pidfd is not None:  # a pidfd cannot hit a reused pid
                signal.pidfd_send_signal(self._pidfd, sig)
            else:
                os.kill(self.pid, sig)

    async def kill(self, grace_s: float = 5.0) -> None:
        if self.alive:
            self._signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.wait(), grace_s)
            except TimeoutError:
                self._signal(signal.SIGKILL)
                await self.wait()
        if self._stdin >= 0:
            os.close(self._stdin)
            self._stdin = -1
        if self._transport is not None:
            self._transport.close()
