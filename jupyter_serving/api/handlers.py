"""Tornado handlers for the Databricks serving-endpoints API (the same ones in Jupyter and standalone).

Handlers are thin: parse the request, call the `EndpointManager`, render. Every error leaves as
`{"error_code", "message"}` through `ServingHandler.write_error`, the one place errors meet HTTP.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import uuid
from typing import Any

from jupyter_server.auth import IdentityProvider, User
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from tornado import web

from jupyter_serving._version import __version__
from jupyter_serving.api.render import endpoint_detail, endpoint_summary
from jupyter_serving.control.manager import EndpointManager
from jupyter_serving.dataplane.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from jupyter_serving.dataplane.router import ROUTING_KEY_HEADER
from jupyter_serving.errors import (
    EndpointNotFound,
    InternalError,
    InvalidParameterValue,
    PayloadTooLarge,
    ServingError,
    Unauthenticated,
)

MANAGER_KEY = "jupyter_serving_manager"
TOKEN_USER = User(username="token", name="token-authenticated client")
_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    409: "RESOURCE_CONFLICT",
    413: "BAD_REQUEST",
    504: "DEADLINE_EXCEEDED",
}


class ServingHandler(APIHandler):
    """Base: Databricks auth forms, Databricks error bodies."""

    request_id: str | None = None  # set on invocations; returned as x-request-id, errors included

    @property
    def manager(self) -> EndpointManager:
        return self.settings[MANAGER_KEY]

    async def prepare(self) -> None:  # type: ignore[override]
        if not self.manager.started:
            await self.manager.start()
        _accept_basic_token(self.request.headers)
        if self._bearer_token_matches():
            # Same decision Jupyter's stock IdentityProvider makes for this header, minus minting an
            # anonymous user and signing a login cookie on every call: an API client resends the
            # token anyway, and on the invocation path that work was most of the server's cost.
            self.current_user = self._jupyter_current_user = TOKEN_USER
            self._token_authenticated = True
            return
        await super().prepare()

    def _bearer_token_matches(self) -> bool:
        provider = self.identity_provider
        stock = all(
            getattr(type(provider), m) is getattr(IdentityProvider, m)
            for m in ("get_user", "get_token", "get_user_token")
        )
        if not stock or not provider.token:
            return False
        match = provider.auth_header_pat.match(self.request.headers.get("Authorization", ""))
        return bool(match) and hmac.compare_digest(match.group(2).encode(), provider.token.encode())

    def json_body(self) -> Any:
        if not self.request.body:
            raise InvalidParameterValue("The request body is empty; expected a JSON object.")
        try:
            return json.loads(self.request.body)
        except ValueError as exc:
            raise InvalidParameterValue(f"The request body is not valid JSON: {exc}.") from None

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.status_code == 403 and self.current_user is None:
            exc = Unauthenticated(
                "Credential was not sent or was of an unsupported type for this API: "
                "send 'Authorization: Bearer <token>'."
            )
        if isinstance(exc, ServingError):
            error, status = exc, exc.http_status
        elif isinstance(exc, web.HTTPError):
            status = exc.status_code
            message = (exc.log_message % exc.args if exc.args else exc.log_message) or self._reason
            error = ServingError(message)
            error.error_code = _STATUS_CODES.get(status, "INTERNAL_ERROR")  # type: ignore[misc]
        else:
            error, status = InternalError(f"The server failed to handle the request: {exc!r}"), 500
        self.set_status(status)
        for key, value in error.headers.items():
            self.set_header(key, value)
        if self.request_id:
            self.set_header("x-request-id", self.request_id)
        self.finish(json.dumps(error.to_json()))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ServingError) and value.http_status < 500:
            self.log.info(
                "%s %s -> %s %s", self.request.method, self.request.path, value.http_status, value.message
            )
            return
        super().log_exception(typ, value, tb)


def _accept_basic_token(headers: Any) -> None:
    """Databricks documents `curl -u token:<pat>`; Jupyter reads only `token`/`bearer` headers."""
    auth = headers.get("Authorization", "")
    if auth[:6].lower() != "basic ":
        return
    try:
        user, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return
    if user == "token" and secret:
        headers["Authorization"] = f"token {secret}"


class WellKnownConfigHandler(ServingHandler):
    """Databricks SDK clients fetch this, without credentials, each time they are constructed."""

    @allow_unauthenticated
    def get(self) -> None:
        self.write_json({})


class EndpointsHandler(ServingHandler):
    @web.authenticated
    def get(self) -> None:
        self.write_json({"endpoints": [endpoint_summary(e) for e in self.manager.list()]})

    @web.authenticated
    async def post(self) -> None:
        endpoint = await self.manager.create(self.json_body())
        self.write_json(endpoint_detail(endpoint, self.manager.describe_capture))


class EndpointHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        self.write_json(endpoint_detail(self.manager.get(name), self.manager.describe_capture))

    @web.authenticated
    async def delete(self, name: str) -> None:
        await self.manager.delete(name)
        self.write_json({})


class ConfigHandler(ServingHandler):
    @web.authenticated
    async def put(self, name: str) -> None:
        endpoint = await self.manager.update_config(name, self.json_body())
        self.write_json(endpoint_detail(endpoint, self.manager.describe_capture))


class CancelUpdateHandler(ServingHandler):
    @web.authenticated
    async def post(self, name: str) -> None:
        endpoint = await self.manager.cancel_update(name)
        self.write_json(endpoint_detail(endpoint, self.manager.describe_capture))


class LogsHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str, served: str) -> None:
        self.write_json({"logs": self.manager.logs(name, served)})


class BuildLogsHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str, served: str) -> None:
        self.write_json({"logs": self.manager.build_logs(name, served)})


class MetricsHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        self.finish(self.manager.get(name).metrics.render(), set_content_type=METRICS_CONTENT_TYPE)


class HealthHandler(ServingHandler):
    @web.authenticated
    def get(self) -> None:
        self.write_json({"status": "ok", "version": __version__})


class RegisteredModelsHandler(ServingHandler):
    @web.authenticated
    async def get(self) -> None:
        self.write_json({"registered_models": await self.manager.registered_models()})


class InvocationsHandler(ServingHandler):
    """The data plane: one request in, the worker's answer out, never parsed on the way."""

    @web.authenticated
    async def post(self, name: str, served: str | None = None) -> None:
        self.request_id = uuid.uuid4().hex
        body = self.request.body
        limit = self.manager.settings.max_request_bytes
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is {len(body)} bytes; the limit is {limit} bytes.")
        headers = self.request.headers
        result = await self.manager.invoke(
            name,
            served,
            _scoring_content_type(headers.get("Content-Type")),
            body,
            headers.get(ROUTING_KEY_HEADER),
            self.request_id,
        )
        self.set_status(result.status)
        self.set_header("served-model-name", result.served_entity)
        self.set_header("x-request-id", self.request_id)
        self.finish(result.body)


def _scoring_content_type(header: str | None) -> str:
    """`curl -d` without -H sends a form content type; Databricks documents JSON bodies: read it as JSON."""
    if not header or header.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        return "application/json"
    return header


class NotFoundHandler(ServingHandler):
    """Unknown routes under our prefixes answer in Databricks' format, not Jupyter's HTML 404."""

    def _missing(self) -> None:
        raise EndpointNotFound(f"No API found for '{self.request.method} {self.request.path}'")

    @web.authenticated
    def get(self) -> None:
        self._missing()

    @web.authenticated
    def post(self) -> None:
        self._missing()

    @web.authenticated
    def put(self) -> None:
        self._missing()

    @web.authenticated
    def delete(self) -> None:
        self._missing()

    @web.authenticated
    def patch(self) -> None:
        self._missing()


NAME = r"(?P<name>[^/]+)"
SERVED = r"(?P<served>[^/]+)"
API = r"/api/2\.0/serving-endpoints"

default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    (r"/\.well-known/databricks-config/?", WellKnownConfigHandler),
    (rf"{API}/?", EndpointsHandler),
    (rf"{API}/{NAME}/?", EndpointHandler),
    (rf"{API}/{NAME}/config/?", ConfigHandler),
    (rf"{API}/{NAME}/cancel-update/?", CancelUpdateHandler),
    (rf"{API}/{NAME}/served-models/{SERVED}/logs/?", LogsHandler),
    (rf"{API}/{NAME}/served-models/{SERVED}/build-logs/?", BuildLogsHandler),
    (rf"{API}/{NAME}/metrics/?", MetricsHandler),
    (r"/api/2\.0/jupyter-serving/health/?", HealthHandler),
    (r"/api/2\.0/jupyter-serving/registered-models/?", RegisteredModelsHandler),
    (rf"/serving-endpoints/{NAME}/invocations/?", InvocationsHandler),
    (rf"/serving-endpoints/{NAME}/served-models/{SERVED}/invocations/?", InvocationsHandler),
    (rf"{API}/.*", NotFoundHandler),
    (r"/api/2\.0/jupyter-serving/.*", NotFoundHandler),
    (r"/serving-endpoints/.*", NotFoundHandler),
]
