"""Desired state: what users asked for, persisted in SQLite so endpoints survive a restart.

One JSON document per endpoint. Writes are rare (control-plane calls and state transitions) and
tiny, so they run synchronously; WAL mode keeps readers out of a writer's way. The record holds
parsed configs (`EndpointConfig`), not wire JSON: rendering for clients is `api/render.py`'s job.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_serving.files import private_dir, private_file
from jupyter_serving.model.config import EndpointConfig, parse_config
from jupyter_serving.model.states import ConfigUpdate


@dataclass
class EndpointRecord:
    """An endpoint as stored: its active config, and the pending one while an update runs or failed."""

    name: str
    id: str
    creator: str
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None = None
    tags: list[dict[str, Any]] = field(default_factory=list)
    config: EndpointConfig | None = None
    config_version: int = 0
    pending: EndpointConfig | None = None
    pending_version: int | None = None
    pending_start_time: int | None = None
    update: ConfigUpdate = field(default_factory=ConfigUpdate)
    # served entity name -> creation timestamp (ms), kept across versions that keep the entity
    entity_created: dict[str, int] = field(default_factory=dict)
    # served entity name -> [state, message] of a pending config whose rollout ended without success
    pending_states: dict[str, list[str]] = field(default_factory=dict)
    # endpoint-level settings beside the config (model.endpoint_fields): stored as given, echoed on GET
    route_optimized: bool = False
    ai_gateway: dict[str, Any] | None = None
    email_notifications: dict[str, Any] | None = None
    budget_policy_id: str | None = None
    telemetry_config: dict[str, Any] | None = None
    # who the creator is, as the identity store keys it (an application id, or "owner"): the
    # principal whose Unity Catalog grants every update re-checks. None: recorded before it was kept.
    creator_key: str | None = None
    # shadow traffic (dataplane/shadow.py): {"served_entity_name", "percentage"}, or None
    shadow: dict[str, Any] | None = None
    # progressive delivery (control/progressive.py): the rollout's state, guard evidence and timeline
    rollout: dict[str, Any] | None = None

    # ------------------------------------------------------------- config-update transitions
    # The only writers of `update`, `pending*` and `config` once the record exists: each keeps the
    # update's state machine and the pending fields in step, so no caller can end an update and
    # forget its pending config (or the reverse).
    def begin_update(self, config: EndpointConfig, now_ms: int) -> int:
        """Make `config` the pending config of a new update (IN_PROGRESS); returns its version."""
        self.update.begin()
        self.pending = config
        self.pending_version = self.config_version + 1
        self.pending_start_time = now_ms
        self.pending_states = {}
        for entity in config.served_entities:
            self.entity_created.setdefault(entity.name, now_ms)
        return self.pending_version

    @property
    def resumed_version(self) -> int:
        """The version an update in progress when the server stopped resumes as."""
        return self.pending_version or self.config_version + 1

    def finish_update(self, config: EndpointConfig, version: int) -> None:
        """The update's config serves: it becomes the active config and nothing is pending."""
        self.update.succeed()
        self.config, self.config_version = config, version
        self._drop_pending()
        self.pending_states = {}

    def cancel_update(self, message: str) -> None:
        """The update was canceled: the pending config is forgotten (the active one serves on)."""
        self.update.cancel(message)
        self._drop_pending()

    def fail_update(self, message: str, pending_states: dict[str, list[str]] | None = None) -> None:
        """The update failed: its pending config stays visible (as Databricks shows it) with each
        entity's final [state, message] when known, so clients see why."""
        self.update.fail(message)
        if pending_states is not None:
            self.pending_states = pending_states

    def _drop_pending(self) -> None:
        self.pending = self.pending_version = self.pending_start_time = None

    def to_doc(self) -> dict[str, Any]:
        doc = {k: v for k, v in vars(self).items() if k not in ("config", "pending", "update")}
        doc["config"] = self.config.to_json() if self.config else None
        doc["pending"] = self.pending.to_json() if self.pending else None
        doc["config_update"], doc["update_message"] = self.update.state, self.update.message
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> EndpointRecord:
        doc = dict(doc)
        update = ConfigUpdate(doc.pop("config_update"), doc.pop("update_message", ""))
        config, pending = doc.pop("config"), doc.pop("pending")
        return cls(
            **doc,
            config=parse_config(config) if config else None,
            pending=parse_config(pending) if pending else None,
            update=update,
        )


class EndpointStore:
    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        private_file(path)  # configs hold environment_vars; SQLite's -wal/-shm files take this mode
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, doc TEXT NOT NULL)")

    def load_all(self) -> list[EndpointRecord]:
        rows = self._db.execute("SELECT doc FROM endpoints ORDER BY name").fetchall()
        return [EndpointRecord.from_doc(json.loads(doc)) for (doc,) in rows]

    def save(self, record: EndpointRecord) -> None:
        self._db.execute(
            "INSERT INTO endpoints (name, doc) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
            (record.name, json.dumps(record.to_doc())),
        )

    def delete(self, name: str) -> None:
        self._db.execute("DELETE FROM endpoints WHERE name = ?", (name,))

    def close(self) -> None:
        self._db.close()
