"""Per-endpoint permissions in Databricks' model: CAN_VIEW < CAN_QUERY < CAN_MANAGE.

Pure rules (which level a route needs, which level a principal has, how an ACL request parses and
renders) plus the thin glue that reads the rows from the `IdentityStore`. Admins hold CAN_MANAGE on
every endpoint; an endpoint's creator gets CAN_MANAGE when it is created; `group_name: "users"`
grants a level to every service principal.
"""

from __future__ import annotations

from typing import Any

from jupyter_serving.errors import InvalidParameterValue, PermissionDenied
from jupyter_serving.identity.principals import IdentityStore, Principal

CAN_VIEW, CAN_QUERY, CAN_MANAGE = "CAN_VIEW", "CAN_QUERY", "CAN_MANAGE"
LEVELS = (CAN_VIEW, CAN_QUERY, CAN_MANAGE)
USERS_GROUP = "users"
GROUP_KEY = f"group:{USERS_GROUP}"
DESCRIPTIONS = {
    CAN_VIEW: "Can view the endpoint: get, list, build and server logs, metrics.",
    CAN_QUERY: "Can view the endpoint and query it (invocations).",
    CAN_MANAGE: "Can do everything: update the config, tags and permissions, and delete the endpoint.",
}
OBJECT_TYPE = "serving-endpoint"
ROOT_OBJECT = "/serving-endpoints/"


def rank(level: str | None) -> int:
    """0 for no access; ordering of the three levels otherwise."""
    return LEVELS.index(level) + 1 if level in LEVELS else 0


def highest(levels: list[str]) -> str | None:
    return max(levels, key=rank) if levels else None


def allows(held: str | None, needed: str) -> bool:
    return rank(held) >= rank(needed)


class EndpointPermissions:
    """The level a principal holds on an endpoint, and the permissions API's reads and writes."""

    def __init__(self, store: IdentityStore, owner_name: str) -> None:
        self.store = store
        self.owner_name = owner_name

    def level(self, principal: Principal, endpoint_id: str) -> str | None:
        if principal.admin:
            return CAN_MANAGE
        return highest(self.store.level(endpoint_id, (principal.key, GROUP_KEY)))

    def require(self, principal: Principal, endpoint_id: str, name: str, needed: str) -> str:
        held = self.level(principal, endpoint_id)
        if not allows(held, needed):
            who = principal.name or principal.key
            raise PermissionDenied(
                f"Principal '{who}' does not have {needed} permission on serving endpoint '{name}'"
                + (f" (it has {held})." if held else ".")
            )
        return held  # type: ignore[return-value]

    def grant_creator(self, principal: Principal, endpoint_id: str) -> None:
        if not principal.admin:
            self.store.set_acl(endpoint_id, {principal.key: CAN_MANAGE}, replace=False)

    def update(self, endpoint_id: str, body: Any, *, replace: bool) -> dict[str, Any]:
        entries = parse_acl(body, self._resolve)
        self.store.set_acl(endpoint_id, entries, replace=replace)
        return self.describe(endpoint_id)

    def describe(self, endpoint_id: str) -> dict[str, Any]:
        """ServingEndpointPermissions: the owner (inherited from the root), then each ACL row."""
        names = self.store.names()
        acl: list[dict[str, Any]] = [
            {
                "user_name": self.owner_name,
                "display_name": self.owner_name,
                "all_permissions": [_inherited(CAN_MANAGE)],
            }
        ]
        for key, level in sorted(self.store.acl(endpoint_id).items()):
            entry: dict[str, Any]
            if key == GROUP_KEY:
                entry = {"group_name": USERS_GROUP, "display_name": USERS_GROUP}
            else:
                entry = {"service_principal_name": key, "display_name": names.get(key, key)}
            entry["all_permissions"] = [{"permission_level": level, "inherited": False}]
            acl.append(entry)
        return {
            "object_id": f"{ROOT_OBJECT}{endpoint_id}",
            "object_type": OBJECT_TYPE,
            "access_control_list": acl,
        }

    def _resolve(self, entry: dict[str, Any]) -> str:
        named = [k for k in ("service_principal_name", "user_name", "group_name") if k in entry]
        if len(named) != 1 or not isinstance(entry[named[0]], str):
            raise InvalidParameterValue(
                "Each access_control_list entry names exactly one of service_principal_name, user_name "
                "or group_name, as a string."
            )
        if entry.get("group_name") is not None:
            if entry["group_name"] != USERS_GROUP:
                group = str(entry["group_name"])[:40]
                raise InvalidParameterValue(f"Group '{group}' does not exist; only 'users' does.")
            return GROUP_KEY
        ref = entry.get("service_principal_name")
        if ref is None:
            ref = entry.get("user_name")
            if ref == self.owner_name:
                raise InvalidParameterValue(
                    f"'{ref}' is the admin and always has CAN_MANAGE; its permission cannot be changed."
                )
        if not isinstance(ref, str):
            raise InvalidParameterValue(
                "Each access_control_list entry names one of service_principal_name, user_name or group_name."
            )
        return self.store.principal(ref).application_id


def parse_acl(body: Any, resolve: Any) -> dict[str, str]:
    """{"access_control_list": [{<who>, "permission_level"}]} -> {principal key: level}."""
    if not isinstance(body, dict):
        raise InvalidParameterValue("The request body must be a JSON object.")
    raw = body.get("access_control_list", [])
    if not isinstance(raw, list):
        raise InvalidParameterValue("access_control_list must be a list.")
    out: dict[str, str] = {}
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise InvalidParameterValue(f"access_control_list[{i}] must be a JSON object.")
        level = entry.get("permission_level")
        if level not in LEVELS:
            raise InvalidParameterValue(
                f"access_control_list[{i}].permission_level must be one of {', '.join(LEVELS)}; "
                f"got {level!r:.40}."
            )
        out[resolve(entry)] = level
    return out


def _inherited(level: str) -> dict[str, Any]:
    return {"permission_level": level, "inherited": True, "inherited_from_object": [ROOT_OBJECT]}


def permission_levels() -> dict[str, Any]:
    return {"permission_levels": [{"permission_level": lv, "description": DESCRIPTIONS[lv]} for lv in LEVELS]}
