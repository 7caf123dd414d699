"""The endpoint manager: control-plane operations and the reconciler that makes them real.

Creating an endpoint, updating its config and recovering after a restart are one code path, a
*rollout*: start replica sets for the entities the new config needs (reusing sets whose runtime
key is unchanged), wait until all are ready, then swap the routing table in one assignment and
retire the sets the new config no longer uses after they drain. A rollout that fails or is
cancelled stops only what it started, so the previous config keeps serving throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import getpass
import json
import logging
import os
import secrets
import stat
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_serving.backends.local.environments import EnvironmentCache, worker_path
from jupyter_serving.backends.local.gpus import GpuAllocator
from jupyter_serving.backends.local.gpus import discover as discover_gpus
from jupyter_serving.backends.local.replica import WarmPool, WorkerReply
from jupyter_serving.backends.local.replica_set import (
    ABORTED,
    FAILED,
    READY,
    DeployFailed,
    ReplicaSet,
    Retired,
    SetOptions,
    Spawner,
)
from jupyter_serving.capture import (
    InferenceCapture,
    RowEncoder,
    SpoolWriteError,
    payload_table_path,
    request_metadata,
)
from jupyter_serving.control.registry import ModelRegistry
from jupyter_serving.control.store import (
    IN_PROGRESS,
    NOT_UPDATING,
    UPDATE_CANCELED,
    UPDATE_FAILED,
    EndpointRecord,
    EndpointStore,
)
from jupyter_serving.dataplane.metrics import EndpointMetrics
from jupyter_serving.dataplane.router import RoutingTable
from jupyter_serving.errors import (
    InvalidState,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
    ServingError,
    TemporarilyUnavailable,
)
from jupyter_serving.model.config import EndpointConfig, ServedEntity, parse_config, parse_create
from jupyter_serving.policy.autoscaler import ScalingPolicy
from jupyter_serving.settings import ServingSettings

log = logging.getLogger("jupyter_serving")

MAX_SOCKET_DIR = 80  # AF_UNIX paths are limited to 108 bytes; leave room for the file name
LOG_TAIL_BYTES = 64 * 1024


def now_ms() -> int:
    return int(time.time() * 1000)


class Endpoint:
    """One endpoint at runtime: its stored record, its replica sets and its routing table."""

    def __init__(self, record: EndpointRecord) -> None:
        self.record = record
        self.routing: RoutingTable | None = None
        self.active_sets: dict[str, ReplicaSet] = {}
        self.pending_sets: dict[str, ReplicaSet] = {}
        self.rollout: asyncio.Task[None] | None = None
        self.settled = asyncio.Event()  # set whenever a rollout ends, whatever its outcome
        self.metrics = EndpointMetrics(self.all_sets)

    @property
    def name(self) -> str:
        return self.record.name

    def all_sets(self) -> Iterable[ReplicaSet]:
        seen = {id(s): s for s in (*self.active_sets.values(), *self.pending_sets.values())}
        return seen.values()

    def entity_state(self, served: str, pending: bool) -> tuple[str, str, dict[str, Any]]:
        """(deployment state, message, local runtime info) of one served entity."""
        sets = self.pending_sets if pending else self.active_sets
        rset = sets.get(served)
        if rset is not None:
            return rset.state, rset.message, rset.describe()
        stored = self.record.pending_states.get(served) if pending else None
        if stored:
            return stored[0], stored[1], {"replicas": 0, "ready_replicas": 0}
        return "DEPLOYMENT_CREATING", "Waiting to be deployed.", {"replicas": 0, "ready_replicas": 0}

    @property
    def ready(self) -> bool:
        return self.routing is not None and all(s.state == READY for s in self.routing.sets.values())


@dataclass(slots=True)
class Invocation:
    status: int
    body: bytes
    served_entity: str
    execution_ms: float
    client_request_id: str | None


class EndpointManager:
    """Owns every endpoint of one server: the store, the registry, the workers."""

    def __init__(self, settings: ServingSettings) -> None:
        self.settings = settings
        self.state_dir = settings.state_path
        self.endpoints: dict[str, Endpoint] = {}
        self.registry = ModelRegistry()
        self.store: EndpointStore | None = None
        self.pool: WarmPool | None = None
        self.spawner: Spawner | None = None
        self.environments: EnvironmentCache | None = None
        self.capture: InferenceCapture | None = None
        # Row encoders per (table, endpoint, served entity, model, version): see capture.row.RowEncoder.
        self._row_encoders: dict[tuple[Any, ...], RowEncoder] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starting: asyncio.Task[None] | None = None
        self._lock: Any = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def started(self) -> bool:
        task = self._starting
        return task is not None and task.done() and not task.cancelled() and task.exception() is None

    async def start(self) -> None:
        """Start once, whoever asks first: the host's start hook, or the first request if a host
        (such as pytest-jupyter's server) never runs extension start hooks. A failed start is tried
        again by the next caller, so each request reports why the server cannot serve."""
        task = self._starting
        if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
            self._starting = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_state_dir()
        self.store = EndpointStore(self.state_dir / "endpoints.sqlite")
        log_dir = self.state_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        self.pool = WarmPool(self.settings.warm_pool_size, log_dir / "warm-pool.log")
        envs = self.settings.env_cache_path
        self.environments = EnvironmentCache(
            envs, self.settings.env_cache_max_bytes, self.settings.deploy_timeout_s
        )
        self.spawner = Spawner(
            self.pool,
            self._socket_dir(),
            log_dir,
            self.settings.deploy_timeout_s,
            {"max_batch_size": self.settings.max_batch_size, "fast_path": self.settings.fast_path},
            GpuAllocator(discover_gpus(self.settings.gpus)),
            self.environments,
            self.settings.env_manager,
            worker_path(envs),
        )
        self.pool.start()
        self.registry.warm_up()
        self.capture = InferenceCapture(
            self.state_dir / "capture-spool",
            flush_interval_s=self.settings.capture_flush_s,
            flush_rows=self.settings.capture_flush_rows,
            log_path=log_dir / "capture.log",
        )
        await self.capture.start()  # its service commits rows a killed predecessor left in the spool
        self._spawn(self._autoscale_loop())
        for record in self.store.load_all():
            endpoint = Endpoint(record)
            self.endpoints[record.name] = endpoint
            self._spawn(self._recover(endpoint))

    def _socket_dir(self) -> Path:
        path = self.state_dir / "sockets"
        if len(str(path)) > MAX_SOCKET_DIR:
            path = Path(tempfile.mkdtemp(prefix="jupyter-serving-"))
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(stat.S_IRWXU)  # workers' sockets are reachable by this user only
        for stale in path.glob("*.sock"):  # left by a previous server of this state dir that was killed
            stale.unlink(missing_ok=True)
        return path

    def _lock_state_dir(self) -> None:
        """One server per state dir: two would fight over endpoints, sockets and spools."""
        self._lock = open(self.state_dir / "server.lock", "a+")  # noqa: SIM115 (held for the server's life)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.seek(0)
            owner = self._lock.read().strip() or "another process"
            raise RuntimeError(f"State dir {self.state_dir} is in use by another server ({owner}).") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f"pid {os.getpid()}")
        self._lock.flush()

    async def stop(self) -> None:
        """Stop every worker; the desired state stays in the store for the next start."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(s.stop(drain_timeout_s=5.0) for e in self.endpoints.values() for s in e.all_sets())
        )
        if self.spawner is not None:
            await self.spawner.pools.stop()  # the server's warm pool and each environment's
        if self.environments is not None:
            self.environments.close()
        if self.capture is not None:
            await self.capture.stop()
        self.registry.close()
        if self.store is not None:
            self.store.close()
        if self._lock is not None:
            self._lock.close()  # releases the state dir for the next server

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _save(self, endpoint: Endpoint) -> None:
        if self.endpoints.get(endpoint.name) is not endpoint:
            return  # deleted meanwhile (e.g. its cancelled rollout finishing): never resurrect it
        endpoint.record.last_updated_timestamp = now_ms()
        assert self.store is not None
        self.store.save(endpoint.record)

    # ----------------------------------------------------------------- control plane
    def get(self, name: str) -> Endpoint:
        endpoint = self.endpoints.get(name)
        if endpoint is None:
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        return endpoint

    def list(self) -> list[Endpoint]:
        return sorted(self.endpoints.values(), key=lambda e: e.name)

    async def create(self, body: Any, creator: str | None = None) -> Endpoint:
        request = parse_create(body)
        request = dataclasses.replace(request, config=_capture_defaults(request.config, request.name))
        if request.name in self.endpoints:
            raise ResourceAlreadyExists(f"Endpoint with name '{request.name}' already exists.")
        await self.registry.validate(request.config)
        if request.name in self.endpoints:  # created by a concurrent call while we looked models up
            raise ResourceAlreadyExists(f"Endpoint with name '{request.name}' already exists.")
        ts = now_ms()
        record = EndpointRecord(
            name=request.name,
            id=secrets.token_hex(16),
            creator=creator or _default_creator(),
            creation_timestamp=ts,
            last_updated_timestamp=ts,
            description=request.description,
            tags=list(request.tags),
        )
        endpoint = Endpoint(record)
        self.endpoints[record.name] = endpoint
        self._begin_update(endpoint, request.config)
        return endpoint

    async def update_config(self, name: str, body: Any) -> Endpoint:
        endpoint = self.get(name)
        if endpoint.record.config_update == IN_PROGRESS:
            raise ResourceConflict(
                f"Endpoint '{name}' already has an update in progress; wait for it to finish or cancel it."
            )
        config = _capture_defaults(parse_config(_with_previous_capture(body, endpoint.record.config)), name)
        await self.registry.validate(config)
        if endpoint.record.config_update == IN_PROGRESS:
            raise ResourceConflict(f"Endpoint '{name}' already has an update in progress.")
        self._begin_update(endpoint, config)
        return endpoint

    async def cancel_update(self, name: str) -> Endpoint:
        endpoint = self.get(name)
        if endpoint.record.config_update != IN_PROGRESS or endpoint.rollout is None:
            raise InvalidState(f"Endpoint '{name}' has no config update in progress to cancel.")
        endpoint.rollout.cancel()
        await asyncio.gather(endpoint.rollout, return_exceptions=True)
        return endpoint

    async def delete(self, name: str) -> None:
        endpoint = self.get(name)
        del self.endpoints[name]
        assert self.store is not None
        self.store.delete(name)
        if endpoint.rollout is not None:
            endpoint.rollout.cancel()
            await asyncio.gather(endpoint.rollout, return_exceptions=True)
        endpoint.routing = None
        await asyncio.gather(*(s.stop(drain_timeout_s=10.0) for s in endpoint.all_sets()))

    def build_logs(self, name: str, served: str) -> str:
        """How the entity's Python environment was chosen, and its uv build output."""
        return self.logs(name, served, suffix=".build.log")

    def logs(self, name: str, served: str, suffix: str = ".log") -> str:
        endpoint = self.get(name)
        known = {
            e["name"]
            for cfg in (endpoint.record.config, endpoint.record.pending)
            if cfg
            for e in _entities(cfg)
        }
        if served not in known:
            raise ResourceDoesNotExist(f"Served entity '{served}' does not exist in endpoint '{name}'.")
        assert self.spawner is not None
        path = self.spawner.log_path(name, served, suffix)
        if not path.exists():  # no replica of it has started yet
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")

    # ----------------------------------------------------------------- rollouts
    def _begin_update(self, endpoint: Endpoint, config: EndpointConfig) -> None:
        record = endpoint.record
        record.pending = config.to_json()
        record.pending_version = record.config_version + 1
        record.pending_start_time = now_ms()
        record.pending_states = {}
        record.config_update = IN_PROGRESS
        record.update_message = ""
        for entity in config.served_entities:
            record.entity_created.setdefault(entity.name, record.pending_start_time)
        self._save(endpoint)
        if endpoint.routing is None:
            endpoint.settled.clear()
        endpoint.rollout = self._spawn(self._rollout(endpoint, config, record.pending_version))

    async def _rollout(self, endpoint: Endpoint, config: EndpointConfig, version: int) -> None:
        reusable = {s.key: s for s in endpoint.active_sets.values() if s.state == READY}
        new_sets: dict[str, ReplicaSet] = {}
        started: list[ReplicaSet] = []
        for entity in config.served_entities:
            rset = reusable.pop(entity.runtime_key, None)
            if rset is None:
                rset = self._new_set(endpoint.name, entity)
                started.append(rset)
            rset.entity, rset.policy = entity, self._policy(entity)
            new_sets[entity.name] = rset
        endpoint.pending_sets = new_sets
        try:
            await self._deploy_all(started)
        except asyncio.CancelledError:
            await self._end_rollout(endpoint, started, UPDATE_CANCELED, "The config update was canceled.")
            return
        except DeployFailed as exc:
            await self._end_rollout(endpoint, started, UPDATE_FAILED, str(exc))
            return
        await self._ensure_table(config)
        self._activate(endpoint, config, version, new_sets)

    async def _deploy_all(self, sets: list[ReplicaSet]) -> None:
        await self._resolve_models(sets)
        results = await asyncio.gather(*(s.deploy() for s in sets), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            for rset in sets:
                if rset.state != FAILED:
                    rset.abort(
                        "Deployment aborted because another served entity of this config failed to deploy."
                    )
            first = failed[0]
            raise first if isinstance(first, DeployFailed) else DeployFailed(repr(first))

    async def _resolve_models(self, sets: list[ReplicaSet]) -> None:
        try:
            uris = await self.registry.load_uris([s.entity for s in sets])
        except Exception as exc:  # workers can still resolve models:/ URIs themselves, only slower
            log.warning("could not resolve model locations, workers will: %s", exc)
            return
        for rset, uri in zip(sets, uris, strict=True):
            rset.load_uri = uri

    def _new_set(self, endpoint: str, entity: ServedEntity) -> ReplicaSet:
        options = SetOptions(self.settings.cold_start_queue_size, self.settings.memory_headroom_bytes)
        return ReplicaSet(endpoint, entity, self._spawner, self._policy(entity), options)

    def _policy(self, entity: ServedEntity) -> ScalingPolicy:
        low, high = entity.concurrency_range
        return ScalingPolicy.from_range(
            low,
            high,
            concurrency=self.settings.replica_concurrency,
            scale_to_zero=entity.scale_to_zero_enabled,
            scale_down_delay_s=self.settings.scale_down_delay_s,
            idle_s=self.settings.scale_to_zero_idle_s,
        )

    async def _autoscale_loop(self) -> None:
        """The periodic half of autoscaling (scale-down, scale-to-zero); scale-up is on the request path."""
        while True:
            await asyncio.sleep(self.settings.autoscale_interval_s)
            now = time.monotonic()
            for endpoint in list(self.endpoints.values()):
                for rset in endpoint.active_sets.values():
                    rset.autoscale(now)

    def _activate(
        self, endpoint: Endpoint, config: EndpointConfig, version: int, new_sets: dict[str, ReplicaSet]
    ) -> None:
        """Swap routing to the new config in one step, then retire what it no longer uses."""
        retired = [s for s in endpoint.active_sets.values() if all(s is not n for n in new_sets.values())]
        endpoint.routing = self._routing_table(config, version, new_sets)
        endpoint.active_sets, endpoint.pending_sets = new_sets, {}
        endpoint.settled.set()
        record = endpoint.record
        record.config, record.config_version = config.to_json(), version
        record.pending = record.pending_version = record.pending_start_time = None
        record.config_update, record.update_message, record.pending_states = NOT_UPDATING, "", {}
        self._save(endpoint)
        for rset in retired:
            self._spawn(rset.stop(drain_timeout_s=self.settings.request_timeout_s))

    async def _end_rollout(
        self, endpoint: Endpoint, started: list[ReplicaSet], outcome: str, message: str
    ) -> None:
        record = endpoint.record
        record.config_update, record.update_message = outcome, message
        if outcome == UPDATE_CANCELED:
            record.pending = record.pending_version = record.pending_start_time = None
        else:
            record.pending_states = {s.name: [s.state, s.message] for s in endpoint.pending_sets.values()}
        endpoint.pending_sets = {}
        self._save(endpoint)
        endpoint.settled.set()
        await asyncio.gather(*(s.stop(drain_timeout_s=5.0) for s in started), return_exceptions=True)

    async def _recover(self, endpoint: Endpoint) -> None:
        """Bring a stored endpoint back after a restart: its active config, then any pending update."""
        record = endpoint.record
        if record.config is not None:
            config = parse_config(record.config)
            sets = {e.name: self._new_set(endpoint.name, e) for e in config.served_entities}
            endpoint.active_sets = sets
            try:
                await self._deploy_all(list(sets.values()))
            except DeployFailed as exc:
                log.error("endpoint %s could not be restored: %s", endpoint.name, exc)
                endpoint.settled.set()
                return
            await self._ensure_table(config)
            endpoint.routing = self._routing_table(config, record.config_version, sets)
            endpoint.settled.set()
        if record.config_update == IN_PROGRESS and record.pending is not None:
            pending = parse_config(record.pending)
            endpoint.rollout = asyncio.current_task()  # type: ignore[assignment]
            await self._rollout(endpoint, pending, record.pending_version or record.config_version + 1)

    def _routing_table(
        self, config: EndpointConfig, version: int, sets: dict[str, ReplicaSet]
    ) -> RoutingTable:
        routes = tuple((r.served_model_name, r.traffic_percentage) for r in config.routes)
        return RoutingTable(version, sets, routes, self.table_path(config.auto_capture_config))

    def table_path(self, capture: dict[str, Any] | None) -> Path | None:
        """Where an enabled auto_capture_config writes: <catalog root>/<catalog>/<schema>/<prefix>_payload."""
        if not capture or not capture.get("enabled", True):
            return None
        return payload_table_path(
            self.settings.catalog_path,
            capture["catalog_name"],
            capture["schema_name"],
            capture["table_name_prefix"],
        )

    async def _ensure_table(self, config: EndpointConfig) -> None:
        path = self.table_path(config.auto_capture_config)
        if path is not None and self.capture is not None:
            try:
                await self.capture.ensure_table(path)
            except Exception:  # reported as the table's status; serving goes on
                log.exception("could not create the inference table %s", path)

    def describe_capture(self, capture: dict[str, Any]) -> dict[str, Any]:
        """auto_capture_config as Databricks reports it, with the payload table's state (and local path)."""
        prefix = capture.get("table_name_prefix", "")
        table: dict[str, Any] = {"name": f"{prefix}_payload"}
        path = self.table_path(capture)
        if path is None:
            table["status"] = "DISABLED"
        else:
            assert self.capture is not None
            table["status"], table["status_message"] = self.capture.table_status(path)
            table["path"] = str(path)
        return {**capture, "state": {"payload_table": table}}

    @property
    def _spawner(self) -> Spawner:
        assert self.spawner is not None, "the manager is not started"
        return self.spawner

    # ----------------------------------------------------------------- data plane
    async def invoke(
        self,
        name: str,
        served: str | None,
        content_type: str,
        body: bytes,
        routing_key: str | None = None,
        request_id: str = "",
    ) -> Invocation:
        endpoint = self.get(name)
        timeout = self.settings.request_timeout_s
        arrived_ms, started = now_ms(), time.perf_counter()
        table = endpoint.routing or await self._wait_routable(endpoint, timeout)
        if served is None:
            rset = table.choose(routing_key)
        elif (rset := table.sets.get(served)) is None:
            raise ResourceDoesNotExist(f"Served entity '{served}' does not exist in endpoint '{name}'.")
        try:
            try:
                replica = await rset.acquire(timeout)
            except Retired:  # an update swapped routing after this request chose its entity
                table = endpoint.routing or table
                rset = table.sets.get(served) if served else table.choose(routing_key)
                if rset is None:
                    raise ResourceDoesNotExist(
                        f"Served entity '{served}' was removed from endpoint '{name}'."
                    ) from None
                replica = await rset.acquire(timeout)
            reply = await replica.invoke(content_type, body, timeout - (time.perf_counter() - started))
        except ServingError as exc:
            await self._account(endpoint, table, rset, request_id, arrived_ms, started, body, exc)
            raise
        await self._account(endpoint, table, rset, request_id, arrived_ms, started, body, reply)
        return Invocation(reply.status, reply.body, rset.name, reply.execution_ms, reply.client_request_id)

    async def _account(
        self,
        endpoint: Endpoint,
        table: RoutingTable,
        rset: ReplicaSet,
        request_id: str,
        arrived_ms: int,
        started: float,
        body: bytes,
        outcome: WorkerReply | ServingError,
    ) -> None:
        """Metrics and the inference-table row for one answered request, whether it failed or not."""
        elapsed = time.perf_counter() - started
        if isinstance(outcome, ServingError):
            status, response, batch = outcome.http_status, json.dumps(outcome.to_json()), None
            execution_ms, client_request_id = elapsed * 1000, _client_request_id(body)
        else:
            status, response, batch = outcome.status, outcome.body.decode("utf-8", "replace"), outcome.batch
            execution_ms, client_request_id = outcome.execution_ms, outcome.client_request_id
        endpoint.metrics.observe(rset.name, status, elapsed, batch)
        if table.capture_path is None:
            return
        entity = rset.entity
        key = (table.capture_path, endpoint.name, entity.name, entity.entity_name, entity.entity_version)
        if (encoder := self._row_encoders.get(key)) is None:
            metadata = request_metadata(
                endpoint.name, entity.entity_name, entity.entity_version or "", entity.name
            )
            encoder = self._row_encoders[key] = RowEncoder(table.capture_path, metadata)
        payload = encoder.encode(
            request_id,
            client_request_id,
            arrived_ms,
            status,
            round(execution_ms),
            body.decode("utf-8", "replace"),
            response,
        )
        await self._capture(payload)

    async def _capture(self, payload: bytes) -> None:
        """Spool the inference-table row durably before the client hears back (group commit)."""
        assert self.capture is not None
        try:
            await self.capture.record_json(payload)
        except SpoolWriteError as exc:
            log.error("inference table spool failed: %s", exc)
            raise TemporarilyUnavailable(
                "The request was scored, but its inference-table row could not be stored durably; retry.",
                headers={"Retry-After": "1"},
            ) from None

    async def _wait_routable(self, endpoint: Endpoint, timeout: float) -> RoutingTable:
        """Hold a request while the endpoint's first config deploys, instead of failing it."""
        if not endpoint.settled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(endpoint.settled.wait(), timeout)
        if endpoint.routing is not None:
            return endpoint.routing
        if endpoint.record.config_update == IN_PROGRESS:
            raise TemporarilyUnavailable(
                f"Endpoint '{endpoint.name}' is still deploying; retry shortly.", headers={"Retry-After": "1"}
            )
        failed = [s for s in endpoint.active_sets.values() if s.state in (FAILED, ABORTED)]
        reason = failed[0].message if failed else endpoint.record.update_message
        raise InvalidState(
            f"Endpoint '{endpoint.name}' is not ready: {reason or 'it has no deployed config.'}"
        )

    async def registered_models(self) -> list[dict[str, Any]]:
        return await self.registry.registered_models()


def _default_creator() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "local-user"


def _entities(config: dict[str, Any]) -> list[dict[str, Any]]:
    return config.get("served_entities") or config.get("served_models") or []


def _client_request_id(body: bytes) -> str | None:
    try:
        value = json.loads(body).get("client_request_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _with_previous_capture(body: Any, previous: dict[str, Any] | None) -> Any:
    """Databricks keeps the previous auto_capture_config when an update omits it, and `{"enabled": false}`
    alone disables it in place; the table's names carry over either way."""
    prev = (previous or {}).get("auto_capture_config")
    if not isinstance(body, dict) or not prev:
        return body
    capture = body.get("auto_capture_config")
    if capture is None:
        return {**body, "auto_capture_config": prev}
    if isinstance(capture, dict):
        names = {k: v for k, v in prev.items() if k != "enabled"}
        return {**body, "auto_capture_config": {**names, **capture}}
    return body


def _capture_defaults(config: EndpointConfig, endpoint_name: str) -> EndpointConfig:
    """table_name_prefix defaults to the endpoint name, as on Databricks."""
    capture = config.auto_capture_config
    if capture is None or "table_name_prefix" in capture:
        return config
    return dataclasses.replace(config, auto_capture_config={**capture, "table_name_prefix": endpoint_name})
