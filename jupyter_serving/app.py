"""The Jupyter Server extension app: settings, handlers and the server's lifecycle hooks.

It wires nothing itself: `compose.compose` builds and connects the parts (backend, data plane,
manager, observer, progressive delivery, ingress); this app hands them to the handlers through
tornado's settings and starts and stops them (`Serving.start` / `Serving.stop`) with the server.

The same class serves both hosts: loaded into `jupyter server` / `jupyter lab` through the
auto-enable config, or launched on its own by `jupyter-serving serve` (a stock Jupyter server
carrying only this extension), so both speak the identical API with the identical auth.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.serverapp import ServerApp
from traitlets import Bool, Unicode, default
from traitlets.config import Configurable

from jupyter_serving.api.auth import AUTHORITY_KEY
from jupyter_serving.api.handlers import INGRESS_KEY, MANAGER_KEY, OBSERVER_KEY, default_handlers
from jupyter_serving.api.rollout_handlers import PROGRESSIVE_KEY
from jupyter_serving.compose import Serving, compose
from jupyter_serving.control.manager import EndpointManager
from jupyter_serving.control.progressive import ProgressiveDelivery
from jupyter_serving.dataplane.ingress import Ingress
from jupyter_serving.heap import HeapFreezer, freeze_startup_heap
from jupyter_serving.monitoring.observer import Observer
from jupyter_serving.settings import ServingSettings, settings_classes


class ServingApp(ExtensionApp):
    name = "jupyter_serving"
    description = "Databricks-style Model Serving for MLflow models"
    load_other_extensions = False  # standalone server: only the serving API
    classes: list[type[Configurable]] = [*settings_classes()]

    info_file = Unicode(
        "",
        config=True,
        help="Once the server listens, write {url, token, pid} here as JSON (used to start an "
        "embedded server on port 0 and learn its address).",
    )

    serving: Serving
    manager: EndpointManager
    observer: Observer
    progressive: ProgressiveDelivery
    ingress: Ingress
    freezer: HeapFreezer | None = None

    def initialize_settings(self) -> None:
        settings = self.serving_settings = ServingSettings(parent=self)
        serving = self.serving = compose(settings)
        self.manager, self.observer = serving.manager, serving.observer
        self.progressive, self.ingress = serving.progressive, serving.ingress
        self.settings[MANAGER_KEY] = self.manager
        self.settings[OBSERVER_KEY] = self.observer
        self.settings[PROGRESSIVE_KEY] = self.progressive
        self.settings[INGRESS_KEY] = self.ingress
        self.authority = serving.authority
        self.settings[AUTHORITY_KEY] = self.authority

    def initialize_handlers(self) -> None:
        self.handlers.extend(default_handlers)

    standalone = Bool(
        False,
        config=True,
        help="Set by `jupyter-serving serve`: the server exists only for this API, so a failure to start "
        "it ends the process instead of leaving a server that cannot serve.",
    )

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        try:
            await self.manager.start()
        except Exception as exc:
            if not self.standalone:
                raise  # inside JupyterLab: logged by Jupyter, and every API call reports it
            self.log.critical("jupyter-serving could not start: %s", exc)
            logging.shutdown()
            os._exit(1)  # nothing of ours is running yet; workers follow their lifeline
        await self.serving.start()  # the manager has started (its start is once); then the rest, in order
        if self.serving_settings.freeze_heap:  # see heap.py: no full-collection stalls under load
            freeze_startup_heap(self.log)
            self.freezer = HeapFreezer(asyncio.get_running_loop(), self.log)
            self.freezer.install()
        self.log.info("jupyter-serving: state in %s", self.serving_settings.state_path)
        assert self.ingress.listener is not None  # ingress.start() opened it
        self.log.info("jupyter-serving: route-optimized data plane on %s", self.ingress.listener.url)
        if self.info_file:
            _write_info(Path(self.info_file), serverapp)

    async def stop_extension(self) -> None:
        if self.freezer is not None:
            self.freezer.uninstall()
        await self.serving.stop()  # progressive delivery before the manager: its stored state resumes

    def current_activity(self) -> list[str] | None:
        """Endpoints keep `shutdown_no_activity_timeout` from stopping a server that serves them."""
        return [e.name for e in self.manager.endpoints.values()] or None


class ServingServerApp(ServerApp):
    """The standalone host: a Jupyter server with none of Jupyter's services (no kernels, contents,
    terminals, sessions, config or files routes), so its token can run no code; only this API."""

    name = "jupyter-serving"
    default_services = ()  # type: ignore[assignment]  # ServerApp's is inferred as its 13-name tuple

    @default("terminals_enabled")
    def _default_terminals_enabled(self) -> bool:
        return False


class StandaloneServingApp(ServingApp):
    """`jupyter-serving serve`: this extension on `ServingServerApp`."""

    serverapp_class = ServingServerApp


def _write_info(path: Path, serverapp: Any) -> None:
    info = {"url": serverapp.connection_url, "token": serverapp.identity_provider.token, "pid": os.getpid()}
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)
