"""Progressive delivery routes, in our own namespace so the Databricks API and SDK stay exact.

    PUT    /api/2.0/jupyter-serving/endpoints/{name}/rollout   {"to", "steps", "step_duration_s", "guard"}
    GET    the same path: the rollout's state, step, reason, the guard's estimate and the timeline
    DELETE the same path: cancel (as POST .../rollout/cancel)
    POST   .../rollout/pause | resume | cancel

Changing a rollout takes CAN_MANAGE on the endpoint (and, to start one, the creator's grants, as a
config update); reading it, CAN_VIEW. The controller is control/progressive.py.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from jupyter_serving.api.handlers import NAME, ServingHandler
from jupyter_serving.control.progressive import ProgressiveDelivery
from jupyter_serving.identity.permissions import CAN_MANAGE, CAN_VIEW

PROGRESSIVE_KEY = "jupyter_serving_progressive"


class _RolloutHandler(ServingHandler):
    @property
    def progressive(self) -> ProgressiveDelivery:
        progressive: ProgressiveDelivery = self.settings[PROGRESSIVE_KEY]
        progressive.start()  # a host that never ran the extension's start hook (see prepare)
        return progressive


class RolloutHandler(_RolloutHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        self.endpoint(name, CAN_VIEW)
        self.write_json(self.progressive.get(name))

    @web.authenticated
    async def put(self, name: str) -> None:
        await self.endpoint_to_update(name)
        self.write_json(self.progressive.put(name, self.json_body()))

    @web.authenticated
    async def delete(self, name: str) -> None:
        self.endpoint(name, CAN_MANAGE)
        self.write_json(await self.progressive.cancel(name))


class _RolloutActionHandler(_RolloutHandler):
    async def act(self, name: str) -> dict[str, Any]:
        raise NotImplementedError

    @web.authenticated
    async def post(self, name: str) -> None:
        self.endpoint(name, CAN_MANAGE)
        self.write_json(await self.act(name))


class RolloutPauseHandler(_RolloutActionHandler):
    async def act(self, name: str) -> dict[str, Any]:
        return self.progressive.pause(name)


class RolloutResumeHandler(_RolloutActionHandler):
    async def act(self, name: str) -> dict[str, Any]:
        return self.progressive.resume(name)


class RolloutCancelHandler(_RolloutActionHandler):
    async def act(self, name: str) -> dict[str, Any]:
        return await self.progressive.cancel(name)


_ROLLOUT = rf"/api/2\.0/jupyter-serving/endpoints/{NAME}/rollout"
routes: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"{_ROLLOUT}/?", RolloutHandler),
    (rf"{_ROLLOUT}/pause/?", RolloutPauseHandler),
    (rf"{_ROLLOUT}/resume/?", RolloutResumeHandler),
    (rf"{_ROLLOUT}/cancel/?", RolloutCancelHandler),
]
