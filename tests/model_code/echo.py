"""Fixture model: returns its numeric input columns multiplied by the `scale` param."""

import mlflow


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        scale = (params or {}).get("scale", 1.0)
        return model_input.select_dtypes("number") * scale


mlflow.models.set_model(Echo())
