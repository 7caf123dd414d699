"""Rollouts as a state machine, on an in-process backend: cancels at every await point, failures,
restarts mid-update. Real processes are covered by tests/integration/; these run in milliseconds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from inprocess_backend import Gate, HeldCapture, InProcessBackend, KnownModels

from jupyter_serving.compose import compose
from jupyter_serving.control.manager import EndpointManager
from jupyter_serving.errors import InvalidState, ResourceConflict
from jupyter_serving.identity.secrets import SecretStore
from jupyter_serving.model.states import (
    IN_PROGRESS,
    NOT_UPDATING,
    UPDATE_CANCELED,
    UPDATE_FAILED,
)
from jupyter_serving.settings import ServingSettings

CAPTURE = {"catalog_name": "main", "schema_name": "default"}


def entity(model: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name or model, "entity_name": model, "entity_version": "1", **extra}


def config(*entities: dict[str, Any], capture: bool = False) -> dict[str, Any]:
    cfg: dict[str, Any] = {"served_entities": list(entities)}
    if len(entities) > 1:
        share = 100 // len(entities)
        routes = [{"served_model_name": e["name"], "traffic_percentage": share} for e in entities]
        routes[0]["traffic_percentage"] += 100 - share * len(entities)
        cfg["traffic_config"] = {"routes": routes}
    if capture:
        cfg["auto_capture_config"] = CAPTURE
    return cfg


class Harness:
    """A manager on doubles of our own interfaces, with a state dir that survives 'restarts'."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.registry = KnownModels()
        self.capture = HeldCapture()
        self.backend = InProcessBackend()
        self.manager = self._manager()

    def _manager(self) -> EndpointManager:
        settings = ServingSettings(state_dir=str(self.state_dir))
        serving = compose(settings, backend=self.backend, registry=self.registry, capture=self.capture)
        return serving.manager

    async def restart(self, backend: InProcessBackend) -> None:
        await self.manager.stop()
        self.backend = backend
        self.manager = self._manager()
        await self.manager.start()

    async def settle(self, name: str) -> None:
        endpoint = self.manager.get(name)
        if endpoint.rollout is not None:
            await asyncio.gather(endpoint.rollout, return_exceptions=True)

    async def create_ready(self, name: str, cfg: dict[str, Any]) -> None:
        await self.manager.create({"name": name, "config": cfg})
        await self.settle(name)
        assert self.manager.get(name).record.update.state == NOT_UPDATING

    async def invoke(self, name: str) -> str:
        result = await self.manager.dataplane.invoke(name, None, "application/json", b"{}")
        return json.loads(result.body)["predictions"][0]


def run(state_dir: Path, scenario: Callable[[Harness], Awaitable[None]]) -> None:
    async def main() -> None:
        harness = Harness(state_dir)
        await harness.manager.start()
        try:
            await asyncio.wait_for(scenario(harness), 30)
        finally:
            await harness.manager.stop()

    asyncio.run(main())


HOLD_POINTS = ("model lookup", "deploy", "inference table")


def hold(h: Harness, point: str, model: str) -> Gate:
    gate = Gate()
    if point == "model lookup":
        h.registry.lookup_gate = gate
    elif point == "deploy":
        h.backend.deploy_gates[model] = gate
    else:
        h.capture.table_gate = gate
    return gate


@pytest.mark.parametrize("point", HOLD_POINTS)
def test_a_cancel_at_any_await_point_keeps_the_old_config_serving(tmp_path: Path, point: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.create_ready("ep", config(entity("a", workload_size="Small")))
        before = h.manager.get("ep").routing
        old = h.manager.get("ep").active["a"]
        gate = hold(h, point, "b")
        resized = entity("a", workload_size="Medium", scale_to_zero_enabled=True)
        await h.manager.update_config("ep", config(resized, entity("b"), capture=True))
        await gate.reached.wait()
        await h.manager.cancel_update("ep")
        endpoint = h.manager.get("ep")
        assert endpoint.record.update.state == UPDATE_CANCELED
        assert endpoint.record.update.message == "The config update was canceled."
        assert endpoint.routing is before and endpoint.active == {"a": old}
        assert old.policy.max_replicas == 1 and not old.entity.scale_to_zero_enabled
        assert h.backend.live_names() == {"a"}  # whatever the update started is stopped
        assert await h.invoke("ep") == "a"

    run(tmp_path, scenario)


@pytest.mark.parametrize("point", HOLD_POINTS)
def test_a_cancel_of_the_first_config_leaves_nothing_running(tmp_path: Path, point: str) -> None:
    async def scenario(h: Harness) -> None:
        gate = hold(h, point, "a")
        await h.manager.create({"name": "ep", "config": config(entity("a"), capture=True)})
        await gate.reached.wait()
        await h.manager.cancel_update("ep")
        endpoint = h.manager.get("ep")
        assert endpoint.record.update.state == UPDATE_CANCELED
        assert endpoint.routing is None and not h.backend.live
        with pytest.raises(InvalidState, match="not ready"):
            await h.invoke("ep")

    run(tmp_path, scenario)


@pytest.mark.parametrize("point", HOLD_POINTS)
def test_a_delete_at_any_await_point_stops_everything(tmp_path: Path, point: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.create_ready("ep", config(entity("a")))
        gate = hold(h, point, "b")
        await h.manager.update_config("ep", config(entity("a"), entity("b"), capture=True))
        await gate.reached.wait()
        await h.manager.delete("ep")
        assert not h.backend.live and "ep" not in h.manager.endpoints
        assert h.manager.store is not None and h.manager.store.load_all() == []

    run(tmp_path, scenario)


def test_a_failed_update_changes_nothing_that_serves(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.create_ready("ep", config(entity("a", workload_size="Small")))
        old = h.manager.get("ep").active["a"]
        old_entity, old_policy = old.entity, old.policy
        h.backend.failing.add("broken")
        resized = entity("a", workload_size="Large", scale_to_zero_enabled=True)
        await h.manager.update_config("ep", config(resized, entity("broken")))
        await h.settle("ep")
        endpoint = h.manager.get("ep")
        assert endpoint.record.update.state == UPDATE_FAILED
        assert "broken is broken" in endpoint.record.update.message
        assert endpoint.active == {"a": old} and old.entity is old_entity and old.policy is old_policy
        assert (
            endpoint.record.config is not None
            and endpoint.record.config.served_entities[0].workload_size == "Small"
        )
        assert h.backend.live_names() == {"a"}
        assert await h.invoke("ep") == "a"

    run(tmp_path, scenario)


def test_secrets_reach_the_backend_resolved_in_the_spec_and_a_missing_one_fails_the_deploy(
    tmp_path: Path,
) -> None:
    """The control plane resolves {{secrets/...}}: the backend gets values, never the store; a
    secret deleted since the config was accepted fails that entity the way a worker start did."""
    SecretStore(tmp_path).put("scope", "key", "s3cr3t")

    async def scenario(h: Harness) -> None:
        env = {"TOKEN": "{{secrets/scope/key}}", "PLAIN": "x"}
        await h.create_ready("ep", config(entity("a", environment_vars=env)))
        assert h.manager.get("ep").active["a"].environment == {"TOKEN": "s3cr3t", "PLAIN": "x"}
        assert h.manager.get("ep").record.config.served_entities[0].environment_vars == env  # refs only
        await h.manager.update_config(
            "ep", config(entity("b", environment_vars={"K": "{{secrets/scope/gone}}"}))
        )
        await h.settle("ep")
        endpoint = h.manager.get("ep")
        assert endpoint.record.update.state == UPDATE_FAILED
        message = "Cannot set the environment: secret scope/gone (environment variable K) does not exist."
        assert endpoint.record.update.message == message
        assert await h.invoke("ep") == "a"

    run(tmp_path, scenario)


def test_a_restart_mid_update_whose_entity_then_fails_ends_update_failed(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.create_ready("ep", config(entity("a")))
        gate = hold(h, "deploy", "b")
        await h.manager.update_config("ep", config(entity("a"), entity("b")))
        await gate.reached.wait()
        restarted = InProcessBackend()
        restarted.failing.add("b")  # after the restart the new entity cannot load
        await h.restart(restarted)
        assert h.manager.get("ep").record.update.state == IN_PROGRESS  # resumed, not dropped
        await h.settle("ep")
        endpoint = h.manager.get("ep")
        assert endpoint.record.update.state == UPDATE_FAILED
        assert await h.invoke("ep") == "a"  # the restored old config serves
        # The next update works, and so does a cancel of the one after it.
        await h.manager.update_config("ep", config(entity("a"), entity("c")))
        await h.settle("ep")
        assert h.manager.get("ep").record.update.state == NOT_UPDATING
        gate = hold(h, "deploy", "d")
        await h.manager.update_config("ep", config(entity("a"), entity("d")))
        await gate.reached.wait()
        await h.manager.cancel_update("ep")
        assert h.manager.get("ep").record.update.state == UPDATE_CANCELED
        assert h.backend.live_names() == {"a", "c"}

    run(tmp_path, scenario)


def test_a_cancel_while_the_restart_restores_the_old_config_cancels_only_the_update(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.create_ready("ep", config(entity("a")))
        gate = hold(h, "deploy", "b")
        await h.manager.update_config("ep", config(entity("a"), entity("b")))
        await gate.reached.wait()
        restarted = InProcessBackend()
        restoring = restarted.deploy_gates["a"] = Gate()
        await h.restart(restarted)
        await restoring.reached.wait()
        held = asyncio.ensure_future(h.invoke("ep"))  # arrives while the old config comes back
        await h.manager.cancel_update("ep")
        endpoint = h.manager.get("ep")
        assert endpoint.record.update.state == UPDATE_CANCELED
        assert endpoint.routing is None and endpoint.restoring is not None  # the restore goes on
        # The cancel ends the update, not the wait: the request is still held (it used to be
        # released here and answered INVALID_STATE by an endpoint about to serve).
        assert not endpoint.settled.is_set() and not held.done()
        restoring.open()
        assert await held == "a"
        assert await h.invoke("ep") == "a"
        assert h.backend.live_names() == {"a"}

    run(tmp_path, scenario)


def test_a_request_after_a_restart_that_cannot_restore_waits_for_the_resumed_update(tmp_path: Path) -> None:
    """Like a cold start: with no old config to serve, a request waits for the new one instead of
    getting TEMPORARILY_UNAVAILABLE (or INVALID_STATE) the moment the restore fails."""

    async def scenario(h: Harness) -> None:
        await h.create_ready("ep", config(entity("a")))
        gate = hold(h, "deploy", "b")
        await h.manager.update_config("ep", config(entity("b")))
        await gate.reached.wait()
        restarted = InProcessBackend()
        restarted.failing.add("a")  # the old config cannot come back
        resumed = restarted.deploy_gates["b"] = Gate()
        await h.restart(restarted)
        await resumed.reached.wait()  # the restore has failed; the resumed update deploys b
        endpoint = h.manager.get("ep")
        assert endpoint.routing is None and endpoint.record.update.state == IN_PROGRESS
        held = asyncio.ensure_future(h.invoke("ep"))
        await asyncio.sleep(0)  # the request reaches its wait
        assert not endpoint.settled.is_set() and not held.done()
        resumed.open()
        assert await held == "b"
        assert endpoint.record.update.state == NOT_UPDATING

    run(tmp_path, scenario)


def test_one_update_at_a_time(tmp_path: Path) -> None:
    async def scenario(h: Harness) -> None:
        await h.create_ready("ep", config(entity("a")))
        gate = hold(h, "deploy", "b")
        await h.manager.update_config("ep", config(entity("b")))
        await gate.reached.wait()
        with pytest.raises(ResourceConflict):
            await h.manager.update_config("ep", config(entity("c")))
        gate.open()
        await h.settle("ep")
        assert h.manager.get("ep").record.update.state == NOT_UPDATING
        assert h.backend.live_names() == {"b"}
        with pytest.raises(InvalidState, match="no config update in progress"):
            await h.manager.cancel_update("ep")

    run(tmp_path, scenario)
