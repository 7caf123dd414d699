"""Fixture agent that reports token usage: a ResponsesAgent answering "<prefix> <last user message>"
and reporting `usage` (one token per word), in its answer and in a `response.completed` stream event.

`custom_inputs`: `fail` (raise instead of answering: an error row), `prefix` (overrides the PREFIX
environment variable).
"""

import os
from collections.abc import Generator

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse, ResponsesAgentStreamEvent


class UsageAgent(ResponsesAgent):
    def _answer(self, request: ResponsesAgentRequest) -> tuple[list[str], dict]:
        custom = request.custom_inputs or {}
        if custom.get("fail"):
            raise RuntimeError("usage agent asked to fail")
        last = request.input[-1]
        text = last.content if isinstance(last.content, str) else str(last.content)
        words = [custom.get("prefix", os.environ.get("PREFIX", "echo:")), *text.split()]
        usage = {
            "input_tokens": len(text.split()),
            "output_tokens": len(words),
            "total_tokens": len(text.split()) + len(words),
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        }
        return words, usage

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        words, usage = self._answer(request)
        item = self.create_text_output_item(text=" ".join(words), id="msg-1")
        return ResponsesAgentResponse(output=[item], usage=usage)

    def predict_stream(
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        words, usage = self._answer(request)
        for i, word in enumerate(words):
            delta = word if i == 0 else " " + word
            yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=delta, item_id="msg-1"))
        item = self.create_text_output_item(text=" ".join(words), id="msg-1")
        yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)
        completed = {"output": [item], "usage": usage}
        yield ResponsesAgentStreamEvent(type="response.completed", response=completed)


mlflow.models.set_model(UsageAgent())
