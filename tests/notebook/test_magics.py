"""`%serve` / `%%serve` through a real IPython shell against the real server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from serving_support import eventually

from jupyter_serving.notebook.client import Client
from jupyter_serving.notebook.magics import ServeMagics

pytestmark = pytest.mark.slow

CREATE = """
name: {name}
config:
  served_entities:
    - entity_name: iris-lr
      entity_version: "1"
      workload_size: Small
      scale_to_zero_enabled: false
"""


def html_outputs(cap: Any) -> list[str]:
    return [o.data["text/html"] for o in cap.outputs if "text/html" in o.data]


def run(shell: Any, cell: str) -> tuple[Any, Any]:
    """Run a cell the way a notebook does; returns (result, captured output)."""
    with capture_output() as cap:
        result = shell.run_cell(cell)
    return result, cap


def test_load_ext_says_which_server(shell: Any, serving_server: Any) -> None:
    assert shell.load_output.strip() == (
        f"jupyter-serving: using the server at {serving_server.url} (from $JUPYTER_SERVING_URL)"
    )


def test_create_shows_progress_until_ready(shell: Any, client: Client, new_name: Callable[[], str]) -> None:
    name = new_name()
    result, cap = run(shell, f"%%serve create\n{CREATE.format(name=name)}")
    assert result.success, result.error_in_exec
    shown = html_outputs(cap)
    # One display, then in-place updates: it starts updating and ends ready.
    assert len(shown) >= 2
    assert "Not ready (Updating)" in shown[0]
    assert "Ready</span>" in shown[-1] and "Done in" in shown[-1]
    assert "iris-lr v1" in shown[-1]
    assert client.get(name)["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}


def test_create_json_body_with_name_on_the_line(
    shell: Any, client: Client, new_name: Callable[[], str]
) -> None:
    name = new_name()
    body = '{"served_entities": [{"entity_name": "iris-lr", "entity_version": "2"}]}'
    result, _ = run(shell, f"%%serve create {name} --no-wait\n{body}")
    assert result.success, result.error_in_exec
    assert client.get(name)["pending_config"]["served_entities"][0]["entity_version"] == "2"
    result, cap = run(shell, f"%serve wait {name}")
    assert result.success, result.error_in_exec
    assert "Ready</span>" in html_outputs(cap)[-1]


def test_failed_create_shows_the_error_without_traceback(shell: Any, new_name: Callable[[], str]) -> None:
    name = new_name()
    body = (
        f"name: {name}\nconfig:\n  served_entities:\n    - {{entity_name: fail-load, entity_version: '1'}}\n"
    )
    result, cap = run(shell, f"%%serve create\n{body}")
    assert isinstance(result.error_in_exec, UsageError)
    assert "weights file is corrupt" in str(result.error_in_exec)
    assert "weights file is corrupt" in html_outputs(cap)[-1]
    assert "Traceback" not in cap.stdout + cap.stderr


def test_get_and_list_render_state_entities_and_traffic(shell: Any, iris_endpoint: str) -> None:
    card = shell.run_line_magic("serve", f"get {iris_endpoint}")
    html = card._repr_html_()
    for text in (iris_endpoint, "Ready", "iris-lr-1", "iris-lr v1", "1/1", "100%"):
        assert text in html
    assert card.endpoint["name"] == iris_endpoint
    listing = shell.run_line_magic("serve", "list")
    assert iris_endpoint in listing.names
    assert iris_endpoint in listing._repr_html_()
    # What a notebook front end receives for `%serve get` as a cell's last line.
    result, _ = run(shell, f"%serve get {iris_endpoint}")
    bundle, _ = shell.display_formatter.format(result.result)
    assert iris_endpoint in bundle["text/html"]
    assert "iris-lr-1: iris-lr v1 DEPLOYMENT_READY replicas 1/1 traffic 100%" in bundle["text/plain"]


def test_query_with_a_dataframe_variable(shell: Any, iris_endpoint: str) -> None:
    from sklearn.datasets import load_iris

    X = load_iris(as_frame=True).data.iloc[[0, 60, 120]].set_axis([10, 20, 30])
    shell.user_ns["X"] = X
    preds = shell.run_line_magic("serve", f"query {iris_endpoint} -d X")
    assert isinstance(preds, pd.DataFrame)
    assert list(preds.index) == [10, 20, 30]
    assert list(preds["prediction"]) == [0, 1, 2]


def test_query_with_a_json_cell_body(shell: Any, iris_endpoint: str) -> None:
    from sklearn.datasets import load_iris

    row = load_iris(as_frame=True).data.iloc[0].to_dict()
    body = json.dumps({"dataframe_records": [row]})
    preds = shell.run_cell_magic("serve", f"query {iris_endpoint} --served iris-lr-1", body)
    assert list(preds["prediction"]) == [0]
    assert preds.attrs["served_model_name"] == "iris-lr-1"


def test_logs_print_text(shell: Any, iris_endpoint: str) -> None:
    result, cap = run(shell, f"%serve logs {iris_endpoint}")
    assert result.success, result.error_in_exec
    assert cap.stdout.strip()


def test_update_traffic_and_delete(shell: Any, client: Client, new_name: Callable[[], str]) -> None:
    name = new_name()
    client.create_and_wait(name, {"served_entities": [{"entity_name": "iris-lr", "entity_version": "1"}]})
    update = """
served_entities:
  - {entity_name: iris-lr, entity_version: "1"}
  - {entity_name: iris-lr, entity_version: "2"}
traffic_config:
  routes:
    - {served_model_name: iris-lr-1, traffic_percentage: 50}
    - {served_model_name: iris-lr-2, traffic_percentage: 50}
"""
    result, cap = run(shell, f"%%serve update {name}\n{update}")
    assert result.success, result.error_in_exec
    assert "50%" in html_outputs(cap)[-1]
    result, cap = run(shell, f"%serve traffic {name} iris-lr-1=90 iris-lr-2=10")
    assert result.success, result.error_in_exec
    final = html_outputs(cap)[-1]
    assert "90%" in final and "10%" in final
    routes = client.get(name)["config"]["traffic_config"]["routes"]
    assert {r["served_model_name"]: r["traffic_percentage"] for r in routes} == {
        "iris-lr-1": 90,
        "iris-lr-2": 10,
    }
    result, cap = run(shell, f"%serve delete {name}")
    assert result.success
    assert f"Deleted endpoint '{name}'." in cap.stdout
    assert name not in [e["name"] for e in client.list()]


def test_cancel_an_update_in_progress(shell: Any, client: Client, new_name: Callable[[], str]) -> None:
    name = new_name()
    client.create_and_wait(name, {"served_entities": [{"entity_name": "iris-lr", "entity_version": "1"}]})
    # The slow-load fixture told to take ten minutes to load: the update is still running when we cancel.
    slow = {"entity_name": "slow-load", "entity_version": "1", "environment_vars": {"SLOW_LOAD_S": "600"}}
    client.update_config(name, {"served_entities": [slow]})
    result, cap = run(shell, f"%serve cancel {name}")
    assert result.success, result.error_in_exec
    assert "Update canceled" in html_outputs(cap)[0]
    endpoint = client.get(name)
    assert endpoint["state"]["config_update"] == "UPDATE_CANCELED"
    assert endpoint["config"]["served_entities"][0]["entity_name"] == "iris-lr"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("get no-such-endpoint", "RESOURCE_DOES_NOT_EXIST"),
        ("frobnicate x", "Unknown subcommand 'frobnicate'"),
        ("", "Say what to do"),
        ("traffic ep a:50", "SERVED=PERCENT"),
        ("query ep -d nothing_here", "No variable named 'nothing_here'"),
        ("get", "the following arguments are required: name"),
        ('get "unclosed', "Cannot read the arguments of %serve get"),
    ],
)
def test_user_mistakes_are_usage_errors(shell: Any, line: str, message: str) -> None:
    result, cap = run(shell, f"%serve {line}")
    assert isinstance(result.error_in_exec, UsageError)
    assert message in str(result.error_in_exec)
    assert "Traceback" not in cap.stdout + cap.stderr


def test_bad_yaml_is_a_usage_error(shell: Any) -> None:
    result, _ = run(shell, "%%serve create\nname: [unclosed\n")
    assert isinstance(result.error_in_exec, UsageError)
    assert "neither JSON nor valid YAML" in str(result.error_in_exec)


def test_help_documents_every_subcommand() -> None:
    doc = ServeMagics.serve.__doc__ or ""
    for sub in (
        "create",
        "update",
        "list",
        "get",
        "wait",
        "delete",
        "cancel",
        "logs",
        "traffic",
        "query",
        "table",
        "whoami",
        "promote",
    ):
        assert f"%serve {sub}" in doc or f"%%serve {sub}" in doc


def test_table_without_capture_says_how_to_enable_it(shell: Any, iris_endpoint: str) -> None:
    result, _ = run(shell, f"%serve table {iris_endpoint}")
    assert isinstance(result.error_in_exec, UsageError)
    assert "enable auto_capture_config" in str(result.error_in_exec)


def test_table_returns_the_captured_requests(
    shell: Any, client: Client, new_name: Callable[[], str], iris_config: Callable[..., dict]
) -> None:
    from sklearn.datasets import load_iris

    name = new_name()
    config = iris_config("1")
    config["auto_capture_config"] = {
        "catalog_name": "main",
        "schema_name": "default",
        "table_name_prefix": name,
    }
    endpoint = client.create_and_wait(name, config, timeout=170)
    assert endpoint["config"]["auto_capture_config"]["state"]["payload_table"]["name"] == f"{name}_payload"
    assert f"Inference table {name}_payload" in shell.run_line_magic("serve", f"get {name}")._repr_html_()
    X = load_iris(as_frame=True).data.iloc[[0, 60, 120]]
    client.query(name, X)
    # Capture is asynchronous (spool, then Delta in batches): poll until the rows land.

    def table_rows() -> pd.DataFrame:
        try:
            return shell.run_line_magic("serve", f"table {name}")
        except UsageError as exc:
            assert "no data yet" in str(exc)
            return pd.DataFrame()

    table = eventually(table_rows, 60, 0.2, "3 rows in the inference table", until=lambda t: len(t) >= 3)
    assert len(table) == 3
    assert set(X.columns) <= set(table.columns)
    assert list(table["prediction"]) == [0, 1, 2]
