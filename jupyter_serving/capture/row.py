"""One logged invocation (`PayloadRow`) and where its table lives.

The columns are those of Databricks' legacy (``auto_capture_config``) payload table, so notebooks
written against Databricks inference tables read ours unchanged. Standard library only: the server
imports this on start-up.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

METADATA_KEYS = ("endpoint_name", "model_name", "model_version", "served_entity_name")


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

    __slots__ = ("_date", "_day", "_tail")

    def __init__(self, table_path: Path, metadata: dict[str, str]) -> None:
        meta = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
        table = encode_basestring(str(table_path))
        self._tail = f',"sampling_fraction":1.0,"request_metadata":{meta},"table":{table}}}'
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
    ) -> bytes:
        day = timestamp_ms // 86_400_000
        if day != self._day:
            self._day, self._date = day, utc_date(timestamp_ms).isoformat()
        client = "null" if client_request_id is None else encode_basestring(client_request_id)
        payload = (
            f'{{"databricks_request_id":{encode_basestring(request_id)},"client_request_id":{client},'
            f'"date":"{self._date}","timestamp_ms":{timestamp_ms:d},"status_code":{status_code:d},'
            f'"execution_time_ms":{execution_time_ms:d},"request":{encode_basestring(request)},'
            f'"response":{encode_basestring(response)}{self._tail}'
        )
        return payload.encode()


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
