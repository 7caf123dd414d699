"""Fixture model: answers each row with the value of the environment variable it names (or "<unset>")."""

import os

import mlflow


class EnvEcho(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [os.environ.get(name, "<unset>") for name in model_input["var"]]


mlflow.models.set_model(EnvEcho())
