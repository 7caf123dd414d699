"""Without a widget front end (nbconvert, a saved notebook, a terminal IPython) every display of the
magics still reads well: a notebook runs under nbclient against the real server and its outputs'
text/plain and text/html are read back as a user would see them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_serving.notebook.magics import render_list_text

pytestmark = pytest.mark.slow


def run_notebook(cells: list[str], env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """Run the cells in a fresh kernel; one list of outputs per cell."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env=env)
    return [cell.get("outputs", []) for cell in nb.cells]


def mime(outputs: list[dict[str, Any]], kind: str) -> str:
    return "".join(o.get("data", {}).get(kind, "") for o in outputs if o["output_type"] == "execute_result")


@pytest.mark.timeout(300)
def test_magics_render_readable_text_under_nbclient(
    iris_endpoint: str, server_env: dict[str, str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    cells = [
        "%load_ext jupyter_serving",
        "%serve list",
        f"%serve get {iris_endpoint}",
        f"%serve monitor {iris_endpoint} --interval 3600",
        "from jupyter_serving.widgets import EndpointForm\nEndpointForm()",
    ]
    outputs = run_notebook(cells, {**clean_env, **server_env}, tmp_path)
    assert not [o for cell in outputs for o in cell if o["output_type"] == "error"]

    listing = mime(outputs[1], "text/plain").splitlines()
    assert listing[0].split() == ["Name", "State", "Served", "entity", "Traffic"]
    row = next(line for line in listing if line.startswith(iris_endpoint))
    assert row.split() == [iris_endpoint, "Ready", "iris-lr-1:", "iris-lr", "v1", "100%"]
    assert "100%</span>" in mime(outputs[1], "text/html")  # the traffic bar is filled, too

    card = mime(outputs[2], "text/plain")
    assert f"{iris_endpoint}: Ready" in card and "replicas 1/1 traffic 100%" in card

    monitor = mime(outputs[3], "text/plain")
    assert "EndpointMonitor(" not in monitor and "HTML(" not in monitor  # not the widget's repr
    lines = monitor.splitlines()
    assert lines[0] == f"{iris_endpoint}: Ready"
    header = next(line for line in lines if line.startswith("Served entity"))
    assert header.split()[:4] == ["Served", "entity", "Replicas", "Traffic"] and "Errors 5xx" in header
    assert next(line for line in lines if line.startswith("iris-lr-1")).split()[:3] == [
        "iris-lr-1",
        "1/1",
        "100%",
    ]
    html = mime(outputs[3], "text/html")
    assert iris_endpoint in html and "Served entity" in html and "<script" not in html

    form = mime(outputs[4], "text/plain")
    assert form.startswith("Create-endpoint form: it needs a widget front end")
    assert "%%serve create" in form


@pytest.mark.timeout(300)
def test_magics_read_well_in_an_nbconvert_export(
    iris_endpoint: str, server_env: dict[str, str], clean_env: dict[str, str], tmp_path: Path
) -> None:
    """`jupyter nbconvert --execute --to markdown`, as a notebook is rendered for a reader without a
    widget front end: the listing and the monitor are their readable tables, not a widget's repr."""
    cells = ["%load_ext jupyter_serving", "%serve list", f"%serve monitor {iris_endpoint} --interval 3600"]
    path = tmp_path / "magics.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]), path)
    done = subprocess.run(
        [sys.executable, "-m", "nbconvert", "--to", "markdown", "--execute", str(path)],
        env={**clean_env, **server_env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "magics.md").read_text()
    assert "EndpointMonitor(" not in text and "HTML(" not in text and "VBox(" not in text
    assert "Served entity" in text and "Traffic" in text  # the listing's and the monitor's headers
    assert text.count(iris_endpoint) >= 2 and "Ready" in text and "100%" in text


def test_list_text_shows_every_entity_with_its_share() -> None:
    def endpoint(name: str, ready: bool, routes: dict[str, int]) -> dict[str, Any]:
        entities = [{"name": n, "entity_name": "iris-lr", "entity_version": n[-1]} for n in routes]
        traffic = [{"served_model_name": n, "traffic_percentage": p} for n, p in routes.items()]
        state = {"ready": "READY" if ready else "NOT_READY", "config_update": "NOT_UPDATING"}
        return {
            "name": name,
            "state": state,
            "config": {"served_entities": entities, "traffic_config": {"routes": traffic}},
        }

    text = render_list_text(
        [endpoint("ab", True, {"champion-1": 80, "challenger-2": 20}), endpoint("solo", False, {"a-1": 100})]
    )
    assert text.splitlines() == [
        "Name  State                Served entity             Traffic",
        "ab    Ready                champion-1: iris-lr v1    80%",
        "                           challenger-2: iris-lr v2  20%",
        "solo  Not ready (Stopped)  a-1: iris-lr v1           100%",
    ]
    assert render_list_text([]) == "No serving endpoints yet; create one with %%serve create."
