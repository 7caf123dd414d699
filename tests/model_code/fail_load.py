"""Fixture model: cannot be loaded, like a model whose weights are corrupt."""

import mlflow


class FailLoad(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        raise RuntimeError("weights file is corrupt (fixture model that never loads)")

    def predict(self, context, model_input, params=None):
        return model_input


mlflow.models.set_model(FailLoad())
