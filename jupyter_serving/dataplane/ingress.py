"""The data plane's ingress: what stands between a query arriving and the data plane scoring it.

It applies the endpoint's AI Gateway policy (content type, rate limits, usage rows) and then calls
`DataPlane.invoke`. Both hosts of the data plane call `Ingress.invoke`: the Jupyter handler
stack (`/serving-endpoints/.../invocations`) and the route-optimized listener. It wraps the data
plane rather than living inside it, so execution and policy change independently; the composition
root (compose.py) hands it the data plane and the manager (whose records hold each policy). It
also owns the data-plane token signer and the listener.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_serving.capture import SpoolWriteError
from jupyter_serving.dataplane.invoke import LiveStream
from jupyter_serving.dataplane.limits import RateLimiter
from jupyter_serving.dataplane.usage import encode_usage_row, response_usage, usage_table_path
from jupyter_serving.errors import (
    RequestLimitExceeded,
    ServingError,
    UnsupportedMediaType,
)
from jupyter_serving.identity.tokens import TokenSigner

if TYPE_CHECKING:
    from jupyter_serving.control.manager import EndpointManager
    from jupyter_serving.dataplane.invoke import DataPlane, Invocation
    from jupyter_serving.dataplane.listener import DataPlaneListener

log = logging.getLogger("jupyter_serving")

SCORING_TYPES = ("application/json", "text/csv", "application/x-parquet")
# Usage rows are accounting, not the payload: an answer does not wait for its usage row's disk
# sync (which the payload tables' rule does wait for), so a slow sync never stalls the endpoint's
# clients, and a failed one is logged rather than failing a request that was already scored. The
# cost: rows the server still holds for the pipe when it is killed -9 are lost, where payload rows
# are not: at most `writer.HOLD_UNAWAITED_S` (a tenth of a second) of them, which the capture
# service then syncs in one write instead of one per loop iteration. Beyond this many
# unacknowledged rows the answer waits, which bounds the server's queue.
USAGE_BACKLOG = 10_000


def wants_stream(body: bytes) -> bool:
    """Whether a request asks for a streamed answer (`"stream": true`); cheap for the rest: only a
    body that mentions "stream" is parsed."""
    if b'"stream"' not in body:
        return False
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(payload, dict) and payload.get("stream") is True


def scoring_content_type(header: str | None) -> str:
    """The content type to score with, or 415 as `mlflow models serve` answers: an unknown type, a
    charset other than UTF-8, or any parameter but charset (`application/json; format=pandas-split`).

    `curl -d` without -H sends a form content type; Databricks documents JSON bodies: read it as JSON.
    """
    if not header:
        return "application/json"
    mime, *params = (part.strip() for part in header.split(";"))
    mime = mime.lower()
    if mime == "application/x-www-form-urlencoded":
        return "application/json"
    if mime not in SCORING_TYPES:
        raise UnsupportedMediaType(
            f"Content type '{header}' is not supported; use one of {', '.join(SCORING_TYPES)}."
        )
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() != "charset":
            raise UnsupportedMediaType(f"Unrecognized content type parameter '{key.strip()}' in '{header}'.")
        if value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("The scoring server only supports UTF-8.")
    return header


class Ingress:
    def __init__(self, manager: EndpointManager, dataplane: DataPlane) -> None:
        self.manager = manager  # the endpoints' records: their AI Gateway config
        self.dataplane = dataplane
        self.settings = manager.settings
        self.limiter = RateLimiter(window_s=self.settings.rate_limit_window_s)
        self.signer = TokenSigner()
        self.listener: DataPlaneListener | None = None
        self._usage_tables: dict[tuple[str, int], Path] = {}  # (endpoint id, config version) -> table

    # ----------------------------------------------------------------- lifecycle
    @property
    def started(self) -> bool:
        return self.listener is not None

    def start(self) -> None:
        """Open the route-optimized listener (once; it shares this process's event loop)."""
        if self.listener is None:
            from jupyter_serving.dataplane.listener import DataPlaneListener

            self.listener = DataPlaneListener(self)
            self.listener.listen(self.settings.data_plane_port, self.settings.data_plane_host)
            # A backend with a data plane of its own (Ray's proxies) shares the token key with it.
            if (attach := getattr(self.manager.backend, "attach_ingress", None)) is not None:
                attach(self)

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def endpoint_url(self, name: str) -> str | None:
        """Where clients query `name` directly: the backend's own data plane where it has one (the
        Ray backend's proxies), else this server's route-optimized listener."""
        backend_url = getattr(self.manager.backend, "endpoint_url", None)
        if backend_url is not None and (url := backend_url(name)) is not None:
            return str(url)
        if self.listener is None:
            return None
        return f"{self.listener.url}/serving-endpoints/{name}/invocations"

    # ----------------------------------------------------------------- invocation
    async def invoke(
        self,
        name: str,
        served: str | None,
        content_type: str | None,
        body: bytes,
        routing_key: str | None,
        request_id: str,
        principal: str,
    ) -> Invocation:
        endpoint = self.manager.get(name)
        record = endpoint.record
        gateway = record.ai_gateway or {}
        tracked = bool((gateway.get("usage_tracking_config") or {}).get("enabled"))
        started, arrived_ms = time.perf_counter(), int(time.time() * 1000)
        try:
            scoring_type = self._admit(name, gateway, content_type, principal)
            result = await self.dataplane.invoke(
                name, served, scoring_type, body, routing_key, request_id, principal
            )
        except ServingError as exc:
            if tracked:
                response = len(json.dumps(exc.to_json()))
                await self._usage(
                    record,
                    request_id,
                    None,
                    arrived_ms,
                    principal,
                    served,
                    exc.http_status,
                    started,
                    body,
                    response,
                )
            raise
        if tracked:
            await self._usage(
                record, request_id, result.client_request_id, arrived_ms, principal,
                result.served_entity, result.status, started, body, len(result.body),
                response_usage(result.body),
            )  # fmt: skip
        return result

    async def open_stream(
        self,
        name: str,
        served: str | None,
        content_type: str | None,
        body: bytes,
        routing_key: str | None,
        request_id: str,
        principal: str,
    ) -> Invocation | LiveStream:
        """`invoke` for a request with `"stream": true`: the same gateway rules, and the usage row
        written when the stream ends (with the token counts the model reported)."""
        endpoint = self.manager.get(name)
        record = endpoint.record
        gateway = record.ai_gateway or {}
        tracked = bool((gateway.get("usage_tracking_config") or {}).get("enabled"))
        started, arrived_ms = time.perf_counter(), int(time.time() * 1000)

        async def usage(
            status: int, served_entity: str | None, crid: str | None, size: int, tokens: Any = None
        ) -> None:
            if tracked:
                await self._usage(
                    record,
                    request_id,
                    crid,
                    arrived_ms,
                    principal,
                    served_entity,
                    status,
                    started,
                    body,
                    size,
                    tokens,
                )

        try:
            scoring_type = self._admit(name, gateway, content_type, principal)
            result = await self.dataplane.open_stream(
                name, served, scoring_type, body, routing_key, request_id, principal
            )
        except ServingError as exc:
            await usage(exc.http_status, served, None, len(json.dumps(exc.to_json())))
            raise
        if isinstance(result, LiveStream):
            result.after = lambda end: usage(
                end.status, result.served_entity, end.client_request_id, len(end.body), end.usage
            )
        else:
            await usage(result.status, result.served_entity, result.client_request_id, len(result.body))
        return result

    def _admit(self, name: str, gateway: dict[str, Any], content_type: str | None, principal: str) -> str:
        """The gateway's checks before scoring: the content type to score with, and the rate limits."""
        scoring_type = scoring_content_type(content_type)
        limits = gateway.get("rate_limits")
        if limits and (wait := self.limiter.admit(name, limits, principal)) is not None:
            raise RequestLimitExceeded(
                f"Endpoint '{name}' is over its rate limit for {principal}; retry after the window renews.",
                headers={"Retry-After": self.limiter.retry_after(wait)},
            )
        return scoring_type

    async def _usage(
        self,
        record: Any,
        request_id: str,
        client_request_id: str | None,
        arrived_ms: int,
        principal: str,
        served: str | None,
        status: int,
        started: float,
        body: bytes,
        response_bytes: int,
        tokens: dict[str, Any] | None = None,
    ) -> None:
        """One usage row; `tokens` is the model's `usage` report (its token counts), if any."""
        key = (record.id, record.config_version)
        table = self._usage_tables.get(key)
        if table is None:
            capture = record.config.auto_capture_config if record.config else None
            table = self._usage_tables[key] = usage_table_path(
                self.settings.catalog_path, record.name, capture
            )
        row = encode_usage_row(
            table, request_id, client_request_id, arrived_ms, principal, record.name, served, status,
            round((time.perf_counter() - started) * 1000), len(body), response_bytes, tokens,
        )  # fmt: skip
        capture = self.manager.capture
        assert capture is not None
        if capture.unacknowledged <= USAGE_BACKLOG and capture.submit_json(row):
            return
        try:  # the service is restarting, or far behind: wait for it rather than queue without bound
            await capture.record_json(row)
        except SpoolWriteError as exc:
            log.error("a usage-tracking row could not be stored durably (the answer was sent): %s", exc)
