"""Inference tables end to end: every request lands in a real Delta table, durably and exactly once."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from serving_support import IRIS_COLUMNS, ServingServer, entity, eventually, iris_split

CAPTURE = {"catalog_name": "main", "schema_name": "default", "enabled": True}


def read_table(path: str) -> pd.DataFrame:
    from deltalake import DeltaTable

    return DeltaTable(path).to_pandas()


def wait_rows(path: str, count: int, timeout: float = 60) -> pd.DataFrame:
    """Poll the Delta table (committed in the background) until it holds `count` rows."""

    def rows() -> pd.DataFrame | None:
        frame = read_table(path) if Path(path, "_delta_log").exists() else pd.DataFrame()
        return frame if len(frame) >= count else None

    return eventually(rows, timeout, 0.1, f"{count} rows in {path}", until=lambda f: f is not None)


def test_requests_and_failures_are_logged_with_databricks_columns(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server("--capture-flush-s", "0.2")
    endpoint = server.create_ready(
        "cap-ep", {"served_entities": [entity("iris-lr", 1)], "auto_capture_config": CAPTURE}
    )
    capture = endpoint["config"]["auto_capture_config"]
    assert capture["table_name_prefix"] == "cap-ep"  # defaults to the endpoint name
    table = capture["state"]["payload_table"]
    assert (table["name"], table["status"]) == ("cap-ep_payload", "ACTIVE")
    assert table["path"].endswith("catalog/main/default/cap-ep_payload")

    ok = server.invoke("cap-ep", {**iris_split(), "client_request_id": "order-1"})
    bad = server.invoke("cap-ep", {"dataframe_split": {"columns": IRIS_COLUMNS[:2], "data": [[1.0, 2.0]]}})
    assert (ok.status_code, bad.status_code) == (200, 400)
    frame = wait_rows(table["path"], 2).set_index("databricks_request_id")
    good_row, bad_row = frame.loc[ok.headers["x-request-id"]], frame.loc[bad.headers["x-request-id"]]
    assert good_row["client_request_id"] == "order-1"
    assert good_row["status_code"] == 200 and bad_row["status_code"] == 400
    assert '"predictions": [0, 2, 1]' in good_row["response"]
    assert "missing inputs" in bad_row["response"]
    assert '"client_request_id": "order-1"' in good_row["request"]
    assert dict(good_row["request_metadata"]) == {
        "endpoint_name": "cap-ep",
        "model_name": "iris-lr",
        "model_version": "1",
        "served_entity_name": "iris-lr-1",
    }
    assert good_row["sampling_fraction"] == 1.0
    assert good_row["execution_time_ms"] >= 0 and good_row["timestamp_ms"] > 1_700_000_000_000
    assert str(good_row["date"]) == time.strftime("%Y-%m-%d", time.gmtime(good_row["timestamp_ms"] / 1000))


def test_every_acknowledged_request_lands_exactly_once(serving_server: ServingServer) -> None:
    """Concurrent clients with capture on: each answered request is one row, none lost or doubled."""
    serving_server.create_ready(
        "cap-load", {"served_entities": [entity("iris-lr", 1)], "auto_capture_config": CAPTURE}
    )
    path = serving_server.get("cap-load")["config"]["auto_capture_config"]["state"]["payload_table"]["path"]

    def client(n: int) -> list[str]:
        ids = []
        for i in range(25):
            response = serving_server.invoke("cap-load", {**iris_split(), "client_request_id": f"c{n}-{i}"})
            assert response.status_code == 200, response.text
            ids.append(response.headers["x-request-id"])
        return ids

    with ThreadPoolExecutor(4) as pool:
        acknowledged = [i for ids in pool.map(client, range(4)) for i in ids]
    frame = wait_rows(path, len(acknowledged))
    assert sorted(frame["databricks_request_id"]) == sorted(acknowledged)
    assert sorted(frame["client_request_id"]) == sorted(f"c{n}-{i}" for n in range(4) for i in range(25))
    serving_server.delete("cap-load")


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
