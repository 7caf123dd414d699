"""Who is calling: the server owner (admin) or a service principal, resolved from one request.

Two kinds of credentials reach the serving handlers:
- the Jupyter side: the server's own token, or a Jupyter login (cookie) in JupyterLab. That is the
  server owner, the admin, who may do everything, here and in Jupyter.
- service-principal tokens (`dapi...`, created by the admin). They are checked here, by the serving
  handlers only, and never by Jupyter's IdentityProvider, so they open no kernel, contents, terminal
  or config route: on those, Jupyter sees an unknown token and refuses it.
"""

from __future__ import annotations

import base64
import binascii
from functools import cached_property
from pathlib import Path
from typing import Any

from jupyter_serving.identity.grants import UnityCatalogGrants
from jupyter_serving.identity.permissions import EndpointPermissions
from jupyter_serving.identity.principals import OWNER_KEY, IdentityStore, Principal

AUTHORITY_KEY = "jupyter_serving_authority"
DEFAULT_OWNER_NAME = "admin"


class Authority:
    """The identity store, the permission rules and the owner's name, opened on first use."""

    def __init__(self, state_path: Path, owner_name: str = DEFAULT_OWNER_NAME) -> None:
        self.path = state_path / "identity.sqlite"
        self.owner_name = owner_name or DEFAULT_OWNER_NAME

    @cached_property
    def store(self) -> IdentityStore:
        return IdentityStore(self.path)

    @cached_property
    def permissions(self) -> EndpointPermissions:
        return EndpointPermissions(self.store, self.owner_name)

    @cached_property
    def grants(self) -> UnityCatalogGrants:
        return UnityCatalogGrants(self.store, self.owner_name)

    def owner(self, username: str | None = None) -> Principal:
        return Principal(username or self.owner_name, OWNER_KEY, admin=True)

    def from_token(self, token: str) -> Principal | None:
        principal = self.store.authenticate(token)
        if principal is not None and principal.admin:
            return self.owner()
        return principal

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def bearer_token(headers: Any) -> str | None:
    """The token of `Authorization: Bearer|token <t>` or Databricks' `Basic token:<t>` form."""
    auth = headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme in ("bearer", "token") and value:
        return value
    if scheme == "basic":
        try:
            user, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        if user == "token" and secret:
            return secret
    return None


def strip_query_token(request: Any) -> None:
    """Serving routes take credentials from headers only: a token in a URL ends up in logs and history."""
    for args in (request.query_arguments, request.arguments):
        args.pop("token", None)
