"""The route-optimized data plane: a lean HTTP listener on its own port, for invocations only.

No Jupyter handler stack in the path (no identity provider, cookies, XSRF, extension hooks):
a bare Tornado application whose one handler checks an endpoint-scoped token from
`/oidc/v1/token` (one cached HMAC check) and hands the body to `DataPlaneGateway.invoke`.
That is what makes it faster than the Jupyter-hosted route; it shares the server's event loop.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from tornado import httpserver, netutil, web
from tornado.log import access_log

from jupyter_serving.dataplane.router import ROUTING_KEY_HEADER
from jupyter_serving.dataplane.tokens import endpoint_scope
from jupyter_serving.errors import (
    EndpointNotFound,
    PayloadTooLarge,
    ServingError,
    Unauthenticated,
    send_error,
)

if TYPE_CHECKING:
    from jupyter_serving.dataplane.gateway import DataPlaneGateway

GATEWAY_KEY = "gateway"


class PermissionDenied(ServingError):
    error_code = "PERMISSION_DENIED"
    http_status = 403


class DataPlaneHandler(web.RequestHandler):
    request_id = ""

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.clear_header("Server")

    async def post(self, name: str, served: str | None = None) -> None:
        gateway: DataPlaneGateway = self.settings[GATEWAY_KEY]
        self.request_id = uuid.uuid4().hex
        headers = self.request.headers
        auth = headers.get("Authorization", "")
        if auth[:7].lower() != "bearer ":
            raise Unauthenticated(
                "The route-optimized URL takes only an OAuth token for this endpoint from /oidc/v1/token."
            )
        claims = gateway.signer.verify(auth[7:].strip())
        if claims is None:
            raise Unauthenticated("The token is invalid or expired; get a new one from /oidc/v1/token.")
        if claims["scope"] != endpoint_scope(name):
            raise PermissionDenied(f"The token does not grant querying endpoint '{name}'.")
        body = self.request.body
        limit = gateway.settings.max_request_bytes
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is {len(body)} bytes; the limit is {limit} bytes.")
        result = await gateway.invoke(
            name,
            served,
            headers.get("Content-Type"),
            body,
            headers.get(ROUTING_KEY_HEADER),
            self.request_id,
            claims["sub"],
        )
        self.set_status(result.status)
        self.set_header("served-model-name", result.served_entity)
        self.set_header("x-request-id", self.request_id)
        self.finish(result.body)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if not isinstance(exc, ServingError):
            exc = ServingError(f"The server failed to handle the request: {exc!r}")
        send_error(self, exc, self.request_id)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ServingError) and value.http_status < 500:
            return  # the client got the reason; the Jupyter-hosted route logs these at INFO
        super().log_exception(typ, value, tb)


class NotFound(DataPlaneHandler):
    async def post(self, *args: Any) -> None:
        raise EndpointNotFound(f"No API found for 'POST {self.request.path}' on the route-optimized URL.")

    get = put = delete = patch = post


def _log_failures(handler: web.RequestHandler) -> None:
    """Tornado logs every request by default; on the hot path only server failures are worth a line."""
    if handler.get_status() >= 500:
        access_log.warning("%d %s %s", handler.get_status(), handler.request.method, handler.request.uri)


NAME = r"(?P<name>[^/]+)"
SERVED = r"(?P<served>[^/]+)"


class DataPlaneListener:
    def __init__(self, gateway: DataPlaneGateway) -> None:
        app = web.Application(
            [
                (rf"/serving-endpoints/{NAME}/invocations/?", DataPlaneHandler),
                (rf"/serving-endpoints/{NAME}/served-models/{SERVED}/invocations/?", DataPlaneHandler),
                (r"/.*", NotFound),
            ],
            log_function=_log_failures,
            **{GATEWAY_KEY: gateway},
        )
        self._server = httpserver.HTTPServer(
            app, xheaders=False, max_body_size=gateway.settings.max_request_bytes + (1 << 20)
        )
        self.url = ""

    def listen(self, port: int, host: str) -> None:
        sockets = netutil.bind_sockets(port, host)
        self._server.add_sockets(sockets)
        bound = sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"

    def close(self) -> None:
        self._server.stop()
