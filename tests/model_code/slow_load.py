"""Fixture model: takes SLOW_LOAD_S seconds (default 4) to load, then doubles `x`."""

import os
import time

import mlflow


class SlowLoad(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        time.sleep(float(os.environ.get("SLOW_LOAD_S", "4")))

    def predict(self, context, model_input, params=None):
        return (model_input["x"] * 2).tolist()


mlflow.models.set_model(SlowLoad())
