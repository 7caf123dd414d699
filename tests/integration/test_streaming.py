"""Agents and chat models served for real: streaming over SSE, OpenAI-compatible routes, every client.

The agents are plain Python (tests/model_code/responses_agent.py, chat_model.py, tabular_stream.py),
logged into the session's MLflow registry; the oracle is MLflow's own `predict` / `predict_stream`
on the same model loaded in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
from agent_models import (
    CAPTURE,
    QUESTION,
    leave_mid_stream,
    register_agents,
    sse_events,
    stream,
    streaming_scenario,
    table_row,
)
from serving_support import (
    IRIS_COLUMNS,
    IRIS_ROWS,
    MlflowEnv,
    ServingServer,
    entity,
    eventually,
    jupyter_url,
)

from jupyter_serving.promotion.models import environ


@pytest.fixture(scope="module")
def agents(mlflow_env: MlflowEnv) -> MlflowEnv:
    register_agents()
    return mlflow_env


def create_agents(server: ServingServer) -> None:
    """The endpoints every host gets: an agent (captured, route-optimized), a chat model, iris."""
    configs = {
        "agent": {"served_entities": [entity("agent-echo", 1)], "auto_capture_config": CAPTURE},
        "chat": {"served_entities": [entity("chat-reverse", 1)]},
        "spell": {"served_entities": [entity("spell-stream", 1)]},
        "shout": {"served_entities": [entity("chat-agent", 1)]},
        "tabular": {"served_entities": [entity("iris-lr", 1)]},
    }
    for name, config in configs.items():
        extra = {"route_optimized": True} if name == "agent" else {}
        assert server.create(name, config, **extra).status_code == 200
    for name in configs:
        assert server.wait_settled(name)["state"]["ready"] == "READY"


@pytest.fixture(scope="module")
def server(agents: MlflowEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingServer]:
    state = tmp_path_factory.mktemp("genai") / "state"
    server = ServingServer(state, agents.env, ["--capture-flush-s", "0.2"]).start()
    try:
        create_agents(server)
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------------------- answers and chunks
def test_agent_answers_and_streams_what_mlflow_gives_in_process(server: ServingServer) -> None:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/agent-echo/1")
    assert server.invoke("agent", QUESTION).json() == model.predict(QUESTION)
    events = stream(server, "agent", QUESTION)
    assert events[-1] == (None, "[DONE]")
    assert [json.loads(data) for _, data in events[:-1]] == list(model.predict_stream(QUESTION))


def test_chat_model_and_plain_predict_stream_match_mlflow(server: ServingServer) -> None:
    import mlflow.pyfunc

    chat = mlflow.pyfunc.load_model("models:/chat-reverse/1")
    messages = {"messages": [{"role": "user", "content": "one two three"}]}
    served = [json.loads(d) for _, d in stream(server, "chat", messages)[:-1]]
    local = list(chat.predict_stream(messages))
    drop = ("id", "created")  # fresh per call, in process as on the wire
    assert [{k: v for k, v in c.items() if k not in drop} for c in served] == [
        {k: v for k, v in c.items() if k not in drop} for c in local
    ]
    assert "".join(c["choices"][0]["delta"]["content"] for c in served) == "three two one"
    spell = mlflow.pyfunc.load_model("models:/spell-stream/1")
    local_spell = list(spell.predict_stream(pd.DataFrame({"text": ["abc"]})))
    served_spell = stream(server, "spell", {"dataframe_records": [{"text": "abc"}]})
    assert [json.loads(d) for _, d in served_spell[:-1]] == local_spell == ["A", "B", "C"]
    assert served_spell[-1] == (None, "[DONE]")


def test_chunks_arrive_as_the_model_yields_them(server: ServingServer, tmp_path: Path) -> None:
    """The agent stops after its first chunk until the test opens a gate: that chunk must reach
    the client while the model is still working on the rest."""
    gate = tmp_path / "gate"
    payload = {**QUESTION, "custom_inputs": {"gate": str(gate)}, "stream": True}
    with server.session.post(
        server.url + "serving-endpoints/agent/invocations", json=payload, stream=True
    ) as response:
        events = sse_events(response.iter_lines(chunk_size=1))
        first = next(events)
        assert json.loads(first[1])["delta"] == "echo:" and not gate.exists()
        gate.touch()
        rest = list(events)
    deltas = [json.loads(d)["delta"] for _, d in rest[:-1] if json.loads(d).get("delta")]
    assert deltas == [" hello", " big", " wide", " world"] and rest[-1] == (None, "[DONE]")


def test_stream_to_a_model_that_cannot_stream_is_a_clear_400(server: ServingServer) -> None:
    answer = server.invoke("tabular", {"dataframe_records": [{"x": 1.0}], "stream": True})
    assert answer.status_code == 400
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert "cannot stream" in answer.json()["message"]


def test_error_mid_stream_is_an_error_event_and_is_recorded(server: ServingServer) -> None:
    payload = {**QUESTION, "custom_inputs": {"fail_after": 2}, "stream": True}
    with server.session.post(
        server.url + "serving-endpoints/agent/invocations", json=payload, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        events = list(sse_events(response.iter_lines()))
    assert [e for e, _ in events] == [None, None, "error"]
    error = json.loads(events[-1][1])
    assert error["error_code"] == "INTERNAL_ERROR" and "agent failed after 2 chunks" in error["message"]
    row = table_row(server, "agent", request_id)
    assert row["status_code"] == 500 and "agent failed after 2 chunks" in row["response"]
    # The replica's one line for the failure names the request, as its row does.
    logs = server.api("GET", "api/2.0/serving-endpoints/agent/served-models/agent-echo-1/logs").json()["logs"]
    line = [line for line in logs.splitlines() if f"request_id={request_id} " in line]
    assert len(line) == 1 and "model raised during a stream" in line[0], line


def test_streamed_request_is_one_row_with_the_assembled_response(server: ServingServer) -> None:
    with server.session.post(
        server.url + "serving-endpoints/agent/invocations",
        json={**QUESTION, "stream": True, "client_request_id": "ask-1"},
        stream=True,
    ) as response:
        request_id = response.headers["x-request-id"]
        assert list(sse_events(response.iter_lines()))[-1] == (None, "[DONE]")
    row = table_row(server, "agent", request_id)
    assert row["status_code"] == 200 and row["client_request_id"] == "ask-1"
    logged = json.loads(row["response"])
    assert logged["output"][0]["content"][0]["text"] == "echo: hello big wide world"


def test_backend_neutral_streaming_scenario(server: ServingServer, tmp_path: Path) -> None:
    """Chunks as MLflow gives them, the assembled row, and a client that leaves stopping the model
    (the Ray backend runs the same scenario: test_ray_backend.py)."""
    streaming_scenario(server, tmp_path)


def test_client_that_leaves_the_listener_stops_the_generator(server: ServingServer, tmp_path: Path) -> None:
    marker = tmp_path / "closed"
    payload = {
        "input": [{"role": "user", "content": " ".join(f"w{i}" for i in range(50))}],
        "custom_inputs": {"pause": 0.2, "closed_marker": str(marker)},
    }
    info = server.get("agent")["data_plane_info"]["query_info"]
    listener = ServingServer(server.state_dir, {}, token=data_plane_token(server))
    listener.url = info["endpoint_url"].split("/serving-endpoints/")[0] + "/"
    request_id = leave_mid_stream(listener, "agent", payload)
    eventually(marker.exists, 15, 0.05, "GeneratorExit reaching the agent")
    assert table_row(server, "agent", request_id)["status_code"] == 499


def test_streams_interleave_on_one_replica(server: ServingServer, tmp_path: Path) -> None:
    """Three streams on one replica all deliver their first chunk while each model waits at a gate:
    they run at once, none queued behind another."""
    gate = tmp_path / "gate"
    payload = {**QUESTION, "custom_inputs": {"gate": str(gate)}, "stream": True}
    firsts: dict[int, float] = {}
    ends: dict[int, list[tuple[str | None, str]]] = {}

    def client(n: int) -> None:
        with server.session.post(
            server.url + "serving-endpoints/agent/invocations", json=payload, stream=True
        ) as response:
            events = sse_events(response.iter_lines(chunk_size=1))
            next(events)
            firsts[n] = time.monotonic()
            ends[n] = list(events)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        eventually(lambda: len(firsts), 60, 0.02, "three first chunks", until=lambda n: n == 3)
        assert not ends  # every stream is still open, its model waiting at the gate
    finally:
        gate.touch()
        for t in threads:
            t.join(60)
    assert all(events[-1] == (None, "[DONE]") for events in ends.values()) and len(ends) == 3
    assert server.get("agent")["config"]["served_entities"][0]["local"]["replicas"] == 1  # one replica


def data_plane_token(server: ServingServer) -> str:
    info = server.get("agent")["data_plane_info"]["query_info"]
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": server.token,
        "authorization_details": info["authorization_details"],
    }
    return requests.post(server.url + "oidc/v1/token", data=grant, timeout=30).json()["access_token"]


def test_route_optimized_listener_streams(server: ServingServer) -> None:
    info = server.get("agent")["data_plane_info"]["query_info"]
    token = data_plane_token(server)
    headers = {"Authorization": f"Bearer {token}"}
    with requests.post(
        info["endpoint_url"], json={**QUESTION, "stream": True}, headers=headers, stream=True, timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["served-model-name"] == "agent-echo-1"
        events = list(sse_events(response.iter_lines()))
    assert events[-1] == (None, "[DONE]") and len(events) == 7
    plain = requests.post(info["endpoint_url"], json=QUESTION, headers=headers, timeout=60)
    assert plain.json()["output"][0]["content"][0]["text"] == "echo: hello big wide world"


# ----------------------------------------------------------------------------- the clients users use
def check_clients(url: str, token: str) -> None:
    """The OpenAI client from databricks-sdk, MLflow's `databricks` deployments client and the SDK's
    query(messages=...), as a user would call them, against the server at `url`."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import ChatMessage, ChatMessageRole
    from mlflow.deployments import get_deploy_client

    w = WorkspaceClient(host=url.rstrip("/"), token=token, auth_type="pat")
    client = w.serving_endpoints.get_open_ai_client()
    answer = client.responses.create(model="agent", input="hello big wide world")
    assert answer.output_text == "echo: hello big wide world"
    deltas = [
        e.delta
        for e in client.responses.create(model="agent", input="hello big wide world", stream=True)
        if e.type == "response.output_text.delta"
    ]
    assert "".join(deltas) == "echo: hello big wide world"

    chat = client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "a b c"}])
    assert chat.choices[0].message.content == "c b a" and chat.usage.total_tokens == 6
    chunks = list(
        client.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "a b c"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "c b a"

    queried = w.serving_endpoints.query(
        name="chat", messages=[ChatMessage(role=ChatMessageRole.USER, content="x y")]
    )
    assert queried.choices[0].message.content == "y x"

    databricks = {
        "DATABRICKS_HOST": url.rstrip("/"),
        "DATABRICKS_TOKEN": token,
        "DATABRICKS_AUTH_TYPE": "pat",
    }
    with environ(databricks):
        deploy = get_deploy_client("databricks")
        assert deploy.predict(endpoint="agent", inputs=QUESTION)["output"][0]["content"][0]["text"] == (
            "echo: hello big wide world"
        )
        streamed = list(
            deploy.predict_stream(endpoint="chat", inputs={"messages": [{"role": "user", "content": "p q"}]})
        )
        assert "".join(c["choices"][0]["delta"]["content"] for c in streamed) == "q p"


def test_clients_against_the_standalone_server(server: ServingServer) -> None:
    check_clients(server.url, server.token)


def test_clients_against_jupyter_server(agents: MlflowEnv, tmp_path: Path) -> None:
    """The same clients against `jupyter server` with the extension, under a base URL."""
    runtime = tmp_path / "runtime"
    env = {
        **os.environ,
        **agents.env,
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_SERVING_STATE_DIR": str(tmp_path / "state"),
    }
    cmd = [
        sys.executable, "-m", "jupyter", "server", "--no-browser", "--ServerApp.port=0",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.allow_root=True", "--IdentityProvider.token=jtoken",
        "--ServerApp.base_url=/prefix/", f"--ServerApp.root_dir={tmp_path}",
    ]  # fmt: skip
    with open(tmp_path / "jupyter.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = jupyter_url(proc, runtime, "jtoken", log=tmp_path / "jupyter.log")
        jupyter = ServingServer(tmp_path / "unused", {}, token="jtoken")
        jupyter.url = url
        jupyter.session.headers["Authorization"] = "Bearer jtoken"
        for name, model in (("agent", "agent-echo"), ("chat", "chat-reverse")):
            assert jupyter.create(name, {"served_entities": [entity(model, 1)]}).status_code == 200
        for name in ("agent", "chat"):
            jupyter.wait_settled(name)
        check_clients(url, "jtoken")
        assert stream(jupyter, "agent", QUESTION)[-1] == (None, "[DONE]")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_openai_routes_refuse_bad_requests_in_databricks_form(server: ServingServer) -> None:
    route = server.url + "serving-endpoints/chat/completions"
    missing = server.session.post(route, json={"messages": []}, timeout=30)
    assert missing.status_code == 400 and missing.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    unknown = server.session.post(route, json={"model": "nope", "messages": []}, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    garbage = server.session.post(route, data=b"{not json", timeout=30)
    assert garbage.status_code == 400


# ----------------------------------------------------------------------------- durability
def test_row_is_durable_before_done(
    agents: MlflowEnv, start_server: Callable[..., ServingServer], tmp_path: Path
) -> None:
    """kill -9 right after [DONE] loses no row: it was spooled before [DONE] was sent."""
    state = tmp_path / "durable"
    server = start_server("--capture-flush-s", "30", state_dir=state)  # rows stay in the spool
    server.create_ready("dur", {"served_entities": [entity("agent-echo", 1)], "auto_capture_config": CAPTURE})
    with server.session.post(
        server.url + "serving-endpoints/dur/invocations", json={**QUESTION, "stream": True}, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        assert list(sse_events(response.iter_lines()))[-1] == (None, "[DONE]")
    server.stop(signal.SIGKILL)
    restarted = start_server("--capture-flush-s", "0.2", state_dir=state)
    row = table_row(restarted, "dur", request_id)
    assert json.loads(row["response"])["output"][0]["content"][0]["text"] == "echo: hello big wide world"


def test_traces_reach_the_answer_the_row_and_the_experiment(server: ServingServer) -> None:
    """With return_trace the answer carries the agent's MLflow trace, as on Databricks; the row
    always does; with MLFLOW_EXPERIMENT_ID in environment_vars the experiment has it too."""
    import mlflow

    asked = {**QUESTION, "databricks_options": {"return_trace": True}}
    answer = server.invoke("agent", asked)
    trace = answer.json()["databricks_output"]["trace"]
    assert trace["info"]["trace_id"].startswith("tr-") and trace["data"]["spans"]
    assert "databricks_output" not in server.invoke("agent", QUESTION).json()  # only when asked
    events = stream(server, "agent", asked)
    assert events[-1] == (None, "[DONE]")
    assert json.loads(events[-2][1])["databricks_output"]["trace"]["data"]["spans"]
    row = table_row(server, "agent", answer.headers["x-request-id"])
    assert (
        json.loads(row["response"])["databricks_output"]["trace"]["info"]["trace_id"]
        == (trace["info"]["trace_id"])
    )

    experiment = mlflow.set_experiment("agent-traces").experiment_id
    env = {"MLFLOW_EXPERIMENT_ID": experiment}
    server.create_ready("agent-exp", {"served_entities": [entity("agent-echo", 1, environment_vars=env)]})
    try:
        traced = server.invoke("agent-exp", asked).json()["databricks_output"]["trace"]["info"]["trace_id"]
        eventually(
            lambda: {
                t.info.trace_id for t in mlflow.search_traces(locations=[experiment], return_type="list")
            },
            60,
            0.2,
            "the request's trace in the experiment",
            until=lambda ids: traced in ids,
        )
    finally:
        server.delete("agent-exp")


def test_openai_routes_keep_permissions_and_rate_limits(server: ServingServer) -> None:
    """CAN_QUERY and AI Gateway rate limits hold on the OpenAI routes and on streams."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import (
        ServingEndpointAccessControlRequest,
        ServingEndpointPermissionLevel,
    )

    admin = WorkspaceClient(host=server.url.rstrip("/"), token=server.token, auth_type="pat")
    app = admin.service_principals.create(display_name="stream-app")
    token = admin.token_management.create_obo_token(application_id=app.application_id, lifetime_seconds=600)
    headers = {"Authorization": f"Bearer {token.token_value}"}
    chat = {"model": "chat", "messages": [{"role": "user", "content": "a b"}], "stream": True}
    route = server.url + "serving-endpoints/chat/completions"
    denied = requests.post(route, json=chat, headers=headers, timeout=60)
    assert (denied.status_code, denied.json()["error_code"]) == (403, "PERMISSION_DENIED")
    acl = [
        ServingEndpointAccessControlRequest(
            service_principal_name=app.application_id,
            permission_level=ServingEndpointPermissionLevel.CAN_QUERY,
        )
    ]
    admin.serving_endpoints.set_permissions(server.get("chat")["id"], access_control_list=acl)
    with requests.post(route, json=chat, headers=headers, stream=True, timeout=60) as allowed:
        assert allowed.status_code == 200
        assert list(sse_events(allowed.iter_lines()))[-1] == (None, "[DONE]")

    limits = {"rate_limits": [{"calls": 1, "key": "user", "renewal_period": "minute"}]}
    assert server.api("PUT", "api/2.0/serving-endpoints/chat/ai-gateway", json=limits).status_code == 200
    try:
        with requests.post(route, json=chat, headers=headers, stream=True, timeout=60) as within:
            assert within.status_code == 200  # the one call of this minute
            assert list(sse_events(within.iter_lines()))[-1] == (None, "[DONE]")
        over = requests.post(route, json=chat, headers=headers, timeout=60)
        assert (over.status_code, over.json()["error_code"]) == (429, "REQUEST_LIMIT_EXCEEDED")
    finally:
        server.api("PUT", "api/2.0/serving-endpoints/chat/ai-gateway", json={})


def test_a_stream_to_an_entity_scaled_to_zero_cold_starts_it(
    agents: MlflowEnv, start_server: Callable[..., ServingServer]
) -> None:
    """A stream waits for a replica as a plain request does, through the OpenAI route too."""
    from scenarios import FAST_TIMERS, wait_local

    server = start_server(*FAST_TIMERS)
    server.create_ready("zero", {"served_entities": [entity("agent-echo", 1, scale_to_zero_enabled=True)]})
    wait_local(server, "zero", "agent-echo-1", lambda i: i["replicas"] == 0)
    body = {"model": "zero", "input": "hello big wide world", "stream": True}
    with server.session.post(server.url + "serving-endpoints/responses", json=body, stream=True) as response:
        assert response.status_code == 200, response.text
        events = list(sse_events(response.iter_lines()))
    assert events[-1] == (None, "[DONE]")
    assert json.loads(events[-2][1])["item"]["content"][0]["text"] == "echo: hello big wide world"
    assert wait_local(server, "zero", "agent-echo-1", lambda i: i["cold_starts"] >= 1)["cold_starts"] >= 1


def test_a_tiny_transformers_llm_streams_its_tokens(server: ServingServer, tmp_path: Path) -> None:
    """A random-weight GPT-2-like model built here, in a PythonModel with predict_stream: the served
    chunks are MLflow's in-process predict_stream chunks, token by token."""
    pytest.importorskip("transformers", reason="the flavors extra is not installed")
    import flavor_models as fm
    import mlflow
    from agent_models import MODEL_CODE
    from mlflow.models import infer_signature

    pipe = fm.generation_pipeline()
    pipe.save_pretrained(tmp_path / "pipeline")
    example = pd.DataFrame({"prompt": [fm.SENTENCES[0]]})
    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE / "hf_stream.py"),
            artifacts={"pipeline": str(tmp_path / "pipeline")},
            signature=infer_signature(example, ["x"], params={"max_new_tokens": 8}),
            registered_model_name="llm-stream",
            pip_requirements=fm.TEXT_REQS,
        )
    server.create_ready("llm", {"served_entities": [entity("llm-stream", 1)]})
    try:
        local = mlflow.pyfunc.load_model("models:/llm-stream/1")
        params = {"max_new_tokens": 6}
        wanted = list(local.predict_stream(example, params=params))
        assert len(wanted) > 1  # several chunks: this is token streaming, not one answer
        request = {"dataframe_records": [{"prompt": fm.SENTENCES[0]}], "params": params}
        events = stream(server, "llm", request)
        assert [json.loads(d) for _, d in events[:-1]] == wanted and events[-1] == (None, "[DONE]")
    finally:
        server.delete("llm")


def test_chat_agent_answers_and_streams_what_mlflow_gives_in_process(server: ServingServer) -> None:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/chat-agent/1")
    request = {"messages": [{"role": "user", "content": "quiet please"}]}
    answer = server.invoke("shout", request).json()
    assert answer == model.predict(request)
    assert answer["messages"][0]["content"] == "QUIET PLEASE"
    events = stream(server, "shout", request)
    assert [json.loads(d) for _, d in events[:-1]] == list(model.predict_stream(request))
    assert events[-1] == (None, "[DONE]")


def test_a_waiting_stream_never_blocks_a_tabular_request(server: ServingServer, tmp_path: Path) -> None:
    """While an agent's stream waits at a gate, another endpoint's tabular request is answered."""
    gate = tmp_path / "gate"
    payload = {**QUESTION, "custom_inputs": {"gate": str(gate)}, "stream": True}
    with server.session.post(
        server.url + "serving-endpoints/agent/invocations", json=payload, stream=True
    ) as response:
        events = sse_events(response.iter_lines(chunk_size=1))
        next(events)  # the stream is open and its model is waiting
        try:
            answer = server.invoke(
                "tabular", {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
            )
            assert answer.status_code == 200 and answer.json()["predictions"] == [0, 2, 1]
            assert not gate.exists()
        finally:
            gate.touch()
        assert list(events)[-1] == (None, "[DONE]")


def test_streams_are_bounded_by_inactivity_not_by_length(
    agents: MlflowEnv, start_server: Callable[..., ServingServer], tmp_path: Path
) -> None:
    """request_timeout_s 3: a stream that yields every 0.5 s runs for 3.5 s and ends well; one whose
    model goes quiet for longer ends with a DEADLINE_EXCEEDED error event, recorded in its row.
    (3 s, not less: on a loaded machine the first chunk alone once took over 1 s, and a stream
    refused before its first chunk is a plain 504, not an error event.)"""
    server = start_server("--request-timeout-s", "3", "--capture-flush-s", "0.2")
    server.create_ready(
        "idle", {"served_entities": [entity("agent-echo", 1)], "auto_capture_config": CAPTURE}
    )
    words = {"input": [{"role": "user", "content": "a b c d e f g h"}], "custom_inputs": {"pause": 0.5}}
    assert stream(server, "idle", words)[-1] == (None, "[DONE]")  # 3.5 s in all, never 3 s without a chunk
    quiet = {**QUESTION, "custom_inputs": {"gate": str(tmp_path / "never")}, "stream": True}
    with server.session.post(
        server.url + "serving-endpoints/idle/invocations", json=quiet, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        assert response.status_code == 200, response.text  # the first chunk came: a stream
        events = list(sse_events(response.iter_lines()))
    assert [e for e, _ in events] == [None, "error"]
    assert json.loads(events[-1][1])["error_code"] == "DEADLINE_EXCEEDED"
    assert table_row(server, "idle", request_id)["status_code"] == 504
