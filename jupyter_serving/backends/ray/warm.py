"""Scale from zero on Ray in about the time the model takes to load: warm, pre-imported hosts.

A Serve replica started from zero is a fresh Ray worker process that imports Ray Serve, MLflow,
pandas and scikit-learn before it loads the model: 10-14 s on the 2-core development machine, most
of it imports. The local backend avoids that with a fork server per Python environment (imports
done once, replicas forked from it). Ray cannot fork a worker, so the Ray backend keeps the same
thing as an actor: one `WarmHost` per Python environment (the nodes' own, or one `uv` runtime_env),
started when an entity that scales to zero is deployed, holding no model and reserving no CPU, with
the imports done (`worker.__main__.prepare`, the fork server's preload list).

A request that finds an entity at zero replicas, on the server's route or on any node's Ray proxy
(the ingress, `ingress.HandleDeployment`), *claims* the warm host of the entity's environment by
the entity's application name: the host loads the model (the replica's own class,
`replica.ServedModel`, so scoring is the same code) from the spec the server put in Ray's internal
KV (`spec_key`), and the requests of that cold start go there while Serve starts its replica as
before (one call waiting in Serve's handle makes it). A claim is atomic in the actor: a second
claim for the same application shares the host (two proxies bridging one cold start); one for
another application is refused, and that request waits for Serve. The proxies find the host by
name (`NAMESPACE`): the server publishes it in the ingress snapshot while the entity is cold.

The server's pool notices a claim at its next poll (`sweep`) and starts the next warm host of that
environment; once Serve's replica runs, the claimed host is drained and killed (`retire`): it was a
bridge over the cold start, never a second replica. Hosts are owned by this server's Ray driver, so
they go when the server does, even after kill -9; a proxy whose host is gone waits for Serve.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("jupyter_serving")

NAMESPACE = "jupyter_serving"  # the Ray namespace of warm hosts (and of the ingress's KV entries)


def spec_key(app: str) -> bytes:
    """Ray internal KV key of what a warm host needs to load `app`'s model (written by the server)."""
    return f"warm:{app}".encode()


class WarmHost:
    """A Ray actor with the replica's imports done; `claim` turns it into a temporary replica."""

    def __init__(self) -> None:
        started = time.perf_counter()
        from jupyter_serving.backends.ray import replica  # noqa: F401  (Ray Serve's batching)
        from jupyter_serving.worker.__main__ import FORK_PRELOAD, prepare

        prepare(FORK_PRELOAD)
        self.import_s = time.perf_counter() - started
        self.model: Any = None
        self.app: str | None = None
        self.info: dict[str, Any] = {}
        self.inflight = 0
        self._lock: asyncio.Lock | None = None
        self._claimed: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    def _events(self) -> tuple[asyncio.Lock, asyncio.Event, asyncio.Event]:
        """Made on the actor's event loop, on first use (the constructor runs outside it)."""
        if self._lock is None or self._claimed is None or self._idle is None:
            self._lock, self._claimed, self._idle = asyncio.Lock(), asyncio.Event(), asyncio.Event()
            self._idle.set()
        return self._lock, self._claimed, self._idle

    async def ready(self) -> dict[str, Any]:
        """Answered once the imports are done (the constructor has returned)."""
        return {"pid": os.getpid(), "import_s": round(self.import_s, 3)}

    async def claim(self, app: str, by: str) -> dict[str, Any]:
        """Become the bridge of `app`'s cold start: load its model as its replica would, with its
        environment variables. The same application again shares it ({"app": app, ...}); another
        one is refused ({"taken_by": ...}): a host holds one model."""
        import ray
        from ray.experimental import internal_kv

        from jupyter_serving.backends.ray.replica import ServedModel

        lock, claimed, _ = self._events()
        async with lock:
            if self.app is not None:
                return self.info if self.app == app else {"taken_by": self.app}
            raw = internal_kv._internal_kv_get(spec_key(app), namespace=NAMESPACE)
            if not raw:
                return {"taken_by": None, "missing": True}  # the application is gone
            spec = json.loads(raw)
            preimported = "mlflow.pyfunc" in sys.modules  # what the warm path is for: no import here
            os.environ.update(spec["env"])
            started = time.perf_counter()
            try:
                model = ServedModel(spec["model"], spec["label"], spec["fast_path"], spec["max_batch_size"])
            except BaseException:
                # Half-loaded, with another entity's variables set: of no use to the next cold start.
                # It ends once this error is on its way; the pool's next poll starts its successor.
                asyncio.get_running_loop().call_later(0.5, os._exit, 1)
                raise
            self.model, self.app = model, app
            self.info = {
                "app": app,
                "by": by,
                "preimported": preimported,
                "load_s": round(time.perf_counter() - started, 3),
                "import_s": round(self.import_s, 3),
                "pid": os.getpid(),
                "node": ray.get_runtime_context().get_node_id(),
            }
            claimed.set()
            return self.info

    async def claimed(self) -> dict[str, Any]:
        """Answers once a claim has loaded a model: how the server's pool learns of proxies' claims."""
        _, claimed, _ = self._events()
        await claimed.wait()
        return self.info

    async def score(self, *args: Any) -> Any:
        """One request, as the replica's `__call__` takes it, scored by the replica's own batch
        function; unbatched, since `@serve.batch` needs a Serve replica context, which this is not."""
        from jupyter_serving.backends.ray.replica import ServedModel

        _, _, idle = self._events()
        self.inflight += 1
        idle.clear()
        try:
            replies = await ServedModel._score.__wrapped__(self.model, [args])  # type: ignore[attr-defined]
            return replies[0]
        finally:
            self.inflight -= 1
            if not self.inflight:
                idle.set()

    async def drain(self) -> None:
        """Returns when no request is in flight here (Serve's replica now takes new ones)."""
        _, _, idle = self._events()
        await idle.wait()


def environment_key(runtime_env: dict[str, Any]) -> str:
    """Which warm host fits a replica: its runtime_env without the entity's own variables (those
    are set in the host when it is claimed). Equal for every entity on the nodes' own environment."""
    return hashlib.sha1(json.dumps(runtime_env, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class _Host:
    handle: Any
    name: str
    ready: Any  # the ObjectRef of handle.ready(): done once the imports are
    claimed: Any  # the ObjectRef of handle.claimed(): done once a request has claimed it


@dataclass
class Claim:
    """A host some cold start claimed, and what it said."""

    host: _Host
    info: dict[str, Any]
    retired: bool = False


class WarmPool:
    """One unclaimed warm host per Python environment, replaced once it is claimed."""

    def __init__(self, ray: Any, prefix: str) -> None:
        self.ray = ray
        self.prefix = prefix
        self.hosts: dict[str, _Host] = {}
        self.envs: dict[str, dict[str, Any]] = {}
        self.claims: dict[str, Claim] = {}  # application -> the host bridging its cold start
        self.counts: dict[str, int] = {}  # application -> cold starts bridged by a warm host
        self.started = 0
        self._actor: Any = None
        self._retiring: set[asyncio.Task[None]] = set()

    def ensure(self, runtime_env: dict[str, Any]) -> str:
        """The key of `runtime_env`'s warm host, which starts now if there is none."""
        key = environment_key(runtime_env)
        if key not in self.hosts:
            self.envs[key] = runtime_env
            self._start(key)
        return key

    def _start(self, key: str) -> None:
        if self._actor is None:
            # No CPU reserved while it waits (it holds no model); max_restarts 0: a dead one is replaced.
            self._actor = self.ray.remote(num_cpus=0, max_restarts=0)(WarmHost)
        name = f"{self.prefix}warm-{key}-{uuid.uuid4().hex[:6]}"
        handle = self._actor.options(name=name, namespace=NAMESPACE, runtime_env=self.envs[key]).remote()
        self.hosts[key] = _Host(handle, name, handle.ready.remote(), handle.claimed.remote())
        self.started += 1

    def _done(self, ref: Any) -> bool:
        done, _ = self.ray.wait([ref], timeout=0)
        return bool(done)

    def sweep(self) -> None:
        """Every poll: a host that was claimed (here or by a proxy) is recorded against its
        application and replaced; one that died is replaced."""
        for key, host in list(self.hosts.items()):
            if self._done(host.claimed):
                self._start(key)
                try:
                    info = self.ray.get(host.claimed, timeout=0)
                except Exception as exc:  # it died (its node went, out of memory)
                    log.warning("a warm Ray host died before it was used: %r", exc)
                    continue
                self.record(host, info)
            elif self._done(host.ready):
                try:
                    self.ray.get(host.ready, timeout=0)
                except Exception as exc:
                    log.warning("a warm Ray host died while importing: %r", exc)
                    self._start(key)

    def record(self, host: _Host, info: dict[str, Any]) -> None:
        """A claim this server made itself: counted now rather than at the next poll."""
        app = str(info["app"])
        current = self.claims.get(app)
        if current is None or current.host is not host:
            self.claims[app] = Claim(host, info)
            self.counts[app] = self.counts.get(app, 0) + 1

    def forget(self, app: str) -> None:
        """`app` is deleted: its host (if any) retires, and its count goes."""
        self.retire(app)
        self.claims.pop(app, None)
        self.counts.pop(app, None)

    def ready(self, key: str | None) -> _Host | None:
        """The unclaimed warm host of that environment with its imports done, or None (none, or
        still importing: the cold start then waits for Serve's replica as without a pool)."""
        host = self.hosts.get(key) if key is not None else None
        if host is None or not self._done(host.ready) or self._done(host.claimed):
            return None
        return host

    def host_for(self, app: str, key: str | None) -> _Host | None:
        """The host a cold start of `app` uses: the one already bridging it (claimed here or by a
        proxy), else its environment's ready one, else None."""
        claim = self.claims.get(app)
        return claim.host if claim is not None and not claim.retired else self.ready(key)

    def state(self, key: str) -> str:
        """'ready' (imports done), 'starting', or 'none'; for status (tests wait on it, not on time)."""
        host = self.hosts.get(key)
        if host is None:
            return "none"
        return "ready" if self._done(host.ready) and not self._done(host.claimed) else "starting"

    def last(self, app: str) -> dict[str, Any] | None:
        claim = self.claims.get(app)
        return claim.info if claim is not None else None

    def retire(self, app: str) -> None:
        """`app`'s replica runs (or it stopped): its host, if one bridged its cold start, is killed
        once no request is in flight there. One sent meanwhile finds it gone and goes to Serve."""
        claim = self.claims.get(app)
        if claim is None or claim.retired:
            return
        claim.retired = True
        task = asyncio.get_running_loop().create_task(self._retire(claim))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _retire(self, claim: Claim) -> None:
        try:
            await asyncio.wait_for(claim.host.handle.drain.remote(), 60)
        except Exception as exc:  # gone already, or stuck: killed all the same
            log.debug("draining a warm Ray host: %r", exc)
        self.kill(claim.host.handle)

    def kill(self, handle: Any) -> None:
        try:
            self.ray.kill(handle)
        except Exception as exc:  # already gone with its node
            log.debug("could not kill a warm Ray host: %r", exc)

    def stop(self) -> None:
        for host in [*self.hosts.values(), *(claim.host for claim in self.claims.values())]:
            self.kill(host.handle)
        self.hosts.clear()
        self.claims.clear()


__all__ = ["NAMESPACE", "Claim", "WarmHost", "WarmPool", "environment_key", "spec_key"]
