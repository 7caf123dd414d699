"""The invocation path: route -> deployment.invoke -> account (metrics, inference-table row) -> reply.

Backend-neutral: it sees an endpoint's immutable routing table and the `Deployment` interface only.
A request keeps the table it started with; if an update retires the deployment it chose before a
replica took it, it is routed once more on the table that replaced it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_serving.backends.base import Deployment, Retired, ScoringReply, ScoringRequest
from jupyter_serving.capture import InferenceCapture, RowEncoder, SpoolWriteError, request_metadata
from jupyter_serving.dataplane.router import RoutingTable
from jupyter_serving.errors import (
    InvalidState,
    ResourceDoesNotExist,
    ServingError,
    TemporarilyUnavailable,
)
from jupyter_serving.model.states import ABORTED, FAILED, IN_PROGRESS

if TYPE_CHECKING:
    from jupyter_serving.control.endpoint import Endpoint

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
    """Answers invocations for the endpoints a lookup function finds."""

    def __init__(
        self,
        endpoint: Callable[[str], Endpoint],
        capture: Callable[[], InferenceCapture | None],
        request_timeout_s: float,
    ) -> None:
        self._endpoint = endpoint
        self._capture = capture
        self.request_timeout_s = request_timeout_s
        # Row encoders per (table, endpoint, served entity, model, version): see capture.row.RowEncoder.
        self._row_encoders: dict[tuple[Any, ...], RowEncoder] = {}

    async def invoke(
        self,
        name: str,
        served: str | None,
        content_type: str,
        body: bytes,
        routing_key: str | None = None,
        request_id: str = "",
    ) -> Invocation:
        endpoint = self._endpoint(name)
        timeout = self.request_timeout_s
        arrived_ms, started = now_ms(), time.perf_counter()
        table = endpoint.routing or await _wait_routable(endpoint, timeout)
        deployment = _choose(table, name, served, routing_key)
        request = ScoringRequest(content_type, body)
        try:
            try:
                reply = await deployment.invoke(request, timeout)
            except Retired:  # an update swapped routing after this request chose its entity
                table = endpoint.routing or table
                deployment = _choose(table, name, served, routing_key, retired=True)
                reply = await deployment.invoke(request, timeout - (time.perf_counter() - started))
        except ServingError as exc:
            await self._account(endpoint, table, deployment, request_id, arrived_ms, started, body, exc)
            raise
        await self._account(endpoint, table, deployment, request_id, arrived_ms, started, body, reply)
        return Invocation(
            reply.status, reply.body, deployment.name, reply.execution_ms, reply.client_request_id
        )

    async def _account(
        self,
        endpoint: Endpoint,
        table: RoutingTable,
        deployment: Deployment,
        request_id: str,
        arrived_ms: int,
        started: float,
        body: bytes,
        outcome: ScoringReply | ServingError,
    ) -> None:
        """Metrics and the inference-table row for one answered request, whether it failed or not."""
        elapsed = time.perf_counter() - started
        if isinstance(outcome, ServingError):
            status, response, batch = outcome.http_status, json.dumps(outcome.to_json()), None
            execution_ms, client_request_id = elapsed * 1000, _client_request_id(body)
        else:
            status, response, batch = outcome.status, outcome.body.decode("utf-8", "replace"), outcome.batch
            execution_ms, client_request_id = outcome.execution_ms, outcome.client_request_id
        endpoint.metrics.observe(deployment.name, status, elapsed, batch)
        if table.capture_path is None:
            return
        encoder = self._encoder(table.capture_path, endpoint.name, deployment)
        payload = encoder.encode(
            request_id,
            client_request_id,
            arrived_ms,
            status,
            round(execution_ms),
            body.decode("utf-8", "replace"),
            response,
        )
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


async def _wait_routable(endpoint: Endpoint, timeout: float) -> RoutingTable:
    """Hold a request while the endpoint's first config deploys, instead of failing it."""
    if not endpoint.settled.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(endpoint.settled.wait(), timeout)
    if endpoint.routing is not None:
        return endpoint.routing
    if endpoint.record.update.state == IN_PROGRESS:
        raise TemporarilyUnavailable(
            f"Endpoint '{endpoint.name}' is still deploying; retry shortly.", headers={"Retry-After": "1"}
        )
    failed = [d.status() for d in endpoint.active.values()]
    reasons = [s.message for s in failed if s.state in (FAILED, ABORTED) and s.message]
    reason = reasons[0] if reasons else endpoint.record.update.message
    raise InvalidState(f"Endpoint '{endpoint.name}' is not ready: {reason or 'it has no deployed config.'}")


def _client_request_id(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("client_request_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
