"""Fixture model: sleeps `delay` seconds (the largest in the batch), then echoes the delays."""

import time

import mlflow


class Slow(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        time.sleep(float(model_input["delay"].max()))
        return model_input["delay"].tolist()


mlflow.models.set_model(Slow())
