"""OpenAI's routes under `/serving-endpoints` (responses, chat completions, completions,
embeddings), as Databricks serves them for the OpenAI client.
"""

from __future__ import annotations

import json
import uuid

from tornado import web

from jupyter_serving.api.handlers import InvocationsHandler
from jupyter_serving.errors import (
    InvalidParameterValue,
    PayloadTooLarge,
)
from jupyter_serving.identity.permissions import CAN_QUERY


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
    (r"/serving-endpoints/chat/completions/?", OpenAiCompatibleHandler),
    (r"/serving-endpoints/responses/?", OpenAiCompatibleHandler),
    (r"/serving-endpoints/completions/?", OpenAiCompatibleHandler),
    (r"/serving-endpoints/embeddings/?", OpenAiCompatibleHandler),
]
