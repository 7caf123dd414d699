"""The scale-out memory cap reads each replica's USS at most once per TTL, not on every scale-up."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from jupyter_serving.backends.local.gpus import GpuAllocator
from jupyter_serving.backends.local.replica import Replica, WarmPool, WorkerProcess
from jupyter_serving.backends.local.replica_set import (
    ReplicaMemory,
    ReplicaSet,
    SetOptions,
    Spawner,
    _replica_bytes,
)
from jupyter_serving.model.config import ServedEntity
from jupyter_serving.policy.autoscaler import ScalingPolicy


class CountingReader:
    """The real USS reader, counting its reads."""

    def __init__(self) -> None:
        self.reads: list[int] = []

    def __call__(self, pid: int) -> int:
        self.reads.append(pid)
        return _replica_bytes(pid)


@pytest.fixture
def process() -> Iterator[subprocess.Popen[bytes]]:
    """A real process whose memory is read: it stands in for a started replica's worker."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextlib.asynccontextmanager
async def _worker() -> AsyncIterator[WorkerProcess]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; sys.stdin.read()", stdin=subprocess.PIPE
    )
    try:
        yield WorkerProcess(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def _replica_set(tmp_path: Path, headroom: int, memory: ReplicaMemory, worker: WorkerProcess) -> ReplicaSet:
    spawner = Spawner(
        pool=WarmPool(0, tmp_path / "pool.log"),
        socket_dir=tmp_path,
        log_dir=tmp_path,
        deploy_timeout_s=60.0,
        worker_options={},
        gpus=GpuAllocator([]),
    )
    policy = ScalingPolicy(
        concurrency=1, min_replicas=1, max_replicas=8, scale_to_zero=False, scale_down_delay_s=60, idle_s=60
    )
    rset = ReplicaSet(
        "ep",
        ServedEntity("m-1", "m", "1"),
        spawner,
        policy,
        SetOptions(memory_headroom_bytes=headroom),
        memory=memory,
    )
    replica = Replica(worker, tmp_path / "r.sock", "ep/m-1")
    rset._started.add(replica)
    rset.replicas.append(replica)
    return rset


async def test_the_cap_holds_and_reads_each_replica_once_per_ttl(tmp_path: Path) -> None:
    async with _worker() as worker:
        _check_cap(tmp_path, worker)


def _check_cap(tmp_path: Path, worker: WorkerProcess) -> None:
    reader = CountingReader()
    memory = ReplicaMemory(ttl_s=3600.0, read=reader)
    rset = _replica_set(tmp_path, 10**15, memory, worker)  # no machine has this much beyond its headroom
    assert rset._capacity_cap(3) == 0
    assert rset.capped.startswith("Capped at 1 replica(s): this machine has 0 MiB free")
    assert rset._capacity_cap(3) == 0  # a second burst within the TTL: the cached reading
    assert reader.reads == [worker.pid]
    roomy = _replica_set(tmp_path, 0, memory, worker)
    assert roomy._capacity_cap(1) == 1 and roomy.capped == ""
    assert reader.reads == [worker.pid]
    roomy._forget(next(iter(roomy._started)))  # the replica went: its reading goes with it
    assert worker.pid not in memory._readings


def test_a_reading_older_than_the_ttl_is_read_again(process: subprocess.Popen[bytes]) -> None:
    reader, now = CountingReader(), [100.0]
    memory = ReplicaMemory(ttl_s=5.0, read=reader, clock=lambda: now[0])
    first = memory.bytes_of(process.pid)
    assert first > 0
    now[0] += 4.9
    assert memory.bytes_of(process.pid) == first and len(reader.reads) == 1
    now[0] += 0.2
    memory.bytes_of(process.pid)
    assert len(reader.reads) == 2
    memory.forget(process.pid)
    memory.bytes_of(process.pid)
    assert len(reader.reads) == 3


def test_status_reports_each_replicas_pss_beside_its_rss() -> None:
    """The page charts PSS (shared pages split among their sharers), not RSS, which counts the fork
    server's shared imports in full for every replica."""
    import os

    from jupyter_serving.backends.local.replica_set import ProcessReadings

    (usage,) = ProcessReadings().read([os.getpid()])
    assert usage.pid == os.getpid() and usage.pss_bytes is not None
    assert 0 < usage.pss_bytes <= usage.rss_bytes
