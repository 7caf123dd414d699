"""Handlers for the rest of the serving API: tags, AI Gateway, rate limits, notifications, telemetry,
the per-endpoint OpenAPI document, the OAuth token exchange of route optimization, and the routes of
Databricks features a local server does not have (answered with errors that say so).

Thin like `handlers`: parse, call `control.endpoint_settings` or the gateway, render.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from typing import Any
from urllib.parse import parse_qs

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado import web

from jupyter_serving.api.endpoint_openapi import endpoint_openapi
from jupyter_serving.api.handlers import API, NAME, TOKEN_USER, InvocationsHandler, ServingHandler
from jupyter_serving.control import endpoint_settings
from jupyter_serving.control.permissions import CAN_QUERY
from jupyter_serving.dataplane.tokens import ALL_APIS, endpoint_scope, requested_endpoint
from jupyter_serving.errors import (
    FeatureDisabled,
    InvalidParameterValue,
    PayloadTooLarge,
    ResourceDoesNotExist,
    ServingError,
)

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_CREDENTIALS = "client_credentials"


class TagsHandler(ServingHandler):
    @web.authenticated
    async def patch(self, name: str) -> None:
        await self.endpoint_to_update(name)
        self.write_json({"tags": endpoint_settings.patch_tags(self.manager, name, self.json_body())})


class RateLimitsHandler(ServingHandler):
    @web.authenticated
    async def put(self, name: str) -> None:
        await self.endpoint_to_update(name)
        limits = endpoint_settings.put_rate_limits(self.manager, name, self.json_body())
        self.write_json({"rate_limits": limits})


class AiGatewayHandler(ServingHandler):
    @web.authenticated
    async def put(self, name: str) -> None:
        await self.endpoint_to_update(name)
        self.write_json(await endpoint_settings.put_ai_gateway(self.manager, name, self.json_body()))


class NotificationsHandler(ServingHandler):
    @web.authenticated
    async def patch(self, name: str) -> None:
        await self.endpoint_to_update(name)
        self.write_json(endpoint_settings.patch_notifications(self.manager, name, self.json_body()))


class TelemetryConfigHandler(ServingHandler):
    @web.authenticated
    async def patch(self, name: str) -> None:
        await self.endpoint_to_update(name)
        body = self.json_body() if self.request.body else {}
        self.write_json(self.detail(endpoint_settings.patch_telemetry(self.manager, name, body)))


class EndpointOpenApiHandler(ServingHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        endpoint = self.manager.get(name)
        stored = endpoint.record.config or endpoint.record.pending
        if stored is None:
            raise ResourceDoesNotExist(f"Endpoint '{name}' has no config to describe.")
        entities = list(stored.served_entities)
        signatures = await self.manager.registry.signatures(entities)
        base = f"{self.request.protocol}://{self.request.host}{self.base_url.rstrip('/')}"
        doc = endpoint_openapi(name, base, [(e.name, s) for e, s in zip(entities, signatures, strict=True)])
        self.write_json(doc)


# ----------------------------------------------------------------------- OAuth (route optimization)
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
            token, scope = self.gateway.signer.mint(client_id, ALL_APIS, ttl), ALL_APIS
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
            token = self.gateway.signer.mint(subject, scope, ttl)
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
        claims = self.gateway.signer.verify(assertion, ALL_APIS)
        return claims["sub"] if claims else None


# ----------------------------------------------------------------------- out of scope, said so
def _no_provisioned_throughput() -> FeatureDisabled:
    return FeatureDisabled(
        "Provisioned-throughput (foundation model) endpoints are not available on this server: it "
        "serves MLflow models from the registry. Create an endpoint with POST /api/2.0/serving-endpoints."
    )


class ProvisionedThroughputHandler(ServingHandler):
    @web.authenticated
    def post(self) -> None:
        raise _no_provisioned_throughput()


class ProvisionedThroughputConfigHandler(ServingHandler):
    @web.authenticated
    def put(self, name: str) -> None:
        raise _no_provisioned_throughput()


class ExternalFunctionHandler(ServingHandler):
    @web.authenticated
    def post(self) -> None:
        raise FeatureDisabled(
            "External functions (HTTP requests through Unity Catalog connections) are not available on "
            "this server."
        )


class OpenAiCompatibleHandler(InvocationsHandler):
    """OpenAI's routes under `/serving-endpoints`, as Databricks serves them: `model` names the
    endpoint, the rest is the endpoint's own request. With them the OpenAI client that
    `WorkspaceClient().serving_endpoints.get_open_ai_client()` hands out works unchanged:
    `responses.create` for a ResponsesAgent, `chat.completions.create` for a chat model, streamed
    or not. The request then takes exactly the invocations path (split, limits, capture, usage)."""

    @web.authenticated
    async def post(self) -> None:
        self.request_id = uuid.uuid4().hex
        task = self.request.path.rstrip("/").split("/serving-endpoints/", 1)[-1]
        body = self.json_body()
        if not isinstance(body, dict):
            raise InvalidParameterValue("The request body must be a JSON object.")
        model = body.pop("model", None)
        if not isinstance(model, str) or not model:
            raise InvalidParameterValue("Field 'model' is required: the serving endpoint to query.")
        if not self.caller.admin:
            self.endpoint(model, CAN_QUERY)
        else:
            self.manager.get(model)  # 404 if there is no such endpoint
        if task == "responses" and isinstance(body.get("input"), str):
            # OpenAI accepts a bare string; a ResponsesAgent takes a list of input items.
            body["input"] = [{"role": "user", "content": body["input"]}]
        raw = json.dumps(body).encode()
        limit = self.manager.settings.max_request_bytes
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is {len(raw)} bytes; the limit is {limit} bytes.")
        self.request.headers["Content-Type"] = "application/json"
        await self.answer(model, None, raw)


routes: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"{API}/pt/?", ProvisionedThroughputHandler),
    (rf"{API}/pt/{NAME}/config/?", ProvisionedThroughputConfigHandler),
    (rf"{API}/{NAME}/tags/?", TagsHandler),
    (rf"{API}/{NAME}/rate-limits/?", RateLimitsHandler),
    (rf"{API}/{NAME}/ai-gateway/?", AiGatewayHandler),
    (rf"{API}/{NAME}/notifications/?", NotificationsHandler),
    (rf"{API}/{NAME}/telemetry-config/?", TelemetryConfigHandler),
    (rf"{API}/{NAME}/openapi/?", EndpointOpenApiHandler),
    (r"/api/2\.0/external-function/?", ExternalFunctionHandler),
    (r"/oidc/\.well-known/oauth-authorization-server/?", OidcDiscoveryHandler),
    (r"/oidc/v1/token/?", OidcTokenHandler),
    (r"/serving-endpoints/chat/completions/?", OpenAiCompatibleHandler),
    (r"/serving-endpoints/responses/?", OpenAiCompatibleHandler),
    (r"/serving-endpoints/completions/?", OpenAiCompatibleHandler),
    (r"/serving-endpoints/embeddings/?", OpenAiCompatibleHandler),
]
