"""The one seam between the control plane and whatever runs replicas.

The control plane (control/) decides *what* serves: configs, rollouts, routing. A backend decides
*how and where*: processes on this machine, a Ray cluster, a test double in the same process.
Everything the control plane and data plane need from a backend is here, so a new backend is a new
package (under backends/ or anywhere importable) named by the `backend_class` setting, with no change
to control/, dataplane/ or the settings: it reads its own settings from a Configurable of its own,
built with the server's `ServingSettings` as parent, as the local and Ray backends do.

    backend.deployment(spec)  -> Deployment           (created, not started: state CREATING)
    await deployment.deploy()                          (ready, or raises DeployFailed; cancel-safe)
    await deployment.invoke(request, timeout_s)        (a reply, or raises Retired / ServingError)
    await deployment.invoke_stream(request, timeout_s) (a ScoringStream of SSE chunks, same errors)
    deployment.status()        -> DeploymentStatus     (feeds GET, metrics, the panel)
    deployment.reconfigure(entity, policy)             (new sizing for an unchanged runtime key)
    deployment.abort(message)  /  await deployment.stop(drain_timeout_s)

Cancel-safety is part of the contract: cancelling `deploy()` at any await leaves nothing running
that `stop()` will not stop, and `stop()` itself runs to completion even if its caller is cancelled.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_serving.model.config import ServedEntity
from jupyter_serving.policy.autoscaler import ScalingPolicy

if TYPE_CHECKING:
    from jupyter_serving.settings import ServingSettings

# `backend` shorthand -> "module:Class"; any other value is taken as "module:Class" itself.
BACKENDS = {
    "local": "jupyter_serving.backends.local.backend:LocalBackend",
    "ray": "jupyter_serving.backends.ray.backend:RayBackend",
}


class DeployFailed(Exception):
    """A deployment could not be brought up; the message is shown as deployment_state_message."""


class Retired(Exception):
    """The deployment was retired by a config update after the request chose it: route it again."""


@dataclass(frozen=True)
class DeploymentSpec:
    """What to run for one served entity of one endpoint.

    The control plane resolves what needs the server's own stores before a backend sees the spec:
    model locations (`load_uri`) and `{{secrets/scope/key}}` references in the entity's
    environment_vars (`environment_vars`), so no backend reads the secret store. Values are
    resolved once per deployment: every replica of it sees the same environment.
    """

    endpoint: str
    entity: ServedEntity
    policy: ScalingPolicy
    load_uri: str | None = None  # the model's files, when the server resolved them already
    environment_vars: Mapping[str, str] | None = field(default=None, repr=False)  # None: as written
    environment_error: str | None = None  # why environment_vars could not be resolved

    @property
    def key(self) -> str:
        return self.entity.runtime_key

    def environment(self) -> dict[str, str]:
        """The replicas' environment_vars, secrets resolved; raises DeployFailed if one is missing."""
        if self.environment_error is not None:
            raise DeployFailed(f"Cannot set the environment: {self.environment_error}.")
        env = self.environment_vars if self.environment_vars is not None else self.entity.environment_vars
        return dict(env)


@dataclass(frozen=True, slots=True)
class ScoringRequest:
    content_type: str
    body: bytes
    # The server's id of the request (x-request-id, the inference table's databricks_request_id): the
    # replica names it in the log lines it writes while scoring the request, so a row or an error
    # leads to its log. Empty where there is none (a warm-up, a direct call).
    request_id: str = ""


@dataclass(slots=True)
class ScoringReply:
    status: int
    body: bytes
    execution_ms: float
    client_request_id: str | None
    batch: int = 1  # requests scored by the same predict call
    trace: str | None = None  # the agent's MLflow trace (JSON text), logged with the row


@dataclass(frozen=True, slots=True)
class GpuStats:
    """One GPU a deployment's replicas hold, as the host's driver reports it."""

    index: int
    memory_used_bytes: int
    memory_total_bytes: int
    utilization_percent: int


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """One process serving a deployment: cumulative CPU time, so a reader derives CPU % between two
    readings of its own (several readers, GET, metrics and history, never disturb each other)."""

    pid: int
    cpu_seconds: float  # user + system since the process started
    rss_bytes: int
    # Proportional set size: pages shared with other processes (the fork server's pre-imported
    # modules) count divided among the sharers, so replicas add up to what they really cost; RSS
    # counts them in full for each. None where the backend cannot measure it.
    pss_bytes: int | None = None


@dataclass(slots=True)
class StreamEnd:
    """How a stream ended: 200 with the response assembled from its chunks (what the inference
    table logs), or an error status and Databricks error body (before or after the first chunk)."""

    status: int
    body: bytes
    execution_ms: float
    client_request_id: str | None
    first_chunk_ms: float | None = None
    usage: dict[str, Any] | None = None  # token counts, where the model reported them
    trace: str | None = None  # the agent's MLflow trace (JSON text), logged with the row


class ScoringStream(Protocol):
    """A streaming answer: `next` gives Server-Sent Event bytes (one or more `data:` events) until
    it gives the one `StreamEnd`. `close` stops the producer (the client left); it is idempotent,
    and a `next` waiting meanwhile returns a `StreamEnd` at once."""

    async def next(self, timeout_s: float) -> bytes | StreamEnd: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DeploymentStatus:
    """A served entity's deployment as the control and data planes see it: typed fields only.

    Every field has a neutral default, so a backend that knows less (no processes of its own, no
    GPUs) leaves it out and render, metrics, history and events still work. `extras` is the
    backend's own detail (its environment, its cluster's view): rendered as-is under the entity's
    `local` on the wire for people to read, and never read by any code outside the backend.
    """

    state: str
    message: str
    replicas: int = 0
    ready_replicas: int = 0
    starting_replicas: int = 0
    min_replicas: int = 0
    max_replicas: int = 0  # 0: not known (not deployed yet, or the backend cannot tell)
    inflight: int = 0
    queued: int = 0  # requests waiting for a replica to start
    cold_starts: int = 0
    gpus: tuple[int, ...] = ()  # device indices its replicas hold
    gpu_stats: tuple[GpuStats, ...] = ()  # of those devices, where the host can tell
    processes: tuple[ProcessUsage, ...] = ()  # where the backend runs them on this machine
    extras: Mapping[str, Any] = field(default_factory=dict)


class Deployment(Protocol):
    key: str
    entity: ServedEntity

    @property
    def name(self) -> str: ...

    async def deploy(self) -> None: ...

    async def invoke(self, request: ScoringRequest, timeout_s: float) -> ScoringReply: ...

    async def invoke_stream(self, request: ScoringRequest, timeout_s: float) -> ScoringStream: ...

    def status(self) -> DeploymentStatus: ...

    def reconfigure(self, entity: ServedEntity, policy: ScalingPolicy) -> None: ...

    def abort(self, message: str) -> None: ...

    async def stop(self, drain_timeout_s: float) -> None: ...


class ExecutionBackend(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def deployment(self, spec: DeploymentSpec) -> Deployment: ...

    def logs(self, endpoint: str, served: str, *, build: bool = False) -> str | Awaitable[str]:
        """The tail of the entity's replica logs (or its build log). A backend whose replicas run on
        other machines may return an awaitable: reading them there must not block the event loop."""
        ...


def backend_class(name: str) -> Any:
    """The class a `backend` shorthand names: 'local', 'ray' or 'package.module:Class'."""
    target = BACKENDS.get(name, name)
    module_name, _, class_name = target.partition(":")
    if not class_name:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"Unknown backend {name!r}: use one of {known}, or 'package.module:Class'.")
    return getattr(importlib.import_module(module_name), class_name)


def load_backend(name: str, settings: ServingSettings) -> ExecutionBackend:
    """The backend a `backend` shorthand names, built from the server's settings."""
    backend: ExecutionBackend = backend_class(name)(settings)
    return backend


def build_backend(settings: ServingSettings) -> ExecutionBackend:
    """The server's backend: `backend_class` when set, else the class the `backend` shorthand names."""
    cls: Any = settings.backend_class or backend_class(settings.backend)
    backend: ExecutionBackend = cls(settings)
    return backend
