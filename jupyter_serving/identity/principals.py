"""Who may call the server: service principals, their tokens, endpoint ACL rows and Unity Catalog
grants (identity/grants.py holds their rules), in SQLite.

The server owner (the Jupyter user, or whoever holds the standalone server's token) is the admin and
is not stored. Service principals are created by the admin and hold tokens that reach the serving
API only. Tokens are random 128-bit secrets, so an unsalted SHA-256 is enough to make the stored
form useless to a reader of the file; the clear token is returned once and never stored or logged.
The file is 0600 in the 0700 state dir; the CLI and the server may both open it (WAL, short writes).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_serving.errors import InvalidParameterValue, ResourceAlreadyExists, ResourceDoesNotExist
from jupyter_serving.files import private_dir, private_file

TOKEN_PREFIX = "dapi"
OWNER_KEY = "owner"  # principal key of the admin's own tokens (POST /api/2.0/token/create by the admin)
MAX_LIFETIME_S = 10 * 365 * 86400
DEFAULT_LIFETIME_S = 2 * 365 * 86400  # Databricks: "If the lifetime is not specified, ... valid for 2 years"
MAX_COMMENT = 1024
DISPLAY_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.@ ")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS service_principals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    application_id TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL UNIQUE,
    active INTEGER NOT NULL DEFAULT 1,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    principal TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    creation_time INTEGER NOT NULL,
    expiry_time INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS endpoint_acl (
    endpoint_id TEXT NOT NULL,
    principal TEXT NOT NULL,
    level TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, principal)
);
CREATE TABLE IF NOT EXISTS uc_grants (
    securable_type TEXT NOT NULL,
    full_name TEXT NOT NULL,
    principal TEXT NOT NULL,
    privilege TEXT NOT NULL,
    PRIMARY KEY (securable_type, full_name, principal, privilege)
);
"""


@dataclass(frozen=True)
class Principal:
    """The caller of one request. `key` names it in ACLs: an application id, "owner", or "group:users"."""

    name: str
    key: str
    admin: bool = False
    id: int | None = None


@dataclass(frozen=True)
class ServicePrincipal:
    id: int
    application_id: str
    display_name: str
    active: bool

    def principal(self) -> Principal:
        return Principal(self.display_name, self.application_id, False, self.id)

    def to_scim(self) -> dict[str, Any]:
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServicePrincipal"],
            "id": str(self.id),
            "applicationId": self.application_id,
            "displayName": self.display_name,
            "active": self.active,
        }


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    principal: str
    comment: str
    creation_time: int
    expiry_time: int
    revoked: bool

    def to_json(self, owner_name: str, names: dict[str, str]) -> dict[str, Any]:
        """Databricks' TokenInfo (token-management) fields; PublicTokenInfo is a subset of them."""
        owner = owner_name if self.principal == OWNER_KEY else names.get(self.principal, self.principal)
        return {
            "token_id": self.token_id,
            "comment": self.comment,
            "creation_time": self.creation_time,
            "expiry_time": self.expiry_time,
            "created_by_username": owner,
            "owner_id": _owner_id(self.principal),
        }


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _owner_id(key: str) -> int:
    return 0 if key == OWNER_KEY else int(hashlib.sha1(key.encode()).hexdigest()[:12], 16)


def now_ms() -> int:
    return int(time.time() * 1000)


class IdentityStore:
    """Service principals, tokens and endpoint ACL rows: one small SQLite file, safe to share with the CLI."""

    def __init__(self, path: Path) -> None:
        private_dir(path.parent)
        private_file(path)  # SQLite gives its -wal and -shm files the database file's mode
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # ----------------------------------------------------------------- service principals
    def create_principal(self, display_name: Any, application_id: Any = None) -> ServicePrincipal:
        name = _display_name(display_name)
        app_id = str(uuid.uuid4()) if application_id is None else _application_id(application_id)
        try:
            cur = self._db.execute(
                "INSERT INTO service_principals (application_id, display_name, created_ms) VALUES (?, ?, ?)",
                (app_id, name, now_ms()),
            )
        except sqlite3.IntegrityError:
            raise ResourceAlreadyExists(
                f"A service principal named '{name}' (or with application id {app_id}) already exists."
            ) from None
        return ServicePrincipal(int(cur.lastrowid or 0), app_id, name, True)

    def principals(self) -> list[ServicePrincipal]:
        rows = self._db.execute(
            "SELECT id, application_id, display_name, active FROM service_principals ORDER BY id"
        ).fetchall()
        return [ServicePrincipal(i, a, d, bool(x)) for i, a, d, x in rows]

    def principal(self, ref: str) -> ServicePrincipal:
        """By SCIM id, application id or display name (display names are unique here)."""
        for sp in self.principals():
            if ref in (str(sp.id), sp.application_id, sp.display_name):
                return sp
        raise ResourceDoesNotExist(f"Service principal '{ref}' does not exist.")

    def delete_principal(self, ref: str) -> None:
        sp = self.principal(ref)
        with self._db:
            self._db.execute("DELETE FROM service_principals WHERE id = ?", (sp.id,))
            self._db.execute("DELETE FROM tokens WHERE principal = ?", (sp.application_id,))
            self._db.execute("DELETE FROM endpoint_acl WHERE principal = ?", (sp.application_id,))
            self._db.execute("DELETE FROM uc_grants WHERE principal = ?", (sp.application_id,))

    def names(self) -> dict[str, str]:
        return {sp.application_id: sp.display_name for sp in self.principals()}

    # ----------------------------------------------------------------- tokens
    def create_token(
        self, principal: str, comment: Any = None, lifetime_seconds: Any = None
    ) -> tuple[str, TokenInfo]:
        """A new token for `principal` (an application id or OWNER_KEY): (clear token, its info)."""
        comment = _comment(comment)
        lifetime = _lifetime(lifetime_seconds)
        token = TOKEN_PREFIX + secrets.token_hex(16)
        created = now_ms()
        info = TokenInfo(secrets.token_hex(16), principal, comment, created, created + lifetime * 1000, False)
        self._db.execute(
            "INSERT INTO tokens (token_id, token_hash, principal, comment, creation_time, expiry_time) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (info.token_id, hash_token(token), principal, comment, info.creation_time, info.expiry_time),
        )
        return token, info

    def tokens(self, principal: str | None = None) -> list[TokenInfo]:
        sql = "SELECT token_id, principal, comment, creation_time, expiry_time, revoked FROM tokens"
        args: tuple[Any, ...] = ()
        if principal is not None:
            sql, args = sql + " WHERE principal = ?", (principal,)
        rows = self._db.execute(sql + " ORDER BY creation_time", args).fetchall()
        return [TokenInfo(t, p, c, ct, et, bool(r)) for t, p, c, ct, et, r in rows]

    def token(self, token_id: str) -> TokenInfo:
        for info in self.tokens():
            if info.token_id == token_id:
                return info
        raise ResourceDoesNotExist(f"Token '{token_id}' does not exist.")

    def revoke(self, token_id: str) -> None:
        """Revocation deletes the hash: a revoked token can never authenticate again."""
        cur = self._db.execute("DELETE FROM tokens WHERE token_id = ?", (token_id,))
        if not cur.rowcount:
            raise ResourceDoesNotExist(f"Token '{token_id}' does not exist.")

    def authenticate(self, token: str) -> Principal | None:
        """The principal holding `token`, if it is ours, unexpired and its principal is active."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = hash_token(token)
        row = self._db.execute(
            "SELECT token_hash, principal, expiry_time FROM tokens WHERE token_hash = ?", (digest,)
        ).fetchone()
        if row is None or not hmac.compare_digest(row[0], digest) or row[2] <= now_ms():
            return None
        if row[1] == OWNER_KEY:
            return Principal("", OWNER_KEY, admin=True)
        sp = self._db.execute(
            "SELECT id, application_id, display_name, active FROM service_principals "
            "WHERE application_id = ?",
            (row[1],),
        ).fetchone()
        if sp is None or not sp[3]:
            return None
        return Principal(sp[2], sp[1], False, sp[0])

    # ----------------------------------------------------------------- endpoint ACL rows
    def acl(self, endpoint_id: str) -> dict[str, str]:
        rows = self._db.execute(
            "SELECT principal, level FROM endpoint_acl WHERE endpoint_id = ?", (endpoint_id,)
        ).fetchall()
        return dict(rows)

    def level(self, endpoint_id: str, keys: tuple[str, ...]) -> list[str]:
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(
            f"SELECT level FROM endpoint_acl WHERE endpoint_id = ? AND principal IN ({marks})",
            (endpoint_id, *keys),
        ).fetchall()
        return [level for (level,) in rows]

    def set_acl(self, endpoint_id: str, entries: dict[str, str], *, replace: bool) -> None:
        with self._db:
            if replace:
                self._db.execute("DELETE FROM endpoint_acl WHERE endpoint_id = ?", (endpoint_id,))
            self._db.executemany(
                "INSERT INTO endpoint_acl (endpoint_id, principal, level) VALUES (?, ?, ?) "
                "ON CONFLICT(endpoint_id, principal) DO UPDATE SET level = excluded.level",
                [(endpoint_id, k, v) for k, v in entries.items()],
            )

    def drop_acl(self, endpoint_id: str) -> None:
        self._db.execute("DELETE FROM endpoint_acl WHERE endpoint_id = ?", (endpoint_id,))

    # ----------------------------------------------------------------- Unity Catalog grants
    def grants(self, securable_type: str, full_name: str) -> list[tuple[str, str]]:
        """(principal, privilege) rows granted on one securable itself."""
        rows = self._db.execute(
            "SELECT principal, privilege FROM uc_grants WHERE securable_type = ? AND full_name = ? "
            "ORDER BY principal, privilege",
            (securable_type, full_name),
        ).fetchall()
        return [(p, v) for p, v in rows]

    def change_grants(
        self, securable_type: str, full_name: str, changes: list[tuple[str, list[str], list[str]]]
    ) -> None:
        """Apply (principal, add, remove) changes in one transaction: all of them or none."""
        with self._db:
            for principal, add, remove in changes:
                self._db.executemany(
                    "INSERT OR IGNORE INTO uc_grants VALUES (?, ?, ?, ?)",
                    [(securable_type, full_name, principal, p) for p in add],
                )
                self._db.executemany(
                    "DELETE FROM uc_grants WHERE securable_type = ? AND full_name = ? AND principal = ? "
                    "AND privilege = ?",
                    [(securable_type, full_name, principal, p) for p in remove],
                )


def _display_name(value: Any) -> str:
    ok = isinstance(value, str) and value.strip() and len(value) <= 255 and set(value) <= DISPLAY_NAME_CHARS
    if not ok:
        raise InvalidParameterValue(
            "displayName is required: at most 255 letters, digits, spaces and '_', '-', '.', '@'."
        )
    return value.strip()


def _application_id(value: Any) -> str:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise InvalidParameterValue(f"applicationId must be a UUID; got {str(value)[:40]!r}.") from None


def _comment(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_COMMENT or not _encodable(value):
        raise InvalidParameterValue(f"comment must be text of at most {MAX_COMMENT} characters.")
    return value


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:  # an unpaired surrogate ("\ud800") cannot be stored
        return False
    return True


def _lifetime(value: Any) -> int:
    if value is None:
        return DEFAULT_LIFETIME_S
    if isinstance(value, float) and value.is_integer():  # JSON's 600.0 is the integer 600
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_LIFETIME_S:
        raise InvalidParameterValue(
            f"lifetime_seconds must be a whole number of seconds between 1 and {MAX_LIFETIME_S}."
        )
    return value
