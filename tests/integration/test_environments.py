"""Per-model Python environments: real uv builds from PyPI, real workers in the built interpreters.

Builds are few and share one uv cache and one environment cache for the session; the extra
requirements are tiny pure-Python packages (six at versions other than the server's, inflection,
which the server lacks).
"""

from __future__ import annotations

import importlib.metadata
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_support import MODEL_CODE, MlflowEnv, ServingServer, entity

pytestmark = pytest.mark.timeout(600)

BUILD_TIMEOUT_S = 420.0  # a cold uv cache downloads MLflow and its dependencies once per session
SERVER_SIX = importlib.metadata.version("six")
PYTHON = ".".join(map(str, sys.version_info[:3]))  # the models are logged from this interpreter
PINS = {
    "env-six-old": ["six==1.16.0"],
    "env-six-older": ["six==1.15.0"],
    "env-six-oldest": ["six==1.14.0"],
    "env-inflection": ["inflection==0.5.1"],
    "env-unresolvable": ["six==999.0.1"],
    "env-server-pins": [f"six=={SERVER_SIX}"],
}


@pytest.fixture(scope="module")
def env_models(mlflow_env: MlflowEnv) -> dict[str, list[str]]:
    """Register one `versions` model per pin set (code_paths carries its helper module)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    mlflow.set_experiment("environments")
    for name, pins in PINS.items():
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE / "versions.py"),
                code_paths=[str(MODEL_CODE / "versions_lib" / "pkg_versions.py")],
                signature=infer_signature(pd.DataFrame({"package": ["six"]}), ["1.0"]),
                registered_model_name=name,
                pip_requirements=[f"mlflow=={mlflow.__version__}", *pins],
            )
    return PINS


@pytest.fixture(scope="session")
def env_caches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One uv package cache and one environment cache for every server of the session."""
    root = tmp_path_factory.mktemp("env-caches")
    return {"UV_CACHE_DIR": str(root / "uv"), "JUPYTER_SERVING_ENV_CACHE_DIR": str(root / "envs")}


def _server(mlflow_env: MlflowEnv, caches: dict[str, str], state: Path) -> ServingServer:
    return ServingServer(state, {**mlflow_env.env, **caches}).start()


@pytest.fixture(scope="module")
def server(
    env_models: dict[str, list[str]],
    mlflow_env: MlflowEnv,
    env_caches: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServingServer]:
    server = _server(mlflow_env, env_caches, tmp_path_factory.mktemp("env-serving") / "state")
    yield server
    server.stop()


def ready(server: ServingServer, name: str, config: dict[str, Any]) -> dict[str, Any]:
    assert server.create(name, config).status_code == 200
    endpoint = server.wait_settled(name, timeout=BUILD_TIMEOUT_S)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint
    return endpoint


def versions(server: ServingServer, name: str, served: str | None = None, *packages: str) -> list[str]:
    payload = {"dataframe_split": {"columns": ["package"], "data": [[p] for p in packages or ("six",)]}}
    response = server.invoke(name, payload, served=served)
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def build_logs(server: ServingServer, name: str, served: str) -> str:
    response = server.api("GET", f"api/2.0/serving-endpoints/{name}/served-models/{served}/build-logs")
    assert response.status_code == 200, response.text
    return response.json()["logs"]


def served(endpoint: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in endpoint["config"]["served_entities"] if e["name"] == name)


def test_conflicting_pins_of_one_endpoint_each_serve_their_own(server: ServingServer) -> None:
    started = time.monotonic()
    config = {
        "served_entities": [entity("env-six-old", 1, name="old"), entity("env-six-older", 1, name="older")],
        "traffic_config": {
            "routes": [
                {"served_model_name": "old", "traffic_percentage": 50},
                {"served_model_name": "older", "traffic_percentage": 50},
            ]
        },
    }
    endpoint = ready(server, "env-pins", config)
    assert versions(server, "env-pins", "old", "six", "python") == ["1.16.0", PYTHON]
    assert versions(server, "env-pins", "older") == ["1.15.0"]
    envs = {name: served(endpoint, name)["local"]["environment"] for name in ("old", "older")}
    assert envs["old"]["name"] != envs["older"]["name"] != "server"
    assert {e["env_manager"] for e in envs.values()} == {"auto"}
    log = build_logs(server, "env-pins", "old")
    assert "Built environment" in log and "six==1.16.0" in log and f"Python {PYTHON}, as logged" in log
    print(f"two environments built and serving in {time.monotonic() - started:.1f} s")


def test_a_package_the_server_lacks_is_installed(server: ServingServer) -> None:
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("inflection")
    ready(server, "env-missing", {"served_entities": [entity("env-inflection", 1, name="m")]})
    assert versions(server, "env-missing", "m", "inflection", "six") == ["0.5.1", SERVER_SIX]
    server.delete("env-missing")


def test_a_second_endpoint_with_the_same_requirements_reuses_the_environment(
    server: ServingServer, env_caches: dict[str, str]
) -> None:
    first = ready(server, "env-reuse-1", {"served_entities": [entity("env-six-old", 1, name="a")]})
    key = served(first, "a")["local"]["environment"]["name"]
    env_log = Path(env_caches["JUPYTER_SERVING_ENV_CACHE_DIR"]) / f"{key}.log"
    built = env_log.read_text()
    second = ready(server, "env-reuse-2", {"served_entities": [entity("env-six-old", 1, name="b")]})
    assert served(second, "b")["local"]["environment"]["name"] == key
    log = build_logs(server, "env-reuse-2", "b")
    assert log.startswith(f"Reusing environment {key}")
    assert log.count("Building Python environment") == 1 and env_log.read_text() == built
    assert versions(server, "env-reuse-2", "b") == ["1.16.0"]
    server.delete("env-reuse-1")
    server.delete("env-reuse-2")


def test_auto_builds_nothing_when_the_server_already_meets_the_requirements(
    server: ServingServer, env_caches: dict[str, str]
) -> None:
    cache = Path(env_caches["JUPYTER_SERVING_ENV_CACHE_DIR"])
    before = sorted(p.name for p in cache.iterdir())
    endpoint = ready(server, "env-auto", {"served_entities": [entity("env-server-pins", 1, name="s")]})
    assert served(endpoint, "s")["local"]["environment"]["name"] == "server"
    assert "already satisfies every requirement" in build_logs(server, "env-auto", "s")
    assert sorted(p.name for p in cache.iterdir()) == before
    forced = {"JUPYTER_SERVING_ENV_MANAGER": "local"}
    local = server.create_ready(
        "env-local", {"served_entities": [entity("env-six-old", 1, environment_vars=forced)]}
    )
    assert versions(server, "env-local") == [SERVER_SIX]  # 'local': the server's six, not the pinned one
    server.delete("env-auto")
    server.delete("env-local")
    assert local["state"]["ready"] == "READY"


def test_an_unresolvable_requirement_fails_the_deployment_with_the_resolvers_message(
    server: ServingServer,
) -> None:
    response = server.create("env-bad", {"served_entities": [entity("env-unresolvable", 1, name="bad")]})
    assert response.status_code == 200, response.text
    endpoint = server.wait_settled("env-bad", timeout=BUILD_TIMEOUT_S)
    assert endpoint["state"] == {"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}
    state = endpoint["pending_config"]["served_entities"][0]["state"]
    assert state["deployment"] == "DEPLOYMENT_FAILED", endpoint
    assert "six==999.0.1" in state["deployment_state_message"]
    assert "unsatisfiable" in state["deployment_state_message"]
    log = build_logs(server, "env-bad", "bad")
    assert "Could not build the Python environment" in log and "unsatisfiable" in log
    server.delete("env-bad")


def test_an_unresolvable_update_fails_while_the_old_config_keeps_serving(server: ServingServer) -> None:
    ready(server, "env-upd", {"served_entities": [entity("env-six-old", 1, name="m")]})
    failures: list[str] = []
    answered = [0]
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            response = server.invoke(
                "env-upd", {"dataframe_split": {"columns": ["package"], "data": [["six"]]}}
            )
            answered[0] += 1
            if response.status_code != 200 or response.json()["predictions"] != ["1.16.0"]:
                failures.append(response.text)

    thread = threading.Thread(target=client)
    thread.start()
    try:
        response = server.api(
            "PUT",
            "api/2.0/serving-endpoints/env-upd/config",
            json={"served_entities": [entity("env-unresolvable", 1, name="m")]},
        )
        assert response.status_code == 200, response.text
        endpoint = server.wait_settled("env-upd", timeout=BUILD_TIMEOUT_S)
    finally:
        stop.set()
        thread.join()
    assert endpoint["state"] == {"ready": "READY", "config_update": "UPDATE_FAILED"}, endpoint
    assert failures == [] and answered[0] > 0
    assert versions(server, "env-upd") == ["1.16.0"]
    server.delete("env-upd")


def test_a_server_killed_mid_build_rebuilds_the_environment_cleanly(
    env_models: dict[str, list[str]],
    mlflow_env: MlflowEnv,
    env_caches: dict[str, str],
    tmp_path: Path,
) -> None:
    cache = Path(env_caches["JUPYTER_SERVING_ENV_CACHE_DIR"])
    state = tmp_path / "state"
    server = _server(mlflow_env, env_caches, state)
    try:
        assert server.create("env-kill", {"served_entities": [entity("env-six-oldest", 1, name="k")]}).ok
        deadline = time.monotonic() + 60
        while not list(cache.glob(".tmp-*/bin/python")):  # the build has started
            assert time.monotonic() < deadline, "no build started"
            time.sleep(0.02)
        half_built = next(iter(cache.glob(".tmp-*"))).name.split("-")[1]
        server.stop(signal.SIGKILL)
        assert not (cache / half_built).exists()
        server = _server(mlflow_env, env_caches, state)
        endpoint = server.wait_settled("env-kill", timeout=BUILD_TIMEOUT_S)
        assert endpoint["state"]["ready"] == "READY", endpoint
        assert served(endpoint, "k")["local"]["environment"]["name"] == half_built
        assert versions(server, "env-kill") == ["1.14.0"]
        assert not list(cache.glob(f".tmp-{half_built}-*"))
        assert build_logs(server, "env-kill", "k").startswith(f"Built environment {half_built}")
    finally:
        server.stop()


def test_validate_predicts_in_the_environment_an_endpoint_would_use(
    env_models: dict[str, list[str]], env_caches: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from jupyter_serving import validate
    from jupyter_serving.settings import ServingSettings

    monkeypatch.setenv("UV_CACHE_DIR", env_caches["UV_CACHE_DIR"])
    settings = ServingSettings(env_cache_dir=env_caches["JUPYTER_SERVING_ENV_CACHE_DIR"])
    frame = pd.DataFrame({"package": ["six", "python"]})
    result = validate(
        "models:/env-six-old/1", frame, pip_requirements_override=["six==1.15.0"], settings=settings
    )
    assert result.ok, result
    assert result.predictions["prediction"].tolist() == ["1.15.0", PYTHON]
    assert "six==1.15.0" in result.build_log and "six==1.16.0" not in result.build_log
    failed = validate("models:/env-unresolvable/1", frame, settings=settings)
    assert not failed.ok and "unsatisfiable" in failed.build_log
