"""The backend-neutral scenarios of the integration suite, run again on the Ray backend.

One real two-node Ray cluster for the session (`ray_cluster` in tests/conftest.py) and one server
with `--backend ray` on it for this module. The scenarios are the ones the local backend's
modules run (tests/scenarios.py), given this server instead of theirs; only replica placement
across nodes is Ray's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scenarios
from agent_models import streaming_scenario
from ray_cluster import RAY_ENV, RAY_MISSING, RayCluster
from scenarios import FAST_TIMERS, local, wait_local
from serving_support import MlflowEnv, ServingServer, entity, eventually, iris_split

pytestmark = [
    pytest.mark.skipif(bool(RAY_MISSING), reason=RAY_MISSING or "Ray is installed"),
    # The first test also waits for the cluster and the server to start: minutes on a busy 2-core box.
    pytest.mark.timeout(420),
]

RAY_FLAGS = (
    "--backend", "ray",
    "--env-manager", "local",  # the nodes' own environment: nothing is built in the tests
    "--ray-replica-cpus", "0.2",  # several replicas per one-CPU node
    "--capture-flush-s", "0.2",
)  # fmt: skip


@pytest.fixture(scope="module")
def ray_server(
    ray_cluster: RayCluster, mlflow_env: MlflowEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingServer]:
    server = ServingServer(
        tmp_path_factory.mktemp("ray") / "state",
        {**mlflow_env.env, **RAY_ENV},
        [*RAY_FLAGS, "--ray-address", ray_cluster.address, *ray_cluster.proxy_flags, *FAST_TIMERS],
        startup_timeout=180,
    ).start()
    yield server
    server.stop()


def test_lifecycle_create_get_query_delete(ray_server: ServingServer, ray_cluster: RayCluster) -> None:
    endpoint = ray_server.create_ready("ray-life", {"served_entities": [entity("iris-lr", 1)]})
    served = endpoint["config"]["served_entities"][0]
    assert served["state"]["deployment"] == "DEPLOYMENT_READY"
    assert served["local"]["ray"]["status"] == "RUNNING"
    app = served["local"]["ray"]["application"]
    assert app.startswith("jsrv-") and app in ray_cluster.applications()
    response = ray_server.invoke("ray-life", iris_split())
    assert (response.status_code, response.json()) == (200, {"predictions": [0, 2, 1]})
    assert response.headers["served-model-name"] == "iris-lr-1"
    bad = ray_server.invoke("ray-life", {"dataframe_records": [{"x": 1}]})
    assert bad.status_code == 400 and "error_code" in bad.json()  # MLflow's schema error, as on local
    logs = ray_server.api("GET", "api/2.0/serving-endpoints/ray-life/served-models/iris-lr-1/logs").json()
    assert "model loaded" in logs["logs"]  # from Ray's own replica log
    assert ray_server.delete("ray-life").json() == {}
    assert ray_server.api("GET", "api/2.0/serving-endpoints/ray-life").status_code == 404
    eventually(lambda: app not in ray_cluster.applications(), 60, 0.5, "the application deleted from Ray")


def test_split_80_20_direct_and_sticky(ray_server: ServingServer) -> None:
    # 400 keys and 100 unkeyed requests (a miss of either entity: p < 1e-9): a Ray request costs ~10x a local one.
    scenarios.split_follows_the_configured_percentages_and_direct_queries_ignore_it(ray_server, 400, 100)


def test_three_updates_under_load_fail_no_request(ray_server: ServingServer) -> None:
    scenarios.no_request_fails_across_updates_under_load(ray_server)


def test_scale_to_zero_then_a_burst_of_first_requests(ray_server: ServingServer) -> None:
    scenarios.scale_to_zero_then_a_burst_of_first_requests_all_succeed(ray_server)


def test_scale_from_zero_is_answered_by_a_warm_preimported_host(ray_server: ServingServer) -> None:
    """Scale from zero on Ray (backends/ray/warm.py): the requests that find the entity at zero
    replicas are answered by a warm actor that had MLflow imported before it was given the model,
    while Serve starts its own replica, which then serves. How fast: benchmarks/ray_bench.py."""
    ray_server.create_ready(
        "ray-warm", {"served_entities": [entity("iris-lr", 1, scale_to_zero_enabled=True)]}
    )
    ready = wait_local(
        ray_server,
        "ray-warm",
        "iris-lr-1",
        lambda i: i["replicas"] == 0 and i["ray"]["warm_host"] == "ready",
        180,
    )
    assert ready["ray"]["warm_starts"] == 0
    answers = [ray_server.invoke("ray-warm", iris_split()) for _ in range(3)]
    assert [(a.status_code, a.json()) for a in answers] == [(200, {"predictions": [0, 2, 1]})] * 3
    info = local(ray_server, "ray-warm", "iris-lr-1")
    assert (info["cold_starts"], info["ray"]["warm_starts"]) == (1, 1)
    bridge = info["ray"]["warm_start"]
    assert (bridge["by"], bridge["preimported"]) == ("server", True)  # MLflow imported before the model
    # Serve's replica starts meanwhile and takes over; the pool has a fresh warm host for next time.
    wait_local(ray_server, "ray-warm", "iris-lr-1", lambda i: i["replicas"] == 1, 180)
    assert ray_server.invoke("ray-warm", iris_split()).status_code == 200
    assert local(ray_server, "ray-warm", "iris-lr-1")["ray"]["warm_starts"] == 1
    ray_server.delete("ray-warm")


def test_capture_loses_no_row(ray_server: ServingServer) -> None:
    scenarios.requests_and_failures_are_logged_with_databricks_columns(ray_server)
    ray_server.delete("cap-ep")
    scenarios.every_acknowledged_request_lands_exactly_once(ray_server)


def test_a_failed_requests_id_leads_to_its_log_lines(ray_server: ServingServer) -> None:
    # The model's own `logging` lines go to the Ray worker's stderr, not Serve's replica log.
    scenarios.a_failed_requests_id_leads_to_its_log_lines(ray_server, model_lines=False)


def test_replicas_of_one_entity_run_on_both_nodes(ray_server: ServingServer) -> None:
    two = {"served_entities": [{"entity_name": "iris-lr", "entity_version": "1", **SIZE_8}]}
    ray_server.create_ready("ray-nodes", two)

    def placement() -> dict[str, Any]:
        return local(ray_server, "ray-nodes", "iris-lr-1")

    info = eventually(
        placement, 60, 0.2, "two replicas on two nodes", until=lambda i: len(i["ray"]["nodes"]) == 2
    )
    assert info["replicas"] == 2 and info["min_replicas"] == 2
    assert all(ray_server.invoke("ray-nodes", iris_split()).status_code == 200 for _ in range(20))
    # Logs of replicas on every node: each replica's file is read by a task on the node that ran it
    # (backends/ray/logs.py) and headed by that node, so both nodes' load lines are there.
    logs = ray_server.api("GET", "api/2.0/serving-endpoints/ray-nodes/served-models/iris-lr-1/logs").json()
    read_on = {part[:12] for part in logs["logs"].split("==> node ")[1:] if "model loaded" in part}
    assert read_on == {node[:12] for node in info["ray"]["nodes"]}
    ray_server.delete("ray-nodes")


SIZE_8 = {"min_provisioned_concurrency": 8, "max_provisioned_concurrency": 8}  # two replicas of 4


def test_unchanged_entities_keep_their_replicas_and_a_resize_restarts_none(ray_server: ServingServer) -> None:
    scenarios.unchanged_entities_keep_their_replicas(
        ray_server
    )  # a split change: the same Serve applications serve on
    ray_server.create_ready("ray-resize", {"served_entities": [entity("iris-lr", 1)]})
    app = local(ray_server, "ray-resize", "iris-lr-1")["ray"]["application"]
    resized = {"served_entities": [entity("iris-lr", 1, scale_to_zero_enabled=True)]}  # same runtime key
    assert (
        ray_server.api("PUT", "api/2.0/serving-endpoints/ray-resize/config", json=resized).status_code == 200
    )
    assert ray_server.wait_settled("ray-resize")["config"]["config_version"] == 2
    # Scaling to zero proves Serve applied the new autoscaling_config; the one "model loaded" line
    # proves it did so in place (a code change would have replaced the replica first).
    after = eventually(
        lambda: local(ray_server, "ray-resize", "iris-lr-1"),
        60,
        0.2,
        "zero replicas",
        until=lambda i: i["replicas"] == 0,
    )
    assert after["ray"]["application"] == app and after["min_replicas"] == 0
    logs = ray_server.api("GET", "api/2.0/serving-endpoints/ray-resize/served-models/iris-lr-1/logs").json()
    assert logs["logs"].count("model loaded") == 1
    assert ray_server.invoke("ray-resize", iris_split()).status_code == 200  # and a cold start serves
    ray_server.delete("ray-resize")


def test_streams_through_serve_streaming_handles(ray_server: ServingServer, tmp_path: Path) -> None:
    """The streaming scenario the local backend runs (test_streaming.py), through Serve's streaming
    handles: same chunks, the assembled row, and a client that leaves cancelling the model's stream."""
    streaming_scenario(ray_server, tmp_path, "ray-agent")
