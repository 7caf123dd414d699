"""The endpoint manager: the control plane's operations (create, update, cancel, delete, logs).

It turns requests into desired state (the store) and starts rollouts (control/rollout.py) to make
that state real on the execution backend; it never touches a process or a socket itself. The
data plane (dataplane/invoke.py) answers invocations from the routing tables rollouts install in
each endpoint's lane. The manager builds none of its collaborators: the composition root
(jupyter_serving/compose.py) builds the backend, registry, capture and data plane and hands them in.
"""

from __future__ import annotations

import asyncio
import builtins  # `list` in this class's annotations is its method
import dataclasses
import fcntl
import getpass
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jupyter_serving.backends.base import Deployment, ExecutionBackend
from jupyter_serving.capture import InferenceCapture, payload_table_path
from jupyter_serving.control import rollout
from jupyter_serving.control.endpoint import Endpoint
from jupyter_serving.control.registry import ModelRegistry
from jupyter_serving.control.store import EndpointRecord, EndpointStore
from jupyter_serving.dataplane.invoke import DataPlane
from jupyter_serving.errors import (
    InvalidState,
    ResourceAlreadyExists,
    ResourceConflict,
    ResourceDoesNotExist,
)
from jupyter_serving.files import private_dir
from jupyter_serving.identity.secrets import SecretStore
from jupyter_serving.model.config import EndpointConfig, ServedEntity, parse_config, parse_create
from jupyter_serving.policy.autoscaler import ScalingPolicy
from jupyter_serving.settings import ServingSettings

log = logging.getLogger("jupyter_serving")
# Checks a parsed config against the grants of whoever the endpoint serves as (raises PermissionDenied).
Authorize = Callable[[EndpointConfig], Awaitable[None]]


def now_ms() -> int:
    return int(time.time() * 1000)


class EndpointManager:
    """Owns every endpoint of one server and the store; starts and stops the backend, registry and
    capture it is given, and opens each endpoint's lane in the data plane it is given."""

    def __init__(
        self,
        settings: ServingSettings,
        *,
        backend: ExecutionBackend,
        registry: ModelRegistry,
        capture: InferenceCapture,
        dataplane: DataPlane,
    ) -> None:
        self.settings = settings
        self.state_dir = settings.state_path
        self.endpoints: dict[str, Endpoint] = {}
        self.registry = registry
        self.backend = backend
        self.store: EndpointStore | None = None
        self.capture = capture
        self.dataplane = dataplane
        self.rollouts = rollout.RolloutContext(
            backend=self.backend,
            registry=self.registry,
            policy=self._policy,
            table_path=self.table_path,
            ensure_table=self._ensure_table,
            save=self._save,
            retire=self._retire,
            secrets=SecretStore(settings.state_path),
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._starting: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock: Any = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def drain_timeout_s(self) -> float:
        """How long a deployment taken out of service (retired by an update, or its endpoint deleted)
        may finish the requests already routed to it: the one drain setting. No request outlives
        request_timeout_s, so a longer drain would wait for nothing and a shorter one cut answers."""
        return self.settings.request_timeout_s

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
            task = self._starting = asyncio.get_running_loop().create_task(self._start())
        await asyncio.shield(task)

    async def _start(self) -> None:
        private_dir(self.state_dir)  # request bodies, environment_vars and secrets live below it
        self._lock_state_dir()
        self.store = EndpointStore(self.state_dir / "endpoints.sqlite")
        private_dir(self.settings.catalog_path)
        private_dir(self.state_dir / "logs")  # the capture's log; not every backend writes logs here
        await self.backend.start()
        self.registry.warm_up()
        await self.capture.start()  # its service commits rows a killed predecessor left in the spool
        for record in self.store.load_all():
            endpoint = Endpoint(record, self.dataplane)
            self.endpoints[record.name] = endpoint
            self._recover(endpoint)

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
        """Stop every worker; the desired state stays in the store for the next start, so an update
        that was in progress resumes when the server starts again (it is not canceled)."""
        self._stopping = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.backend.stop()
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
        if self._stopping:
            return  # rollouts cancelled by shutdown are not outcomes: the next start resumes them
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

    async def create(
        self,
        body: Any,
        creator: str | None = None,
        *,
        creator_key: str | None = None,
        authorize: Authorize | None = None,
    ) -> Endpoint:
        """`authorize` sees the parsed config once its models are known to exist (grants checks)."""
        request = parse_create(body)
        request = dataclasses.replace(request, config=_capture_defaults(request.config, request.name))
        if request.name in self.endpoints:
            raise ResourceAlreadyExists(f"Endpoint with name '{request.name}' already exists.")
        await self.registry.validate(request.config)
        if authorize is not None:
            await authorize(request.config)
        if request.name in self.endpoints:  # created by a concurrent call while we looked models up
            raise ResourceAlreadyExists(f"Endpoint with name '{request.name}' already exists.")
        ts = now_ms()
        record = EndpointRecord(
            name=request.name,
            id=secrets.token_hex(16),
            creator=creator or _default_creator(),
            creator_key=creator_key,
            creation_timestamp=ts,
            last_updated_timestamp=ts,
            description=request.description,
            tags=list(request.tags),
            **request.record_fields(),
        )
        endpoint = Endpoint(record, self.dataplane)
        self.endpoints[record.name] = endpoint
        self._begin_update(endpoint, request.config)
        return endpoint

    async def update_config(self, name: str, body: Any, *, authorize: Authorize | None = None) -> Endpoint:
        endpoint = self.get(name)
        self._check_not_updating(endpoint)
        config = _capture_defaults(parse_config(_with_previous_capture(body, endpoint.record.config)), name)
        await self.registry.validate(config)
        if authorize is not None:
            await authorize(config)
        if self.endpoints.get(name) is not endpoint:  # deleted while we looked models up
            raise ResourceDoesNotExist(f"Endpoint with name '{name}' does not exist.")
        self._check_not_updating(endpoint)
        self._begin_update(endpoint, config)
        return endpoint

    def _check_not_updating(self, endpoint: Endpoint) -> None:
        if endpoint.record.update.in_progress:
            raise ResourceConflict(
                f"Endpoint '{endpoint.name}' already has an update in progress; wait for it to finish "
                "or cancel it."
            )

    async def cancel_update(self, name: str) -> Endpoint:
        endpoint = self.get(name)
        if not endpoint.record.update.in_progress or endpoint.rollout is None:
            raise InvalidState(f"Endpoint '{name}' has no config update in progress to cancel.")
        endpoint.rollout.cancel()
        await asyncio.gather(endpoint.rollout, return_exceptions=True)
        return endpoint

    async def delete(self, name: str) -> None:
        endpoint = self.get(name)
        del self.endpoints[name]
        assert self.store is not None
        self.store.delete(name)
        self.dataplane.close_lane(endpoint.lane)  # drops its routing table: new requests get 404
        for task in (endpoint.rollout, endpoint.restoring):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        # Requests already routed to them are answered first (the drain), as when an update retires one.
        await asyncio.gather(*(d.stop(drain_timeout_s=self.drain_timeout_s) for d in endpoint.deployments()))

    async def build_logs(self, name: str, served: str) -> str:
        """How the entity's Python environment was chosen, and its build output."""
        return await self.logs(name, served, build=True)

    async def logs(self, name: str, served: str, *, build: bool = False) -> str:
        endpoint = self.get(name)
        record = endpoint.record
        known = {e.name for cfg in (record.config, record.pending) if cfg for e in cfg.served_entities}
        if served not in known:
            raise ResourceDoesNotExist(f"Served entity '{served}' does not exist in endpoint '{name}'.")
        logs = self.backend.logs(name, served, build=build)
        return logs if isinstance(logs, str) else await logs  # the Ray backend reads other nodes' logs

    # ----------------------------------------------------------------- rollouts
    def _begin_update(self, endpoint: Endpoint, config: EndpointConfig) -> None:
        version = endpoint.record.begin_update(config, now_ms())
        self._save(endpoint)
        if endpoint.routing is None:
            endpoint.settled.clear()
        endpoint.rollout = self._spawn(rollout.run(self.rollouts, endpoint, config, version))

    def _recover(self, endpoint: Endpoint) -> None:
        """Bring a stored endpoint back after a restart: its active config, then any pending update.

        Both run as their own tasks: a cancel-update during recovery cancels the pending update
        only, never the restore of the config that serves."""
        record = endpoint.record
        if record.config is not None:
            endpoint.restoring = self._spawn(rollout.restore(self.rollouts, endpoint))
        elif not record.update.in_progress:
            endpoint.wake_waiters()  # nothing to bring up: requests get INVALID_STATE, not a wait
        if record.update.in_progress:
            if record.pending is None:  # cannot happen with a store we wrote; never stay IN_PROGRESS
                record.fail_update("The pending config was lost.")
                self._save(endpoint)
                endpoint.wake_waiters()  # requests still wait for the restore, if one runs
                return
            endpoint.rollout = self._spawn(
                rollout.run(self.rollouts, endpoint, record.pending, record.resumed_version)
            )

    def _retire(self, deployments: builtins.list[Deployment]) -> None:
        for deployment in deployments:
            self._spawn(deployment.stop(drain_timeout_s=self.drain_timeout_s))

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

    async def _ensure_table(self, config: EndpointConfig, form: str = "legacy") -> None:
        path = self.table_path(config.auto_capture_config)
        if path is not None:
            try:
                await self.capture.ensure_table(path, form)
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
            table["status"], table["status_message"] = self.capture.table_status(path)
            table["path"] = str(path)
        return {**capture, "state": {"payload_table": table}}

    async def registered_models(self) -> builtins.list[dict[str, Any]]:
        return await self.registry.registered_models()

    async def registry_uris(self) -> dict[str, str]:
        return await self.registry.uris()


def _default_creator() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "local-user"


def _with_previous_capture(body: Any, previous: EndpointConfig | None) -> Any:
    """Databricks keeps the previous auto_capture_config when an update omits it, and `{"enabled": false}`
    alone disables it in place; the table's names carry over either way."""
    prev = previous.auto_capture_config if previous else None
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
