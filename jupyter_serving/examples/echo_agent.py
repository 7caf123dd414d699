"""A minimal MLflow ResponsesAgent that streams "you said: <message>" word by word.

Models-from-code: log it with `mlflow.pyfunc.log_model(python_model=echo_agent_path(), ...)`.
"""

from collections.abc import Iterator

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse, ResponsesAgentStreamEvent


class Echo(ResponsesAgent):
    def predict_stream(self, request: ResponsesAgentRequest) -> Iterator[ResponsesAgentStreamEvent]:
        last = request.input[-1].content
        words = ("you said: " + (last if isinstance(last, str) else str(last))).split()
        for i, word in enumerate(words):
            delta = self.create_text_delta(delta=(" " if i else "") + word, item_id="m1")
            yield ResponsesAgentStreamEvent(**delta)
        item = self.create_text_output_item(text=" ".join(words), id="m1")
        yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)

    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        done = [e.item for e in self.predict_stream(request) if e.type == "response.output_item.done"]
        return ResponsesAgentResponse(output=done)


mlflow.models.set_model(Echo())
