"""Rollouts: the one code path that makes a config real, for create, update and restart recovery.

    reuse what is unchanged -> resolve models -> deploy what is new -> create the inference table
        -> activate: reconfigure reused deployments, swap routing in one assignment, retire the rest

Every step before activation is an await a cancel (or a delete) can interrupt; wherever it lands,
the rollout ends UPDATE_CANCELED and stops exactly what it started, so the previous config serves
on untouched, including the sizing of deployments it would have reused. A failure at any step
ends UPDATE_FAILED the same way: the update state never stays IN_PROGRESS after the rollout task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_serving.backends.base import DeployFailed, Deployment, DeploymentSpec, ExecutionBackend
from jupyter_serving.control.endpoint import Endpoint
from jupyter_serving.control.registry import ModelRegistry
from jupyter_serving.dataplane.router import RoutingTable
from jupyter_serving.identity.secrets import SecretStore
from jupyter_serving.model.config import EndpointConfig, ServedEntity
from jupyter_serving.model.endpoint_fields import inference_table_form
from jupyter_serving.model.states import FAILED, READY
from jupyter_serving.policy.autoscaler import ScalingPolicy

log = logging.getLogger("jupyter_serving")

CANCELED_MESSAGE = "The config update was canceled."
ABORTED_MESSAGE = "Deployment aborted because another served entity of this config failed to deploy."


@dataclass
class RolloutContext:
    """What rollouts need from the server; the manager builds it once."""

    backend: ExecutionBackend
    registry: ModelRegistry
    policy: Callable[[ServedEntity], ScalingPolicy]
    table_path: Callable[[dict[str, Any] | None], Any]
    ensure_table: Callable[[EndpointConfig, str], Any]  # async; (config, inference_table_form)
    save: Callable[[Endpoint], None]
    # Stop these after they drain (EndpointManager.drain_timeout_s), in the background.
    retire: Callable[[list[Deployment]], None]
    secrets: SecretStore | None = None  # resolves {{secrets/...}} into each DeploymentSpec


async def run(ctx: RolloutContext, endpoint: Endpoint, config: EndpointConfig, version: int) -> None:
    """Roll `endpoint` forward to `config`; ends the record's update exactly once, whatever happens."""
    started: list[Deployment] = []
    try:
        if endpoint.restoring is not None:  # after a restart: reuse what recovery brings back
            await asyncio.shield(endpoint.restoring)
        reusable = {d.key: d for d in endpoint.active.values() if d.status().state == READY}
        fresh = [e for e in config.served_entities if e.runtime_key not in reusable]
        uris = await _resolve(ctx, fresh)
        new: dict[str, Deployment] = {}
        for entity in config.served_entities:
            reused = reusable.pop(entity.runtime_key, None)
            if reused is None:
                reused = ctx.backend.deployment(
                    deployment_spec(ctx, endpoint.name, entity, uris.get(entity.name))
                )
                started.append(reused)
            new[entity.name] = reused
        endpoint.pending = new
        await deploy_all(started)
        await ctx.ensure_table(config, inference_table_form(endpoint.record.ai_gateway))
    except asyncio.CancelledError:
        await _end(ctx, endpoint, started, canceled=True, message=CANCELED_MESSAGE)
        return
    except DeployFailed as exc:
        await _end(ctx, endpoint, started, canceled=False, message=str(exc))
        return
    except Exception as exc:
        log.exception("the rollout of %s failed", endpoint.name)
        await _end(ctx, endpoint, started, canceled=False, message=f"The config update failed: {exc!r}")
        return
    _activate(ctx, endpoint, config, version, new)


async def restore(ctx: RolloutContext, endpoint: Endpoint) -> None:
    """After a restart: bring the stored active config back (a fresh deployment per entity)."""
    record = endpoint.record
    config = record.config
    assert config is not None
    try:
        uris = await _resolve(ctx, list(config.served_entities))
        endpoint.active = {
            e.name: ctx.backend.deployment(deployment_spec(ctx, endpoint.name, e, uris.get(e.name)))
            for e in config.served_entities
        }
        await deploy_all(list(endpoint.active.values()))
        await ctx.ensure_table(config, inference_table_form(endpoint.record.ai_gateway))
        endpoint.routing = routing_table(
            ctx, config, record.config_version, endpoint.active, inference_table_form(record.ai_gateway)
        )
    except DeployFailed as exc:
        log.error("endpoint %s could not be restored: %s", endpoint.name, exc)
        # Their states stay visible (FAILED / ABORTED); the replicas that did load are stopped at
        # once (no drain): no routing table ever held them, so no request can be in flight on them.
        await asyncio.gather(*(d.stop(drain_timeout_s=0.0) for d in endpoint.active.values()))
    finally:
        endpoint.end_restore()  # requests held meanwhile are served, or wait on for a resumed update


def deployment_spec(
    ctx: RolloutContext, endpoint: str, entity: ServedEntity, load_uri: str | None
) -> DeploymentSpec:
    """What a backend gets to run: the entity with its secrets resolved here, so no backend reads
    the secret store. A missing secret travels in the spec and fails that deployment's deploy, as it
    would have failed the worker's start, with the same message."""
    env: dict[str, str] | None = dict(entity.environment_vars)
    error = None
    if ctx.secrets is not None:
        try:
            env = ctx.secrets.resolve(entity.environment_vars)
        except KeyError as exc:
            env, error = None, str(exc.args[0])
    return DeploymentSpec(endpoint, entity, ctx.policy(entity), load_uri, env, error)


async def deploy_all(deployments: list[Deployment]) -> None:
    """Deploy together; if one fails, the others are aborted and the first failure is raised."""
    results = await asyncio.gather(*(d.deploy() for d in deployments), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if not failed:
        return
    for deployment in deployments:
        if deployment.status().state != FAILED:
            deployment.abort(ABORTED_MESSAGE)
    cancelled = [r for r in failed if isinstance(r, asyncio.CancelledError)]
    if cancelled and len(cancelled) == len(failed):
        raise cancelled[0]
    first = next(r for r in failed if not isinstance(r, asyncio.CancelledError))
    raise first if isinstance(first, DeployFailed) else DeployFailed(repr(first))


def routing_table(
    ctx: RolloutContext,
    config: EndpointConfig,
    version: int,
    deployments: dict[str, Deployment],
    capture_form: str = "legacy",
) -> RoutingTable:
    routes = tuple((r.served_model_name, r.traffic_percentage) for r in config.routes)
    path = ctx.table_path(config.auto_capture_config)
    return RoutingTable(version, dict(deployments), routes, path, capture_form)


async def _resolve(ctx: RolloutContext, entities: list[ServedEntity]) -> dict[str, str]:
    """Model locations resolved once by the server; workers resolve models:/ URIs themselves if not."""
    if not entities:
        return {}
    try:
        uris = await ctx.registry.load_uris(entities)
    except Exception as exc:
        log.warning("could not resolve model locations, workers will: %s", exc)
        return {}
    return {e.name: uri for e, uri in zip(entities, uris, strict=True)}


def _activate(
    ctx: RolloutContext, endpoint: Endpoint, config: EndpointConfig, version: int, new: dict[str, Deployment]
) -> None:
    """Swap routing to the new config in one step, then retire what it no longer uses."""
    for entity in config.served_entities:  # sizing of reused deployments changes only now
        new[entity.name].reconfigure(entity, ctx.policy(entity))
    retired = [d for d in endpoint.active.values() if all(d is not n for n in new.values())]
    endpoint.routing = routing_table(
        ctx, config, version, new, inference_table_form(endpoint.record.ai_gateway)
    )
    endpoint.active, endpoint.pending = new, {}
    endpoint.wake_waiters()
    endpoint.record.finish_update(config, version)
    ctx.save(endpoint)
    ctx.retire(retired)


async def _end(
    ctx: RolloutContext, endpoint: Endpoint, started: list[Deployment], *, canceled: bool, message: str
) -> None:
    record = endpoint.record
    if canceled:
        record.cancel_update(message)
    else:
        record.fail_update(
            message, {name: [s.state, s.message] for name, d in endpoint.pending.items() if (s := d.status())}
        )
    endpoint.pending = {}
    ctx.save(endpoint)
    endpoint.wake_waiters()
    # Deployment.stop runs to its end even if this task is cancelled again (a delete during a cancel).
    # No drain: the deployments this rollout started were never in a routing table (only _activate
    # installs one), so no request can be in flight on them.
    await asyncio.gather(*(d.stop(drain_timeout_s=0.0) for d in started), return_exceptions=True)
