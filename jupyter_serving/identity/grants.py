"""Unity Catalog grants on the local catalog's securables, and the serving rules that read them.

Securables are a catalog (`main`), a schema (`main.default`), a registered model (securable type
`function`, as in Unity Catalog's grants API) or a table (`main.default.features`). Privileges are
inherited downward: a grant on a catalog holds on every schema, model and table in it, and
ALL_PRIVILEGES holds every privilege. The server owner holds everything and is never stored;
`account users` stands for every service principal. This module is independent of the endpoint
permissions (CAN_VIEW/CAN_QUERY/CAN_MANAGE): neither grants anything in the other.

To serve a Unity Catalog model an endpoint's creator needs USE_CATALOG on its catalog, USE_SCHEMA
on its schema and EXECUTE on the model; a feature table it looks features up in needs SELECT (with
USE_CATALOG and USE_SCHEMA above it), as in Unity Catalog.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jupyter_serving.control.registry import ModelRegistry, model_name
from jupyter_serving.errors import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist
from jupyter_serving.identity.principals import OWNER_KEY, IdentityStore, Principal
from jupyter_serving.model.config import ServedEntity

USE_CATALOG, USE_SCHEMA, EXECUTE, SELECT, ALL_PRIVILEGES = (
    "USE_CATALOG",
    "USE_SCHEMA",
    "EXECUTE",
    "SELECT",
    "ALL_PRIVILEGES",
)
PRIVILEGES = (USE_CATALOG, USE_SCHEMA, EXECUTE, SELECT, ALL_PRIVILEGES)
CATALOG, SCHEMA, FUNCTION, TABLE = "catalog", "schema", "function", "table"
ACCOUNT_USERS = "account users"
# securable type -> (name parts, privileges that may be granted on it)
SECURABLES: dict[str, tuple[int, tuple[str, ...]]] = {
    CATALOG: (1, PRIVILEGES),
    SCHEMA: (2, (USE_SCHEMA, EXECUTE, SELECT, ALL_PRIVILEGES)),
    FUNCTION: (3, (EXECUTE, ALL_PRIVILEGES)),
    TABLE: (3, (SELECT, ALL_PRIVILEGES)),
}
_PART = re.compile(r"[A-Za-z0-9_-]{1,255}")
RECREATE_HINT = (
    "An endpoint's creator cannot be changed: delete the endpoint and recreate it under a principal "
    "that is a member of this workspace and holds the required grants."
)


@dataclass(frozen=True)
class Securable:
    type: str
    full_name: str

    @property
    def ancestors(self) -> list[Securable]:
        """Itself and every securable above it, nearest first (where inherited privileges come from)."""
        parts = self.full_name.split(".")
        out = [self]
        if len(parts) == 3:
            out.append(Securable(SCHEMA, ".".join(parts[:2])))
        if len(parts) >= 2:
            out.append(Securable(CATALOG, parts[0]))
        return out

    def __str__(self) -> str:
        return f"{self.type} '{self.full_name}'"


def securable(securable_type: str, full_name: str) -> Securable:
    """A securable named on the wire; the type is case-insensitive (the SDK sends it lower case)."""
    kind = securable_type.lower()
    if kind not in SECURABLES:
        raise InvalidParameterValue(
            f"Securable type '{securable_type[:40]}' is not supported here; use one of "
            f"{', '.join(SECURABLES)} (a registered model is a 'function')."
        )
    parts = full_name.split(".")
    if len(parts) != SECURABLES[kind][0] or not all(_PART.fullmatch(p) for p in parts):
        shape = ".".join(["<catalog>", "<schema>", "<name>"][: SECURABLES[kind][0]])
        raise InvalidParameterValue(f"A {kind}'s full name is '{shape}'; got '{full_name[:200]}'.")
    return Securable(kind, full_name)


def is_uc_name(name: str) -> bool:
    """A three-level `catalog.schema.name`: Unity Catalog's, not the workspace registry's."""
    parts = name.split(".")
    return len(parts) == 3 and all(_PART.fullmatch(p) for p in parts)


def required(name: str, leaf: str, privilege: str) -> list[tuple[str, Securable]]:
    """What reading `name` (a three-level model or table) needs, top down."""
    catalog, schema, _ = name.split(".")
    return [
        (USE_CATALOG, Securable(CATALOG, catalog)),
        (USE_SCHEMA, Securable(SCHEMA, f"{catalog}.{schema}")),
        (privilege, Securable(leaf, name)),
    ]


def serving_requirements(models: Iterable[str], tables: Iterable[str]) -> list[tuple[str, Securable]]:
    """Every grant serving `models` (with feature lookups in `tables`) needs, without repeats."""
    needs = [need for m in models if is_uc_name(m) for need in required(m, FUNCTION, EXECUTE)]
    needs += [need for t in tables if is_uc_name(t) for need in required(t, TABLE, SELECT)]
    return list(dict.fromkeys(needs))


class UnityCatalogGrants:
    """The grants API's reads and writes, and the checks the serving control plane makes."""

    def __init__(self, store: IdentityStore, owner_name: str) -> None:
        self.store = store
        self.owner_name = owner_name

    # ----------------------------------------------------------------- grants API
    def update(self, target: Securable, body: Any) -> dict[str, Any]:
        changes = _changes(body)
        resolved = [
            (
                self.resolve(c.get("principal")),
                _privileges(c, "add", target),
                _privileges(c, "remove", target),
            )
            for c in changes
        ]
        self.store.change_grants(target.type, target.full_name, resolved)
        return {} if body.get("omit_permissions_in_response") is True else self.assignments(target)

    def assignments(self, target: Securable, principal: str | None = None) -> dict[str, Any]:
        """GetPermissionsResponse: the grants made on `target` itself (none inherited)."""
        rows = self.store.grants(target.type, target.full_name)
        key = self.resolve(principal) if principal else None
        out = [
            {"principal": who, "privileges": sorted(privs)}
            for who, privs in sorted(_by_principal(rows).items())
            if key is None or who == key
        ]
        return {"privilege_assignments": out}

    def effective(self, target: Securable, principal: str | None = None) -> dict[str, Any]:
        """EffectivePermissionsList: what each principal holds on `target`, with where it came from."""
        key = self.resolve(principal) if principal else None
        held: dict[str, list[dict[str, Any]]] = {}
        for source in target.ancestors:
            for who, privilege in self.store.grants(source.type, source.full_name):
                if key is not None and who not in (key, ACCOUNT_USERS):
                    continue
                entry: dict[str, Any] = {"privilege": privilege}
                if source != target:
                    entry["inherited_from_type"] = source.type.upper()
                    entry["inherited_from_name"] = source.full_name
                held.setdefault(key or who, []).append(entry)
        return {"privilege_assignments": [{"principal": p, "privileges": v} for p, v in sorted(held.items())]}

    def resolve(self, name: Any) -> str:
        """A grant's principal as stored: a service principal's application id, or `account users`."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidParameterValue("principal is required: a service principal or 'account users'.")
        if name == ACCOUNT_USERS:
            return ACCOUNT_USERS
        if name == self.owner_name:
            raise InvalidParameterValue(
                f"'{name}' is the server owner and holds every privilege; its grants cannot be changed."
            )
        try:
            return self.store.principal(name).application_id
        except ResourceDoesNotExist:
            raise InvalidParameterValue(f"Could not find principal with name '{name[:200]}'.") from None

    # ----------------------------------------------------------------- checks
    def holds(self, principal: Principal, privilege: str, target: Securable) -> bool:
        if principal.admin or principal.key == OWNER_KEY:
            return True
        keys = (principal.key, ACCOUNT_USERS)
        wanted = (privilege, ALL_PRIVILEGES)
        return any(
            who in keys and priv in wanted
            for source in target.ancestors
            for who, priv in self.store.grants(source.type, source.full_name)
        )

    def missing(
        self, principal: Principal, needs: list[tuple[str, Securable]]
    ) -> tuple[str, Securable] | None:
        return next((need for need in needs if not self.holds(principal, *need)), None)

    def require(
        self, principal: Principal, needs: list[tuple[str, Securable]], *, as_creator: str = ""
    ) -> None:
        """PermissionDenied naming the first missing privilege and securable; `as_creator` (an
        endpoint name) says the principal is that endpoint's recorded creator, re-checked."""
        lack = self.missing(principal, needs)
        if lack is None:
            return
        privilege, target = lack
        who = principal.name or principal.key
        if as_creator:
            raise PermissionDenied(
                f"The creator of endpoint '{as_creator}', principal '{who}', does not have {privilege} on "
                f"{target}. {RECREATE_HINT}"
            )
        raise PermissionDenied(f"Principal '{who}' does not have {privilege} on {target}.")

    def creator(self, endpoint: str, creator_name: str, creator_key: str | None) -> Principal | None:
        """The recorded creator as a principal now; PermissionDenied if it is no longer a member.
        None for an endpoint recorded before creators were keyed (nothing to re-check)."""
        if creator_key is None:
            return None
        if creator_key == OWNER_KEY:
            return Principal(creator_name, OWNER_KEY, admin=True)
        sp = next((p for p in self.store.principals() if p.application_id == creator_key), None)
        if sp is None or not sp.active:
            raise PermissionDenied(
                f"The creator of endpoint '{endpoint}', principal '{creator_name}', is no longer a member "
                f"of this workspace. {RECREATE_HINT}"
            )
        return sp.principal()


def _by_principal(rows: list[tuple[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for who, privilege in rows:
        out.setdefault(who, set()).add(privilege)
    return out


def _changes(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise InvalidParameterValue("The request body must be a JSON object.")
    changes = body.get("changes", [])
    if not isinstance(changes, list) or not all(isinstance(c, dict) for c in changes):
        raise InvalidParameterValue("changes must be a list of {principal, add, remove} objects.")
    return changes


def _privileges(change: dict[str, Any], field: str, target: Securable) -> list[str]:
    raw = change.get(field) or []
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise InvalidParameterValue(f"changes[].{field} must be a list of privilege names.")
    allowed = SECURABLES[target.type][1]
    for privilege in raw:
        name = privilege.upper().replace(" ", "_")
        if name not in allowed:
            raise InvalidParameterValue(
                f"Privilege {privilege[:40]} is not applicable to {target}; it takes {', '.join(allowed)}."
            )
    return [p.upper().replace(" ", "_") for p in raw]


async def check_serving(
    grants: UnityCatalogGrants,
    registry: ModelRegistry,
    principal: Principal,
    entities: list[ServedEntity],
    *,
    creator_of: str = "",
) -> None:
    """`principal` may serve `entities`: the grants on their Unity Catalog models and feature tables.
    The owner holds everything, so its calls skip the registry reads."""
    if principal.admin or not entities:
        return
    tables = await registry.feature_tables(entities)
    needs = serving_requirements([model_name(e) for e in entities], tables)
    grants.require(principal, needs, as_creator=creator_of)
