"""An endpoint's events (updates, scaling, cold starts, crashes, builds), derived by diffing snapshots.

Nothing in the control or data plane emits events: the observer takes a `Snapshot` of each endpoint
every few seconds and `diff` says what changed in words, so the rollout and replica code stay free of
bookkeeping. The `EventLog` keeps the last events of each endpoint in memory and in a JSON-lines file
in the state dir (0600, rotated once it grows past a bound), so they survive a server restart.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IN_PROGRESS = "IN_PROGRESS"
READY = "DEPLOYMENT_READY"
FAILED_STATES = ("DEPLOYMENT_FAILED", "DEPLOYMENT_ABORTED")
RECOVERING = "DEPLOYMENT_RECOVERING"

INFO, WARNING, ERROR = "INFO", "WARNING", "ERROR"


@dataclass(frozen=True)
class EntitySnapshot:
    state: str
    message: str
    replicas: int = 0
    ready_replicas: int = 0
    cold_starts: int = 0


@dataclass(frozen=True)
class Snapshot:
    """What the observer saw of one endpoint at one moment."""

    timestamp_ms: int
    config_version: int
    config_update: str
    update_message: str
    pending_version: int | None
    active: dict[str, EntitySnapshot] = field(default_factory=dict)
    pending: dict[str, EntitySnapshot] = field(default_factory=dict)
    # When the latest update began and when the update state last changed (epoch ms; None when
    # unknown, e.g. a state read back after a restart): update events carry these times.
    update_started_ms: int | None = None
    update_changed_ms: int | None = None


def event(
    timestamp_ms: int, kind: str, message: str, severity: str = INFO, served: str | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {"timestamp_ms": timestamp_ms, "type": kind, "severity": severity}
    if served is not None:
        item["served_entity"] = served
    item["message"] = message
    return item


def diff(before: Snapshot | None, now: Snapshot, cold_since: dict[str, int]) -> list[dict[str, Any]]:
    """Events between two snapshots of one endpoint. `cold_since` (entity -> ms) carries cold starts
    whose replica is not ready yet from one call to the next, to report the start's duration."""
    events = _update_events(before, now)
    events += _entity_events(before.pending if before else {}, now.pending, now.timestamp_ms, building=True)
    events += _entity_events(before.active if before else {}, now.active, now.timestamp_ms, building=False)
    events += _scale_events(before.active if before else {}, now, cold_since)
    return events


def _update_events(before: Snapshot | None, now: Snapshot) -> list[dict[str, Any]]:
    """Updates that started or ended since `before`, each at the moment it happened (the state
    machine's transition time), falling back to the sampling time when that is unknown."""
    t = now.update_changed_ms or now.timestamp_ms
    was = before.config_update if before else None
    begun = now.update_started_ms or t
    started = event(begun, "UPDATE_STARTED", f"Config update to version {now.pending_version} started.")
    if now.config_update == IN_PROGRESS:
        fresh = was != IN_PROGRESS or (before is not None and before.pending_version != now.pending_version)
        return [started] if fresh else []
    if before is None:
        return []
    if now.config_version != before.config_version:
        outcome = event(t, "UPDATE_SUCCEEDED", f"Config version {now.config_version} is serving all traffic.")
    elif was == now.config_update and before.pending_version == now.pending_version:
        return []  # nothing new happened to updates
    elif now.config_update == "UPDATE_FAILED":
        outcome = event(t, "UPDATE_FAILED", f"Config update failed: {now.update_message}", ERROR)
    elif now.config_update == "UPDATE_CANCELED":
        outcome = event(t, "UPDATE_CANCELED", now.update_message or "Config update canceled.", WARNING)
    else:
        return []
    # An update that started and ended between two samples: say it started, too.
    if was != IN_PROGRESS and outcome["type"] != "UPDATE_CANCELED":
        version = now.config_version if outcome["type"] == "UPDATE_SUCCEEDED" else now.pending_version
        started["message"] = f"Config update to version {version} started."
        return [started, outcome]
    return [outcome]


def _entity_events(
    before: dict[str, EntitySnapshot], now: dict[str, EntitySnapshot], t: int, building: bool
) -> list[dict[str, Any]]:
    """State changes of served entities: deploy progress while building, crashes once serving."""
    out = []
    for name, cur in now.items():
        prev = before.get(name)
        if prev is not None and (prev.state, prev.message) == (cur.state, cur.message):
            continue
        if cur.state in FAILED_STATES:
            out.append(event(t, "DEPLOYMENT_FAILED", cur.message or cur.state, ERROR, name))
        elif cur.state == RECOVERING or (cur.message.startswith("Replacing a replica") and not building):
            out.append(event(t, "REPLICA_CRASHED", cur.message or "A replica exited.", WARNING, name))
        elif cur.state == READY and building and (prev is None or prev.state != READY):
            out.append(event(t, "ENTITY_READY", "Served entity deployed and ready.", INFO, name))
        elif building and cur.message and cur.state != READY:
            out.append(event(t, "DEPLOYMENT_PROGRESS", cur.message, INFO, name))
    return out


def _scale_events(
    before: dict[str, EntitySnapshot], now: Snapshot, cold_since: dict[str, int]
) -> list[dict[str, Any]]:
    t, out = now.timestamp_ms, []
    for name, cur in now.active.items():
        prev = before.get(name)
        if prev is not None and cur.cold_starts > prev.cold_starts:
            cold_since.setdefault(name, t)
            out.append(event(t, "COLD_START", "A request found no replica: starting one.", INFO, name))
        if name in cold_since and cur.ready_replicas > 0:
            seconds = (t - cold_since.pop(name)) / 1000
            out.append(
                event(t, "COLD_START_DONE", f"Cold start finished in about {seconds:.0f} s.", INFO, name)
            )
        if prev is None or prev.replicas == cur.replicas:
            continue
        if cur.replicas == 0:
            out.append(event(t, "SCALED_TO_ZERO", f"Scaled to zero (from {prev.replicas}).", INFO, name))
        elif cur.replicas > prev.replicas:
            out.append(
                event(t, "SCALED_UP", f"Scaled up: {prev.replicas} → {cur.replicas} replicas.", INFO, name)
            )
        else:
            out.append(
                event(
                    t, "SCALED_DOWN", f"Scaled down: {prev.replicas} → {cur.replicas} replicas.", INFO, name
                )
            )
    return out


class EventLog:
    """The last `limit` events of each endpoint, in memory and in `<dir>/<endpoint>.jsonl` (0600).

    A file past `limit` lines is rewritten with its last `limit` events, so each file holds at most
    2 x limit lines and a restart reads it back in one pass.
    """

    def __init__(self, directory: Path, limit: int = 500) -> None:
        self.directory = directory
        self.limit = limit
        self._events: dict[str, deque[dict[str, Any]]] = {}
        self._lines: dict[str, int] = {}

    def _path(self, endpoint: str) -> Path:
        return self.directory / f"{urllib.parse.quote(endpoint, safe='')}.jsonl"

    def load(self, endpoint: str) -> None:
        path = self._path(endpoint)
        items: deque[dict[str, Any]] = deque(maxlen=self.limit)
        lines = 0
        if path.exists():
            for line in path.read_text(errors="replace").splitlines():
                lines += 1
                try:
                    items.append(json.loads(line))
                except ValueError:
                    continue  # a line torn by a crash mid-write
        self._events[endpoint], self._lines[endpoint] = items, lines

    def get(self, endpoint: str, since_ms: int = 0) -> list[dict[str, Any]]:
        return [e for e in self._events.get(endpoint, ()) if e["timestamp_ms"] > since_ms]

    def append(self, endpoint: str, events: Iterable[dict[str, Any]]) -> None:
        events = list(events)
        if not events:
            return
        if endpoint not in self._events:
            self.load(endpoint)
        self._events[endpoint].extend(events)
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._lines[endpoint] + len(events) > 2 * self.limit:
            self._rewrite(endpoint)
            return
        with _open_private(self._path(endpoint), os.O_APPEND) as f:
            f.write("".join(json.dumps(e) + "\n" for e in events))
        self._lines[endpoint] += len(events)

    def _rewrite(self, endpoint: str) -> None:
        path = self._path(endpoint)
        tmp = path.with_suffix(".tmp")
        with _open_private(tmp, os.O_TRUNC) as f:
            f.write("".join(json.dumps(e) + "\n" for e in self._events[endpoint]))
        os.replace(tmp, path)
        self._lines[endpoint] = len(self._events[endpoint])

    def forget(self, endpoint: str) -> None:
        """The endpoint was deleted: a new one of the same name starts with no history."""
        self._events.pop(endpoint, None)
        self._lines.pop(endpoint, None)
        self._path(endpoint).unlink(missing_ok=True)


def _open_private(path: Path, mode: int) -> Any:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")
