"""Failure and recovery notices of one endpoint, read from the server's events.

The server is the one place that derives what changed (monitoring/events.py, served at
`GET /api/2.0/jupyter-serving/endpoints/{name}/events`); a client polling it only turns the failure
and recovery events into notices, each once. `EndpointMonitor` (notebook/widgets.py) keeps one
`HealthNotices` per endpoint; labextension/src/health.ts applies the same rules for the panel:

    UPDATE_FAILED                      -> "Endpoint 'e' has failed"
    DEPLOYMENT_FAILED (served entity)  -> "Served entity 's' of endpoint 'e' has failed"
    UPDATE_SUCCEEDED after a failure   -> "Endpoint 'e' has recovered"
    ENTITY_READY after its failure     -> "Served entity 's' of endpoint 'e' has recovered"

On the first read (the endpoint's whole event log) only what is still failed at its end is
announced, not failures that recovered before the client looked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Events are stamped with when a change happened, which can precede the moment the server logged
# them by a sampling interval or two: each read looks back this far and skips events seen before.
LOOKBACK_MS = 60_000


class HealthNotices:
    """What failed or recovered in one endpoint's events since the last read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failed: set[str] = set()  # "" for the endpoint, else a served entity's name
        self._seen: dict[tuple[Any, ...], int] = {}  # event key -> its timestamp
        self._latest: int | None = None  # newest event timestamp read; None before the first read

    @property
    def since_ms(self) -> int:
        """The `since_ms` to ask the events route for next."""
        return 0 if self._latest is None else max(0, self._latest - LOOKBACK_MS)

    def read(self, events: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
        """(tone, message) per failure ("bad") or recovery ("ok") among `events` not read before."""
        first = self._latest is None
        notices: list[tuple[str, str]] = []
        for item in sorted(events, key=lambda e: int(e.get("timestamp_ms", 0))):
            t = int(item.get("timestamp_ms", 0))
            key = (t, item.get("type"), item.get("served_entity"), item.get("message"))
            if key in self._seen:
                continue
            self._seen[key] = t
            self._latest = t if self._latest is None else max(self._latest, t)
            notices += self._apply(item)
        if self._latest is None:
            self._latest = 0  # read once, even if there was nothing yet
        horizon = self._latest - LOOKBACK_MS
        self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
        if first:  # only what is failed now, endpoint first
            return [("bad", _what(self.name, key) + " has failed") for key in sorted(self.failed)]
        return notices

    def _apply(self, item: Mapping[str, Any]) -> list[tuple[str, str]]:
        kind, served = item.get("type"), item.get("served_entity")
        key = "" if kind in ("UPDATE_FAILED", "UPDATE_SUCCEEDED") else served
        if not isinstance(key, str) or (key == "" and served):
            return []
        if kind in ("UPDATE_FAILED", "DEPLOYMENT_FAILED") and key not in self.failed:
            self.failed.add(key)
            return [("bad", _what(self.name, key) + " has failed")]
        if kind in ("UPDATE_SUCCEEDED", "ENTITY_READY") and key in self.failed:
            self.failed.discard(key)
            return [("ok", _what(self.name, key) + " has recovered")]
        return []


def _what(name: str, key: str) -> str:
    return f"Endpoint '{name}'" if not key else f"Served entity '{key}' of endpoint '{name}'"
