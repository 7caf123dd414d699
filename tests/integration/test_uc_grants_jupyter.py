"""Issue 30's grant rules with Jupyter Server as the host (in-process, pytest-jupyter), through the
real databricks-sdk (run on a thread: the server answers on the test's event loop)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import PermissionDenied
from databricks.sdk.service.catalog import PermissionsChange, Privilege
from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput
from serving_support import MlflowEnv

T = TypeVar("T")
UC_MODEL = "main.default.iris"


@pytest.fixture
def jp_server_config(tmp_path: Path, mlflow_env: MlflowEnv) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_serving": True},
            "allow_unauthenticated_access": False,
        },
        "ServingSettings": {"state_dir": str(tmp_path / "serving-state")},
    }


async def off_loop(call: Callable[[], T]) -> T:
    return await asyncio.to_thread(call)


def served() -> list[ServedEntityInput]:
    return [ServedEntityInput(entity_name=UC_MODEL, entity_version="1", workload_size="Small")]


async def test_grant_rules_inside_jupyter(
    jp_fetch: Any, jp_http_port: int, jp_base_url: str, jp_auth_header: dict[str, str]
) -> None:
    await jp_fetch("api", "2.0", "jupyter-serving", "health")  # starts the extension's manager
    host = f"http://127.0.0.1:{jp_http_port}{jp_base_url.rstrip('/')}"
    owner_token = jp_auth_header["Authorization"].split(None, 1)[1]
    # a client fetches the host's metadata when constructed: off the loop too
    admin = await off_loop(lambda: WorkspaceClient(host=host, token=owner_token, auth_type="pat"))
    sp = await off_loop(lambda: admin.service_principals.create(display_name="jp-creator"))
    app_id = sp.application_id or ""
    obo = await off_loop(lambda: admin.token_management.create_obo_token(application_id=app_id))
    bot = await off_loop(lambda: WorkspaceClient(host=host, token=obo.token_value, auth_type="pat"))
    config = EndpointCoreConfigInput(name="jp-uc", served_entities=served())

    with pytest.raises(PermissionDenied, match="USE_CATALOG on catalog 'main'"):
        await off_loop(lambda: bot.serving_endpoints.create(name="jp-uc", config=config))
    change = PermissionsChange(principal=app_id, add=[Privilege.ALL_PRIVILEGES])
    await off_loop(lambda: admin.grants.update(securable_type="catalog", full_name="main", changes=[change]))
    created = await off_loop(lambda: bot.serving_endpoints.create(name="jp-uc", config=config))
    assert created.response.creator == "jp-creator"

    revoke = PermissionsChange(principal=app_id, remove=[Privilege.ALL_PRIVILEGES])
    await off_loop(lambda: admin.grants.update(securable_type="catalog", full_name="main", changes=[revoke]))
    with pytest.raises(PermissionDenied, match=r"creator of endpoint 'jp-uc'.*USE_CATALOG.*recreate"):
        await off_loop(lambda: admin.serving_endpoints.update_config("jp-uc", served_entities=served()))
    await off_loop(lambda: admin.service_principals.delete(sp.id or ""))
    with pytest.raises(PermissionDenied, match="no longer a member"):
        await off_loop(lambda: admin.serving_endpoints.update_config("jp-uc", served_entities=served()))
    await off_loop(lambda: admin.serving_endpoints.delete("jp-uc"))
