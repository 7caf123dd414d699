"""An endpoint's lane through the data plane: everything the invocation path keeps per endpoint.

The data plane (`DataPlane`, dataplane/invoke.py) owns one lane per endpoint, keyed by the
endpoint's name; the control plane's `Endpoint` only references it. The control plane writes two
things into a lane: the routing table a rollout installs (one assignment, read on the hot path) and
the `settled` event that releases requests held while no table is installed yet
(`Endpoint.wake_waiters`). Everything else here is the data plane's own: the endpoint's metrics and
its shadow mirror.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from jupyter_serving.backends.base import Deployment
from jupyter_serving.dataplane.router import RoutingTable
from jupyter_serving.dataplane.shadow import Mirror, ShadowConfig
from jupyter_serving.errors import ServingError
from jupyter_serving.monitoring.metrics import EndpointMetrics


class EndpointLane:
    """One endpoint's routing table, held requests, metrics and shadow mirror."""

    __slots__ = ("metrics", "name", "routing", "settled", "shadow", "unroutable")

    def __init__(
        self,
        name: str,
        deployments: Callable[[], Iterable[Deployment]],
        unroutable: Callable[[], ServingError],
        shadow: ShadowConfig | None = None,
    ) -> None:
        self.name = name
        self.routing: RoutingTable | None = None
        # Set once requests held for a routing table should stop waiting (`Endpoint.wake_waiters`).
        self.settled = asyncio.Event()
        # `deployments` (the endpoint's active and pending ones) feed the replica gauges.
        self.metrics = EndpointMetrics(deployments)
        # Shadow traffic (dataplane/shadow.py); None keeps the live path to one attribute check.
        self.shadow: Mirror | None = None
        # Why a request that waited finds no routing table: the control plane knows (still deploying,
        # or failed and why); asked only on that slow path.
        self.unroutable = unroutable
        if shadow is not None:
            self.mirror(shadow)

    def mirror(self, config: ShadowConfig | None) -> None:
        """Start mirroring with `config` (None: stop). The new mirror replaces the old one in one
        assignment, so a request sees either; the old one's queued requests are dropped and counted."""
        previous = self.shadow
        self.shadow = Mirror(self, config) if config is not None else None
        if previous is not None:
            previous.stop()
