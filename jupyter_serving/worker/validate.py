"""One prediction outside any server, in the environment an endpoint would use (`jupyter_serving.validate`).

Run as ``<env python> -m jupyter_serving.worker.validate MODEL_DIR`` with a scoring request (the REST
body) on stdin; prints one JSON line ``{"status", "body"}`` on stdout. What the model prints goes to
stderr, so stdout carries the answer only.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    import mlflow.pyfunc

    from jupyter_serving.worker.scoring import Scorer

    model = mlflow.pyfunc.load_model(argv[1])
    result = Scorer(model, fast_path=False).score([("application/json", sys.stdin.buffer.read())])[0]
    answer.write(json.dumps({"status": result.status, "body": result.body.decode("utf-8", "replace")}) + "\n")
    answer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
