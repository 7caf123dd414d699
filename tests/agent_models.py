"""GenAI fixture models, registered into the session's MLflow registry by the tests that need them:
a ResponsesAgent, a ChatModel and a plain PythonModel with predict_stream (tests/model_code/)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from serving_support import MODEL_CODE, ServingServer, entity, eventually

AGENTS = {
    "agent-echo": "responses_agent.py",
    "chat-reverse": "chat_model.py",
    "chat-agent": "chat_agent.py",
}


def register_agents() -> None:
    """Log and register each fixture once per registry (idempotent: a registered name is skipped)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    client = mlflow.MlflowClient()
    known = {m.name for m in client.search_registered_models()}
    for name, code in AGENTS.items():
        if name in known:
            continue
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE / code),
                registered_model_name=name,
                pip_requirements=["mlflow"],
            )
    if "spell-stream" not in known:
        example = pd.DataFrame({"text": ["abc"]})
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE / "tabular_stream.py"),
                signature=infer_signature(example, ["ABC"]),
                registered_model_name="spell-stream",
                pip_requirements=["mlflow", "pandas"],
            )


QUESTION = {"input": [{"role": "user", "content": "hello big wide world"}]}
CAPTURE = {"catalog_name": "main", "schema_name": "default", "enabled": True}


def sse_events(lines: Iterator[bytes]) -> Iterator[tuple[str | None, str]]:
    """(event, data) per Server-Sent Event, as a client parses them."""
    event: str | None = None
    for raw in lines:
        line = raw.decode()
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            yield event, line[6:]
            event = None


def stream(server: ServingServer, name: str, payload: dict[str, Any]) -> list[tuple[str | None, str]]:
    """A streamed request read to its end, as SSE events."""
    with server.session.post(
        server.url + f"serving-endpoints/{name}/invocations", json={**payload, "stream": True}, stream=True
    ) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "text/event-stream"
        return list(sse_events(response.iter_lines()))


def table_row(server: ServingServer, endpoint: str, request_id: str) -> Any:
    """The inference-table row of one request, once the table has it."""
    from deltalake import DeltaTable

    path = server.get(endpoint)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]

    def row() -> Any:
        if not Path(path, "_delta_log").exists():
            return None
        frame = DeltaTable(path).to_pandas()
        match = frame[frame["databricks_request_id"] == request_id]
        return match.iloc[0] if len(match) else None

    return eventually(row, 60, 0.1, f"the row of {request_id}", until=lambda r: r is not None)


def leave_mid_stream(
    server: ServingServer, name: str, payload: dict[str, Any], base_url: str = "", token: str = ""
) -> str:
    """Send a streaming request on a raw socket, read until the first chunk, and hang up; returns
    the request id. `base_url`/`token`: another place that answers the route (a Ray proxy)."""
    host, port = (base_url or server.url).split("//")[1].rstrip("/").split(":")
    body = json.dumps({**payload, "stream": True}).encode()
    head = (
        f"POST /serving-endpoints/{name}/invocations HTTP/1.1\r\n"
        f"Host: {host}\r\nAuthorization: Bearer {token or server.token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=60) as client:
        client.sendall(head.encode() + body)
        received = b""
        while b"data: " not in received:  # the first chunk arrived: the generator is running
            received += client.recv(4096)
    return received.lower().split(b"x-request-id: ", 1)[1].split(b"\r\n", 1)[0].decode()


def streaming_scenario(server: ServingServer, tmp_path: Path, name: str = "agent-neutral") -> None:
    """Backend-neutral: chunks equal MLflow's in-process predict_stream, the row holds the assembled
    answer, and a client that leaves stops the model's generator (GeneratorExit) and is recorded."""
    import mlflow.pyfunc

    register_agents()
    server.create_ready(name, {"served_entities": [entity("agent-echo", 1)], "auto_capture_config": CAPTURE})
    model = mlflow.pyfunc.load_model("models:/agent-echo/1")
    with server.session.post(
        server.url + f"serving-endpoints/{name}/invocations", json={**QUESTION, "stream": True}, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        events = list(sse_events(response.iter_lines()))
    assert events[-1] == (None, "[DONE]")
    assert [json.loads(data) for _, data in events[:-1]] == list(model.predict_stream(QUESTION))
    logged = json.loads(table_row(server, name, request_id)["response"])
    assert logged["output"][0]["content"][0]["text"] == "echo: hello big wide world"

    marker = tmp_path / f"{name}-closed"
    words = " ".join(f"w{i}" for i in range(50))
    leaving = {
        "input": [{"role": "user", "content": words}],
        "custom_inputs": {"pause": 0.2, "closed_marker": str(marker)},
    }
    left = leave_mid_stream(server, name, leaving)
    eventually(marker.exists, 15, 0.05, "GeneratorExit reaching the agent")
    assert int(marker.read_text()) < 45  # stopped early, not run to its end
    assert table_row(server, name, left)["status_code"] == 499
    assert stream(server, name, QUESTION)[-1] == (None, "[DONE]")  # the slot is free again
    assert server.delete(name).json() == {}
