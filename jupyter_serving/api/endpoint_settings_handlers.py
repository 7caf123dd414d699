"""Handlers for an endpoint's settings beside its config: tags, rate limits, AI Gateway,
notifications, telemetry, and its OpenAPI document.

Thin like `handlers`: parse, call `control.endpoint_settings`, render.
"""

from __future__ import annotations

from tornado import web

from jupyter_serving.api.endpoint_openapi import endpoint_openapi
from jupyter_serving.api.handlers import API, NAME, ServingHandler
from jupyter_serving.control import endpoint_settings
from jupyter_serving.errors import (
    ResourceDoesNotExist,
)


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


routes: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"{API}/{NAME}/tags/?", TagsHandler),
    (rf"{API}/{NAME}/rate-limits/?", RateLimitsHandler),
    (rf"{API}/{NAME}/ai-gateway/?", AiGatewayHandler),
    (rf"{API}/{NAME}/notifications/?", NotificationsHandler),
    (rf"{API}/{NAME}/telemetry-config/?", TelemetryConfigHandler),
    (rf"{API}/{NAME}/openapi/?", EndpointOpenApiHandler),
]
