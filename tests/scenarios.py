"""Backend-neutral integration scenarios: each takes a running server and checks one promise.

The local backend's test modules (test_updates.py, test_autoscaling.py, test_inference_tables.py)
and test_ray_backend.py each call them with their own server, so a scenario is written once and no
test module imports another. Names of endpoints are fixed: run one scenario at a time per server.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from scipy.stats import chisquare
from serving_support import IRIS_COLUMNS, ServingServer, entity, eventually, iris_split

from jupyter_serving.dataplane.router import ROUTING_KEY_HEADER

FAST_TIMERS = ("--scale-to-zero-idle-s", "2", "--scale-down-delay-s", "1", "--autoscale-interval-s", "0.2")


CAPTURE = {"catalog_name": "main", "schema_name": "default", "enabled": True}


def split(*routes: tuple[str, int | str]) -> dict:
    return {"routes": [{"served_model_name": n, "traffic_percentage": p} for n, p in routes]}


AB = {
    "served_entities": [entity("iris-lr", 1, name="current"), entity("iris-lr", 2, name="challenger")],
    "traffic_config": split(("current", "80"), ("challenger", "20")),
}


def local(server: ServingServer, name: str, served: str) -> dict[str, Any]:
    endpoint = server.get(name)
    entity_ = next(e for e in endpoint["config"]["served_entities"] if e["name"] == served)
    return {
        **entity_["local"],
        "message": entity_["state"]["deployment_state_message"],
        "state": entity_["state"],
    }


def wait_local(
    server: ServingServer,
    name: str,
    served: str,
    check: Callable[[dict[str, Any]], bool],
    timeout: float = 90,
) -> dict[str, Any]:
    return eventually(lambda: local(server, name, served), timeout, 0.1, f"{name}/{served}", until=check)


def metric(server: ServingServer, name: str, line_start: str) -> float:
    text = server.api("GET", f"api/2.0/serving-endpoints/{name}/metrics").text
    return float(next(line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(line_start)))


def read_table(path: str) -> pd.DataFrame:
    from deltalake import DeltaTable

    return DeltaTable(path).to_pandas()


def wait_rows(path: str, count: int, timeout: float = 60) -> pd.DataFrame:
    """Poll the Delta table (committed in the background) until it holds `count` rows."""

    def rows() -> pd.DataFrame | None:
        frame = read_table(path) if Path(path, "_delta_log").exists() else pd.DataFrame()
        return frame if len(frame) >= count else None

    return eventually(rows, timeout, 0.1, f"{count} rows in {path}", until=lambda f: f is not None)


def split_follows_the_configured_percentages_and_direct_queries_ignore_it(
    server: ServingServer, keys: int = 1500, unkeyed_requests: int = 200
) -> None:
    """`keys`: fewer on a backend where a request costs more (Ray); the split is the server's own
    code on every backend, so what a backend adds is only that both entities answer."""
    server.create_ready("upd-ab", AB)
    # Distinct routing keys make the split deterministic over HTTP (the unkeyed random draw is
    # tested with a seeded generator in tests/unit/test_router.py): keys spread like traffic.
    counts = Counter(
        server.invoke("upd-ab", iris_split(), headers={ROUTING_KEY_HEADER: f"user-{i}"}).headers[
            "served-model-name"
        ]
        for i in range(keys)
    )
    expected = [keys * 0.8, keys * 0.2]
    assert chisquare([counts["current"], counts["challenger"]], expected).pvalue > 0.001, counts
    unkeyed = {
        server.invoke("upd-ab", iris_split()).headers["served-model-name"] for _ in range(unkeyed_requests)
    }
    assert unkeyed == {"current", "challenger"}  # both get unkeyed traffic (fails with p <= 0.8**n)
    direct = {
        server.invoke("upd-ab", iris_split(), served="challenger").headers["served-model-name"]
        for _ in range(20)
    }
    assert direct == {"challenger"}
    sticky = {
        server.invoke("upd-ab", iris_split(), headers={"X-Serving-Routing-Key": "customer-7"}).headers[
            "served-model-name"
        ]
        for _ in range(30)
    }
    assert len(sticky) == 1  # one customer sees one model for a given split
    server.delete("upd-ab")


def no_request_fails_across_updates_under_load(server: ServingServer) -> None:
    server.create_ready("upd-load", AB)
    failures: list[str] = []
    served: Counter[str] = Counter()
    lock = threading.Lock()
    stop, loaded, replaced = threading.Event(), threading.Event(), threading.Event()

    def client() -> None:
        while not stop.is_set():
            response = server.invoke("upd-load", iris_split())
            with lock:
                if response.status_code != 200:
                    failures.append(response.text)
                served[response.headers.get("served-model-name", "?")] += 1
                if sum(served.values()) >= 20:
                    loaded.set()
                if served["replacement"] >= 20:
                    replaced.set()

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        assert loaded.wait(60), "the clients never got going"  # the updates start under load
        updates = [
            {**AB, "traffic_config": split(("current", 50), ("challenger", 50))},  # split change
            {
                "served_entities": [
                    entity("iris-lr", 2, name="current"),
                    entity("iris-lr", 2, name="challenger"),
                ],
                "traffic_config": split(("current", 50), ("challenger", 50)),
            },  # version swap
            {
                "served_entities": [
                    entity("main.default.iris", 1, name="replacement"),
                    entity("iris-lr", 2, name="challenger"),
                ],
                "traffic_config": split(("replacement", 70), ("challenger", 30)),
            },  # entity replaced
        ]
        for version, config in enumerate(updates, start=2):
            response = server.api("PUT", "api/2.0/serving-endpoints/upd-load/config", json=config)
            assert response.status_code == 200, response.text
            assert response.json()["pending_config"]["config_version"] == version
            endpoint = server.wait_settled("upd-load")
            assert endpoint["config"]["config_version"] == version
            assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
        assert replaced.wait(60), "the replacement entity served too few requests"  # and end under it
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    server.delete("upd-load")


def unchanged_entities_keep_their_replicas(server: ServingServer) -> None:
    server.create_ready("upd-reuse", AB)
    before = server.api("GET", "api/2.0/serving-endpoints/upd-reuse/served-models/current/logs").json()[
        "logs"
    ]
    response = server.api(
        "PUT",
        "api/2.0/serving-endpoints/upd-reuse/config",
        json={**AB, "traffic_config": split(("current", 10), ("challenger", 90))},
    )
    assert response.status_code == 200
    server.wait_settled("upd-reuse")
    after = server.api("GET", "api/2.0/serving-endpoints/upd-reuse/served-models/current/logs").json()["logs"]
    assert after.count("model loaded") == before.count("model loaded") == 1  # no replica was restarted
    server.delete("upd-reuse")


def scale_to_zero_then_a_burst_of_first_requests_all_succeed(server: ServingServer) -> None:
    server.create_ready("as-zero", {"served_entities": [entity("iris-lr", 1, scale_to_zero_enabled=True)]})
    idle = wait_local(server, "as-zero", "iris-lr-1", lambda i: i["replicas"] == 0)
    assert "Scaled to zero" in idle["message"]
    assert server.get("as-zero")["state"]["ready"] == "READY"  # scaled to zero is still a ready endpoint
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: server.invoke("as-zero", iris_split()), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert all(a.json()["predictions"] == [0, 2, 1] for a in answers)
    # Polled: a backend may learn its replica count a moment after the replica answered (Ray's status),
    # or start it after the answers: on Ray a warm host answers while Serve's replica starts (minutes
    # on a loaded 2-core machine).
    wait_local(server, "as-zero", "iris-lr-1", lambda i: i["replicas"] == 1, 240)
    assert metric(server, "as-zero", 'cold_starts_total{served_entity="iris-lr-1"}') == 1.0
    assert local(server, "as-zero", "iris-lr-1")["cold_starts"] == 1
    server.delete("as-zero")


def requests_and_failures_are_logged_with_databricks_columns(server: ServingServer) -> None:
    """`server` commits captured rows quickly (--capture-flush-s 0.2)."""
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


def a_failed_requests_id_leads_to_its_log_lines(server: ServingServer, model_lines: bool = True) -> None:
    """The id a failed request was answered with (x-request-id), which its inference-table row holds
    as databricks_request_id, names the replica's log lines for it: the one-line failure and (where
    `model_lines`: a local worker) what the model itself logged while scoring it."""
    server.create_ready("log-rid", {"served_entities": [entity("boom", 1)], "auto_capture_config": CAPTURE})
    path = server.get("log-rid")["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    ok = server.invoke("log-rid", {"dataframe_records": [{"x": 1.0}]})
    failed = server.invoke("log-rid", {"dataframe_records": [{"x": -1.0}], "client_request_id": "neg-1"})
    assert (ok.status_code, failed.status_code) == (200, 400)
    request_id = failed.headers["x-request-id"]
    row = wait_rows(path, 2).set_index("databricks_request_id").loc[request_id]
    assert (row["status_code"], row["client_request_id"]) == (400, "neg-1")
    logs_path = "api/2.0/serving-endpoints/log-rid/served-models/boom-1/logs"

    def named() -> list[str]:
        logs = server.api("GET", logs_path).json()["logs"]
        return [line for line in logs.splitlines() if f"request_id={request_id}" in line]

    wanted = 2 if model_lines else 1
    lines = eventually(lambda: len(named()) >= wanted and named(), 60, 0.2, "log lines naming the request")
    assert any("invocation failed (400, client_request_id=neg-1): " in line for line in lines), lines
    if model_lines:
        assert any("boom: refusing 1 negative input(s)" in line for line in lines), lines
    assert ok.headers["x-request-id"] not in server.api("GET", logs_path).json()["logs"]  # it logged nothing
    server.delete("log-rid")


def every_acknowledged_request_lands_exactly_once(server: ServingServer) -> None:
    """Concurrent clients with capture on: each answered request is one row, none lost or doubled."""
    server.create_ready(
        "cap-load", {"served_entities": [entity("iris-lr", 1)], "auto_capture_config": CAPTURE}
    )
    path = server.get("cap-load")["config"]["auto_capture_config"]["state"]["payload_table"]["path"]

    def client(n: int) -> list[str]:
        ids = []
        for i in range(25):
            response = server.invoke("cap-load", {**iris_split(), "client_request_id": f"c{n}-{i}"})
            assert response.status_code == 200, response.text
            ids.append(response.headers["x-request-id"])
        return ids

    with ThreadPoolExecutor(4) as pool:
        acknowledged = [i for ids in pool.map(client, range(4)) for i in ids]
    frame = wait_rows(path, len(acknowledged))
    assert sorted(frame["databricks_request_id"]) == sorted(acknowledged)
    assert sorted(frame["client_request_id"]) == sorted(f"c{n}-{i}" for n in range(4) for i in range(25))
    server.delete("cap-load")
