"""The invocation path: route -> deployment.invoke -> account (metrics, inference-table row) -> reply.

Backend-neutral: it sees an endpoint's immutable routing table and the `Deployment` interface only.
The data plane keeps its per-endpoint state in lanes (dataplane/lane.py) keyed by endpoint name;
the control plane opens and closes them with the endpoints it manages (control/endpoint.py).
A request keeps the table it started with; if an update retires the deployment it chose before a
replica took it, it is routed once more on the table that replaced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_serving.backends.base import (
    Deployment,
    Retired,
    ScoringReply,
    ScoringRequest,
    ScoringStream,
    StreamEnd,
)
from jupyter_serving.capture import (
    AI_GATEWAY,
    GatewayRowEncoder,
    InferenceCapture,
    RowEncoder,
    SpoolWriteError,
    request_metadata,
)
from jupyter_serving.dataplane.lane import EndpointLane
from jupyter_serving.dataplane.router import RoutingTable
from jupyter_serving.dataplane.shadow import ShadowConfig
from jupyter_serving.errors import (
    ResourceDoesNotExist,
    ServingError,
    TemporarilyUnavailable,
)
from jupyter_serving.monitoring.metrics import model_error

log = logging.getLogger("jupyter_serving")


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class Invocation:
    status: int
    body: bytes
    served_entity: str
    execution_ms: float
    client_request_id: str | None


class DataPlane:
    """Answers invocations for the endpoints that have a lane here (see `open_lane`)."""

    def __init__(self, capture: Callable[[], InferenceCapture | None], request_timeout_s: float) -> None:
        self.lanes: dict[str, EndpointLane] = {}
        self._capture = capture
        self.request_timeout_s = request_timeout_s
        # Row encoders per (table, endpoint, served entity, model, version): see capture.row.RowEncoder.
        self._row_encoders: dict[tuple[Any, ...], RowEncoder] = {}
        self._gateway_encoders: dict[tuple[Any, ...], GatewayRowEncoder] = {}

    # ----------------------------------------------------------------- lanes
    def open_lane(
        self,
        name: str,
        deployments: Callable[[], Iterable[Deployment]],
        unroutable: Callable[[], ServingError],
        shadow: ShadowConfig | None = None,
    ) -> EndpointLane:
        """A lane for the endpoint `name` (replacing a deleted endpoint's of the same name)."""
        lane = self.lanes[name] = EndpointLane(name, deployments, unroutable, shadow)
        return lane

    def close_lane(self, lane: EndpointLane) -> None:
        """The endpoint is gone: new requests get RESOURCE_DOES_NOT_EXIST, held ones stop holding,
        the mirror stops. A lane already replaced by a new endpoint of the same name stays."""
        if self.lanes.get(lane.name) is lane:
            del self.lanes[lane.name]
        lane.routing = None
        lane.mirror(None)

    def _lane(self, name: str) -> EndpointLane:
        lane = self.lanes.get(name)
        if lane is None:
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        return lane

    # ----------------------------------------------------------------- invocation
    async def invoke(
        self,
        name: str,
        served: str | None,
        content_type: str,
        body: bytes,
        routing_key: str | None = None,
        request_id: str = "",
        requester: str | None = None,
    ) -> Invocation:
        """`requester` (the caller's principal) is logged in an AI Gateway inference table."""
        lane = self._lane(name)
        timeout = self.request_timeout_s
        arrived_ms, started = now_ms(), time.perf_counter()
        table = lane.routing or await _wait_routable(lane, timeout)
        deployment = _choose(table, name, served, routing_key)
        request = ScoringRequest(content_type, body, request_id)
        try:
            try:
                reply = await deployment.invoke(request, timeout)
            except Retired:  # an update swapped routing after this request chose its entity
                table = lane.routing or table
                deployment = _choose(table, name, served, routing_key, retired=True)
                reply = await deployment.invoke(request, timeout - (time.perf_counter() - started))
        except ServingError as exc:
            await self._account(
                lane, table, deployment, request_id, arrived_ms, started, body, exc, requester=requester
            )
            raise
        await self._account(
            lane, table, deployment, request_id, arrived_ms, started, body, reply, requester=requester
        )
        if lane.shadow is not None:  # mirrored after the live row, never awaited (dataplane/shadow.py)
            lane.shadow.offer(self, deployment.name, request, request_id, body)
        return Invocation(
            reply.status, reply.body, deployment.name, reply.execution_ms, reply.client_request_id
        )

    async def open_stream(
        self,
        name: str,
        served: str | None,
        content_type: str,
        body: bytes,
        routing_key: str | None = None,
        request_id: str = "",
        requester: str | None = None,
    ) -> Invocation | LiveStream:
        """Start a streaming request. It is refused as a whole (an `Invocation` with the error, or a
        raised ServingError) until the model yields its first chunk; from then on it is a
        `LiveStream` whose errors arrive as an SSE error event."""
        lane = self._lane(name)
        timeout = self.request_timeout_s
        arrived_ms, started = now_ms(), time.perf_counter()
        table = lane.routing or await _wait_routable(lane, timeout)
        deployment = _choose(table, name, served, routing_key)
        request = ScoringRequest(content_type, body, request_id)
        try:
            try:
                stream = await deployment.invoke_stream(request, timeout)
            except Retired:
                table = lane.routing or table
                deployment = _choose(table, name, served, routing_key, retired=True)
                stream = await deployment.invoke_stream(request, timeout - (time.perf_counter() - started))
            first = await stream.next(timeout)
        except ServingError as exc:
            await self._account(
                lane, table, deployment, request_id, arrived_ms, started, body, exc, requester=requester
            )
            raise
        live = LiveStream(self, lane, table, deployment, stream, first, request_id, arrived_ms, started, body)
        live.requester = requester
        if isinstance(first, StreamEnd) and first.status != 200:  # refused before any chunk: a plain answer
            await live.finish(first)
            return Invocation(
                first.status, first.body, deployment.name, first.execution_ms, first.client_request_id
            )
        return live

    async def _account(
        self,
        lane: EndpointLane,
        table: RoutingTable,
        deployment: Deployment,
        request_id: str,
        arrived_ms: int,
        started: float,
        body: bytes,
        outcome: ScoringReply | ServingError,
        logged_response: str | None = None,
        *,
        requester: str | None = None,
        first_chunk_ms: float | None = None,
    ) -> None:
        """Metrics and the inference-table row for one answered request, whether it failed or not.

        The row has the table's form (`RoutingTable.capture_form`): legacy rows carry a stream's
        `first_chunk_ms` in request_metadata (capture.row.TTFT_KEY), AI Gateway rows the requester.
        """
        elapsed = time.perf_counter() - started
        if isinstance(outcome, ServingError):
            status, response, batch = outcome.http_status, json.dumps(outcome.to_json()), None
            execution_ms, client_request_id = elapsed * 1000, _client_request_id(body)
        else:
            logged = logged_response or outcome.body.decode("utf-8", "replace")
            if outcome.trace is not None:
                logged = _with_trace(logged, outcome.trace)
            status, response, batch = outcome.status, logged, outcome.batch
            execution_ms, client_request_id = outcome.execution_ms, outcome.client_request_id
        lane.metrics.observe(deployment.name, status, elapsed, batch, model_error(status, response))
        if table.capture_path is None:
            return
        request = body.decode("utf-8", "replace")
        if table.capture_form == AI_GATEWAY:
            key = (table.capture_path, deployment.name)
            if (gateway := self._gateway_encoders.get(key)) is None:
                gateway = self._gateway_encoders[key] = GatewayRowEncoder(table.capture_path, deployment.name)
            payload = gateway.encode(
                request_id, client_request_id, arrived_ms, status, round(execution_ms), request, response,
                requester,
            )  # fmt: skip
        else:
            encoder = self._encoder(table.capture_path, lane.name, deployment)
            payload = encoder.encode(
                request_id, client_request_id, arrived_ms, status, round(execution_ms), request, response,
                first_chunk_ms,
            )  # fmt: skip
        await self._spool(payload)

    def _encoder(self, path: Path, endpoint: str, deployment: Deployment) -> RowEncoder:
        entity = deployment.entity
        key = (path, endpoint, entity.name, entity.entity_name, entity.entity_version)
        if (encoder := self._row_encoders.get(key)) is None:
            metadata = request_metadata(
                endpoint, entity.entity_name, entity.entity_version or "", entity.name
            )
            encoder = self._row_encoders[key] = RowEncoder(path, metadata)
        return encoder

    async def _spool(self, payload: bytes) -> None:
        """Spool the inference-table row durably before the client hears back (group commit)."""
        capture = self._capture()
        assert capture is not None
        try:
            await capture.record_json(payload)
        except SpoolWriteError as exc:
            log.error("inference table spool failed: %s", exc)
            raise TemporarilyUnavailable(
                "The request was scored, but its inference-table row could not be stored durably; retry.",
                headers={"Retry-After": "1"},
            ) from None


DONE = b"data: [DONE]\n\n"


class LiveStream:
    """A streaming answer on its way to a client: SSE bytes from the deployment, then the end.

    At the end the inference-table row (the assembled response) is spooled durably *before* the
    closing `data: [DONE]` is handed out, the same rule as for a plain answer. An error after the
    first chunk becomes one `event: error` whose data is Databricks' error body; a client that
    leaves calls `close()`, which stops the model's generator and records the request as cancelled.
    """

    def __init__(
        self,
        dataplane: DataPlane,
        lane: EndpointLane,
        table: RoutingTable,
        deployment: Deployment,
        stream: ScoringStream,
        first: bytes | StreamEnd,
        request_id: str,
        arrived_ms: int,
        started: float,
        body: bytes,
    ) -> None:
        self.dataplane = dataplane
        self.lane = lane
        self.table = table
        self.deployment = deployment
        self.served_entity = deployment.name
        self.stream = stream
        self._first: bytes | StreamEnd | None = first
        self.request_id = request_id
        self.arrived_ms = arrived_ms
        self.started = started
        self.body = body
        self.end: StreamEnd | None = None
        self._finished = False
        self.requester: str | None = None  # the caller's principal, for an AI Gateway table row
        self.after: Callable[[StreamEnd], Awaitable[None]] | None = None  # the gateway's usage row

    def __aiter__(self) -> LiveStream:
        return self

    async def __anext__(self) -> bytes:
        if self._finished:
            raise StopAsyncIteration
        item, self._first = self._first, None
        if item is None:
            try:
                item = await self.stream.next(self.dataplane.request_timeout_s)
            except ServingError as exc:  # the inactivity timeout
                item = StreamEnd(exc.http_status, json.dumps(exc.to_json()).encode(), 0.0, None)
        if isinstance(item, bytes):
            return item
        await self.finish(item)
        if item.status == 200:
            return DONE
        return b"event: error\ndata: " + item.body + b"\n\n"

    async def finish(self, end: StreamEnd) -> None:
        """Account the stream once: metrics, and its inference-table row, durable on return."""
        if self._finished:
            return
        self._finished = True
        self.end = end
        reply = ScoringReply(end.status, end.body, end.execution_ms, end.client_request_id, trace=end.trace)
        await self.dataplane._account(
            self.lane, self.table, self.deployment, self.request_id, self.arrived_ms, self.started,
            self.body, reply, logged_response=_logged_response(end), requester=self.requester,
            first_chunk_ms=end.first_chunk_ms,
        )  # fmt: skip
        if self.after is not None:
            await self.after(end)

    async def aclose(self) -> None:
        """The client left mid-stream: stop the model and record what happened."""
        if self._finished:
            return
        self.stream.close()
        while not isinstance(end := await self.stream.next(0.0), StreamEnd):
            pass  # chunks the client will never read
        await self.finish(end)


def _with_trace(response: str, trace: str) -> str:
    """The logged response with the agent's trace under `databricks_output`, where Databricks'
    agent inference tables keep it (already there when the client asked for it)."""
    try:
        answer = json.loads(response)
    except ValueError:
        return response
    if not isinstance(answer, dict) or "trace" in (answer.get("databricks_output") or {}):
        return response
    answer.setdefault("databricks_output", {})["trace"] = json.loads(trace)
    return json.dumps(answer)


def _logged_response(end: StreamEnd) -> str:
    """What the inference table holds for a stream: the assembled response, or the error."""
    if end.status != 200:
        return end.body.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(end.body)["response"])
    except (ValueError, KeyError, TypeError):
        return end.body.decode("utf-8", "replace")


def _choose(
    table: RoutingTable, name: str, served: str | None, routing_key: str | None, *, retired: bool = False
) -> Deployment:
    if served is None:
        return table.choose(routing_key)
    deployment = table.deployments.get(served)
    if deployment is None:
        verb = "was removed from" if retired else "does not exist in"
        raise ResourceDoesNotExist(f"Served entity '{served}' {verb} endpoint '{name}'.")
    return deployment


async def _wait_routable(lane: EndpointLane, timeout: float) -> RoutingTable:
    """Hold a request while the endpoint's first config deploys, or while a restarted server brings
    its config back, instead of failing it (see `Endpoint.wake_waiters`)."""
    if not lane.settled.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lane.settled.wait(), timeout)
    if lane.routing is not None:
        return lane.routing
    raise lane.unroutable()  # still deploying (503), or why it cannot serve (400)


def _client_request_id(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("client_request_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
