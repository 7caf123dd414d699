"""Shadow traffic routes, in our own namespace so the Databricks API and SDK stay exact.

    PUT    /api/2.0/jupyter-serving/endpoints/{name}/shadow   {"served_entity_name", "percentage"}
    GET    the same path: the config (404 when none)
    DELETE the same path: stop mirroring
    GET    .../shadow/comparison: the config (or null), the mirror's counters, and live against
           shadow on the same requests from the inference table (agreement, errors, latency)

Changing it takes CAN_MANAGE on the endpoint; reading it, CAN_VIEW (as the endpoint itself).
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from tornado import web

from jupyter_serving.api.handlers import NAME, ServingHandler
from jupyter_serving.control import shadow
from jupyter_serving.identity.permissions import CAN_MANAGE, CAN_VIEW

log = logging.getLogger("jupyter_serving")
COMPARISON_TTL_S = 3.0  # polling pages share one read of the table per path for this long
_comparisons: dict[Path, tuple[float, asyncio.Future[dict[str, Any]]]] = {}


class ShadowHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        self.endpoint(name, CAN_VIEW)
        self.write_json(shadow.get_shadow(self.manager, name))

    @web.authenticated
    async def put(self, name: str) -> None:
        await self.endpoint_to_update(name)
        self.write_json(shadow.put_shadow(self.manager, name, self.json_body()))

    @web.authenticated
    def delete(self, name: str) -> None:
        self.endpoint(name, CAN_MANAGE)
        shadow.delete_shadow(self.manager, name)
        self.write_json({})


class ShadowComparisonHandler(ServingHandler):
    """The page's shadow view: what the mirror did (live counters, no table needed) and how the
    shadow's answers compare with the live ones (the inference table, read in a thread)."""

    @web.authenticated
    async def get(self, name: str) -> None:
        endpoint = self.endpoint(name, CAN_VIEW)
        mirror = endpoint.shadow
        config = endpoint.record.config
        path = self.manager.table_path(config.auto_capture_config if config else None)
        body: dict[str, Any] = {
            "shadow": mirror.config.to_json() if mirror is not None else None,
            "queued": mirror.queued if mirror is not None else 0,
            "counters": _counters(endpoint.metrics),
            "path": str(path) if path is not None else None,
        }
        if path is None:
            body |= {
                "comparison": None,
                "message": "Capture is off: the comparison needs the inference table.",
            }
        else:
            body |= await _comparison(path)
        self.write_json(body)


def _counters(metrics: Any) -> dict[str, Any]:
    """The mirror's Prometheus counters as plain numbers: requests, errors, dropped by reason."""
    out: dict[str, Any] = {"requests": 0, "errors": 0, "dropped": {}}
    for counter, key in (
        (metrics.shadow_requests, "requests"),
        (metrics.shadow_errors, "errors"),
        (metrics.shadow_dropped, "dropped"),
    ):
        for family in counter.collect():
            for sample in family.samples:
                if not sample.name.endswith("_total"):
                    continue
                if key == "dropped":
                    reason = sample.labels.get("reason", "")
                    out["dropped"][reason] = out["dropped"].get(reason, 0) + int(sample.value)
                else:
                    out[key] += int(sample.value)
    return out


async def _comparison(path: Path) -> dict[str, Any]:
    cached = _comparisons.get(path)
    if cached is None or time.monotonic() - cached[0] > COMPARISON_TTL_S:
        cached = _comparisons[path] = (time.monotonic(), asyncio.ensure_future(_read(path)))
    return await asyncio.shield(cached[1])


async def _read(path: Path) -> dict[str, Any]:
    if not (path / "_delta_log").is_dir():
        return {"comparison": [], "message": "No request was captured yet."}
    from jupyter_serving.tables.shadow_view import shadow_summary

    try:
        return await asyncio.to_thread(shadow_summary, path)
    except Exception as exc:  # shown on the page; the table may be mid-commit or unreadable
        log.warning("could not compare shadow rows in %s: %s", path, exc)
        return {"comparison": None, "message": f"Could not read the table: {exc}"}


routes: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"/api/2\.0/jupyter-serving/endpoints/{NAME}/shadow/?", ShadowHandler),
    (rf"/api/2\.0/jupyter-serving/endpoints/{NAME}/shadow/comparison/?", ShadowComparisonHandler),
]
