"""Endpoint lifecycle around the processes: failures, logs, metrics, restarts, and the server dying."""

from __future__ import annotations

import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from serving_support import ServingServer, entity, eventually, iris_split


def test_model_that_cannot_load_fails_its_deployment_and_nothing_else(serving_server: ServingServer) -> None:
    serving_server.create_ready("life-ok", {"served_entities": [entity("iris-lr", 1)]})
    assert serving_server.create("life-bad", {"served_entities": [entity("fail-load", 1)]}).status_code == 200
    failed = serving_server.wait_settled("life-bad")
    assert failed["state"] == {"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}
    served = failed["pending_config"]["served_entities"][0]
    assert served["state"]["deployment"] == "DEPLOYMENT_FAILED"
    assert "weights file is corrupt" in served["state"]["deployment_state_message"]
    logs = serving_server.api(
        "GET", "api/2.0/serving-endpoints/life-bad/served-models/fail-load-1/logs"
    ).json()["logs"]
    assert "RuntimeError: weights file is corrupt" in logs  # the full traceback is in the entity's logs
    query = serving_server.invoke("life-bad", {"dataframe_records": [{"a": 1.0, "b": 2.0}]})
    assert query.status_code == 400
    assert query.json()["error_code"] == "INVALID_STATE"
    assert "weights file is corrupt" in query.json()["message"]
    assert (
        serving_server.invoke("life-ok", iris_split()).status_code == 200
    )  # the server and its neighbours live on
    serving_server.delete("life-bad")
    serving_server.delete("life-ok")


def test_logs_and_metrics_of_a_serving_endpoint(serving_server: ServingServer) -> None:
    serving_server.create_ready("life-obs", {"served_entities": [entity("iris-lr", 1)]})
    for _ in range(3):
        assert serving_server.invoke("life-obs", iris_split()).status_code == 200
    assert serving_server.invoke("life-obs", {"dataframe_records": [{"x": 1}]}).status_code == 400
    logs = serving_server.api(
        "GET", "api/2.0/serving-endpoints/life-obs/served-models/iris-lr-1/logs"
    ).json()["logs"]
    assert "model loaded" in logs
    metrics = serving_server.api("GET", "api/2.0/serving-endpoints/life-obs/metrics")
    assert metrics.headers["Content-Type"].startswith("text/plain")
    text = metrics.text
    assert 'requests_total{served_entity="iris-lr-1",status="200"} 3.0' in text
    assert 'requests_total{served_entity="iris-lr-1",status="400"} 1.0' in text
    assert 'replicas{served_entity="iris-lr-1"} 1.0' in text
    assert 'request_latency_seconds_count{served_entity="iris-lr-1"} 4.0' in text
    serving_server.delete("life-obs")


def test_endpoints_survive_a_restart_and_redeploy_without_user_action(
    start_server: Callable[..., ServingServer], tmp_path
) -> None:
    state = tmp_path / "persist-state"
    first = start_server(state_dir=state)
    first.create_ready("keep-me", {"served_entities": [entity("iris-lr", 2)]})
    before = first.get("keep-me")
    workers = psutil.Process(first.proc.pid).children(recursive=True)
    first.stop()
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, "a clean shutdown stops every worker"

    second = start_server(state_dir=state)
    after = second.wait_settled("keep-me")
    after = eventually(
        lambda: second.get("keep-me"),
        90,
        0.1,
        "keep-me READY after the restart",
        until=lambda e: e["state"]["ready"] == "READY",
    )
    assert after["id"] == before["id"]
    assert after["config"]["config_version"] == before["config"]["config_version"]
    assert after["config"]["served_entities"][0]["entity_version"] == "2"
    assert second.invoke("keep-me", iris_split()).json()["predictions"] == [0, 2, 1]


@pytest.fixture
def short_state_dir() -> Iterator[Path]:
    """A state dir short enough that its sockets live inside it (deep pytest temp paths exceed
    AF_UNIX's 108 bytes, and the server then puts them in a temp dir of its own)."""
    with tempfile.TemporaryDirectory(prefix="js-") as root:
        yield Path(root) / "state"


def test_workers_exit_when_the_server_is_killed(
    short_state_dir: Path, start_server: Callable[..., ServingServer]
) -> None:
    server = start_server(state_dir=short_state_dir)
    server.create_ready("orphan-check", {"served_entities": [entity("iris-lr", 1)]})
    workers = psutil.Process(server.proc.pid).children(recursive=True)
    assert workers
    server.stop(signal.SIGKILL)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers outlived a kill -9 of the server: {alive}"
    sockets = server.state_dir / "sockets"
    stale = set(sockets.glob("*.sock"))
    assert stale  # what the killed server left behind
    restarted = start_server(state_dir=server.state_dir)
    assert not stale & set(sockets.glob("*.sock"))  # a restarted server cleans up after the dead one
    eventually(lambda: restarted.get("orphan-check")["state"]["ready"] == "READY", 90, 0.1, "READY again")


def test_a_state_dir_serves_one_server_at_a_time(
    start_server: Callable[..., ServingServer], tmp_path
) -> None:
    start_server(state_dir=tmp_path / "shared")
    with pytest.raises(RuntimeError, match="exited"):
        start_server(state_dir=tmp_path / "shared")
    log = (tmp_path / "shared-server.log").read_text()
    assert "is in use by another server (pid" in log
