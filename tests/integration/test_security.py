"""Issue 14's reproductions: tokens and endpoint permissions, an API-only standalone host, bad bodies
that fail alone, resource bounds, owner-only files, secrets, and poison capture rows set aside."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import PermissionDenied
from databricks.sdk.service.serving import (
    ServingEndpointAccessControlRequest,
    ServingEndpointPermissionLevel,
)
from serving_support import IRIS_COLUMNS, ServingServer, entity, eventually, iris_split

API = "api/2.0/serving-endpoints"
CAPTURE = {"catalog_name": "main", "schema_name": "default", "enabled": True}


def sdk(server: ServingServer, token: str) -> WorkspaceClient:
    return WorkspaceClient(host=server.url.rstrip("/"), token=token, auth_type="pat")


def as_token(
    server: ServingServer, token: str, method: str, path: str, **kwargs: object
) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, server.url + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def app_token(serving_server: ServingServer) -> tuple[str, str, str]:
    """A service principal 'sec-app' and a token for it, made with the real databricks-sdk."""
    admin = sdk(serving_server, serving_server.token)
    sp = admin.service_principals.create(display_name="sec-app")
    assert sp.application_id and sp.display_name == "sec-app"
    obo = admin.token_management.create_obo_token(
        application_id=sp.application_id, comment="issue 14", lifetime_seconds=3600
    )
    assert obo.token_value and obo.token_value.startswith("dapi")
    assert obo.token_info is not None and obo.token_info.comment == "issue 14"
    return sp.application_id, obo.token_value, obo.token_info.token_id or ""


def test_query_only_token_with_endpoint_permissions(
    serving_server: ServingServer, app_token: tuple[str, str, str]
) -> None:
    app_id, token, _ = app_token
    serving_server.create_ready("sec-perm", {"served_entities": [entity("iris-lr", 1)]})
    endpoint_id = serving_server.get("sec-perm")["id"]
    app = sdk(serving_server, token)

    assert [e.name for e in app.serving_endpoints.list()] == []  # sees nothing it may not view
    denied = as_token(serving_server, token, "GET", f"{API}/sec-perm")
    assert (denied.status_code, denied.json()["error_code"]) == (403, "PERMISSION_DENIED")
    assert (
        as_token(
            serving_server, token, "POST", "serving-endpoints/sec-perm/invocations", json=iris_split()
        ).status_code
        == 403
    )

    admin = sdk(serving_server, serving_server.token)
    acl = [
        ServingEndpointAccessControlRequest(
            service_principal_name=app_id, permission_level=ServingEndpointPermissionLevel.CAN_QUERY
        )
    ]
    result = admin.serving_endpoints.set_permissions(endpoint_id, access_control_list=acl)
    assert result.object_id == f"/serving-endpoints/{endpoint_id}"
    granted = {
        a.service_principal_name: a.all_permissions[0].permission_level
        for a in result.access_control_list or []
        if a.service_principal_name
    }
    assert granted == {app_id: ServingEndpointPermissionLevel.CAN_QUERY}
    levels = admin.serving_endpoints.get_permission_levels(endpoint_id).permission_levels or []
    assert [lv.permission_level.value for lv in levels if lv.permission_level] == [
        "CAN_VIEW",
        "CAN_QUERY",
        "CAN_MANAGE",
    ]

    assert [e.name for e in app.serving_endpoints.list()] == ["sec-perm"]
    assert app.serving_endpoints.get("sec-perm").permission_level.value == "CAN_QUERY"  # type: ignore[union-attr]
    assert serving_server.get("sec-perm")["permission_level"] == "CAN_MANAGE"  # the caller's own level
    ok = as_token(serving_server, token, "POST", "serving-endpoints/sec-perm/invocations", json=iris_split())
    assert ok.status_code == 200, ok.text
    with pytest.raises(PermissionDenied):
        app.serving_endpoints.delete("sec-perm")
    put = as_token(
        serving_server,
        token,
        "PUT",
        f"{API}/sec-perm/config",
        json={"served_entities": [entity("iris-lr", 2)]},
    )
    assert put.status_code == 403
    with pytest.raises(PermissionDenied):
        app.serving_endpoints.get_permissions(endpoint_id)

    acl = [
        ServingEndpointAccessControlRequest(
            service_principal_name=app_id, permission_level=ServingEndpointPermissionLevel.CAN_VIEW
        )
    ]
    admin.serving_endpoints.update_permissions(endpoint_id, access_control_list=acl)
    assert app.serving_endpoints.get("sec-perm").permission_level.value == "CAN_VIEW"  # type: ignore[union-attr]
    assert (
        as_token(
            serving_server, token, "POST", "serving-endpoints/sec-perm/invocations", json=iris_split()
        ).status_code
        == 403
    )
    assert admin.serving_endpoints.get_permissions(endpoint_id).access_control_list


def test_service_principal_creator_and_own_tokens(serving_server: ServingServer) -> None:
    admin = sdk(serving_server, serving_server.token)
    sp = admin.service_principals.create(display_name="sec-creator")
    token = admin.token_management.create_obo_token(application_id=sp.application_id or "").token_value or ""
    other = admin.service_principals.create(display_name="sec-other")
    other_token = (
        admin.token_management.create_obo_token(application_id=other.application_id or "").token_value or ""
    )
    created = as_token(
        serving_server,
        token,
        "POST",
        API,
        json={"name": "sec-own", "config": {"served_entities": [entity("iris-lr", 1)]}},
    )
    assert created.status_code == 200, created.text
    assert created.json()["creator"] == "sec-creator"
    assert created.json()["permission_level"] == "CAN_MANAGE"
    assert serving_server.get("sec-own")["creator"] == "sec-creator"
    assert as_token(serving_server, other_token, "GET", f"{API}/sec-own").status_code == 403
    me = sdk(serving_server, token).current_user.me()
    assert me.user_name == "sec-creator"

    own = sdk(serving_server, token).tokens.create(comment="mine", lifetime_seconds=600)
    assert (
        own.token_value
        and as_token(serving_server, own.token_value, "GET", f"{API}/sec-own").status_code == 200
    )
    sdk(serving_server, token).tokens.delete(own.token_info.token_id)  # type: ignore[union-attr]
    assert as_token(serving_server, own.token_value, "GET", f"{API}/sec-own").status_code == 401
    serving_server.wait_settled("sec-own")
    assert as_token(serving_server, token, "DELETE", f"{API}/sec-own").status_code == 200


def test_revoked_token_and_admin_only_routes(
    serving_server: ServingServer, app_token: tuple[str, str, str]
) -> None:
    admin = sdk(serving_server, serving_server.token)
    sp = admin.service_principals.create(display_name="sec-revoke")
    obo = admin.token_management.create_obo_token(
        application_id=sp.application_id or "", lifetime_seconds=600
    )
    token = obo.token_value or ""
    assert as_token(serving_server, token, "GET", API).status_code == 200
    for method, path in (
        ("GET", "api/2.0/preview/scim/v2/ServicePrincipals"),
        ("GET", "api/2.0/token-management/tokens"),
        ("GET", "api/2.0/jupyter-serving/registered-models"),
    ):
        response = as_token(serving_server, token, method, path)
        assert (response.status_code, response.json()["error_code"]) == (403, "PERMISSION_DENIED"), path
    assert [t.token_id for t in admin.token_management.list() if t.token_id == obo.token_info.token_id]  # type: ignore[union-attr]
    admin.token_management.delete(obo.token_info.token_id)  # type: ignore[union-attr]
    assert as_token(serving_server, token, "GET", API).status_code == 401


@pytest.mark.parametrize(
    "path",
    ["api/kernels", "api/contents/x.txt", "api/terminals", "api/sessions", "api/config/x", "api/kernelspecs"],
)
def test_standalone_serves_no_jupyter_service(
    serving_server: ServingServer, app_token: tuple[str, str, str], path: str
) -> None:
    body = {"content": "x", "type": "file", "format": "text"}
    for method in ("GET", "POST", "PUT"):  # the admin token: no such service at all
        response = as_token(serving_server, serving_server.token, method, path, json=body)
        assert response.status_code in (404, 405), (method, path, response.status_code)
        # a service principal's token is not even a Jupyter credential (403 before any routing)
        response = as_token(serving_server, app_token[1], method, path, json=body)
        assert response.status_code in (403, 404, 405), (method, path, response.status_code)
    assert not list(serving_server.state_dir.parent.glob("x.txt"))


def test_options_query_token_and_multipart_get(serving_server: ServingServer) -> None:
    url = serving_server.url + API
    assert requests.options(url, timeout=10).status_code == 401
    assert requests.options(
        url, headers={"Authorization": f"Bearer {serving_server.token}"}, timeout=10
    ).status_code in (200, 204)
    assert requests.get(url, params={"token": serving_server.token}, timeout=10).status_code == 401
    multipart = {"Content-Type": "multipart/form-data; boundary=x"}
    assert serving_server.api("GET", API, headers=multipart).status_code == 200
    assert serving_server.api("DELETE", f"{API}/sec-none", headers=multipart).status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"name": "x", "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "too deeply"),
        (
            json.dumps(
                {"name": "sec-v", "config": {"served_entities": [entity("iris-lr", "9" * 5000)]}}
            ).encode(),
            "digits",
        ),
        (
            json.dumps(
                {"name": "sec-n", "config": {"served_entities": [entity("iris-lr", 1, name="srv\n")]}}
            ).encode(),
            "served entity names",
        ),
        (
            json.dumps({"name": "sec-n\n", "config": {"served_entities": [entity("iris-lr", 1)]}}).encode(),
            "Endpoint name",
        ),
        (
            json.dumps(
                {
                    "name": "sec-c",
                    "config": {
                        "served_entities": [entity("iris-lr", 1)],
                        "auto_capture_config": {**CAPTURE, "catalog_name": "main\n"},
                    },
                }
            ).encode(),
            "catalog_name",
        ),
        (
            json.dumps(
                {
                    "name": "sec-c",
                    "config": {
                        "served_entities": [entity("iris-lr", 1)],
                        "auto_capture_config": {**CAPTURE, "schema_name": "d\n"},
                    },
                }
            ).encode(),
            "schema_name",
        ),
        (
            json.dumps(
                {
                    "name": "sec-t",
                    "config": {"served_entities": [entity("iris-lr", 1)]},
                    "tags": [{"key": 1, "value": "v"}],
                }
            ).encode(),
            "key",
        ),
        (
            json.dumps(
                {
                    "name": "sec-d",
                    "config": {"served_entities": [entity("iris-lr", 1)]},
                    "description": {"a": 1},
                }
            ).encode(),
            "description",
        ),
        (
            json.dumps(
                {
                    "name": "sec-r",
                    "config": {
                        "served_entities": [
                            {
                                "entity_name": "iris-lr",
                                "entity_version": "1",
                                "min_provisioned_concurrency": 4 * 10**18,
                                "max_provisioned_concurrency": 4 * 10**18,
                            }
                        ]
                    },
                }
            ).encode(),
            "limit is 1024",
        ),
    ],
    ids=[
        "depth",
        "version-digits",
        "served-newline",
        "name-newline",
        "catalog-newline",
        "schema-newline",
        "tag-key",
        "description",
        "concurrency",
    ],
)
def test_bad_control_bodies_are_400(serving_server: ServingServer, body: bytes, message: str) -> None:
    response = serving_server.api("POST", API, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert message in response.json()["message"]


def test_update_bounds_concurrency_too(serving_server: ServingServer) -> None:
    serving_server.create_ready("sec-bound", {"served_entities": [entity("iris-lr", 1)]})
    huge = {
        "entity_name": "iris-lr",
        "entity_version": "1",
        "min_provisioned_concurrency": 0,
        "max_provisioned_concurrency": 4096,
    }
    response = serving_server.api("PUT", f"{API}/sec-bound/config", json={"served_entities": [huge]})
    assert response.status_code == 400 and "limit is 1024" in response.json()["message"]


def test_one_clients_bad_body_fails_alone(serving_server: ServingServer) -> None:
    serving_server.create_ready("sec-batch", {"served_entities": [entity("iris-lr", 1)]})
    deep = b'{"dataframe_split":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    surrogate = (
        b'{"client_request_id": "\\ud800", "dataframe_split": {"columns": %s, "data": [[1, 2, 3, 4]]}}'
        % json.dumps(IRIS_COLUMNS).encode()
    )
    good = json.dumps(iris_split()).encode()

    def send(body: bytes) -> int:
        return serving_server.invoke(
            "sec-batch", data=body, headers={"Content-Type": "application/json"}
        ).status_code

    bodies = [good] * 240 + [deep] * 30 + [surrogate] * 10
    with ThreadPoolExecutor(10) as pool:
        codes = list(pool.map(send, bodies))
    assert codes[:240] == [200] * 240
    assert codes[240:] == [400] * 40


def test_state_files_are_owner_only(serving_server: ServingServer, app_token: tuple[str, str, str]) -> None:
    state = serving_server.state_dir
    for path in (state, state / "logs", state / "catalog", state / "capture-spool"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in (state / "endpoints.sqlite", state / "identity.sqlite"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    identity = (state / "identity.sqlite").read_bytes() + (state / "identity.sqlite-wal").read_bytes()
    assert app_token[1].encode() not in identity  # stored hashed only
    log = (
        Path(f"{state}-server.log").read_text(errors="replace")
        if Path(f"{state}-server.log").exists()
        else ""
    )
    assert app_token[1] not in log and serving_server.token not in log


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_serving", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def test_secrets_resolve_at_start_and_stay_out_of_get(
    serving_server: ServingServer, app_token: tuple[str, str, str]
) -> None:
    done = cli(
        "secrets",
        "put",
        "sec",
        "api-key",
        "--state-dir",
        str(serving_server.state_dir),
        stdin="s3cr3t-value\n",
    )
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE((serving_server.state_dir / "secrets.json").stat().st_mode) == 0o600
    env = {"API_KEY": "{{secrets/sec/api-key}}"}
    endpoint = serving_server.create_ready(
        "sec-secret", {"served_entities": [entity("env-echo", 1, environment_vars=env)]}
    )
    assert endpoint["config"]["served_entities"][0]["environment_vars"] == env
    answer = serving_server.invoke(
        "sec-secret", {"dataframe_split": {"columns": ["var"], "data": [["API_KEY"]]}}
    )
    assert answer.json() == {"predictions": ["s3cr3t-value"]}
    assert "s3cr3t-value" not in json.dumps(serving_server.get("sec-secret"))
    assert b"s3cr3t-value" not in (serving_server.state_dir / "endpoints.sqlite").read_bytes()
    missing = serving_server.create(
        "sec-missing",
        {"served_entities": [entity("env-echo", 1, environment_vars={"K": "{{secrets/sec/nope}}"})]},
    )
    assert missing.status_code == 400 and "does not exist" in missing.json()["message"]
    body = {"name": "sec-steal", "config": {"served_entities": [entity("env-echo", 1, environment_vars=env)]}}
    assert as_token(serving_server, app_token[1], "POST", API, json=body).status_code == 403


def test_cli_tokens_create_list_revoke(serving_server: ServingServer) -> None:
    state = str(serving_server.state_dir)
    made = cli(
        "tokens",
        "create",
        "--principal",
        "sec-cli",
        "--comment",
        "from cli",
        "--lifetime-seconds",
        "600",
        "--state-dir",
        state,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("dapi") and as_token(serving_server, token, "GET", API).status_code == 200
    listed = cli("tokens", "list", "--state-dir", state)
    assert "sec-cli" in listed.stdout and token not in listed.stdout
    token_id = next(line.split("\t")[0] for line in listed.stdout.splitlines() if "\tsec-cli\t" in line)
    assert cli("tokens", "revoke", token_id, "--state-dir", state).returncode == 0
    assert as_token(serving_server, token, "GET", API).status_code == 401


def test_standalone_token_never_on_argv(tmp_path: Path) -> None:
    refused = cli("serve", "--token", "abc", "--state-dir", str(tmp_path / "s"))
    assert refused.returncode != 0 and "--token is not accepted" in refused.stderr
    loose = tmp_path / "token"
    loose.write_text("abc")
    loose.chmod(0o644)
    refused = cli("serve", "--token-file", str(loose), "--state-dir", str(tmp_path / "s"))
    assert refused.returncode != 0 and "chmod 600" in refused.stderr


def test_refused_batch_is_quarantined_and_other_tables_keep_committing(
    start_server: Callable[..., ServingServer],
) -> None:
    from scenarios import read_table, wait_rows

    server = start_server("--capture-flush-s", "0.2")
    broken = server.create_ready(
        "sec-poison", {"served_entities": [entity("iris-lr", 1)], "auto_capture_config": CAPTURE}
    )
    healthy = server.create_ready(
        "sec-healthy", {"served_entities": [entity("iris-lr", 1)], "auto_capture_config": CAPTURE}
    )
    poison_path = Path(broken["config"]["auto_capture_config"]["state"]["payload_table"]["path"])
    healthy_path = healthy["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    # A table Delta refuses to append to: its log's next commit is not JSON.
    (poison_path / "_delta_log" / f"{1:020d}.json").write_text("not json\n")
    for _ in range(5):
        assert server.invoke("sec-poison", iris_split()).status_code == 200
    for _ in range(20):
        assert server.invoke("sec-healthy", iris_split()).status_code == 200
    assert len(wait_rows(healthy_path, 20)) == 20
    eventually(
        lambda: server.get("sec-poison")["config"]["auto_capture_config"]["state"]["payload_table"],
        60,
        0.1,
        "the poisoned table being quarantined",
        until=lambda table: "quarantined" in table.get("status_message", ""),
    )
    assert read_table(healthy_path).shape[0] == 20
