"""The "Model Serving" page end to end in headless Chromium, while a bounded load runs: the endpoints
table, an endpoint's live charts, an update in the events and the traffic chart, a failed deploy's
event and badge, the inference table's rows and A/B verdict, logs and the query tab.

Screenshots of every step land in tests/ui/artifacts/<test>/; a failed step leaves NN-step-FAILED.png.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from lab_support import ARTIFACTS, UI_DIR, Lab
from serving_support import entity, iris_split

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

ENDPOINT = "page-ab"
LOAD_LIMIT_S = 420.0  # the load stops with the browser script, or at this bound


def ab_config() -> dict[str, object]:
    return {
        # v2 may scale to zero (after the default 30 min idle: never during the test), v1 may not:
        # the Overview cards must say which.
        "served_entities": [entity("iris-lr", 1), entity("iris-lr", 2, scale_to_zero_enabled=True)],
        "traffic_config": {
            "routes": [
                {"served_model_name": "iris-lr-1", "traffic_percentage": 50},
                {"served_model_name": "iris-lr-2", "traffic_percentage": 50},
            ]
        },
        "auto_capture_config": {"catalog_name": "main", "schema_name": "default", "enabled": True},
    }


def wait_ready(lab: Lab, name: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while (body := lab.api("GET", f"api/2.0/serving-endpoints/{name}").json())["state"]["ready"] != "READY":
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def load(lab: Lab, stop: threading.Event, answered: list[int]) -> None:
    """About 20 requests a second, paced (a load shape, not synchronisation), until told to stop."""
    deadline = time.monotonic() + LOAD_LIMIT_S
    while not stop.is_set() and time.monotonic() < deadline:
        response = lab.api("POST", f"serving-endpoints/{ENDPOINT}/invocations", json=iris_split())
        answered.append(response.status_code)
        stop.wait(0.05)


def write_long_notebook(path: Path) -> None:
    """A notebook taller than the screen, for the Notebook button to append its cell to."""
    cells = [nbformat.v4.new_code_cell(f"cell_{i} = {i}") for i in range(60)]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_page_flow(lab: Lab, browser_tools: tuple[str, str], request: pytest.FixtureRequest) -> None:
    node, chromium = browser_tools
    write_long_notebook(lab.root / "long.ipynb")
    artifacts = ARTIFACTS / request.node.name
    shutil.rmtree(artifacts, ignore_errors=True)
    created = lab.api("POST", "api/2.0/serving-endpoints", json={"name": ENDPOINT, "config": ab_config()})
    assert created.ok, created.text
    stop, answered = threading.Event(), []
    loader = threading.Thread(target=load, args=(lab, stop, answered), daemon=True)
    try:
        wait_ready(lab, ENDPOINT)
        # One request the model refuses (a 400): the flow finds its log line by its request id.
        failed = lab.api(
            "POST",
            f"serving-endpoints/{ENDPOINT}/served-models/iris-lr-1/invocations",
            json={"dataframe_records": [{"petal": 1.0}], "client_request_id": "page-bad-1"},
        )
        assert failed.status_code == 400, failed.text
        loader.start()
        env = {
            **os.environ,
            "LAB_URL": lab.url,
            "LAB_TOKEN": lab.token,
            "ARTIFACTS": str(artifacts),
            "CHROMIUM_PATH": chromium,
            "ENDPOINT": ENDPOINT,
            "FAILED_REQUEST_ID": failed.headers["x-request-id"],
        }
        result = subprocess.run([node, str(UI_DIR / "page_flow.mjs")], cwd=UI_DIR, env=env, capture_output=True,
                                text=True, timeout=540)  # fmt: skip
        stop.set()
        loader.join(timeout=30)
        report = (
            f"{result.stdout}\n{result.stderr}\nbrowser log: {artifacts / 'browser.log'}\nlab log: {lab.log}"
        )
        assert result.returncode == 0, report
        assert "ok   " in result.stdout and "FAIL" not in result.stdout, report
        run_snippets(lab, artifacts)  # while the endpoint still serves
    finally:
        stop.set()
        loader.join(timeout=30)
        lab.api("DELETE", f"api/2.0/serving-endpoints/{ENDPOINT}")
    assert answered and set(answered) == {200}, f"the load saw {sorted(set(answered))}"


def run_snippets(lab: Lab, artifacts: Path) -> None:
    """The query tab's snippets, run as printed, with the token only in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}
    env["DATABRICKS_TOKEN"] = lab.token
    curl = (artifacts / "snippet-curl.txt").read_text()
    assert lab.token not in curl
    out = subprocess.run(["bash", "-c", curl], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["predictions"]) == 1, out.stdout
    for name in ("python-sdk", "mlflow"):
        code = (artifacts / f"snippet-{name}.txt").read_text()
        assert lab.token not in code
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, f"{name}: {out.stderr[-3000:]}"
        assert "predictions" in out.stdout, f"{name}: {out.stdout}"
