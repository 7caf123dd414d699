"""The data plane on Ray: one endpoint's ingress, a Serve deployment behind Serve's HTTP proxies.

On the Ray backend every endpoint also gets an application of two deployments:

    Ingress  one replica per node (`max_replicas_per_node` 1), served by Serve's HTTP proxy of every
             node at `/serving-endpoints/<name>`: token check, routing, capture, the answer
    Limits   one replica: the endpoint's AI Gateway rate-limit counters, shared by every Ingress

so queries reach the model without this server in their path, and go on while it restarts. The
Ingress runs the local data plane's own code: `dataplane.ingress.Ingress` (content type, usage rows)
over `dataplane.invoke.DataPlane` (traffic split, sticky routing keys, direct queries, the
inference-table row made durable before the answer), `dataplane.router.RoutingTable`,
`identity.tokens.TokenSigner` and `errors`. What differs is only what they stand on: the endpoint
is a snapshot the server publishes as the deployment's `user_config` (`reconfigure`, applied by
Serve in place, without restarting replicas), its served entities are Serve handles to their
applications, and the inference-table rows go through a capture service of the replica's own,
which spools on its node's disk and commits to the endpoint's Delta table at the catalog location.

The token key is read from Ray's internal KV (`KV_NAMESPACE`), where the server put it: the
Ingress verifies data-plane tokens without calling the server.

A request with `"stream": true` is answered as Server-Sent Events through Serve's proxy, chunk by
chunk as the model yields them (`stream.RayStream` over the entity's streaming handle), with the
same row rule as on the server: the assembled answer is durable before `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

from jupyter_serving.backends.base import Retired, ScoringReply, ScoringRequest
from jupyter_serving.backends.ray.stream import RayStream, first_line
from jupyter_serving.errors import (
    DeadlineExceeded,
    EndpointNotFound,
    InternalError,
    PayloadTooLarge,
    PermissionDenied,
    RequestLimitExceeded,
    ServingError,
    TemporarilyUnavailable,
    Unauthenticated,
)

log = logging.getLogger("ray.serve")  # Serve writes this logger into the replica's own log file

KV_NAMESPACE = "jupyter_serving"
INGRESS_DEPLOYMENT = "Ingress"
LIMITS_DEPLOYMENT = "Limits"
# The code version of both deployments: a new user_config (a new routing snapshot) is then applied
# in place by `reconfigure`, and a restarted server that publishes the same snapshot changes nothing.
CODE_VERSION = "ingress-1"
NEVER_COMPACT = 1 << 30  # the server's own capture service compacts the tables; proxies only append
_ROUTE = re.compile(r"/serving-endpoints/([^/]+)(?:/served-models/([^/]+))?/invocations/?")
ROUTING_KEY_HEADER = "x-serving-routing-key"
WAKE_S = 0.05  # see HandleDeployment._claim
FAST_REPLICA_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}


def signing_key_name(prefix: str) -> bytes:
    return f"{prefix}signing-key".encode()


# ----------------------------------------------------------------- what the server publishes
def ingress_config(
    *,
    endpoint: str,
    endpoint_id: str,
    config_version: int,
    routes: list[tuple[str, int]],
    entities: dict[str, dict[str, Any]],
    capture_path: str | None,
    capture_form: str,
    ai_gateway: dict[str, Any] | None,
    auto_capture_config: dict[str, Any] | None,
    catalog_root: str,
    spool_root: str,
    key_name: str,
    request_timeout_s: float,
    max_request_bytes: int,
    rate_limit_window_s: float,
    queue_limit: int,
) -> dict[str, Any]:
    """One endpoint's snapshot for its Ingress (JSON: Serve ships it as `user_config`).

    `entities`: served entity name -> {"app": its Serve application, "entity_name",
    "entity_version"}. Built by the server from the endpoint's routing table and record."""
    return {
        "endpoint": endpoint,
        "endpoint_id": endpoint_id,
        "config_version": config_version,
        "routes": [[name, pct] for name, pct in routes],
        "entities": entities,
        "capture_path": capture_path,
        "capture_form": capture_form,
        "ai_gateway": ai_gateway or {},
        "auto_capture_config": auto_capture_config,
        "catalog_root": catalog_root,
        "spool_root": spool_root,
        "key_name": key_name,
        "request_timeout_s": request_timeout_s,
        "max_request_bytes": max_request_bytes,
        "rate_limit_window_s": rate_limit_window_s,
        "queue_limit": queue_limit,
    }


# ----------------------------------------------------------------- the snapshot as the data plane sees it
@dataclass(frozen=True)
class _Entity:
    name: str
    entity_name: str
    entity_version: str | None


class _Target:
    """A served entity of the snapshot, as `DataPlane` sees a `Deployment`."""

    def __init__(self, name: str, info: dict[str, Any]) -> None:
        self.entity = _Entity(name, str(info.get("entity_name") or ""), info.get("entity_version"))
        self.key = self.app = str(info["app"])
        self.retired = False
        self.update(info)

    def update(self, info: dict[str, Any]) -> None:
        """The same application in a new snapshot (its warm host may have come or gone)."""

    @property
    def name(self) -> str:
        return self.entity.name

    async def _reply(self, call: Any, timeout_s: float, cancel: Any = None) -> ScoringReply:
        """The answer of one scoring call (a coroutine), or the error a deadline gives."""
        try:
            status, body, ms, crid, batch = await asyncio.wait_for(call, timeout_s)
        except TimeoutError:
            if cancel is not None:
                cancel()
            raise DeadlineExceeded(f"The model did not answer within {timeout_s:g} s.") from None
        return ScoringReply(status, body, ms, crid, batch)


class HandleDeployment(_Target):
    """A served entity invoked through its Serve handle, with the same errors as the server's
    `RayDeployment` (503 when Serve's queue is full, 504, 500)."""

    def __init__(self, name: str, info: dict[str, Any], queue_limit: int) -> None:
        from ray import serve

        from jupyter_serving.backends.ray.options import DEPLOYMENT_NAME

        self.warm: str | None = None
        self._bridge: asyncio.Task[Any] | None = None
        self._wake: asyncio.Task[Any] | None = None
        super().__init__(name, info)
        self.queue_limit = queue_limit
        self.handle = serve.get_deployment_handle(DEPLOYMENT_NAME, self.app)

    def update(self, info: dict[str, Any]) -> None:
        """While the entity is at zero replicas the snapshot names a warm host (warm.py) that a
        request here claims; once it is not cold any more, the next cold start claims afresh."""
        self.warm = info.get("warm")
        if self.warm is None:
            self._bridge = self._wake = None

    async def invoke(self, request: ScoringRequest, timeout_s: float) -> ScoringReply:
        from ray import exceptions as ray_errors
        from ray.serve import exceptions as serve_errors

        if self.retired:
            raise Retired(self.name)
        request_id = getattr(request, "request_id", "")  # named in the replica's log lines
        args = (
            (request.content_type, request.body, request_id)
            if request_id
            else (request.content_type, request.body)
        )
        if self.warm is not None and (host := await self._bridged()) is not None:
            ref = host.score.remote(*args)
            try:
                return await self._reply(_result(ref), timeout_s, lambda: _cancel(ref))
            except ray_errors.RayActorError:  # retired as Serve's replica took over: Serve answers
                pass
            except ray_errors.RayError as exc:
                failed = f"The warm Ray host serving '{self.name}' failed: {first_line(exc)}"
                raise InternalError(failed) from None
        response = self.handle.remote(*args)
        try:
            return await self._reply(_result(response), timeout_s, response.cancel)
        except serve_errors.BackPressureError:
            raise TemporarilyUnavailable(
                f"Served entity '{self.name}' has {self.queue_limit} requests waiting for a replica; "
                "retry shortly.",
                headers={"Retry-After": "1"},
            ) from None
        except (ray_errors.RayError, serve_errors.RequestCancelledError, ValueError) as exc:
            if self.retired:  # its application was deleted after this request chose it
                raise Retired(self.name) from None
            raise InternalError(f"The Ray replica serving '{self.name}' failed: {first_line(exc)}") from None

    async def _bridged(self) -> Any:
        """The warm host answering this cold start, or None once Serve's replica runs (or if no
        host could be claimed: the request then waits in Serve's handle, as without one)."""
        if self._bridge is None:
            self._bridge = asyncio.ensure_future(self._claim(str(self.warm)))
        host = await asyncio.shield(self._bridge)
        if host is None or (self._wake is not None and self._wake.done()):
            return None
        return host

    async def _claim(self, name: str) -> Any:
        """Claim the named warm host for this entity's application, while one call waiting in
        Serve's handle makes Serve start its replica (as a cold request does). A snapshot that
        is a poll late (the replica runs already) is found out by that call within WAKE_S."""
        import ray

        from jupyter_serving.backends.ray import warm

        self._wake = asyncio.ensure_future(_result(self.handle.node.remote()))
        done, _ = await asyncio.wait({self._wake}, timeout=WAKE_S)
        if done:
            return None
        try:
            host = await asyncio.to_thread(ray.get_actor, name, namespace=warm.NAMESPACE)
            info = await host.claim.remote(self.app, f"proxy@{_node_id()[:12]}")
        except Exception as exc:  # gone with the server that owned it, or the model did not load
            log.warning("%s: no warm host for this cold start (%s); waiting for Ray Serve", self.name,
                        first_line(exc))  # fmt: skip
            return None
        if info.get("app") != self.app:  # another entity's cold start took it first
            return None
        log.info("%s: cold start answered by warm host %s (load %.2f s)", self.name, name, info["load_s"])
        return host

    async def invoke_stream(self, request: ScoringRequest, timeout_s: float) -> RayStream:
        """A stream through the entity's Serve streaming handle, read as the server reads one."""
        if self.retired:
            raise Retired(self.name)
        generator = self.handle.options(stream=True, method_name="stream").remote(
            request.content_type, request.body, getattr(request, "request_id", "")
        )
        return RayStream(self.name, generator)


class LocalDeployment(_Target):
    """The served entity whose replica this ingress runs in (`replica.ServedModel` fronting its
    endpoint): scored in this process, without an actor hop, with `HandleDeployment`'s errors."""

    def __init__(self, name: str, info: dict[str, Any], model: Any) -> None:
        super().__init__(name, info)
        self.model = model

    async def invoke(self, request: ScoringRequest, timeout_s: float) -> ScoringReply:
        if self.retired:
            raise Retired(self.name)
        call = self.model.score(request.content_type, request.body, getattr(request, "request_id", ""))
        try:
            return await self._reply(call, timeout_s)
        except ServingError:
            raise
        except Exception as exc:  # the batcher's own failure: score_batch answers model errors itself
            raise InternalError(f"The Ray replica serving '{self.name}' failed: {first_line(exc)}") from None

    async def invoke_stream(self, request: ScoringRequest, timeout_s: float) -> RayStream:
        if self.retired:
            raise Retired(self.name)
        chunks = self.model.stream(request.content_type, request.body, getattr(request, "request_id", ""))
        return RayStream(self.name, _LocalGenerator(chunks))


class _LocalGenerator:
    """The replica's own stream generator, read as `RayStream` reads a Serve response generator."""

    def __init__(self, chunks: Any) -> None:
        self.chunks = chunks

    def __anext__(self) -> Any:
        return self.chunks.__anext__()

    def cancel(self) -> None:
        task = asyncio.get_running_loop().create_task(self._close())
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    async def _close(self) -> None:
        with contextlib.suppress(Exception):  # ended already, or closing from its own cancellation
            await self.chunks.aclose()


class _Metrics:
    """The ingress keeps no per-entity metrics of its own (the server's panel shows its own route)."""

    def observe(self, *args: Any) -> None:
        pass


@dataclass
class _Capture:
    auto_capture_config: dict[str, Any] | None


@dataclass
class _Record:
    id: str
    name: str
    config_version: int
    ai_gateway: dict[str, Any]
    config: _Capture


@dataclass
class _Endpoint:
    name: str
    record: _Record
    routing: Any  # RoutingTable
    metrics: _Metrics = field(default_factory=_Metrics)
    shadow: None = None
    deploying: bool = False

    def __post_init__(self) -> None:
        self.settled = asyncio.Event()
        self.settled.set()


@dataclass
class _Settings:
    rate_limit_window_s: float
    catalog_path: Path


class _Manager:
    """What `dataplane.ingress.Ingress` reads of an `EndpointManager`."""

    def __init__(self, settings: _Settings, endpoint: _Endpoint, dataplane: Any, capture: Any) -> None:
        self.settings = settings
        self.endpoint = endpoint
        self.dataplane = dataplane
        self.capture = capture

    def get(self, name: str) -> _Endpoint:
        return self.endpoint


# ----------------------------------------------------------------- the Serve deployments
class EndpointLimits:
    """The endpoint's rate-limit counters (`dataplane.limits.RateLimiter`), one replica for every
    proxy: exact across nodes, for one actor call per request on endpoints that have limits."""

    def __init__(self) -> None:
        from jupyter_serving.dataplane.limits import RateLimiter

        self.limiter = RateLimiter()

    def reconfigure(self, config: dict[str, Any]) -> None:
        self.limiter.window_s = float(config.get("window_s", 60.0))

    def admit(self, endpoint: str, limits: list[dict[str, Any]], principal: str) -> str | None:
        """None if admitted, else the Retry-After value."""
        wait = self.limiter.admit(endpoint, limits, principal)
        return None if wait is None else self.limiter.retry_after(wait)


class EndpointIngress:
    """One endpoint's data plane on one node, behind that node's Serve HTTP proxy.

    Also run inside a served entity's own replica (`model`: its `replica.ServedModel`) when the
    endpoint sends all its traffic to that entity: requests for it are then scored in-process."""

    def __init__(self, limits: Any, model: Any = None, app: str = "") -> None:
        self.limits = limits
        self.model, self.app = model, app
        self.config: dict[str, Any] = {}
        self.ingress: Any = None  # dataplane.ingress.Ingress over this snapshot
        self.signer: Any = None
        self.capture: Any = None
        self.endpoint: _Endpoint | None = None
        self.dataplane: Any = None  # dataplane.invoke.DataPlane, with this endpoint's one lane
        self._entities: dict[str, HandleDeployment | LocalDeployment] = {}
        self._lock = asyncio.Lock()
        self.node = _node_id()
        log.info("ingress replica starting on node %s", self.node)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """A new snapshot of the endpoint (Serve calls this in place): routing swaps in one step."""
        async with self._lock:
            await self._apply(config)

    async def _apply(self, config: dict[str, Any]) -> None:
        from jupyter_serving.dataplane.ingress import Ingress
        from jupyter_serving.dataplane.invoke import DataPlane
        from jupyter_serving.dataplane.router import RoutingTable
        from jupyter_serving.identity.tokens import TokenSigner

        if self.capture is None and (config.get("capture_path") or _usage_tracked(config)):
            await self._start_capture(Path(config["spool_root"]))
        if self.signer is None or config["key_name"] != self.config.get("key_name"):
            self.signer = TokenSigner(await asyncio.to_thread(_read_key, config["key_name"]))
        queue_limit = int(config.get("queue_limit", 256))
        entities: dict[str, HandleDeployment | LocalDeployment] = {}
        for name, info in config["entities"].items():
            old = self._entities.get(name)
            if old is not None and old.app == info["app"]:
                old.update(info)
                entities[name] = old
            elif self.model is not None and info["app"] == self.app:
                entities[name] = LocalDeployment(name, info, self.model)
            else:
                entities[name] = HandleDeployment(name, info, queue_limit)
        routes = tuple((str(name), int(pct)) for name, pct in config["routes"])
        capture_path = Path(config["capture_path"]) if config.get("capture_path") else None
        table = RoutingTable(
            int(config["config_version"]), cast(Any, entities), routes, capture_path,
            str(config.get("capture_form") or "legacy"), random.Random(),
        )  # fmt: skip
        gateway = {k: v for k, v in (config.get("ai_gateway") or {}).items() if k != "rate_limits"}
        record = _Record(
            str(config["endpoint_id"]), str(config["endpoint"]), int(config["config_version"]), gateway,
            _Capture(config.get("auto_capture_config")),
        )  # fmt: skip
        # One endpoint object for the replica's life: a request whose entity was retired meanwhile is
        # routed again on the table that replaced it (DataPlane reads `routing` again on Retired).
        if (endpoint := self.endpoint) is None:
            endpoint = self.endpoint = _Endpoint(str(config["endpoint"]), record, table)
        endpoint.record, endpoint.routing = record, table
        capture = self.capture
        # Likewise one data plane and one lane (what DataPlane keeps per endpoint, and reads `routing`
        # from again on Retired). Its table is installed before any request, so none is ever held
        # (`unroutable` is never asked); it keeps no metrics of its own (`_Metrics`).
        if (dataplane := self.dataplane) is None:
            dataplane = self.dataplane = DataPlane(lambda: self.capture, float(config["request_timeout_s"]))
            lane = dataplane.open_lane(endpoint.name, tuple, lambda: InternalError("No routing table."))
            lane.metrics = cast(Any, _Metrics())
            lane.settled.set()
        dataplane.request_timeout_s = float(config["request_timeout_s"])
        dataplane.lanes[endpoint.name].routing = table
        settings = _Settings(float(config["rate_limit_window_s"]), Path(config["catalog_root"]))
        ingress = Ingress(cast(Any, _Manager(settings, endpoint, dataplane, capture)), dataplane)
        ingress.signer = self.signer
        for name, old in self._entities.items():
            if entities.get(name) is not old:
                old.retired = True  # requests that chose it are routed once more (as on the server)
        self.config, self._entities, self.ingress = config, entities, ingress

    async def close(self) -> None:
        """No longer this replica's to answer (its entity stopped fronting the endpoint): commit
        and end its capture service."""
        async with self._lock:
            capture, self.capture = self.capture, None
            self.ingress = None
        if capture is not None:
            await capture.stop()

    async def _start_capture(self, spool_root: Path) -> None:
        """This replica's capture service (capture/service.py): a spool of its own on this node, so
        a row is durable before its answer; first, spools that replicas killed earlier left."""
        from jupyter_serving.capture import InferenceCapture

        spool_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        await asyncio.to_thread(drain_orphans, spool_root)
        spool = spool_root / f"{self.node[:12]}-{os.getpid()}-{int(time.time())}"
        capture = InferenceCapture(
            spool, flush_interval_s=0.5, compact_every_commits=NEVER_COMPACT, log_path=spool / "service.log"
        )
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        await capture.start()
        self.capture = capture

    async def __call__(self, request: Any) -> Any:
        from starlette.responses import Response

        from jupyter_serving.dataplane.ingress import scoring_content_type, wants_stream
        from jupyter_serving.dataplane.invoke import LiveStream

        request_id = _request_id()
        try:
            ingress = self.ingress  # None until the first snapshot is applied, and after `close`
            if ingress is None:  # (before `_check`, which needs the snapshot's endpoint and key)
                raise TemporarilyUnavailable(
                    "The endpoint's ingress is starting.", headers={"Retry-After": "1"}
                )
            name, served, principal, body = await self._check(request)
            content_type = request.headers.get("content-type")
            scoring_content_type(content_type)  # 415 before counting against a rate limit, as locally
            limits = (self.config.get("ai_gateway") or {}).get("rate_limits")
            if limits and (retry := await self.limits.admit.remote(name, limits, principal)) is not None:
                raise RequestLimitExceeded(
                    f"Endpoint '{name}' is over its rate limit for {principal}; retry after the window "
                    "renews.",
                    headers={"Retry-After": retry},
                )
            call = ingress.open_stream if wants_stream(body) else ingress.invoke
            result = await call(
                name, served, content_type, body, request.headers.get(ROUTING_KEY_HEADER), request_id,
                principal,
            )  # fmt: skip
        except ServingError as exc:
            if exc.http_status >= 500:
                log.warning("%d %s: %s", exc.http_status, request.url.path, exc.message)
            body = _error_body(exc)
            return Response(body, exc.http_status, dict(exc.headers), media_type="application/json")
        headers = {"served-model-name": result.served_entity}
        if isinstance(result, LiveStream):
            from starlette.responses import StreamingResponse

            headers["Cache-Control"] = "no-cache"
            return StreamingResponse(_sse(result), 200, headers, media_type="text/event-stream")
        return Response(result.body, result.status, headers, media_type="application/json")

    async def _check(self, request: Any) -> tuple[str, str | None, str, bytes]:
        """(endpoint, direct served entity, principal, body) of an allowed request, as the server's
        route-optimized listener checks it (dataplane/listener.py)."""
        from jupyter_serving.identity.tokens import endpoint_scope

        path = request.scope.get("path", "")
        if not path.startswith("/serving-endpoints/"):
            path = request.scope.get("root_path", "") + path
        route = _ROUTE.fullmatch(path)
        if route is None or unquote(route[1]) != self.config.get("endpoint"):
            raise EndpointNotFound(f"No API found for '{request.method} {path}' on the Ray proxy.")
        if request.method != "POST":
            raise _MethodNotAllowed(f"{request.method} is not supported on {path}; invocations take POST.")
        name, served = unquote(route[1]), route[2] and unquote(route[2])
        auth = request.headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            raise Unauthenticated(
                "The Ray proxy takes only an OAuth token for this endpoint from /oidc/v1/token."
            )
        claims = self.signer.verify(auth[7:].strip()) if self.signer is not None else None
        if claims is None:
            raise Unauthenticated("The token is invalid or expired; get a new one from /oidc/v1/token.")
        if claims["scope"] != endpoint_scope(name):
            raise PermissionDenied(f"The token does not grant querying endpoint '{name}'.")
        body = await request.body()
        limit = int(self.config.get("max_request_bytes", 0))
        if limit and len(body) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        return name, served, str(claims["sub"]), body

    def node_id(self) -> str:
        return self.node

    def stats(self) -> dict[str, Any]:
        """For tests and benchmarks: where this replica runs and what its capture has spooled."""
        return {"node": self.node, "pid": os.getpid(), "capture_pid": getattr(self.capture, "pid", None)}


class _MethodNotAllowed(ServingError):
    error_code = "BAD_REQUEST"
    http_status = 405


def _usage_tracked(config: dict[str, Any]) -> bool:
    return bool(((config.get("ai_gateway") or {}).get("usage_tracking_config") or {}).get("enabled"))


def _read_key(name: str) -> bytes:
    from ray.experimental import internal_kv

    key = internal_kv._internal_kv_get(name.encode(), namespace=KV_NAMESPACE)
    if not key:
        raise RuntimeError(f"the data-plane token key {name} is not in Ray's internal KV")
    return bytes(key)


def drain_orphans(spool_root: Path) -> int:
    """Commit the spools of ingress replicas that are gone (killed, their node restarted): a spool
    whose lock nobody holds is committed by a one-shot capture service (its stdin a pipe at its
    end) and removed. A killed replica's own service usually did that already, on its pipe's end."""
    from jupyter_serving.capture.writer import SERVICE_MODULE

    drained = 0
    for spool in sorted(p for p in spool_root.iterdir() if p.is_dir()):
        lock = spool / "service.lock"
        if not lock.exists():
            continue
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live replica's
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        done = subprocess.run(
            [sys.executable, "-m", SERVICE_MODULE, str(spool),
             "--compact-every-commits", str(NEVER_COMPACT)],
            input=b"", capture_output=True, timeout=600, check=False,  # a pipe at its end: commit, exit
        )  # fmt: skip
        if done.returncode == 0 and not list(spool.glob("quarantine/*")):
            shutil.rmtree(spool, ignore_errors=True)
            drained += 1
        else:
            log.warning("could not drain the spool %s: %s", spool, done.stderr[-500:])
    return drained


def run_ingress(app: str, route_prefix: str, config: dict[str, Any], replicas: int) -> None:
    """Submit (or update in place) one endpoint's ingress application without waiting for it."""
    import warnings

    from ray import serve

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        limits = serve.deployment(EndpointLimits).options(  # type: ignore[attr-defined]
            name=LIMITS_DEPLOYMENT,
            num_replicas=1,
            ray_actor_options={"num_cpus": 0},
            user_config={"window_s": config["rate_limit_window_s"]},
        )
        limits._version = CODE_VERSION
        ingress = serve.deployment(EndpointIngress).options(  # type: ignore[attr-defined]
            name=INGRESS_DEPLOYMENT,
            num_replicas=max(1, replicas),
            max_replicas_per_node=1,
            ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": dict(FAST_REPLICA_ENV)}},
            user_config=config,
            max_ongoing_requests=1024,
            logging_config={"enable_access_log": False},
        )
        ingress._version = CODE_VERSION
        serve._run(ingress.bind(limits.bind()), name=app, route_prefix=route_prefix, _blocking=False)


_CLOSING: set[asyncio.Task[None]] = set()  # streams a client left, finishing their rows


async def _sse(live: Any) -> Any:
    """The stream's bytes as Serve's proxy sends them on. A client that leaves makes Serve stop this
    generator: the model's generator is then cancelled and the row recorded (499) in a task of its
    own, since a cancelled generator cannot await."""
    try:
        async for part in live:
            yield part
    finally:
        if live.end is None:
            live.stream.close()
            task = asyncio.get_running_loop().create_task(live.aclose())
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)


def _error_body(exc: ServingError) -> bytes:
    import json

    return json.dumps(exc.to_json()).encode()


def _request_id() -> str:
    """Serve's id of this request: its proxy answers it as `x-request-id`, and the inference table's
    databricks_request_id is the same value, as on the server's routes."""
    import uuid

    try:
        from ray.serve.context import _get_serve_request_context

        return _get_serve_request_context().request_id or uuid.uuid4().hex
    except Exception:
        return uuid.uuid4().hex


def _node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


async def _result(response: Any) -> Any:
    return await response


def _cancel(ref: Any) -> None:
    import ray

    with contextlib.suppress(Exception):
        ray.cancel(ref)


__all__ = ["EndpointIngress", "EndpointLimits", "ingress_config", "run_ingress", "signing_key_name"]
