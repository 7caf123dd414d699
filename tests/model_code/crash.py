"""Fixture model: the worker process dies (like a segfault) when any input `x` is negative."""

import os

import mlflow


class Crash(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        if (model_input["x"] < 0).any():
            os._exit(3)
        return (model_input["x"] * 2).tolist()


mlflow.models.set_model(Crash())
