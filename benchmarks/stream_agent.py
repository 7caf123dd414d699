"""Benchmark agent (models-from-code): `predict_stream` yields N tiny ResponsesAgent-shaped text deltas
and does no other work, so a streaming benchmark measures the server, not the model.

Input is the agent shape every server here accepts, ``{"input": [...], "custom_inputs": {"n": N}}``
(N defaults to 1). Each chunk is the same small dict (a `response.output_text.delta` event); the
stream ends with one `response.output_item.done` carrying the whole text, as a ResponsesAgent's does.
"""

from collections.abc import Iterator
from typing import Any

import mlflow

DELTA = {"type": "response.output_text.delta", "item_id": "msg-1", "delta": "x"}


def _count(model_input: Any) -> int:
    custom = model_input.get("custom_inputs") if isinstance(model_input, dict) else None
    return int((custom or {}).get("n", 1))


class Chunks(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):  # no hints: MLflow would read them as a schema
        return {"output": [{"type": "message", "id": "msg-1", "text": "x" * _count(model_input)}]}

    def predict_stream(self, context, model_input, params=None) -> Iterator[dict[str, Any]]:
        n = _count(model_input)
        for _ in range(n - 1):
            yield DELTA
        item = {"type": "message", "id": "msg-1", "role": "assistant", "text": "x" * n}
        yield {"type": "response.output_item.done", "item": item}


mlflow.models.set_model(Chunks())
