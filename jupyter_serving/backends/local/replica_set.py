"""The replicas of one served entity: the local backend's `Deployment`.

Starting replicas, choosing one per request, autoscaling, replacing crashes. A ReplicaSet is keyed
by the entity's runtime key, so an unchanged entity keeps its set (and its warm replicas) across
config updates. Every replica it ever starts is tracked until stopped, so stopping the set (even
while a deploy, a scale-up or a crash replacement is half-way) leaves no worker behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from jupyter_serving.backends.base import (
    DeployFailed,
    DeploymentStatus,
    GpuStats,
    ProcessUsage,
    Retired,
    ScoringReply,
    ScoringRequest,
)
from jupyter_serving.backends.local.gpus import GpuAllocator, device_stats
from jupyter_serving.backends.local.replica import Replica, ReplicaStream, WarmPool, WarmPools
from jupyter_serving.environments.cache import (
    LOCAL,
    Environment,
    EnvironmentBuildFailed,
    EnvironmentCache,
    entity_manager,
    worker_env,
)
from jupyter_serving.errors import DeadlineExceeded, InternalError, TemporarilyUnavailable
from jupyter_serving.model.config import ServedEntity
from jupyter_serving.model.states import ABORTED, FAILED, READY, RECOVERING, DeploymentState
from jupyter_serving.policy.autoscaler import DOWN, ZERO, ScalingPolicy, replicas_to_add, tick
from jupyter_serving.policy.placement import gpus_per_replica

log = logging.getLogger("jupyter_serving")

CRASH_WINDOW_S = 120.0
MAX_CRASHES = 5


@dataclass
class Spawner:
    """What starting a replica needs: the warm pool and where sockets and logs go."""

    pool: WarmPool
    socket_dir: Path
    log_dir: Path
    deploy_timeout_s: float
    worker_options: dict[str, Any]
    gpus: GpuAllocator
    environments: EnvironmentCache | None = None  # None: every worker runs in the server's environment
    env_manager: str = LOCAL
    worker_dir: Path | None = None  # PYTHONPATH of workers in built environments (our package only)

    def __post_init__(self) -> None:
        self.pools = WarmPools(self.pool)
        self._resolved: dict[tuple[str, str], Environment] = {}
        self._resolving: dict[tuple[str, str], asyncio.Lock] = {}

    def log_path(self, endpoint: str, served: str, suffix: str = ".log") -> Path:
        path = self.log_dir / endpoint / f"{served}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    async def environment(
        self, endpoint: str, entity: ServedEntity, load_uri: str | None, waiting: Callable[[str], None]
    ) -> Environment | None:
        """The Python environment the entity's workers run in, built on first use (see environments.py);
        resolved once per runtime key, so more replicas of it skip even the requirements check."""
        if self.environments is None:
            return None
        key = (endpoint, entity.runtime_key)
        async with self._resolving.setdefault(key, asyncio.Lock()):
            if (known := self._resolved.get(key)) is not None:
                return known
            manager = entity_manager(self.env_manager, entity.environment_vars)
            model_dir = Path(load_uri or entity.model_uri)
            build_log = self.log_path(endpoint, entity.name, ".build.log")
            try:
                env = await self.environments.resolve(model_dir, manager, waiting)
            except EnvironmentBuildFailed as exc:
                _write_build_log(build_log, f"Could not build the Python environment: {exc}", exc.log_path)
                raise DeployFailed(f"Could not build the Python environment for the model: {exc}") from None
            _write_build_log(build_log, env.decision, env.log_path)
            if env.name != "server":
                waiting(f"Starting the model server in Python environment {env.name}.")
            self._resolved[key] = env
            return env

    def environment_of(self, endpoint: str, entity: ServedEntity) -> dict[str, Any] | None:
        env = self._resolved.get((endpoint, entity.runtime_key))
        return env.describe() if env is not None else None

    async def start(
        self,
        endpoint: str,
        entity: ServedEntity,
        env: dict[str, str],
        load_uri: str | None = None,
        waiting: Callable[[str], None] = lambda reason: None,
        entity_env: Callable[[], dict[str, str]] | None = None,
    ) -> Replica:
        """`entity_env` gives the entity's environment_vars with secrets resolved (the spec's); it
        raises DeployFailed where one could not be. Unset: the entity's as written."""
        environment = await self.environment(endpoint, entity, load_uri, waiting)
        count = gpus_per_replica(entity.workload_type)
        try:
            devices = await self.gpus.allocate(count, f"{endpoint}/{entity.name}", waiting) if count else []
        except ValueError as exc:
            raise DeployFailed(f"Cannot place {entity.workload_type}: {exc}.") from None
        try:
            replica = await self._start_worker(
                endpoint, entity, env, load_uri, devices, environment, entity_env
            )
        except BaseException:
            self.gpus.release(devices)
            raise
        replica.gpus = devices
        replica.on_release = lambda: self.gpus.release(devices)
        return replica

    async def _start_worker(
        self,
        endpoint: str,
        entity: ServedEntity,
        env: dict[str, str],
        load_uri: str | None,
        devices: list[int],
        environment: Environment | None = None,
        entity_env: Callable[[], dict[str, str]] | None = None,
    ) -> Replica:
        env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))}  # CPU replicas see no GPU
        variables = entity_env() if entity_env is not None else dict(entity.environment_vars)
        if environment is None or environment.name == "server" or self.worker_dir is None:
            worker = await self.pool.acquire()
        else:
            worker = await self.pools.acquire(environment.python, worker_env(environment, self.worker_dir))
        socket_path = self.socket_dir / f"{uuid.uuid4().hex[:12]}.sock"
        label = f"{endpoint}/{entity.name}[{worker.pid}]"
        worker.assign(
            {
                "model_uri": load_uri or entity.model_uri,
                "socket_path": str(socket_path),
                "log_path": str(self.log_path(endpoint, entity.name)),
                "label": label,
                "env": {**variables, **env},
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
        try:
            await replica.connect()
        except BaseException:
            await worker.kill()
            raise
        return replica


@dataclass(frozen=True)
class SetOptions:
    """Server-wide knobs a replica set needs besides its entity's own scaling policy."""

    queue_limit: int = 256
    memory_headroom_bytes: int = 512 * 1024 * 1024


def _replica_bytes(pid: int) -> int:
    """What one more replica like this one costs: its private memory (USS). RSS would count the
    pages a forked replica shares with its fork server and siblings, several times over."""
    try:
        return psutil.Process(pid).memory_full_info().uss
    except psutil.Error:
        return 0


@dataclass
class ReplicaMemory:
    """Each replica's memory reading, kept for `ttl_s` seconds (monotonic clock), keyed by pid.

    Reading USS walks the process's page map (/proc/<pid>/smaps_rollup): cheap once, not on every
    on-demand scale-up of a burst, where the same replicas would be read again and again. A replica's
    footprint moves slowly next to that, so a reading a few seconds old sizes the cap as well."""

    ttl_s: float = 5.0
    read: Callable[[int], int] = _replica_bytes
    clock: Callable[[], float] = time.monotonic
    _readings: dict[int, tuple[float, int]] = field(default_factory=dict)

    def bytes_of(self, pid: int) -> int:
        now = self.clock()
        known = self._readings.get(pid)
        if known is not None and now - known[0] < self.ttl_s:
            return known[1]
        value = self.read(pid)
        self._readings[pid] = (now, value)
        return value

    def forget(self, pid: int) -> None:
        """The replica is gone: its pid may be reused by an unrelated process."""
        self._readings.pop(pid, None)


PSS_TTL_S = 5.0


def _replica_pss(pid: int) -> int:
    """What a replica costs on this machine, with the pages it shares (the fork server's imports)
    split among their sharers (PSS), so the replicas of an entity add up; 0 where it cannot be read."""
    try:
        return int(psutil.Process(pid).memory_full_info().pss)
    except (psutil.Error, AttributeError):  # gone, no access, or a platform without PSS
        return 0


class ProcessReadings:
    """CPU time, RSS and PSS of the replicas' processes, for `status()`: a psutil handle is kept per
    pid, so each reading costs two small /proc reads instead of a fresh lookup; PSS (a page-map
    walk) is re-read at most every PSS_TTL_S."""

    def __init__(self) -> None:
        self._handles: dict[int, psutil.Process] = {}
        self._pss = ReplicaMemory(ttl_s=PSS_TTL_S, read=_replica_pss)  # status() runs on every GET

    def read(self, pids: Iterable[int]) -> tuple[ProcessUsage, ...]:
        out = []
        for pid in pids:
            try:
                handle = self._handles.get(pid) or self._handles.setdefault(pid, psutil.Process(pid))
                with handle.oneshot():
                    times = handle.cpu_times()
                    rss = handle.memory_info().rss
                pss = self._pss.bytes_of(pid) or None
                out.append(ProcessUsage(pid, times.user + times.system, rss, pss))
            except psutil.Error:  # exited between the replica list and the reading
                self.forget(pid)
        return tuple(out)

    def forget(self, pid: int) -> None:
        self._handles.pop(pid, None)
        self._pss.forget(pid)


class ReplicaSet:
    """The running replicas of one served entity: deployment state, autoscaling, supervision."""

    def __init__(
        self,
        endpoint: str,
        entity: ServedEntity,
        spawner: Spawner,
        policy: ScalingPolicy,
        options: SetOptions,
        load_uri: str | None = None,
        on_stopped: Callable[[ReplicaSet], None] = lambda rset: None,
        memory: ReplicaMemory | None = None,
        entity_env: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.entity = entity
        self.key = entity.runtime_key
        self.spawner = spawner
        self.policy = policy
        self.options = options
        self.load_uri = load_uri  # the model's files, resolved once by the server
        self.entity_env = entity_env  # its environment_vars, secrets resolved by the server
        self.deployment = DeploymentState()
        self.replicas: list[Replica] = []  # the ones requests may use
        self.env: dict[str, str] = {}
        self.starting = 0
        self.waiting = 0
        self.cold_starts = 0
        self.capped = ""
        self.last_request = time.monotonic()
        self._started: set[Replica] = set()  # every replica not yet stopped, whether usable or not
        self._peak = 0
        self._low_since: float | None = None
        self._changed = asyncio.Event()
        self._crashes: deque[float] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping: asyncio.Task[None] | None = None
        self._on_stopped = on_stopped
        self._memory = memory if memory is not None else ReplicaMemory()
        self._processes = ProcessReadings()

    @property
    def name(self) -> str:
        return self.entity.name

    @property
    def state(self) -> str:
        return self.deployment.state

    @property
    def message(self) -> str:
        return self.deployment.message

    @property
    def inflight(self) -> int:
        return sum(r.inflight for r in self.replicas)

    @property
    def stopping(self) -> bool:
        return self._stopping is not None

    async def deploy(self) -> None:
        """Start the initial replicas; raise DeployFailed (state FAILED) if any cannot load.

        The first replica always starts; the others only as far as free memory and GPUs allow,
        the same caps as a later scale-up, so an oversized entity cannot exhaust the machine."""
        count = self.policy.initial_replicas
        try:
            results: list[Any] = [await self._start_one()] if count else []
            more = self._capacity_cap(count - 1) if count > 1 else 0
            results += await asyncio.gather(*(self._start_one() for _ in range(more)), return_exceptions=True)
        except DeployFailed as exc:
            results = [exc]
        except Exception as exc:
            results = [DeployFailed(f"Could not start a replica: {exc!r}")]
        self.replicas.extend(r for r in results if isinstance(r, Replica))
        if self.stopping:  # stopped while deploying: whoever stopped it owns the outcome
            raise asyncio.CancelledError
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            error = errors[0]
            message = (
                str(error) if isinstance(error, DeployFailed) else f"Could not start a replica: {error!r}"
            )
            self._set_state(FAILED, message)
            raise DeployFailed(message) from error
        self.last_request = time.monotonic()
        self._set_state(READY, self.capped)

    async def _start_one(self) -> Replica:
        replica = await self.spawner.start(
            self.endpoint, self.entity, self.env, self.load_uri, self._waiting, self.entity_env
        )
        self._started.add(replica)
        replica.on_broken = self._changed.set  # waiting requests re-check at once
        if self.stopping:  # the set was stopped while this replica loaded
            await self._stop_replica(replica, 0.0)
            raise asyncio.CancelledError
        self._spawn(self._supervise(replica))
        return replica

    def _waiting(self, reason: str) -> None:
        self.deployment.note(reason)
        self._changed.set()

    def pick(self) -> Replica | None:
        ready = [r for r in self.replicas if r.usable]
        return min(ready, key=lambda r: r.inflight) if ready else None

    # ------------------------------------------------------------- the request path
    async def invoke(self, request: ScoringRequest, timeout_s: float) -> ScoringReply:
        started = time.perf_counter()
        replica = await self.acquire(timeout_s)
        remaining = timeout_s - (time.perf_counter() - started)
        return await replica.invoke(request.content_type, request.body, remaining, request.request_id)

    async def invoke_stream(self, request: ScoringRequest, timeout_s: float) -> ReplicaStream:
        """A stream holds its replica (one unit of its concurrency) until it ends or is closed."""
        replica = await self.acquire(timeout_s)
        return replica.open_stream(request.content_type, request.body, request.request_id)

    async def acquire(self, timeout_s: float) -> Replica:
        """A replica for one request. Scales up when demand exceeds capacity; with no replica ready
        (scaled to zero, or recovering) the request waits in a bounded queue instead of failing."""
        if self.stopping:
            raise Retired(self.name)
        self.last_request = time.monotonic()
        demand = self.inflight + self.waiting + 1
        self._peak = max(self._peak, demand)
        if demand > len(self.replicas) * self.policy.concurrency and self.state == READY:
            self._scale_up(demand)
        replica = self.pick()
        if replica is not None:
            return replica
        if self.waiting >= self.options.queue_limit:
            raise TemporarilyUnavailable(
                f"Served entity '{self.name}' is starting a replica and its queue of "
                f"{self.options.queue_limit} waiting requests is full; retry shortly.",
                headers={"Retry-After": "1"},
            )
        self.waiting += 1
        try:
            return await self._wait_for_replica(timeout_s)
        finally:
            self.waiting -= 1

    async def _wait_for_replica(self, timeout_s: float) -> Replica:
        deadline = time.monotonic() + timeout_s
        while (replica := self.pick()) is None:
            if self.stopping:
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

    # ------------------------------------------------------------- scaling
    def reconfigure(self, entity: ServedEntity, policy: ScalingPolicy) -> None:
        """New sizing for the same runtime key (applied only when a config update activates)."""
        self.entity, self.policy = entity, policy

    def _scale_up(self, demand: int) -> None:
        add = self._capacity_cap(replicas_to_add(self.policy, demand, len(self.replicas), self.starting))
        for _ in range(add):
            cold = not self.replicas and not self.starting
            if cold:
                self.cold_starts += 1
                self.deployment.note("Cold start: starting a replica for a waiting request.")
            self.starting += 1
            self._spawn(self._grow())

    def _capacity_cap(self, add: int) -> int:
        """Start only as many replicas as free memory and GPUs hold; the first one is never held back."""
        if add <= 0 or (not self.replicas and not self._started):
            return add
        per_gpu = gpus_per_replica(self.entity.workload_type)
        if per_gpu and len(self.spawner.gpus.free) // per_gpu < add:
            fits = len(self.spawner.gpus.free) // per_gpu
            self.capped = (
                f"Capped at {len(self._started) + self.starting + fits} replica(s): each needs "
                f"{per_gpu} GPU(s) and {len(self.spawner.gpus.free)} of this server's GPUs are free."
            )
            self.deployment.note(self.capped)
            add = fits
            if add <= 0:
                return 0
        per_replica = max(self._memory.bytes_of(r.pid) for r in self._started) or 1
        free = psutil.virtual_memory().available - self.options.memory_headroom_bytes
        fits = max(0, int(free // per_replica))
        if fits >= add:
            self.capped = ""
            return add
        total = len(self._started) + self.starting + fits
        self.capped = (
            f"Capped at {total} replica(s): this machine has {max(free, 0) // 2**20} MiB free beyond its "
            f"{self.options.memory_headroom_bytes // 2**20} MiB headroom, and a replica uses about "
            f"{per_replica // 2**20} MiB."
        )
        log.warning("%s/%s: %s", self.endpoint, self.name, self.capped)
        self.deployment.note(self.capped)
        return fits

    async def _grow(self) -> None:
        try:
            replica = await self._start_one()
        except DeployFailed as exc:
            if not self.replicas and self.deployment.can(FAILED):
                self._set_state(FAILED, str(exc))
            log.error("%s/%s: could not add a replica: %s", self.endpoint, self.name, exc)
            return
        finally:
            self.starting -= 1
        if self.deployment.final:  # failed meanwhile (a crash loop): only a new config serves again
            await self._stop_replica(replica, 0.0)
            return
        self.replicas.append(replica)
        self._set_state(READY, self.capped)

    def autoscale(self, now: float) -> None:
        """One tick of the periodic autoscaler: scale down after sustained low demand, or to zero."""
        if self.stopping or self.state != READY or self.starting:
            return
        peak, self._peak = self._peak, self.inflight + self.waiting
        decision, self._low_since = tick(
            self.policy,
            now=now,
            running=len(self.replicas),
            peak_demand=peak,
            last_request=self.last_request,
            low_since=self._low_since,
        )
        if decision == DOWN:
            self._spawn(self._shrink(1, ""))
        elif decision == ZERO:
            idle = now - self.last_request
            message = (
                f"Scaled to zero after {idle:.0f} s without requests; the next request starts a replica."
            )
            self._spawn(self._shrink(len(self.replicas), message))

    async def _shrink(self, count: int, message: str) -> None:
        leaving = sorted(self.replicas, key=lambda r: r.inflight)[:count]
        for replica in leaving:
            replica.draining = True  # no new requests; the supervisor will not replace it
            self.replicas.remove(replica)
        self.deployment.note(message or self.capped)
        self._changed.set()
        await asyncio.gather(*(self._stop_replica(r, 60.0) for r in leaving), return_exceptions=True)

    async def _stop_replica(self, replica: Replica, drain_timeout_s: float) -> None:
        replica.draining = True
        try:
            await replica.stop(drain_timeout_s)
        finally:
            self._forget(replica)

    def _forget(self, replica: Replica) -> None:
        self._started.discard(replica)
        self._memory.forget(replica.pid)
        self._processes.forget(replica.pid)

    # ------------------------------------------------------------- supervision
    async def _supervise(self, replica: Replica) -> None:
        code = await replica.worker.wait()
        if self.stopping or replica.draining:
            return
        replica.release()
        self._forget(replica)
        log.warning("replica %s exited with code %s; replacing it", replica.label, code)
        if replica in self.replicas:
            self.replicas.remove(replica)
        if self.deployment.final:
            return
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
        self.starting += 1
        await self._grow()

    def _set_state(self, state: str, message: str) -> None:
        self.deployment.to(state, message)
        self._changed.set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def abort(self, message: str) -> None:
        if self.deployment.can(ABORTED):
            self._set_state(ABORTED, message)

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Drain in-flight requests, then stop every replica. Runs to the end even if the caller is
        cancelled (a delete arriving during a cancel), so nothing it started outlives it."""
        if self._stopping is None:
            self._stopping = asyncio.get_running_loop().create_task(self._stop(drain_timeout_s))
        await asyncio.shield(self._stopping)

    async def _stop(self, drain_timeout_s: float) -> None:
        self._changed.set()
        replicas, self.replicas = self.replicas, []
        await asyncio.gather(*(r.drain(drain_timeout_s) for r in replicas), return_exceptions=True)
        for task in list(self._tasks):  # half-started replicas kill their worker when cancelled
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(
            *(self._stop_replica(r, 0.0) for r in list(self._started)), return_exceptions=True
        )
        self._on_stopped(self)

    def status(self) -> DeploymentStatus:
        gpus = tuple(sorted(d for r in self.replicas for d in r.gpus))
        return DeploymentStatus(
            state=self.state,
            message=self.message,
            replicas=len(self.replicas),
            ready_replicas=len([r for r in self.replicas if r.usable]),
            starting_replicas=self.starting,
            min_replicas=self.policy.min_replicas,
            max_replicas=self.policy.max_replicas,
            inflight=self.inflight,
            queued=self.waiting,
            cold_starts=self.cold_starts,
            gpus=gpus,
            gpu_stats=tuple(GpuStats(*s) for s in device_stats(gpus)) if gpus else (),
            processes=self._processes.read(r.pid for r in self.replicas),
            extras=self.describe(),
        )

    def describe(self) -> dict[str, Any]:
        """This backend's own detail, shown under the entity's `local` beside the typed fields."""
        features = self.replicas[0].feature_tables() if self.replicas else []
        return {
            **({"feature_tables": features} if features else {}),
            "environment": self.spawner.environment_of(self.endpoint, self.entity),
        }


def _write_build_log(path: Path, decision: str, env_log: Path | None) -> None:
    """The entity's build log: why it runs where it does, then that environment's own build output."""
    text = decision + "\n"
    if env_log is not None and env_log.is_file():
        text += "\n" + env_log.read_text(errors="replace")
    path.write_text(text)
