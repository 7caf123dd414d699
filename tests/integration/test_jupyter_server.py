"""The API hosted by Jupyter Server: in-process through pytest-jupyter, and a real `jupyter server` process."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from serving_support import IRIS_COLUMNS, IRIS_ROWS, MlflowEnv, jupyter_url
from tornado.httpclient import HTTPClientError

from jupyter_serving.promotion.models import environ


@pytest.fixture
def jp_server_config(tmp_path: Path, mlflow_env: MlflowEnv) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_serving": True},
            "allow_unauthenticated_access": False,
        },
        "ServingSettings": {"state_dir": str(tmp_path / "serving-state")},
    }


async def test_api_inside_jupyter_uses_jupyters_auth_and_base_url(jp_fetch: Any, jp_base_url: str) -> None:
    assert jp_base_url != "/"  # pytest-jupyter's /a%40b/ proves every route honours base_url
    well_known = await jp_fetch(".well-known", "databricks-config", headers={"Authorization": ""})
    assert json.loads(well_known.body)["oidc_endpoint"].endswith(f"{jp_base_url}oidc")
    with pytest.raises(HTTPClientError) as denied:
        await jp_fetch("api", "2.0", "serving-endpoints", headers={"Authorization": ""})
    assert denied.value.code == 401
    body = {
        "name": "jp-ep",
        "config": {"served_entities": [{"entity_name": "iris-lr", "entity_version": "1"}]},
    }
    created = json.loads(
        (await jp_fetch("api", "2.0", "serving-endpoints", method="POST", body=json.dumps(body))).body
    )
    assert created["state"]["config_update"] == "IN_PROGRESS"
    deadline = time.monotonic() + 90
    while (ep := json.loads((await jp_fetch("api", "2.0", "serving-endpoints", "jp-ep")).body))["state"][
        "config_update"
    ] == "IN_PROGRESS":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert ep["state"]["ready"] == "READY"
    payload = {"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    answer = await jp_fetch(
        "serving-endpoints", "jp-ep", "invocations", method="POST", body=json.dumps(payload)
    )
    assert json.loads(answer.body) == {"predictions": [0, 2, 1]}
    assert answer.headers["served-model-name"] == "iris-lr-1"
    deleted = await jp_fetch("api", "2.0", "serving-endpoints", "jp-ep", method="DELETE")
    assert json.loads(deleted.body) == {}


def test_installed_extension_serves_databricks_sdk_in_jupyter_server(
    mlflow_env: MlflowEnv, tmp_path: Path
) -> None:
    """`jupyter server` alone (auto-enabled extension, base URL prefix) is a Databricks host for the SDK."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.service.serving import DataframeSplitInput, EndpointCoreConfigInput, ServedEntityInput

    runtime = tmp_path / "runtime"
    env = {
        **os.environ,
        **mlflow_env.env,
        "JUPYTER_RUNTIME_DIR": str(runtime),
        "JUPYTER_SERVING_STATE_DIR": str(tmp_path / "state"),
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "server",
        "--no-browser",
        "--ServerApp.port=0",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.allow_root=True",
        "--IdentityProvider.token=jtoken",
        "--ServerApp.base_url=/prefix/",
        f"--ServerApp.root_dir={tmp_path}",
    ]
    log = open(tmp_path / "jupyter.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = jupyter_url(proc, runtime, "jtoken", log=tmp_path / "jupyter.log")
        w = WorkspaceClient(host=url.rstrip("/"), token="jtoken", auth_type="pat")
        assert url.endswith("/prefix/")
        entity = ServedEntityInput(
            entity_name="iris-lr", entity_version="1", workload_size="Small", scale_to_zero_enabled=False
        )
        endpoint = w.serving_endpoints.create_and_wait(
            name="jsrv-ep",
            config=EndpointCoreConfigInput(name="jsrv-ep", served_entities=[entity]),
            timeout=datetime.timedelta(minutes=3),
        )
        assert endpoint.state.ready.value == "READY"
        answer = w.serving_endpoints.query(
            name="jsrv-ep", dataframe_split=DataframeSplitInput(columns=IRIS_COLUMNS, data=IRIS_ROWS)
        )
        assert answer.predictions == [0, 2, 1]
        assert [e.name for e in w.serving_endpoints.list()] == ["jsrv-ep"]
        _mlflow_databricks_target_predicts(url, "jtoken", "jsrv-ep")
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "the endpoint's workers run as children of the Jupyter server"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers outlived the server: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _mlflow_databricks_target_predicts(url: str, token: str, endpoint: str) -> None:
    """MLflow's get_deploy_client("databricks") against the same Jupyter server, as users configure it."""
    from mlflow.deployments import get_deploy_client

    databricks = {
        "DATABRICKS_HOST": url.rstrip("/"),
        "DATABRICKS_TOKEN": token,
        "DATABRICKS_AUTH_TYPE": "pat",
    }
    with environ(databricks):
        client = get_deploy_client("databricks")
        assert endpoint in [e["name"] for e in client.list_endpoints()]
        answer = client.predict(
            endpoint=endpoint, inputs={"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
        )
        assert answer["predictions"] == [0, 2, 1]


async def test_service_principal_token_inside_jupyter_reaches_serving_routes_only(jp_fetch: Any) -> None:
    """Jupyter's IdentityProvider never sees service-principal tokens: kernels, contents and the rest
    refuse them, while the serving API takes them with their endpoint permissions."""
    sp = json.loads(
        (
            await jp_fetch(
                "api", "2.0", "preview", "scim", "v2", "ServicePrincipals", method="POST",
                body=json.dumps({"displayName": "jp-app"}),
            )
        ).body
    )  # fmt: skip
    made = await jp_fetch(
        "api", "2.0", "token-management", "on-behalf-of", "tokens", method="POST",
        body=json.dumps({"application_id": sp["applicationId"], "lifetime_seconds": 600}),
    )  # fmt: skip
    auth = {"Authorization": f"Bearer {json.loads(made.body)['token_value']}"}
    listed = await jp_fetch("api", "2.0", "serving-endpoints", headers=auth)
    assert json.loads(listed.body) == {"endpoints": []}
    me = json.loads((await jp_fetch("api", "2.0", "preview", "scim", "v2", "Me", headers=auth)).body)
    assert me["userName"] == "jp-app" and me["jupyter_serving"] == {"admin": False}
    refused = [
        ("api", "kernels", "POST", "{}"),
        ("api", "contents", "x.txt", "PUT", json.dumps({"type": "file", "format": "text", "content": "x"})),
        ("api", "terminals", "POST", "{}"),
        ("api", "sessions", "GET", None),
        ("api", "config", "notebook", "GET", None),
        ("api", "contents", "GET", None),
    ]
    for *parts, method, body in refused:
        with pytest.raises(HTTPClientError) as denied:
            await jp_fetch(*parts, method=method, body=body, headers=auth)
        assert denied.value.code in (401, 403), parts
    with pytest.raises(HTTPClientError) as denied:
        await jp_fetch("api", "2.0", "preview", "scim", "v2", "ServicePrincipals", headers=auth)
    assert denied.value.code == 403
