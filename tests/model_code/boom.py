"""Fixture model: raises from predict when any input `x` is negative."""

import mlflow


class Boom(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["x"] < 0).any():
            raise ValueError("boom: negative input is not supported")
        return (model_input["x"] * 2).tolist()


mlflow.models.set_model(Boom())
