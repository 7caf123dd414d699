"""The one seam between the control plane and whatever runs replicas.

The control plane (control/) decides *what* serves: configs, rollouts, routing. A backend decides
*how and where*: processes on this machine, a Ray cluster, a test double in the same process.
Everything the control plane and data plane need from a backend is here, so a new backend is a new
package under backends/ plus one entry in `BACKENDS`, with no change to control/ or dataplane/.

    backend.deployment(spec)  -> Deployment           (created, not started: state CREATING)
    await deployment.deploy()                          (ready, or raises DeployFailed; cancel-safe)
    await deployment.invoke(request, timeout_s)        (a reply, or raises Retired / ServingError)
    deployment.status()        -> DeploymentStatus     (feeds GET, metrics, the panel)
    deployment.reconfigure(entity, policy)             (new sizing for an unchanged runtime key)
    deployment.abort(message)  /  await deployment.stop(drain_timeout_s)

Cancel-safety is part of the contract: cancelling `deploy()` at any await leaves nothing running
that `stop()` will not stop, and `stop()` itself runs to completion even if its caller is cancelled.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_serving.model.config import ServedEntity
from jupyter_serving.policy.autoscaler import ScalingPolicy

if TYPE_CHECKING:
    from jupyter_serving.settings import ServingSettings

# `backend` setting value -> "module:Class"; any other value is taken as "module:Class" itself.
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
    """What to run for one served entity of one endpoint."""

    endpoint: str
    entity: ServedEntity
    policy: ScalingPolicy
    load_uri: str | None = None  # the model's files, when the server resolved them already

    @property
    def key(self) -> str:
        return self.entity.runtime_key


@dataclass(frozen=True, slots=True)
class ScoringRequest:
    content_type: str
    body: bytes


@dataclass(slots=True)
class ScoringReply:
    status: int
    body: bytes
    execution_ms: float
    client_request_id: str | None
    batch: int = 1  # requests scored by the same predict call


@dataclass(frozen=True)
class DeploymentStatus:
    """A served entity's deployment as the control plane shows it; `local` is backend-specific detail."""

    state: str
    message: str
    replicas: int = 0
    ready_replicas: int = 0
    inflight: int = 0
    queued: int = 0
    cold_starts: int = 0
    gpus: tuple[int, ...] = ()
    pids: tuple[int, ...] = ()  # processes serving it on this machine, where the backend knows them
    local: dict[str, Any] = field(default_factory=dict)


class Deployment(Protocol):
    key: str
    entity: ServedEntity

    @property
    def name(self) -> str: ...

    async def deploy(self) -> None: ...

    async def invoke(self, request: ScoringRequest, timeout_s: float) -> ScoringReply: ...

    def status(self) -> DeploymentStatus: ...

    def reconfigure(self, entity: ServedEntity, policy: ScalingPolicy) -> None: ...

    def abort(self, message: str) -> None: ...

    async def stop(self, drain_timeout_s: float) -> None: ...


class ExecutionBackend(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def deployment(self, spec: DeploymentSpec) -> Deployment: ...

    def logs(self, endpoint: str, served: str, *, build: bool = False) -> str: ...


def load_backend(name: str, settings: ServingSettings) -> ExecutionBackend:
    """The backend a `backend` setting names, built from the server's settings."""
    target = BACKENDS.get(name, name)
    module_name, _, class_name = target.partition(":")
    if not class_name:
        known = ", ".join(sorted(BACKENDS))
        raise ValueError(f"Unknown backend {name!r}: use one of {known}, or 'package.module:Class'.")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(settings)
