"""The page's live A/B verdict and shadow comparison routes (issue 29) against a real server: real
workers of the `flaky` fixture model (fails on a known share of inputs), seeded inputs, the real
Delta inference table.

    GET /api/2.0/jupyter-serving/endpoints/{name}/verdict
    GET /api/2.0/jupyter-serving/endpoints/{name}/shadow/comparison
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from scenarios import CAPTURE
from serving_support import ServingServer, entity, eventually

from jupyter_serving.notebook.client import Client

VERDICT = "api/2.0/jupyter-serving/endpoints/{}/verdict"
SHADOW = "api/2.0/jupyter-serving/endpoints/{}/shadow"
SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "server" / "openapi.yaml").read_text())
REGISTRY = Registry().with_resource("urn:spec", DRAFT202012.create_resource(SPEC))


def documented(body: dict[str, Any], schema: str) -> dict[str, Any]:
    """`body`, checked against its schema in server/openapi.yaml."""
    validator = Draft202012Validator({"$ref": f"urn:spec#/components/schemas/{schema}"}, registry=REGISTRY)
    errors = [e.message for e in validator.iter_errors(body)]
    assert not errors, errors
    return body


def flaky_config(percents: dict[str, int], split: dict[str, int], capture: bool = False) -> dict[str, Any]:
    config: dict[str, Any] = {
        "served_entities": [
            entity("flaky", 1, name=n, environment_vars={"FLAKY_PERCENT": str(p)})
            for n, p in percents.items()
        ],
        "traffic_config": {
            "routes": [{"served_model_name": n, "traffic_percentage": split.get(n, 0)} for n in percents]
        },
    }
    if capture:
        config["auto_capture_config"] = CAPTURE
    return config


def send(server: ServingServer, name: str, count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    xs = [float(rng.randrange(10**9)) for _ in range(count)]

    def one(x: float) -> int:
        body = {"dataframe_split": {"columns": ["x"], "data": [[x]]}}
        return server.invoke(name, body).status_code

    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(one, xs))


def test_verdict_route_says_no_data_then_finds_the_failing_entity(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server()
    server.create_ready(
        "ab", flaky_config({"current": 0, "challenger": 30}, {"current": 50, "challenger": 50})
    )
    route = VERDICT.format("ab")

    empty = server.api("GET", route)
    assert empty.status_code == 200, empty.text
    body = documented(empty.json(), "LiveVerdict")
    assert body["control"] == "current" and body["alpha"] == 0.05 and "always-valid" in body["method"]
    assert [c["verdict"] for c in body["comparisons"]] == ["no_data"]

    for query, field in (("?control=nobody", "control"), ("?alpha=2", "alpha"), ("?alpha=x", "alpha")):
        refused = server.api("GET", route + query)
        assert refused.status_code == 400, refused.text
        assert (
            refused.json()["error_code"] == "INVALID_PARAMETER_VALUE" and field in refused.json()["message"]
        )
    missing = server.api("GET", VERDICT.format("no-such"))
    assert missing.status_code == 404 and "error_code" in missing.json()
    anonymous = requests.get(server.url + route, timeout=30)
    assert anonymous.status_code in (401, 403) and "error_code" in anonymous.json()

    statuses = send(server, "ab", 400, seed=5)
    assert 200 in statuses and any(s >= 400 for s in statuses)
    found = eventually(
        lambda: documented(server.api("GET", route).json(), "LiveVerdict")["comparisons"][0],
        timeout=60,
        what="the verdict finding the challenger's errors",
        until=lambda c: c["verdict"] != "no_difference_yet" and c["requests"] > 0,
    )
    assert found["served_entity_name"] == "challenger" and found["control"] == "current"
    assert found["verdict"] == "worse", found
    error = next(g for g in found["guards"] if g["name"] == "error_rate_increase")
    assert error["direction"] == "worse" and 0 < error["lower"] <= error["estimate"] <= error["upper"]
    assert found["summary"].startswith("challenger is worse than current: error rate")
    assert found["control_errors"] == 0 and found["errors"] > 0
    # The other way round, with the challenger as control: the incumbent is the better one.
    flipped = server.api("GET", route + "?control=challenger").json()
    assert flipped["comparisons"][0]["served_entity_name"] == "current"
    assert flipped["comparisons"][0]["verdict"] == "better"
    # The Python client reads the same answers.
    client = Client(server.url, token=server.token)
    assert client.verdict("ab")["comparisons"][0]["verdict"] == "worse"
    assert client.verdict("ab", control="challenger", alpha=0.01)["alpha"] == 0.01


def test_shadow_comparison_route_counts_and_compares_the_mirrored_requests(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server("--capture-flush-s", "0.2")
    server.create_ready("mirror", flaky_config({"current": 0, "twin": 0}, {"current": 100}, capture=True))
    route = SHADOW.format("mirror") + "/comparison"

    before = server.api("GET", route)
    assert before.status_code == 200, before.text
    assert (
        documented(before.json(), "ShadowComparison")["shadow"] is None
        and before.json()["counters"]["requests"] == 0
    )
    assert server.api("GET", SHADOW.format("no-such") + "/comparison").status_code == 404

    assert server.api(
        "PUT", SHADOW.format("mirror"), json={"served_entity_name": "twin", "percentage": 100}
    ).ok
    assert set(send(server, "mirror", 40, seed=9)) == {200}
    body = eventually(
        lambda: server.api("GET", route).json(),
        timeout=60,
        what="40 mirrored requests in the comparison",
        until=lambda b: b["comparison"] and b["comparison"][0]["requests"] == 40,
    )
    assert documented(body, "ShadowComparison")["shadow"] == {"served_entity_name": "twin", "percentage": 100}
    assert body["counters"]["requests"] == 40 and body["counters"]["errors"] == 0
    row = body["comparison"][0]
    assert row["shadow_entity"] == "twin" and row["live_entity"] == "current"
    assert row["agreement"] == 1.0 and row["live_errors"] == 0 and row["shadow_errors"] == 0
    assert row["agreement_ci_low"] < 1.0 and row["shadow_latency_p50_ms"] is not None
    client = Client(server.url, token=server.token)
    assert client.shadow_comparison("mirror")["comparison"][0]["shadow_entity"] == "twin"
