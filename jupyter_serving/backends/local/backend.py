"""The local backend: replicas are worker subprocesses on this machine.

It owns what only this backend needs: the warm pool of pre-imported interpreters, the private
socket directory, the GPU inventory and the periodic autoscaler tick, and its own settings
(`LocalBackendSettings`, beside the server's shared `ServingSettings`). Each served entity's
`Deployment` is a `ReplicaSet`; the control plane sees only the `backends.base` interface.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

from jupyter_serving.backends.base import DeploymentSpec
from jupyter_serving.backends.local.gpus import GpuAllocator
from jupyter_serving.backends.local.gpus import discover as discover_gpus
from jupyter_serving.backends.local.replica import WarmPool
from jupyter_serving.backends.local.replica_set import ReplicaSet, SetOptions, Spawner
from jupyter_serving.backends.local.settings import LocalBackendSettings
from jupyter_serving.environments.cache import EnvironmentCache, worker_path
from jupyter_serving.files import private_dir
from jupyter_serving.settings import ServingSettings

MAX_SOCKET_DIR = 80  # AF_UNIX paths are limited to 108 bytes; leave room for the file name
LOG_TAIL_BYTES = 64 * 1024


class LocalBackend:
    """Subprocess replicas: warm pool, Unix-socket replicas, GPU placement, autoscaling, supervision."""

    def __init__(self, settings: ServingSettings, own: LocalBackendSettings | None = None) -> None:
        self.settings = settings
        self.own = own if own is not None else LocalBackendSettings(parent=settings)
        self.log_dir = settings.state_path / "logs"
        self.pool: WarmPool | None = None
        self.spawner: Spawner | None = None
        self.environments: EnvironmentCache | None = None
        self.sets: set[ReplicaSet] = set()  # every deployment not yet stopped
        self._ticker: asyncio.Task[None] | None = None
        # A socket dir of our own in the temp dir, made when the state dir's path is too long for
        # AF_UNIX; nobody else would remove it, so stop (or a failed start) does. Its name derives
        # from the state dir, so a server killed with -9 leaves one dir that its restart reuses.
        self._temp_socket_dir: Path | None = None

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            self._remove_temp_socket_dir()
            raise

    async def _start(self) -> None:
        private_dir(self.log_dir)
        self.pool = WarmPool(
            self.own.warm_pool_size, self.log_dir / "warm-pool.log", start=self.own.worker_start
        )
        envs = self.settings.env_cache_path
        self.environments = EnvironmentCache(
            envs, self.settings.env_cache_max_bytes, self.settings.deploy_timeout_s
        )
        self.spawner = Spawner(
            self.pool,
            self._socket_dir(),
            self.log_dir,
            self.settings.deploy_timeout_s,
            {
                "max_batch_size": self.settings.max_batch_size,
                "fast_path": self.settings.fast_path,
                "catalog_root": str(self.settings.catalog_path),
                "feature_refresh_s": self.settings.feature_refresh_s,
            },
            GpuAllocator(discover_gpus(self.own.gpus)),
            self.environments,
            self.settings.env_manager,
            worker_path(envs),
        )
        self.pool.start()
        self._ticker = asyncio.get_running_loop().create_task(self._autoscale_loop())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await asyncio.gather(*(s.stop(drain_timeout_s=5.0) for s in list(self.sets)))
        if self.spawner is not None:
            await self.spawner.pools.stop()  # the server's warm pool and each environment's
        if self.environments is not None:
            self.environments.close()
        self._remove_temp_socket_dir()

    def _remove_temp_socket_dir(self) -> None:
        if self._temp_socket_dir is not None:
            shutil.rmtree(self._temp_socket_dir, ignore_errors=True)
            self._temp_socket_dir = None

    def deployment(self, spec: DeploymentSpec) -> ReplicaSet:
        assert self.spawner is not None, "the backend is not started"
        options = SetOptions(self.settings.cold_start_queue_size, self.own.memory_headroom_bytes)
        rset = ReplicaSet(
            spec.endpoint,
            spec.entity,
            self.spawner,
            spec.policy,
            options,
            spec.load_uri,
            self.sets.discard,
            entity_env=spec.environment,
        )
        self.sets.add(rset)
        return rset

    def logs(self, endpoint: str, served: str, *, build: bool = False) -> str:
        assert self.spawner is not None, "the backend is not started"
        path = self.spawner.log_path(endpoint, served, ".build.log" if build else ".log")
        if not path.exists():  # no replica of it has started yet
            return ""
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", errors="replace")

    async def _autoscale_loop(self) -> None:
        """The periodic half of autoscaling (scale-down, scale-to-zero); scale-up is on the request path."""
        while True:
            await asyncio.sleep(self.settings.autoscale_interval_s)
            now = time.monotonic()
            for rset in list(self.sets):
                rset.autoscale(now)

    def _socket_dir(self) -> Path:
        path = self.settings.state_path / "sockets"
        if len(str(path)) > MAX_SOCKET_DIR:
            if self._temp_socket_dir is None:  # a retried start reuses the one it made
                self._temp_socket_dir = fallback_socket_dir(self.settings.state_path)
            path = self._temp_socket_dir
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.chmod(stat.S_IRWXU)  # workers' sockets are reachable by this user only
        for stale in path.glob("*.sock"):  # left by a previous server of this state dir that was killed
            stale.unlink(missing_ok=True)
        return path


def fallback_socket_dir(state_path: Path) -> Path:
    """`<tmp>/jupyter-serving-<uid>-<hash of the state dir>`: the same dir for every server of one
    state dir, so a restart after kill -9 finds (and clears) what its predecessor left instead of
    leaving it behind. The temp dir is shared with other users: a path there that is not a real
    directory owned by us (a symlink, someone else's dir) is not used;
    a fresh `mkdtemp` dir is instead."""
    digest = hashlib.sha256(str(state_path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()
    path = Path(tempfile.gettempdir()) / f"jupyter-serving-{os.getuid()}-{digest[:16]}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError:
        return Path(tempfile.mkdtemp(prefix="jupyter-serving-"))
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        return Path(tempfile.mkdtemp(prefix="jupyter-serving-"))
    return path
