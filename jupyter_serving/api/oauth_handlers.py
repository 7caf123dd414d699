"""The OAuth routes of route optimization: discovery, and the token exchange that turns a
control-plane credential into a data-plane token for one endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from urllib.parse import parse_qs

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web

from jupyter_serving.api.handlers import TOKEN_USER, ServingHandler
from jupyter_serving.errors import (
    ServingError,
)
from jupyter_serving.identity.tokens import ALL_APIS, endpoint_scope, requested_endpoint

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_CREDENTIALS = "client_credentials"


class OidcDiscoveryHandler(ServingHandler):
    """What an OAuth M2M client of the SDK reads first, to find the token endpoint."""

    @allow_unauthenticated
    def get(self) -> None:
        base = f"{self.request.protocol}://{self.request.host}{self.base_url.rstrip('/')}"
        self.write_json(
            {
                "issuer": f"{base}/oidc",
                "authorization_endpoint": f"{base}/oidc/v1/authorize",
                "token_endpoint": f"{base}/oidc/v1/token",
                "grant_types_supported": [CLIENT_CREDENTIALS, JWT_BEARER],
            }
        )


class OAuthError(ServingError):
    """RFC 6749 errors carry `error`/`error_description`; we add Databricks' two keys too."""

    error_code = "INVALID_PARAMETER_VALUE"
    http_status = 400

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.http_status = error, status  # type: ignore[misc]
        if status == 401:
            self.error_code = "UNAUTHENTICATED"  # type: ignore[misc]

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "error": self.error, "error_description": self.message}


class OidcTokenHandler(ServingHandler):
    """`POST /oidc/v1/token`: client credentials (M2M, secret = a token this server accepts) give an
    `all-apis` token; the JWT-bearer grant exchanges a control-plane token plus `authorization_details`
    for a token that can only query one route-optimized endpoint, on the data-plane listener."""

    def check_xsrf_cookie(self) -> None:
        """No cookie authenticates this route: the form's credentials do, so XSRF cannot apply."""

    @allow_unauthenticated
    def post(self) -> None:
        form = {k: v[-1] for k, v in parse_qs(self.request.body.decode("utf-8", "replace")).items()}
        grant = form.get("grant_type")
        ttl = self.manager.settings.oauth_token_ttl_s
        if grant == CLIENT_CREDENTIALS:
            client_id, secret = self._client_credentials(form)
            if not self._accepted(secret):
                raise OAuthError("invalid_client", "Client authentication failed.", 401)
            token, scope = self.ingress.signer.mint(client_id, ALL_APIS, ttl), ALL_APIS
        elif grant == JWT_BEARER:
            subject = self._subject(form.get("assertion", ""))
            if subject is None:
                raise OAuthError("invalid_grant", "The assertion is not a token this server accepts.", 401)
            name = requested_endpoint(form.get("authorization_details", ""))
            if name is None:
                raise OAuthError(
                    "invalid_request",
                    "authorization_details must be the endpoint's "
                    "data_plane_info.query_info.authorization_details.",
                )
            endpoint = self.manager.endpoints.get(name)
            if endpoint is None or not endpoint.record.route_optimized:
                raise OAuthError(
                    "invalid_request", f"Endpoint '{name}' does not exist or is not route optimized."
                )
            scope = endpoint_scope(name)
            token = self.ingress.signer.mint(subject, scope, ttl)
        else:
            raise OAuthError(
                "unsupported_grant_type", f"grant_type must be {CLIENT_CREDENTIALS} or {JWT_BEARER}."
            )
        self.write_json({"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": scope})

    def _client_credentials(self, form: dict[str, str]) -> tuple[str, str]:
        auth = self.request.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                client_id, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise OAuthError("invalid_client", "Malformed Basic credentials.", 401) from None
            return client_id, secret
        return form.get("client_id", ""), form.get("client_secret", "")

    def _accepted(self, secret: str) -> bool:
        token = self.identity_provider.token
        return bool(token) and bool(secret) and hmac.compare_digest(secret.encode(), token.encode())

    def _subject(self, assertion: str) -> str | None:
        """Who a control-plane token belongs to: the server token's user, or an all-apis token's subject."""
        if self._accepted(assertion):
            return TOKEN_USER.username
        claims = self.ingress.signer.verify(assertion, ALL_APIS)
        return claims["sub"] if claims else None


routes: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/oidc/\.well-known/oauth-authorization-server/?", OidcDiscoveryHandler),
    (r"/oidc/v1/token/?", OidcTokenHandler),
]
