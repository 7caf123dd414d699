"""One served entity as a Ray Serve application: the Ray backend's `Deployment`.

deploy() submits the application and returns once Serve reports it RUNNING (or raises DeployFailed
with Serve's message); invoke() calls its deployment handle from the server's event loop; stop()
waits for this server's requests in flight, then deletes the application. Scaling is Serve's own
autoscaler, configured from the entity's policy (options.py); requests that arrive while it is at
zero replicas wait in the handle while Serve starts one. States come from the backend's poll of
Serve's status (`observe`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ray import exceptions as ray_errors
from ray.serve import exceptions as serve_errors

from jupyter_serving.backends.base import (
    DeployFailed,
    DeploymentSpec,
    DeploymentStatus,
    Retired,
    ScoringReply,
    ScoringRequest,
)
from jupyter_serving.backends.ray import options as opts
from jupyter_serving.backends.ray import warm
from jupyter_serving.backends.ray.stream import RayStream, first_line
from jupyter_serving.errors import DeadlineExceeded, InternalError, TemporarilyUnavailable
from jupyter_serving.model.config import ServedEntity
from jupyter_serving.model.states import ABORTED, FAILED, READY, RECOVERING, DeploymentState
from jupyter_serving.policy.autoscaler import ScalingPolicy

if TYPE_CHECKING:
    from jupyter_serving.backends.ray.backend import AppSnapshot, RayBackend

log = logging.getLogger("jupyter_serving")

DEPLOY_POLL_S = 0.25


class RayDeployment:
    """A served entity's Serve application: deploy, invoke through its handle, observe, delete."""

    def __init__(self, backend: RayBackend, spec: DeploymentSpec) -> None:
        self.backend = backend
        self.spec = spec
        self.endpoint = spec.endpoint
        self.entity = spec.entity
        self.key = spec.key
        self.policy = spec.policy
        self.load_uri = spec.load_uri
        self.app = opts.app_name(
            backend.prefix, spec.endpoint, spec.entity.name, self.key, uuid.uuid4().hex[:6]
        )
        self.deployment = DeploymentState()
        self.handle: Any = None
        self.inflight = 0
        self.queued = 0  # requests waiting while the entity has no running replica
        self.cold_starts = 0
        self._cold = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._options: dict[str, Any] | None = None
        self._submitted: Future[Any] | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._last: AppSnapshot | None = None
        # Scale from zero through a warm, pre-imported host (warm.py): its environment's key in the
        # backend's pool, and the host bridging the cold start in progress on the server's route.
        self.warm_key: str | None = None
        self._bridge: asyncio.Task[_Bridge | None] | None = None
        self._wake: Any = None
        # The endpoint's invocations route while this entity fronts it (publish.py), else None.
        self.route: str | None = None
        self._gone = False  # its application was deleted: nothing may submit it again

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def stopping(self) -> bool:
        return self._stopping is not None

    # ----------------------------------------------------------------- deploy
    async def deploy(self) -> None:
        env = await self.backend.runtime_env(self.spec, self.deployment.note)
        self._options = opts.deployment_options(
            self.policy, self.entity.workload_type, self.backend.sizing, env
        )
        self._ensure_warm()
        if self.stopping:
            raise asyncio.CancelledError
        if (adopted := self.backend.adopt(self)) is not None:  # a restart: what the last server left
            self.app = adopted
            self._submitted = Future()
            self._submitted.set_result(None)
        else:
            self.deployment.note("Submitting the Ray Serve application.")
            self._submitted = self.backend.submit(self._run, self._options, self.route)
        self._put_spec()
        try:
            await asyncio.wrap_future(self._submitted)
        except Exception as exc:
            raise self._fail(f"Ray Serve refused the deployment: {exc}") from None
        await self._wait_running()
        self.handle = await self.backend.call(self.backend._serve.get_app_handle, self.app)
        if self.stopping:
            raise asyncio.CancelledError
        self.deployment.to(READY, "")

    def _run(self, options: dict[str, Any], route: str | None) -> None:
        from jupyter_serving.backends.ray.replica import run

        settings = self.backend.settings
        model = self.load_uri or self.entity.model_uri
        label = f"{self.endpoint}/{self.entity.name}"
        run(self.app, self.key, options, route, model, label, settings.fast_path, settings.max_batch_size)

    # ----------------------------------------------------------------- fronting the endpoint's route
    @property
    def node_environment(self) -> bool:
        """Whether its replicas run in the nodes' own Python environment, where the ingress code
        (and the capture service it starts) can run too."""
        return self._options is not None and "uv" not in self._options["ray_actor_options"]["runtime_env"]

    def front(self, snapshot: dict[str, Any] | None, ingress_app: str, route: str | None) -> Future[Any]:
        """Take the endpoint's invocations route with its ingress snapshot (publish.py), or give it
        back (None). The same code version: Serve applies the new user_config in place."""
        user_config: dict[str, Any] = {"front": snapshot}
        if snapshot is not None:
            user_config["ingress_app"] = ingress_app
        if self._options is None or self._gone:
            done: Future[Any] = Future()
            done.set_result(None)
            return done
        self._options = {**self._options, "user_config": user_config}
        self.route = route
        self._submitted = self.backend.submit(self._run, self._options, route)
        return self._submitted

    async def _wait_running(self) -> None:
        deadline = time.monotonic() + self.backend.settings.deploy_timeout_s
        while True:
            app = (await self.backend.refresh()).get(self.app)
            if self.stopping:
                raise asyncio.CancelledError
            if app is not None and app.status == "RUNNING":
                return
            if app is not None and app.status == "DEPLOY_FAILED":
                raise self._fail(f"Ray Serve could not deploy the model: {app.message}")
            if time.monotonic() > deadline:
                timeout = self.backend.settings.deploy_timeout_s
                raise self._fail(f"The model did not load within {timeout:g} s on Ray.")
            if app is not None:
                self.deployment.note(_progress(app))
            await asyncio.sleep(DEPLOY_POLL_S)

    def _fail(self, message: str) -> DeployFailed:
        if self.deployment.can(FAILED):
            self.deployment.to(FAILED, message[:2000])
        return DeployFailed(message[:2000])

    # ----------------------------------------------------------------- the request path
    async def invoke(self, request: ScoringRequest, timeout_s: float) -> ScoringReply:
        if self.stopping:
            raise Retired(self.name)
        if self.handle is None or self.deployment.final:
            raise InternalError(f"Served entity '{self.name}' is not running: {self.deployment.message}")
        last = self._last
        cold = last is not None and last.running == 0
        if cold and not self._cold:  # the first request at zero replicas: Serve starts one for it
            self._cold = True
            self.cold_starts += 1
            self.deployment.note("Cold start: Ray Serve is starting a replica for a waiting request.")
        self.inflight += 1
        self.queued += cold
        self._idle.clear()
        try:
            if cold and (bridge := await self._bridge_host()) is not None:
                return await bridge.call(self, request, timeout_s)
            return await self._call(request, timeout_s)
        finally:
            self.inflight -= 1
            self.queued -= cold
            if not self.inflight:
                self._idle.set()

    async def _call(self, request: ScoringRequest, timeout_s: float) -> ScoringReply:
        response = self.handle.remote(request.content_type, request.body, request.request_id)
        try:
            status, body, ms, crid, batch = await asyncio.wait_for(_result(response), timeout_s)
        except TimeoutError:
            response.cancel()
            raise DeadlineExceeded(f"The model did not answer within {timeout_s:g} s.") from None
        except serve_errors.BackPressureError:
            raise TemporarilyUnavailable(
                f"Served entity '{self.name}' has {self.backend.sizing.queue_limit} requests waiting for "
                "a replica; retry shortly.",
                headers={"Retry-After": "1"},
            ) from None
        except (ray_errors.RayError, serve_errors.RequestCancelledError) as exc:
            raise InternalError(f"The Ray replica serving '{self.name}' failed: {first_line(exc)}") from None
        return ScoringReply(status, body, ms, crid, batch)

    async def invoke_stream(self, request: ScoringRequest, timeout_s: float) -> RayStream:
        """A stream through Serve's streaming handle; it counts as in flight until it ends."""
        if self.stopping:
            raise Retired(self.name)
        if self.handle is None or self.deployment.final:
            raise InternalError(f"Served entity '{self.name}' is not running: {self.deployment.message}")
        self.inflight += 1
        self._idle.clear()
        generator = self.handle.options(stream=True, method_name="stream").remote(
            request.content_type, request.body, request.request_id
        )
        return RayStream(self.name, generator, self._stream_done)

    # ----------------------------------------------------------------- cold starts through a warm host
    def _ensure_warm(self) -> None:
        """An entity that scales to zero keeps a warm host of its Python environment ready (its
        runtime_env with the server's variables only), and what a host needs to load its model is
        in Ray's internal KV, where a proxy's claim reads it (warm.py)."""
        if not self.policy.scale_to_zero or self._options is None:
            return
        env = {**self._options["ray_actor_options"]["runtime_env"], "env_vars": self.backend._replica_env()}
        self.warm_key = self.backend.warm_pool().ensure(env)

    def _put_spec(self) -> None:
        """What a warm host needs to load this entity's model, in Ray's internal KV (warm.py)."""
        if self.warm_key is None:
            return
        settings = self.backend.settings
        spec = {
            "model": self.load_uri or self.entity.model_uri,
            "label": f"{self.endpoint}/{self.entity.name}",
            "env": self.spec.environment(),
            "fast_path": settings.fast_path,
            "max_batch_size": settings.max_batch_size,
        }
        self.backend.submit(_kv_put, warm.spec_key(self.app), json.dumps(spec).encode())

    async def _bridge_host(self) -> _Bridge | None:
        """The host answering this cold start (one for all its requests), or None to wait for Serve."""
        if self._bridge is None:
            self._bridge = asyncio.ensure_future(self._open_bridge())
        return await asyncio.shield(self._bridge)

    async def _open_bridge(self) -> _Bridge | None:
        pool = self.backend.warm_pool()
        host = pool.host_for(self.app, self.warm_key)  # a proxy may have claimed one already
        if host is None:
            return None
        # One call waiting in Serve's handle makes Serve start its replica, as a cold request would.
        self._wake = self.handle.node.remote()
        try:
            info = await host.handle.claim.remote(self.app, "server")
        except Exception as exc:  # the model does not load there: Serve's replica will say why
            label = f"{self.endpoint}/{self.entity.name}"
            log.warning("%s: the warm Ray host could not load the model: %s", label, first_line(exc))
            pool.kill(host.handle)  # the next poll starts its successor
            return None
        if info.get("app") != self.app:  # another entity's cold start (maybe on a proxy) took it
            return None
        pool.record(host, info)
        self.deployment.note(
            "Cold start: a warm, pre-imported Ray actor answers while Ray Serve starts a replica."
        )
        return _Bridge(host.handle)

    def _release_bridge(self) -> None:
        """Serve's replica runs (or the entity stops): new requests go to Serve; a host that
        bridged the cold start (here or on a proxy) is killed once its requests are done."""
        self._bridge, self._wake = None, None
        if self.backend.warm is not None:
            self.backend.warm.retire(self.app)

    def _stream_done(self) -> None:
        self.inflight -= 1
        if not self.inflight:
            self._idle.set()

    # ----------------------------------------------------------------- observed from Serve
    def observe(self, app: AppSnapshot | None) -> None:
        """One poll of Serve's status: health, recovery, scale to zero (called by the backend)."""
        self._last = app
        state = self.deployment.state
        if self.stopping or self.handle is None or state not in (READY, RECOVERING):
            return
        if app is None:
            self.deployment.to(
                FAILED, f"The Ray Serve application {self.app} was deleted outside this server."
            )
        elif app.status in ("UNHEALTHY", "DEPLOY_FAILED"):
            self.deployment.to(RECOVERING, f"Ray Serve: {app.message or app.status}")
        elif state == RECOVERING and app.status == "RUNNING":
            self.deployment.to(READY, "")
        if app is None:
            return
        if app.running:
            self._release_bridge()
            if self._cold:
                self._cold = False
                self.deployment.note("")
        elif self.policy.scale_to_zero and not self._cold and not app.starting:
            self.deployment.note(
                f"Scaled to zero by Ray Serve after {self.policy.idle_s:g} s without requests; "
                "the next request starts a replica."
            )

    # ----------------------------------------------------------------- sizing, stopping
    def reconfigure(self, entity: ServedEntity, policy: ScalingPolicy) -> None:
        """New sizing for the same runtime key: the same version, so Serve only changes replica counts."""
        self.entity = entity
        if policy == self.policy or self._options is None:
            self.policy = policy
            return
        self.policy = policy
        self._options = {**self._options, "autoscaling_config": opts.autoscaling_config(policy)}
        self._ensure_warm()
        self._put_spec()
        self._submitted = self.backend.submit(self._run, self._options, self.route)

    def abort(self, message: str) -> None:
        if self.deployment.can(ABORTED):
            self.deployment.to(ABORTED, message)

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Let this server's requests in flight finish, then delete the application. Runs to the end
        even if the caller is cancelled, so no application outlives its deployment."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop(drain_timeout_s))
        await asyncio.shield(self._stopping)

    async def _stop(self, drain_timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), drain_timeout_s)
        self._release_bridge()
        if self.backend.warm is not None:
            self.backend.warm.forget(self.app)
        if self.warm_key is not None:
            with contextlib.suppress(Exception):
                await self.backend.call(_kv_del, warm.spec_key(self.app))
        if self._submitted is not None:
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._submitted)
            try:
                await self.backend.released(self.app)  # no Ray proxy routes to it any more
                self._gone = True
                await self.backend.delete_app(self.app)
            except Exception as exc:
                log.error("could not delete Ray Serve application %s: %r", self.app, exc)
        self.backend.deployments.discard(self)

    def status(self) -> DeploymentStatus:
        app = self._last
        running, starting = (app.running, app.starting) if app is not None else (0, 0)
        pool, publisher = self.backend.warm, self.backend.publisher
        return DeploymentStatus(
            state=self.deployment.state,
            message=self.deployment.message,
            replicas=running,
            ready_replicas=running,
            starting_replicas=starting,
            min_replicas=0 if self.policy.scale_to_zero else self.policy.min_replicas,
            max_replicas=self.policy.max_replicas,
            inflight=self.inflight,
            queued=self.queued,
            cold_starts=self.cold_starts,
            extras={
                "ray": {
                    "application": self.app,
                    "status": app.status if app is not None else None,
                    "replica_states": dict(app.replica_states) if app is not None else {},
                    "nodes": sorted(set(app.nodes)) if app is not None else [],
                    # The endpoint's invocations route on Serve's proxies while this entity fronts it
                    # (answered by its replicas in one hop, publish.py), else None.
                    "route": self.route,
                    # Cold starts answered by a warm, pre-imported host, and what the last one said
                    # (preimported: MLflow was imported before the model was given to it).
                    "warm_starts": pool.counts.get(self.app, 0) if pool is not None else 0,
                    "warm_start": pool.last(self.app) if pool is not None else None,
                    "warm_host": pool.state(self.warm_key) if pool and self.warm_key else None,
                    # Whether the Ray proxies' ingress names this cold entity's warm host (publish.py).
                    "warm_on_proxies": publisher.bridging(self.app) if publisher is not None else False,
                },
            },
        )


class _Bridge:
    """A warm host serving one cold start on the server's route (warm.py)."""

    def __init__(self, host: Any) -> None:
        self.host = host

    async def call(
        self, deployment: RayDeployment, request: ScoringRequest, timeout_s: float
    ) -> ScoringReply:
        ref = self.host.score.remote(request.content_type, request.body, request.request_id)
        try:
            status, body, ms, crid, batch = await asyncio.wait_for(_result(ref), timeout_s)
        except TimeoutError:
            with contextlib.suppress(Exception):
                import ray

                ray.cancel(ref)
            raise DeadlineExceeded(f"The model did not answer within {timeout_s:g} s.") from None
        except ray_errors.RayActorError:  # retired as Serve's replica took over: Serve answers
            return await deployment._call(request, timeout_s)
        except ray_errors.RayError as exc:
            raise InternalError(
                f"The warm Ray host serving '{deployment.name}' failed: {first_line(exc)}"
            ) from None
        return ScoringReply(status, body, ms, crid, batch)


async def _result(response: Any) -> Any:
    return await response


def _kv_put(key: bytes, value: bytes) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_put(key, value, overwrite=True, namespace=warm.NAMESPACE)


def _kv_del(key: bytes) -> None:
    from ray.experimental import internal_kv

    internal_kv._internal_kv_del(key, namespace=warm.NAMESPACE)


def _progress(app: AppSnapshot) -> str:
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(app.replica_states.items())) or "none yet"
    return f"Ray Serve is deploying the model (replicas: {states})."


__all__ = ["RayDeployment"]
