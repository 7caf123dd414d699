"""The Model Serving page's inference-table route: the A/B comparison's control is the entity with
the most traffic (not the first name), the user can choose another, and a name that is not a served
entity is a Databricks-format 400."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serving_support import ServingServer, entity, eventually, iris_split

ROUTE = "api/2.0/jupyter-serving/endpoints/{name}/inference-table"
CAPTURE = {"catalog_name": "main", "schema_name": "default", "enabled": True}


def test_control_is_the_busiest_entity_and_can_be_chosen(start_server: Callable[..., ServingServer]) -> None:
    server = start_server("--capture-flush-s", "0.2")
    name = "ab-control"
    config = {
        # "challenger" sorts before "champion": alphabetical order would make it the control.
        "served_entities": [entity("iris-lr", 1, name="champion"), entity("iris-lr", 2, name="challenger")],
        "traffic_config": {
            "routes": [
                {"served_model_name": "champion", "traffic_percentage": 80},
                {"served_model_name": "challenger", "traffic_percentage": 20},
            ]
        },
        "auto_capture_config": CAPTURE,
    }
    server.create_ready(name, config)
    for served, count in (("champion", 6), ("challenger", 2)):
        for _ in range(count):
            assert server.invoke(name, iris_split(), served=served).status_code == 200

    def view(**query: str) -> dict[str, Any]:
        response = server.api("GET", ROUTE.format(name=name), params={"limit": "5", **query})
        assert response.status_code == 200, response.text
        return response.json()

    table = eventually(lambda: view(), 60, 0.2, "8 captured requests", until=lambda v: v["requests"] == 8)
    comparison = table["comparison"]
    assert comparison["control"] == "champion" and "(control: champion)" in comparison["verdict"]
    requests = {e["served_entity_name"]: e["requests"] for e in comparison["entities"]}
    assert requests == {"champion": 6, "challenger": 2}
    chosen = view(control="challenger")["comparison"]
    assert chosen["control"] == "challenger" and "Latency p50/p95 champion:" in chosen["verdict"]
    bad = server.api("GET", ROUTE.format(name=name), params={"control": "nobody"})
    assert bad.status_code == 400
    assert bad.json()["error_code"] == "INVALID_PARAMETER_VALUE" and "nobody" in bad.json()["message"]
    server.delete(name)
