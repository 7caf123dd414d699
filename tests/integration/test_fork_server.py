"""Replicas forked from a warm fork server (worker_start=fork): shared memory, supervision, environment.

Real server, real fork server, real forked workers; memory is the kernel's own accounting (PSS).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from serving_support import ServingServer, entity, eventually, iris_split

from jupyter_serving.backends.local.forking import FORK_SERVER_MODULE as FORK_SERVER
from jupyter_serving.backends.local.replica import WORKER_MODULE

# Spawned, each replica of iris-lr holds 166-195 MB PSS; forked, 44-46 MB here (three replicas). The
# bound leaves margin for another machine's allocator and libraries, and still fails if imports stop
# being shared.
MAX_PSS_MB = 90
# A forked replica's private memory (USS, whatever the number of siblings): 12-14 MB here; 28-30 MB when
# the fork server did not pre-import sklearn.linear_model and each replica imported it after the fork.
MAX_USS_MB = 22
THREE_IRIS = {
    "served_entities": [
        {
            "entity_name": "iris-lr",
            "entity_version": "1",
            "min_provisioned_concurrency": 12,  # three replicas of 4 concurrent requests each
            "max_provisioned_concurrency": 12,
        }
    ]
}


@pytest.fixture(scope="module")
def fork_server(mlflow_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingServer]:
    server = ServingServer(
        tmp_path_factory.mktemp("fork") / "state", mlflow_env.env, ["--worker-start", "fork", "--gpus", "0,1"]
    ).start()
    yield server
    server.stop()


def replica_pids(server: ServingServer, name: str, served: str) -> list[int]:
    """Live worker processes that served `served`, by the pids its log names (a replica forked by a
    fork server that died since is no descendant of the server any more)."""
    logs = server.api("GET", f"api/2.0/serving-endpoints/{name}/served-models/{served}/logs").json()["logs"]
    pids = []
    for pid in sorted({int(p) for p in re.findall(rf"{re.escape(name)}/{re.escape(served)}\[(\d+)\]", logs)}):
        with contextlib.suppress(psutil.Error):
            worker = psutil.Process(pid)
            if worker.status() != psutil.STATUS_ZOMBIE and WORKER_MODULE in " ".join(worker.cmdline()):
                pids.append(pid)
    return pids


def replicas(server: ServingServer, name: str) -> int:
    return server.get(name)["config"]["served_entities"][0]["local"]["ready_replicas"]


def test_forked_replicas_share_their_imports_and_answer(fork_server: ServingServer) -> None:
    fork_server.create_ready("fork-iris", THREE_IRIS)
    for _ in range(6):
        reply = fork_server.invoke("fork-iris", iris_split())
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] == [0, 2, 1]
    pids = eventually(
        lambda: replica_pids(fork_server, "fork-iris", "iris-lr-1"), 30, 0.1, until=lambda p: len(p) == 3
    )
    for pid in pids:
        parent = psutil.Process(pid).parent()
        assert parent is not None and FORK_SERVER in " ".join(parent.cmdline()), "not forked"
        assert os.getsid(pid) == pid, "a forked replica leads its own session"
    memory = [psutil.Process(pid).memory_full_info() for pid in pids]
    pss_mb = [m.pss / 2**20 for m in memory]
    print(
        f"forked replicas: PSS {[round(p, 1) for p in pss_mb]} MB, USS {[round(m.uss / 2**20, 1) for m in memory]} MB"
    )
    assert max(pss_mb) < MAX_PSS_MB, pss_mb
    uss_mb = [m.uss / 2**20 for m in memory]
    assert max(uss_mb) < MAX_USS_MB, f"a replica imported what its fork server could have: USS {uss_mb}"
    fork_server.delete("fork-iris")


def test_a_killed_forked_replica_is_replaced(fork_server: ServingServer) -> None:
    fork_server.create_ready("fork-kill", {"served_entities": [entity("iris-lr", 1)]})
    (before,) = eventually(lambda: replica_pids(fork_server, "fork-kill", "iris-lr-1"), 30, 0.1)
    os.kill(before, signal.SIGKILL)
    eventually(
        lambda: replica_pids(fork_server, "fork-kill", "iris-lr-1"),
        90,
        0.1,
        "a replacement replica",
        until=lambda pids: len(pids) == 1 and pids != [before],
    )
    eventually(lambda: replicas(fork_server, "fork-kill") == 1, 90, 0.1, "a ready replacement")
    state = fork_server.get("fork-kill")["config"]["served_entities"][0]["state"]
    assert state["deployment"] == "DEPLOYMENT_READY"
    server_log = fork_server.state_dir.parent / f"{fork_server.state_dir.name}-server.log"
    assert f"[{before}] exited with code -9" in server_log.read_text()  # the fork server reaped it
    assert fork_server.invoke("fork-kill", iris_split()).json()["predictions"] == [0, 2, 1]
    fork_server.delete("fork-kill")


def test_forked_replicas_get_their_own_environment(fork_server: ServingServer) -> None:
    echo = {"dataframe_records": [{"var": "CUDA_VISIBLE_DEVICES"}, {"var": "FORK_TEST_VAR"}]}
    gpu = entity("env-echo", 1, workload_type="GPU_SMALL", environment_vars={"FORK_TEST_VAR": "gpu-side"})
    cpu = entity("env-echo", 1, environment_vars={"FORK_TEST_VAR": "cpu-side"})
    fork_server.create_ready("fork-gpu", {"served_entities": [gpu]})
    fork_server.create_ready("fork-cpu", {"served_entities": [cpu]})
    devices = fork_server.get("fork-gpu")["config"]["served_entities"][0]["local"]["gpus"]
    assert len(devices) == 1
    assert fork_server.invoke("fork-gpu", echo).json()["predictions"] == [str(devices[0]), "gpu-side"]
    assert fork_server.invoke("fork-cpu", echo).json()["predictions"] == ["", "cpu-side"]
    for name in ("fork-gpu", "fork-cpu"):
        (pid,) = replica_pids(fork_server, name, "env-echo-1")
        parent = psutil.Process(pid).parent()
        assert parent is not None and FORK_SERVER in " ".join(parent.cmdline())
        fork_server.delete(name)


def test_replicas_outlive_a_killed_fork_server_which_the_next_replica_restarts(
    fork_server: ServingServer,
) -> None:
    fork_server.create_ready("fork-lost", {"served_entities": [entity("iris-lr", 1)]})
    (first,) = replica_pids(fork_server, "fork-lost", "iris-lr-1")
    lost = psutil.Process(first).ppid()
    os.kill(lost, signal.SIGKILL)
    assert fork_server.invoke("fork-lost", iris_split()).json()["predictions"] == [0, 2, 1]
    os.kill(first, signal.SIGKILL)  # orphaned: only its pidfd can tell the server it exited
    (second,) = eventually(
        lambda: replica_pids(fork_server, "fork-lost", "iris-lr-1"),
        90,
        0.1,
        "a replacement replica",
        until=lambda pids: len(pids) == 1 and pids != [first],
    )
    assert second != first
    assert fork_server.proc is not None
    eventually(  # the warm pool's refill started a new fork server
        lambda: [
            p.pid
            for p in psutil.Process(fork_server.proc.pid).children()
            if FORK_SERVER in " ".join(p.cmdline()) and p.pid != lost
        ],
        60,
        0.1,
        "a new fork server",
    )
    eventually(lambda: replicas(fork_server, "fork-lost") == 1, 90, 0.1, "a ready replacement")
    assert fork_server.invoke("fork-lost", iris_split()).json()["predictions"] == [0, 2, 1]
    fork_server.delete("fork-lost")


@pytest.fixture
def short_state_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="js-") as root:
        yield Path(root) / "state"


def test_kill_9_of_the_server_ends_the_fork_server_and_its_replicas(
    short_state_dir: Path, start_server: Any
) -> None:
    server = start_server("--worker-start", "fork", state_dir=short_state_dir)
    server.create_ready("fork-orphans", {"served_entities": [entity("iris-lr", 1)]})
    workers = psutil.Process(server.proc.pid).children(recursive=True)
    assert any(FORK_SERVER in " ".join(p.cmdline()) for p in workers)
    (lone,) = replica_pids(server, "fork-orphans", "iris-lr-1")
    memory = psutil.Process(lone).memory_full_info()
    print(f"a lone forked replica: PSS {memory.pss / 2**20:.1f} MB, USS {memory.uss / 2**20:.1f} MB")
    server.stop(signal.SIGKILL)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"outlived a kill -9 of the server: {alive}"


def test_spawn_still_starts_an_interpreter_per_replica(start_server: Any) -> None:
    server = start_server("--worker-start", "spawn")
    server.create_ready("spawned", {"served_entities": [entity("iris-lr", 1)]})
    assert server.invoke("spawned", iris_split()).json()["predictions"] == [0, 2, 1]
    (pid,) = replica_pids(server, "spawned", "iris-lr-1")
    assert psutil.Process(pid).parent().pid == server.proc.pid  # the server's own child, no fork server
    assert not any(FORK_SERVER in " ".join(p.cmdline()) for p in psutil.Process(server.proc.pid).children())
    memory = psutil.Process(pid).memory_full_info()
    print(f"spawned replica: PSS {memory.pss / 2**20:.1f} MB, USS {memory.uss / 2**20:.1f} MB")
