"""The in-memory index of one feature table version: key -> latest row, or the row as of a timestamp.

Training sets, `score_batch` and serving replicas all look features up through this one class, so
the three cannot disagree. Rows are sorted by (keys, timeseries column). A single key column
(the common case) stays a NumPy array searched by bisection: the run of rows of one key is
found with two binary searches, the latest row is its last, a point-in-time row a third search
within it. No per-row Python objects are made, so building the index of a million rows is
NumPy and Arrow work that releases the GIL, and a replica rebuilding one in the background
keeps answering requests meanwhile. Composite keys use a dict, built in short chunks.
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
        self.table = _sorted(table, self.keys, info.timeseries_column)
        self.times = _epoch_ns(self.table[info.timeseries_column]) if info.timeseries_column else None
        self.sorted_keys = self.table[self.keys[0]].to_numpy() if len(self.keys) == 1 else None
        if self.sorted_keys is None:
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
        if self.sorted_keys is not None:
            return self._bisect(keys, times)
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

    def _bisect(self, keys: list[Any], times: np.ndarray | None) -> np.ndarray:
        column = self.sorted_keys
        assert column is not None  # lookup() bisects only a one-key index
        one_int = len(keys) == 1 and type(keys[0]) is int and column.dtype.kind in "iu"
        if one_int and (times is None or self.times is None):  # a served request's key: one search
            end = int(column.searchsorted(keys[0], "right"))
            hit = end > 0 and column[end - 1] == keys[0]
            return np.array([end - 1 if hit else -1], dtype=np.int64)
        runs = _runs(column, keys)
        if runs is None:  # keys NumPy cannot compare with the column at once: one by one
            return (
                np.concatenate(
                    [
                        self._bisect([k], None if times is None else times[i : i + 1])
                        for i, k in enumerate(keys)
                    ]
                )
                if keys
                else np.empty(0, np.int64)
            )
        left, right = runs
        found = right > left
        if times is None or self.times is None:
            return np.where(found, right - 1, -1)
        out = np.full(len(keys), -1, dtype=np.int64)
        for i in np.flatnonzero(found):
            j = left[i] + int(np.searchsorted(self.times[left[i] : right[i]], times[i], side="right")) - 1
            out[i] = j if j >= left[i] else -1
        return out

    def take(self, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """The given columns at `positions`; a row of nulls where the position is -1."""
        indices = pa.array(positions, mask=positions < 0, type=pa.int64())
        return self.table.select(columns).take(indices)


def _runs(column: np.ndarray, keys: list[Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """Where each key's rows start and end in the sorted column (equal when absent); None if the
    keys are not comparable with it (a string for an integer column, a null)."""
    try:
        query = np.asarray(keys)
        if query.dtype == object or (query.dtype.kind in "US") != (column.dtype.kind in "USO"):
            raise TypeError
        return np.searchsorted(column, query, "left"), np.searchsorted(column, query, "right")
    except (TypeError, ValueError):
        if len(keys) == 1:
            return np.zeros(1, np.int64), np.zeros(1, np.int64)  # a key of another type is absent
        return None


def _sorted(table: pa.Table, keys: list[str], timeseries: str | None) -> pa.Table:
    """Rows ordered by keys, then time. NumPy sorts numbers without the GIL; Arrow sorts the rest."""
    if table.num_rows == 0:
        return table
    columns = [*keys, *([timeseries] if timeseries else [])]
    arrays = [table[c] for c in columns]
    if all(pa.types.is_integer(a.type) or pa.types.is_floating(a.type) for a in arrays):
        values = [a.to_numpy() for a in arrays]
        order = np.lexsort(values[::-1]) if len(values) > 1 else np.argsort(values[0], kind="stable")
        if np.all(order[1:] > order[:-1]):
            return table  # already sorted (a table written in key order)
        return table.take(pa.array(order))
    return table.sort_by([(c, "ascending") for c in columns])


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
