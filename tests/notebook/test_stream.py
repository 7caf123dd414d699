"""`Client.stream` and `%serve query --stream` against the real server and real agents
(tests/model_code/responses_agent.py, chat_model.py), plus the pure SSE and chunk rules."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agent_models import register_agents
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from serving_support import MlflowEnv, entity, eventually

from jupyter_serving.api.endpoint_openapi import endpoint_openapi
from jupyter_serving.notebook.client import (
    BadRequestError,
    Client,
    NotFoundError,
    ServerError,
    chunk_text,
    question_payload,
    signature_takes_messages,
    sse_events,
    stream_chunks,
)

QUESTION = "hello big wide world"
ANSWER = "echo: hello big wide world"


@pytest.fixture(scope="module")
def endpoints(mlflow_env: MlflowEnv, client: Client) -> Iterator[dict[str, str]]:
    """One agent, one chat model and one tabular model, READY for the whole module."""
    register_agents()
    suffix = uuid.uuid4().hex[:6]
    names = {kind: f"st-{kind}-{suffix}" for kind in ("agent", "chat", "tabular")}
    models = {"agent": "agent-echo", "chat": "chat-reverse", "tabular": "iris-lr"}
    for kind, name in names.items():
        client.create(name, {"served_entities": [entity(models[kind], 1)]})
    try:
        for name in names.values():
            client.wait(name, timeout=170)
        yield names
    finally:
        for name in names.values():
            with contextlib.suppress(NotFoundError):
                client.delete(name)


# ----------------------------------------------------------------------------- Client.stream
@pytest.mark.slow
def test_a_question_streams_the_agents_answer_chunk_by_chunk(
    client: Client, endpoints: dict[str, str]
) -> None:
    chunks = list(client.stream(endpoints["agent"], QUESTION))
    assert [c["type"] for c in chunks] == ["response.output_text.delta"] * 5 + ["response.output_item.done"]
    assert "".join(chunk_text(c) for c in chunks) == ANSWER
    assert chunks[-1]["item"]["content"][0]["text"] == ANSWER


@pytest.mark.slow
def test_chunks_arrive_while_the_model_is_still_producing(
    client: Client, endpoints: dict[str, str], tmp_path: Path
) -> None:
    """The agent waits at a gate after its first word: that word must be here before the gate opens."""
    gate = tmp_path / "gate"
    texts = []
    for chunk in client.stream(endpoints["agent"], QUESTION, custom_inputs={"gate": str(gate)}):
        if text := chunk_text(chunk):
            if not texts:
                assert not gate.exists()  # the first word arrived while the model still works
                gate.touch()
            texts.append(text)
    assert "".join(texts) == ANSWER


@pytest.mark.slow
def test_a_question_to_a_chat_model_goes_as_messages(client: Client, endpoints: dict[str, str]) -> None:
    chat = endpoints["chat"]
    assert "".join(chunk_text(c) for c in client.stream(chat, "one two three")) == "three two one"
    by_keyword = client.stream(chat, messages=[{"role": "user", "content": "a b"}])
    assert "".join(map(chunk_text, by_keyword)) == "b a"
    agent = client.stream(endpoints["agent"], input="x y", custom_inputs={"prefix": ">"})
    assert "".join(map(chunk_text, agent)) == "> x y"


@pytest.mark.slow
def test_an_error_mid_stream_raises_after_the_chunks_before_it(
    client: Client, endpoints: dict[str, str]
) -> None:
    texts: list[str] = []
    with pytest.raises(ServerError) as info:
        for chunk in client.stream(endpoints["agent"], QUESTION, custom_inputs={"fail_after": 2}):
            texts.append(chunk_text(chunk))
    assert texts == ["echo:", " hello"]
    assert info.value.error_code == "INTERNAL_ERROR"
    assert "agent failed after 2 chunks" in info.value.message


@pytest.mark.slow
def test_http_errors_raise_before_any_chunk(client: Client, endpoints: dict[str, str]) -> None:
    with pytest.raises(NotFoundError):
        client.stream(f"missing-{uuid.uuid4().hex[:6]}", {"input": []})
    with pytest.raises(BadRequestError, match="cannot stream"):
        client.stream(endpoints["tabular"], {"dataframe_records": [{"x": 1.0}]})
    with pytest.raises(TypeError, match="exactly one"):
        client.stream(endpoints["agent"], QUESTION, input=QUESTION)


@pytest.mark.slow
def test_closing_the_iterator_stops_the_models_generator(
    client: Client, endpoints: dict[str, str], tmp_path: Path
) -> None:
    marker = tmp_path / "closed"
    words = " ".join(f"w{i}" for i in range(50))
    chunks = client.stream(
        endpoints["agent"], words, custom_inputs={"pause": 0.2, "closed_marker": str(marker)}
    )
    assert chunk_text(next(chunks)) == "echo:"
    chunks.close()
    closed_at = eventually(
        lambda: marker.exists() and marker.read_text(), 10, 0.05, "GeneratorExit reaching the agent"
    )
    assert int(closed_at) < 50


# ----------------------------------------------------------------------------- %serve query --stream
class TimedStdout:
    """Stands in for sys.stdout and notes when each write was flushed."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pending = ""
        self.flushed: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        self.pending += text
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.flushed.append((time.monotonic(), self.pending))
            self.pending = ""


@pytest.mark.slow
def test_magic_prints_the_answer(shell: Any, endpoints: dict[str, str]) -> None:
    with capture_output() as cap:
        result = shell.run_line_magic("serve", f'query {endpoints["agent"]} --stream "{QUESTION}"')
    assert result is None
    assert cap.stdout == ANSWER + "\n"
    with capture_output() as cap:
        shell.run_line_magic("serve", f"query {endpoints['chat']} --stream 'one two three'")
    assert cap.stdout == "three two one\n"


@pytest.mark.slow
def test_magic_flushes_each_token_as_it_arrives(
    shell: Any, endpoints: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = TimedStdout()
    gate = tmp_path / "gate"
    opened: list[float] = []

    def open_gate_after_the_first_token() -> None:
        eventually(lambda: [t for _, t in out.flushed if t.strip()], 60, 0.01, "the first printed token")
        opened.append(time.monotonic())
        gate.touch()

    opener = threading.Thread(target=open_gate_after_the_first_token)
    body = json.dumps(
        {"input": [{"role": "user", "content": QUESTION}], "custom_inputs": {"gate": str(gate)}}
    )
    monkeypatch.setattr(sys, "stdout", out)
    opener.start()
    try:
        shell.run_cell_magic("serve", f"query {endpoints['agent']} --stream", body)
    finally:
        monkeypatch.undo()
        gate.touch()
        opener.join(60)
    assert "".join(out.parts) == ANSWER + "\n"
    tokens = [(t, text) for t, text in out.flushed if text.strip()]
    assert [text for _, text in tokens] == ["echo:", " hello", " big", " wide", " world"]
    # The first token was printed while the model waited at the gate: printed as it came, not at the end.
    assert tokens[0][0] <= opened[0] <= tokens[1][0]


@pytest.mark.slow
def test_magic_shows_a_mid_stream_error_after_the_text_so_far(shell: Any, endpoints: dict[str, str]) -> None:
    shell.user_ns["failing"] = {
        "input": [{"role": "user", "content": QUESTION}],
        "custom_inputs": {"fail_after": 3},
    }
    with capture_output() as cap:
        result = shell.run_cell(f"%serve query {endpoints['agent']} --stream -d failing")
    assert isinstance(result.error_in_exec, UsageError)
    assert "INTERNAL_ERROR: " in str(result.error_in_exec)
    assert "agent failed after 3 chunks" in str(result.error_in_exec)
    assert cap.stdout.startswith("echo: hello big\n")  # the text so far, then the error


def test_magic_wants_the_question_once(shell: Any) -> None:
    with pytest.raises(UsageError, match="Give the question once"):
        shell.run_cell_magic("serve", "query some-agent --stream 'hi'", '{"input": []}')
    with pytest.raises(UsageError, match="Give the question once"):
        shell.run_line_magic("serve", "query some-agent --stream")


# ----------------------------------------------------------------------------- pure rules
def test_sse_events_and_chunks() -> None:
    lines = [b'data: {"a": 1}', b"", b'data: "tok"', b"", b"data: [DONE]", b""]
    assert list(stream_chunks(sse_events(lines))) == [{"a": 1}, "tok"]
    error = [b"data: 1", b"", b"event: error", b'data: {"error_code": "X", "message": "m"}', b""]
    chunks = stream_chunks(sse_events(error))
    assert next(chunks) == 1
    with pytest.raises(ServerError, match="X: m"):
        next(chunks)
    assert list(sse_events(["data: a", "data: b", ""])) == [(None, "a\nb")]  # multi-line data


@pytest.mark.parametrize(
    ("chunk", "text"),
    [
        ({"type": "response.output_text.delta", "delta": " hi", "item_id": "m"}, " hi"),
        ({"type": "response.output_item.done", "item": {}}, ""),
        ({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "yo"}}]}, "yo"),
        ({"choices": [{"index": 0, "delta": {"content": None}, "finish_reason": "stop"}]}, ""),
        ({"choices": [{"index": 0, "text": "legacy"}]}, "legacy"),
        ({"delta": {"role": "assistant", "content": "agent", "id": "1"}}, "agent"),
        ("plain", "plain"),
        ({"unknown": 1}, ""),
        (3, ""),
    ],
)
def test_chunk_text(chunk: Any, text: str) -> None:
    assert chunk_text(chunk) == text


def test_question_payload_follows_the_signature() -> None:
    """The endpoint's OpenAPI document, built from MLflow's own chat and ResponsesAgent input
    schemas, says which body a plain question becomes."""
    from mlflow.types.llm import CHAT_MODEL_INPUT_SCHEMA
    from mlflow.types.responses import RESPONSES_AGENT_INPUT_SCHEMA

    def doc(schema: Any) -> dict[str, Any]:
        return endpoint_openapi("ep", "http://h", [("a", {"inputs": schema.to_dict()})])

    assert signature_takes_messages(doc(CHAT_MODEL_INPUT_SCHEMA))
    assert not signature_takes_messages(doc(RESPONSES_AGENT_INPUT_SCHEMA))
    assert not signature_takes_messages(endpoint_openapi("ep", "http://h", [("a", None)]))
    assert question_payload("q", True) == {"messages": [{"role": "user", "content": "q"}]}
    assert question_payload("q") == {"input": [{"role": "user", "content": "q"}]}
