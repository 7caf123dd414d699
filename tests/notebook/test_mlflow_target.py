"""The `jupyter-serving` MLflow deployments target, driven through MLflow's own API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def declared_plugin() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return project["project"]["entry-points"]["mlflow.deployments"]["jupyter-serving"]


@pytest.fixture
def deploy_client(server_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from mlflow.deployments import get_deploy_client
    from mlflow.deployments.interface import plugin_store

    if not any(ep.name == "jupyter-serving" for ep in entry_points(group="mlflow.deployments")):
        # Not pip-installed (a bare checkout): register exactly what pyproject declares.
        plugin_store.register("jupyter-serving", declared_plugin())
    for key, value in server_env.items():
        monkeypatch.setenv(key, value)
    yield get_deploy_client("jupyter-serving")


def test_entry_point_names_this_module() -> None:
    assert declared_plugin() == "jupyter_serving.notebook.mlflow_target"


def test_endpoints_through_mlflow(deploy_client: Any, new_name: Callable[[], str]) -> None:
    from mlflow.exceptions import MlflowException

    name = new_name()
    config = {
        "served_entities": [{"entity_name": "iris-lr", "entity_version": "1", "workload_size": "Small"}]
    }
    created = deploy_client.create_endpoint(name=name, config=config)
    assert created.state.ready == "READY"  # attribute access, as the databricks target returns
    assert name in [e["name"] for e in deploy_client.list_endpoints()]
    answer = deploy_client.predict(
        endpoint=name, inputs={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}
    )
    assert answer.predictions == [0, 2]
    frame_answer = deploy_client.predict(endpoint=name, inputs=pd.DataFrame(ROWS, columns=COLUMNS))
    assert frame_answer["predictions"] == [0, 2]

    two = {
        "served_entities": [
            {"entity_name": "iris-lr", "entity_version": "1"},
            {"entity_name": "iris-lr", "entity_version": "2"},
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "iris-lr-1", "traffic_percentage": 0},
                {"served_model_name": "iris-lr-2", "traffic_percentage": 100},
            ]
        },
    }
    updated = deploy_client.update_endpoint(endpoint=name, config=two)
    assert updated.config.config_version == 2
    assert [e["name"] for e in deploy_client.get_endpoint(name)["config"]["served_entities"]] == [
        "iris-lr-1",
        "iris-lr-2",
    ]
    deploy_client.delete_endpoint(name)
    deploy_client.delete_endpoint(name)  # idempotent, as MLflow's contract asks
    with pytest.raises(MlflowException, match="does not exist") as info:
        deploy_client.get_endpoint(name)
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_create_endpoint_takes_the_full_request_body(deploy_client: Any, new_name: Callable[[], str]) -> None:
    name = new_name()
    body = {"name": name, "config": {"served_entities": [{"entity_name": "iris-lr", "entity_version": "2"}]}}
    created = deploy_client.create_endpoint(config=body)
    assert created.name == name
    assert created.config.served_entities[0]["entity_version"] == "2"


def test_deployments_are_one_entity_endpoints(deploy_client: Any, new_name: Callable[[], str]) -> None:
    from mlflow.exceptions import MlflowException

    name = new_name()
    deploy_client.create_deployment(name, "models:/iris-lr/1", config={"workload_size": "Small"})
    assert deploy_client.get_deployment(name)["config"]["served_entities"][0]["entity_version"] == "1"
    answer = deploy_client.predict(
        deployment_name=name, inputs={"dataframe_split": {"columns": COLUMNS, "data": ROWS}}
    )
    assert answer["predictions"] == [0, 2]
    deploy_client.update_deployment(name, "models:/iris-lr/2")
    assert deploy_client.get_deployment(name)["config"]["served_entities"][0]["entity_version"] == "2"
    assert [e["name"] for e in deploy_client.list_deployments(endpoint=name)] == ["iris-lr-2"]
    deploy_client.delete_deployment(name)
    assert name not in [e["name"] for e in deploy_client.list_deployments()]
    with pytest.raises(MlflowException, match="models:/<name>/<version>"):
        deploy_client.create_deployment(new_name(), "runs:/abc/model")
    with pytest.raises(MlflowException, match="pyfunc"):
        deploy_client.create_deployment(new_name(), "models:/iris-lr/1", flavor="sklearn")


def test_failed_deploy_is_an_mlflow_exception_with_the_reason(
    deploy_client: Any, new_name: Callable[[], str]
) -> None:
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="weights file is corrupt"):
        deploy_client.create_deployment(new_name(), "models:/fail-load/1")


def test_target_help_through_mlflow() -> None:
    from mlflow.deployments import get_deploy_client  # noqa: F401 (registers the plugin store)
    from mlflow.deployments.interface import plugin_store

    plugin_store.register("jupyter-serving", declared_plugin())
    text = plugin_store["jupyter-serving"].target_help()
    assert "create_endpoint" in text and "JUPYTER_SERVING_URL" in text


def test_run_local_serves_until_interrupted(mlflow_env: Any, tmp_path: Path) -> None:
    """`mlflow deployments run-local -t jupyter-serving` calls run_local: it serves until Ctrl-C.

    The process starts with SIGINT ignored, as a non-interactive shell starts background commands
    (CI): a SIGINT must stop it all the same, whatever disposition it inherited."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_SERVING_") and k != "JPY_PARENT_PID"
    }
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "from jupyter_serving.notebook import mlflow_target as t; t.run_local('local-ep', 'models:/iris-lr/1')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = read_until(proc, "Press Ctrl-C", deadline=time.monotonic() + 170)
        url = next(
            line.split(" at ", 1)[1] for line in lines if line.startswith("Serving models:/iris-lr/1 at ")
        )
        token = next(
            line.split("Bearer ", 1)[1] for line in lines if line.startswith("Authorization: Bearer ")
        )
        payload = {"dataframe_split": {"columns": COLUMNS, "data": ROWS}}
        answer = requests.post(url, json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        assert answer.json()["predictions"] == [0, 2]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        with pytest.raises(requests.ConnectionError):
            requests.post(url, json=payload, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_until(proc: subprocess.Popen[str], marker: str, deadline: float) -> list[str]:
    lines: list[str] = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"run_local exited ({proc.wait()}): {json.dumps(lines)}")
        lines.append(line.strip())
        if marker in line:
            return lines
    raise AssertionError(f"run_local did not get ready: {lines}")
