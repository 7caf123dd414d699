"""Issue 30: Unity Catalog grants on served models, through the real databricks-sdk against the
standalone host: creator checks at create, creator re-checks at every update, grants that survive a
restart, the CLI, and no leak between endpoint permissions and grants."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, PermissionDenied
from databricks.sdk.service.catalog import PermissionsChange, Privilege
from databricks.sdk.service.serving import (
    EndpointCoreConfigInput,
    EndpointTag,
    ServedEntityInput,
    ServingEndpointAccessControlRequest,
    ServingEndpointPermissionLevel,
)
from serving_support import ServingServer, iris_split

UC_MODEL = "main.default.iris"
RECREATE = "delete the endpoint and recreate it under a principal"


def sdk(server: ServingServer, token: str) -> WorkspaceClient:
    return WorkspaceClient(host=server.url.rstrip("/"), token=token, auth_type="pat")


def principal(admin: WorkspaceClient, name: str) -> tuple[str, str, WorkspaceClient]:
    """A new service principal: (SCIM id, application id, a client holding its token)."""
    sp = admin.service_principals.create(display_name=name)
    token = admin.token_management.create_obo_token(application_id=sp.application_id or "").token_value
    assert sp.id and sp.application_id and token
    return sp.id, sp.application_id, WorkspaceClient(host=admin.config.host, token=token, auth_type="pat")


def grant(
    w: WorkspaceClient, kind: str, name: str, who: str, *privileges: Privilege, revoke: bool = False
) -> None:
    change = (
        PermissionsChange(principal=who, remove=list(privileges))
        if revoke
        else PermissionsChange(principal=who, add=list(privileges))
    )
    w.grants.update(securable_type=kind, full_name=name, changes=[change])


def uc_config(name: str = "", **extra: object) -> EndpointCoreConfigInput:
    served = ServedEntityInput(entity_name=UC_MODEL, entity_version="1", workload_size="Small", **extra)  # type: ignore[arg-type]
    return EndpointCoreConfigInput(name=name, served_entities=[served])


def effective(w: WorkspaceClient, kind: str, name: str, who: str) -> set[tuple[str, str | None]]:
    listing = w.grants.get_effective(securable_type=kind, full_name=name, principal=who)
    return {
        (p.privilege.value, p.inherited_from_name)  # type: ignore[union-attr]
        for a in listing.privilege_assignments or []
        for p in a.privileges or []
    }


def test_create_needs_grants_inherited_from_the_catalog(serving_server: ServingServer) -> None:
    admin = sdk(serving_server, serving_server.token)
    _, app_id, bot = principal(admin, "ucg-creator")

    with pytest.raises(PermissionDenied) as refused:
        bot.serving_endpoints.create(name="ucg-create", config=uc_config())
    assert "USE_CATALOG" in str(refused.value) and "catalog 'main'" in str(refused.value)
    two_level = bot.serving_endpoints.create(
        name="ucg-two-level",
        config=EndpointCoreConfigInput(
            name="ucg-two-level",
            served_entities=[
                ServedEntityInput(entity_name="iris-lr", entity_version="1", workload_size="Small")
            ],
        ),
    )  # a workspace-registry model keeps today's rule: no grants needed
    assert two_level.response.name == "ucg-two-level"

    grant(admin, "catalog", "main", app_id, Privilege.ALL_PRIVILEGES)
    got = admin.grants.get(securable_type="catalog", full_name="main", principal=app_id)
    assert [(a.principal, a.privileges) for a in got.privilege_assignments or []] == [
        (app_id, [Privilege.ALL_PRIVILEGES])
    ]
    assert admin.grants.get(securable_type="function", full_name=UC_MODEL).privilege_assignments in (None, [])
    assert effective(admin, "function", UC_MODEL, app_id) == {("ALL_PRIVILEGES", "main")}

    created = bot.serving_endpoints.create(name="ucg-create", config=uc_config())
    assert created.response.creator == "ucg-creator"
    assert admin.serving_endpoints.get("ucg-create").creator == "ucg-creator"
    for name in ("ucg-create", "ucg-two-level"):
        serving_server.wait_settled(name)
        admin.serving_endpoints.delete(name)


def test_revoke_refuses_updates_whoever_calls_and_regrant_restores(serving_server: ServingServer) -> None:
    admin = sdk(serving_server, serving_server.token)
    _, app_id, bot = principal(admin, "ucg-revoked")
    for kind, name, privilege in (
        ("catalog", "main", Privilege.USE_CATALOG),
        ("schema", "main.default", Privilege.USE_SCHEMA),
        ("function", UC_MODEL, Privilege.EXECUTE),
    ):
        grant(admin, kind, name, app_id, privilege)
    bot.serving_endpoints.create(name="ucg-revoke", config=uc_config())
    serving_server.wait_settled("ucg-revoke")

    grant(admin, "function", UC_MODEL, app_id, Privilege.EXECUTE, revoke=True)
    for caller in (bot, admin):  # the caller may hold everything: the recorded creator is what counts
        with pytest.raises(PermissionDenied) as refused:
            caller.serving_endpoints.update_config(
                "ucg-revoke", served_entities=uc_config(scale_to_zero_enabled=True).served_entities
            )
        message = str(refused.value)
        assert "EXECUTE" in message and f"function '{UC_MODEL}'" in message and RECREATE in message
        with pytest.raises(PermissionDenied):
            caller.serving_endpoints.patch("ucg-revoke", add_tags=[EndpointTag(key="k", value="v")])
        with pytest.raises(PermissionDenied):
            caller.serving_endpoints.put_ai_gateway("ucg-revoke")
    assert serving_server.invoke("ucg-revoke", iris_split()).status_code == 200  # queries keep working

    grant(admin, "schema", "main.default", app_id, Privilege.EXECUTE)  # a schema grant is inherited
    updated = admin.serving_endpoints.update_config(
        "ucg-revoke", served_entities=uc_config(scale_to_zero_enabled=True).served_entities
    )
    assert updated.response.creator == "ucg-revoked"  # never the caller: the creator cannot change
    serving_server.wait_settled("ucg-revoke")
    admin.serving_endpoints.delete("ucg-revoke")


def test_deleted_creator_refuses_updates_with_the_way_out(serving_server: ServingServer) -> None:
    admin = sdk(serving_server, serving_server.token)
    sp_id, app_id, bot = principal(admin, "ucg-leaver")
    grant(admin, "catalog", "main", app_id, Privilege.ALL_PRIVILEGES)
    bot.serving_endpoints.create(name="ucg-leaver", config=uc_config())
    serving_server.wait_settled("ucg-leaver")

    admin.service_principals.delete(sp_id)
    with pytest.raises(PermissionDenied) as refused:
        admin.serving_endpoints.update_config("ucg-leaver", served_entities=uc_config().served_entities)
    message = str(refused.value)
    assert "'ucg-leaver'" in message and "no longer a member" in message and RECREATE in message
    with pytest.raises(PermissionDenied):
        admin.serving_endpoints.patch("ucg-leaver", add_tags=[EndpointTag(key="k", value="v")])
    assert serving_server.invoke("ucg-leaver", iris_split()).status_code == 200
    left = admin.grants.get(securable_type="catalog", full_name="main").privilege_assignments or []
    assert app_id not in {a.principal for a in left}  # its grants went with it
    admin.serving_endpoints.delete("ucg-leaver")  # the way out


def test_endpoint_permissions_and_grants_do_not_leak(serving_server: ServingServer) -> None:
    admin = sdk(serving_server, serving_server.token)
    _, app_id, bot = principal(admin, "ucg-manager")
    serving_server.create_ready(
        "ucg-leak", {"served_entities": [{"entity_name": UC_MODEL, "entity_version": "1"}]}
    )
    endpoint_id = admin.serving_endpoints.get("ucg-leak").id or ""
    acl = [
        ServingEndpointAccessControlRequest(
            service_principal_name=app_id, permission_level=ServingEndpointPermissionLevel.CAN_MANAGE
        )
    ]
    admin.serving_endpoints.update_permissions(endpoint_id, access_control_list=acl)

    assert effective(admin, "function", UC_MODEL, app_id) == set()  # CAN_MANAGE grants nothing here
    with pytest.raises(PermissionDenied) as refused:
        bot.serving_endpoints.create(name="ucg-leak-2", config=uc_config())
    assert "USE_CATALOG" in str(refused.value)
    bot.serving_endpoints.patch("ucg-leak", add_tags=[EndpointTag(key="k", value="v")])  # admin's endpoint

    _, other_id, other = principal(admin, "ucg-granted")
    grant(admin, "catalog", "main", other_id, Privilege.ALL_PRIVILEGES)
    with pytest.raises(PermissionDenied):  # and ALL_PRIVILEGES on the model grants nothing on an endpoint
        other.serving_endpoints.get("ucg-leak")
    with pytest.raises(PermissionDenied):  # a service principal reads only its own grants, changes none
        other.grants.get(securable_type="catalog", full_name="main", principal=app_id)
    with pytest.raises(PermissionDenied):
        grant(other, "catalog", "main", other_id, Privilege.USE_CATALOG)
    own = other.grants.get(securable_type="catalog", full_name="main")
    assert [a.principal for a in own.privilege_assignments or []] == [other_id]
    admin.serving_endpoints.delete("ucg-leak")


def test_account_users_and_bad_grants(serving_server: ServingServer) -> None:
    admin = sdk(serving_server, serving_server.token)
    _, app_id, bot = principal(admin, "ucg-everyone")
    grant(admin, "schema", "main.default", "account users", Privilege.USE_SCHEMA, Privilege.EXECUTE)
    grant(admin, "catalog", "main", "account users", Privilege.USE_CATALOG)
    try:
        assert effective(admin, "function", UC_MODEL, app_id) == {
            ("USE_CATALOG", "main"),
            ("USE_SCHEMA", "main.default"),
            ("EXECUTE", "main.default"),
        }
        bot.serving_endpoints.create(name="ucg-everyone", config=uc_config())
        serving_server.wait_settled("ucg-everyone")
        admin.serving_endpoints.delete("ucg-everyone")
    finally:
        grant(
            admin,
            "schema",
            "main.default",
            "account users",
            Privilege.USE_SCHEMA,
            Privilege.EXECUTE,
            revoke=True,
        )
        grant(admin, "catalog", "main", "account users", Privilege.USE_CATALOG, revoke=True)

    for kind, name, who, privilege, message in (
        ("function", UC_MODEL, app_id, Privilege.USE_CATALOG, "not applicable"),
        ("function", "main.default", app_id, Privilege.EXECUTE, "full name"),
        ("volume", "main.default.v", app_id, Privilege.ALL_PRIVILEGES, "not supported"),
        ("catalog", "main", "nobody", Privilege.SELECT, "Could not find principal"),
        ("catalog", "main", "admin", Privilege.SELECT, "server owner"),
    ):
        with pytest.raises(InvalidParameterValue, match=message):
            grant(admin, kind, name, who, privilege)
    assert admin.grants.get(securable_type="function", full_name=UC_MODEL).privilege_assignments in (None, [])


def cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "jupyter_serving", "grants", *args, "--state-dir", str(state_dir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def test_grants_survive_restart_and_the_cli_writes_them(
    start_server: Callable[..., ServingServer], tmp_path: Path
) -> None:
    state = tmp_path / "uc-state"
    server = start_server(state_dir=state)
    admin = sdk(server, server.token)
    _, app_id, _ = principal(admin, "ucg-durable")
    grant(admin, "catalog", "main", app_id, Privilege.USE_CATALOG)
    server.stop()

    added = cli(
        state, "grant", "schema", "main.default", "--principal", "ucg-durable", "USE_SCHEMA", "EXECUTE"
    )
    assert added.returncode == 0, added.stderr
    refused = cli(state, "grant", "function", UC_MODEL, "--principal", "ucg-durable", "USE_CATALOG")
    assert refused.returncode != 0 and "not applicable" in refused.stderr
    assert stat.S_IMODE(os.stat(state / "identity.sqlite").st_mode) == 0o600

    server = start_server(state_dir=state)
    admin = sdk(server, server.token)
    assert effective(admin, "function", UC_MODEL, app_id) == {
        ("USE_CATALOG", "main"),
        ("USE_SCHEMA", "main.default"),
        ("EXECUTE", "main.default"),
    }
    shown = cli(state, "show", "function", UC_MODEL, "--effective")
    assert shown.returncode == 0, shown.stderr
    assert "ucg-durable\tEXECUTE (inherited from main.default)" in shown.stdout.splitlines()
    revoked = cli(state, "revoke", "catalog", "main", "--principal", app_id, "USE_CATALOG")
    assert revoked.returncode == 0, revoked.stderr
    assert ("USE_CATALOG", "main") not in effective(admin, "function", UC_MODEL, app_id)
