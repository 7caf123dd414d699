"""AI Gateway-enabled inference tables for a real agent: an endpoint whose table is set in
`ai_gateway.inference_table_config` writes Databricks' AI Gateway schema (streamed and plain rows),
its usage table gets the token counts the agent reports, and inference_table, compare_entities and
the page's route read it. A legacy table beside it records time to first token for streams.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_support import MODEL_CODE, MlflowEnv, ServingServer, entity, eventually

from jupyter_serving.capture.row import TTFT_KEY
from jupyter_serving.capture.table import gateway_payload_schema, payload_schema
from jupyter_serving.tables import compare_entities, inference_table

CAPTURE = {"catalog_name": "main", "schema_name": "agents", "enabled": True}
TABLE_ROUTE = "api/2.0/jupyter-serving/endpoints/{name}/inference-table"


def question(text: str, **custom: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"input": [{"role": "user", "content": text}]}
    if custom:
        body["custom_inputs"] = custom
    return body


@pytest.fixture(scope="module")
def server(mlflow_env: MlflowEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingServer]:
    import mlflow

    known = {m.name for m in mlflow.MlflowClient().search_registered_models()}
    if "usage-agent" not in known:
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE / "usage_agent.py"),
                registered_model_name="usage-agent",
                pip_requirements=["mlflow"],
            )
    state = tmp_path_factory.mktemp("gateway-table") / "state"
    server = ServingServer(state, mlflow_env.env, ["--capture-flush-s", "0.2"]).start()
    try:
        yield server
    finally:
        server.stop()


def sse_events(lines: Iterator[bytes]) -> Iterator[tuple[str | None, str]]:
    """(event, data) per Server-Sent Event."""
    event: str | None = None
    for line in (raw.decode() for raw in lines):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, line[6:]
            event = None


def send(server: ServingServer, name: str, body: dict[str, Any], *, stream: bool) -> str:
    """One request (streamed to its end, or plain); returns its request id."""
    url = server.url + f"serving-endpoints/{name}/invocations"
    payload = {**body, "stream": True} if stream else body
    with server.session.post(url, json=payload, stream=stream, timeout=120) as response:
        if stream:
            events = list(sse_events(response.iter_lines()))
            assert events[-1] == (None, "[DONE]") or events[-1][0] == "error", events
        return response.headers["x-request-id"]


def rows(path: str, count: int) -> list[dict[str, Any]]:
    from deltalake import DeltaTable

    def read() -> list[dict[str, Any]] | None:
        if not Path(path, "_delta_log").exists():
            return None
        got = DeltaTable(path).to_pyarrow_table().to_pylist()
        return got if len(got) >= count else None

    return eventually(read, 60, 0.1, f"{count} rows in {path}", until=lambda r: r is not None)


def test_ai_gateway_table_has_databricks_schema_and_usage_has_token_counts(server: ServingServer) -> None:
    from deltalake import DeltaTable

    name = "agw"
    config = {
        "served_entities": [entity("usage-agent", 1, name="a"), entity("usage-agent", 1, name="b")],
        "traffic_config": {
            "routes": [
                {"served_model_name": "a", "traffic_percentage": 50},
                {"served_model_name": "b", "traffic_percentage": 50},
            ]
        },
    }
    gateway = {"inference_table_config": CAPTURE, "usage_tracking_config": {"enabled": True}}
    response = server.create(name, config, ai_gateway=gateway)
    assert response.status_code == 200, response.text
    got = server.wait_settled(name)
    assert got["state"]["ready"] == "READY", got
    assert got["ai_gateway"]["inference_table_config"]["catalog_name"] == "main"
    path = got["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    assert Path(path).name == f"{name}_payload"
    schema = DeltaTable(path).schema().to_arrow()  # created at deploy, before any request
    assert [f.name for f in schema] == gateway_payload_schema().names

    sent: dict[str, tuple[bool, int]] = {}  # request id -> (streamed, words in the question)
    for i in range(12):
        words = " ".join(f"w{j}" for j in range(1 + i % 3))
        streamed = i % 2 == 0
        sent[send(server, name, {**question(words), "client_request_id": f"c{i}"}, stream=streamed)] = (
            streamed,
            1 + i % 3,
        )
    failed = send(server, name, question("boom", fail=True), stream=False)
    logged = {r["databricks_request_id"]: r for r in rows(path, len(sent) + 1)}
    assert set(logged) == {*sent, failed}
    for request_id, (streamed, words) in sent.items():
        row = logged[request_id]
        assert row["status_code"] == 200 and row["served_entity_id"] in ("a", "b")
        assert row["requester"] == "token" and row["logging_error_codes"] == []
        assert row["request_time"].tzinfo is not None and row["request_date"] == row["request_time"].date()
        answer = json.loads(row["response"])  # a stream's row holds the assembled response
        assert answer["output"][0]["content"][0]["text"] == " ".join(
            ["echo:", *(f"w{j}" for j in range(words))]
        )
        assert json.loads(row["request"]).get("stream", False) is streamed
    assert logged[failed]["status_code"] >= 400 and "usage agent asked to fail" in logged[failed]["response"]

    usage_path = str(Path(path).with_name(f"{name}_usage"))
    usage = {r["databricks_request_id"]: r for r in rows(usage_path, len(sent) + 1)}
    for request_id, (streamed, words) in sent.items():
        row = usage[request_id]
        assert (row["input_token_count"], row["output_token_count"]) == (words, words + 1), (streamed, row)
    assert usage[failed]["input_token_count"] is None and usage[failed]["output_token_count"] is None

    frame = inference_table(path)
    assert set(frame["databricks_request_id"]) == {*sent, failed}
    assert set(frame["served_entity_name"]) == {"a", "b"} and set(frame["requester"]) == {"token"}
    report = compare_entities(frame, control="a")
    summary = report.summary
    assert summary["requests"].sum() == len(sent) + 1 and summary["errors"].sum() == 1
    assert (summary["latency_p50_ms"] >= 0).all() and "ttft_p50_ms" not in summary

    def page() -> dict[str, Any]:
        response = server.api("GET", TABLE_ROUTE.format(name=name), params={"limit": 5})
        assert response.status_code == 200, response.text
        return response.json()

    table = eventually(page, 30, 0.3, "the page's table", until=lambda t: t["requests"] == len(sent) + 1)
    assert len(table["rows"]) == 5 and {r["served_entity_name"] for r in table["rows"]} <= {"a", "b"}
    assert {e["served_entity_name"] for e in table["comparison"]["entities"]} == {"a", "b"}
    assert server.delete(name).json() == {}


def test_legacy_table_records_time_to_first_token_and_keeps_its_schema(server: ServingServer) -> None:
    from deltalake import DeltaTable

    name = "alegacy"
    server.create_ready(name, {"served_entities": [entity("usage-agent", 1)], "auto_capture_config": CAPTURE})
    path = server.get(name)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    streamed = [send(server, name, question("one two"), stream=True) for _ in range(3)]
    plain = send(server, name, question("one two"), stream=False)
    logged = {r["databricks_request_id"]: r for r in rows(path, 4)}
    assert [f.name for f in DeltaTable(path).schema().to_arrow()] == payload_schema().names
    for request_id in streamed:
        metadata = dict(logged[request_id]["request_metadata"])
        assert float(metadata[TTFT_KEY]) >= 0 and metadata["served_entity_name"] == "usage-agent-1"
    assert TTFT_KEY not in dict(logged[plain]["request_metadata"])
    report = compare_entities(inference_table(path))
    assert report.summary.loc["usage-agent-1", "ttft_p50_ms"] >= 0

    # The legacy table cannot turn into an AI Gateway one in place: the schemas differ.
    moved = server.api(
        "PUT", f"api/2.0/serving-endpoints/{name}/ai-gateway", json={"inference_table_config": CAPTURE}
    )
    assert moved.status_code == 400 and moved.json()["error_code"] == "INVALID_PARAMETER_VALUE", moved.text
    assert "legacy inference table" in moved.json()["message"]

    # Under another prefix it is allowed: the endpoint's table becomes an AI Gateway one, by PUT.
    table = {**CAPTURE, "table_name_prefix": "alegacy_gw"}
    moved = server.api(
        "PUT", f"api/2.0/serving-endpoints/{name}/ai-gateway", json={"inference_table_config": table}
    )
    assert moved.status_code == 200, moved.text
    got = server.wait_settled(name)
    gateway_path = got["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    assert Path(gateway_path).name == "alegacy_gw_payload"
    assert [f.name for f in DeltaTable(gateway_path).schema().to_arrow()] == gateway_payload_schema().names
    streamed = send(server, name, question("three four five"), stream=True)
    assert rows(gateway_path, 1)[0]["databricks_request_id"] == streamed
    # A later PUT that leaves inference_table_config out keeps the table (and its form).
    kept = server.api(
        "PUT",
        f"api/2.0/serving-endpoints/{name}/ai-gateway",
        json={"usage_tracking_config": {"enabled": True}},
    )
    assert (
        kept.status_code == 200 and kept.json()["inference_table_config"]["table_name_prefix"] == "alegacy_gw"
    )
    assert server.get(name)["ai_gateway"]["inference_table_config"]["table_name_prefix"] == "alegacy_gw"
    assert server.delete(name).json() == {}
