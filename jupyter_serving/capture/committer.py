"""Moving closed spool segments into their Delta tables, exactly once, and compacting them.

Exactly once. Each commit to a table carries a Delta app transaction ``(app_id, version)``, where
`app_id` names the spool and `version` is the highest spool segment the commit covers; rows and
version land atomically in one commit. On replay, rows from segments at or below the table's
version are skipped. This costs one snapshot read per table per process (cached afterwards) and
no data scan, unlike a MERGE on `databricks_request_id`, which rereads the table on every commit
and would get slower as the table grows. It holds because segment numbers only grow, each commit
covers every not-yet-committed row of its table in the segments it names, and a failed batch
stops later segments from being committed ahead of it.

Quarantine. A batch that Delta keeps refusing (QUARANTINE_AFTER failures in a row: a table path
Delta rejects, a corrupt log) is set aside as a 0600 JSON-lines file under `<spool>/quarantine/`,
so the spool is trimmed and every other table keeps committing. The table's status says how many
rows wait there; `replay_quarantine()` (run at every start) commits them once the table accepts
them again, exactly once through an app transaction per quarantine file.

Runs in the capture service process, on one thread, so appends and compactions never race.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
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
# Consecutive failed commits of one table's rows before they are set aside; fewer retries would
# quarantine rows on a passing hiccup, more would hold every other table's rows back longer.
QUARANTINE_AFTER = 3
QUARANTINE_DIR = "quarantine"


@dataclass(slots=True)
class CommitStats:
    """What the committer has done; `replayed_rows` counts rows left by a previous run."""

    rows_committed: int = 0
    commits: int = 0
    replayed_rows: int = 0
    compactions: int = 0
    quarantined_rows: int = 0
    replayed_quarantine_rows: int = 0
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
        self._failures: dict[str, int] = {}  # table -> consecutive failed commits
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
                self._failures.pop(table_path, None)
            except Exception as exc:
                # The commit may have landed before the error: reread the watermark next time.
                self._watermarks.pop(table_path, None)
                log.exception("capture: commit to %s failed", table_path)
                failures = self._failures[table_path] = self._failures.get(table_path, 0) + 1
                if failures >= QUARANTINE_AFTER and self._quarantine(table_path, items, segments[-1], exc):
                    continue
                ok = False
                self._set_error(table_path, str(exc))
        return committed, ok

    # -- quarantine ------------------------------------------------------------------------------

    @property
    def quarantine_dir(self) -> Path:
        return self.spool.directory / QUARANTINE_DIR

    def _quarantine(
        self, table_path: str, items: list[tuple[int, dict[str, Any]]], version: int, exc: Exception
    ) -> bool:
        """Set the rows aside (not yet committed ones only); False if even that failed."""
        mark = self._watermarks.get(table_path)
        fresh = [record for number, record in items if mark is None or number > mark]
        digest = hashlib.sha1(table_path.encode("utf-8", "surrogateescape")).hexdigest()[:16]
        path = self.quarantine_dir / f"{digest}-{version:012d}.jsonl"
        try:
            self.quarantine_dir.mkdir(mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps({"table": table_path, "error": str(exc)[:2000]}) + "\n")
                for record in fresh:
                    f.write(json.dumps(record, default=str) + "\n")
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            log.exception("capture: could not quarantine rows of %s", table_path)
            return False
        self._failures.pop(table_path, None)
        self.stats.quarantined_rows += len(fresh)
        log.error(
            "capture: Delta refused %d rows for %s %d times; set aside in %s (replayed at start): %s",
            len(fresh), table_path, QUARANTINE_AFTER, path, exc,
        )  # fmt: skip
        self._set_error(table_path, self._quarantine_message(table_path, exc))
        return True

    def _quarantine_message(self, table_path: str, exc: Exception) -> str:
        return f"{self.quarantined(table_path)} rows quarantined in {self.quarantine_dir}: {exc}"

    def _quarantine_files(self, table_path: str | None = None) -> list[tuple[Path, str]]:
        out = []
        for path in sorted(self.quarantine_dir.glob("*.jsonl")) if self.quarantine_dir.is_dir() else []:
            with open(path) as f:
                table = json.loads(f.readline())["table"]
            if table_path is None or table == table_path:
                out.append((path, table))
        return out

    def quarantined(self, table_path: str) -> int:
        """Rows of `table_path` waiting in quarantine."""
        total = 0
        for path, _ in self._quarantine_files(table_path):
            with open(path) as f:
                total += sum(1 for _ in f) - 1
        return total

    def replay_quarantine(self) -> int:
        """Commit quarantined rows whose table accepts them now; return the rows committed."""
        committed = 0
        for path, table in self._quarantine_files():
            app_id = f"{self.app_id}-quarantine-{path.stem}"
            try:
                with open(path) as f:
                    records = [json.loads(line) for line in f.readlines()[1:]]
                if records and delta.watermark(Path(table), app_id) is None:
                    delta.append_records(Path(table), records, app_id=app_id, version=0)
                    committed += len(records)
            except Exception as exc:
                log.warning("capture: quarantined rows for %s still refused: %s", table, exc)
                self._set_error(table, self._quarantine_message(table, exc))
                continue
            path.unlink()
            self._watermarks.pop(table, None)
        self.stats.replayed_quarantine_rows += committed
        return committed

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

    def ensure_table(self, table_path: str, form: str = "legacy") -> None:
        """Create the table if needed (`form`: see `table.schema_for`), and pay Arrow's first-use
        cost (~0.3 s of CPU) now, when an endpoint starts capturing, rather than in the first
        commit, amid its traffic."""
        delta.create_payload_table(Path(table_path), form)
        if not self._arrow_ready:
            delta.records_to_arrow([])
            self._arrow_ready = True
