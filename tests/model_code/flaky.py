"""Fixture model: fails on a known share of inputs, deterministically.

An input `x` fails when crc32(str(int(x))) % 100 < FLAKY_PERCENT (an environment variable, set
through the served entity's environment_vars; 0 when unset), so a test knows exactly which
requests fail and the share over many inputs is FLAKY_PERCENT %. Otherwise it answers x * 2,
after sleeping FLAKY_DELAY_S seconds (0 when unset) once per predict call; on the inputs that
`wrong(x, FLAKY_WRONG_PERCENT)` selects (0 % when unset) it answers x * 2 + 1 instead, a wrong
answer for the quality guard's tests (ground truth 2x).
"""

import os
import time
import zlib

import mlflow


def fails(x: float, percent: int) -> bool:
    return zlib.crc32(str(int(x)).encode()) % 100 < percent


def wrong(x: float, percent: int) -> bool:
    return zlib.crc32(f"wrong-{int(x)}".encode()) % 100 < percent


class Flaky(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        percent = int(os.environ.get("FLAKY_PERCENT", "0"))
        time.sleep(float(os.environ.get("FLAKY_DELAY_S", "0")))
        if any(fails(x, percent) for x in model_input["x"]):
            raise ValueError("flaky: this input is one of the failing share")
        wrong_percent = int(os.environ.get("FLAKY_WRONG_PERCENT", "0"))
        return [x * 2 + 1 if wrong(x, wrong_percent) else x * 2 for x in model_input["x"]]


mlflow.models.set_model(Flaky())
