"""Test support: a real MLflow registry with tiny models, and real serving servers in subprocesses."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import requests

from jupyter_serving.backends.local.forking import FORK_SERVER_MODULE
from jupyter_serving.backends.local.replica import WORKER_MODULE
from jupyter_serving.launch import launch

MODEL_CODE = Path(__file__).parent / "model_code"
IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
IRIS_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
STARTUP_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 90.0


T = TypeVar("T")


def eventually(
    check: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.05,
    what: str = "the condition",
    until: Callable[[T], Any] = bool,
) -> T:
    """Poll `check` until `until(value)` holds (truthy by default), and return that value; fail
    with the last value seen once `timeout` passes.

    The one bounded wait the tests use instead of hand-written loops or fixed sleeps: it returns
    as soon as the state is reached, and never hangs."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout:g} s; last value: {value!r}")
        time.sleep(interval)


def jupyter_url(
    proc: subprocess.Popen[bytes],
    runtime: Path,
    token: str,
    probe: str = "api/status",
    timeout: float = 90.0,
    log: Path | None = None,
) -> str:
    """The URL of a Jupyter server started with `--ServerApp.port=0`, once `probe` answers 200.

    Its jpserver-<pid>.json names the port it chose, but jupyter_server writes that file before it
    listens there (it binds in a callback of its event loop, which a loaded machine runs late), and
    not atomically: the file alone is the wrong signal, so this waits for an answer."""
    path = runtime / f"jpserver-{proc.pid}.json"

    def answering() -> str | None:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None else ""
            raise RuntimeError(f"the Jupyter server exited with {proc.returncode}:\n{tail}")
        try:
            url = str(json.loads(path.read_text())["url"])
            headers = {"Authorization": f"token {token}"}
            return url if requests.get(url + probe, headers=headers, timeout=5).status_code == 200 else None
        except (OSError, ValueError, KeyError, requests.RequestException):
            return None  # not written yet, half written, or not listening yet

    return eventually(answering, timeout, 0.1, f"the Jupyter server answering {probe}")


def worker_processes(server_pid: int, *also: str, fork_servers: bool = False) -> list[psutil.Process]:
    """A server's worker interpreters (replicas and warm spares), told apart from the process tree:
    a spawned one runs `-m jupyter_serving.worker`; a forked one keeps its fork server's command
    line (`-m jupyter_serving.worker.forkserver`), and the fork server itself is the one whose
    parent is the server (listed with `fork_servers`). Processes running a module in `also` (e.g.
    the capture service) are listed too. Shared by the leak tests and benchmarks/scenarios.py."""
    try:
        children = psutil.Process(server_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        with contextlib.suppress(psutil.Error):
            cmdline = child.cmdline()
            if any(module in cmdline for module in also):
                found.append(child)
            elif any(arg.startswith(WORKER_MODULE) for arg in cmdline):
                fork_server = FORK_SERVER_MODULE in cmdline and child.ppid() == server_pid
                if fork_servers or not fork_server:
                    found.append(child)
    return found


@dataclass
class MlflowEnv:
    uri: str
    root: Path

    @property
    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_REGISTRY_URI": self.uri}


def build_registry(root: Path) -> MlflowEnv:
    """Register every fixture model once: iris-lr v1/v2, pyfunc fixtures, a UC-style name, a torch MLP."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("fixtures")
    X, y = load_iris(return_X_y=True, as_frame=True)
    sk_reqs = ["scikit-learn", "pandas"]
    for name, model in (
        ("iris-lr", LogisticRegression(max_iter=500).fit(X, y)),
        ("iris-lr", DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)),
        ("main.default.iris", LogisticRegression(max_iter=500).fit(X, y)),
    ):
        with mlflow.start_run():
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                registered_model_name=name,
                serialization_format="cloudpickle",
                pip_requirements=sk_reqs,
            )
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
    code_models = {
        "echo": (frame, frame, {"scale": 1.0}),
        "fail-load": (frame, frame, None),
        "slow": (pd.DataFrame({"delay": [0.1]}), [0.1], None),
        "boom": (pd.DataFrame({"x": [1.0]}), [2.0], None),
        "batch-size": (pd.DataFrame({"delay": [0.1]}), [1], None),
        "slow-load": (pd.DataFrame({"x": [1.0]}), [2.0], None),
        "crash": (pd.DataFrame({"x": [1.0]}), [2.0], None),
        "env-echo": (pd.DataFrame({"var": ["HOME"]}), ["/root"], None),
        "flaky": (pd.DataFrame({"x": [1.0]}), [2.0], None),
    }
    for name, (example, output, params) in code_models.items():
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE / f"{name.replace('-', '_')}.py"),
                signature=infer_signature(example, output, params=params),
                registered_model_name=name,
                pip_requirements=["mlflow", "pandas"],
            )
    _register_torch(mlflow, np)
    return MlflowEnv(uri, root)


def _register_torch(mlflow: Any, np: Any) -> None:
    import torch
    from mlflow.models import infer_signature

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    example = np.random.default_rng(0).normal(size=(2, 4)).astype(np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(example)).numpy()
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            net,
            name="model",
            signature=infer_signature(example, out),
            input_example=example,
            registered_model_name="torch-mlp",
            pip_requirements=["torch"],
        )


@dataclass
class ServingServer:
    """A `jupyter-serving serve` subprocess and an authenticated HTTP session to it."""

    state_dir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    token: str = "test-token"
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    session: requests.Session = field(default_factory=requests.Session)
    startup_timeout: float = STARTUP_TIMEOUT_S

    def start(self) -> ServingServer:
        server = launch(
            ["--state-dir", str(self.state_dir), *self.args],
            info_file=self.state_dir.parent / f"{self.state_dir.name}-info.json",
            log_path=self.state_dir.parent / f"{self.state_dir.name}-server.log",
            extra_env=self.env,
            timeout=self.startup_timeout,
            token=self.token,
        )
        self.proc, self.url = server.process, server.url
        self.session.headers["Authorization"] = f"Bearer {self.token}"
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    # -- REST helpers
    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.url + path.lstrip("/"), timeout=120, **kwargs)

    def create(self, name: str, config: dict[str, Any], **extra: Any) -> requests.Response:
        return self.api("POST", "api/2.0/serving-endpoints", json={"name": name, "config": config, **extra})

    def get(self, name: str) -> dict[str, Any]:
        response = self.api("GET", f"api/2.0/serving-endpoints/{name}")
        response.raise_for_status()
        return response.json()

    def wait_settled(self, name: str, timeout: float = READY_TIMEOUT_S) -> dict[str, Any]:
        """Poll like the Databricks SDK waiter until the config update is no longer in progress."""
        return eventually(
            lambda: self.get(name),
            timeout,
            0.1,
            f"endpoint {name} finishing its update",
            until=lambda endpoint: endpoint["state"]["config_update"] != "IN_PROGRESS",
        )

    def create_ready(self, name: str, config: dict[str, Any]) -> dict[str, Any]:
        response = self.create(name, config)
        assert response.status_code == 200, response.text
        endpoint = self.wait_settled(name)
        assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint
        return endpoint

    def invoke(
        self, name: str, payload: Any = None, served: str | None = None, **kwargs: Any
    ) -> requests.Response:
        path = f"serving-endpoints/{name}" + (f"/served-models/{served}" if served else "") + "/invocations"
        if payload is not None:
            kwargs["json"] = payload
        return self.api("POST", path, **kwargs)

    def delete(self, name: str) -> requests.Response:
        return self.api("DELETE", f"api/2.0/serving-endpoints/{name}")


def entity(model: str, version: str | int = "1", **extra: Any) -> dict[str, Any]:
    return {"entity_name": model, "entity_version": str(version), "workload_size": "Small", **extra}


def iris_split(rows: list[list[float]] | None = None) -> dict[str, Any]:
    return {"dataframe_split": {"columns": IRIS_COLUMNS, "data": rows or IRIS_ROWS}}
