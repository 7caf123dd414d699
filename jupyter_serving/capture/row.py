"""One logged invocation (`PayloadRow`) and where its table lives.

Two forms, as on Databricks: an endpoint's ``auto_capture_config`` writes the legacy payload table
(`PayloadRow`, `RowEncoder`); its ``ai_gateway.inference_table_config`` writes the AI
Gateway-enabled inference table (`GatewayRowEncoder`), whose columns are those of
https://docs.databricks.com/aws/en/ai-gateway/inference-tables ("AI Gateway-enabled inference
table schema"). Either way notebooks written against Databricks tables read ours unchanged.
Standard library only: the server imports this on start-up.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

METADATA_KEYS = ("endpoint_name", "model_name", "model_version", "served_entity_name")
# Our key in a legacy row's request_metadata for a streamed request: the model's time to its first
# chunk (ms, as a string like every value of the map). Databricks' schema has no column for it, and
# a map key leaves the schema as Databricks documents it; plain requests do not carry it.
TTFT_KEY = "time_to_first_token_ms"
# Our key in the request_metadata of a mirrored request's row (dataplane/shadow.py); value "true".
SHADOW_KEY = "shadow"
LEGACY, AI_GATEWAY = "legacy", "ai_gateway"  # the two forms of a payload table
# AI Gateway tables do not log a payload above this size: it is null, with a logging error code.
MAX_LOGGED_PAYLOAD_BYTES = 1024 * 1024


@dataclass(slots=True)
class PayloadRow:
    """A request and its response (or error body), as one row of the payload table.

    A batch of inputs sent in one request is one row, as on Databricks. `date` is derived from
    `timestamp_ms` (UTC) when omitted, so callers cannot get the partition wrong.
    """

    databricks_request_id: str
    timestamp_ms: int
    status_code: int
    execution_time_ms: int
    request: str
    response: str
    request_metadata: dict[str, str] = field(default_factory=dict)
    client_request_id: str | None = None
    sampling_fraction: float = 1.0
    date: _dt.date | None = None

    def __post_init__(self) -> None:
        if self.date is None:
            self.date = utc_date(self.timestamp_ms)

    def to_record(self) -> dict[str, Any]:
        """JSON-ready form used by the spool."""
        return {
            "databricks_request_id": self.databricks_request_id,
            "client_request_id": self.client_request_id,
            "date": self.date.isoformat() if self.date else None,
            "timestamp_ms": self.timestamp_ms,
            "status_code": self.status_code,
            "execution_time_ms": self.execution_time_ms,
            "sampling_fraction": self.sampling_fraction,
            "request": self.request,
            "response": self.response,
            "request_metadata": self.request_metadata,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PayloadRow:
        date = record.get("date")
        return cls(
            databricks_request_id=record["databricks_request_id"],
            client_request_id=record.get("client_request_id"),
            timestamp_ms=int(record["timestamp_ms"]),
            status_code=int(record["status_code"]),
            execution_time_ms=int(record["execution_time_ms"]),
            sampling_fraction=float(record.get("sampling_fraction", 1.0)),
            request=record["request"],
            response=record["response"],
            request_metadata=dict(record.get("request_metadata") or {}),
            date=_dt.date.fromisoformat(date) if date else None,
        )


class RowEncoder:
    """The JSON of the rows of one served entity in one table, built without a dict.

    The request path encodes a row per request, so the parts that never change for an entity
    (table, `request_metadata`, sampling fraction) are encoded once here, and the rest goes
    straight into a format string: a third of what building a `PayloadRow`, its record dict and
    ``json.dumps`` cost. It decodes to exactly the record `PayloadRow.to_record` gives, plus "table".
    """

    __slots__ = ("_date", "_day", "_meta", "_table", "_tail")

    def __init__(self, table_path: Path, metadata: dict[str, str]) -> None:
        self._meta = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
        self._table = encode_basestring(str(table_path))
        self._tail = f',"sampling_fraction":1.0,"request_metadata":{self._meta},"table":{self._table}}}'
        self._day, self._date = -1, ""

    def encode(
        self,
        request_id: str,
        client_request_id: str | None,
        timestamp_ms: int,
        status_code: int,
        execution_time_ms: int,
        request: str,
        response: str,
        first_chunk_ms: float | None = None,
    ) -> bytes:
        """`first_chunk_ms` (streams only) goes into request_metadata under `TTFT_KEY`."""
        day = timestamp_ms // 86_400_000
        if day != self._day:
            self._day, self._date = day, utc_date(timestamp_ms).isoformat()
        client = "null" if client_request_id is None else encode_basestring(client_request_id)
        tail = self._tail
        if first_chunk_ms is not None:
            entry = f'"{TTFT_KEY}":"{round(first_chunk_ms):d}"}}'
            meta = f"{self._meta[:-1]},{entry}" if len(self._meta) > 2 else f"{{{entry}"
            tail = f',"sampling_fraction":1.0,"request_metadata":{meta},"table":{self._table}}}'
        payload = (
            f'{{"databricks_request_id":{encode_basestring(request_id)},"client_request_id":{client},'
            f'"date":"{self._date}","timestamp_ms":{timestamp_ms:d},"status_code":{status_code:d},'
            f'"execution_time_ms":{execution_time_ms:d},"request":{encode_basestring(request)},'
            f'"response":{encode_basestring(response)}{tail}'
        )
        return payload.encode()


class GatewayRowEncoder:
    """The spool JSON of one served entity's rows in an AI Gateway-enabled inference table.

    The columns are Databricks' (https://docs.databricks.com/aws/en/ai-gateway/inference-tables):
    request_date, databricks_request_id, client_request_id, request_time, status_code,
    sampling_fraction, execution_duration_ms, request, response, served_entity_id,
    logging_error_codes, requester. `request_time` travels as epoch milliseconds and becomes a
    TIMESTAMP in `capture.table`. `served_entity_id` is the served entity's name: Databricks' id
    joins `system.serving.served_entities`, which this server does not have, and the name is unique
    within the endpoint. The table has no request_metadata map, so there is no time to first token.
    """

    __slots__ = ("_date", "_day", "_served", "_tail")

    def __init__(self, table_path: Path, served_entity: str) -> None:
        self._served = f',"served_entity_id":{encode_basestring(served_entity)}'
        self._tail = f',"table":{encode_basestring(str(table_path))}}}'
        self._day, self._date = -1, ""

    def encode(
        self,
        request_id: str,
        client_request_id: str | None,
        timestamp_ms: int,
        status_code: int,
        execution_time_ms: int,
        request: str,
        response: str,
        requester: str | None,
    ) -> bytes:
        day = timestamp_ms // 86_400_000
        if day != self._day:
            self._day, self._date = day, utc_date(timestamp_ms).isoformat()
        client = "null" if client_request_id is None else encode_basestring(client_request_id)
        who = "null" if requester is None else encode_basestring(requester)
        errors = []
        logged_request, logged_response = "null", "null"
        if _too_large(request):
            errors.append('"MAX_REQUEST_SIZE_EXCEEDED"')
        else:
            logged_request = encode_basestring(request)
        if _too_large(response):
            errors.append('"MAX_RESPONSE_SIZE_EXCEEDED"')
        else:
            logged_response = encode_basestring(response)
        payload = (
            f'{{"request_date":"{self._date}","databricks_request_id":{encode_basestring(request_id)},'
            f'"client_request_id":{client},"request_time":{timestamp_ms:d},"status_code":{status_code:d},'
            f'"sampling_fraction":1.0,"execution_duration_ms":{execution_time_ms:d},'
            f'"request":{logged_request},"response":{logged_response}{self._served},'
            f'"logging_error_codes":[{",".join(errors)}],"requester":{who}{self._tail}'
        )
        return payload.encode()


def _too_large(text: str) -> bool:
    """Over the AI Gateway logging limit; only a long text pays for its UTF-8 length."""
    return len(text) * 4 > MAX_LOGGED_PAYLOAD_BYTES and len(text.encode()) > MAX_LOGGED_PAYLOAD_BYTES


def utc_date(timestamp_ms: int) -> _dt.date:
    return _dt.datetime.fromtimestamp(timestamp_ms / 1000, tz=_dt.UTC).date()


def request_metadata(
    endpoint_name: str, model_name: str, model_version: str | int, served_entity_name: str
) -> dict[str, str]:
    """The `request_metadata` map, with Databricks' keys plus our `served_entity_name`."""
    return {
        "endpoint_name": endpoint_name,
        "model_name": model_name,
        "model_version": str(model_version),
        "served_entity_name": served_entity_name,
    }


def payload_table_path(
    catalog_root: Path, catalog_name: str, schema_name: str, table_name_prefix: str
) -> Path:
    """`<catalog root>/<catalog>/<schema>/<prefix>_payload`, the table's location on disk."""
    return Path(catalog_root) / catalog_name / schema_name / f"{table_name_prefix}_payload"
