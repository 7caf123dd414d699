"""Fixture model: raises from predict when any input `x` is negative, after logging why (a line of
the model's own, which the replica's log names with the request's id)."""

import logging

import mlflow


class Boom(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        negative = int((model_input["x"] < 0).sum())
        if negative:
            logging.getLogger("boom").warning("boom: refusing %d negative input(s)", negative)
            raise ValueError("boom: negative input is not supported")
        return (model_input["x"] * 2).tolist()


mlflow.models.set_model(Boom())
