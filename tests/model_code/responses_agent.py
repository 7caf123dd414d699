"""Fixture agent: an MLflow ResponsesAgent that answers "<prefix> <last user message>" word by word.

`custom_inputs`: `pause` (seconds between chunks), `fail_after` (raise after that many chunks),
`prefix` (overrides the PREFIX environment variable, which A/B tests set per served entity),
`closed_marker` (a file the agent writes when its stream is closed early: GeneratorExit reached it),
`gate` (a file: after its first chunk the agent waits until the file exists, so a test can see the
first chunk arrive while the model is provably still working on the rest).
"""

import os
import time
from collections.abc import Generator

import mlflow
from mlflow.pyfunc import ResponsesAgent
from mlflow.types.responses import ResponsesAgentRequest, ResponsesAgentResponse, ResponsesAgentStreamEvent


class EchoAgent(ResponsesAgent):
    def _words(self, request: ResponsesAgentRequest) -> list[str]:
        custom = request.custom_inputs or {}
        prefix = custom.get("prefix", os.environ.get("PREFIX", "echo:"))
        last = request.input[-1]
        text = last.content if isinstance(last.content, str) else str(last.content)
        return [prefix, *text.split()]

    @mlflow.trace(span_type="AGENT")
    def predict(self, request: ResponsesAgentRequest) -> ResponsesAgentResponse:
        text = " ".join(self._words(request))
        item = self.create_text_output_item(text=text, id="msg-1")
        return ResponsesAgentResponse(output=[item], custom_outputs=request.custom_inputs)

    def predict_stream(
        self, request: ResponsesAgentRequest
    ) -> Generator[ResponsesAgentStreamEvent, None, None]:
        custom = request.custom_inputs or {}
        pause = float(custom.get("pause", 0))
        fail_after = custom.get("fail_after")
        words = self._words(request)
        try:
            for i, word in enumerate(words):
                if fail_after is not None and i >= int(fail_after):
                    raise RuntimeError(f"agent failed after {i} chunks")
                if pause and i:
                    time.sleep(pause)
                if i == 1 and custom.get("gate"):
                    _wait_for(custom["gate"])
                delta = word if i == 0 else " " + word
                yield ResponsesAgentStreamEvent(**self.create_text_delta(delta=delta, item_id="msg-1"))
        except GeneratorExit:
            if custom.get("closed_marker"):  # written whole, then renamed: a test sees it complete
                with open(custom["closed_marker"] + ".tmp", "w") as marker:
                    marker.write(str(i))
                os.replace(custom["closed_marker"] + ".tmp", custom["closed_marker"])
            raise
        item = self.create_text_output_item(text=" ".join(words), id="msg-1")
        yield ResponsesAgentStreamEvent(type="response.output_item.done", item=item)


def _wait_for(path: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


mlflow.models.set_model(EchoAgent())
