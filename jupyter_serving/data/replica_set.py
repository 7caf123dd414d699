"""The replicas of one served entity: starting them, choosing one per request, replacing crashed ones.

A ReplicaSet is keyed by the entity's runtime key, so an unchanged entity keeps its set (and its
warm replicas) across config updates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_serving.api.schema import ServedEntity
from jupyter_serving.data.replica import Replica, WarmPool
from jupyter_serving.errors import DeadlineExceeded, InternalError

log = logging.getLogger("jupyter_serving")

CREATING = "DEPLOYMENT_CREATING"
READY = "DEPLOYMENT_READY"
RECOVERING = "DEPLOYMENT_RECOVERING"
FAILED = "DEPLOYMENT_FAILED"
ABORTED = "DEPLOYMENT_ABORTED"

CRASH_WINDOW_S = 120.0
MAX_CRASHES = 5


class DeployFailed(Exception):
    """A replica could not be brought up; the message is shown as deployment_state_message."""


class Retired(Exception):
    """The set was retired by a config update after the request chose it: route it again."""


@dataclass
class Spawner:
    """What starting a replica needs: the warm pool and where sockets and logs go."""

    pool: WarmPool
    socket_dir: Path
    log_dir: Path
    deploy_timeout_s: float
    worker_options: dict[str, Any]

    def log_path(self, endpoint: str, served: str) -> Path:
        path = self.log_dir / endpoint / f"{served}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def start(self, endpoint: str, entity: ServedEntity, env: dict[str, str]) -> Replica:
        worker = await self.pool.acquire()
        socket_path = self.socket_dir / f"{uuid.uuid4().hex[:12]}.sock"
        label = f"{endpoint}/{entity.name}[{worker.pid}]"
        worker.assign(
            {
                "model_uri": entity.model_uri,
                "socket_path": str(socket_path),
                "log_path": str(self.log_path(endpoint, entity.name)),
                "label": label,
                "env": {**entity.environment_vars, **env},
                **self.worker_options,
            }
        )
        try:
            event = await asyncio.wait_for(worker.next_event(), self.deploy_timeout_s)
        except TimeoutError:
            await worker.kill()
            raise DeployFailed(f"The model did not load within {self.deploy_timeout_s:g} s.") from None
        except BaseException:
            await worker.kill()
            raise
        if event.get("event") != "ready":
            await worker.kill()
            raise DeployFailed(event.get("message") or "The worker exited while loading the model.")
        replica = Replica(worker, socket_path, label)
        await replica.connect()
        return replica


class ReplicaSet:
    """The running replicas of one served entity, with their deployment state."""

    def __init__(self, endpoint: str, entity: ServedEntity, spawner: Spawner) -> None:
        self.endpoint = endpoint
        self.entity = entity
        self.key = entity.runtime_key
        self.spawner = spawner
        self.state = CREATING
        self.message = "Creating the served entity."
        self.replicas: list[Replica] = []
        self.env: dict[str, str] = {}
        self._changed = asyncio.Event()
        self._crashes: deque[float] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    @property
    def name(self) -> str:
        return self.entity.name

    async def deploy(self, count: int) -> None:
        """Start `count` replicas; raise DeployFailed (state FAILED) if any cannot load."""
        results = await asyncio.gather(
            *(self._start_one() for _ in range(max(1, count))), return_exceptions=True
        )
        self.replicas.extend(r for r in results if isinstance(r, Replica))
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            error = errors[0]
            message = (
                str(error) if isinstance(error, DeployFailed) else f"Could not start a replica: {error!r}"
            )
            self._set_state(FAILED, message)
            raise DeployFailed(message) from error
        self._set_state(READY, "")

    async def _start_one(self) -> Replica:
        replica = await self.spawner.start(self.endpoint, self.entity, self.env)
        self._spawn(self._supervise(replica))
        return replica

    def pick(self) -> Replica | None:
        ready = [r for r in self.replicas if not r.draining]
        return min(ready, key=lambda r: r.inflight) if ready else None

    async def acquire(self, timeout_s: float) -> Replica:
        """A replica for one request, waiting while one is (re)starting rather than failing it."""
        deadline = time.monotonic() + timeout_s
        while (replica := self.pick()) is None:
            if self._stopping:
                raise Retired(self.name)
            if self.state in (FAILED, ABORTED):
                raise InternalError(
                    f"Served entity '{self.name}' is not running: {self.message or self.state}"
                )
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeadlineExceeded(f"No replica of '{self.name}' became ready within {timeout_s:g} s.")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return replica

    async def _supervise(self, replica: Replica) -> None:
        code = await replica.worker.proc.wait()
        if self._stopping or replica.draining:
            return
        log.warning("replica %s exited with code %s; replacing it", replica.label, code)
        if replica in self.replicas:
            self.replicas.remove(replica)
        now = time.monotonic()
        self._crashes.append(now)
        while self._crashes and now - self._crashes[0] > CRASH_WINDOW_S:
            self._crashes.popleft()
        if len(self._crashes) >= MAX_CRASHES:
            self._set_state(
                FAILED,
                f"The model server crashed {len(self._crashes)} times in {CRASH_WINDOW_S:g} s "
                f"(last exit code {code}); it is no longer restarted. See the served entity's logs.",
            )
            return
        self._set_state(
            RECOVERING if not self.replicas else READY, f"Replacing a replica that exited with code {code}."
        )
        await asyncio.sleep(2 ** (len(self._crashes) - 1) - 1)  # backoff: 0, 1, 3, 7 s
        try:
            self.replicas.append(await self._start_one())
            self._set_state(READY, "")
        except DeployFailed as exc:
            self._set_state(FAILED, str(exc))

    def _set_state(self, state: str, message: str) -> None:
        self.state, self.message = state, message
        self._changed.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def abort(self, message: str) -> None:
        self._set_state(ABORTED, message)

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Drain in-flight requests, then stop every replica."""
        self._stopping = True
        self._changed.set()
        replicas, self.replicas = self.replicas, []
        await asyncio.gather(*(r.stop(drain_timeout_s) for r in replicas), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        return {
            "replicas": len(self.replicas),
            "ready_replicas": len([r for r in self.replicas if not r.draining]),
        }
