"""Fixture model: a plain PythonModel with predict_stream over a string input (as a text-generation
pipeline is), yielding one chunk per character of the prompt."""

import mlflow


class Spell(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [str(v).upper() for v in model_input.iloc[:, 0]]

    def predict_stream(self, context, model_input, params=None):
        # MLflow hands predict_stream one input: the row as a dict when the signature has columns.
        value = next(iter(model_input.values())) if isinstance(model_input, dict) else model_input
        text = value[0] if isinstance(value, list) else str(value)
        yield from text.upper()


mlflow.models.set_model(Spell())
