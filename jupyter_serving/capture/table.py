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
GATEWAY_PARTITION_COLUMN = "request_date"
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
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


def gateway_payload_schema() -> pa.Schema:
    """Databricks' AI Gateway-enabled inference table, with its Databricks types: the schema table
    of https://docs.databricks.com/aws/en/ai-gateway/inference-tables (TIMESTAMP is UTC)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("request_date", pa.date32()),
            pa.field("databricks_request_id", pa.string(), nullable=False),
            pa.field("client_request_id", pa.string()),
            pa.field("request_time", pa.timestamp("us", tz="UTC")),
            pa.field("status_code", pa.int32()),
            pa.field("sampling_fraction", pa.float64()),
            pa.field("execution_duration_ms", pa.int64()),
            pa.field("request", pa.string()),
            pa.field("response", pa.string()),
            pa.field("served_entity_id", pa.string()),
            pa.field("logging_error_codes", pa.list_(pa.string())),
            pa.field("requester", pa.string()),
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
            # The names of Databricks' system.serving.endpoint_usage; null when the model did not
            # report `usage` (Databricks estimates them then; we do not guess).
            pa.field("input_token_count", pa.int64()),
            pa.field("output_token_count", pa.int64()),
        ]
    )


def schema_for(path: Path | str, form: str = "legacy") -> pa.Schema:
    """`*_usage` tables hold usage rows; a payload table (both forms are named `<prefix>_payload`,
    as on Databricks) holds legacy rows or, with `form="ai_gateway"`, AI Gateway rows."""
    if Path(path).name.endswith(USAGE_SUFFIX):
        return usage_schema()
    return gateway_payload_schema() if form == "ai_gateway" else payload_schema()


def form_of(records: list[dict[str, Any]]) -> str:
    """Rows say which form they are: only AI Gateway rows have `request_date`."""
    return "ai_gateway" if records and "request_date" in records[0] else "legacy"


def partition_column(schema: pa.Schema) -> str:
    return GATEWAY_PARTITION_COLUMN if GATEWAY_PARTITION_COLUMN in schema.names else PARTITION_COLUMN


def is_table(path: Path) -> bool:
    from deltalake import DeltaTable

    return DeltaTable.is_deltatable(str(path))


def create_payload_table(path: Path, form: str = "legacy") -> None:
    """Create the empty table if it does not exist, so readers work before the first request.

    An existing table keeps its schema: rows of the other form then fail to commit, and the
    table's status says so (Databricks degrades a table whose schema changed the same way)."""
    from deltalake import DeltaTable

    Path(path).mkdir(mode=0o700, parents=True, exist_ok=True)
    usage = Path(path).name.endswith(USAGE_SUFFIX)
    schema = schema_for(path, form)
    DeltaTable.create(
        str(path),
        schema,
        mode="ignore",
        partition_by=[partition_column(schema)],
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


def records_to_arrow(
    records: list[dict[str, Any]], path: Path | str = "", form: str | None = None
) -> pa.Table:
    import pyarrow as pa

    def column(name: str) -> list[Any]:
        return [r.get(name) for r in records]

    schema = schema_for(path, form or form_of(records))
    arrays = {name: column(name) for name in schema.names}
    date = partition_column(schema)
    arrays[date] = [_dt.date.fromisoformat(d) for d in column(date)]
    if "request_time" in arrays:  # epoch ms in the spool
        arrays["request_time"] = [
            None if ms is None else EPOCH + _dt.timedelta(milliseconds=ms) for ms in arrays["request_time"]
        ]
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

    form = form_of(records)
    if not is_table(path):
        create_payload_table(path, form)
    rows = records_to_arrow(records, path, form)
    write_deltalake(
        str(path),
        rows,
        mode="append",
        partition_by=[partition_column(rows.schema)],
        # A usage table made before the token-count columns gains them; payload tables never
        # merge (a legacy table must refuse AI Gateway rows, not become a union of both).
        schema_mode="merge" if Path(path).name.endswith(USAGE_SUFFIX) else None,
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
