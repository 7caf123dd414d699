"""One endpoint at runtime, as the control plane holds it: its stored record, its deployments, the
tasks that change them, and a reference to its lane in the data plane.

The record is desired state; deployments and the routing table are derived from it by rollouts
(control/rollout.py). The routing table, the held requests' event, the metrics and the shadow mirror
are the data plane's (`EndpointLane`, dataplane/lane.py, owned by `DataPlane` and keyed by endpoint
name): this class opens the lane when the endpoint comes to exist and only refers to it after. The
data plane reads `lane.routing` and nothing else on the hot path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from jupyter_serving.backends.base import Deployment, DeploymentStatus
from jupyter_serving.control.store import EndpointRecord
from jupyter_serving.dataplane.invoke import DataPlane
from jupyter_serving.dataplane.router import RoutingTable
from jupyter_serving.dataplane.shadow import Mirror, ShadowConfig
from jupyter_serving.errors import InvalidState, ServingError, TemporarilyUnavailable
from jupyter_serving.model.states import ABORTED, CREATING, FAILED, READY
from jupyter_serving.monitoring.metrics import EndpointMetrics


class Endpoint:
    """An endpoint's control-plane runtime: the active and pending deployments per served entity,
    the rollout and restore tasks, and its lane in the data plane."""

    def __init__(self, record: EndpointRecord, dataplane: DataPlane) -> None:
        self.record = record
        self.active: dict[str, Deployment] = {}
        self.pending: dict[str, Deployment] = {}
        self.rollout: asyncio.Task[None] | None = None
        self.restoring: asyncio.Task[None] | None = None  # bringing back the active config after a restart
        shadow = ShadowConfig.from_json(record.shadow) if record.shadow is not None else None
        self.lane = dataplane.open_lane(record.name, self.deployments, self.unroutable_error, shadow)

    @property
    def name(self) -> str:
        return self.record.name

    # Views of the lane's state, for the control plane and the API (the data plane uses the lane).
    @property
    def routing(self) -> RoutingTable | None:
        """The routing table the latest rollout installed; rollouts set it in one assignment."""
        return self.lane.routing

    @routing.setter
    def routing(self, table: RoutingTable | None) -> None:
        self.lane.routing = table

    @property
    def settled(self) -> asyncio.Event:
        return self.lane.settled

    @property
    def metrics(self) -> EndpointMetrics:
        return self.lane.metrics

    @property
    def shadow(self) -> Mirror | None:
        return self.lane.shadow

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

    def unroutable_error(self) -> ServingError:
        """What a request held for a routing table gets when none came in time (asked by the data
        plane on that slow path): 503 while a config still deploys, else 400 with the reason."""
        if self.deploying:  # the wait timed out: a config is still coming up
            return TemporarilyUnavailable(
                f"Endpoint '{self.name}' is still deploying; retry shortly.", headers={"Retry-After": "1"}
            )
        failed = [d.status() for d in self.active.values()]
        reasons = [s.message for s in failed if s.state in (FAILED, ABORTED) and s.message]
        reason = reasons[0] if reasons else self.record.update.message
        return InvalidState(f"Endpoint '{self.name}' is not ready: {reason or 'it has no deployed config.'}")

    def end_restore(self) -> None:
        """The restore after a restart is over, whatever its outcome (called from inside it)."""
        self.restoring = None
        self.wake_waiters()

    @property
    def ready(self) -> bool:
        return self.routing is not None and all(
            d.status().state == READY for d in self.routing.deployments.values()
        )
