"""The worker package is self-contained: it runs under any interpreter with MLflow, so it must not
pull in the server (Tornado, Jupyter Server, the control plane) or anything else of ours."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import jupyter_serving.worker.__main__, jupyter_serving.worker.batcher, jupyter_serving.worker.protocol
import jupyter_serving.worker.scoring
ours = sorted(m for m in sys.modules if m == "jupyter_serving" or m.startswith("jupyter_serving."))
print(json.dumps({"ours": ours, "tornado": "tornado" in sys.modules, "jupyter_server": "jupyter_server" in sys.modules}))
"""


def test_the_worker_imports_only_its_own_modules() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(loaded["ours"]) <= {
        "jupyter_serving",
        "jupyter_serving._version",
        "jupyter_serving.worker",
        "jupyter_serving.worker.__main__",
        "jupyter_serving.worker.batcher",
        "jupyter_serving.worker.linear",
        "jupyter_serving.worker.protocol",
        "jupyter_serving.worker.request_log",
        "jupyter_serving.worker.scoring",
        "jupyter_serving.worker.streaming",
        "jupyter_serving.worker.traces",
    }, loaded["ours"]
    assert not loaded["tornado"] and not loaded["jupyter_server"]
