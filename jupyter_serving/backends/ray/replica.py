"""The Ray Serve deployment class: one replica of one served entity, running the worker's own scorer.

The same code as a local worker replica (`worker/__main__.load_scorer`, `worker/batcher.score_batch`,
`worker/scoring.Scorer`); only the transport differs: Serve hands requests to `__call__`, and
`@serve.batch` (no added wait unless the entity asks for one) gathers whatever arrived while the
previous predict ran into the next one, the adaptive micro-batching of the local worker. Imported
by Ray worker processes on the cluster, and by the server only when it deploys on Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import warnings
from typing import Any

from ray import serve

from jupyter_serving.worker.batcher import INLINE_BUDGET_S, score_batch
from jupyter_serving.worker.protocol import CHUNK

# What a reply carries back to the server: status, body, execution ms, client_request_id, batch size.
Reply = tuple[int, bytes, float, "str | None", int]

log = logging.getLogger("ray.serve")  # Serve writes this logger into the replica's own log file
UNFRONT_GRACE_S = 30.0  # see ServedModel._unfront
FRONT_WAIT_S = 10.0  # see ServedModel._answer


class ServedModel:
    """Loads the model once, warms it up, then scores coalesced requests."""

    def __init__(self, model_uri: str, label: str, fast_path: bool, max_batch_size: int) -> None:
        from jupyter_serving.worker.__main__ import load_scorer

        self.label = label
        os.environ.setdefault("MLFLOW_USE_BATCH_SPAN_PROCESSOR", "false")  # see worker/__main__.main
        _name_requests_in_the_log()
        log.info("%s: replica starting on node %s", label, _node_id())
        self.scorer = load_scorer(model_uri, fast_path=fast_path, log=log)
        # Per served entity through its environment_vars (runtime_env), as in a local worker.
        batch = int(os.environ.get("JUPYTER_SERVING_MAX_BATCH_SIZE", max_batch_size))
        wait_ms = float(os.environ.get("JUPYTER_SERVING_BATCH_WAIT_MS", "0"))
        # @serve.batch adds these setters at run time; its type hints keep the plain coroutine's type.
        self._score.set_max_batch_size(max(1, batch))  # type: ignore[attr-defined]
        self._score.set_batch_wait_timeout_s(max(0.0, wait_ms / 1000))  # type: ignore[attr-defined]
        self.inline = False
        from jupyter_serving.worker.streaming import Streams

        self.streams = Streams(self.scorer.model, int(os.environ.get("JUPYTER_SERVING_MAX_STREAMS", "16")))
        # The endpoint's ingress (ingress.EndpointIngress) while this entity fronts it (publish.py).
        self.front: Any = None
        self._fronted = asyncio.Event()  # set while `front` is configured
        self._unfronting: asyncio.Task[None] | None = None

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """The deployment's user_config, applied by Serve in place (no restart): `{"front": None}`, or
        the endpoint's ingress snapshot while this entity takes all its traffic and holds its route
        (`/serving-endpoints/<name>/invocations` on Serve's proxies): requests then reach this replica
        with one actor hop, as in a hand-written Serve deployment, and the ingress code runs here."""
        snapshot = (config or {}).get("front")
        if snapshot is None:
            if self.front is not None and self._unfronting is None:
                self._unfronting = asyncio.get_running_loop().create_task(self._unfront(self.front))
            return
        if self._unfronting is not None:
            self._unfronting.cancel()
            self._unfronting = None
        # A new front is published only once configured: `reconfigure` awaits (the token key, the
        # capture service), and a query that came meanwhile would find an ingress with no endpoint.
        front = self.front if self.front is not None else self._new_front(str(config["ingress_app"]))
        await front.reconfigure(snapshot)
        self.front = front
        self._fronted.set()

    def _new_front(self, ingress_app: str) -> Any:
        """The endpoint's ingress code, run in this replica (`ingress.EndpointIngress`), sharing the
        rate-limit counters of the endpoint's ingress app."""
        from jupyter_serving.backends.ray.ingress import LIMITS_DEPLOYMENT, EndpointIngress

        limits = serve.get_deployment_handle(LIMITS_DEPLOYMENT, ingress_app)
        return EndpointIngress(limits, self, serve.get_replica_context().app_name)

    async def _unfront(self, front: Any) -> None:
        """The route went back to the endpoint's ingress: a proxy that has not heard yet may still
        send a request here for a moment, so this replica answers for a grace period, then ends
        its ingress (its capture service commits and stops)."""
        await asyncio.sleep(UNFRONT_GRACE_S)
        if self.front is front:
            self.front = None
            self._fronted.clear()
            await front.close()
        self._unfronting = None

    async def stream(self, content_type: str, body: bytes, request_id: str = "") -> Any:
        """A streaming request, through Serve's streaming handle: SSE bytes as the model yields
        them, then one final (status, meta, body). The model runs as in a local worker
        (`worker/streaming.py`); Serve cancelling this generator (the client left) stops it."""
        queue: asyncio.Queue[tuple[int, bytes, bytes]] = asyncio.Queue()
        stream = self.streams.start(
            content_type.encode(), body, lambda *out: queue.put_nowait(out), request_id=request_id
        )
        try:
            while True:
                code, meta, data = await queue.get()
                if code == CHUNK:
                    while not queue.empty() and queue._queue[0][0] == CHUNK:  # type: ignore[attr-defined]
                        data += queue.get_nowait()[2]  # chunks that queued meanwhile: one message
                    yield data
                else:
                    yield (code, meta, data)
                    return
        finally:
            if stream is not None:
                stream.cancelled.set()  # a no-op after the end; GeneratorExit for the model before it

    async def __call__(self, content_type: Any, body: bytes = b"", request_id: str = "") -> Any:
        if not isinstance(content_type, str):  # a starlette Request from Serve's proxy: the route
            return await self._answer(content_type)
        return await self._score((content_type, body, request_id))

    async def score(self, content_type: str, body: bytes, request_id: str = "") -> Reply:
        return await self._score((content_type, body, request_id))

    async def _answer(self, request: Any) -> Any:
        """A query from Serve's proxy. Serve moves the route and hands new replicas their
        user_config at once, so a request can come a moment before this replica's `reconfigure`
        has run: it waits for it, as a request waits for a routing table on the server."""
        if self.front is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fronted.wait(), FRONT_WAIT_S)
        front = self.front
        if front is None:  # a proxy that has not heard yet that the route moved on
            from starlette.responses import JSONResponse

            body = {
                "error_code": "TEMPORARILY_UNAVAILABLE",
                "message": "The endpoint's route is moving between its Ray applications; retry.",
            }
            return JSONResponse(body, 503, {"Retry-After": "1"})
        return await front(request)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.0)
    async def _score(self, batch: list[tuple[str, bytes, str]]) -> list[Reply]:
        started = time.perf_counter()
        requests = [(content_type, body) for content_type, body, _ in batch]
        ids = [request_id for _, _, request_id in batch]
        if self.inline:  # fast models: a thread handoff would cost more than the predict
            results = score_batch(self.scorer, requests, ids)
        else:  # slow ones score off the loop, so Serve's health checks and queue probes get answers
            results = await asyncio.to_thread(score_batch, self.scorer, requests, ids)
        self.inline = time.perf_counter() - started < INLINE_BUDGET_S
        return [(r.status, r.body, r.execution_ms, r.client_request_id, r.batch) for r in results]

    def node(self) -> str:
        return _node_id()


def _name_requests_in_the_log() -> None:
    """Lines written while a request is scored name the server's request id (worker/request_log.py),
    and the scorer's own lines (logger jupyter_serving.worker) go to the replica's log through
    Serve's logger, as its load lines do, rather than to the Ray worker's stderr file."""
    from jupyter_serving.worker.request_log import RequestIdFilter

    if not any(isinstance(f, RequestIdFilter) for f in log.filters):
        log.addFilter(RequestIdFilter())
    worker_log = logging.getLogger("jupyter_serving.worker")
    if not any(isinstance(h, _ToServe) for h in worker_log.handlers):
        worker_log.addHandler(_ToServe())
        worker_log.propagate = False


class _ToServe(logging.Handler):
    """Hands a record to Serve's logger, whose filters and handlers write the replica's log."""

    def emit(self, record: logging.LogRecord) -> None:
        log.handle(record)


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def run(name: str, version: str, options: dict[str, Any], route_prefix: str | None, *args: Any) -> None:
    """Submit one served entity's application to Serve without waiting for it (the backend polls).

    `version` is the runtime key: Serve's Python API gives every `serve.run` a random code version,
    so a new sizing of the same entity would replace its replicas; with a fixed version it is a light
    update (replica counts only), as a reused local replica set is. `route_prefix`: None (the server's
    handle and the endpoint's ingress call it), or the endpoint's invocations route while it fronts
    the endpoint (publish.py)."""
    with warnings.catch_warnings():
        # Serve compares look_back_period_s with its deprecated metrics_interval_s (10 s) and warns;
        # the push intervals that field stands for are set by the backend (backend.py, REPLICA_PUSH_ENV).
        warnings.simplefilter("ignore", FutureWarning)
        # serve.deployment's overloads type a bare class argument as the decorator-factory form.
        deployment = serve.deployment(ServedModel).options(**options)  # type: ignore[attr-defined]
        deployment._version = version  # no public setter since `version=` left `.options()`
        app = deployment.bind(*args)
        serve._run(app, name=name, route_prefix=route_prefix, _blocking=False)


__all__ = ["Reply", "ServedModel", "run"]
