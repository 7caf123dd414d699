"""`InferenceCapture`: the server's one object for payload logging, spool to Delta.

Request path: `record` appends the row to the spool and returns once it is synced (group commit,
see `spool`). Off the request path, a background task rotates the spool every `flush_interval_s`
or `flush_rows` rows, commits the closed segments to their Delta tables, and only then deletes
them. `start` first commits whatever a killed predecessor left in the spool.

Exactly once. Each commit to a table carries a Delta app transaction ``(app_id, version)``, where
`app_id` names this spool and `version` is the highest spool segment the commit covers; rows and
version land atomically in one commit. On replay, rows from segments at or below the table's
version are skipped. This costs one snapshot read per table per process (cached afterwards) and
no data scan, unlike a MERGE on `databricks_request_id`, which rereads the table on every commit
and would get slower as the table grows. It holds because segment numbers only grow, each commit
covers every not-yet-committed row of its table in the segments it names, and a failed batch
stops later segments from being committed ahead of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_serving.capture import table as delta
from jupyter_serving.capture.row import PayloadRow
from jupyter_serving.capture.spool import Spool

log = logging.getLogger(__name__)

# Upper bound on spool bytes read into memory for one commit, so a long backlog (a table that
# failed for hours) is committed in pieces rather than all at once.
MAX_BATCH_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class CaptureStats:
    """What the writer has done since `start`; `replayed_rows` counts rows left by a previous run."""

    rows_committed: int = 0
    commits: int = 0
    replayed_rows: int = 0
    compactions: int = 0
    commits_since_compaction: dict[str, int] = field(default_factory=dict)


class InferenceCapture:
    """Durable, batched payload logging into Delta inference tables.

    One instance per server, used from its asyncio event loop. Blocking work runs on two private
    threads: one owns the spool file (so a slow Delta commit never delays an fsync), one does
    every Delta operation (so appends and compactions never race each other).
    """

    def __init__(
        self,
        spool_dir: Path,
        *,
        flush_interval_s: float = 2.0,
        flush_rows: int = 5000,
        compact_every_commits: int = 50,
    ) -> None:
        self.spool_dir = Path(spool_dir)
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        self.compact_every_commits = compact_every_commits
        self.stats = CaptureStats()
        self._spool = Spool(self.spool_dir)
        self._delta = ThreadPoolExecutor(1, thread_name_prefix="capture-delta")
        self._watermarks: dict[str, int | None] = {}
        self._errors: dict[str, str] = {}
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False

    @property
    def app_id(self) -> str:
        """The Delta app-transaction id of this spool (stable across restarts of the server)."""
        return f"jupyter-serving-capture-{self._spool.spool_id}"

    @property
    def spool_stats(self) -> Any:
        return self._spool.stats

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the spool, commit anything a previous run left in it, then flush periodically."""
        await self._in_delta_thread(self._spool.open)
        self._started = True
        self.stats.replayed_rows = await self._commit_closed()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="capture-flusher")

    async def stop(self) -> None:
        """Stop the periodic flush and commit everything acknowledged so far."""
        if not self._started:
            return
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush_now()
        await self._spool.close()
        self._delta.shutdown(wait=True)
        self._started = False

    # -- request path ----------------------------------------------------------------------------

    async def record(self, table_path: Path, row: PayloadRow) -> None:
        """Return once `row` is durably spooled; it reaches `table_path` at the next flush.

        Raises `SpoolWriteError` (an OSError) if the row could not be made durable.
        """
        if not self._started:
            raise RuntimeError("InferenceCapture.start() has not been awaited")
        await self._spool.append({"table": str(table_path), **row.to_record()})
        if self._spool.pending_records >= self.flush_rows:
            self._wake.set()

    # -- flushing --------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush_now()
            except Exception:
                # Rows stay in the spool and go with the next flush.
                log.exception("capture: flush failed")

    async def flush_now(self) -> int:
        """Commit every acknowledged row to Delta now; return the number of rows committed."""
        async with self._flush_lock:
            await self._spool.rotate()
            return await self._commit_closed()

    async def _commit_closed(self) -> int:
        return await self._in_delta_thread(self._commit_closed_sync)

    async def _in_delta_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._delta, fn, *args)

    def _commit_closed_sync(self) -> int:
        committed = 0
        for group in self._segment_groups(self._spool.closed_segments()):
            rows, ok = self._commit_group(group)
            committed += rows
            if not ok:
                # Committing later segments first would move the watermark past this group.
                break
            self._spool.remove_segments(group)
        return committed

    def _segment_groups(self, segments: list[int]) -> list[list[int]]:
        groups: list[list[int]] = [[]]
        size = 0
        for number in segments:
            seg_size = self._spool.segment_size(number)
            if groups[-1] and size + seg_size > MAX_BATCH_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(number)
            size += seg_size
        return [g for g in groups if g]

    def _commit_group(self, segments: list[int]) -> tuple[int, bool]:
        by_table: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for number in segments:
            for record in self._spool.read_segment(number):
                by_table.setdefault(record.pop("table"), []).append((number, record))
        committed, ok = 0, True
        for table_path, items in by_table.items():
            try:
                committed += self._commit_table(table_path, items, version=segments[-1])
            except Exception as exc:
                ok = False
                self._errors[table_path] = str(exc)
                # The commit may have landed before the error: reread the watermark next time.
                self._watermarks.pop(table_path, None)
                log.exception("capture: commit to %s failed", table_path)
        return committed, ok

    def _commit_table(self, table_path: str, items: list[tuple[int, dict[str, Any]]], version: int) -> int:
        if table_path not in self._watermarks:
            self._watermarks[table_path] = delta.watermark(Path(table_path), self.app_id)
        mark = self._watermarks[table_path]
        fresh = [record for number, record in items if mark is None or number > mark]
        if not fresh:
            return 0
        delta.append_records(Path(table_path), fresh, app_id=self.app_id, version=version)
        self._watermarks[table_path] = version
        self._errors.pop(table_path, None)
        self.stats.rows_committed += len(fresh)
        self.stats.commits += 1
        self._maybe_compact(table_path)
        return len(fresh)

    # -- compaction ------------------------------------------------------------------------------

    def _maybe_compact(self, table_path: str) -> None:
        counts = self.stats.commits_since_compaction
        counts[table_path] = counts.get(table_path, 0) + 1
        if counts[table_path] >= self.compact_every_commits:
            try:
                self._compact_sync(table_path)
            except Exception:
                log.exception("capture: background compaction of %s failed", table_path)

    def _compact_sync(self, table_path: str) -> dict[str, int]:
        result = delta.compact(Path(table_path))
        self.stats.commits_since_compaction[table_path] = 0
        self.stats.compactions += 1
        return result

    async def optimize(self, table_path: Path) -> dict[str, int]:
        """Compact `table_path` now (after committing pending rows); return file counts."""
        await self.flush_now()
        return await self._in_delta_thread(self._compact_sync, str(table_path))

    # -- table management ------------------------------------------------------------------------

    async def ensure_table(self, table_path: Path) -> None:
        """Create the (empty) table, e.g. when an endpoint is created with capture enabled."""
        await self._in_delta_thread(delta.create_payload_table, Path(table_path))

    def table_status(self, table_path: Path) -> tuple[str, str]:
        """`("ACTIVE", "")`, or `("FAILED", why)` if the last commit to the table failed.

        Maps onto `auto_capture_config.state.payload_table.{status, status_message}`.
        """
        error = self._errors.get(str(table_path))
        return ("FAILED", error) if error else ("ACTIVE", "")
