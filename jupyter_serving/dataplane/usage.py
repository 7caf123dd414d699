"""AI Gateway usage tracking: one row per request in a usage Delta table beside the payload tables.

Rows take the inference tables' durable path (the capture service's spool, group-committed, then
committed to Delta in batches), but the answer does not wait for the sync (`gateway.USAGE_BACKLOG`
says why); `capture.table` gives tables named `*_usage` the usage schema. Standard library only:
this runs on the request path.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from jupyter_serving.capture import payload_table_path

SYSTEM_TABLE = ("system", "serving", "endpoint_usage")


def usage_table_path(catalog_root: Path, endpoint: str, capture: dict[str, Any] | None) -> Path:
    """`<catalog>/<schema>/<prefix>_usage` beside the endpoint's payload table when it has one,
    else the workspace-wide `system/serving/endpoint_usage` (Databricks' system table)."""
    if capture and capture.get("catalog_name") and capture.get("schema_name"):
        payload = payload_table_path(
            catalog_root,
            capture["catalog_name"],
            capture["schema_name"],
            capture.get("table_name_prefix") or endpoint,
        )
        return payload.with_name(payload.name.removesuffix("_payload") + "_usage")
    return Path(catalog_root).joinpath(*SYSTEM_TABLE)


def token_counts(usage: Any) -> tuple[int | None, int | None]:
    """(input, output) tokens from a model's `usage` object: chat completions' prompt_tokens /
    completion_tokens or the Responses API's input_tokens / output_tokens; None where not given."""
    if not isinstance(usage, dict):
        return None, None

    def count(*keys: str) -> int | None:
        for key in keys:
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None

    return count("input_tokens", "prompt_tokens"), count("output_tokens", "completion_tokens")


def response_usage(body: bytes) -> dict[str, Any] | None:
    """The top-level `usage` object of a JSON answer, or None; only a body that mentions "usage"
    is parsed, so tabular answers cost a substring search."""
    if b'"usage"' not in body:
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    usage = value.get("usage") if isinstance(value, dict) else None
    return usage if isinstance(usage, dict) else None


@functools.lru_cache(maxsize=4)
def _utc_date(day: int) -> str:
    return (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()


def encode_usage_row(
    table: Path,
    request_id: str,
    client_request_id: str | None,
    timestamp_ms: int,
    requester: str,
    endpoint: str,
    served_entity: str | None,
    status_code: int,
    execution_time_ms: int,
    request_bytes: int,
    response_bytes: int,
    usage: dict[str, Any] | None = None,
) -> bytes:
    """The spool line of one usage row (what `capture.table.usage_schema` columns hold); `usage`
    is the model's token report, whose counts fill input_token_count / output_token_count."""
    date = _utc_date(timestamp_ms // 86_400_000)
    tokens_in, tokens_out = token_counts(usage)
    client = "null" if client_request_id is None else encode_basestring(client_request_id)
    served = "null" if served_entity is None else encode_basestring(served_entity)
    return (
        f'{{"databricks_request_id":{encode_basestring(request_id)},"client_request_id":{client},'
        f'"date":"{date}","timestamp_ms":{timestamp_ms:d},"requester":{encode_basestring(requester)},'
        f'"endpoint_name":{encode_basestring(endpoint)},"served_entity_name":{served},'
        f'"status_code":{status_code:d},"execution_time_ms":{execution_time_ms:d},'
        f'"request_bytes":{request_bytes:d},"response_bytes":{response_bytes:d},'
        f'"input_token_count":{_int(tokens_in)},"output_token_count":{_int(tokens_out)},'
        f'"table":{encode_basestring(str(table))}}}'
    ).encode()


def _int(value: int | None) -> str:
    return "null" if value is None else str(value)
