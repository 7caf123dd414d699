"""The AI Gateway inference-table form, token counts in usage rows, and time to first token: the row
encoders, the Delta schemas, and reading both payload forms back into the same frame."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from jupyter_serving.capture.row import (
    MAX_LOGGED_PAYLOAD_BYTES,
    TTFT_KEY,
    GatewayRowEncoder,
    PayloadRow,
    RowEncoder,
    request_metadata,
)
from jupyter_serving.capture.table import (
    append_records,
    create_payload_table,
    gateway_payload_schema,
    payload_schema,
    records_to_arrow,
    usage_schema,
)
from jupyter_serving.dataplane.usage import encode_usage_row, response_usage, token_counts
from jupyter_serving.model.endpoint_fields import inference_table_form
from jupyter_serving.tables.analysis import compare_entities
from jupyter_serving.tables.reader import inference_table

# 2026-12-07T10:00:00.123Z
STAMP_MS = int(dt.datetime(2026, 12, 7, 10, 0, 0, 123000, tzinfo=dt.UTC).timestamp() * 1000)
# The schema table of https://docs.databricks.com/aws/en/ai-gateway/inference-tables
DATABRICKS_GATEWAY_COLUMNS = [
    ("request_date", pa.date32()),
    ("databricks_request_id", pa.string()),
    ("client_request_id", pa.string()),
    ("request_time", pa.timestamp("us", tz="UTC")),
    ("status_code", pa.int32()),
    ("sampling_fraction", pa.float64()),
    ("execution_duration_ms", pa.int64()),
    ("request", pa.string()),
    ("response", pa.string()),
    ("served_entity_id", pa.string()),
    ("logging_error_codes", pa.list_(pa.string())),
    ("requester", pa.string()),
]


def gateway_record(table: Path, i: int, entity: str = "a", status: int = 200, **kw: Any) -> dict[str, Any]:
    encoder = GatewayRowEncoder(table, entity)
    args = {
        "request_id": f"r{i}",
        "client_request_id": f"c{i}",
        "timestamp_ms": STAMP_MS + i,
        "status_code": status,
        "execution_time_ms": 10 + i,
        "request": json.dumps({"input": [{"role": "user", "content": f"q{i}"}]}),
        "response": json.dumps({"output": [{"type": "message"}]}),
        "requester": "alice@example.com",
        **kw,
    }
    return json.loads(encoder.encode(*args.values()))


def test_gateway_schema_is_databricks_column_for_column() -> None:
    schema = gateway_payload_schema()
    assert [(f.name, f.type) for f in schema] == DATABRICKS_GATEWAY_COLUMNS


def test_gateway_row_has_exactly_the_schema_columns_and_converts_to_arrow(tmp_path: Path) -> None:
    record = gateway_record(tmp_path / "t_payload", 1)
    assert record.pop("table") == str(tmp_path / "t_payload")
    assert list(record) == gateway_payload_schema().names
    assert record["request_date"] == "2026-12-07" and record["request_time"] == STAMP_MS + 1
    assert record["served_entity_id"] == "a" and record["requester"] == "alice@example.com"
    assert record["logging_error_codes"] == [] and record["sampling_fraction"] == 1.0
    table = records_to_arrow([record], tmp_path / "t_payload")
    assert table.schema == gateway_payload_schema()
    row = table.to_pylist()[0]
    assert row["request_time"] == dt.datetime(2026, 12, 7, 10, 0, 0, 124000, tzinfo=dt.UTC)
    assert row["request_date"] == dt.date(2026, 12, 7) and row["execution_duration_ms"] == 11


def test_gateway_row_drops_an_oversized_payload_with_its_logging_error_code(tmp_path: Path) -> None:
    big = "é" * (MAX_LOGGED_PAYLOAD_BYTES // 2 + 1)  # under the limit in characters, over it in bytes
    record = gateway_record(tmp_path / "t_payload", 1, response=big)
    assert record["response"] is None and record["request"] is not None
    assert record["logging_error_codes"] == ["MAX_RESPONSE_SIZE_EXCEEDED"]
    record = gateway_record(tmp_path / "t_payload", 2, request="x" * (MAX_LOGGED_PAYLOAD_BYTES + 1))
    assert record["request"] is None and record["logging_error_codes"] == ["MAX_REQUEST_SIZE_EXCEEDED"]


def test_legacy_row_carries_time_to_first_token_for_streams_only(tmp_path: Path) -> None:
    meta = request_metadata("ep", "agent", 1, "agent-1")
    encoder = RowEncoder(tmp_path / "t_payload", meta)
    args = ("r1", None, STAMP_MS, 200, 12, "{}", "{}")
    plain = json.loads(encoder.encode(*args))
    plain.pop("table")
    assert plain == PayloadRow.from_record(plain).to_record()  # unchanged for plain requests
    assert plain["request_metadata"] == meta
    streamed = json.loads(encoder.encode(*args, 3.6))
    assert streamed["request_metadata"] == {**meta, TTFT_KEY: "4"}
    empty = json.loads(RowEncoder(tmp_path / "t_payload", {}).encode(*args, 7.0))
    assert empty["request_metadata"] == {TTFT_KEY: "7"}
    assert records_to_arrow([streamed], tmp_path / "t_payload").schema == payload_schema()


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}, (3, 5)),
        ({"input_tokens": 4, "output_tokens": 6, "total_tokens": 10}, (4, 6)),
        ({"total_tokens": 9}, (None, None)),
        ({"input_tokens": True, "output_tokens": -1}, (None, None)),
        ({"input_tokens": "3"}, (None, None)),
        (None, (None, None)),
        ([1, 2], (None, None)),
    ],
)
def test_token_counts_read_chat_and_responses_usage(usage: Any, expected: tuple[Any, Any]) -> None:
    assert token_counts(usage) == expected


def test_response_usage_is_the_top_level_usage_object_of_a_json_answer() -> None:
    assert response_usage(b'{"output": [], "usage": {"input_tokens": 2}}') == {"input_tokens": 2}
    assert response_usage(b'{"predictions": [1, 2]}') is None
    assert response_usage(b'{"predictions": ["usage"]}') is None
    assert response_usage(b'{"usage": 3}') is None
    assert response_usage(b'not json "usage"') is None
    assert response_usage(b'[{"usage": {}}]') is None


def test_usage_row_has_token_count_columns_null_when_unknown(tmp_path: Path) -> None:
    table = tmp_path / "ep_usage"
    args = (table, "r1", "c1", STAMP_MS, "alice", "ep", "a", 200, 12, 100, 200)
    counted = json.loads(encode_usage_row(*args, {"prompt_tokens": 3, "completion_tokens": 4}))
    unknown = json.loads(encode_usage_row(*args))
    assert (counted["input_token_count"], counted["output_token_count"]) == (3, 4)
    assert (unknown["input_token_count"], unknown["output_token_count"]) == (None, None)
    for record in (counted, unknown):
        record.pop("table")
        assert list(record) == usage_schema().names
    rows = records_to_arrow([counted, unknown], table)
    assert rows.schema == usage_schema()
    assert rows.column("input_token_count").to_pylist() == [3, None]


def test_a_usage_table_made_before_token_counts_gains_the_columns(tmp_path: Path) -> None:
    from deltalake import DeltaTable, write_deltalake

    table = tmp_path / "ep_usage"
    args = (table, "r1", "c1", STAMP_MS, "alice", "ep", "a", 200, 12, 100, 200)
    old = json.loads(encode_usage_row(*args))
    for key in ("table", "input_token_count", "output_token_count"):
        old.pop(key)
    old_schema = pa.schema([f for f in usage_schema() if not f.name.endswith("_token_count")])
    old["date"] = dt.date.fromisoformat(old["date"])
    write_deltalake(str(table), pa.Table.from_pylist([old], schema=old_schema), partition_by=["date"])
    new = json.loads(encode_usage_row(*args[:1], "r2", *args[2:], {"input_tokens": 1, "output_tokens": 2}))
    new.pop("table")
    append_records(table, [new], app_id="test", version=1)
    rows = sorted(
        DeltaTable(str(table)).to_pyarrow_table().to_pylist(), key=lambda r: r["databricks_request_id"]
    )
    assert [(r["input_token_count"], r["output_token_count"]) for r in rows] == [(None, None), (1, 2)]


def test_inference_table_reads_an_ai_gateway_table_into_the_legacy_columns(tmp_path: Path) -> None:
    path = tmp_path / "ep_payload"
    create_payload_table(path, "ai_gateway")
    assert inference_table(path).empty  # readable before the first row, with its own schema
    records = [gateway_record(path, i, "a" if i % 2 else "b", 500 if i == 3 else 200) for i in range(6)]
    for record in records:
        record.pop("table")
    append_records(path, records, app_id="test", version=1)
    frame = inference_table(path, unpack=False)
    assert list(frame["databricks_request_id"]) == [f"r{i}" for i in range(6)]
    assert list(frame["timestamp_ms"]) == [STAMP_MS + i for i in range(6)]
    assert list(frame["execution_time_ms"]) == [10 + i for i in range(6)]
    assert list(frame["served_entity_name"]) == ["b", "a", "b", "a", "b", "a"]
    assert set(frame["requester"]) == {"alice@example.com"}
    assert frame["timestamp"].iloc[0] == dt.datetime(2026, 12, 7, 10, 0, 0, 123000, tzinfo=dt.UTC)
    assert (frame["date"] == dt.date(2026, 12, 7)).all()
    window = inference_table(
        path,
        unpack=False,
        start=dt.datetime(2026, 12, 7, 10, 0, 0, 124000, tzinfo=dt.UTC),
        end=dt.datetime(2026, 12, 7, 10, 0, 0, 126000, tzinfo=dt.UTC),
    )
    assert list(window["databricks_request_id"]) == ["r1", "r2"]
    report = compare_entities(inference_table(path), control="b")
    assert report.summary.loc["a", "errors"] == 1 and report.summary.loc["b", "errors"] == 0
    assert report.summary.loc["a", "latency_p50_ms"] == 13.0
    assert "ttft_p50_ms" not in report.summary  # this schema has no place for it


def test_a_payload_table_refuses_rows_of_the_other_form(tmp_path: Path) -> None:
    path = tmp_path / "ep_payload"
    create_payload_table(path)  # legacy
    record = gateway_record(path, 1)
    record.pop("table")
    with pytest.raises(Exception, match=r"(?i)schema"):
        append_records(path, [record], app_id="test", version=1)


def test_compare_entities_reports_time_to_first_token_from_legacy_rows(tmp_path: Path) -> None:
    path = tmp_path / "ep_payload"
    records = []
    for i in range(8):
        entity = "fast" if i % 2 else "slow"
        encoder = RowEncoder(path, request_metadata("ep", "agent", 1, entity))
        first = (5.0 if entity == "fast" else 50.0) if i < 6 else None  # the last two are not streams
        records.append(json.loads(encoder.encode(f"r{i}", None, STAMP_MS + i, 200, 100, "{}", "{}", first)))
        records[-1].pop("table")
    append_records(path, records, app_id="test", version=1)
    frame = inference_table(path)
    assert frame[TTFT_KEY].tolist()[:6] == [50.0, 5.0] * 3 and frame[TTFT_KEY].isna().sum() == 2
    report = compare_entities(frame, control="slow")
    assert report.summary.loc["fast", "ttft_p50_ms"] == 5.0
    assert report.summary.loc["slow", "ttft_p95_ms"] == 50.0
    assert "Time to first token p50/p95 fast: 5 ms / 5 ms, slow: 50 ms / 50 ms." in report.verdict
    assert "ttft_p50_ms" in repr(report)


def test_inference_table_form_follows_where_the_user_set_the_table() -> None:
    assert inference_table_form(None) == "legacy"
    assert inference_table_form({"usage_tracking_config": {"enabled": True}}) == "legacy"
    assert inference_table_form({"inference_table_config": {"enabled": True}}) == "ai_gateway"
