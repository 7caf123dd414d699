"""Every notebook in notebooks/ runs top to bottom in a fresh kernel, as a user would run it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


def test_there_is_a_quickstart() -> None:
    assert "quickstart.ipynb" in [p.name for p in NOTEBOOKS]


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_in_a_fresh_kernel(path: Path, clean_env: dict[str, str], tmp_path: Path) -> None:
    if path.stem == "huggingface" and importlib.util.find_spec("transformers") is None:
        pytest.skip("the flavors extra is not installed (pip install -e '.[flavors]')")
    # No server pointer in the kernel's environment: the notebook finds (or starts) its own server,
    # the way it would under nbconvert or VS Code.
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=clean_env)
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    if path.stem == "quickstart":
        text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
        assert "jupyter-serving: started an embedded server for this kernel" in text
        html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
        assert any("iris-quickstart" in h and "Ready</span>" in h for h in html)
        assert "Deleted endpoint 'iris-quickstart'." in text
    if path.stem == "huggingface":
        text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
        assert "'predictions': [{'label': " in text  # the served classifier answered
        assert "Deleted endpoint 'tiny-sentiment'." in text
    if path.stem == "agent":
        check_agent_notebook(nb)


def check_agent_notebook(nb: nbformat.NotebookNode) -> None:
    """`%serve query --stream` printed the answer one token per flush (one stream output each, as a
    terminal or nbconvert sees them), and the loop ran to the end."""
    [streamed] = [c for c in nb.cells if "--served prompt-v2 --stream" in c.source]
    parts = [o["text"] for o in streamed.outputs if o.output_type == "stream" and o.name == "stdout"]
    assert "".join(parts) == (
        "Good question! Should I stream tokens? It depends on your traffic, your latency budget "
        "and your costs, so measure on real requests before you decide.\n"
    )
    assert len(parts) >= 20  # not one output at the end
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "traces in experiment 'agent-traces'" in text or "No traces from the served agent" in text
    assert "Deleted endpoint 'support-agent'." in text
