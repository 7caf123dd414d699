"""The capture service: a helper process that makes inference-table rows durable and commits them.

Why a process of its own. With the spool's ``fdatasync`` and the Delta commits (JSON decoding,
Arrow building, Parquet writing) inside the server, every sync and every commit competed with the
event loop for its core and its GIL, and capture cost a quarter of the server's throughput on a
small machine. Here the server only encodes a row and writes it into a pipe; this process owns the
spool file, syncs each batch once, acknowledges it, and commits closed segments to Delta on a
thread of its own. It is started by `writer.InferenceCapture`, one per server.

Protocol, one line per message (JSON never contains a raw newline):

server -> service (stdin)
  ``<json>``           a row (`row.RowEncoder`, `spool.encode_json`) with its target table as
                       ``"table"``; the service adds the checksum the spool stores it with.
  ``!<json>``          a call ``{"id": n, "op": ..., ...}``; ops: ``flush`` (rotate and commit),
                       ``rotate``, ``commit`` (closed segments only), ``optimize`` (``table``),
                       ``ensure_table`` (``table``, ``form``), ``stats``, ``stop``.

service -> server (stdout)
  ``ready <json>``     once, when the spool is locked and open: ``{"spool_id", "pid"}``.
  ``A <n>``            the next n rows (in the order they were sent) are durable.
  ``F <n> <message>``  the next n rows could not be made durable.
  ``T <json>``         a table's health changed: ``{"table", "error"}`` (error None = healthy).
  ``R <json>``         the reply to a call: ``{"id", "result"}`` or ``{"id", "error"}``.

Messages are handled in the order they arrive, so a ``flush`` covers every row sent before it.
When stdin closes without a ``stop`` (the server died, even by ``kill -9``), the service commits
what it holds and exits; a flock on the spool directory makes the next server's service wait for
that rather than read the spool at the same time.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import logging
import os
import queue
import selectors
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_serving.capture.committer import Committer
from jupyter_serving.capture.spool import Spool, SpoolWriteError, frame
from jupyter_serving.files import PRIVATE_UMASK

log = logging.getLogger("jupyter_serving.capture.service")

READ_CHUNK = 1 << 20
LOCK_FILE = "service.lock"
# The committer thread holds the GIL while it decodes and builds Arrow arrays; a short switch
# interval lets the main thread acknowledge a finished sync within a millisecond meanwhile.
SWITCH_INTERVAL_S = 0.0005

Job = tuple[Callable[[], Any], int | None]


class CaptureService:
    """The service's state: spool, committer thread, and the line protocol on two pipes."""

    def __init__(
        self,
        spool_dir: Path,
        *,
        flush_interval_s: float,
        flush_rows: int,
        compact_every_commits: int,
        stdin: int = 0,
        stdout: int = 1,
    ) -> None:
        self.spool = Spool(spool_dir)
        self.committer = Committer(
            self.spool, compact_every_commits=compact_every_commits, on_status=self._table_status
        )
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        self._in, self._out = stdin, stdout
        self._out_lock = threading.Lock()
        self._server_gone = False
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._commit_loop, name="capture-commit", daemon=True)
        self._lock_fd = -1

    # -- output ----------------------------------------------------------------------------------

    def _emit(self, line: bytes) -> None:
        with self._out_lock:
            if self._server_gone:
                return
            data = memoryview(line + b"\n")
            try:
                while data:
                    data = data[os.write(self._out, data) :]
            except BrokenPipeError:
                # The server died. What it sent is still read (to the end of stdin) and committed.
                self._server_gone = True

    def _reply(self, call_id: int | None, result: Any = None, error: str | None = None) -> None:
        if call_id is None:
            return
        message = {"id": call_id, "error": error} if error is not None else {"id": call_id, "result": result}
        self._emit(b"R " + json.dumps(message).encode())

    def _table_status(self, table: str, error: str | None) -> None:
        self._emit(b"T " + json.dumps({"table": table, "error": error}).encode())

    # -- lifecycle -------------------------------------------------------------------------------

    def open(self) -> None:
        """Lock the spool directory (waiting for a predecessor that is still committing), open it."""
        self.spool.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(self.spool.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for the previous capture service to finish with %s", self.spool.directory)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.spool.open()
        self._thread.start()
        # Rows a killed predecessor spooled but never committed go first.
        self._jobs.put((self._replay, None))
        self._emit(b"ready " + json.dumps({"spool_id": self.spool.spool_id, "pid": os.getpid()}).encode())

    def _replay(self) -> int:
        rows = self.committer.commit_closed()
        self.committer.stats.replayed_rows += rows
        self.committer.replay_quarantine()
        return rows

    def close(self) -> None:
        """Commit everything acknowledged, stop the committer thread, release the spool."""
        self._rotate()
        self._jobs.put((self.committer.commit_closed, None))
        self._jobs.put(None)
        self._thread.join()
        self.spool.close()
        spool, commits = self.spool.stats, self.committer.stats
        log.info(
            "closing: %d rows spooled in %d syncs, %d rows committed in %d commits",
            spool.records,
            spool.syncs,
            commits.rows_committed,
            commits.commits,
        )
        os.close(self._lock_fd)

    # -- the main loop: rows in, acknowledgements out --------------------------------------------

    def serve(self) -> bool:
        """Read the server's lines until a ``stop`` call (True: already closed) or the end of stdin."""
        selector = selectors.DefaultSelector()
        selector.register(self._in, selectors.EVENT_READ)
        pending = b""
        deadline = time.monotonic() + self.flush_interval_s
        try:
            while True:
                timeout = max(0.0, deadline - time.monotonic())
                if selector.select(timeout):
                    data = os.read(self._in, READ_CHUNK)
                    if not data:
                        log.info("the server closed the pipe; committing what is spooled and exiting")
                        return False
                    *lines, pending = (pending + data).split(b"\n")
                    if self._handle(lines):
                        return True
                if self.spool.pending_records >= self.flush_rows or time.monotonic() >= deadline:
                    self._flush_async(None)
                    deadline = time.monotonic() + self.flush_interval_s
        finally:
            selector.close()

    def _handle(self, lines: list[bytes]) -> bool:
        """Write and acknowledge rows, run calls in order; True once a ``stop`` call was handled."""
        rows: list[bytes] = []
        for line in lines:
            if not line.startswith(b"!"):
                rows.append(frame(line))
                continue
            self._write(rows)
            rows = []
            if self._call(json.loads(line[1:])):
                return True
        self._write(rows)
        return False

    def _write(self, rows: list[bytes]) -> None:
        if not rows:
            return
        try:
            self.spool.write(rows)
        except SpoolWriteError as exc:
            log.error("%s", exc)
            self._emit(b"F %d %s" % (len(rows), str(exc).replace("\n", " ").encode()))
        else:
            self._emit(b"A %d" % len(rows))

    def _rotate(self) -> int | None:
        try:
            return self.spool.rotate()
        except OSError:
            log.exception("capture: could not rotate the spool")
            return None

    def _flush_async(self, call_id: int | None) -> None:
        self._rotate()
        self._jobs.put((self.committer.commit_closed, call_id))

    def _call(self, call: dict[str, Any]) -> bool:
        op, call_id = call.get("op"), call.get("id")
        if op == "flush":
            self._flush_async(call_id)
        elif op == "rotate":
            self._reply(call_id, self._rotate())
        elif op == "commit":
            self._jobs.put((self.committer.commit_closed, call_id))
        elif op == "optimize":
            table = str(call["table"])
            self._flush_async(None)
            self._jobs.put((lambda: self.committer.compact(table), call_id))
        elif op == "ensure_table":
            table, form = str(call["table"]), str(call.get("form") or "legacy")
            self._jobs.put((lambda: self.committer.ensure_table(table, form), call_id))
        elif op == "stats":
            self._jobs.put((self._stats, call_id))
        elif op == "stop":
            self.close()
            self._reply(call_id, True)
            return True
        else:
            self._reply(call_id, error=f"unknown capture service call {op!r}")
        return False

    def _stats(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self.committer.stats),
            "spool": dataclasses.asdict(self.spool.stats),
        }

    # -- the committer thread --------------------------------------------------------------------

    def _commit_loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, call_id = job
            try:
                result = fn()
            except Exception as exc:
                log.exception("capture: %s failed", getattr(fn, "__name__", "a job"))
                self._reply(call_id, error=f"{type(exc).__name__}: {exc}")
            else:
                self._reply(call_id, result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jupyter_serving.capture.service")
    parser.add_argument("spool_dir", type=Path)
    parser.add_argument("--flush-interval-s", type=float, default=2.0)
    parser.add_argument("--flush-rows", type=int, default=5000)
    parser.add_argument("--compact-every-commits", type=int, default=50)
    args = parser.parse_args(argv)
    os.umask(PRIVATE_UMASK)  # spool, quarantine and Delta files hold request and response bodies
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s capture: %(message)s"
    )
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    service = CaptureService(
        args.spool_dir,
        flush_interval_s=args.flush_interval_s,
        flush_rows=args.flush_rows,
        compact_every_commits=args.compact_every_commits,
    )
    service.open()
    if not service.serve():
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
