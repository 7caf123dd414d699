"""The feature tables one loaded model reads: their indexes, kept fresh by a background thread.

The thread checks for the table's next Delta commit (one `stat` per table per interval) and, when
one appears, builds a new index beside the old and swaps it in with one assignment; lookups in
flight keep the index they started with. The interval is JUPYTER_SERVING_FEATURE_REFRESH_S (the
server's `feature_refresh_s`, overridable per served entity in `environment_vars`); 0 means never,
which is what `score_batch` and training sets get outside a replica.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from jupyter_serving.features.catalog import catalog_root, table_path
from jupyter_serving.features.index import FeatureIndex

log = logging.getLogger("jupyter_serving.features")

REFRESH_ENV = "JUPYTER_SERVING_FEATURE_REFRESH_S"
STATUS_ENV = "JUPYTER_SERVING_FEATURE_STATUS_PATH"


class ServedTables:
    """Indexes by table name, refreshed in the background when their Delta tables change."""

    def __init__(self, names: list[str], root: Path | None = None) -> None:
        self.root = root or catalog_root()  # fixed now: a refresh reads where the load did
        self.indexes: dict[str, FeatureIndex] = {n: FeatureIndex.load(n, root) for n in names}
        self.refreshes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.write_status()

    def start(self, interval_s: float | None = None) -> None:
        """Poll every `interval_s` (default: from the environment); 0 or less: never."""
        if interval_s is None:
            interval_s = float(os.environ.get(REFRESH_ENV, "0") or 0)
        if interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._run, args=(interval_s,), daemon=True, name="feature-refresh"
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            for name in list(self.indexes):
                try:
                    self.refresh(name)
                except Exception:  # a half-written commit or a dropped table: keep serving the last one
                    log.exception(
                        "refreshing feature table %s failed; still serving version %s",
                        name,
                        self.indexes[name].version,
                    )

    def refresh(self, name: str) -> bool:
        """Load the table's newest version if it has a commit after the one served."""
        current = self.indexes[name]
        log_dir = table_path(name, self.root) / "_delta_log"
        if not (log_dir / f"{current.version + 1:020d}.json").exists():
            return False
        started = time.perf_counter()
        fresh = FeatureIndex.load(name, self.root)
        self.indexes = {**self.indexes, name: fresh}  # one assignment: readers see old or new
        self.refreshes += 1
        log.info(
            "feature table %s: version %s -> %s (%s rows) in %.2f s",
            name,
            current.version,
            fresh.version,
            fresh.stats.rows,
            time.perf_counter() - started,
        )
        self.write_status()
        return True

    def describe(self) -> list[dict[str, object]]:
        return [
            {
                "name": i.stats.name,
                "version": i.stats.version,
                "rows": i.stats.rows,
                "loaded_at": round(i.stats.loaded_at, 3),
            }
            for i in self.indexes.values()
        ]

    def write_status(self) -> None:
        """Tell the server what is served (it shows it in the entity's `local` block)."""
        target = os.environ.get(STATUS_ENV)
        if not target:
            return
        tmp = Path(f"{target}.tmp")
        tmp.write_text(json.dumps(self.describe()))
        tmp.replace(target)
