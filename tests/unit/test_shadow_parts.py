"""Shadow traffic's pure parts: which requests are mirrored, config validation, live-vs-shadow analysis."""

from __future__ import annotations

import json
import math
import random
import uuid

import pandas as pd
import pytest

from jupyter_serving.dataplane.shadow import ShadowConfig, mirrored, parse_shadow
from jupyter_serving.errors import InvalidParameterValue
from jupyter_serving.model.config import parse_config
from jupyter_serving.tables.analysis import compare_entities, compare_shadow
from jupyter_serving.tables.reader import unpack_frame

T0 = 1_700_000_000_000


def seeded_ids(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(n)]


def test_selection_is_deterministic_and_matches_the_share() -> None:
    ids = seeded_ids(5000)
    assert [mirrored(i, 20) for i in ids] == [mirrored(i, 20) for i in ids]
    assert not any(mirrored(i, 0) for i in ids) and all(mirrored(i, 100) for i in ids)
    for percentage in (1, 20, 50, 90):
        chosen = sum(mirrored(i, percentage) for i in ids)
        p = percentage / 100
        assert abs(chosen - len(ids) * p) <= 4 * math.sqrt(len(ids) * p * (1 - p)), (percentage, chosen)
    # Shares nest: raising the percentage only adds requests.
    assert {i for i in ids if mirrored(i, 20)} <= {i for i in ids if mirrored(i, 30)}


CONFIG = parse_config(
    {
        "served_entities": [
            {"entity_name": "m", "entity_version": "1", "name": "current", "workload_size": "Small"},
            {"entity_name": "m", "entity_version": "2", "name": "challenger", "workload_size": "Small"},
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "current", "traffic_percentage": 100},
                {"served_model_name": "challenger", "traffic_percentage": 0},
            ]
        },
    }
)


def test_parse_shadow_accepts_a_no_traffic_entity_and_refuses_the_rest() -> None:
    body = {"served_entity_name": "challenger", "percentage": 20}
    assert parse_shadow(body, CONFIG, "ep") == ShadowConfig("challenger", 20)
    assert ShadowConfig.from_json(parse_shadow(body, CONFIG, "ep").to_json()) == ShadowConfig(
        "challenger", 20
    )
    for bad, words in (
        ({"served_entity_name": "nobody", "percentage": 20}, "does not exist"),
        ({"served_entity_name": "current", "percentage": 20}, "takes 100%"),
        ({"served_entity_name": "challenger", "percentage": 100.5}, "percentage"),
        ({"served_entity_name": "challenger", "percentage": False}, "percentage"),
        ({"served_entity_name": "", "percentage": 5}, "served_entity_name"),
        ({"served_entity_name": "challenger", "percentage": 5, "mode": "x"}, "Unknown field"),
        ("challenger=20", "JSON object"),
    ):
        with pytest.raises(InvalidParameterValue, match=words):
            parse_shadow(bad, CONFIG, "ep")
    with pytest.raises(InvalidParameterValue, match="does not exist"):
        parse_shadow(body, None, "ep")  # no active config yet


def row(rid: str, entity: str, prediction: int | None, ms: int, *, shadow: bool, status: int = 200) -> dict:
    response = (
        {"predictions": [prediction]} if status == 200 else {"error_code": "BAD_REQUEST", "message": "x"}
    )
    return {
        "databricks_request_id": rid,
        "client_request_id": None,
        "date": None,
        "timestamp": pd.Timestamp(T0, unit="ms", tz="UTC"),
        "timestamp_ms": T0,
        "status_code": status,
        "execution_time_ms": ms,
        "sampling_fraction": 1.0,
        "request": json.dumps({"dataframe_records": [{"x": 1.0}]}),
        "response": json.dumps(response),
        "endpoint_name": "ep",
        "model_name": "m",
        "model_version": "1",
        "served_entity_name": entity,
        "shadow": shadow,
    }


def test_compare_shadow_pairs_rows_by_request_id() -> None:
    rows = []
    for i in range(10):  # ten live requests, eight mirrored: six agree, one disagrees, one fails
        rows.append(row(f"r{i}", "current", i % 3, 10, shadow=False))
    for i in range(6):
        rows.append(row(f"r{i}", "challenger", i % 3, 30, shadow=True))
    rows.append(row("r6", "challenger", (6 + 1) % 3, 30, shadow=True))
    rows.append(row("r7", "challenger", None, 50, shadow=True, status=400))
    rows.append(row("gone", "challenger", 1, 30, shadow=True))  # its live row is outside the frame
    frame = unpack_frame(pd.DataFrame(rows))
    report = compare_shadow(frame)
    got = report.loc["challenger"]
    assert got["requests"] == 8 and got["live_entity"] == "current"
    assert got["agreement"] == pytest.approx(6 / 7)  # of the seven both answered
    assert got["live_errors"] == 0 and got["shadow_errors"] == 1
    assert got["live_latency_p50_ms"] == 10 and got["shadow_latency_p50_ms"] == 30
    assert got["latency_ratio_p50"] == pytest.approx(3.0)
    # compare_entities compares live traffic only: the shadow rows are not a second entity's traffic.
    assert compare_entities(frame).summary.index.tolist() == ["current"]
    with pytest.raises(ValueError, match="no shadow rows"):
        compare_shadow(frame[~frame["shadow"]])
