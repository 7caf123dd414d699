"""Streaming inside a worker: `predict_stream` run on a thread of its own, chunks sent as they come.

A stream request (frame code STREAM) names a model whose pyfunc has `predict_stream`: MLflow's
`ResponsesAgent`, `ChatAgent`, `ChatModel`, a `PythonModel` with `predict_stream`, or a
transformers text-generation pipeline. Each stream runs its generator on a thread from a pool of
`max_streams`, so a model that pauses between chunks (an LLM, a tool call) holds one thread, not
the event loop, and streams on one replica interleave while tabular batches keep scoring.

Chunks leave already framed as Server-Sent Events (``data: <json>\\n\\n``): the server writes the
bytes straight to its client. Whatever the generator yielded while the loop was busy goes in one
frame, so a generator that does no work costs a few frames per hundred chunks, and one that pauses
sends each chunk the moment it is yielded. The last frame carries the HTTP status and, for the
inference table, the response assembled from the chunks (see `assemble`), which is what Databricks
logs for a streamed request.

Cancel: the server sends CANCEL when its client leaves; the stream's thread then closes the
generator at its next yield, so the model sees `GeneratorExit` and its slot is freed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from jupyter_serving.worker import protocol, request_log, traces

log = logging.getLogger("jupyter_serving.worker")

# Keys that steer serving, not the model: Databricks strips them before the model sees the request.
SERVING_KEYS = ("stream", "databricks_options", "client_request_id")


def can_stream(model: Any) -> bool:
    """Whether the loaded pyfunc answers `predict_stream` (MLflow sets the function only then)."""
    return getattr(model, "_predict_stream_fn", None) is not None


# `json.dumps` with non-default separators builds a new JSONEncoder on every call; one shared encoder
# (stateless between calls, so safe from every stream's thread) halves the cost of each chunk's JSON
# (8.0 -> 4.1 us a tiny ResponsesAgent delta on the 2-core VM; benchmarks/stream_bench.py).
_compact = json.JSONEncoder(separators=(",", ":")).encode


def sse(chunk: Any) -> bytes:
    """One Server-Sent Event for a chunk the model yielded (a dict, or text)."""
    try:
        text = _compact(chunk)
    except TypeError:
        from mlflow.pyfunc.scoring_server import NumpyEncoder

        text = json.dumps(chunk, cls=NumpyEncoder, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


def error_event(status: int, error_code: str, message: str) -> tuple[int, bytes]:
    body = json.dumps({"error_code": error_code, "message": message}).encode()
    return status, body


class Assembler:
    """Builds the one response a streamed request is logged as, from its chunks.

    - ResponsesAgent events: the items of `response.output_item.done`, as `{"output": [...]}`
      (plus `custom_outputs` where an event carries them), the shape `predict` answers;
    - chat completion chunks: the deltas joined into one `chat.completion` message per choice;
    - text chunks: the text joined;
    - anything else: the chunks as a list.
    `usage`, where a chunk reports it, is kept for the AI Gateway usage table.
    """

    def __init__(self) -> None:
        self.kind = ""
        self.items: list[Any] = []
        self.texts: dict[int, list[str]] = {}
        self.roles: dict[int, str] = {}
        self.finish: dict[int, Any] = {}
        self.head: dict[str, Any] = {}
        self.custom_outputs: Any = None
        self.usage: Any = None

    def add(self, chunk: Any) -> None:
        if not self.kind:
            self.kind = _kind(chunk)
        if self.kind == "responses":
            self._add_event(chunk)
        elif self.kind == "chat":
            self._add_chat(chunk)
        elif self.kind == "text":
            self.texts.setdefault(0, []).append(str(chunk))
        else:
            self.items.append(chunk)

    def _add_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "response.output_item.done" and "item" in event:
            self.items.append(event["item"])
        elif kind == "response.completed" and isinstance(event.get("response"), dict):
            self.usage = event["response"].get("usage") or self.usage
        if event.get("custom_outputs") is not None:
            self.custom_outputs = event["custom_outputs"]

    def _add_chat(self, chunk: dict[str, Any]) -> None:
        for key in ("id", "object", "created", "model"):
            if key in chunk and key not in self.head:
                self.head[key] = chunk[key]
        for choice in chunk.get("choices") or ():
            index = int(choice.get("index", 0))
            delta = choice.get("delta") or {}
            if delta.get("role"):
                self.roles[index] = delta["role"]
            if isinstance(delta.get("content"), str):
                self.texts.setdefault(index, []).append(delta["content"])
            if choice.get("finish_reason") is not None:
                self.finish[index] = choice["finish_reason"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]

    def result(self) -> Any:
        if self.kind == "responses":
            out: dict[str, Any] = {"object": "response", "output": self.items}
            if self.custom_outputs is not None:
                out["custom_outputs"] = self.custom_outputs
            if self.usage is not None:
                out["usage"] = self.usage
            return out
        if self.kind == "chat":
            indexes = sorted(set(self.texts) | set(self.roles) | set(self.finish))
            choices = [
                {
                    "index": i,
                    "message": {
                        "role": self.roles.get(i, "assistant"),
                        "content": "".join(self.texts.get(i, [])),
                    },
                    "finish_reason": self.finish.get(i),
                }
                for i in indexes
            ]
            out = {**self.head, "object": "chat.completion", "choices": choices}
            if self.usage is not None:
                out["usage"] = self.usage
            return out
        if self.kind == "text":
            return "".join(self.texts.get(0, []))
        return self.items


def _kind(chunk: Any) -> str:
    if isinstance(chunk, str):
        return "text"
    if isinstance(chunk, dict):
        if str(chunk.get("type", "")).startswith("response."):
            return "responses"
        if "choices" in chunk:
            return "chat"
    return "other"


def stream_input(model: Any, payload: dict[str, Any]) -> tuple[Any, dict[str, Any] | None]:
    """The request as MLflow's scoring server would hand it to the model: unified LLM/agent input
    (`messages`, `input`, `prompt`, with `custom_inputs`, `context`...) as a dict, tabular and tensor
    input parsed against the signature."""
    from mlflow.pyfunc import scoring_server

    body = {k: v for k, v in payload.items() if k not in SERVING_KEYS}
    parsed = scoring_server._parse_json_data(body, model.metadata, model.metadata.get_input_schema())
    return parsed.data, parsed.params


# Where a stream's output goes, called on the event loop: (code, meta, body), code CHUNK for SSE
# bytes, else the final HTTP status. A local worker frames it onto its socket; a Ray replica queues it.
Emit = Callable[[int, bytes, bytes], None]


class Stream:
    """One streaming request: its generator on a pool thread, its output emitted on the loop."""

    def __init__(
        self,
        emit: Emit,
        loop: asyncio.AbstractEventLoop,
        client_request_id: str | None,
        on_done: Callable[[], None] = lambda: None,
        request_id: str = "",
    ) -> None:
        self.emit = emit
        self.loop = loop
        self.client_request_id = client_request_id
        self.request_id = request_id  # the server's: named by the log lines the stream's thread writes
        self.on_done = on_done
        self.cancelled = threading.Event()
        self.return_trace = False  # databricks_options.return_trace: a last chunk carries the trace
        self._lock = threading.Lock()
        self._pending: list[bytes] = []
        self._scheduled = False

    def run(self, chunks: Callable[[], Iterator[Any]]) -> None:
        """On a pool thread: drive the generator, hand chunks to the loop, then the final frame."""
        started = time.perf_counter()
        first_ms: float | None = None
        assembler = Assembler()
        generator: Any = None
        before = traces.last_id()
        request_log.scoring(self.request_id)  # a pool thread of its own: reset in the finally below
        try:
            generator = chunks()
            for chunk in generator:
                if first_ms is None:
                    first_ms = (time.perf_counter() - started) * 1000
                assembler.add(chunk)
                self._push(sse(chunk))
                if self.cancelled.is_set():
                    break
            if self.cancelled.is_set():
                status, body = error_event(499, "CANCELLED", "The client disconnected during the stream.")
            else:
                status, body = 200, json.dumps({"response": assembler.result()}).encode()
        except Exception as exc:
            status, body = _stream_error(exc)
        finally:
            if generator is not None and hasattr(generator, "close"):
                try:
                    generator.close()  # GeneratorExit reaches the model here, on the thread that ran it
                except Exception:
                    log.exception("closing the model's stream failed")
            request_log.scoring(None)
        usage = assembler.usage if isinstance(assembler.usage, dict) else None
        trace = traces.take(before)
        if trace is not None and self.return_trace and status == 200:
            self._push(b'data: {"databricks_output":{"trace":' + trace.encode() + b"}}\n\n")
        meta = {
            "trace": trace,
            "ms": round((time.perf_counter() - started) * 1000, 3),
            "crid": self.client_request_id,
            "first_ms": None if first_ms is None else round(first_ms, 3),
            "usage": usage,
        }
        self.loop.call_soon_threadsafe(self._finish, status, json.dumps(meta).encode(), body)

    def _push(self, data: bytes) -> None:
        with self._lock:
            self._pending.append(data)
            if self._scheduled:
                return
            self._scheduled = True
        self.loop.call_soon_threadsafe(self._flush)

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending, self._scheduled = self._pending, [], False
        if pending:
            self.emit(protocol.CHUNK, b"", b"".join(pending))

    def _finish(self, status: int, meta: bytes, body: bytes) -> None:
        self._flush()
        self.emit(status, meta, body)
        self.on_done()


def _stream_error(exc: Exception) -> tuple[int, bytes]:
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        log.warning("stream refused: %s", exc.message.splitlines()[0] if exc.message else exc)
        return exc.get_http_status_code(), json.dumps(
            {"error_code": exc.error_code, "message": exc.message[:2000]}
        ).encode()
    log.error("model raised during a stream: %s: %s", type(exc).__name__, str(exc)[:500])
    message = f"Model error: {type(exc).__name__}: {str(exc)[:2000]}".replace(
        "Unexpected error", "unexpected error"
    )
    return 500, json.dumps({"error_code": "INTERNAL_ERROR", "message": message}).encode()


class Streams:
    """The streams of one worker: a thread pool of `max_streams` and the streams running on it."""

    def __init__(self, model: Any, max_streams: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.model = model
        self.streaming = can_stream(model)
        traces.install()
        self.executor = ThreadPoolExecutor(max(1, max_streams), thread_name_prefix="stream")
        self.active: dict[tuple[int, int], Stream] = {}

    def open(self, frame: protocol.Frame, writer: asyncio.StreamWriter) -> None:
        request_id = frame.request_id

        def emit(code: int, meta: bytes, body: bytes) -> None:
            if not writer.is_closing():
                writer.write(protocol.encode(request_id, code, meta, body))

        def done() -> None:
            self.active.pop(key, None)

        key = (id(writer), request_id)
        content_type, server_id = protocol.split_request_meta(frame.meta)
        stream = self.start(content_type.encode(), frame.body, emit, done, server_id)
        if stream is not None:
            self.active[key] = stream

    def start(
        self,
        content_type: bytes,
        body: bytes,
        emit: Emit,
        on_done: Callable[[], Any] = lambda: None,
        request_id: str = "",
    ) -> Stream | None:
        """Start one stream on the pool (None: refused at once, the refusal already emitted).
        `request_id`: the server's id of the request, named by the stream's log lines."""
        refusal, payload = parse_request(self.streaming, content_type, body)
        if refusal is not None:
            emit(refusal[0], b"{}", refusal[1])
            return None
        assert payload is not None
        crid = payload.get("client_request_id")
        client_id = crid if isinstance(crid, str) else None
        stream = Stream(emit, asyncio.get_running_loop(), client_id, on_done, request_id)
        stream.return_trace = traces.wants_trace(payload)
        model = self.model
        self.executor.submit(stream.run, lambda: model.predict_stream(*stream_input(model, payload)))
        return stream

    def cancel(self, frame: protocol.Frame, writer: asyncio.StreamWriter) -> None:
        stream = self.active.get((id(writer), frame.request_id))
        if stream is not None:
            stream.cancelled.set()

    def cancel_all(self, writer: asyncio.StreamWriter) -> None:
        """The server's connection ended: nobody reads these streams any more."""
        for (conn, _), stream in list(self.active.items()):
            if conn == id(writer):
                stream.cancelled.set()


def parse_request(
    streaming: bool, content_type: bytes, body: bytes
) -> tuple[tuple[int, bytes] | None, dict[str, Any] | None]:
    """(refusal, None) for a request that cannot stream, else (None, the JSON payload)."""
    if not streaming:
        return error_event(
            400,
            "BAD_REQUEST",
            "This model cannot stream: it has no predict_stream (log a ResponsesAgent, ChatAgent, "
            'ChatModel, or a PythonModel with predict_stream); send the request without "stream".',
        ), None
    if content_type.split(b";")[0].strip().lower() not in (b"application/json", b""):
        return error_event(400, "BAD_REQUEST", "Streaming requests must be JSON."), None
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return error_event(400, "BAD_REQUEST", "The request body is not valid JSON."), None
    if not isinstance(payload, dict):
        return error_event(400, "BAD_REQUEST", "The request body must be a JSON object."), None
    return None, payload
