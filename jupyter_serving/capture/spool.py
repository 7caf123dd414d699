"""The durable local spool: append-only segment files with group commit.

A record is acknowledged only after its bytes are written and ``fdatasync``'d, so it survives
``kill -9`` (and power loss). Concurrent appends that arrive while a sync is in flight are written
and synced together by the next one: one disk flush per batch, not per request (group commit).

The spool is a directory of numbered segments ``segment-<n>.log``. Appends go to the highest one;
`rotate` closes it so the flusher can commit it to Delta and then delete it. Segment numbers only
grow, even across restarts (the open segment always exists on disk), which is what makes them
usable as Delta app-transaction versions for exactly-once replay (see `writer`).

Line format: ``<crc32 as 8 hex digits> <JSON>\\n``. JSON escapes newlines inside strings, so a line
is a record; a torn tail after a crash has no newline or a bad checksum and is dropped. Such a
tail was never acknowledged, because acknowledgement waits for the sync.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
import uuid
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SEGMENT_RE = re.compile(r"^segment-(\d{12})\.log$")
ID_FILE = "spool-id"


INLINE_SYNC_S = 0.002  # a write + sync slower than this moves spooling to the I/O thread


class SpoolWriteError(OSError):
    """The record could not be made durable; it is not acknowledged."""


@dataclass(slots=True)
class SpoolStats:
    """Counters a benchmark or test reads to see group commit at work."""

    records: int = 0
    writes: int = 0
    syncs: int = 0


def encode_line(record: dict[str, Any]) -> bytes:
    payload = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


def decode_lines(data: bytes) -> list[dict[str, Any]]:
    """Records of one segment; a torn or corrupt line is skipped, never fatal."""
    records = []
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1]):  # the last piece has no newline: torn or empty
        if len(line) < 10 or line[8:9] != b" ":
            log.warning("spool: dropping malformed line %d", number)
            continue
        payload = line[9:]
        if int(line[:8], 16) != zlib.crc32(payload):
            log.warning("spool: dropping line %d with a bad checksum", number)
            continue
        records.append(json.loads(payload))
    return records


def _fsync_dir(directory: Path) -> None:
    # A new or removed file name is durable only once its directory is synced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Segmented append-only log of JSON records, written by one thread with group commit.

    All methods except `append`, `rotate` and `close` are synchronous and meant to run off the
    event loop (the flusher's thread); `append` and `rotate` are coroutines for the event loop.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.stats = SpoolStats()
        self.spool_id = ""
        # One thread owns the open file: writes and rotations are serialised without locks.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="capture-spool")
        self._fd = -1
        self._segment = 0
        self._segment_records = 0
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._drain_task: asyncio.Task[None] | None = None
        # Every file operation holds this lock: writes may run on the event loop, rotation and
        # closing on the I/O thread, and they must never interleave on the open segment.
        self._io_lock = asyncio.Lock()
        self._inline = True  # write + sync on the loop while that stays under INLINE_SYNC_S

    # -- lifecycle (sync) ------------------------------------------------------------------------

    def open(self) -> None:
        """Create the directory if needed and start a fresh segment after any left-over ones."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.spool_id = self._load_or_create_id()
        self._open_segment(max(self.segments(), default=0) + 1)

    def _load_or_create_id(self) -> str:
        path = self.directory / ID_FILE
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            pass
        spool_id = uuid.uuid4().hex
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(spool_id)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.directory)
        return spool_id

    def _segment_path(self, number: int) -> Path:
        return self.directory / f"segment-{number:012d}.log"

    def _open_segment(self, number: int) -> None:
        fd = os.open(self._segment_path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        _fsync_dir(self.directory)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._segment, self._segment_records = fd, number, 0

    # -- reading and truncation (sync, flusher thread) -------------------------------------------

    def segments(self) -> list[int]:
        found = (SEGMENT_RE.match(name) for name in os.listdir(self.directory))
        return sorted(int(m.group(1)) for m in found if m)

    def closed_segments(self) -> list[int]:
        """Segments no longer appended to: safe to read, commit and remove."""
        return [n for n in self.segments() if n < self._segment]

    def segment_size(self, number: int) -> int:
        return self._segment_path(number).stat().st_size

    def read_segment(self, number: int) -> list[dict[str, Any]]:
        return decode_lines(self._segment_path(number).read_bytes())

    def remove_segments(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            self._segment_path(number).unlink(missing_ok=True)
        # Not synced on purpose: a removal lost to a power cut only means a replay, which the
        # Delta watermark makes a no-op.

    @property
    def pending_records(self) -> int:
        """Records appended to the open segment since it was started."""
        return self._segment_records

    # -- appending (event loop) ------------------------------------------------------------------

    async def append(self, record: dict[str, Any]) -> None:
        """Return once `record` is on disk and synced, sharing the sync with concurrent callers."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        # Encoded here, not in the writer: the writer's batch then costs only a write and a sync,
        # which is what every caller in the group commit waits for.
        self._queue.append((encode_line(record), done))
        if self._drain_task is None:
            self._drain_task = loop.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        try:
            while self._queue:
                async with self._io_lock:
                    # Everything appended since the last sync (in this loop iteration, or while
                    # that sync ran) goes out in one write + sync.
                    batch, self._queue = self._queue, []
                    try:
                        await self._write_lines([line for line, _ in batch])
                    except Exception as exc:
                        log.error("spool: write failed: %s", exc)
                        for _, done in batch:
                            if not done.done():
                                done.set_exception(SpoolWriteError(f"capture spool write failed: {exc}"))
                    else:
                        for _, done in batch:
                            if not done.done():
                                done.set_result(None)
        finally:
            self._drain_task = None

    async def _write_lines(self, lines: list[bytes]) -> None:
        """On the loop while a write + sync is fast (a thread round trip would cost the waiting
        requests more than the sync itself); on the I/O thread once the disk proves slow."""
        if not self._inline:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._write_batch, lines)
            return
        started = time.perf_counter()
        self._write_batch(lines)
        self._inline = time.perf_counter() - started < INLINE_SYNC_S

    def _write_batch(self, lines: list[bytes]) -> None:
        data = memoryview(b"".join(lines))
        try:
            while data:
                data = data[os.write(self._fd, data) :]
            os.fdatasync(self._fd)
        except OSError:
            # The segment may now end in a torn line; never append after it, or the next
            # record would be glued to the torn bytes and lost.
            self._open_segment(self._segment + 1)
            raise
        self._segment_records += len(lines)
        self.stats.records += len(lines)
        self.stats.writes += 1
        self.stats.syncs += 1

    async def rotate(self) -> int | None:
        """Close the open segment (if it holds records) and start the next; return the closed one."""
        loop = asyncio.get_running_loop()
        async with self._io_lock:
            return await loop.run_in_executor(self._executor, self._rotate)

    def _rotate(self) -> int | None:
        if self._segment_records == 0:
            return None
        closed = self._segment
        self._open_segment(closed + 1)
        return closed

    async def close(self) -> None:
        """Wait for queued appends, then release the file and the thread."""
        while self._drain_task is not None:
            await asyncio.shield(self._drain_task)
        loop = asyncio.get_running_loop()
        async with self._io_lock:
            await loop.run_in_executor(self._executor, self._close_fd)
        self._executor.shutdown(wait=True)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
