"""Fixture model: a transformers text-generation pipeline (artifact "pipeline", save_pretrained)
wrapped in a PythonModel whose predict_stream yields text as `generate` makes it, through
transformers' TextIteratorStreamer: how an LLM streams through MLflow 3.17, whose transformers
flavor has no predict_stream of its own."""

import threading

import mlflow


class StreamingGenerator(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import transformers

        self.pipe = transformers.pipeline(
            "text-generation", model=context.artifacts["pipeline"], device="cpu"
        )

    def _prompt(self, model_input):
        value = next(iter(model_input.values())) if isinstance(model_input, dict) else model_input
        if hasattr(value, "iloc"):
            value = value.iloc[0, 0]
        return value[0] if isinstance(value, list) else str(value)

    def predict(self, context, model_input, params=None):
        max_new = int((params or {}).get("max_new_tokens", 8))
        prompts = [str(v) for v in model_input.iloc[:, 0]]
        out = self.pipe(prompts, max_new_tokens=max_new, do_sample=False, return_full_text=False)
        return [o[0]["generated_text"] for o in out]

    def predict_stream(self, context, model_input, params=None):
        from transformers import TextIteratorStreamer

        tokenizer = self.pipe.tokenizer
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = tokenizer(self._prompt(model_input), return_tensors="pt")
        options = {"max_new_tokens": int((params or {}).get("max_new_tokens", 8)), "do_sample": False}
        thread = threading.Thread(
            target=self.pipe.model.generate, kwargs={**inputs, **options, "streamer": streamer}
        )
        thread.start()
        try:
            for text in streamer:
                if text:
                    yield text
        finally:
            thread.join()


mlflow.models.set_model(StreamingGenerator())
