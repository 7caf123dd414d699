"""Endpoints as Databricks' wire JSON: `ServingEndpointDetailed` for get/create/update, summaries for list."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jupyter_serving.backends.base import DeploymentStatus
from jupyter_serving.control.endpoint import Endpoint
from jupyter_serving.identity.tokens import authorization_details
from jupyter_serving.model.config import EndpointConfig
from jupyter_serving.model.states import IN_PROGRESS, UPDATE_FAILED

READY, NOT_READY = "READY", "NOT_READY"
SUMMARY_FIELDS = ("name", "entity_name", "entity_version", "model_name", "model_version")
_SETTINGS = ("ai_gateway", "budget_policy_id", "telemetry_config")  # echoed by GET and list when set
Describe = Callable[[dict[str, Any]], dict[str, Any]]


def endpoint_detail(
    endpoint: Endpoint, describe_capture: Describe | None = None, endpoint_url: str | None = None
) -> dict[str, Any]:
    """`describe_capture` adds the payload table's state to an auto_capture_config; `endpoint_url` is
    the route-optimized listener's URL of this endpoint (shown when the endpoint is route optimized)."""
    record = endpoint.record
    describe = describe_capture or (lambda capture: capture)
    out = _base(endpoint)
    if record.config is not None:
        out["config"] = _config(endpoint, record.config, record.config_version, describe, pending=False)
    if record.pending is not None and record.update.state in (IN_PROGRESS, UPDATE_FAILED):
        pending = _config(endpoint, record.pending, record.pending_version or 0, describe, pending=True)
        pending["start_time"] = record.pending_start_time
        out["pending_config"] = pending
    out["permission_level"] = "CAN_MANAGE"
    out["route_optimized"] = record.route_optimized
    if record.route_optimized and endpoint_url:
        out["endpoint_url"] = endpoint_url
        details = authorization_details(record.id, record.name)
        out["data_plane_info"] = {
            "query_info": {"endpoint_url": endpoint_url, "authorization_details": details}
        }
    if record.email_notifications is not None:
        out["email_notifications"] = record.email_notifications
    return out


def endpoint_summary(endpoint: Endpoint) -> dict[str, Any]:
    record = endpoint.record
    out = _base(endpoint)
    cfg = record.config or record.pending
    if cfg is not None:
        entities = [e.to_json() for e in cfg.served_entities]
        out["config"] = {cfg.entities_key: [{f: e[f] for f in SUMMARY_FIELDS if f in e} for e in entities]}
    return out


def _base(endpoint: Endpoint) -> dict[str, Any]:
    record = endpoint.record
    return {
        "name": record.name,
        "id": record.id,
        "creator": record.creator,
        "creation_timestamp": record.creation_timestamp,
        "last_updated_timestamp": record.last_updated_timestamp,
        "state": {"ready": READY if endpoint.ready else NOT_READY, "config_update": record.update.state},
        "tags": record.tags,
        **({"description": record.description} if record.description else {}),
        **{key: value for key in _SETTINGS if (value := getattr(record, key)) is not None},
    }


def _config(
    endpoint: Endpoint, cfg: EndpointConfig, version: int, describe: Describe, *, pending: bool
) -> dict[str, Any]:
    record = endpoint.record
    wire = cfg.to_json()
    entities = []
    for spec in wire[cfg.entities_key]:
        status = endpoint.entity_status(spec["name"], pending)
        entities.append(
            {
                **spec,
                "state": {"deployment": status.state, "deployment_state_message": status.message},
                "creator": record.creator,
                "creation_timestamp": record.entity_created.get(spec["name"], record.creation_timestamp),
                "local": local_json(status),
            }
        )
    out: dict[str, Any] = {cfg.entities_key: entities, "traffic_config": wire["traffic_config"]}
    out["config_version"] = version
    if cfg.auto_capture_config is not None:
        out["auto_capture_config"] = describe(cfg.auto_capture_config)
    return out


def local_json(status: DeploymentStatus) -> dict[str, Any]:
    """A served entity's `local` (our addition to the wire): the typed status fields, beside the
    backend's own extras, which are passed through unread. Autoscaling bounds appear only where
    the backend reports them (`max_replicas` 0: an entity not deployed yet, or a backend that
    does not know them)."""
    bounds = {"min_replicas": status.min_replicas, "max_replicas": status.max_replicas}
    return {
        **status.extras,
        "replicas": status.replicas,
        "ready_replicas": status.ready_replicas,
        "starting_replicas": status.starting_replicas,
        **(bounds if status.max_replicas else {}),
        "queued_requests": status.queued,
        "cold_starts": status.cold_starts,
        "gpus": list(status.gpus),
    }
