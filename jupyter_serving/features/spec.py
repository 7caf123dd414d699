"""What to look up (`FeatureLookup`, `FeatureSpec`) and the one function that does it (`join_features`).

A feature spec is plain JSON stored with the model it feeds, so a replica, `score_batch` and the
training set rebuild exactly the same lookups from it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from jupyter_serving.features.index import FeatureIndex, KeyColumnError

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class FeatureLookup:
    """Features from one table, matched on `lookup_key` (columns of the caller's DataFrame).

    `lookup_key` lists the caller's columns in the order of the table's lookup keys (its primary
    keys without the timeseries column). With `timestamp_lookup_key`, the row taken is the last one
    at or before that timestamp (point in time); without it, the latest.
    """

    table_name: str
    lookup_key: str | list[str]
    feature_names: str | list[str] | None = None
    rename_outputs: dict[str, str] | None = None
    timestamp_lookup_key: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.lookup_key, str):
            self.lookup_key = [self.lookup_key]
        if isinstance(self.feature_names, str):
            self.feature_names = [self.feature_names]

    @property
    def keys(self) -> list[str]:
        return list(self.lookup_key)

    def features(self, index: FeatureIndex) -> list[str]:
        names = list(self.feature_names) if self.feature_names else index.feature_columns
        unknown = [n for n in names if n not in index.table.column_names]
        if unknown:
            raise ValueError(f"Feature table {self.table_name!r} has no column(s) {unknown}.")
        return names

    def output_name(self, feature: str) -> str:
        return (self.rename_outputs or {}).get(feature, feature)


@dataclass
class FeatureSpec:
    """The lookups a model (or a Feature Serving endpoint) needs, and the columns its input keeps."""

    lookups: list[FeatureLookup]
    model_input_columns: list[str] | None = None  # None: every column after the join
    exclude_columns: list[str] = field(default_factory=list)
    table_versions: dict[str, int] = field(default_factory=dict)  # as trained; serving reads the latest

    @property
    def tables(self) -> list[str]:
        return list(dict.fromkeys(lk.table_name for lk in self.lookups))

    @property
    def key_columns(self) -> list[str]:
        keys = [k for lk in self.lookups for k in lk.keys]
        return list(dict.fromkeys(keys))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        data = json.loads(text)
        data["lookups"] = [FeatureLookup(**lk) for lk in data["lookups"]]
        return cls(**data)


@dataclass
class Joined:
    """A DataFrame with its features joined, the keys no row was found for, and the features alone."""

    frame: pd.DataFrame
    missing: list[list[dict[str, Any]]]  # per input row: the keys (with their table) not found
    features: pd.DataFrame


def join_features(frame: pd.DataFrame, spec: FeatureSpec, indexes: dict[str, FeatureIndex]) -> Joined:
    """Look every lookup of `spec` up for every row of `frame`; absent keys give null features."""
    import pandas as pd

    frame = frame.reset_index(drop=True)
    missing: list[list[dict[str, Any]]] = [[] for _ in range(len(frame))]
    parts = []
    for lookup in spec.lookups:
        absent = [c for c in lookup.keys if c not in frame.columns]
        if absent:
            raise KeyColumnError(absent, lookup.table_name)
        index = indexes[lookup.table_name]
        values = _key_values(frame, lookup.keys)
        times = _times(frame, lookup.timestamp_lookup_key)
        positions = index.positions(values, times)
        names = lookup.features(index)
        part = index.take(positions, names).to_pandas()
        part.columns = [lookup.output_name(n) for n in names]
        parts.append(part)
        for row in np.flatnonzero(positions < 0):
            key = values[row] if len(lookup.keys) > 1 else (values[row],)
            missing[row].append({"table_name": lookup.table_name, **dict(zip(lookup.keys, key, strict=True))})
    features = pd.concat(parts, axis=1) if parts else pd.DataFrame(index=frame.index)
    base = frame.drop(columns=[c for c in features.columns if c in frame.columns])
    joined = pd.concat([base, features], axis=1)
    return Joined(joined, missing, features)


def _key_values(frame: pd.DataFrame, keys: list[str]) -> list[Any]:
    columns = [frame[k].tolist() for k in keys]
    return columns[0] if len(columns) == 1 else list(zip(*columns, strict=True))


def _times(frame: pd.DataFrame, column: str | None) -> np.ndarray | None:
    if column is None or column not in frame.columns:
        return None
    import pandas as pd

    stamps = pd.DatetimeIndex(pd.to_datetime(frame[column], utc=True))
    return stamps.as_unit("ns").asi8
