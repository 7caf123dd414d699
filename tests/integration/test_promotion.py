"""`jupyter-serving promote` and `%serve promote` between two real servers.

The source is the session's server (its registry is the fixture registry); the target is a second
`jupyter-serving serve` with its own state dir and its own, initially empty, sqlite registry: the
"other workspace". The target is written only through databricks-sdk, exactly as a Databricks
workspace would be.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_support import IRIS_ROWS, MlflowEnv, ServingServer, entity, iris_split

from jupyter_serving import cli
from jupyter_serving.promotion.models import SOURCE_TAG, ModelCopier, source_marker

pytestmark = pytest.mark.slow

GATEWAY = {"rate_limits": [{"calls": 1000, "key": "endpoint", "renewal_period": "minute"}]}
SPLIT_TAGS = [{"key": "stage", "value": "dev"}, {"key": "team", "value": "ml"}]


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingServer]:
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("target")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(tracking_uri=uri, registry_uri=uri).search_experiments()  # the schema, before the server
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    server = ServingServer(root / "state", env, token="target-admin").start()
    server.registry_uri = uri  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def new_name(serving_server: ServingServer, target: ServingServer) -> Iterator[Callable[[], str]]:
    """Fresh endpoint names, deleted from both servers after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"promo-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for name in names:
        serving_server.delete(name)
        target.delete(name)


def promote(
    monkeypatch: pytest.MonkeyPatch, source: ServingServer, target_token: str | None, *args: str
) -> tuple[int, str]:
    """`jupyter-serving promote *args` in this process; (exit status, what it printed last)."""
    monkeypatch.setenv("JUPYTER_SERVING_TOKEN", source.token)
    if target_token is None:
        monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    else:
        monkeypatch.setenv("DATABRICKS_TOKEN", target_token)
    try:
        cli.main(["promote", *args, "--from", source.url])
    except SystemExit as exc:
        return 1, str(exc.code)
    return 0, ""


def copier(mlflow_env: MlflowEnv, target: ServingServer) -> ModelCopier:
    uri = target.registry_uri  # type: ignore[attr-defined]
    return ModelCopier(mlflow_env.uri, mlflow_env.uri, uri, uri)


def routes(endpoint: dict[str, Any]) -> dict[str, int]:
    return {
        r["served_model_name"]: r["traffic_percentage"]
        for r in endpoint["config"]["traffic_config"]["routes"]
    }


def versions(endpoint: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["entity_version"] for e in endpoint["config"]["served_entities"]}


@pytest.fixture(scope="module")
def promoted(
    serving_server: ServingServer, target: ServingServer, mlflow_env: MlflowEnv
) -> Iterator[dict[str, Any]]:
    """A source endpoint serving iris-lr v1 and v2 (80/20, two tags), promoted with --copy-models
    after source v2 alone was copied: the target numbers the versions the other way round."""
    name = f"promo-split-{uuid.uuid4().hex[:6]}"
    config = {
        "served_entities": [entity("iris-lr", 1), entity("iris-lr", 2)],
        "traffic_config": {
            "routes": [
                {"served_model_name": "iris-lr-1", "traffic_percentage": 80},
                {"served_model_name": "iris-lr-2", "traffic_percentage": 20},
            ]
        },
    }
    response = serving_server.create(
        name, config, tags=SPLIT_TAGS, description="iris: champion and challenger", ai_gateway=GATEWAY
    )
    assert response.status_code == 200, response.text
    serving_server.wait_settled(name)
    first = copier(mlflow_env, target).copy("iris-lr", "2")
    with pytest.MonkeyPatch.context() as mp:
        status, message = promote(
            mp, serving_server, target.token, name, "--to", target.url, "--copy-models", "--wait"
        )
    assert status == 0, message
    yield {"name": name, "first_copy": first, "endpoint": target.get(name)}
    serving_server.delete(name)
    target.delete(name)


def test_copy_models_creates_the_endpoint_with_the_same_entity_names(
    promoted: dict[str, Any], serving_server: ServingServer, target: ServingServer, mlflow_env: MlflowEnv
) -> None:
    from mlflow import MlflowClient

    endpoint, name = promoted["endpoint"], promoted["name"]
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert routes(endpoint) == {"iris-lr-1": 80, "iris-lr-2": 20}
    assert sorted(endpoint["tags"], key=lambda t: t["key"]) == SPLIT_TAGS
    assert endpoint["description"] == "iris: champion and challenger"
    assert endpoint["ai_gateway"] == serving_server.get(name)["ai_gateway"]
    assert endpoint["ai_gateway"]["rate_limits"][0]["calls"] == 1000
    # Source v2 was copied first, so the names stay and the target's numbers differ from the source's.
    mapped = versions(endpoint)
    assert mapped["iris-lr-2"] == promoted["first_copy"].target_version
    assert int(mapped["iris-lr-1"]) > int(mapped["iris-lr-2"])
    source, dest = MlflowClient(registry_uri=mlflow_env.uri), MlflowClient(registry_uri=target.registry_uri)  # type: ignore[attr-defined]
    for served, source_version in (("iris-lr-1", "1"), ("iris-lr-2", "2")):
        copied = dest.get_model_version("iris-lr", mapped[served])
        run_id = source.get_model_version("iris-lr", source_version).run_id
        assert copied.tags[SOURCE_TAG] == source_marker("iris-lr", source_version, run_id)
        # The same model answers on both sides, under the same served-entity name.
        here = serving_server.invoke(name, iris_split(), served=served)
        there = target.invoke(name, iris_split(), served=served)
        assert there.status_code == 200, there.text
        assert there.json() == here.json()
        assert there.headers["served-model-name"] == served
    assert target.invoke(name, iris_split()).json()["predictions"] in (
        serving_server.invoke(name, iris_split(), served=s).json()["predictions"]
        for s in ("iris-lr-1", "iris-lr-2")
    )


def test_promote_again_updates_the_config_and_tags_and_reuses_the_copies(
    monkeypatch: pytest.MonkeyPatch,
    serving_server: ServingServer,
    target: ServingServer,
    new_name: Callable[[], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlflow import MlflowClient

    name = new_name()
    serving_server.create(
        name, {"served_entities": [entity("iris-lr", 1)]}, tags=[{"key": "old", "value": "x"}]
    )
    serving_server.wait_settled(name)
    promote_args = (name, "--to", target.url, "--copy-models", "--wait")
    assert promote(monkeypatch, serving_server, target.token, *promote_args) == (0, "")
    created = target.get(name)
    assert created["state"]["ready"] == "READY"
    assert created["tags"] == [{"key": "old", "value": "x"}]
    assert f"Created endpoint '{name}'" in capsys.readouterr().out
    registry = MlflowClient(registry_uri=target.registry_uri)  # type: ignore[attr-defined]
    registered = len(registry.search_model_versions("name = 'iris-lr'"))

    split = {
        "served_entities": [entity("iris-lr", 1), entity("iris-lr", 2)],
        "traffic_config": {
            "routes": [
                {"served_model_name": "iris-lr-1", "traffic_percentage": 50},
                {"served_model_name": "iris-lr-2", "traffic_percentage": 50},
            ]
        },
    }
    assert (
        serving_server.api("PUT", f"api/2.0/serving-endpoints/{name}/config", json=split).status_code == 200
    )
    serving_server.api(
        "PATCH",
        f"api/2.0/serving-endpoints/{name}/tags",
        json={"add_tags": [{"key": "new", "value": "y"}], "delete_tags": ["old"]},
    ).raise_for_status()
    gateway = {"rate_limits": [{"calls": 7, "key": "user", "renewal_period": "minute"}]}
    serving_server.api("PUT", f"api/2.0/serving-endpoints/{name}/ai-gateway", json=gateway).raise_for_status()
    serving_server.wait_settled(name)
    assert promote(monkeypatch, serving_server, target.token, *promote_args) == (0, "")
    updated = target.get(name)
    assert updated["ai_gateway"] == serving_server.get(name)["ai_gateway"]
    assert updated["ai_gateway"]["rate_limits"][0]["calls"] == 7
    assert f"Updated endpoint '{name}'" in capsys.readouterr().out
    assert updated["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert updated["config"]["config_version"] == created["config"]["config_version"] + 1
    assert routes(updated) == {"iris-lr-1": 50, "iris-lr-2": 50}
    assert updated["tags"] == [{"key": "new", "value": "y"}]
    assert len(registry.search_model_versions("name = 'iris-lr'")) <= registered + 1  # v2, at most

    assert promote(monkeypatch, serving_server, target.token, *promote_args) == (0, "")
    assert "already serves this config" in capsys.readouterr().out
    assert target.get(name)["config"]["config_version"] == updated["config"]["config_version"]
    # Promoting again reused the copies: no source version is registered twice on the target.
    markers = [v.tags[SOURCE_TAG] for v in registry.search_model_versions("name = 'iris-lr'")]
    assert len(markers) == len(set(markers))


def test_a_version_missing_on_the_target_is_named(
    monkeypatch: pytest.MonkeyPatch,
    serving_server: ServingServer,
    target: ServingServer,
    new_name: Callable[[], str],
) -> None:
    name = new_name()
    serving_server.create_ready(name, {"served_entities": [entity("main.default.iris", 1)]})
    status, message = promote(monkeypatch, serving_server, target.token, name, "--to", target.url)
    assert status == 1
    assert message.startswith(
        "jupyter-serving: RESOURCE_DOES_NOT_EXIST: Model 'main.default.iris' version '1' "
    )
    assert "--copy-models" in message and "\n" not in message
    assert target.delete(name).status_code == 404  # nothing half-made on the target


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unknown-endpoint", "jupyter-serving: RESOURCE_DOES_NOT_EXIST: "),
        ("bad-token", "jupyter-serving: UNAUTHENTICATED: "),
        ("unreachable", "jupyter-serving: TARGET_UNREACHABLE: Cannot reach the target workspace at "),
    ],
)
def test_errors_are_one_line_and_exit_1(
    case: str,
    expected: str,
    promoted: dict[str, Any],
    serving_server: ServingServer,
    target: ServingServer,
    tmp_path: Path,
) -> None:
    """Through the real console entry point: exit status 1, one line on stderr, no traceback."""
    name, url, token = promoted["name"], target.url, target.token
    if case == "unknown-endpoint":
        name = "promo-no-such-endpoint"
    elif case == "bad-token":
        token = "not-a-token"
    else:
        url = f"http://127.0.0.1:{_closed_port()}"
    env = {"JUPYTER_SERVING_TOKEN": serving_server.token, "DATABRICKS_TOKEN": token}
    command = [
        sys.executable,
        "-m",
        "jupyter_serving",
        "promote",
        name,
        "--from",
        serving_server.url,
        "--to",
        url,
    ]
    done = subprocess.run(command, env={**_env(), **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done
    assert done.stderr.startswith(expected), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "Config: " not in done.stderr  # the SDK's config dump is cut off


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("DATABRICKS_")}


def test_a_query_only_token_is_permission_denied(
    monkeypatch: pytest.MonkeyPatch,
    promoted: dict[str, Any],
    serving_server: ServingServer,
    target: ServingServer,
) -> None:
    from databricks.sdk import WorkspaceClient

    admin = WorkspaceClient(host=target.url, token=target.token, auth_type="pat")
    sp = admin.service_principals.create(display_name=f"promo-reader-{uuid.uuid4().hex[:6]}")
    reader = admin.token_management.create_obo_token(
        application_id=sp.application_id or "", lifetime_seconds=600
    )
    name = promoted["name"]
    endpoint_id = target.get(name)["id"]
    grant = {"access_control_list": [{"group_name": "users", "permission_level": "CAN_QUERY"}]}
    target.api("PATCH", f"api/2.0/permissions/serving-endpoints/{endpoint_id}", json=grant).raise_for_status()
    tags = f"api/2.0/serving-endpoints/{name}/tags"
    serving_server.api(
        "PATCH", tags, json={"add_tags": [{"key": "reviewed", "value": "no"}]}
    ).raise_for_status()
    try:
        status, message = promote(
            monkeypatch, serving_server, reader.token_value or "", name, "--to", target.url
        )
    finally:
        serving_server.api("PATCH", tags, json={"delete_tags": ["reviewed"]}).raise_for_status()
    assert status == 1
    assert message.startswith("jupyter-serving: PERMISSION_DENIED: "), message
    assert f"(target {target.url.rstrip('/')})" in message
    assert "reviewed" not in {t["key"] for t in target.get(name)["tags"]}
    # The query-only token still queries: it was refused the change, not the endpoint.
    reader_query = target.session.post(
        target.url + f"serving-endpoints/{name}/invocations",
        json=iris_split(IRIS_ROWS[:1]),
        headers={"Authorization": f"Bearer {reader.token_value}"},
        timeout=60,
    )
    assert reader_query.status_code == 200, reader_query.text


def test_a_databricks_profile_names_the_target(
    monkeypatch: pytest.MonkeyPatch,
    promoted: dict[str, Any],
    serving_server: ServingServer,
    target: ServingServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--profile` alone: host and token from a databrickscfg file, as the databricks CLI reads them;
    the target's registry is the one that jupyter-serving target reports."""
    config = tmp_path / "databrickscfg"
    config.write_text(f"[second]\nhost = {target.url}\ntoken = {target.token}\n")
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(config))
    status, message = promote(
        monkeypatch, serving_server, None, promoted["name"], "--profile", "second", "--copy-models"
    )
    assert status == 0, message
    out = capsys.readouterr()
    assert "already serves this config" in out.out
    assert f"to {target.registry_uri}." in out.err  # type: ignore[attr-defined]


@pytest.fixture
def shell(serving_server: ServingServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real IPython shell with `%load_ext jupyter_serving`, using the session server."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    monkeypatch.setenv("JUPYTER_SERVING_URL", serving_server.url)
    monkeypatch.setenv("JUPYTER_SERVING_TOKEN", serving_server.token)
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    config = Config()
    config.HistoryAccessor.enabled = False
    ip = InteractiveShell.instance(config=config)
    with capture_output():
        ip.run_line_magic("load_ext", "jupyter_serving")
    yield ip
    ip.run_line_magic("unload_ext", "jupyter_serving")
    InteractiveShell.clear_instance()


def test_serve_promote_magic(
    shell: Any,
    monkeypatch: pytest.MonkeyPatch,
    promoted: dict[str, Any],
    serving_server: ServingServer,
    target: ServingServer,
    tmp_path: Path,
) -> None:
    from IPython.core.error import UsageError
    from IPython.utils.capture import capture_output

    name = promoted["name"]
    token_file = tmp_path / "target-token"
    token_file.write_text(target.token)
    token_file.chmod(0o600)
    monkeypatch.delenv("DATABRICKS_TOKEN", raising=False)
    traffic = {
        "served_entities": [entity("iris-lr", 1), entity("iris-lr", 2)],
        "traffic_config": {
            "routes": [
                {"served_model_name": "iris-lr-1", "traffic_percentage": 60},
                {"served_model_name": "iris-lr-2", "traffic_percentage": 40},
            ]
        },
    }
    serving_server.api("PUT", f"api/2.0/serving-endpoints/{name}/config", json=traffic).raise_for_status()
    serving_server.wait_settled(name)
    line = f"promote {name} --to {target.url} --token-file {token_file} --copy-models"
    result = shell.run_line_magic("serve", line)
    assert result.action == "updated"
    assert result.state == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert f"Updated endpoint '{name}' on {target.url.rstrip('/')}" in repr(result)
    after = target.get(name)
    assert routes(after) == {"iris-lr-1": 60, "iris-lr-2": 40}
    assert versions(after) == versions(promoted["endpoint"])  # the copies were reused

    with capture_output() as cap:
        failed = shell.run_cell(
            f"%serve promote promo-no-such-endpoint --to {target.url} --token-file {token_file}"
        )
    assert isinstance(failed.error_in_exec, UsageError)
    assert str(failed.error_in_exec).startswith("RESOURCE_DOES_NOT_EXIST: ")
    assert "Traceback" not in cap.stdout + cap.stderr
