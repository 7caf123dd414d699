"""The backend seam holds: a server whose backend knows only `backends/base.py` (the in-process
test backend, chosen by `backend_class`) renders, scrapes, samples history and records events.

Everything but the backend is real: the server process, HTTP, the MLflow registry, the observer.
A backend that fills only the typed status fields must be enough for every reader of its status.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serving_support import MlflowEnv, ServingServer, entity, eventually

TESTS = Path(__file__).resolve().parents[1]  # where inprocess_backend.py lives
EP = "seam-ep"


@pytest.fixture
def seam_server(mlflow_env: MlflowEnv, tmp_path: Path) -> ServingServer:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    env = {**mlflow_env.env, "PYTHONPATH": path}
    flags = ["--backend-class", "inprocess_backend.InProcessBackend", "--history-interval-s", "0.2"]
    server = ServingServer(tmp_path / "state", env, flags).start()
    yield server
    server.stop()


def test_a_backend_written_only_against_base_drives_render_metrics_history_and_events(
    seam_server: ServingServer,
) -> None:
    created = seam_server.create_ready(EP, {"served_entities": [entity("iris-lr", 1)]})
    (served,) = created["config"]["served_entities"]
    assert served["state"]["deployment"] == "DEPLOYMENT_READY"
    assert {k: served["local"][k] for k in ("replicas", "ready_replicas", "gpus")} == {
        "replicas": 1,
        "ready_replicas": 1,
        "gpus": [],
    }
    answer = seam_server.invoke(EP, {"dataframe_records": [{"x": 1}]})
    assert answer.status_code == 200 and answer.json()["predictions"] == ["iris-lr-1"]

    metrics = seam_server.api("GET", f"api/2.0/serving-endpoints/{EP}/metrics")
    assert metrics.status_code == 200
    assert 'replicas{served_entity="iris-lr-1"} 1.0' in metrics.text
    assert 'requests_total{served_entity="iris-lr-1",status="200"} 1.0' in metrics.text

    def history() -> dict:
        response = seam_server.api("GET", f"api/2.0/jupyter-serving/endpoints/{EP}/history")
        assert response.status_code == 200, response.text
        return response.json()

    sampled = eventually(
        history,
        30,
        0.1,
        "the observer sampling the in-process deployment",
        until=lambda h: any(1 in e["samples"]["replicas"] for e in h["served_entities"]),
    )
    (samples,) = [e["samples"] for e in sampled["served_entities"] if e["name"] == "iris-lr-1"]
    assert samples["memory_bytes"][-1] is None  # no processes of its own: nothing made up
    assert sampled["sampler"]["ticks"] > 0

    events = seam_server.api("GET", f"api/2.0/jupyter-serving/endpoints/{EP}/events")
    assert events.status_code == 200
    assert "ENDPOINT_CREATED" in [e["type"] for e in events.json()["events"]]
    log = (seam_server.state_dir.parent / f"{seam_server.state_dir.name}-server.log").read_text()
    assert "sampling failed" not in log and "Traceback" not in log
