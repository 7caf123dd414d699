"""Moving closed spool segments into their Delta tables, exactly once, and compacting them.

Exactly once. Each commit to a table carries a Delta app transaction ``(app_id, version)``, where
`app_id` names the spool and `version` is the highest spool segment the commit covers; rows and
version land atomically in one commit. On replay, rows from segments at or below the table's
version are skipped. This costs one snapshot read per table per process (cached afterwards) and
no data scan, unlike a MERGE on `databricks_request_id`, which rereads the table on every commit
and would get slower as the table grows. It holds because segment numbers only grow, each commit
covers every not-yet-committed row of its table in the segments it names, and a failed batch
stops later segments from being committed ahead of it.

Runs in the capture service process, on one thread, so appends and compactions never race.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_serving.capture import table as delta
from jupyter_serving.capture.spool import Spool

log = logging.getLogger(__name__)

# Upper bound on spool bytes read into memory for one commit, so a long backlog (a table that
# failed for hours) is committed in pieces rather than all at once.
MAX_BATCH_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class CommitStats:
    """What the committer has done; `replayed_rows` counts rows left by a previous run."""

    rows_committed: int = 0
    commits: int = 0
    replayed_rows: int = 0
    compactions: int = 0
    commits_since_compaction: dict[str, int] = field(default_factory=dict)


class Committer:
    """Commits a spool's closed segments to the Delta tables their rows name.

    `on_status(table, error)` is called whenever a table's health changes: an error message after
    a failed commit, None once a commit to it succeeds again.
    """

    def __init__(
        self,
        spool: Spool,
        *,
        compact_every_commits: int = 50,
        on_status: Callable[[str, str | None], None] = lambda table, error: None,
    ) -> None:
        self.spool = spool
        self.compact_every_commits = compact_every_commits
        self.stats = CommitStats()
        self._on_status = on_status
        self._watermarks: dict[str, int | None] = {}
        self._errors: dict[str, str] = {}
        self._arrow_ready = False

    @property
    def app_id(self) -> str:
        """The Delta app-transaction id of this spool (stable across restarts of the server)."""
        return f"jupyter-serving-capture-{self.spool.spool_id}"

    def commit_closed(self) -> int:
        """Commit every closed segment, oldest first; return the number of rows committed."""
        committed = 0
        for group in self._segment_groups(self.spool.closed_segments()):
            rows, ok = self._commit_group(group)
            committed += rows
            if not ok:
                # Committing later segments first would move the watermark past this group.
                break
            self.spool.remove_segments(group)
        return committed

    def _segment_groups(self, segments: list[int]) -> list[list[int]]:
        groups: list[list[int]] = [[]]
        size = 0
        for number in segments:
            seg_size = self.spool.segment_size(number)
            if groups[-1] and size + seg_size > MAX_BATCH_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(number)
            size += seg_size
        return [g for g in groups if g]

    def _commit_group(self, segments: list[int]) -> tuple[int, bool]:
        by_table: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for number in segments:
            for record in self.spool.read_segment(number):
                by_table.setdefault(record.pop("table"), []).append((number, record))
        committed, ok = 0, True
        for table_path, items in by_table.items():
            try:
                committed += self._commit_table(table_path, items, version=segments[-1])
            except Exception as exc:
                ok = False
                self._set_error(table_path, str(exc))
                # The commit may have landed before the error: reread the watermark next time.
                self._watermarks.pop(table_path, None)
                log.exception("capture: commit to %s failed", table_path)
        return committed, ok

    def _commit_table(self, table_path: str, items: list[tuple[int, dict[str, Any]]], version: int) -> int:
        if table_path not in self._watermarks:
            self._watermarks[table_path] = delta.watermark(Path(table_path), self.app_id)
        mark = self._watermarks[table_path]
        fresh = [record for number, record in items if mark is None or number > mark]
        if fresh:
            delta.append_records(Path(table_path), fresh, app_id=self.app_id, version=version)
            self._watermarks[table_path] = version
            self.stats.rows_committed += len(fresh)
            self.stats.commits += 1
        self._set_error(table_path, None)
        if fresh:
            self._maybe_compact(table_path)
        return len(fresh)

    def _set_error(self, table_path: str, error: str | None) -> None:
        if self._errors.get(table_path) == error:
            return
        if error is None:
            self._errors.pop(table_path, None)
        else:
            self._errors[table_path] = error
        self._on_status(table_path, error)

    # -- compaction ------------------------------------------------------------------------------

    def _maybe_compact(self, table_path: str) -> None:
        counts = self.stats.commits_since_compaction
        counts[table_path] = counts.get(table_path, 0) + 1
        if counts[table_path] >= self.compact_every_commits:
            try:
                self.compact(table_path)
            except Exception:
                log.exception("capture: background compaction of %s failed", table_path)

    def compact(self, table_path: str) -> dict[str, int]:
        """Merge the table's small files now; return file counts (see `table.compact`)."""
        result = delta.compact(Path(table_path))
        self.stats.commits_since_compaction[table_path] = 0
        self.stats.compactions += 1
        return result

    def ensure_table(self, table_path: str) -> None:
        """Create the table if needed, and pay Arrow's first-use cost (~0.3 s of CPU) now, when an
        endpoint starts capturing, rather than in the first commit, amid its traffic."""
        delta.create_payload_table(Path(table_path))
        if not self._arrow_ready:
            delta.records_to_arrow([])
            self._arrow_ready = True
