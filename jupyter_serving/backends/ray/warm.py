"""Scale from zero on Ray in about the time the model takes to load: warm, pre-imported hosts.

A Serve replica started from zero is a fresh Ray worker process that imports Ray Serve, MLflow,
pandas and scikit-learn before it loads the model: 10-14 s on the 2-core development machine, most
of it imports. The local backend avoids that with a fork server per Python environment (imports
done once, replicas forked from it). Ray cannot fork a worker, so the Ray backend keeps the same
thing as an actor: one `WarmHost` per Python environment (the nodes' own, or one `uv` runtime_env),
started when an entity that scales to zero is deployed, holding no model and reserving no CPU, with
the imports done (`worker.__main__.prepare`, the fork server's preload list).

When a request finds an entity at zero replicas, its deployment takes the warm host of its
environment (a fresh one is started for the next cold start at once), loads the model into it (the
replica's own class, `replica.ServedModel`, so scoring is the same code) and sends the requests that
arrive meanwhile there, while Serve starts its replica as before (one request waits in Serve's
handle to make it). Once Serve reports the replica running, requests go to Serve again and the
host, once idle, is killed: it was a bridge over the cold start, never a second replica. The host is
owned by this server's Ray driver, so it goes when the server does, even after kill -9.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("jupyter_serving")


class WarmHost:
    """A Ray actor with the replica's imports done; `load` turns it into a temporary replica."""

    def __init__(self) -> None:
        started = time.perf_counter()
        from jupyter_serving.backends.ray import replica  # noqa: F401  (Ray Serve's batching)
        from jupyter_serving.worker.__main__ import FORK_PRELOAD, prepare

        prepare(FORK_PRELOAD)
        self.import_s = time.perf_counter() - started
        self.model: Any = None

    def ready(self) -> dict[str, Any]:
        """Answered once the imports are done (the constructor has returned)."""
        return {"pid": os.getpid(), "import_s": round(self.import_s, 3)}

    def load(
        self, model_uri: str, label: str, env: dict[str, str], fast_path: bool, max_batch_size: int
    ) -> dict[str, Any]:
        """Load one entity's model, with its environment variables, as its replica would."""
        import ray

        from jupyter_serving.backends.ray.replica import ServedModel

        preimported = "mlflow.pyfunc" in sys.modules  # what the warm path is for: no import here
        os.environ.update(env)
        started = time.perf_counter()
        self.model = ServedModel(model_uri, label, fast_path, max_batch_size)
        return {
            "preimported": preimported,
            "load_s": round(time.perf_counter() - started, 3),
            "import_s": round(self.import_s, 3),
            "pid": os.getpid(),
            "node": ray.get_runtime_context().get_node_id(),
        }

    async def score(self, *args: Any) -> Any:
        """One request, as the replica's `__call__` takes it, scored by the replica's own batch
        function; unbatched, since `@serve.batch` needs a Serve replica context, which this is not."""
        from jupyter_serving.backends.ray.replica import ServedModel

        replies = await ServedModel._score.__wrapped__(self.model, [args])  # type: ignore[attr-defined]
        return replies[0]


def environment_key(runtime_env: dict[str, Any]) -> str:
    """Which warm host fits a replica: its runtime_env without the entity's own variables (those
    are set in the host when it is taken). Equal for every entity on the nodes' own environment."""
    return hashlib.sha1(json.dumps(runtime_env, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class _Host:
    handle: Any
    ready: Any  # the ObjectRef of handle.ready(): done once the imports are


class WarmPool:
    """One warm host per Python environment, replaced as soon as it is taken."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.hosts: dict[str, _Host] = {}
        self.envs: dict[str, dict[str, Any]] = {}
        self.started = 0
        self._actor: Any = None

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
        handle = self._actor.options(runtime_env=self.envs[key]).remote()
        self.hosts[key] = _Host(handle, handle.ready.remote())
        self.started += 1

    def take(self, key: str) -> Any | None:
        """A warm host of that environment with its imports done, or None (none, or still importing:
        the cold start then waits for Serve's replica as it would without a pool)."""
        host = self.hosts.get(key)
        if host is None:
            return None
        done, _ = self.ray.wait([host.ready], timeout=0)
        if not done:
            return None
        self._start(key)  # the next cold start's, importing from now on
        try:
            self.ray.get(host.ready, timeout=0)
        except Exception as exc:  # it died (its node went, out of memory): its successor is starting
            log.warning("a warm Ray host died before it was used: %r", exc)
            return None
        return host.handle

    def state(self, key: str) -> str:
        """'ready' (imports done), 'starting', or 'none'; for status (tests wait on it, not on time)."""
        host = self.hosts.get(key)
        if host is None:
            return "none"
        done, _ = self.ray.wait([host.ready], timeout=0)
        return "ready" if done else "starting"

    def kill(self, handle: Any) -> None:
        try:
            self.ray.kill(handle)
        except Exception as exc:  # already gone with its node
            log.debug("could not kill a warm Ray host: %r", exc)

    def stop(self) -> None:
        for host in self.hosts.values():
            self.kill(host.handle)
        self.hosts.clear()


__all__ = ["WarmHost", "WarmPool", "environment_key"]
