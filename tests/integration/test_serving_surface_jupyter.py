"""The new serving routes hosted by Jupyter Server (in-process, pytest-jupyter): they answer like the
standalone server, and the `/api/2.0/...` catch-all takes nothing from Jupyter's own REST API."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from serving_support import MlflowEnv
from tornado.httpclient import HTTPClientError


@pytest.fixture
def jp_server_config(tmp_path: Path, mlflow_env: MlflowEnv) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_serving": True},
            "allow_unauthenticated_access": False,
        },
        "ServingSettings": {"state_dir": str(tmp_path / "serving-state")},
    }


async def _error(jp_fetch: Any, *path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as failed:
        await jp_fetch(*path, **kwargs)
    assert failed.value.response is not None
    assert failed.value.response.headers["Content-Type"] == "application/json"
    return failed.value.code, json.loads(failed.value.response.body)


async def test_gateway_routes_inside_jupyter(jp_fetch: Any) -> None:
    status = json.loads((await jp_fetch("api", "status")).body)  # Jupyter's own route still answers
    assert "started" in status
    code, error = await _error(jp_fetch, "api", "2.0", "no-such-api")
    assert (code, error["error_code"]) == (404, "ENDPOINT_NOT_FOUND")
    discovery = json.loads((await jp_fetch("oidc", ".well-known", "oauth-authorization-server")).body)
    assert discovery["token_endpoint"].endswith("/oidc/v1/token")

    body = {
        "name": "jp-gw",
        "config": {"served_entities": [{"entity_name": "iris-lr", "entity_version": "1"}]},
        "tags": [{"key": "a", "value": "1"}],
        "route_optimized": True,
    }
    await jp_fetch("api", "2.0", "serving-endpoints", method="POST", body=json.dumps(body))
    deadline = time.monotonic() + 90
    while (ep := json.loads((await jp_fetch("api", "2.0", "serving-endpoints", "jp-gw")).body))["state"][
        "config_update"
    ] == "IN_PROGRESS":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    assert ep["route_optimized"] is True and ep["endpoint_url"].endswith(
        "/serving-endpoints/jp-gw/invocations"
    )
    patch = {"add_tags": [{"key": "b", "value": "2"}], "delete_tags": ["a"]}
    tags = json.loads(
        (
            await jp_fetch(
                "api", "2.0", "serving-endpoints", "jp-gw", "tags", method="PATCH", body=json.dumps(patch)
            )
        ).body
    )
    assert tags == {"tags": [{"key": "b", "value": "2"}]}
    code, error = await _error(
        jp_fetch,
        "api", "2.0", "serving-endpoints", "jp-gw", "ai-gateway",
        method="PUT", body=json.dumps({"guardrails": {}}),
    )  # fmt: skip
    assert (code, error["error_code"]) == (400, "INVALID_PARAMETER_VALUE") and "guardrails" in error[
        "message"
    ]
    await jp_fetch("api", "2.0", "serving-endpoints", "jp-gw", method="DELETE")
