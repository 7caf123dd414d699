"""A local secrets store: `{{secrets/<scope>/<key>}}` in environment_vars, resolved at worker start.

Values live in `<state dir>/secrets.json` (0600, written by `jupyter-serving secrets put`). The
endpoint config keeps only the reference, so GET, the store, logs and the panel never hold the
value; the worker's environment is the one place it appears.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jupyter_serving.errors import InvalidParameterValue
from jupyter_serving.files import private_dir, write_private

SECRETS_FILE = "secrets.json"
NAME = r"[A-Za-z0-9_.-]{1,128}"
REF_RE = re.compile(rf"\{{\{{secrets/({NAME})/({NAME})\}}\}}")


def secret_ref(value: str) -> tuple[str, str] | None:
    """(scope, key) if `value` is exactly a secret reference."""
    match = REF_RE.fullmatch(value)
    return (match.group(1), match.group(2)) if match else None


def secret_refs(config: Any) -> list[tuple[str, str]]:
    """Every secret a (raw) endpoint config references in its entities' environment_vars."""
    if not isinstance(config, dict):
        return []
    refs = []
    for key in ("served_entities", "served_models"):
        entities = config.get(key)
        for entity in entities if isinstance(entities, list) else []:
            env = entity.get("environment_vars") if isinstance(entity, dict) else None
            for value in (env or {}).values() if isinstance(env, dict) else ():
                ref = secret_ref(value) if isinstance(value, str) else None
                if ref is not None:
                    refs.append(ref)
    return refs


class SecretStore:
    """scope -> key -> value, in one owner-only JSON file."""

    def __init__(self, state_path: Path) -> None:
        self.path = Path(state_path) / SECRETS_FILE

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            data: dict[str, dict[str, str]] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        return data

    def put(self, scope: str, key: str, value: str) -> None:
        for label, name in (("scope", scope), ("key", key)):
            if not re.fullmatch(NAME, name):
                raise InvalidParameterValue(
                    f"Secret {label} {name!r:.60} is invalid: use letters, digits, '_', '-', '.'."
                )
        private_dir(self.path.parent)
        data = self._load()
        data.setdefault(scope, {})[key] = value
        write_private(self.path, json.dumps(data).encode())

    def delete(self, scope: str, key: str) -> None:
        data = self._load()
        data.get(scope, {}).pop(key, None)
        write_private(self.path, json.dumps(data).encode())

    def names(self) -> list[tuple[str, str]]:
        return sorted((s, k) for s, keys in self._load().items() for k in keys)

    def require(self, refs: list[tuple[str, str]]) -> None:
        if not refs:
            return
        data = self._load()
        for scope, key in refs:
            if key not in data.get(scope, {}):
                raise InvalidParameterValue(
                    f"Secret '{scope}/{key}' does not exist: "
                    f"add it with `jupyter-serving secrets put {scope} {key}`."
                )

    def resolve(self, env: dict[str, str]) -> dict[str, str]:
        """`env` with every secret reference replaced by its value (a missing one fails the deploy)."""
        refs = {name: secret_ref(value) for name, value in env.items()}
        if not any(refs.values()):
            return env
        data = self._load()
        out = dict(env)
        for name, ref in refs.items():
            if ref is not None:
                scope, key = ref
                if key not in data.get(scope, {}):
                    raise KeyError(f"secret {scope}/{key} (environment variable {name}) does not exist")
                out[name] = data[scope][key]
        return out
