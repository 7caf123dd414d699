"""`make demo`: train and register a model, serve it behind a real endpoint, query it, print what happened.

Everything lives under ./.demo (a sqlite MLflow registry and the server's state dir), so the demo
needs no setup and leaves the user's MLflow and Jupyter folders alone.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from jupyter_serving.launch import ServerStartError, launch

IRIS_FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def register_models(tracking_uri: str) -> None:
    """Two versions of an iris classifier, registered once and reused on later runs."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient()
    existing = {m.name for m in client.search_registered_models()}
    if "demo-iris" in existing and len(client.search_model_versions("name = 'demo-iris'")) >= 2:
        return
    mlflow.set_experiment("jupyter-serving-demo")
    X, y = load_iris(return_X_y=True, as_frame=True)
    for model in (LogisticRegression(max_iter=500), DecisionTreeClassifier(max_depth=3, random_state=0)):
        model.fit(X, y)
        with mlflow.start_run(run_name=type(model).__name__):
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(X, model.predict(X)),
                registered_model_name="demo-iris",
                serialization_format="cloudpickle",
                pip_requirements=["scikit-learn", "pandas"],
            )
        print(f"  registered demo-iris ({type(model).__name__})")


def start_server(root: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, str]:
    token = secrets.token_urlsafe(16)
    args = ["--state-dir", str(root / "state")]  # the token goes in the environment, not argv
    try:
        server = launch(
            args,
            info_file=root / "server-info.json",
            log_path=root / "server.log",
            extra_env=env,
            token=token,
        )
    except ServerStartError as exc:
        raise SystemExit(f"the server did not start: {exc}") from exc
    return server.process, server.url, token


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--root", default=".demo", help="folder for the demo's registry and state (default .demo)"
    )
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri}

    print("1. Training and registering two versions of an iris classifier (MLflow, sqlite registry)")
    register_models(tracking_uri)
    print("2. Starting a jupyter-serving server")
    started = time.perf_counter()
    proc, url, token = start_server(root, env)
    print(f"  {url} (up in {time.perf_counter() - started:.1f} s)")
    try:
        run_tour(url, token)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        print("6. Server stopped; its workers with it.")


def run_tour(url: str, token: str) -> None:
    import requests

    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token}"
    api = url + "api/2.0/serving-endpoints"
    http.delete(f"{api}/demo-iris-ab")  # a previous run's endpoint, if the demo was interrupted
    config: dict[str, Any] = {
        "served_entities": [
            {"name": "current", "entity_name": "demo-iris", "entity_version": "1", "workload_size": "Small"},
            {
                "name": "challenger",
                "entity_name": "demo-iris",
                "entity_version": "2",
                "workload_size": "Small",
            },
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "current", "traffic_percentage": 80},
                {"served_model_name": "challenger", "traffic_percentage": 20},
            ]
        },
    }
    print("3. Creating endpoint 'demo-iris-ab' (80% current = v1, 20% challenger = v2) via the REST API")
    started = time.perf_counter()
    _check(http.post(api, json={"name": "demo-iris-ab", "config": config}))
    endpoint = _wait(http, f"{api}/demo-iris-ab")
    print(f"  state {endpoint['state']} after {time.perf_counter() - started:.1f} s")
    rows = [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3], [7.7, 3.0, 6.1, 2.3]]
    print("4. Querying it")
    payload: dict[str, Any] = {"dataframe_split": {"columns": IRIS_FEATURES, "data": rows}}
    answer = _check(http.post(url + "serving-endpoints/demo-iris-ab/invocations", json=payload))
    print(f"  {json.dumps(payload)}\n  -> {answer.json()}  (served by {answer.headers['served-model-name']})")
    seen: Counter[str] = Counter()
    for i in range(200):
        one = {"dataframe_records": [dict(zip(IRIS_FEATURES, rows[i % 3], strict=True))]}
        seen[
            _check(http.post(url + "serving-endpoints/demo-iris-ab/invocations", json=one)).headers[
                "served-model-name"
            ]
        ] += 1
    print(f"  200 more one-row requests were split {dict(seen)} (configured 80/20)")
    metrics = http.get(f"{api}/demo-iris-ab/metrics").text
    print("5. Metrics (Prometheus text, excerpt):")
    for line in metrics.splitlines():
        if line.startswith(("requests_total", "replicas")):
            print(f"  {line}")
    _check(http.delete(f"{api}/demo-iris-ab"))


def _check(response: Any) -> Any:
    if response.status_code >= 400:
        raise SystemExit(
            f"{response.request.method} {response.url} -> {response.status_code} {response.text}"
        )
    return response


def _wait(http: Any, url: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (endpoint := _check(http.get(url)).json())["state"]["config_update"] == "IN_PROGRESS":
        if time.monotonic() > deadline:
            raise SystemExit(f"endpoint not ready after {timeout} s: {endpoint}")
        time.sleep(0.2)
    if endpoint["state"]["ready"] != "READY":
        raise SystemExit(f"deployment failed: {json.dumps(endpoint, indent=2)}")
    return endpoint


if __name__ == "__main__":
    main()
