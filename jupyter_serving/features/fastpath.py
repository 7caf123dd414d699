"""Key-only requests without pandas: keys -> index rows -> a float matrix -> the estimator.

The worker's NumPy fast path (`worker/scoring.py`) skips pandas and schema enforcement for
all-numeric scikit-learn models; a model logged with a feature spec over such a model gets the same
here, with the lookup in between. It takes only requests the full path would accept with the same
result (every client column present with its signature's type, no timestamp lookups, no feature
tracing) and hands anything else back, so it cannot change an answer, only how fast it comes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jupyter_serving.features.index import FeatureIndex
from jupyter_serving.features.spec import FeatureSpec


@dataclass
class Looked:
    """What the fast path looked up for the requests of one batch, in order: the keys not found."""

    missing: list[list[dict[str, Any]]] = field(default_factory=list)
    features: Any = None


class FeatureFastPath:
    """The NumPy fast path of the inner model, fed by lookups from the served tables' indexes."""

    def __init__(self, spec: FeatureSpec, tables: Any, inner: Any) -> None:
        self.spec = spec
        self.tables = tables  # ServedTables: its `indexes` is swapped whole on refresh
        self.inner = inner
        self.predict = inner.predict
        self.sources = self._sources()
        self.client_columns = [c for c, src in zip(inner.columns, self.sources, strict=True) if src is None]
        self.key_columns = spec.key_columns
        self.client_at = [c for c, src in enumerate(self.sources) if src is None]
        # per lookup: (model input position, feature column) of what it fills
        self.plan = [
            [(col, src[1]) for col, src in enumerate(self.sources) if src is not None and src[0] == i]
            for i in range(len(spec.lookups))
        ]
        self._looked = Looked()

    @classmethod
    def build(cls, spec: FeatureSpec, tables: Any, inner: Any) -> FeatureFastPath | None:
        if inner is None or any(lk.timestamp_lookup_key for lk in spec.lookups):
            return None
        path = cls(spec, tables, inner)
        passthrough_keys = set(path.client_columns) & set(path.key_columns)
        return path if not passthrough_keys else None

    def _sources(self) -> list[tuple[int, str] | None]:
        """Per model input column: (lookup number, feature column) it comes from, or None (the client)."""
        out: dict[str, tuple[int, str]] = {}
        for i, lookup in enumerate(self.spec.lookups):
            index = self.tables.indexes[lookup.table_name]
            for name in lookup.features(index):
                out[lookup.output_name(name)] = (i, name)
        return [out.get(c) for c in self.inner.columns]

    def rows(self, fmt: str, data: Any) -> np.ndarray | None:
        try:
            records = _split(data) if fmt == "dataframe_split" else data
            keys = [[r[k] for r in records] for k in self.key_columns]
            client = [[r[c] for c in self.client_columns] for r in records]
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        if not records or not self._typed(client):
            return None
        return self._matrix(records, keys, client)

    def _typed(self, client: list[list[Any]]) -> bool:
        integer = [
            t for c, t in zip(self.inner.columns, self.inner.integer, strict=True) if c in self.client_columns
        ]
        for row in client:
            for value, is_int in zip(row, integer, strict=True):
                kind = type(value)
                if kind is not int and (is_int or kind is not float):
                    return False
        return True

    def _matrix(
        self, records: list[Any], keys: list[list[Any]], client: list[list[Any]]
    ) -> np.ndarray | None:
        indexes = self.tables.indexes
        out = np.empty((len(records), len(self.sources)), dtype=np.float64)
        missing: list[list[dict[str, Any]]] = [[] for _ in records]
        by_key = dict(zip(self.key_columns, keys, strict=True))
        for lookup, columns in zip(self.spec.lookups, self.plan, strict=True):
            index: FeatureIndex = indexes[lookup.table_name]
            values = by_key[lookup.keys[0]]  # single-key lookups only (see _same_type)
            if not _same_type(index, values):
                return None  # the full path would convert the key to the column's type first
            positions = index.positions(values)
            absent = positions < 0
            any_absent = bool(absent.any())
            rows = np.where(absent, 0, positions) if any_absent else positions
            for col, feature in columns:
                column = index.numeric(feature)
                if column is None or (any_absent and self.inner.integer[col]):
                    return None  # not numeric, or a null the full path would refuse for a long column
                out[:, col] = column[rows]
                if any_absent:
                    out[absent, col] = np.nan
            if any_absent:
                for row in np.flatnonzero(absent):
                    missing[row].append({"table_name": lookup.table_name, lookup.keys[0]: values[row]})
        if self.client_at:
            out[:, self.client_at] = np.asarray(client, dtype=np.float64)
        self._looked.missing.extend(missing)
        return out

    def take(self) -> Looked:
        """The keys not found by the `rows` calls since the last take (one batch's requests)."""
        looked, self._looked = self._looked, Looked()
        return looked


def _split(data: dict[str, Any]) -> list[dict[str, Any]]:
    columns = data["columns"]
    return [dict(zip(columns, row, strict=True)) for row in data["data"]]


def _same_type(index: FeatureIndex, values: list[Any]) -> bool:
    """Keys of exactly the type of the index's single key column (int for integers, str for strings)."""
    column = index.sorted_keys
    if column is None:
        return False  # composite keys: the full path
    kind = int if column.dtype.kind in "iu" else str if column.dtype.kind in "OU" else None
    return kind is not None and all(type(v) is kind for v in values)
