"""The durable local spool: append-only segment files, written and synced in batches.

The capture service (`service`) owns the spool: it writes each batch of rows that arrived
together with one ``write`` and one ``fdatasync`` and only then acknowledges them, so a row the
server answered for survives ``kill -9`` (and power loss), at one disk flush per batch rather than
per request (group commit).

The spool is a directory of numbered segments ``segment-<n>.log``. Appends go to the highest one;
`rotate` closes it so the committer can move it into Delta and then delete it. Segment numbers only
grow, even across restarts (the open segment always exists on disk), which is what makes them
usable as Delta app-transaction versions for exactly-once replay (see `committer`).

Line format: ``<crc32 as 8 hex digits> <JSON>\\n``. JSON escapes newlines inside strings, so a line
is a record; a torn tail after a crash has no newline or a bad checksum and is dropped. Such a
tail was never acknowledged, because acknowledgement waits for the sync. The server encodes the
JSON (`encode_json`, `row.RowEncoder`); the service frames it (`frame`) as it writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SEGMENT_RE = re.compile(r"^segment-(\d{12})\.log$")
ID_FILE = "spool-id"
# Segments are preallocated: writing into allocated blocks lets fdatasync skip the file-size
# update, which on ext4 is about a third of each sync's latency and CPU.
PREALLOCATE_BYTES = 8 * 1024 * 1024


class SpoolWriteError(OSError):
    """The record could not be made durable; it is not acknowledged."""


@dataclass(slots=True)
class SpoolStats:
    """Counters a benchmark or test reads to see group commit at work."""

    records: int = 0
    writes: int = 0
    syncs: int = 0


def frame(payload: bytes) -> bytes:
    """One spool line: checksum, space, the JSON payload, newline."""
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


def encode_json(record: dict[str, Any]) -> bytes:
    """A record as compact JSON (one line: JSON escapes newlines inside strings)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def encode_line(record: dict[str, Any]) -> bytes:
    return frame(encode_json(record))


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
    """Segmented append-only log of encoded lines.

    Not thread-safe for writers: one thread (the service's main loop) calls `write`, `rotate` and
    `close`. Reading closed segments and removing them (the committer's thread) is safe alongside,
    because the writer never touches a segment again once it is closed.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.stats = SpoolStats()
        self.spool_id = ""
        self._fd = -1
        self._segment = 0
        self._segment_records = 0
        self._offset = 0  # where the next write goes: segments are preallocated, so not at the end

    # -- lifecycle -------------------------------------------------------------------------------

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
        fd = os.open(self._segment_path(number), os.O_WRONLY | os.O_CREAT, 0o600)
        with contextlib.suppress(OSError):  # not every file system can preallocate; appends work anyway
            os.posix_fallocate(fd, 0, PREALLOCATE_BYTES)
        _fsync_dir(self.directory)
        self._close_segment()
        self._fd, self._segment, self._segment_records, self._offset = fd, number, 0, 0

    def _close_segment(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):  # after a failed write, these may fail as well
            # Trim the preallocated tail; not synced, because a reader ignores zeros after the
            # last line anyway (they are a "torn tail" without a newline).
            os.ftruncate(self._fd, self._offset)
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = -1

    def close(self) -> None:
        self._close_segment()

    # -- writing ---------------------------------------------------------------------------------

    def write(self, lines: list[bytes]) -> None:
        """Append encoded lines and make them durable with one write and one ``fdatasync``.

        Raises `SpoolWriteError` if they could not be made durable; then none of them counts as
        written, and later writes go to a fresh segment.
        """
        if not lines:
            return
        data = memoryview(b"".join(lines))
        offset = self._offset
        try:
            while data:
                written = os.pwrite(self._fd, data, offset)
                data, offset = data[written:], offset + written
            os.fdatasync(self._fd)
        except OSError as exc:
            # The segment may now end in a torn line; never append after it, or the next
            # record would be glued to the torn bytes and lost.
            try:
                self._open_segment(self._segment + 1)
            except OSError:
                log.exception("spool: could not start a new segment after a failed write")
            raise SpoolWriteError(f"capture spool write failed: {exc}") from exc
        self._offset = offset
        self._segment_records += len(lines)
        self.stats.records += len(lines)
        self.stats.writes += 1
        self.stats.syncs += 1

    def rotate(self) -> int | None:
        """Close the open segment (if it holds records) and start the next; return the closed one."""
        if self._segment_records == 0:
            return None
        closed = self._segment
        self._open_segment(closed + 1)
        return closed

    @property
    def pending_records(self) -> int:
        """Records written to the open segment since it was started."""
        return self._segment_records

    # -- reading and truncation (the committer's thread) -----------------------------------------

    def segments(self) -> list[int]:
        found = (SEGMENT_RE.match(name) for name in os.listdir(self.directory))
        return sorted(int(m.group(1)) for m in found if m)

    def closed_segments(self) -> list[int]:
        """Segments no longer appended to: safe to read, commit and remove."""
        current = self._segment
        return [n for n in self.segments() if n < current]

    def segment_size(self, number: int) -> int:
        return self._segment_path(number).stat().st_size

    def read_segment(self, number: int) -> list[dict[str, Any]]:
        return decode_lines(self._segment_path(number).read_bytes())

    def remove_segments(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            self._segment_path(number).unlink(missing_ok=True)
        # Not synced on purpose: a removal lost to a power cut only means a replay, which the
        # Delta watermark makes a no-op.
