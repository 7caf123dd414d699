"""Fixture model: takes SLOW_LOAD_S seconds (default 4) to load, then doubles `x`.

With SLOW_LOAD_GATE set to a path, it loads once that file exists instead: a gate the test opens,
so a deployment stays in progress exactly as long as the test needs, whatever the machine's load.
"""

import os
import time

import mlflow


class SlowLoad(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        gate = os.environ.get("SLOW_LOAD_GATE")
        if gate:
            while not os.path.exists(gate):
                time.sleep(0.05)
        else:
            time.sleep(float(os.environ.get("SLOW_LOAD_S", "4")))

    def predict(self, context, model_input, params=None):
        return (model_input["x"] * 2).tolist()


mlflow.models.set_model(SlowLoad())
