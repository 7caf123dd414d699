"""Databricks' identity routes, locally: service principals (SCIM), tokens, endpoint permissions,
Unity Catalog grants.

Admin-only, except `token/*` (a caller's own tokens), `scim/v2/Me`, the permissions routes, which
need CAN_MANAGE on the endpoint (CAN_VIEW for its permission levels), and reading one's own grants.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from jupyter_serving.api.handlers import ServingHandler
from jupyter_serving.errors import InvalidParameterValue, PermissionDenied, ResourceDoesNotExist
from jupyter_serving.identity.grants import Securable, securable
from jupyter_serving.identity.permissions import CAN_MANAGE, CAN_VIEW, permission_levels
from jupyter_serving.identity.principals import OWNER_KEY, TokenInfo

SCIM = r"/api/2\.0/preview/scim/v2"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


class IdentityHandler(ServingHandler):
    def body_object(self) -> dict[str, Any]:
        body = self.json_body() if self.request.body else {}
        if not isinstance(body, dict):
            raise InvalidParameterValue("The request body must be a JSON object.")
        return body

    def token_json(self, info: TokenInfo) -> dict[str, Any]:
        return info.to_json(self.authority.owner_name, self.authority.store.names())

    def own_key(self) -> str:
        """Whose tokens `token/*` manages: the caller's own (the admin's are OWNER_KEY)."""
        return OWNER_KEY if self.caller.admin else self.caller.key


class ServicePrincipalsHandler(IdentityHandler):
    @web.authenticated
    def get(self) -> None:
        self.require_admin()
        resources = [sp.to_scim() for sp in self.authority.store.principals()]
        start = _int_arg(self.get_query_argument("startIndex", "1"), "startIndex")
        page = resources[max(start, 1) - 1 :]
        self.write_json(
            {"schemas": [LIST_SCHEMA], "totalResults": len(resources), "startIndex": start, "Resources": page}
        )

    @web.authenticated
    def post(self) -> None:
        self.require_admin()
        body = self.body_object()
        sp = self.authority.store.create_principal(body.get("displayName"), body.get("applicationId"))
        self.write_json(sp.to_scim(), status=201)


class ServicePrincipalHandler(IdentityHandler):
    @web.authenticated
    def get(self, sp_id: str) -> None:
        self.require_admin()
        self.write_json(self._find(sp_id).to_scim())

    @web.authenticated
    def delete(self, sp_id: str) -> None:
        self.require_admin()
        self.authority.store.delete_principal(self._find(sp_id).application_id)
        self.set_status(204)
        self.finish()

    def _find(self, sp_id: str) -> Any:
        sp = next((p for p in self.authority.store.principals() if str(p.id) == sp_id), None)
        if sp is None:
            raise ResourceDoesNotExist(f"Service principal with id '{sp_id}' does not exist.")
        return sp


class MeHandler(IdentityHandler):
    """`w.current_user.me()`: who the token belongs to (shown by the panel and the magics)."""

    @web.authenticated
    def get(self) -> None:
        caller = self.caller
        out: dict[str, Any] = {"userName": caller.name, "displayName": caller.name, "active": True}
        out["jupyter_serving"] = {"admin": caller.admin}
        if not caller.admin:
            out["id"], out["applicationId"] = str(caller.id), caller.key
        self.write_json(out)


class OboTokensHandler(IdentityHandler):
    @web.authenticated
    def post(self) -> None:
        self.require_admin()
        body = self.body_object()
        ref = body.get("application_id")
        if not isinstance(ref, str):
            raise InvalidParameterValue("application_id is required: the service principal to get a token.")
        sp = self.authority.store.principal(ref)
        token, info = self.authority.store.create_token(
            sp.application_id, body.get("comment"), body.get("lifetime_seconds")
        )
        self.write_json({"token_info": self.token_json(info), "token_value": token})


class ManagedTokensHandler(IdentityHandler):
    @web.authenticated
    def get(self) -> None:
        self.require_admin()
        self.write_json({"token_infos": [self.token_json(t) for t in self.authority.store.tokens()]})


class ManagedTokenHandler(IdentityHandler):
    @web.authenticated
    def get(self, token_id: str) -> None:
        self.require_admin()
        self.write_json({"token_info": self.token_json(self.authority.store.token(token_id))})

    @web.authenticated
    def delete(self, token_id: str) -> None:
        self.require_admin()
        self.authority.store.revoke(token_id)
        self.write_json({})


class OwnTokenCreateHandler(IdentityHandler):
    """`w.tokens.create`: a token for the caller itself (the admin's reaches the serving API only)."""

    @web.authenticated
    def post(self) -> None:
        body = self.body_object()
        token, info = self.authority.store.create_token(
            self.own_key(), body.get("comment"), body.get("lifetime_seconds")
        )
        self.write_json({"token_info": _public(self.token_json(info)), "token_value": token})


class OwnTokenListHandler(IdentityHandler):
    @web.authenticated
    def get(self) -> None:
        infos = self.authority.store.tokens(self.own_key())
        self.write_json({"token_infos": [_public(self.token_json(t)) for t in infos]})


class OwnTokenDeleteHandler(IdentityHandler):
    @web.authenticated
    def post(self) -> None:
        token_id = self.body_object().get("token_id")
        own = {t.token_id for t in self.authority.store.tokens(self.own_key())}
        if not isinstance(token_id, str) or token_id not in own:
            raise ResourceDoesNotExist(f"Token '{str(token_id)[:40]}' does not exist.")
        self.authority.store.revoke(token_id)
        self.write_json({})


class EndpointPermissionsHandler(IdentityHandler):
    @web.authenticated
    def get(self, endpoint_id: str) -> None:
        self.endpoint_by_id(endpoint_id, CAN_MANAGE)
        self.write_json(self.authority.permissions.describe(endpoint_id))

    @web.authenticated
    def put(self, endpoint_id: str) -> None:
        self._update(endpoint_id, replace=True)

    @web.authenticated
    def patch(self, endpoint_id: str) -> None:
        self._update(endpoint_id, replace=False)

    def _update(self, endpoint_id: str, *, replace: bool) -> None:
        self.endpoint_by_id(endpoint_id, CAN_MANAGE)
        body = self.json_body()  # required: an empty PUT must not silently drop every grant
        self.write_json(self.authority.permissions.update(endpoint_id, body, replace=replace))


class PermissionLevelsHandler(IdentityHandler):
    @web.authenticated
    def get(self, endpoint_id: str) -> None:
        self.endpoint_by_id(endpoint_id, CAN_VIEW)
        self.write_json(permission_levels())


class GrantsReader(IdentityHandler):
    """Unity Catalog grants: the admin reads and changes them; a service principal reads its own."""

    def target(self, securable_type: str, full_name: str) -> Securable:
        return securable(securable_type, full_name)

    def principal_filter(self) -> str | None:
        asked = self.get_query_argument("principal", None) or None
        if self.caller.admin:
            return asked
        if asked is not None and asked not in (self.caller.key, self.caller.name):
            raise PermissionDenied(
                f"Principal '{self.caller.name}' may read only its own grants, not those of '{asked[:200]}'."
            )
        return self.caller.key


class GrantsHandler(GrantsReader):
    """`w.grants.get / update`."""

    @web.authenticated
    def get(self, securable_type: str, full_name: str) -> None:
        target = self.target(securable_type, full_name)
        self.write_json(self.authority.grants.assignments(target, self.principal_filter()))

    @web.authenticated
    def patch(self, securable_type: str, full_name: str) -> None:
        self.require_admin()
        target = self.target(securable_type, full_name)
        self.write_json(self.authority.grants.update(target, self.json_body()))


class PrivilegeAssignmentsHandler(GrantsReader):
    """`w.grants.list`: the paginated form of get (one page here: a securable has few grants)."""

    @web.authenticated
    def get(self, securable_type: str, full_name: str) -> None:
        target = self.target(securable_type, full_name)
        self.write_json(self.authority.grants.assignments(target, self.principal_filter()))


class EffectiveGrantsHandler(GrantsReader):
    """`w.grants.get_effective`: what each principal holds on a securable, inherited grants included."""

    @web.authenticated
    def get(self, securable_type: str, full_name: str) -> None:
        target = self.target(securable_type, full_name)
        self.write_json(self.authority.grants.effective(target, self.principal_filter()))


class EffectiveAssignmentsHandler(GrantsReader):
    """`w.grants.list_effective`: the paginated form of get_effective, under its own key."""

    @web.authenticated
    def get(self, securable_type: str, full_name: str) -> None:
        target = self.target(securable_type, full_name)
        listing = self.authority.grants.effective(target, self.principal_filter())
        self.write_json({"effective_privilege_assignments": listing["privilege_assignments"]})


def _public(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k not in ("created_by_username", "owner_id")}


def _int_arg(value: str, name: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise InvalidParameterValue(f"{name} must be a positive integer.")
    return int(value)


ID = r"(?P<endpoint_id>[^/]+)"
UC = r"/api/2\.1/unity-catalog"
SECURABLE = r"(?P<securable_type>[^/]+)/(?P<full_name>[^/]+)"

identity_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"{SCIM}/ServicePrincipals/?", ServicePrincipalsHandler),
    (rf"{SCIM}/ServicePrincipals/(?P<sp_id>[^/]+)/?", ServicePrincipalHandler),
    (rf"{SCIM}/Me/?", MeHandler),
    (r"/api/2\.0/token-management/on-behalf-of/tokens/?", OboTokensHandler),
    (r"/api/2\.0/token-management/tokens/?", ManagedTokensHandler),
    (r"/api/2\.0/token-management/tokens/(?P<token_id>[^/]+)/?", ManagedTokenHandler),
    (r"/api/2\.0/token/create/?", OwnTokenCreateHandler),
    (r"/api/2\.0/token/list/?", OwnTokenListHandler),
    (r"/api/2\.0/token/delete/?", OwnTokenDeleteHandler),
    (rf"/api/2\.0/permissions/serving-endpoints/{ID}/permissionLevels/?", PermissionLevelsHandler),
    (rf"/api/2\.0/permissions/serving-endpoints/{ID}/?", EndpointPermissionsHandler),
    (rf"{UC}/permissions/{SECURABLE}/?", GrantsHandler),
    (rf"{UC}/effective-permissions/{SECURABLE}/?", EffectiveGrantsHandler),
    (rf"{UC}/privilege-assignments/{SECURABLE}/?", PrivilegeAssignmentsHandler),
    (rf"{UC}/effective-privilege-assignments/{SECURABLE}/?", EffectiveAssignmentsHandler),
]
