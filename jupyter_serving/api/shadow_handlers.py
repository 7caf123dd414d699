"""Shadow traffic routes, in our own namespace so the Databricks API and SDK stay exact.

    PUT    /api/2.0/jupyter-serving/endpoints/{name}/shadow   {"served_entity_name", "percentage"}
    GET    the same path: the config (404 when none)
    DELETE the same path: stop mirroring

Changing it takes CAN_MANAGE on the endpoint; reading it, CAN_VIEW (as the endpoint itself).
"""

from __future__ import annotations

from tornado import web

from jupyter_serving.api.handlers import NAME, ServingHandler
from jupyter_serving.control import shadow
from jupyter_serving.identity.permissions import CAN_MANAGE, CAN_VIEW


class ShadowHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        self.endpoint(name, CAN_VIEW)
        self.write_json(shadow.get_shadow(self.manager, name))

    @web.authenticated
    async def put(self, name: str) -> None:
        await self.endpoint_to_update(name)
        self.write_json(shadow.put_shadow(self.manager, name, self.json_body()))

    @web.authenticated
    def delete(self, name: str) -> None:
        self.endpoint(name, CAN_MANAGE)
        shadow.delete_shadow(self.manager, name)
        self.write_json({})


routes: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"/api/2\.0/jupyter-serving/endpoints/{NAME}/shadow/?", ShadowHandler),
]
