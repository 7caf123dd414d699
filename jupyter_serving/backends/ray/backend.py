"""The Ray backend: each served entity's runtime is a Ray Serve application on a Ray cluster.

This server stays the ingress: requests go client -> this server (routing, traffic split, capture,
metrics, limits) -> a Serve deployment handle -> a replica anywhere on the cluster. What the
backend owns: the connection to the cluster (or a private one it starts), one control thread for
Serve's blocking calls, and a poller that reads Serve's status for every application of this
server, which deployments turn into their states and `status()`. Ray is imported only in `start()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_serving.backends.base import DeployFailed, DeploymentSpec
from jupyter_serving.backends.ray.options import (
    DEPLOYMENT_NAME,
    ReplicaSizing,
    look_back_s,
    metrics_push_s,
    replica_counts,
    runtime_env,
    server_prefix,
)
from jupyter_serving.backends.ray.publish import IngressPublisher
from jupyter_serving.backends.ray.settings import RayBackendSettings
from jupyter_serving.environments import requirements as reqs
from jupyter_serving.environments.cache import AUTO, LOCAL, MANAGERS, entity_manager
from jupyter_serving.files import private_dir
from jupyter_serving.policy.autoscaler import ScalingPolicy
from jupyter_serving.settings import ServingSettings

if TYPE_CHECKING:
    from jupyter_serving.backends.ray.deployment import RayDeployment
    from jupyter_serving.backends.ray.warm import WarmPool

log = logging.getLogger("jupyter_serving")

INSTALL_HINT = "pip install 'jupyter-serving[ray]'"
POLL_S = 0.5
DELETE_TIMEOUT_S = 60.0
LOG_TAIL_BYTES = 64 * 1024
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
HANDLE_PUSH_ENV = "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S"
REPLICA_PUSH_ENV = "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S"
NONCE_LEN = 6  # the random tail of an app name (RayDeployment): what differs between restarts
ADOPT_WAIT_S = 300.0  # at most this long, stale apps wait for the restores that may adopt them
T = TypeVar("T")


@dataclass(frozen=True)
class AppSnapshot:
    """One Serve application of this server as the last poll saw it."""

    status: str  # Serve's ApplicationStatus: DEPLOYING, RUNNING, DEPLOY_FAILED, UNHEALTHY, DELETING
    message: str
    replica_states: dict[str, int] = field(default_factory=dict)
    nodes: tuple[str, ...] = ()  # node ids of its live replicas

    @property
    def running(self) -> int:
        return replica_counts(self.replica_states)[0]

    @property
    def starting(self) -> int:
        return replica_counts(self.replica_states)[1]


def import_ray() -> tuple[Any, Any]:
    """Ray and Ray Serve, or a start-up error that says how to install them."""
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise RuntimeError(
            f"backend 'ray' needs Ray Serve, which is not installed ({exc}): {INSTALL_HINT}"
        ) from None
    return ray, serve


class RayBackend:
    """Ray Serve applications, one per served entity runtime, on a running or private Ray cluster."""

    def __init__(self, settings: ServingSettings, own: RayBackendSettings | None = None) -> None:
        self.settings = settings
        self.own = own if own is not None else RayBackendSettings(parent=settings)
        self.prefix = server_prefix(str(settings.state_path.expanduser().resolve()))
        self.sizing = ReplicaSizing(
            self.own.ray_replica_cpus, settings.max_batch_size, settings.cold_start_queue_size
        )
        probe = ScalingPolicy(1, 1, 1, False, settings.scale_down_delay_s, settings.scale_to_zero_idle_s)
        self.push_s = str(metrics_push_s(look_back_s(probe)))
        self.deployments: set[RayDeployment] = set()
        self.apps: dict[str, AppSnapshot] = {}  # this server's Serve applications, by name
        self.build_logs: dict[tuple[str, str], str] = {}
        self.app_names: dict[tuple[str, str], list[str]] = {}  # (endpoint, served) -> apps it ran as
        self.logs_dir: Path | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ray-control")
        self._private_dir: str | None = None
        self._poller: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Future[dict[str, AppSnapshot]] | None = None
        self._ray: Any = None
        self._serve: Any = None
        self._warm: WarmPool | None = None
        self.serve_status: Any = None  # the last poll's serve.status()
        # Apps a killed predecessor left: adopted by the deployments a restore asks for again (no
        # replica restart, no cold start); the rest are deleted once restores are over.
        self.adoptable: set[str] = set()
        self._started_at = 0.0
        self.manager: Any = None  # the EndpointManager, once the server's data plane attaches
        self.publisher: IngressPublisher | None = IngressPublisher(self) if self.own.ray_ingress else None

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        private_dir(self.settings.state_path / "logs")  # the server's own logs (capture's) live there too
        # Read by Serve when it is imported: how often this server's handles report queued requests.
        os.environ.setdefault(HANDLE_PUSH_ENV, self.push_s)
        # A Ray call after stop() (Serve's handle threads wind down late) must fail, not start a
        # fresh local Ray cluster of its own, which Ray does by default.
        os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
        self._ray, self._serve = await asyncio.to_thread(import_ray)
        await self.call(self._connect)
        # A killed predecessor's apps: a restore adopts what its store still wants (see `adopt`).
        self.adoptable = set(await self.call(self._stale_apps))
        self._started_at = time.monotonic()
        await self.refresh()
        self._poller = asyncio.get_running_loop().create_task(self._poll_loop())

    def _connect(self) -> None:
        ray, serve = self._ray, self._serve
        address = self.own.ray_address.strip() or "local"
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address == "local":
            # A busy machine can take longer than Ray's 30 s default to start the node's agents.
            os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
            os.environ.setdefault("RAY_agent_register_timeout_ms", "120000")
            # A short temp dir: Ray's Unix sockets live under it (108-byte limit).
            self._private_dir = tempfile.mkdtemp(prefix="jsray-")
            private_auth(self._private_dir)
            ray.init(include_dashboard=False, _temp_dir=self._private_dir, **options)
        else:
            try:
                ray.init(address=address, **options)
            except Exception as exc:
                raise connect_error(exc) from exc
        if self.publisher is not None:  # every endpoint's ingress, behind Serve's proxy on every node
            serve.start(proxy_location="EveryNode", http_options=self.publisher.connect())
            # Serve already running on a shared cluster keeps the HTTP options it started with.
            self.publisher.serving_at(serve.context._get_global_client().http_config)
        else:  # no HTTP proxy of Serve's own: this server is the only ingress
            serve.start(proxy_location="Disabled")
        self.logs_dir = _logs_dir(ray)
        log.info("jupyter-serving: Ray backend on %s (%s)", address, ray.get_runtime_context().gcs_address)

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self.publisher is not None:  # first: no proxy routes to the apps deleted next
            with contextlib.suppress(Exception):
                await self.publisher.stop()
        await asyncio.gather(*(d.stop(drain_timeout_s=5.0) for d in list(self.deployments)))
        if self._ray is not None:
            await self.call(self._disconnect)
        self._executor.shutdown(wait=False)

    def _disconnect(self) -> None:
        if self._warm is not None:
            self._warm.stop()
        self._ray.shutdown()  # a private cluster stops with it; a shared one keeps running
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)

    def deployment(self, spec: DeploymentSpec) -> RayDeployment:
        assert self._serve is not None, "the backend is not started"
        from jupyter_serving.backends.ray.deployment import RayDeployment

        deployment = RayDeployment(self, spec)
        self.deployments.add(deployment)
        self.app_names.setdefault((spec.endpoint, spec.entity.name), []).append(deployment.app)
        return deployment

    def warm_pool(self) -> WarmPool:
        """The warm, pre-imported hosts that answer cold starts (warm.py), made on first use."""
        if self._warm is None:
            from jupyter_serving.backends.ray.warm import WarmPool

            self._warm = WarmPool(self._ray, self.prefix)
        return self._warm

    @property
    def warm(self) -> WarmPool | None:
        """The pool if an entity that scales to zero ever made one (status reads it, never makes it)."""
        return self._warm

    # ----------------------------------------------------------------- Serve's blocking calls
    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Run a blocking Ray call on the control thread (in order with every other one)."""
        return self._executor.submit(fn, *args, **kwargs)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def refresh(self) -> dict[str, AppSnapshot]:
        """A fresh read of Serve's status; concurrent callers share one read."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> dict[str, AppSnapshot]:
        self.apps = await self.call(self._read_status)
        if self._warm is not None:  # claims made on the proxies since the last poll; dead hosts
            self._warm.sweep()
        for deployment in list(self.deployments):
            deployment.observe(self.apps.get(deployment.app))
        return self.apps

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.refresh()
                if self.publisher is not None:
                    await self.publisher.reconcile(self.serve_status)
                await self._sweep_stale()
            except Exception as exc:  # the cluster restarting, a controller failover: keep polling
                log.warning("could not read Ray Serve's status: %r", exc)
            await asyncio.sleep(POLL_S)

    def _read_status(self) -> dict[str, AppSnapshot]:
        status = self.serve_status = self._serve.status()
        nodes = self._replica_nodes()
        out: dict[str, AppSnapshot] = {}
        for name, app in status.applications.items():
            if not name.startswith(self.prefix):
                continue
            deployment = app.deployments.get(DEPLOYMENT_NAME)
            states = {
                str(getattr(state, "value", state)): count
                for state, count in (deployment.replica_states if deployment else {}).items()
            }
            # The application's message is generic ("Failed to update the deployments"); the
            # deployment's carries the cause (the replica's traceback, an unschedulable resource).
            parts = [app.message, deployment.message if deployment else ""]
            message = "\n".join(part for part in parts if part)
            out[name] = AppSnapshot(
                str(getattr(app.status, "value", app.status)), message, states, tuple(nodes.get(name, ()))
            )
        return out

    def _replica_nodes(self) -> dict[str, list[str]]:
        """Node ids of the live replicas of each application, from the GCS actor table (no dashboard
        needed). Replica actors are named SERVE_REPLICA::<app>#<deployment>#<id>."""
        try:
            actors = self._ray._private.state.actors(actor_state_name="ALIVE")
        except Exception:  # a private API: placement detail is a nicety, never a failure
            return {}
        out: dict[str, list[str]] = {}
        for actor in actors.values():
            name = actor.get("Name") or ""
            if name.startswith("SERVE_REPLICA::") and name.count("#") == 2:
                app = name.removeprefix("SERVE_REPLICA::").split("#")[0]
                out.setdefault(app, []).append(actor.get("Address", {}).get("NodeID", ""))
        return out

    # ----------------------------------------------------------------- restarts: adopt, then sweep
    def adopt(self, deployment: RayDeployment) -> str | None:
        """The running application a killed predecessor left for this same entity runtime (same
        endpoint, entity and runtime key), which `deployment` takes over instead of starting one."""
        stem = deployment.app[:-NONCE_LEN]
        for name in sorted(self.adoptable):
            app = self.apps.get(name)
            if name[:-NONCE_LEN] == stem and app is not None and app.status == "RUNNING":
                self.adoptable.discard(name)
                names = self.app_names.setdefault((deployment.endpoint, deployment.entity.name), [])
                names.append(name)
                log.warning("adopting Ray Serve application %s left by an earlier server", name)
                return name
        return None

    async def _sweep_stale(self) -> None:
        """Delete what no restore adopted, once restores are over (or after ADOPT_WAIT_S)."""
        if not self.adoptable:
            return
        manager = self.manager
        restoring = manager is None or any(
            e.restoring is not None and not e.restoring.done() for e in manager.list()
        )
        if restoring and time.monotonic() - self._started_at < ADOPT_WAIT_S:
            return
        stale, self.adoptable = sorted(self.adoptable), set()
        for name in stale:
            log.warning("deleting Ray Serve application %s left by an earlier server", name)
        await asyncio.gather(*(self.delete_app(name) for name in stale))

    # ----------------------------------------------------------------- the data plane on Ray
    def attach_ingress(self, ingress: Any) -> None:
        """Called by the server's `Ingress` when it starts: tokens it mints are signed with the
        cluster's key (the proxies verify them), and the publisher reads the endpoints."""
        self.manager = ingress.manager
        if self.publisher is not None:
            self.publisher.attach(ingress)

    def endpoint_url(self, name: str) -> str | None:
        """Where clients query an endpoint: the Ray proxies, when every endpoint has an ingress."""
        return self.publisher.endpoint_url(name) if self.publisher is not None else None

    async def released(self, app: str) -> None:
        """Before an entity's application is deleted: no ingress routes to it any more."""
        if self.publisher is not None:
            await self.publisher.released(app)

    def _stale_apps(self) -> list[str]:
        return [name for name in self._serve.status().applications if name.startswith(self.prefix)]

    async def delete_app(self, name: str) -> None:
        """Delete one application and wait (bounded) until Serve has stopped its replicas."""
        await self.call(self._serve.delete, name, _blocking=False)
        deadline = time.monotonic() + DELETE_TIMEOUT_S
        while name in (await self.refresh()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    # ----------------------------------------------------------------- what a replica gets
    async def runtime_env(self, spec: DeploymentSpec, waiting: Callable[[str], None]) -> dict[str, Any]:
        """The replica's runtime_env: its variables (secrets resolved by the server into the spec),
        and the model's packages when env_manager says the model needs an environment of its own
        (the same requirements the local backend builds)."""
        entity = spec.entity
        manager = entity_manager(self.settings.env_manager, entity.environment_vars)
        if manager not in MANAGERS:
            raise DeployFailed(f"JUPYTER_SERVING_ENV_MANAGER must be one of {', '.join(MANAGERS)}.")
        env_vars = {**self._replica_env(), **spec.environment()}
        packages, decision = await asyncio.to_thread(_packages, manager, spec.load_uri)
        env = runtime_env(env_vars, packages)
        shown = {**env, "env_vars": sorted(env_vars)}  # names only: values may be secrets
        self.build_logs[(spec.endpoint, entity.name)] = f"{decision}\nruntime_env: {json.dumps(shown)}\n"
        if packages is not None:
            waiting(f"Ray builds the model's Python environment (uv runtime_env) on each node: {decision}")
        return env

    def _replica_env(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
        env["JUPYTER_SERVING_CATALOG_ROOT"] = str(self.settings.catalog_path)
        env["JUPYTER_SERVING_FEATURE_REFRESH_S"] = str(self.settings.feature_refresh_s)
        env[REPLICA_PUSH_ENV] = self.push_s
        return env

    def logs(self, endpoint: str, served: str, *, build: bool = False) -> str | Awaitable[str]:
        if build:
            return self.build_logs.get((endpoint, served), "")
        return self._replica_logs(endpoint, served)

    async def _replica_logs(self, endpoint: str, served: str) -> str:
        """The entity's replica logs read on the nodes that ran them (backends/ray/logs.py)."""
        from jupyter_serving.backends.ray import logs as ray_logs

        apps = set(self.app_names.get((endpoint, served), []))
        if self._ray is None or not apps:
            return ""
        # All states: a replica Serve scaled away or replaced keeps its log, on its node.
        actors = await asyncio.to_thread(self._ray._private.state.actors)
        files = ray_logs.replica_logs(actors, apps, DEPLOYMENT_NAME)
        if not files:
            return ""
        return await asyncio.to_thread(ray_logs.collect, self._ray, files, LOG_TAIL_BYTES)


def _packages(manager: str, load_uri: str | None) -> tuple[tuple[str, ...] | None, str]:
    """(the packages of the model's runtime_env or None for the node's own environment, why)."""
    if manager == LOCAL:
        return None, "env_manager 'local': the Ray node's own Python environment."
    model_dir = Path(load_uri) if load_uri else None
    if model_dir is None or not model_dir.is_dir():
        return None, "The model's files are not local: the Ray node's own Python environment."
    wanted = reqs.read(model_dir)
    if manager == AUTO and (unmet := reqs.unmet_by_server(wanted)) is None:
        return None, (
            "env_manager 'auto': the server's environment satisfies every requirement "
            f"({len(wanted.requirements)} from {wanted.source or 'none logged'}), so the nodes' own is used."
        )
    why = f"env_manager 'auto': {unmet}" if manager == AUTO else "env_manager 'uv': always its own"
    packages = reqs.with_worker_packages(wanted.requirements)
    if wanted.python and reqs.minor(wanted.python) != reqs.minor(reqs.server_python()):
        why += f" (logged with Python {wanted.python}; Ray's uv environments use the node's Python)"
    return packages, f"{why}; {len(packages)} packages from {wanted.source}."


def _logs_dir(ray: Any) -> Path | None:
    """This machine's Ray log folder (replica logs of the nodes that run here)."""
    try:
        return Path(ray._private.worker.global_worker.node.get_logs_dir_path())
    except Exception:
        return None


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        return f.read().decode("utf-8", errors="replace")


def connect_error(exc: BaseException) -> BaseException:
    """What a failed `ray.init` says at start-up. A token mismatch shows only in Ray's own log lines
    (`InvalidAuthToken`); the exception is a bare "Failed to connect to Ray cluster", so that one
    names the likely fix too."""
    text = str(exc)
    if "token" in text.lower() or "auth" in type(exc).__name__.lower():
        return RuntimeError(f"{text}\n{TOKEN_HINT}")
    if "failed to connect" in text.lower():
        return RuntimeError(
            f"{text}\nIs a Ray cluster running at ray_address? If Ray logged 'InvalidAuthToken' above: "
            f"{TOKEN_HINT}"
        )
    return exc


TOKEN_HINT = (
    "The Ray cluster at ray_address refused this server's credentials. Ray 2.60 turns token auth on "
    "whenever ~/.ray/auth_token exists: start the server with the cluster's token (RAY_AUTH_TOKEN or "
    "RAY_AUTH_TOKEN_PATH), or, for a cluster started without auth, with RAY_AUTH_MODE=disabled."
)


def private_auth(folder: str) -> None:
    """A private (`local`) cluster keeps its auth token in its own folder, not in ~/.ray/auth_token
    where Ray writes one by default: a token left there would make every cluster the user starts
    later with `ray start` require it, and this server's own later runs meet a stranger's token.
    An explicit RAY_AUTH_MODE in the environment is left as the user set it."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    path = Path(folder) / "auth_token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)
