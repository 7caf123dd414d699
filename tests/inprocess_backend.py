"""Doubles of our own interfaces for fast control-plane tests: an in-process execution backend, a
registry that knows every model, and a capture whose table creation can be held.

The backend is written against `jupyter_serving.backends.base` alone (plus the model and policy
types that interface speaks): it fills only typed status fields, reads its environment from the
spec the control plane resolved, and can run a real server (`--backend-class
inprocess_backend.InProcessBackend`, tests/integration/test_backend_seam.py).

Each step a rollout awaits (model lookups, deploys, table creation) can be held at a `Gate`, so a
test can cancel, delete or restart exactly there. Nothing here stands in for MLflow or the OS: the
real-process behaviour of the local backend is tested in tests/integration/.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jupyter_serving.backends.base import (
    DeployFailed,
    DeploymentSpec,
    DeploymentStatus,
    Retired,
    ScoringReply,
    ScoringRequest,
)
from jupyter_serving.model.config import EndpointConfig, ServedEntity
from jupyter_serving.model.states import FAILED, READY, DeploymentState
from jupyter_serving.policy.autoscaler import ScalingPolicy


class Gate:
    """An await point a test holds closed, and can see being reached."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    async def pass_through(self) -> None:
        self.reached.set()
        await self.opened.wait()

    def open(self) -> None:
        self.opened.set()


class InProcessDeployment:
    def __init__(self, backend: InProcessBackend, spec: DeploymentSpec) -> None:
        self.backend = backend
        self.spec = spec
        self.key = spec.key
        self.entity = spec.entity
        self.policy = spec.policy
        self.state = DeploymentState()
        self.stopped = False
        self.environment: dict[str, str] | None = None  # what its replicas would see, once deployed

    @property
    def name(self) -> str:
        return self.entity.name

    async def deploy(self) -> None:
        model = self.entity.entity_name
        gate = self.backend.deploy_gates.get(model)
        if gate is not None:
            await gate.pass_through()
        if model in self.backend.failing:
            self.state.to(FAILED, f"Failed to load the model: {model} is broken.")
            raise DeployFailed(self.state.message)
        try:
            self.environment = self.spec.environment()
        except DeployFailed as exc:
            self.state.to(FAILED, str(exc))
            raise
        self.state.to(READY, "")

    async def invoke(self, request: ScoringRequest, timeout_s: float) -> ScoringReply:
        if self.stopped:
            raise Retired(self.name)
        body = json.dumps({"predictions": [self.name], "echo": json.loads(request.body or b"null")})
        return ScoringReply(200, body.encode(), 0.1, None)

    def status(self) -> DeploymentStatus:
        running = 0 if self.stopped or self.state.state != READY else self.policy.initial_replicas
        return DeploymentStatus(
            self.state.state,
            self.state.message,
            replicas=running,
            ready_replicas=running,
            min_replicas=self.policy.min_replicas,
            max_replicas=self.policy.max_replicas,
        )

    def reconfigure(self, entity: ServedEntity, policy: ScalingPolicy) -> None:
        self.entity, self.policy = entity, policy

    def abort(self, message: str) -> None:
        if self.state.can("DEPLOYMENT_ABORTED"):
            self.state.to("DEPLOYMENT_ABORTED", message)

    async def stop(self, drain_timeout_s: float) -> None:
        self.stopped = True
        self.backend.live.discard(self)


class InProcessBackend:
    """Deployments are objects; `failing` models fail to deploy, `deploy_gates` hold deploys."""

    def __init__(self, settings: Any = None) -> None:
        self.failing: set[str] = set()
        self.deploy_gates: dict[str, Gate] = {}
        self.created: list[InProcessDeployment] = []
        self.live: set[InProcessDeployment] = set()

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await asyncio.gather(*(d.stop(0.0) for d in list(self.live)))

    def deployment(self, spec: DeploymentSpec) -> InProcessDeployment:
        deployment = InProcessDeployment(self, spec)
        self.created.append(deployment)
        self.live.add(deployment)
        return deployment

    def logs(self, endpoint: str, served: str, *, build: bool = False) -> str:
        return ""

    def live_names(self) -> set[str]:
        return {d.name for d in self.live}


class KnownModels:
    """The registry interface, for a registry that has every model; lookups can be held."""

    def __init__(self) -> None:
        self.lookup_gate: Gate | None = None

    def warm_up(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def validate(self, config: EndpointConfig) -> None:
        pass

    async def load_uris(self, entities: Iterable[ServedEntity]) -> list[str]:
        if self.lookup_gate is not None:
            await self.lookup_gate.pass_through()
        return [e.model_uri for e in entities]

    async def registered_models(self) -> list[dict[str, Any]]:
        return []

    async def uris(self) -> dict[str, str]:
        return {"registry_uri": "known-models", "tracking_uri": "known-models"}


class HeldCapture:
    """The capture interface without rows: only table creation matters here, and it can be held."""

    def __init__(self) -> None:
        self.table_gate: Gate | None = None
        self.tables: list[Path] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def ensure_table(self, path: Path, form: str = "legacy") -> None:
        if self.table_gate is not None:
            await self.table_gate.pass_through()
        self.tables.append(path)

    def table_status(self, path: Path) -> tuple[str, str]:
        return ("ACTIVE", "") if path in self.tables else ("CREATING", "")

    async def record_json(self, payload: bytes) -> None:
        pass
