"""Short-lived OAuth access tokens minted by `/oidc/v1/token`, HMAC-signed by this server.

Two scopes: `all-apis` (an OAuth M2M client's control-plane token, which the SDK needs before it
can ask for a data-plane token) and `serving-endpoints:<name>` (querying one endpoint through the
route-optimized listener, and nothing else). Verification is one HMAC over a few hundred bytes,
cheap enough for every data-plane request. The key is random per server: a restart revokes all.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any

PREFIX = "jsv1."
ALL_APIS = "all-apis"
ENDPOINT_SCOPE = "serving-endpoints:"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    def __init__(self, key: bytes | None = None, clock: Callable[[], float] = time.time) -> None:
        self._key = key or secrets.token_bytes(32)
        self._clock = clock
        self._cache: dict[str, dict[str, Any]] = {}  # verified tokens: the data plane resends one token

    def mint(self, subject: str, scope: str, ttl_s: int) -> str:
        claims = {
            "sub": subject,
            "scope": scope,
            "exp": int(self._clock()) + ttl_s,
            "jti": secrets.token_hex(8),
        }
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{PREFIX}{body}.{self._sign(body)}"

    def verify(self, token: str, scope: str | None = None) -> dict[str, Any] | None:
        """The claims of a valid, unexpired token (of `scope`, if given), else None."""
        claims = self._cache.get(token)
        if claims is None:
            claims = self._check(token)
            if claims is None:
                return None
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[token] = claims
        if claims["exp"] <= self._clock() or (scope is not None and claims["scope"] != scope):
            return None
        return claims

    def _check(self, token: str) -> dict[str, Any] | None:
        if not token.startswith(PREFIX):
            return None
        body, _, signature = token[len(PREFIX) :].partition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            claims = json.loads(_unb64(body))
        except ValueError:
            return None
        if not isinstance(claims, dict) or not {"sub", "scope", "exp"} <= claims.keys():
            return None
        return claims

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


def endpoint_scope(name: str) -> str:
    return ENDPOINT_SCOPE + name


def authorization_details(endpoint_id: str, name: str) -> str:
    """What `data_plane_info.query_info.authorization_details` carries, in Databricks' shape: the
    SDK sends it back verbatim to `/oidc/v1/token`, which reads the endpoint from it."""
    return json.dumps(
        [
            {
                "type": "workspace_permission",
                "object_type": "serving-endpoints",
                "object_path": f"/serving-endpoints/{endpoint_id}",
                "actions": ["query_inference_endpoint"],
                "endpoint_name": name,
            }
        ]
    )


def requested_endpoint(details: str) -> str | None:
    """The endpoint name an `authorization_details` value asks to query, or None if malformed."""
    try:
        items = json.loads(details)
    except ValueError:
        return None
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], dict):
        return None
    item = items[0]
    if item.get("object_type") != "serving-endpoints" or "query_inference_endpoint" not in (
        item.get("actions") or []
    ):
        return None
    name = item.get("endpoint_name")
    return name if isinstance(name, str) else None
