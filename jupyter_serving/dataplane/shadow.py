"""Shadow traffic: mirror a share of an endpoint's live requests to a served entity that takes none.

    live request -> route -> live answer -> live row (durable) -> reply to the client
                                                   \\-> Mirror.offer: chosen? -> bounded queue
    queue -> a few drain tasks -> shadow entity's deployment -> shadow row (best effort)

The client only ever gets the live answer: a mirrored request is queued *after* the live row is
accounted, by a non-blocking `offer`, and runs on its own tasks. The queue is bounded, so a slow or
failing shadow never piles up work behind live traffic: what does not fit is dropped and counted
(`shadow_dropped`), as is a shadow row the spool could not store. Capture durability applies to
the live row as today; shadow rows are best effort.

Which requests are mirrored is a pure function of the request id (`mirrored`), so a test can tell
in advance which requests a share selects, and a request is mirrored at most once.

Shadow rows land in a legacy payload table beside the live row: the same `databricks_request_id`
and `client_request_id`, the shadow entity's `served_entity_name`, its own latency and answer, and
``"shadow": "true"`` in `request_metadata`. An AI Gateway-form table has no `request_metadata`,
so nothing could tell a shadow row from a live one there: every Databricks-style query counting
requests or usage would count mirrored requests twice. Shadow calls still run against such an
endpoint (their outcome is counted in the metrics) but write no row.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_serving.backends.base import Deployment, ScoringReply, ScoringRequest
from jupyter_serving.capture import AI_GATEWAY, RowEncoder, SpoolWriteError, request_metadata
from jupyter_serving.capture.row import SHADOW_KEY
from jupyter_serving.errors import InvalidParameterValue, ServingError

if TYPE_CHECKING:
    from jupyter_serving.dataplane.invoke import DataPlane
    from jupyter_serving.dataplane.lane import EndpointLane
    from jupyter_serving.model.config import EndpointConfig

log = logging.getLogger("jupyter_serving")

QUEUE_SIZE = 64  # mirrored requests waiting for a drain task; more are dropped
CONCURRENCY = 2  # shadow calls in flight per endpoint: the shadow shares the live entities' cores


@dataclass(frozen=True, slots=True)
class ShadowConfig:
    """What `PUT .../shadow` stores: the entity that gets the mirrored requests, and their share."""

    served_entity_name: str
    percentage: int

    def to_json(self) -> dict[str, Any]:
        return {"served_entity_name": self.served_entity_name, "percentage": self.percentage}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ShadowConfig:
        return cls(str(doc["served_entity_name"]), int(doc["percentage"]))


def parse_shadow(body: Any, config: EndpointConfig | None, endpoint_name: str) -> ShadowConfig:
    """Validate a `PUT .../shadow` body against the endpoint's active config (400 on any fault)."""
    if not isinstance(body, dict):
        raise InvalidParameterValue("The request body must be a JSON object.")
    unknown = sorted(set(body) - {"served_entity_name", "percentage", "name"})
    if unknown:
        raise InvalidParameterValue(f"Unknown field(s) in the shadow config: {', '.join(unknown)}.")
    served = body.get("served_entity_name")
    if not isinstance(served, str) or not served:
        raise InvalidParameterValue("served_entity_name must name a served entity of the endpoint.")
    percentage = body.get("percentage")
    if isinstance(percentage, bool) or not isinstance(percentage, int) or not 0 <= percentage <= 100:
        raise InvalidParameterValue(f"percentage must be an integer from 0 to 100, got {percentage!r}.")
    if config is None or config.entity(served) is None:
        raise InvalidParameterValue(
            f"Served entity '{served}' does not exist in the config of endpoint '{endpoint_name}'."
        )
    live = {r.served_model_name: r.traffic_percentage for r in config.routes}.get(served, 0)
    if live > 0:
        raise InvalidParameterValue(
            f"Served entity '{served}' takes {live}% of the live traffic of endpoint "
            f"'{endpoint_name}': a shadow must take none (0% in traffic_config)."
        )
    return ShadowConfig(served, percentage)


def mirrored(request_id: str, percentage: int) -> bool:
    """Whether the request with this id is mirrored at `percentage`: CRC-32 of the id, mod 100.

    Deterministic (no process-salted `hash`), so a share selects the same requests in every run
    and on every host, and uniform over random request ids (uuid4). 0 and 100 need no hash."""
    if percentage >= 100 or percentage <= 0:
        return percentage >= 100
    return zlib.crc32(request_id.encode()) % 100 < percentage


@dataclass(slots=True)
class _Job:
    request: ScoringRequest
    request_id: str
    body: bytes


class Mirror:
    """One endpoint's shadow: its config, the bounded queue of mirrored requests, their tasks.

    Drain tasks start on demand (at most `CONCURRENCY`) and end when the queue is empty, so an
    endpoint that stops mirroring, or is deleted, leaves nothing running behind it.
    """

    def __init__(self, lane: EndpointLane, config: ShadowConfig) -> None:
        self.lane = lane
        self.config = config
        self._jobs: deque[_Job] = deque()
        self._draining = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._encoders: dict[tuple[Any, ...], RowEncoder] = {}
        # The queue-full counter's child, looked up on the first drop: a saturated endpoint drops
        # most mirrored requests, and `labels()` (a lock and a dict) was most of `offer`'s cost.
        self._queue_full: Any = None
        self._answered: dict[int, Any] = {}  # shadow_requests' child per status, likewise
        self.stopped = False

    def offer(
        self, dataplane: DataPlane, live: str, request: ScoringRequest, request_id: str, body: bytes
    ) -> None:
        """Queue a copy of a live request answered by `live`, if its id is chosen; never waits."""
        shadow = self.config.served_entity_name
        if live == shadow or not mirrored(request_id, self.config.percentage):
            return
        if len(self._jobs) >= QUEUE_SIZE or self.stopped:
            if self._queue_full is None:
                self._queue_full = self.lane.metrics.shadow_dropped.labels(shadow, "queue_full")
            self._queue_full.inc()
            return
        self._jobs.append(_Job(request, request_id, body))
        if self._draining < CONCURRENCY:
            self._draining += 1
            task = asyncio.get_running_loop().create_task(self._drain(dataplane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Drop what is queued (counted); the calls in flight finish (at most `CONCURRENCY`), as
        cancelling a call mid-way would leave its replica's connection in an unknown state."""
        self.stopped = True
        dropped, self._jobs = len(self._jobs), deque()
        if dropped:
            dropped_counter = self.lane.metrics.shadow_dropped
            dropped_counter.labels(self.config.served_entity_name, "stopped").inc(dropped)

    @property
    def queued(self) -> int:
        return len(self._jobs)

    async def _drain(self, dataplane: DataPlane) -> None:
        try:
            while self._jobs and not self.stopped:
                job = self._jobs.popleft()
                try:
                    await self._call(dataplane, job)
                except asyncio.CancelledError:
                    raise
                except Exception:  # best effort: a shadow must never take the data plane down
                    log.exception("shadow call for endpoint %s failed", self.lane.name)
        finally:
            self._draining -= 1

    async def _call(self, dataplane: DataPlane, job: _Job) -> None:
        shadow = self.config.served_entity_name
        metrics = self.lane.metrics
        table = self.lane.routing
        deployment = table.deployments.get(shadow) if table is not None else None
        if table is None or deployment is None:
            metrics.shadow_dropped.labels(shadow, "not_deployed").inc()
            return
        started_ms, started = int(time.time() * 1000), time.perf_counter()
        try:
            reply = await deployment.invoke(job.request, dataplane.request_timeout_s)
        except ServingError as exc:
            elapsed_ms = (time.perf_counter() - started) * 1000
            status, response = exc.http_status, json.dumps(exc.to_json())
            client_id = _client_request_id(job.body)
        else:
            elapsed_ms = reply.execution_ms
            status, response, client_id = reply.status, _response(reply), reply.client_request_id
        if (answered := self._answered.get(status)) is None:
            answered = self._answered[status] = metrics.shadow_requests.labels(shadow, str(status))
        answered.inc()
        if status >= 400:
            metrics.shadow_errors.labels(shadow).inc()
        if table.capture_path is None or table.capture_form == AI_GATEWAY:
            return  # no table, or one with no place to mark a shadow row (module docstring)
        encoder = self._encoder(table.capture_path, deployment)
        payload = encoder.encode(
            job.request_id, client_id, started_ms, status, round(elapsed_ms),
            job.body.decode("utf-8", "replace"), response,
        )  # fmt: skip
        capture = dataplane._capture()
        try:
            if capture is None:
                raise SpoolWriteError("capture is not running")
            await capture.record_json(payload)
        except SpoolWriteError as exc:
            metrics.shadow_dropped.labels(shadow, "row_not_stored").inc()
            log.warning("shadow row for endpoint %s not stored: %s", self.lane.name, exc)

    def _encoder(self, path: Path, deployment: Deployment) -> RowEncoder:
        entity = deployment.entity
        key = (path, entity.name, entity.entity_name, entity.entity_version)
        if (encoder := self._encoders.get(key)) is None:
            metadata = request_metadata(
                self.lane.name, entity.entity_name, entity.entity_version or "", entity.name
            )
            encoder = self._encoders[key] = RowEncoder(path, {**metadata, SHADOW_KEY: "true"})
        return encoder


def _response(reply: ScoringReply) -> str:
    return reply.body.decode("utf-8", "replace")


def _client_request_id(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("client_request_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
