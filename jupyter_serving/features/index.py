"""The in-memory index of one feature table version: key -> latest row, or the row as of a timestamp.

Training sets, `score_batch` and serving replicas all look features up through this one class, so
the three cannot disagree. Rows are sorted by (keys, timeseries column); a dict maps each key to
its last row, and, for timeseries tables, to its first, so a point-in-time lookup is a binary search
within the key's run. Building it holds the GIL only in short chunks (the rest is Arrow, which
releases it), so a replica that rebuilds an index of a million rows in the background keeps
answering requests meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jupyter_serving.features.catalog import FeatureTableInfo, read_info, table_path

CHUNK_ROWS = 2048  # keys turned into Python objects per GIL hold: ~0.2 ms each


class KeyColumnError(ValueError):
    """A lookup key column the request or DataFrame does not carry."""

    def __init__(self, missing: list[str], table: str) -> None:
        self.missing = missing
        super().__init__(
            f"Missing lookup key column(s) {', '.join(repr(c) for c in missing)} "
            f"required to look up features in {table!r}."
        )


@dataclass(frozen=True)
class IndexStats:
    name: str
    version: int
    rows: int
    loaded_at: float


class FeatureIndex:
    """One version of one feature table, indexed by its lookup keys."""

    def __init__(self, info: FeatureTableInfo, table: pa.Table, version: int) -> None:
        self.info = info
        self.version = version
        self.keys = info.lookup_keys
        sort = [(k, "ascending") for k in self.keys]
        if info.timeseries_column:
            sort.append((info.timeseries_column, "ascending"))
        self.table = table.sort_by(sort) if table.num_rows else table
        self.times = _epoch_ns(self.table[info.timeseries_column]) if info.timeseries_column else None
        self.last, self.first = self._key_maps()
        self._numeric = {c: _floats(self.table[c]) for c in self.feature_columns}
        self.stats = IndexStats(info.name, version, self.table.num_rows, time.time())

    @classmethod
    def load(cls, name: str, root: Path | None = None, version: int | None = None) -> FeatureIndex:
        from deltalake import DeltaTable

        info = read_info(name, root)
        dt = DeltaTable(str(table_path(name, root)), version=version)
        return cls(info, dt.to_pyarrow_table(), dt.version())

    @property
    def feature_columns(self) -> list[str]:
        skip = {*self.info.primary_keys, self.info.timeseries_column}
        return [c for c in self.table.column_names if c not in skip]

    def _key_maps(self) -> tuple[dict[Any, int], dict[Any, int] | None]:
        last: dict[Any, int] = {}
        first: dict[Any, int] | None = {} if self.times is not None else None
        columns = [self.table[k] for k in self.keys]
        for start in range(0, self.table.num_rows, CHUNK_ROWS):
            parts = [c.slice(start, CHUNK_ROWS).to_pylist() for c in columns]
            keys = parts[0] if len(parts) == 1 else list(zip(*parts, strict=True))
            positions = range(start, start + len(keys))
            last.update(zip(keys, positions, strict=True))
            if first is not None:
                for key, pos in zip(keys, positions, strict=True):
                    first.setdefault(key, pos)  # rows are sorted: the first seen is the earliest
            time.sleep(0)  # hand the GIL to a waiting request between chunks
        return last, first

    def positions(self, keys: list[Any], times: np.ndarray | None = None) -> np.ndarray:
        """Row per key (-1 where the key is absent): the latest, or the last at or before `times`."""
        get = self.last.get
        if times is None or self.times is None:
            return np.fromiter((get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        out = np.full(len(keys), -1, dtype=np.int64)
        assert self.first is not None
        for i, (key, at) in enumerate(zip(keys, times, strict=True)):
            end = get(key)
            if end is None:
                continue
            start = self.first[key]
            j = start + int(np.searchsorted(self.times[start : end + 1], at, side="right")) - 1
            out[i] = j if j >= start else -1
        return out

    def numeric(self, column: str) -> np.ndarray | None:
        """A numeric feature column as float64 (NaN for null), built with the index; None otherwise."""
        return self._numeric.get(column)

    def take(self, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """The given columns at `positions`; a row of nulls where the position is -1."""
        indices = pa.array(positions, mask=positions < 0, type=pa.int64())
        return self.table.select(columns).take(indices)


def _floats(column: pa.ChunkedArray) -> np.ndarray | None:
    kind = column.type
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
        return None
    return pc.cast(column, pa.float64()).to_numpy()  # nulls become NaN


def _epoch_ns(column: pa.ChunkedArray) -> np.ndarray:
    """Timestamps as int64 nanoseconds since the epoch (naive ones read as UTC), nulls as the minimum."""
    kind = column.type
    tz = getattr(kind, "tz", None)
    cast = pc.cast(column, pa.timestamp("ns", tz=tz)) if pa.types.is_timestamp(kind) else column
    if pa.types.is_date(kind):
        cast = pc.cast(pc.cast(column, pa.timestamp("s")), pa.timestamp("ns"))
    ints = pc.cast(cast, pa.int64()).fill_null(np.iinfo(np.int64).min)
    return ints.to_numpy()
