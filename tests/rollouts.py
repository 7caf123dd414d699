"""What the progressive-delivery tests share (test_progressive.py, test_quality_guard_live.py):
the rollout route and its documented schema, reading an endpoint's split and rollout state, and
seeded client load while a rollout runs."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from serving_support import ServingServer

ROLLOUT = "api/2.0/jupyter-serving/endpoints/{}/rollout"
SPEC = yaml.safe_load((Path(__file__).resolve().parents[1] / "server" / "openapi.yaml").read_text())
STATE_SCHEMA = Draft202012Validator(
    {"$ref": "urn:spec#/components/schemas/RolloutState"},
    registry=Registry().with_resource("urn:spec", DRAFT202012.create_resource(SPEC)),
)


def split(server: ServingServer, name: str) -> dict[str, int]:
    routes = server.get(name)["config"]["traffic_config"]["routes"]
    return {r["served_model_name"]: r["traffic_percentage"] for r in routes}


def rollout(server: ServingServer, name: str) -> dict[str, Any]:
    """The rollout state, checked against server/openapi.yaml's RolloutState."""
    response = server.api("GET", ROLLOUT.format(name))
    assert response.status_code == 200, response.text
    body = dict(response.json())
    errors = [e.message for e in STATE_SCHEMA.iter_errors(body)]
    assert not errors, errors
    return body


@contextmanager
def traffic(
    server: ServingServer,
    name: str,
    seed: int,
    clients: int = 6,
    span: int = 10**9,
    answered: Callable[[str, int], None] | None = None,
) -> Iterator[list[int]]:
    """One-row requests {"x": a seeded draw below `span`} with a client_request_id, from `clients`
    threads until the block ends; yields the answers' statuses. `answered(client_request_id, x)`
    is called for each 200."""
    stop = threading.Event()
    statuses: list[int] = []

    def client(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {server.token}"
        url = f"{server.url}serving-endpoints/{name}/invocations"
        i = 0
        while not stop.is_set():
            x, i = rng.randrange(span), i + 1
            crid = f"{name}-{seed}-{k}-{i}"
            body = {"dataframe_split": {"columns": ["x"], "data": [[float(x)]]}, "client_request_id": crid}
            response = session.post(url, json=body, timeout=60)
            statuses.append(response.status_code)
            if response.status_code == 200 and answered is not None:
                answered(crid, x)

    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, k) for k in range(clients)]
        try:
            yield statuses
        finally:
            stop.set()
            for f in futures:
                f.result()
