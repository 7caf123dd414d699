"""One endpoint at runtime: its stored record, its deployments and its routing table.

The record is desired state; deployments and the routing table are derived from it by rollouts
(control/rollout.py). The data plane reads `routing` and nothing else on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from jupyter_serving.backends.base import Deployment, DeploymentStatus
from jupyter_serving.control.store import EndpointRecord
from jupyter_serving.dataplane.router import RoutingTable
from jupyter_serving.dataplane.shadow import Mirror, ShadowConfig
from jupyter_serving.model.states import CREATING, READY
from jupyter_serving.monitoring.metrics import EndpointMetrics


class Endpoint:
    """An endpoint's runtime: the active and pending deployments per served entity, and routing."""

    def __init__(self, record: EndpointRecord) -> None:
        self.record = record
        self.routing: RoutingTable | None = None
        self.active: dict[str, Deployment] = {}
        self.pending: dict[str, Deployment] = {}
        self.rollout: asyncio.Task[None] | None = None
        self.restoring: asyncio.Task[None] | None = None  # bringing back the active config after a restart
        # Set once requests held for a routing table should stop waiting: see `wake_waiters`.
        self.settled = asyncio.Event()
        self.metrics = EndpointMetrics(self.deployments)
        # Shadow traffic (dataplane/shadow.py); None keeps the live path to one attribute check.
        self.shadow: Mirror | None = None
        if record.shadow is not None:
            self.shadow = Mirror(self, ShadowConfig.from_json(record.shadow))

    @property
    def name(self) -> str:
        return self.record.name

    def deployments(self) -> Iterable[Deployment]:
        seen = {id(d): d for d in (*self.active.values(), *self.pending.values())}
        return seen.values()

    def entity_status(self, served: str, pending: bool) -> DeploymentStatus:
        """One served entity's deployment status; an entity with no deployment yet (or a pending
        one remembered from before a restart) gets a status with no replicas."""
        deployment = (self.pending if pending else self.active).get(served)
        if deployment is not None:
            return deployment.status()
        stored = self.record.pending_states.get(served) if pending else None
        if stored:
            return DeploymentStatus(stored[0], stored[1])
        return DeploymentStatus(CREATING, "Waiting to be deployed.")

    @property
    def deploying(self) -> bool:
        """Whether a task still running may yet install a routing table: the restore of the active
        config after a restart, or a config update."""
        restoring = self.restoring is not None and not self.restoring.done()
        return restoring or self.record.update.in_progress

    def wake_waiters(self) -> None:
        """Release the requests held for a routing table (dataplane/invoke.py) once holding them is
        pointless: a table is installed, or nothing still running could install one.

        After a restart mid-update, the restore of the old config and the resumed update run side by
        side; the end of one (a cancel, a failure) must not release requests while the other may
        still bring a config up, or they fail with INVALID_STATE from an endpoint about to serve."""
        if self.routing is not None or not self.deploying:
            self.settled.set()

    def end_restore(self) -> None:
        """The restore after a restart is over, whatever its outcome (called from inside it)."""
        self.restoring = None
        self.wake_waiters()

    @property
    def ready(self) -> bool:
        return self.routing is not None and all(
            d.status().state == READY for d in self.routing.deployments.values()
        )
