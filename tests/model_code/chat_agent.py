"""Fixture agent: an MLflow ChatAgent that answers the last message upper-cased, word by word."""

import mlflow
from mlflow.pyfunc import ChatAgent
from mlflow.types.agent import ChatAgentChunk, ChatAgentMessage, ChatAgentResponse


class Shout(ChatAgent):
    def _words(self, messages):
        return messages[-1].content.upper().split()

    def predict(self, messages, context=None, custom_inputs=None):
        text = " ".join(self._words(messages))
        return ChatAgentResponse(messages=[ChatAgentMessage(role="assistant", content=text, id="a1")])

    def predict_stream(self, messages, context=None, custom_inputs=None):
        for i, word in enumerate(self._words(messages)):
            delta = ChatAgentMessage(role="assistant", content=(" " if i else "") + word, id="a1")
            yield ChatAgentChunk(delta=delta)


mlflow.models.set_model(Shout())
