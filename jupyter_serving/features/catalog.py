"""Feature tables on disk: `catalog.schema.table` names, their folders, and what makes them feature tables.

A feature table is a Delta table under the local catalog root (the one inference tables use) with a
small `_feature_table.json` beside its `_delta_log`: the primary keys and the timeseries column.
Delta keeps that file (names starting with `_` are not data files, so VACUUM leaves them alone);
custom Delta table properties would be the natural home, but the Delta writer rejects unknown keys.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path

META_FILE = "_feature_table.json"
ROOT_ENV = "JUPYTER_SERVING_CATALOG_ROOT"
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_OVERRIDE: ContextVar[Path | None] = ContextVar("catalog_root_override", default=None)


@dataclass(frozen=True)
class FeatureTableInfo:
    """What the catalog knows of one feature table besides its Delta data."""

    name: str
    primary_keys: list[str]
    timeseries_column: str | None = None
    description: str | None = None

    @property
    def lookup_keys(self) -> list[str]:
        """The keys a lookup matches on: the primary keys without the timeseries column."""
        return [k for k in self.primary_keys if k != self.timeseries_column]


def catalog_root() -> Path:
    """The catalog root the server uses: JUPYTER_SERVING_CATALOG_ROOT, else the settings' default
    (inside `using_root`, that root: a client built with its own root loads models against it)."""
    override = _OVERRIDE.get()
    if override is not None:
        return override
    raw = os.environ.get(ROOT_ENV)
    if raw:
        return Path(raw).expanduser()
    from jupyter_serving.settings import ServingSettings

    return ServingSettings().catalog_path


@contextmanager
def using_root(root: Path | None) -> Iterator[None]:
    token = _OVERRIDE.set(root)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def split_name(name: str) -> tuple[str, str, str]:
    """`catalog.schema.table` as its three parts; anything else is a ValueError naming the rule."""
    parts = name.split(".") if isinstance(name, str) else []
    if len(parts) != 3 or not all(_PART.match(p) for p in parts):
        raise ValueError(
            f"Feature table name {name!r} must be '<catalog>.<schema>.<table>' "
            "(letters, digits, '_' and '-')."
        )
    return parts[0], parts[1], parts[2]


def table_path(name: str, root: Path | None = None) -> Path:
    """`<catalog root>/<catalog>/<schema>/<table>`, where the table's Delta log lives."""
    return (root or catalog_root()).joinpath(*split_name(name))


def write_info(path: Path, info: FeatureTableInfo) -> None:
    tmp = path / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(info)))
    tmp.replace(path / META_FILE)


def read_info(name: str, root: Path | None = None) -> FeatureTableInfo:
    path = table_path(name, root) / META_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LookupError(f"Feature table {name!r} does not exist (no {path}).") from None
    return FeatureTableInfo(**data)
