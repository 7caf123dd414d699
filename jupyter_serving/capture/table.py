"""The payload table on disk: its Delta schema, idempotent batch appends, and compaction.

Every function here is synchronous and blocking (deltalake does file IO and Rust-side work); the
capture writer calls them from its own thread. deltalake and pyarrow are imported inside the
functions so importing the capture package at server start-up stays cheap.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

PARTITION_COLUMN = "date"
# Compaction supersedes small files; vacuum may delete them after this long. Long enough for a
# notebook reading an older snapshot to finish, short enough that disk use follows compaction.
TABLE_PROPERTIES = {"delta.deletedFileRetentionDuration": "interval 1 hours"}


def payload_schema() -> pa.Schema:
    """Databricks' legacy payload-table columns, with their Databricks types."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("databricks_request_id", pa.string(), nullable=False),
            pa.field("client_request_id", pa.string()),
            pa.field("date", pa.date32()),
            pa.field("timestamp_ms", pa.int64()),
            pa.field("status_code", pa.int32()),
            pa.field("execution_time_ms", pa.int64()),
            pa.field("sampling_fraction", pa.float64()),
            pa.field("request", pa.string()),
            pa.field("response", pa.string()),
            pa.field("request_metadata", pa.map_(pa.string(), pa.string())),
        ]
    )


USAGE_SUFFIX = "_usage"


def usage_schema() -> pa.Schema:
    """One row per request of an endpoint with AI Gateway usage tracking (see dataplane.usage)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("databricks_request_id", pa.string(), nullable=False),
            pa.field("client_request_id", pa.string()),
            pa.field("date", pa.date32()),
            pa.field("timestamp_ms", pa.int64()),
            pa.field("requester", pa.string()),
            pa.field("endpoint_name", pa.string()),
            pa.field("served_entity_name", pa.string()),
            pa.field("status_code", pa.int32()),
            pa.field("execution_time_ms", pa.int64()),
            pa.field("request_bytes", pa.int64()),
            pa.field("response_bytes", pa.int64()),
        ]
    )


def schema_for(path: Path | str) -> pa.Schema:
    """Tables are told apart by name: `*_usage` holds usage rows, every other table payload rows."""
    return usage_schema() if Path(path).name.endswith(USAGE_SUFFIX) else payload_schema()


def is_table(path: Path) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(str(path))


def create_payload_table(path: Path) -> None:
    """Create the empty table if it does not exist, so readers work before the first request."""
    from deltalake import DeltaTable

    Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)
    usage = Path(path).name.endswith(USAGE_SUFFIX)
    DeltaTable.create(
        str(path),
        schema_for(path),
        mode="ignore",
        partition_by=[PARTITION_COLUMN],
        name=Path(path).name,
        description=f"{'Usage' if usage else 'Inference'} table written by jupyter-serving",
        configuration=TABLE_PROPERTIES,
    )


def watermark(path: Path, app_id: str) -> int | None:
    """The highest spool segment this writer has committed to the table, or None."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(str(path)):
        return None
    return DeltaTable(str(path)).transaction_version(app_id)


def records_to_arrow(records: list[dict[str, Any]], path: Path | str = "") -> pa.Table:
    import pyarrow as pa

    def column(name: str) -> list[Any]:
        return [r.get(name) for r in records]

    schema = schema_for(path)
    arrays = {name: column(name) for name in schema.names}
    arrays["date"] = [_dt.date.fromisoformat(d) for d in column("date")]
    if "request_metadata" in arrays:
        arrays["request_metadata"] = [list((r.get("request_metadata") or {}).items()) for r in records]
    return pa.Table.from_pydict(arrays, schema=schema)


def append_records(path: Path, records: list[dict[str, Any]], *, app_id: str, version: int) -> None:
    """Append rows and advance the writer's watermark to `version`, in one atomic Delta commit.

    Because the rows and the app-transaction version land in the same commit, a reader of the
    watermark knows exactly which spool segments are in the table: there is no window where the
    rows are committed but the watermark is not, or the other way round.
    """
    from deltalake import CommitProperties, Transaction, write_deltalake

    if not is_table(path):
        create_payload_table(path)
    write_deltalake(
        str(path),
        records_to_arrow(records, path),
        mode="append",
        partition_by=[PARTITION_COLUMN],
        commit_properties=CommitProperties(
            app_transactions=[Transaction(app_id, version)],
            custom_metadata={"writer": "jupyter-serving capture", "rows": str(len(records))},
        ),
    )


def file_count(path: Path) -> int:
    """Data files in the current snapshot (what a reader has to open)."""
    from deltalake import DeltaTable

    return len(DeltaTable(str(path)).file_uris())


def compact(path: Path, *, vacuum: bool = True) -> dict[str, int]:
    """Merge small files (deltalake's optimize) and, with `vacuum`, delete superseded ones.

    Vacuum honours the table's retention (one hour), so files a reader may still be using are
    kept; they go at a later compaction.
    """
    from deltalake import DeltaTable

    table = DeltaTable(str(path))
    before = len(table.file_uris())
    metrics = table.optimize.compact()
    table = DeltaTable(str(path))
    deleted = table.vacuum(dry_run=False) if vacuum else []
    return {
        "files_before": before,
        "files_after": len(table.file_uris()),
        "files_added": int(metrics.get("numFilesAdded", 0)),
        "files_removed": int(metrics.get("numFilesRemoved", 0)),
        "files_vacuumed": len(deleted),
    }
