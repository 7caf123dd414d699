"""Autoscaling, scale-to-zero and cold starts, supervision of crashing workers, on a real server."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import scenarios
from scenarios import FAST_TIMERS, local, metric, wait_local
from serving_support import ServingServer, entity, eventually, iris_split, worker_processes

# A slow model allowed one to three replicas (4 to 12 provisioned concurrency).
SLOW_4_TO_12 = {
    "served_entities": [
        {
            "entity_name": "slow",
            "entity_version": "1",
            "min_provisioned_concurrency": 4,
            "max_provisioned_concurrency": 12,
        }
    ]
}


@pytest.fixture(scope="module")
def fast_server(mlflow_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingServer]:
    server = ServingServer(
        tmp_path_factory.mktemp("autoscale") / "state", mlflow_env.env, list(FAST_TIMERS)
    ).start()
    yield server
    server.stop()


def test_scale_to_zero_then_a_burst_of_first_requests_all_succeed(fast_server: ServingServer) -> None:
    scenarios.scale_to_zero_then_a_burst_of_first_requests_all_succeed(fast_server)


def test_scale_up_under_load_then_down_when_it_stops(fast_server: ServingServer) -> None:
    fast_server.create_ready("as-load", SLOW_4_TO_12)
    assert local(fast_server, "as-load", "slow-1")["replicas"] == 1
    with ThreadPoolExecutor(12) as pool:
        load = pool.map(
            lambda _: fast_server.invoke("as-load", {"dataframe_records": [{"delay": 1.5}]}), range(36)
        )
        # Watched while the load runs: once it stops, the 1 s scale-down delay starts removing replicas.
        grown = wait_local(
            fast_server, "as-load", "slow-1", lambda i: i["replicas"] + i["starting_replicas"] == 3, 30
        )
        # Read while the load still runs: once it stops, the 1 s scale-down delay starts removing them.
        eventually(
            lambda: metric(fast_server, "as-load", 'replicas{served_entity="slow-1"}'),
            30,
            0.05,
            "the replicas gauge showing the scale-out",
            until=lambda replicas: replicas >= 2,
        )
        assert [a.status_code for a in load] == [200] * 36
    assert grown["max_replicas"] == 3  # 12 in flight / 4 per replica
    wait_local(fast_server, "as-load", "slow-1", lambda i: i["replicas"] == 1 and i["starting_replicas"] == 0)
    fast_server.delete("as-load")


def test_killed_workers_are_replaced_and_traffic_recovers(fast_server: ServingServer) -> None:
    fast_server.create_ready("as-kill", {"served_entities": [entity("iris-lr", 1)]})
    worker = _worker_pid(fast_server, "as-kill")
    statuses: list[int] = []
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(fast_server.invoke, "as-kill", iris_split()) for _ in range(200)]
        os.kill(worker, signal.SIGKILL)
        statuses = [f.result().status_code for f in futures]
    assert set(statuses) <= {200, 500}  # in flight on the killed worker: a clear 5xx, never a hang
    wait_local(
        fast_server,
        "as-kill",
        "iris-lr-1",
        lambda i: i["replicas"] == 1 and i["state"]["deployment"] == "DEPLOYMENT_READY",
    )
    assert _worker_pid(fast_server, "as-kill") != worker
    assert [fast_server.invoke("as-kill", iris_split()).status_code for _ in range(20)] == [200] * 20
    fast_server.delete("as-kill")


def test_a_model_that_keeps_crashing_ends_failed_not_in_a_restart_loop(fast_server: ServingServer) -> None:
    fast_server.create_ready("as-crash", {"served_entities": [entity("crash", 1)]})

    def crash_once() -> dict[str, Any] | None:
        info = local(fast_server, "as-crash", "crash-1")
        if info["state"]["deployment"] == "DEPLOYMENT_FAILED":
            return info
        assert fast_server.invoke("as-crash", {"dataframe_records": [{"x": -1.0}]}).status_code >= 500
        return None

    info = eventually(crash_once, 120, 0.0, "the crash loop ending in DEPLOYMENT_FAILED")
    assert "crashed 5 times" in info["message"]
    assert info["replicas"] == 0
    # Failed is final: valid requests and autoscaler ticks never bring it back; only a new config does.
    for _ in range(5):
        assert fast_server.invoke("as-crash", {"dataframe_records": [{"x": 1.0}]}).status_code == 500
        assert local(fast_server, "as-crash", "crash-1")["state"]["deployment"] == "DEPLOYMENT_FAILED"
    update = {"served_entities": [entity("crash", 1, workload_size="Small", scale_to_zero_enabled=True)]}
    assert fast_server.api("PUT", "api/2.0/serving-endpoints/as-crash/config", json=update).status_code == 200
    assert fast_server.wait_settled("as-crash")["state"]["config_update"] == "NOT_UPDATING"
    assert fast_server.invoke("as-crash", {"dataframe_records": [{"x": 1.0}]}).json() == {
        "predictions": [2.0]
    }
    fast_server.delete("as-crash")


def test_cold_start_queue_overflow_answers_503_with_retry_after(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server(*FAST_TIMERS, "--cold-start-queue-size", "2")
    server.create_ready("as-queue", {"served_entities": [entity("iris-lr", 1, scale_to_zero_enabled=True)]})
    wait_local(server, "as-queue", "iris-lr-1", lambda i: i["replicas"] == 0)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.invoke("as-queue", iris_split()), range(8)))
    codes = sorted(a.status_code for a in answers)
    assert 200 in codes and 503 in codes, codes
    rejected = next(a for a in answers if a.status_code == 503)
    assert rejected.headers["Retry-After"] == "1"
    assert rejected.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert "queue of 2 waiting requests is full" in rejected.json()["message"]


def test_scale_out_is_capped_by_free_memory_and_says_so(start_server: Callable[..., ServingServer]) -> None:
    server = start_server(*FAST_TIMERS, "--memory-headroom-bytes", str(10**15))
    server.create_ready("as-mem", SLOW_4_TO_12)
    with ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(lambda _: server.invoke("as-mem", {"dataframe_records": [{"delay": 1.0}]}), range(12))
        )
        capped = local(server, "as-mem", "slow-1")
    assert [a.status_code for a in answers] == [200] * 12
    assert (capped["replicas"], capped["starting_replicas"]) == (1, 0)
    assert "Capped at 1 replica(s)" in capped["message"]


def _worker_pid(server: ServingServer, name: str) -> int:
    assert server.proc is not None
    children = worker_processes(server.proc.pid, fork_servers=True)
    logs = server.api(
        "GET",
        f"api/2.0/serving-endpoints/{name}/served-models/{server.get(name)['config']['served_entities'][0]['name']}/logs",
    ).json()["logs"]
    serving = [p.pid for p in children if f"[{p.pid}]" in logs]
    assert serving, "no worker of this endpoint found"
    return serving[-1]
