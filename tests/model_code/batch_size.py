"""Fixture model: waits `delay` seconds, then answers each row with the size of the batch it was scored in."""

import time

import mlflow


class BatchSize(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(float(model_input["delay"].max()))
        return [len(model_input)] * len(model_input)


mlflow.models.set_model(BatchSize())
