"""Fixture chat model: an MLflow ChatModel that answers "<last message> reversed" word by word,
reporting token usage (words) as an OpenAI chat model does."""

import time

import mlflow
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import (
    ChatChoice,
    ChatChoiceDelta,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatMessage,
    TokenUsageStats,
)


class ReverseChat(ChatModel):
    def _words(self, messages):
        return list(reversed(messages[-1].content.split()))

    def _usage(self, messages, words):
        prompt = len(messages[-1].content.split())
        return TokenUsageStats(
            prompt_tokens=prompt, completion_tokens=len(words), total_tokens=prompt + len(words)
        )

    def predict(self, context, messages, params):
        words = self._words(messages)
        message = ChatMessage(role="assistant", content=" ".join(words))
        return ChatCompletionResponse(
            choices=[ChatChoice(index=0, message=message, finish_reason="stop")],
            usage=self._usage(messages, words),
            model="reverse",
        )

    def predict_stream(self, context, messages, params):
        words = self._words(messages)
        pause = (
            float((params.custom_inputs or {}).get("pause", 0)) if params and params.custom_inputs else 0.0
        )
        for i, word in enumerate(words):
            if pause and i:
                time.sleep(pause)
            delta = ChatChoiceDelta(role="assistant", content=word if i == 0 else " " + word)
            yield ChatCompletionChunk(choices=[ChatChunkChoice(index=0, delta=delta)], model="reverse")
        done = ChatChunkChoice(
            index=0, delta=ChatChoiceDelta(role="assistant", content=""), finish_reason="stop"
        )
        yield ChatCompletionChunk(choices=[done], usage=self._usage(messages, words), model="reverse")


mlflow.models.set_model(ReverseChat())
