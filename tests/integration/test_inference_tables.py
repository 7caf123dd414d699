"""Inference tables end to end: every request lands in a real Delta table, durably and exactly once."""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import scenarios
from scenarios import CAPTURE, read_table, wait_rows
from serving_support import ServingServer, entity, iris_split


def test_requests_and_failures_are_logged_with_databricks_columns(
    start_server: Callable[..., ServingServer],
) -> None:
    scenarios.requests_and_failures_are_logged_with_databricks_columns(
        start_server("--capture-flush-s", "0.2")
    )


def test_a_failed_requests_id_leads_to_its_log_lines(serving_server: ServingServer) -> None:
    scenarios.a_failed_requests_id_leads_to_its_log_lines(serving_server)


def test_every_acknowledged_request_lands_exactly_once(serving_server: ServingServer) -> None:
    """Concurrent clients with capture on: each answered request is one row, none lost or doubled."""
    scenarios.every_acknowledged_request_lands_exactly_once(serving_server)


def test_disable_reenable_and_delete_keep_the_table(start_server: Callable[..., ServingServer]) -> None:
    server = start_server("--capture-flush-s", "0.2")
    server.create_ready(
        "cap-toggle", {"served_entities": [entity("iris-lr", 1)], "auto_capture_config": CAPTURE}
    )
    path = server.get("cap-toggle")["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    first = server.invoke("cap-toggle", iris_split()).headers["x-request-id"]
    wait_rows(path, 1)
    off = server.api(
        "PUT",
        "api/2.0/serving-endpoints/cap-toggle/config",
        json={"served_entities": [entity("iris-lr", 1)], "auto_capture_config": {"enabled": False}},
    )
    assert off.status_code == 200, off.text
    disabled = server.wait_settled("cap-toggle")["config"]["auto_capture_config"]
    assert disabled["enabled"] is False and disabled["state"]["payload_table"]["status"] == "DISABLED"
    unlogged = server.invoke("cap-toggle", iris_split()).headers["x-request-id"]
    on = server.api(
        "PUT",
        "api/2.0/serving-endpoints/cap-toggle/config",
        json={"served_entities": [entity("iris-lr", 1)], "auto_capture_config": {"enabled": True}},
    )
    assert on.status_code == 200, on.text
    server.wait_settled("cap-toggle")
    last = server.invoke("cap-toggle", iris_split()).headers["x-request-id"]
    ids = set(wait_rows(path, 2)["databricks_request_id"])
    assert ids == {first, last} and unlogged not in ids
    server.delete("cap-toggle")
    assert len(read_table(path)) == 2  # deleting the endpoint keeps its inference table


def test_kill_9_under_load_loses_no_acknowledged_row(
    start_server: Callable[..., ServingServer], tmp_path: Path
) -> None:
    state = tmp_path / "cap-state"
    server = start_server("--capture-flush-s", "30", state_dir=state)  # rows stay in the spool until the kill
    server.create_ready(
        "cap-kill", {"served_entities": [entity("iris-lr", 1)], "auto_capture_config": CAPTURE}
    )
    path = server.get("cap-kill")["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    acknowledged: list[str] = []

    def client(n: int) -> None:
        for i in range(40):
            response = server.invoke("cap-kill", {**iris_split(), "client_request_id": f"c{n}-{i}"})
            assert response.status_code == 200
            acknowledged.append(response.headers["x-request-id"])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(client, range(4)))
    server.stop(signal.SIGKILL)
    restarted = start_server("--capture-flush-s", "0.2", state_dir=state)
    frame = wait_rows(path, len(acknowledged))
    assert sorted(frame["databricks_request_id"]) == sorted(acknowledged)  # all of them, each exactly once
    restarted.wait_settled("cap-kill")
    assert (
        restarted.invoke("cap-kill", iris_split()).status_code == 200
    )  # and it keeps capturing after replay
    assert len(wait_rows(path, len(acknowledged) + 1)) == len(acknowledged) + 1
