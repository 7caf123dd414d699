"""The widgets headless: construct, fill, click, then assert what the server has."""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd
import pytest
from serving_support import eventually

from jupyter_serving.notebook.client import BadRequestError, Client
from jupyter_serving.notebook.widgets import EndpointForm, EndpointMonitor

pytestmark = pytest.mark.slow

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def test_form_lists_registry_models_and_versions(client: Client) -> None:
    form = EndpointForm(client)
    editor = form.entities[0]
    assert "iris-lr" in editor.model.options
    editor.model.value = "iris-lr"
    assert list(editor.version.options)[:2] == ["2", "1"]  # newest first
    assert editor.version.value == "2"
    assert editor.served_name.placeholder == "iris-lr-2"
    assert editor.traffic.value == 100 and editor.traffic.disabled
    assert form.submit.description == "Create"


def test_traffic_sliders_always_sum_to_100(client: Client) -> None:
    form = EndpointForm(client)
    form.add()
    form.add()
    sliders = [e.traffic for e in form.entities]
    assert [s.value for s in sliders] == [100, 0, 0]
    sliders[1].value = 40
    assert [s.value for s in sliders] == [60, 40, 0]
    sliders[2].value = 30
    assert sum(s.value for s in sliders) == 100 and sliders[2].value == 30
    form.entities[0].remove.click()
    assert len(form.entities) == 2
    assert sum(e.traffic.value for e in form.entities) == 100


def test_create_from_the_form(client: Client, new_name: Callable[[], str]) -> None:
    name = new_name()
    form = EndpointForm(client)
    form.endpoint_name.value = name
    editor = form.entities[0]
    editor.model.value = "iris-lr"
    editor.version.value = "1"
    editor.served_name.value = "current"
    editor.workload_size.value = "Small"
    editor.env_vars.value = "GREETING=hello"
    form.inference_table.value = True
    form.submit.click()
    form.wait(timeout=170)
    assert "Ready</span>" in form.status.value
    assert form.submit.description == "Update" and form.endpoint_name.disabled
    endpoint = client.get(name)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    entity = endpoint["config"]["served_entities"][0]
    assert (entity["name"], entity["entity_name"], entity["entity_version"]) == ("current", "iris-lr", "1")
    assert entity["environment_vars"] == {"GREETING": "hello"}
    assert endpoint["config"]["auto_capture_config"]["enabled"] is True
    assert endpoint["config"]["auto_capture_config"]["table_name_prefix"] == name


def test_edit_adds_a_challenger_with_a_traffic_split(client: Client, new_name: Callable[[], str]) -> None:
    name = new_name()
    client.create_and_wait(name, {"served_entities": [{"entity_name": "iris-lr", "entity_version": "1"}]})
    form = EndpointForm(client, name)
    assert form.submit.description == "Update"
    assert form.entities[0].name == "iris-lr-1"
    challenger = form.add()
    challenger.model.value = "iris-lr"
    challenger.version.value = "2"
    challenger.traffic.value = 25
    assert form.entities[0].traffic.value == 75
    form.submit.click()
    form.wait(timeout=170)
    routes = client.get(name)["config"]["traffic_config"]["routes"]
    assert {r["served_model_name"]: r["traffic_percentage"] for r in routes} == {
        "iris-lr-1": 75,
        "iris-lr-2": 25,
    }
    assert "25%" in form.status.value


def test_server_errors_show_in_the_status_line(client: Client, iris_endpoint: str) -> None:
    form = EndpointForm(client)
    form.endpoint_name.value = iris_endpoint  # taken
    form.entities[0].model.value = "iris-lr"
    form.submit.click()
    assert "RESOURCE_ALREADY_EXISTS" in form.status.value
    assert not form.submit.disabled
    form.entities[0].env_vars.value = "not a pair"
    form.submit.click()
    assert "KEY=VALUE" in form.status.value


def test_monitor_shows_state_replicas_and_request_rates(client: Client, iris_endpoint: str) -> None:
    rows = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]] * 4, columns=COLUMNS)
    monitor = EndpointMonitor(client, iris_endpoint, interval=0.2)
    try:
        assert "Ready" in monitor.header.value
        assert (
            "iris-lr-1" in monitor.table.value
            and "1/1" in monitor.table.value
            and "100%" in monitor.table.value
        )
        before = monitor.refreshes
        for _ in range(5):
            client.query(iris_endpoint, rows)
        # The timer thread keeps redrawing while the kernel is free to run other cells.
        eventually(lambda: monitor.refreshes >= before + 2, 60, 0.05, "two more refreshes")
        assert monitor.running
        monitor.refresh()
        cells = monitor.table.value
        assert "Requests/s" in cells and "Latency ms" in cells
    finally:
        monitor.close()
    assert not monitor.running


def test_monitor_rates_follow_traffic(client: Client, iris_endpoint: str) -> None:
    rows = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=COLUMNS)
    monitor = EndpointMonitor(client, iris_endpoint, start=False)
    for _ in range(10):
        client.query(iris_endpoint, rows)
    with pytest.raises(BadRequestError):
        client.query(iris_endpoint, pd.DataFrame({"not a feature": [1.0]}))
    monitor.refresh()
    cells = re.findall(r'<td style="padding:2px 8px">(.*?)</td>', monitor.table.value)
    served, _replicas, _traffic, rps, latency, total, client_errors, server_errors = cells[:8]
    assert "iris-lr-1" in served
    assert float(rps) > 0
    assert float(latency) > 0
    assert int(total) >= 10
    assert int(client_errors) >= 1 and int(server_errors) == 0  # a bad input is the caller's 400
    assert not monitor.running


def test_both_widgets_default_to_the_discovered_server(
    server_env: dict[str, str], iris_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in server_env.items():
        monkeypatch.setenv(key, value)
    form = EndpointForm()
    assert form.client.url.rstrip("/") == server_env["JUPYTER_SERVING_URL"].rstrip("/")
    assert "iris-lr" in form.models
    monitor = EndpointMonitor(iris_endpoint, start=False)
    monitor.refresh()
    assert monitor.client.url.rstrip("/") == server_env["JUPYTER_SERVING_URL"].rstrip("/")
    assert iris_endpoint in monitor.header.value


def test_monitor_charts_the_history_and_lists_events(client: Client, iris_endpoint: str) -> None:
    rows = pd.DataFrame([[5.1, 3.5, 1.4, 0.2]], columns=COLUMNS)
    monitor = EndpointMonitor(client, iris_endpoint, start=False)

    def served_in_history() -> bool:
        client.query(iris_endpoint, rows)
        history = client.history(iris_endpoint)
        return any(r for e in history["served_entities"] for r in e["samples"]["requests_per_s"])

    eventually(served_in_history, 60, 0.05, "requests in the history")  # sampled every history_interval_s
    monitor.refresh()
    assert monitor.chart.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "endpoint created" in monitor.events.value or "update" in monitor.events.value


def test_serve_monitor_magic_returns_a_live_monitor(shell, iris_endpoint: str) -> None:
    from IPython.core.error import UsageError

    monitor = shell.run_line_magic("serve", f"monitor {iris_endpoint} --interval 0.2")
    try:
        assert isinstance(monitor, EndpointMonitor) and monitor.running
        assert monitor.interval == 0.2 and iris_endpoint in monitor.header.value
    finally:
        monitor.close()
    with pytest.raises(UsageError, match=r"RESOURCE_DOES_NOT_EXIST|does not exist"):
        shell.run_line_magic("serve", "monitor no-such-endpoint")
