"""The observer: a periodic task that samples every endpoint into its metrics history and events.

It only reads what the manager exposes (`endpoints`, each endpoint's `record`, `entity_status`,
`metrics` and deployments' typed status), on the event loop between requests, so serving pays nothing per
request for the charts: the cost is one pass over the endpoints every `interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from jupyter_serving.backends.base import Deployment, ProcessUsage
from jupyter_serving.model.config import EndpointConfig
from jupyter_serving.monitoring.events import EntitySnapshot, EventLog, Snapshot, diff, event
from jupyter_serving.monitoring.history import Counters, EndpointHistory, Live

log = logging.getLogger("jupyter_serving")

TABLE_TTL_S = 3.0


class Observer:
    def __init__(
        self, manager: Any, events_dir: Path, interval_s: float, retention_s: float, event_limit: int
    ) -> None:
        self.manager = manager
        self.interval_s = interval_s
        self.retention_s = retention_s
        self.capacity = max(2, int(retention_s / interval_s) + 1) if interval_s > 0 else 2
        self.events = EventLog(events_dir, event_limit)
        self.histories: dict[str, EndpointHistory] = {}
        self._snapshots: dict[str, Snapshot] = {}
        self._cold_since: dict[str, dict[str, int]] = {}
        self._processes: dict[int, tuple[float, float]] = {}  # pid -> (monotonic, cpu seconds) last read
        self._seen: set[int] = set()
        self._last_tick: float | None = None
        self.ticks = 0
        self.busy_s = 0.0  # time spent sampling, on the event loop: the history's whole cost
        self._task: asyncio.Task[None] | None = None
        self._tables: dict[tuple[Path, int, str | None], tuple[float, asyncio.Future[dict[str, Any]]]] = {}

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self._task is None and self.interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            started = time.perf_counter()
            try:
                self.tick()
            except Exception:  # an observer bug must never take serving down with it
                log.exception("metrics history sampling failed")
            self.ticks += 1
            self.busy_s += time.perf_counter() - started
            await asyncio.sleep(self.interval_s)

    # ------------------------------------------------------------- reading
    def history(self, name: str, since_ms: int = 0) -> dict[str, Any]:
        history = self.histories.get(name) or EndpointHistory(self.capacity)
        sampler = {"ticks": self.ticks, "busy_s": round(self.busy_s, 6)}
        return {
            "interval_s": self.interval_s,
            "retention_s": self.retention_s,
            "sampler": sampler,
            **history.to_json(since_ms),
        }

    async def table(self, path: Path | None, limit: int, control: str | None = None) -> dict[str, Any]:
        """The inference table's latest rows and A/B verdict, computed in a thread (pandas) and
        shared for `TABLE_TTL_S` by every page that asks, so polling browsers cost one read."""
        if path is None:
            return {"path": None, "requests": 0, "rows": [], "comparison": None, "message": "Capture is off."}
        key = (path, limit, control)
        cached = self._tables.get(key)
        if cached is None or time.monotonic() - cached[0] > TABLE_TTL_S:
            summary = asyncio.ensure_future(_summary(path, limit, control))
            cached = self._tables[key] = (time.monotonic(), summary)
        return {"path": str(path), **(await asyncio.shield(cached[1]))}

    # ------------------------------------------------------------- sampling
    def tick(self) -> None:
        now = time.monotonic()
        seconds = now - self._last_tick if self._last_tick is not None else self.interval_s
        self._last_tick = now
        timestamp_ms = int(time.time() * 1000)
        endpoints = dict(self.manager.endpoints)
        for name in [n for n in self.histories if n not in endpoints]:
            self._forget(name)
        self._seen = set()
        for name, endpoint in endpoints.items():
            self._observe(name, endpoint, timestamp_ms, seconds)
        for gone in set(self._processes) - self._seen:  # workers that exited or scaled away
            del self._processes[gone]

    def _observe(self, name: str, endpoint: Any, timestamp_ms: int, seconds: float) -> None:
        history = self.histories.get(name)
        before = self._snapshots.get(name)
        if history is None:
            history = self.histories[name] = EndpointHistory(self.capacity)
            self.events.load(name)
            if not self.events.get(name):
                created = endpoint.record.creation_timestamp or timestamp_ms  # when it happened
                self.events.append(name, [event(created, "ENDPOINT_CREATED", "Endpoint created.")])
                if endpoint.record.update.started_ms is not None:
                    # Created by this server: compare with the endpoint as created (no config, no
                    # update), so an update that began and ended before this first look is logged
                    # too; clients read failures from these events (a model that fails to load
                    # within one sampling interval would otherwise leave no UPDATE_FAILED).
                    before = Snapshot(created, 0, "NOT_UPDATING", "", None)
        snapshot = self._snapshot(endpoint, timestamp_ms)
        cold = self._cold_since.setdefault(name, {})
        self.events.append(name, diff(before, snapshot, cold))
        self._snapshots[name] = snapshot
        history.record(timestamp_ms, seconds, self._readings(endpoint), _split(endpoint))

    def _forget(self, name: str) -> None:
        self.histories.pop(name, None)
        self._snapshots.pop(name, None)
        self._cold_since.pop(name, None)
        self.events.forget(name)

    def _snapshot(self, endpoint: Any, timestamp_ms: int) -> Snapshot:
        record = endpoint.record
        active = _names(record.config)
        pending = _names(record.pending) if record.update.in_progress else []
        return Snapshot(
            timestamp_ms=timestamp_ms,
            config_version=record.config_version,
            config_update=record.update.state,
            update_message=record.update.message,
            pending_version=record.pending_version,
            active={n: _entity(endpoint, n, False) for n in active},
            pending={n: _entity(endpoint, n, True) for n in pending},
            update_started_ms=record.update.started_ms,
            update_changed_ms=record.update.changed_ms,
        )

    def _readings(self, endpoint: Any) -> dict[str, tuple[Counters, Live]]:
        counters = _counters(endpoint.metrics)
        deployments = dict(endpoint.active)
        names = set(deployments) | set(counters) | set(_names(endpoint.record.config))
        return {n: (counters.get(n, Counters()), self._live(deployments.get(n))) for n in names}

    def _live(self, deployment: Deployment | None) -> Live:
        if deployment is None:
            return Live()
        status = deployment.status()
        cpu, memory = self._usage(status.processes)
        gpu_memory = sum(g.memory_used_bytes for g in status.gpu_stats) if status.gpus else None
        return Live(
            replicas=status.replicas,
            ready_replicas=status.ready_replicas,
            starting_replicas=status.starting_replicas,
            queued_requests=status.queued,
            inflight_requests=status.inflight,
            cold_starts=status.cold_starts,
            cpu_percent=cpu,
            memory_bytes=memory,
            gpu_memory_bytes=gpu_memory,
        )

    def _usage(self, processes: tuple[ProcessUsage, ...]) -> tuple[float | None, int | None]:
        """CPU % (since this observer's previous reading of each process) and memory (PSS where the
        backend reads it, else RSS), summed over the processes the backend reports; a process seen
        first counts 0 % CPU."""
        if not processes:
            return None, None
        now = time.monotonic()
        cpu, memory = 0.0, 0
        for process in processes:
            before = self._processes.get(process.pid)
            if before is not None and now > before[0]:
                cpu += max(0.0, process.cpu_seconds - before[1]) / (now - before[0]) * 100
            self._processes[process.pid] = (now, process.cpu_seconds)
            memory += process.pss_bytes if process.pss_bytes is not None else process.rss_bytes
            self._seen.add(process.pid)
        return cpu, memory


async def _summary(path: Path, limit: int, control: str | None) -> dict[str, Any]:
    if not (path / "_delta_log").is_dir():
        return {"requests": 0, "rows": [], "comparison": None, "message": "No request was captured yet."}
    from jupyter_serving.tables.summary import table_summary

    try:
        return await asyncio.to_thread(table_summary, path, limit, control)
    except Exception as exc:  # shown on the page; the table may be mid-commit or unreadable
        log.warning("could not summarise the inference table %s: %s", path, exc)
        return {"requests": 0, "rows": [], "comparison": None, "message": f"Could not read the table: {exc}"}


def _names(config: EndpointConfig | None) -> list[str]:
    return [e.name for e in config.served_entities] if config else []


def _entity(endpoint: Any, name: str, pending: bool) -> EntitySnapshot:
    status = endpoint.entity_status(name, pending)
    return EntitySnapshot(
        state=status.state,
        message=status.message or "",
        replicas=status.replicas,
        ready_replicas=status.ready_replicas,
        cold_starts=status.cold_starts,
    )


def _split(endpoint: Any) -> dict[str, int]:
    config = endpoint.record.config
    return {r.served_model_name: r.traffic_percentage for r in config.routes} if config else {}


def _counters(metrics: Any) -> dict[str, Counters]:
    """Per-entity cumulative counters, read through prometheus_client's collector interface."""
    status: dict[str, dict[str, float]] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    batch: dict[str, list[float]] = {}
    for family in (*metrics.requests.collect(), *metrics.latency.collect(), *metrics.batch.collect()):
        for s in family.samples:
            entity = s.labels.get("served_entity", "")
            if s.name == "requests_total":
                status.setdefault(entity, {})[s.labels["status"]] = s.value
            elif s.name == "request_latency_seconds_bucket":
                buckets.setdefault(entity, []).append((float(s.labels["le"]), s.value))
            elif s.name in ("batch_size_sum", "batch_size_count"):
                batch.setdefault(entity, [0.0, 0.0])[s.name == "batch_size_count"] = s.value
    names = set(status) | set(buckets)
    return {n: Counters(status.get(n, {}), buckets.get(n, []), *batch.get(n, [0.0, 0.0])) for n in names}
