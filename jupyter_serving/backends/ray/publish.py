"""The server's side of the data plane on Ray: publish each endpoint's ingress to the cluster.

`IngressPublisher` (owned by `RayBackend`) keeps one Serve application per endpoint
(`backends/ray/ingress.py`) in step with what the server serves:

- the token key: put in Ray's internal KV once per server state dir (`KV_NAMESPACE`), read back
  by a restarted server, so tokens it minted before a restart stay valid on the proxies and here;
- every poll of Serve's status (0.5 s), each endpoint's routing table, AI Gateway settings and
  capture target become an ingress snapshot; a changed one is deployed as the ingress deployment's
  `user_config` (applied in place: no replica restart), and an endpoint that is gone loses its app;
- a route-optimized endpoint that sends all its traffic to one entity running in the nodes' own
  environment is *fronted* by that entity's application: it takes the route
  `/serving-endpoints/<name>/invocations` (longer than the ingress app's prefix, so Serve's
  proxies send it there) with the same snapshot as its user_config, and its replicas run the
  ingress code themselves (`replica.ServedModel`): one actor hop per query instead of two.
  Direct `/served-models/...` queries, splits and entities in environments of their own keep
  going through the ingress app. When the route moves (an update, a split), the old entity gives
  it back first: meanwhile the ingress app's shorter prefix answers;
- before an entity's application is deleted (an update retired it), `released` waits until every
  published snapshot has stopped naming it, it fronts nothing, and Serve reports the ingress
  reconfigured, so no proxy routes to an application that is going away.

Nothing here is on the server's request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_serving.backends.ray import ingress as ray_ingress
from jupyter_serving.backends.ray.options import APP_PREFIX
from jupyter_serving.model.states import READY

if TYPE_CHECKING:
    from jupyter_serving.backends.ray.backend import RayBackend
    from jupyter_serving.backends.ray.deployment import RayDeployment
    from jupyter_serving.control.manager import EndpointManager
    from jupyter_serving.dataplane.ingress import Ingress

log = logging.getLogger("jupyter_serving")

SPOOL = "ray-spool"
RELEASE_TIMEOUT_S = 30.0
NODES_EVERY_S = 5.0
ADOPT_WAIT_S = 300.0  # how long stale apps wait for a restore that may adopt them


@dataclass(frozen=True)
class Front:
    """The entity application holding an endpoint's invocations route, and the snapshot it has."""

    deployment: RayDeployment
    snapshot: str  # JSON, to compare


def ingress_prefix(prefix: str) -> str:
    """`jsrvi-<hash>-`: ingress apps never share the entity apps' prefix (`jsrv-<hash>-`)."""
    return prefix.replace(f"{APP_PREFIX}-", f"{APP_PREFIX}i-", 1)


class IngressPublisher:
    def __init__(self, backend: RayBackend) -> None:
        self.backend = backend
        own = backend.own
        self.prefix = ingress_prefix(backend.prefix)
        self.key_name = ray_ingress.signing_key_name(backend.prefix).decode()
        self.key = b""
        self.manager: EndpointManager | None = None
        self.published: dict[str, dict[str, Any]] = {}  # app -> snapshot (with "replicas")
        self.pending: set[str] = set()  # apps whose last submit Serve has not reported RUNNING since
        self.status: dict[str, str] = {}  # app -> Serve's status of it
        self.fronts: dict[str, Front] = {}  # endpoint -> the entity app fronting it
        self._nodes = 1
        self._nodes_read = 0.0
        self._started = time.monotonic()
        self._host = own.ray_http_host or (
            "127.0.0.1" if own.ray_address.strip() in ("", "local") else "0.0.0.0"
        )
        self._port = own.ray_http_port
        self._base_url = own.ray_ingress_url.rstrip("/")
        self._node_ip = "127.0.0.1"

    # ----------------------------------------------------------------- on the control thread
    def connect(self) -> dict[str, Any]:
        """Serve's HTTP options for `serve.start`, and the token key (made once, then shared)."""
        import secrets

        from ray.experimental import internal_kv

        name = self.key_name.encode()
        key = internal_kv._internal_kv_get(name, namespace=ray_ingress.KV_NAMESPACE)
        if not key:
            internal_kv._internal_kv_put(
                name, secrets.token_bytes(32), overwrite=False, namespace=ray_ingress.KV_NAMESPACE
            )
            key = internal_kv._internal_kv_get(name, namespace=ray_ingress.KV_NAMESPACE)
        self.key = bytes(key)
        ray = self.backend._ray
        self._node_ip = ray.util.get_node_ip_address()
        return {"host": self._host, "port": self._port}

    def serving_at(self, http: Any) -> None:
        """Where Serve's proxies really listen (`HTTPOptions`): a Serve another server started on the
        cluster keeps its own host and port, whatever ours asked for."""
        with contextlib.suppress(Exception):
            self._host, self._port = str(http.host), int(http.port)

    def _count_nodes(self) -> int:
        return sum(1 for node in self.backend._ray.nodes() if node.get("Alive"))

    # ----------------------------------------------------------------- the server's side
    def attach(self, ingress: Ingress) -> None:
        """The server's data plane signs with the cluster's key, so its tokens work on the proxies."""
        from jupyter_serving.identity.tokens import TokenSigner

        ingress.signer = TokenSigner(self.key)
        self.manager = ingress.manager

    def endpoint_url(self, name: str) -> str:
        base = self._base_url
        if not base:
            host = self._node_ip if self._host in ("0.0.0.0", "::") else self._host
            base = f"http://{host}:{self._port}"
        return f"{base}/serving-endpoints/{name}/invocations"

    def app_name(self, endpoint: str) -> str:
        return f"{self.prefix}{endpoint}"

    # ----------------------------------------------------------------- every poll
    async def reconcile(self, serve_status: Any) -> None:
        """Bring the cluster's ingress apps in line with the endpoints (called after each poll)."""
        apps = {
            name: str(getattr(app.status, "value", app.status))
            for name, app in serve_status.applications.items()
            if name.startswith(self.prefix)
        }
        self.status = apps
        self.pending = {app for app in self.pending if apps.get(app) not in ("RUNNING", None)}
        manager = self.manager
        if manager is None or manager.store is None:
            return
        now = time.monotonic()
        if now - self._nodes_read > NODES_EVERY_S:
            self._nodes = max(1, await self.backend.call(self._count_nodes))
            self._nodes_read = now
        wanted: dict[str, dict[str, Any]] = {}
        for endpoint in manager.list():
            snapshot = self._snapshot(endpoint)
            if snapshot is not None:
                wanted[self.app_name(endpoint.name)] = snapshot
        for app, snapshot in wanted.items():
            if self.published.get(app) != snapshot:
                config, replicas = dict(snapshot), snapshot["replicas"]
                del config["replicas"]
                route = f"/serving-endpoints/{config['endpoint']}"
                await self.backend.call(ray_ingress.run_ingress, app, route, config, replicas)
                self.published[app] = snapshot
                self.pending.add(app)
        for endpoint in manager.list():
            await self._front(endpoint, wanted.get(self.app_name(endpoint.name)))
        names = {endpoint.name for endpoint in manager.list()}
        for name in [name for name in self.fronts if name not in names]:
            del self.fronts[name]  # its applications are deleted with it
        restoring = any(e.restoring is not None and not e.restoring.done() for e in manager.list())
        settled = not restoring or now - self._started > ADOPT_WAIT_S
        gone = [app for app in apps if app not in wanted and (app in self.published or settled)]
        gone = [app for app in gone if not any(e.name == app[len(self.prefix) :] for e in manager.list())]
        for app in gone:
            self.published.pop(app, None)
            log.info("deleting the Ray ingress %s (its endpoint is gone)", app)
            await self.backend.call(self.backend._serve.delete, app, _blocking=False)

    async def _front(self, endpoint: Any, snapshot: dict[str, Any] | None) -> None:
        """Move the endpoint's invocations route to the entity that should front it, if any: the
        one fronting it now gives it back first (Serve refuses two apps one prefix)."""
        name = endpoint.name
        target = self._front_target(endpoint, snapshot, name in self.fronts)
        config = None
        if target is not None and snapshot is not None:
            config = {k: v for k, v in snapshot.items() if k != "replicas"}
        wanted = json.dumps(config, sort_keys=True)
        current = self.fronts.get(name)
        if current is not None and current.deployment is target and current.snapshot == wanted:
            return
        ingress_app = self.app_name(name)
        try:
            if current is not None and current.deployment is not target:
                await asyncio.wrap_future(current.deployment.front(None, ingress_app, None))
                del self.fronts[name]
            if target is not None:
                route = f"/serving-endpoints/{name}/invocations"
                await asyncio.wrap_future(target.front(config, ingress_app, route))
                self.fronts[name] = Front(target, wanted)
        except Exception as exc:  # e.g. a stale app of a killed server still holds the route
            log.warning("could not move the Ray route of endpoint %s: %s", name, exc)

    def _front_target(
        self, endpoint: Any, snapshot: dict[str, Any] | None, fronted: bool
    ) -> RayDeployment | None:
        """The entity that should hold a route-optimized endpoint's route: its only route, READY,
        on the nodes' own environment, once the endpoint's ingress app (with its rate-limit
        counters) has first run (`fronted`: a front is in place, and the ingress app's later
        reconfigurations do not take it away). Route optimization is what a user asks for fast
        direct queries with."""
        if snapshot is None or len(snapshot["routes"]) != 1 or not endpoint.record.route_optimized:
            return None
        if not fronted and self.status.get(self.app_name(endpoint.name)) != "RUNNING":
            return None
        deployment = endpoint.routing.deployments.get(snapshot["routes"][0][0])
        if getattr(deployment, "front", None) is None or deployment.stopping:
            return None
        if not deployment.node_environment:
            return None
        if deployment.policy.scale_to_zero:  # at zero replicas its route would have no ingress to
            return None  # bridge the cold start (warm.py): the ingress app keeps answering for it
        return deployment  # type: ignore[no-any-return]

    def _warm_host(self, deployment: Any) -> str | None:
        """The warm host (its actor name, warm.py) the proxies claim when a request finds this
        entity at zero replicas: while it is cold, the host already bridging its cold start, else
        its environment's ready one; None while it runs a replica (or has no pool)."""
        pool = self.backend.warm
        last = getattr(deployment, "_last", None)
        key = getattr(deployment, "warm_key", None)
        if pool is None or key is None or last is None or last.running or deployment.stopping:
            return None
        if deployment.handle is None or deployment.deployment.state != READY:
            return None
        host = pool.host_for(deployment.app, key)
        return host.name if host is not None else None

    def bridging(self, app: str) -> bool:
        """Whether the ingress snapshot the proxies run names a warm host for entity app `app`
        (published, and Serve has applied it since): a cold start through them is bridged."""
        for name, snapshot in self.published.items():
            entity = next((e for e in snapshot["entities"].values() if e["app"] == app), None)
            if entity is not None:
                return "warm" in entity and name not in self.pending and self.status.get(name) == "RUNNING"
        return False

    def _snapshot(self, endpoint: Any) -> dict[str, Any] | None:
        table = endpoint.routing
        record = endpoint.record
        if table is None or record.config is None:
            return None
        entities: dict[str, dict[str, Any]] = {}
        for name, deployment in table.deployments.items():
            app = getattr(deployment, "app", None)
            if app is None:  # not a Ray deployment (a test double)
                return None
            entity = deployment.entity
            entities[name] = {
                "app": app,
                "entity_name": entity.entity_name,
                "entity_version": entity.entity_version or "",
            }
            if (host := self._warm_host(deployment)) is not None:
                entities[name]["warm"] = host
        settings = self.backend.settings
        spool = self.backend.own.ray_spool_dir or str(
            settings.state_path.expanduser().resolve() / "ray-spool"
        )
        config = ray_ingress.ingress_config(
            endpoint=endpoint.name,
            endpoint_id=record.id,
            config_version=table.config_version,
            routes=list(table.routes),
            entities=entities,
            capture_path=str(table.capture_path) if table.capture_path is not None else None,
            capture_form=table.capture_form,
            ai_gateway=record.ai_gateway,
            auto_capture_config=record.config.auto_capture_config,
            catalog_root=str(settings.catalog_path),
            spool_root=f"{spool}/{endpoint.name}",
            key_name=self.key_name,
            request_timeout_s=settings.request_timeout_s,
            max_request_bytes=settings.max_request_bytes,
            rate_limit_window_s=settings.rate_limit_window_s,
            queue_limit=self.backend.sizing.queue_limit,
        )
        # JSON round trip: what Serve compares is what it ships (tuples become lists).
        return {**json.loads(json.dumps(config)), "replicas": self._nodes}

    async def stop(self) -> None:
        """A server that stops (not one that is killed) takes its ingress apps with it, as it does its
        entity apps: a shared cluster keeps nothing of a server that is gone on purpose."""
        for app in sorted(set(self.status) | set(self.published)):
            await self.backend.call(self.backend._serve.delete, app, _blocking=False)
        self.published.clear()
        self.pending.clear()

    async def released(self, app: str) -> None:
        """Wait until no ingress routes to `app` (an entity application about to be deleted)."""
        deadline = time.monotonic() + RELEASE_TIMEOUT_S
        while time.monotonic() < deadline:
            naming = [
                name
                for name, snapshot in self.published.items()
                if any(e["app"] == app for e in snapshot["entities"].values())
            ]
            fronting = any(front.deployment.app == app for front in self.fronts.values())
            if not naming and not fronting and not self.pending:
                return
            await asyncio.sleep(0.1)
        log.warning("an ingress still routed to %s after %g s; deleting it anyway", app, RELEASE_TIMEOUT_S)


__all__ = ["Front", "IngressPublisher", "ingress_prefix"]
