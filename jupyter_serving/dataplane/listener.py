"""The route-optimized data plane: a lean HTTP listener on its own port, for invocations only.

No Jupyter handler stack in the path (no identity provider, cookies, XSRF, extension hooks), and
not Tornado's HTTP machinery either: `http11.HttpServer` parses each request with httptools and
this module's `answer` checks the endpoint-scoped token from `/oidc/v1/token` (one cached HMAC
check), routes by path and hands the body to `Ingress.invoke`. It shares the server's
event loop. Every error is a Databricks `{"error_code", "message"}` body with the request id.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from typing import TYPE_CHECKING
from urllib.parse import unquote

from tornado import netutil

from jupyter_serving.dataplane.http11 import HttpServer, Request, Response
from jupyter_serving.dataplane.ingress import wants_stream
from jupyter_serving.dataplane.invoke import LiveStream
from jupyter_serving.dataplane.router import ROUTING_KEY_HEADER
from jupyter_serving.errors import (
    EndpointNotFound,
    PermissionDenied,
    ServingError,
    Unauthenticated,
)
from jupyter_serving.identity.tokens import endpoint_scope

if TYPE_CHECKING:
    from jupyter_serving.dataplane.ingress import Ingress
    from jupyter_serving.dataplane.invoke import Invocation

log = logging.getLogger("jupyter_serving")

_ROUTE = re.compile(r"/serving-endpoints/([^/]+)(?:/served-models/([^/]+))?/invocations/?")
_ROUTING_KEY = ROUTING_KEY_HEADER.lower()


class MethodNotAllowed(ServingError):
    error_code = "BAD_REQUEST"
    http_status = 405


class DataPlaneListener:
    def __init__(self, ingress: Ingress, idle_timeout_s: float | None = None) -> None:
        self.ingress = ingress
        limit = ingress.settings.max_request_bytes
        options = {} if idle_timeout_s is None else {"idle_timeout_s": idle_timeout_s}
        self._http = HttpServer(self.answer, limit, **options)
        self._serving: asyncio.Task[None] | None = None
        self.url = ""

    def listen(self, port: int, host: str) -> None:
        """Bind now (so the URL is known and connections queue in the backlog), serve from the loop."""
        sockets = netutil.bind_sockets(port, host)
        self._serving = asyncio.get_running_loop().create_task(self._http.serve(list(sockets)))
        self._serving.add_done_callback(_report_failure)
        bound = sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.url = f"http://{shown}:{bound[1]}"

    def close(self) -> None:
        self._http.close()

    async def answer(self, request: Request) -> Response:
        request_id = uuid.uuid4().hex
        try:
            result = await self._invoke(request, request_id)
        except ServingError as exc:
            headers = [*exc.headers.items(), ("x-request-id", request_id)]
            if exc.http_status == 405:
                headers.append(("Allow", "POST"))
            if exc.http_status >= 500:
                log.warning("%d %s %s: %s", exc.http_status, request.method, request.target, exc.message)
            return Response(exc.http_status, _json(exc), headers)
        headers = [("served-model-name", result.served_entity), ("x-request-id", request_id)]
        if isinstance(result, LiveStream):
            return Response(200, b"", headers, stream=result, on_disconnect=result.stream.close)
        return Response(result.status, result.body, headers)

    async def _invoke(self, request: Request, request_id: str) -> Invocation | LiveStream:
        path = request.target.split(b"?", 1)[0].decode("latin-1")
        route = _ROUTE.fullmatch(path)
        if route is None:
            raise EndpointNotFound(f"No API found for '{request.method} {path}' on the route-optimized URL.")
        if request.method != "POST":
            raise MethodNotAllowed(f"{request.method} is not supported on {path}; invocations take POST.")
        name, served = unquote(route[1]), route[2] and unquote(route[2])
        ingress = self.ingress
        headers = request.headers
        auth = headers.get("authorization", "")
        if auth[:7].lower() != "bearer ":
            raise Unauthenticated(
                "The route-optimized URL takes only an OAuth token for this endpoint from /oidc/v1/token."
            )
        claims = ingress.signer.verify(auth[7:].strip())
        if claims is None:
            raise Unauthenticated("The token is invalid or expired; get a new one from /oidc/v1/token.")
        if claims["scope"] != endpoint_scope(name):
            raise PermissionDenied(f"The token does not grant querying endpoint '{name}'.")
        body = request.body  # within max_request_bytes: the connection answers 413 to a larger one
        call = ingress.open_stream if wants_stream(body) else ingress.invoke
        return await call(
            name,
            served,
            headers.get("content-type"),
            body,
            headers.get(_ROUTING_KEY),
            request_id,
            claims["sub"],
        )


def _json(exc: ServingError) -> bytes:
    return json.dumps(exc.to_json()).encode()


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("route-optimized listener could not serve: %r", exc)
