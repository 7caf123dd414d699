"""A served entity's replica taking its endpoint's route on Ray (backends/ray/replica.py): a query that
Serve's proxy sends while the replica is still being handed the endpoint's snapshot waits for it, and is
answered by a configured ingress, never by one that knows no endpoint yet (it answered 404 under load).

The ingress run in the replica is a double of our own `EndpointIngress` interface (`reconfigure`, then
`__call__`), gated so the test places the query inside the configuration step; no Ray cluster."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ray_cluster import RAY_MISSING

pytestmark = pytest.mark.skipif(bool(RAY_MISSING), reason=RAY_MISSING or "Ray is installed")


class GatedFront:
    """An endpoint ingress whose configuration waits on `gate` (as the real one waits for the token
    key and its capture service); it answers with the snapshot it was given, None before."""

    def __init__(self, entered: asyncio.Event, gate: asyncio.Event) -> None:
        self.entered, self.gate = entered, gate
        self.snapshot: dict[str, Any] | None = None

    async def reconfigure(self, snapshot: dict[str, Any]) -> None:
        self.entered.set()
        await self.gate.wait()
        self.snapshot = snapshot

    async def __call__(self, request: object) -> dict[str, Any] | None:
        return self.snapshot


def fronting_model(entered: asyncio.Event, gate: asyncio.Event) -> Any:
    from jupyter_serving.backends.ray.replica import ServedModel

    class Model(ServedModel):
        """The replica's fronting protocol without a model loaded or a Serve replica context."""

        def __init__(self) -> None:
            self.front = None
            self._fronted = asyncio.Event()
            self._unfronting = None
            self.made: list[GatedFront] = []

        def _new_front(self, ingress_app: str) -> GatedFront:
            self.made.append(GatedFront(entered, gate))
            return self.made[-1]

    return Model()


def test_a_query_during_the_first_configuration_waits_for_the_snapshot() -> None:
    async def scenario() -> None:
        entered, gate = asyncio.Event(), asyncio.Event()
        model = fronting_model(entered, gate)
        snapshot = {"endpoint": "solo", "config_version": 1}
        configuring = asyncio.create_task(model.reconfigure({"front": snapshot, "ingress_app": "ing"}))
        await entered.wait()  # the new ingress is being configured
        answering = asyncio.create_task(model._answer(object()))
        gate.set()
        await configuring
        assert await answering == snapshot
        # A later snapshot reconfigures the same ingress in place.
        entered.clear()
        newer = {"endpoint": "solo", "config_version": 2}
        await model.reconfigure({"front": newer, "ingress_app": "ing"})
        assert len(model.made) == 1 and await model._answer(object()) == newer

    asyncio.run(scenario())


def test_an_unconfigured_ray_ingress_answers_503_not_404() -> None:
    """The endpoint's ingress before its first snapshot (or after it closed) says it is starting,
    with Retry-After, rather than that no such endpoint exists."""
    from starlette.requests import Request

    from jupyter_serving.backends.ray.ingress import EndpointIngress

    ingress = EndpointIngress.__new__(EndpointIngress)  # its __init__ asks Ray's runtime for the node
    ingress.config, ingress.ingress = {}, None  # what __init__ sets them to
    scope = {
        "type": "http", "method": "POST", "path": "/serving-endpoints/solo/invocations", "root_path": "",
        "headers": [(b"authorization", b"Bearer x"), (b"content-type", b"application/json")],
        "query_string": b"",
    }  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    response = asyncio.run(ingress(Request(scope, receive)))
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    assert b'"TEMPORARILY_UNAVAILABLE"' in response.body
