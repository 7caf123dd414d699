"""Control-plane updates of the settings beside an endpoint's config: tags, AI Gateway, rate limits,
notifications, telemetry. Each validates with `model.endpoint_fields`, changes the stored record, saves it.

None of them starts a rollout, except an AI Gateway `inference_table_config` that changes the
payload table: that is `auto_capture_config`, so it goes through `update_config` like any config change.
The record's ai_gateway keeping `inference_table_config` is what makes the table an AI Gateway one
(`endpoint_fields.inference_table_form`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from jupyter_serving.control.manager import Endpoint, EndpointManager
from jupyter_serving.errors import InvalidParameterValue, ResourceConflict
from jupyter_serving.model import endpoint_fields

log = logging.getLogger("jupyter_serving")


def _object(body: Any) -> dict[str, Any]:
    """The body as a dict; a `name` the SDK repeats beside the path's must at least be a string."""
    if not isinstance(body, dict):
        raise InvalidParameterValue("The request body must be a JSON object.")
    endpoint_fields.parse_optional_str(body.get("name"), "name")
    return body


def save(manager: EndpointManager, endpoint: Endpoint) -> None:
    if manager.endpoints.get(endpoint.name) is not endpoint:
        return  # deleted meanwhile
    endpoint.record.last_updated_timestamp = int(time.time() * 1000)
    assert manager.store is not None
    manager.store.save(endpoint.record)


def patch_tags(manager: EndpointManager, name: str, body: Any) -> list[dict[str, Any]]:
    endpoint = manager.get(name)
    body = _object(body)
    endpoint_fields.refuse_unknown(body, ("name", "add_tags", "delete_tags"), "")
    endpoint.record.tags = endpoint_fields.patch_tags(
        endpoint.record.tags, body.get("add_tags"), body.get("delete_tags")
    )
    save(manager, endpoint)
    return endpoint.record.tags


def put_rate_limits(manager: EndpointManager, name: str, body: Any) -> list[dict[str, Any]]:
    """The legacy route: its limits become the AI Gateway's rate limits (one set of limits)."""
    endpoint = manager.get(name)
    body = _object(body)
    endpoint_fields.refuse_unknown(body, ("name", "rate_limits"), "")
    limits = endpoint_fields.parse_rate_limits(body.get("rate_limits"), "rate_limits", legacy=True)
    current = dict(endpoint.record.ai_gateway or {})
    current["rate_limits"] = limits
    endpoint.record.ai_gateway = current
    save(manager, endpoint)
    return endpoint_fields.legacy_rate_limits(limits)


async def put_ai_gateway(manager: EndpointManager, name: str, body: Any) -> dict[str, Any]:
    endpoint = manager.get(name)
    body = _object(body)
    config = endpoint_fields.parse_ai_gateway({k: v for k, v in body.items() if k != "name"})
    previous = endpoint.record.ai_gateway
    if config.get("inference_table_config") is None and (previous or {}).get("inference_table_config"):
        # Omitting it leaves the table as it is (as an update omitting auto_capture_config does);
        # `{"enabled": false}` turns it off. So the table never changes schema behind its rows.
        config["inference_table_config"] = previous["inference_table_config"]  # type: ignore[index]
    table = config.get("inference_table_config")
    if table is not None:
        _refuse_form_change(endpoint, table)
        # The rollout that `_apply_inference_table` starts reads the form from the record.
        endpoint.record.ai_gateway = config
        try:
            await _apply_inference_table(manager, endpoint, table)
        except BaseException:
            endpoint.record.ai_gateway = previous
            raise
    endpoint.record.ai_gateway = config
    save(manager, endpoint)
    if (config.get("usage_tracking_config") or {}).get("enabled"):
        await _ensure_usage_table(manager, endpoint)
    return config


async def _ensure_usage_table(manager: EndpointManager, endpoint: Endpoint) -> None:
    """Create the usage table now, as a payload table is created at deploy: its first commit
    otherwise pays for creating it (and the capture service's first Arrow/Delta imports) under
    the endpoint's first traffic."""
    from jupyter_serving.dataplane.usage import usage_table_path

    if manager.capture is None:
        return
    record = endpoint.record
    capture = record.config.auto_capture_config if record.config else None
    path = usage_table_path(manager.settings.catalog_path, record.name, capture)
    try:
        await manager.capture.ensure_table(path)
    except Exception:  # reported as the table's status; serving goes on
        log.exception("could not create the usage table %s", path)


def _refuse_form_change(endpoint: Endpoint, table: dict[str, Any]) -> None:
    """A legacy payload table cannot become an AI Gateway one in place: the schemas differ. As on
    Databricks, the legacy table is disabled first (or the new one gets another prefix)."""
    record = endpoint.record
    current = record.config.auto_capture_config if record.config else None
    if endpoint_fields.inference_table_form(record.ai_gateway) != "legacy" or not current:
        return
    if not current.get("enabled", True) or not table.get("enabled", True):
        return
    names = ("catalog_name", "schema_name", "table_name_prefix")
    wanted = {"table_name_prefix": endpoint.name, **table}
    if all(current.get(k) == wanted.get(k) for k in names):
        raise InvalidParameterValue(
            f"The payload table '{current['table_name_prefix']}_payload' is this endpoint's legacy "
            "inference table (config.auto_capture_config); disable it first, or give the AI Gateway "
            "inference table another table_name_prefix."
        )


async def _apply_inference_table(manager: EndpointManager, endpoint: Endpoint, table: dict[str, Any]) -> None:
    record = endpoint.record
    active = record.config
    if active is None or record.update.in_progress:
        raise ResourceConflict(
            f"Endpoint '{endpoint.name}' has a config update in progress; "
            "set the inference table when it ends."
        )
    current = active.auto_capture_config
    wanted = {"table_name_prefix": endpoint.name, **table}
    if current == wanted:
        return
    update = {k: v for k, v in active.to_json().items() if k != "auto_capture_config"}
    await manager.update_config(endpoint.name, {**update, "auto_capture_config": wanted})


def patch_notifications(manager: EndpointManager, name: str, body: Any) -> dict[str, Any]:
    endpoint = manager.get(name)
    body = _object(body)
    endpoint_fields.refuse_unknown(body, ("name", "email_notifications"), "")
    raw = body.get("email_notifications")
    endpoint.record.email_notifications = (
        endpoint_fields.parse_email_notifications(raw) if raw is not None else None
    )
    save(manager, endpoint)
    return {"name": name, "email_notifications": endpoint.record.email_notifications or {}}


def patch_telemetry(manager: EndpointManager, name: str, body: Any) -> Endpoint:
    """Absent `telemetry_config` removes it, as the SDK documents."""
    endpoint = manager.get(name)
    body = _object(body)
    endpoint_fields.refuse_unknown(body, ("name", "telemetry_config"), "")
    raw = body.get("telemetry_config")
    endpoint.record.telemetry_config = (
        endpoint_fields.parse_telemetry_config(raw) if raw is not None else None
    )
    save(manager, endpoint)
    return endpoint
