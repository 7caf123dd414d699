"""Failure and recovery of an endpoint and its served entities, from two successive GETs.

Pure: `EndpointMonitor` (and anything else polling) keeps the last `health(...)` and asks
`transitions` what to announce, so a notification fires once per change, not on every refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FAILED, OK, OTHER = "failed", "ok", "other"
ENTITY_FAILED = {"DEPLOYMENT_FAILED", "DEPLOYMENT_ABORTED"}


def health(endpoint: Mapping[str, Any]) -> dict[str, str]:
    """{"": endpoint's health, "<served entity>": its health}: failed, ok or other (deploying...)."""
    state = endpoint.get("state") or {}
    out: dict[str, str] = {}
    for key in ("config", "pending_config"):  # pending last: its state is the newer one
        for e in (
            (endpoint.get(key) or {}).get("served_entities")
            or (endpoint.get(key) or {}).get("served_models")
            or []
        ):
            deployment = (e.get("state") or {}).get("deployment", "")
            out[e["name"]] = (
                FAILED if deployment in ENTITY_FAILED else OK if deployment == "DEPLOYMENT_READY" else OTHER
            )
    if state.get("config_update") == "UPDATE_FAILED" or (
        FAILED in out.values() and state.get("ready") != "READY"
    ):
        out[""] = FAILED
    elif state.get("ready") == "READY":
        out[""] = OK
    else:
        out[""] = OTHER
    return out


def transitions(
    name: str, before: Mapping[str, str] | None, after: Mapping[str, str]
) -> list[tuple[str, str]]:
    """(tone, message) for each part that failed, or recovered after failing; none on the first look."""
    if before is None:
        return [("bad", _what(name, k) + " has failed") for k, v in after.items() if v == FAILED]
    out = []
    for key, now in after.items():
        was = before.get(key)
        if now == FAILED and was != FAILED:
            out.append(("bad", _what(name, key) + " has failed"))
        elif now == OK and was == FAILED:
            out.append(("ok", _what(name, key) + " has recovered"))
    return out


def _what(name: str, key: str) -> str:
    return f"Endpoint '{name}'" if not key else f"Served entity '{key}' of endpoint '{name}'"
