"""The composition root: the one place that builds the server's parts and hands them to each other.

    settings -> backend, registry, capture
             -> data plane (owns each endpoint's lane: routing table, held requests, metrics, shadow)
             -> manager (control plane: store, rollouts; opens and closes lanes with its endpoints)
             -> observer (events, history), progressive delivery, ingress (AI Gateway policy, tokens,
                route-optimized listener)
    settings -> authority (who is calling: identity store, permissions, grants; opened on first use)

No part builds another: each receives what it uses here, so a host (`app.ServingApp`, a test) can
swap one (an in-process backend, a held capture) and the rest is wired the same way. `Serving`
also fixes the order the parts start and stop in, which hosts must not reorder (see `start`/`stop`).
"""

from __future__ import annotations

from dataclasses import dataclass

from jupyter_serving.api.auth import Authority
from jupyter_serving.backends.base import ExecutionBackend, build_backend
from jupyter_serving.capture import InferenceCapture
from jupyter_serving.control.manager import EndpointManager
from jupyter_serving.control.progressive import ProgressiveDelivery
from jupyter_serving.control.registry import ModelRegistry
from jupyter_serving.dataplane.ingress import Ingress
from jupyter_serving.dataplane.invoke import DataPlane
from jupyter_serving.monitoring.observer import Observer
from jupyter_serving.settings import ServingSettings


@dataclass
class Serving:
    """The wired server: every long-lived part, built by `compose`."""

    settings: ServingSettings
    backend: ExecutionBackend
    registry: ModelRegistry
    capture: InferenceCapture
    dataplane: DataPlane
    manager: EndpointManager
    observer: Observer
    progressive: ProgressiveDelivery
    ingress: Ingress
    authority: Authority

    async def start(self) -> None:
        """The manager first (it loads the stored endpoints and starts the backend and capture; if it
        raises, nothing else has started); then the observer, the rollouts that were running when
        the server stopped (they need the loaded endpoints), and the listener last, so no
        route-optimized request arrives before the endpoints it names exist."""
        await self.manager.start()
        self.observer.start()
        self.progressive.start()
        self.ingress.start()

    async def stop(self) -> None:
        """Progressive delivery stops before the manager: its stored state is what the next start
        resumes, and a rollout step must not run against a stopping manager."""
        await self.observer.stop()
        await self.progressive.stop()
        self.ingress.stop()
        await self.manager.stop()
        self.authority.close()  # last: a request still being answered may check a permission


def compose(
    settings: ServingSettings,
    *,
    backend: ExecutionBackend | None = None,
    registry: ModelRegistry | None = None,
    capture: InferenceCapture | None = None,
) -> Serving:
    """Build and wire the server's parts; the keyword arguments replace a part (tests' doubles)."""
    backend = backend if backend is not None else build_backend(settings)
    registry = registry if registry is not None else ModelRegistry()
    if capture is None:
        state = settings.state_path
        capture = InferenceCapture(
            state / "capture-spool",
            flush_interval_s=settings.capture_flush_s,
            flush_rows=settings.capture_flush_rows,
            log_path=state / "logs" / "capture.log",  # the manager creates logs/ before starting it
        )
    dataplane = DataPlane(lambda: capture, settings.request_timeout_s)
    manager = EndpointManager(
        settings, backend=backend, registry=registry, capture=capture, dataplane=dataplane
    )
    observer = Observer(
        manager,
        settings.state_path / "events",
        settings.history_interval_s,
        settings.history_retention_s,
        settings.history_events,
    )
    progressive = ProgressiveDelivery(manager, lambda: observer.events)
    ingress = Ingress(manager, dataplane)
    authority = Authority(settings.state_path, settings.owner_name)
    return Serving(
        settings, backend, registry, capture, dataplane, manager, observer, progressive, ingress, authority
    )
