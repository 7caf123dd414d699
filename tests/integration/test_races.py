"""Races between control-plane calls on a real server: afterwards it runs exactly the workers its
endpoints need plus the warm pool, counted from the process tree (a leaked loaded worker is ~290 MB)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from serving_support import ServingServer, entity, eventually, worker_processes

WARM_POOL = 1

pytestmark = pytest.mark.slow


def workers(server: ServingServer) -> int:
    """Worker processes, spawned or forked (not the fork servers)."""
    assert server.proc is not None
    return len(worker_processes(server.proc.pid))


def needed(server: ServingServer) -> int:
    """Replicas of every endpoint's active config, as the server reports them."""
    total = 0
    for summary in server.api("GET", "api/2.0/serving-endpoints").json().get("endpoints", []):
        detail = server.get(summary["name"])
        for served in (detail.get("config") or {}).get("served_entities", []):
            total += served["local"]["replicas"]
    return total


def assert_no_leaked_workers(server: ServingServer) -> None:
    eventually(
        lambda: workers(server) == needed(server) + WARM_POOL,
        timeout=60,
        what=f"workers == needed + warm pool (workers {workers(server)}, needed {needed(server)})",
    )


@pytest.fixture
def server(start_server: Callable[..., ServingServer]) -> ServingServer:
    return start_server("--warm-pool-size", str(WARM_POOL))


def test_create_then_delete_mid_deploy_leaks_nothing(server: ServingServer, tmp_path: Path) -> None:
    """The delete lands at each phase of a deploy, each placed by a gate rather than a delay: before
    any worker exists, once the worker is up but still loading (its load waits on a gate file),
    after the gate opens and the load finishes, and once the endpoint is ready."""
    gate = tmp_path / "never-opened"
    loading = {"served_entities": [entity("slow-load", 1, environment_vars={"SLOW_LOAD_GATE": str(gate)})]}
    base = workers(server)

    assert server.create("race-cd-0", {"served_entities": [entity("iris-lr", 1)]}).status_code == 200
    assert server.delete("race-cd-0").status_code == 200  # phase 1: at once, no worker yet

    assert server.create("race-cd-1", loading).status_code == 200
    eventually(lambda: workers(server) > base, what="the loading worker to exist")
    assert server.delete("race-cd-1").status_code == 200  # phase 2: the worker is loading

    opened = tmp_path / "opened"
    ready_soon = {
        "served_entities": [entity("slow-load", 1, environment_vars={"SLOW_LOAD_GATE": str(opened)})]
    }
    assert server.create("race-cd-2", ready_soon).status_code == 200
    eventually(lambda: workers(server) > base, what="the second loading worker to exist")
    opened.touch()  # phase 3: the load finishes while the delete arrives
    assert server.delete("race-cd-2").status_code == 200

    server.create_ready("race-cd-3", {"served_entities": [entity("iris-lr", 1)]})
    assert server.delete("race-cd-3").status_code == 200  # phase 4: serving

    assert_no_leaked_workers(server)
    assert server.api("GET", "api/2.0/serving-endpoints").json().get("endpoints", []) == []


def test_cancel_then_update_just_before_a_delete_leaks_nothing(server: ServingServer) -> None:
    server.create_ready("race-cud", {"served_entities": [entity("iris-lr", 1)]})
    slow = {"served_entities": [entity("slow-load", 1, environment_vars={"SLOW_LOAD_S": "600"})]}
    assert server.api("PUT", "api/2.0/serving-endpoints/race-cud/config", json=slow).status_code == 200
    assert server.api("POST", "api/2.0/serving-endpoints/race-cud/cancel-update").status_code == 200
    update = threading.Thread(
        target=server.api,
        args=("PUT", "api/2.0/serving-endpoints/race-cud/config"),
        kwargs={"json": {"served_entities": [entity("iris-lr", 2)]}},
    )
    update.start()
    # The gate: the delete lands once the new update has been taken (its config pending, or
    # already active when the fast load wins), not after a guessed delay.
    eventually(lambda: _has_version(server.get("race-cud"), "2"), what="the second update to be taken")
    assert server.delete("race-cud").status_code == 200
    update.join()
    assert_no_leaked_workers(server)
    assert server.api("GET", "api/2.0/serving-endpoints/race-cud").status_code == 404


def _has_version(detail: dict[str, Any], version: str) -> bool:
    configs = (detail.get("pending_config") or {}, detail.get("config") or {})
    return any(e.get("entity_version") == version for c in configs for e in c.get("served_entities", []))


def test_concurrent_creates_and_deletes_of_one_name_leak_nothing(server: ServingServer) -> None:
    config = {"served_entities": [entity("iris-lr", 1)]}

    def create(_: int) -> int:
        return server.create("race-same", config).status_code

    def delete(_: int) -> int:
        return server.delete("race-same").status_code

    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            creates = [pool.submit(create, i) for i in range(4)]
            deletes = [pool.submit(delete, i) for i in range(4)]
            statuses = [f.result() for f in creates + deletes]
        assert set(statuses) <= {200, 400, 404, 409}, statuses  # never a 5xx
    if server.api("GET", "api/2.0/serving-endpoints/race-same").status_code == 200:
        server.wait_settled("race-same")
    assert_no_leaked_workers(server)
