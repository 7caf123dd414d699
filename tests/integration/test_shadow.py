"""Shadow traffic end to end (issue 29): a real server mirrors live requests to a served entity that
takes no live traffic, and the shadow's answers land in the real Delta inference table.

Which requests are mirrored is a pure function of the server's request id (`mirrored`), so the
tests know exactly which shadow rows to expect, and check the share against binomial bounds too.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from scenarios import CAPTURE, read_table, wait_rows
from serving_support import ServingServer, entity, eventually, iris_split

from jupyter_serving.dataplane.shadow import QUEUE_SIZE, mirrored
from jupyter_serving.notebook.client import parse_metrics
from jupyter_serving.tables.analysis import compare_shadow
from jupyter_serving.tables.reader import inference_table

SHADOW = "api/2.0/jupyter-serving/endpoints/{}/shadow"
IRIS_AB = {
    "served_entities": [entity("iris-lr", 1, name="current"), entity("iris-lr", 2, name="challenger")],
    "traffic_config": {
        "routes": [
            {"served_model_name": "current", "traffic_percentage": 100},
            {"served_model_name": "challenger", "traffic_percentage": 0},
        ]
    },
    "auto_capture_config": CAPTURE,
}


def counter(server: ServingServer, name: str, metric: str, **labels: str) -> float:
    text = server.api("GET", f"api/2.0/serving-endpoints/{name}/metrics").text
    return sum(
        value
        for sample, found, value in parse_metrics(text)
        if sample == f"{metric}_total" and all(found.get(k) == v for k, v in labels.items())
    )


def table_path(server: ServingServer, name: str) -> str:
    return server.get(name)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]


def test_shadow_config_validation_mirrored_rows_and_restart(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server("--capture-flush-s", "0.2")
    server.create_ready("shadowed", IRIS_AB)
    path = table_path(server, "shadowed")
    route = SHADOW.format("shadowed")

    missing = server.api("GET", route)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for body in (
        {"served_entity_name": "nobody", "percentage": 20},
        {"served_entity_name": "current", "percentage": 20},  # takes the live traffic
        {"served_entity_name": "challenger", "percentage": 101},
        {"served_entity_name": "challenger", "percentage": -1},
        {"served_entity_name": "challenger", "percentage": "20"},
        {"served_entity_name": "challenger", "percentage": True},
        {"served_entity_name": "challenger"},
        {"served_entity_name": "challenger", "percentage": 20, "extra": 1},
        ["challenger", 20],
    ):
        refused = server.api("PUT", route, json=body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert server.api("PUT", route, data=b"{not json").status_code == 400
    gone = server.api("PUT", SHADOW.format("no-such"), json={"served_entity_name": "x", "percentage": 1})
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    config = {"served_entity_name": "challenger", "percentage": 20}
    put = server.api("PUT", route, json=config)
    assert put.status_code == 200 and put.json() == config
    assert server.api("GET", route).json() == config

    def send(i: int) -> str:
        rows = [[5.0 + (i % 7) * 0.3, 3.0, 1.5 + (i % 5) * 0.8, 0.2 + (i % 3) * 0.7]]
        answer = server.invoke("shadowed", {**iris_split(rows), "client_request_id": f"c{i}"})
        assert answer.status_code == 200 and answer.headers["served-model-name"] == "current"
        return str(answer.headers["x-request-id"])

    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(send, range(200)))
    expected = {i for i in ids if mirrored(i, 20)}
    # The ids are random, so the mirrored share is Binomial(200, 0.2): within 4 sigma of 40.
    sigma = math.sqrt(200 * 0.2 * 0.8)
    assert abs(len(expected) - 40) <= 4 * sigma, len(expected)
    frame = wait_rows(path, 200 + len(expected))
    shadow_rows = frame[frame["request_metadata"].map(lambda m: dict(m).get("shadow") == "true")]
    live_rows = frame.drop(index=shadow_rows.index)
    assert sorted(live_rows["databricks_request_id"]) == sorted(ids)
    assert set(shadow_rows["databricks_request_id"]) == expected and len(shadow_rows) == len(expected)
    assert set(live_rows["request_metadata"].map(lambda m: dict(m)["served_entity_name"])) == {"current"}
    assert set(shadow_rows["request_metadata"].map(lambda m: dict(m)["served_entity_name"])) == {"challenger"}
    assert all(shadow_rows["status_code"] == 200)
    by_id = live_rows.set_index("databricks_request_id")
    for row in shadow_rows.itertuples():  # beside its live row: same client id and request
        assert row.client_request_id == by_id.loc[row.databricks_request_id, "client_request_id"]
        assert row.request == by_id.loc[row.databricks_request_id, "request"]
    assert counter(server, "shadowed", "shadow_requests", served_entity="challenger") == len(expected)
    assert counter(server, "shadowed", "shadow_dropped") == 0

    report = compare_shadow(inference_table(path))
    assert report.index.tolist() == ["challenger"]
    row = report.loc["challenger"]
    assert row["requests"] == len(expected) and row["live_entity"] == "current"
    assert row["live_errors"] == 0 and row["shadow_errors"] == 0
    assert 0.0 <= row["agreement_ci_low"] <= row["agreement"] <= row["agreement_ci_high"] <= 1.0

    # The config is durable: a restarted server mirrors with it.
    server.stop(signal.SIGTERM)
    restarted = start_server("--capture-flush-s", "0.2", state_dir=server.state_dir)
    restarted.wait_settled("shadowed")
    assert restarted.api("GET", route).json() == config
    more = [str(restarted.invoke("shadowed", iris_split()).headers["x-request-id"]) for _ in range(30)]
    again = {i for i in more if mirrored(i, 20)}
    wait_rows(path, 230 + len(expected) + len(again))
    assert counter(restarted, "shadowed", "shadow_requests") == len(again)

    assert restarted.api("DELETE", route).json() == {}
    assert restarted.api("GET", route).status_code == 404
    assert restarted.api("DELETE", route).status_code == 200  # idempotent
    after = [str(restarted.invoke("shadowed", iris_split()).headers["x-request-id"]) for _ in range(10)]
    total = 240 + len(expected) + len(again)
    landed = wait_rows(path, total)
    assert len(landed) == total and set(after) <= set(landed["databricks_request_id"])
    assert counter(restarted, "shadowed", "shadow_requests") == len(again)


SLOW_AB = {
    "served_entities": [
        entity("echo", 1, name="live"),
        entity("slow", 1, name="sleepy"),
        entity("boom", 1, name="broken"),
    ],
    "traffic_config": {
        "routes": [
            {"served_model_name": "live", "traffic_percentage": 100},
            {"served_model_name": "sleepy", "traffic_percentage": 0},
            {"served_model_name": "broken", "traffic_percentage": 0},
        ]
    },
    "auto_capture_config": CAPTURE,
}


def records(delay: float = 2.0, x: float = 1.0) -> dict[str, Any]:
    """One input row every entity of SLOW_AB reads (each model ignores the columns it lacks)."""
    return {"dataframe_records": [{"a": 1.0, "b": 2.0, "delay": delay, "x": x}]}


def test_a_slow_or_failing_shadow_never_delays_or_fails_the_live_answer(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server("--capture-flush-s", "0.2")
    server.create_ready("slow-shadow", SLOW_AB)
    path = table_path(server, "slow-shadow")
    route = SHADOW.format("slow-shadow")
    assert server.api("PUT", route, json={"served_entity_name": "sleepy", "percentage": 100}).ok

    # Three live answers while the shadow sleeps 2 s on each of them: every live answer is back
    # before any shadow call has ended (the shadow rows say when they started and how long they took).
    answered_ms = []
    ids = []
    for _ in range(3):
        answer = server.invoke("slow-shadow", records())
        assert answer.status_code == 200 and answer.headers["served-model-name"] == "live"
        answered_ms.append(time.time() * 1000)
        ids.append(answer.headers["x-request-id"])
    frame = wait_rows(path, 6)
    shadow = frame[frame["request_metadata"].map(lambda m: dict(m).get("shadow") == "true")]
    assert sorted(shadow["databricks_request_id"]) == sorted(ids)
    assert (shadow["execution_time_ms"] >= 2000).all()
    first_shadow_end = (shadow["timestamp_ms"] + shadow["execution_time_ms"]).min()
    assert max(answered_ms) < first_shadow_end
    live = frame.drop(index=shadow.index)
    assert (live["execution_time_ms"] < shadow["execution_time_ms"].min()).all()

    # A shadow slower than the traffic: what does not fit the bounded queue is dropped and counted.
    burst = 120
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: server.invoke("slow-shadow", records()).status_code, range(burst)))
    took = time.monotonic() - started
    assert statuses == [200] * burst
    dropped = counter(server, "slow-shadow", "shadow_dropped", reason="queue_full")
    # Taken: the queue, and two calls in flight per 2 s the burst lasted (each shadow call sleeps 2 s).
    assert dropped >= burst - QUEUE_SIZE - 2 * (int(took // 2) + 1)
    # Replacing the shadow stops the old one: its queue is dropped (counted), not served for minutes.
    assert server.api("PUT", route, json={"served_entity_name": "broken", "percentage": 100}).ok
    assert counter(server, "slow-shadow", "shadow_dropped", reason="stopped") > 0

    # A failing shadow: the live answer is fine, the shadow's error is a row and a count.
    before = counter(server, "slow-shadow", "shadow_errors", served_entity="broken")
    answer = server.invoke("slow-shadow", records(delay=0.0, x=-1.0))
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    eventually(
        lambda: counter(server, "slow-shadow", "shadow_errors", served_entity="broken") == before + 1,
        30,
        what="the shadow error counted",
    )

    def failed_row() -> Any:
        table = read_table(path)
        rows = table[table["databricks_request_id"] == request_id]
        return rows if len(rows) == 2 else None

    rows = eventually(failed_row, 30, what="the failed shadow row", until=lambda r: r is not None)
    statuses_by_entity = {
        dict(r.request_metadata)["served_entity_name"]: r.status_code for r in rows.itertuples()
    }
    assert statuses_by_entity["live"] == 200 and statuses_by_entity["broken"] >= 400
    assert server.api("DELETE", route).status_code == 200
