"""The page's Query tab streams an agent's answer (issue 33): in headless Chromium against a real jupyter lab
serving the fixture ResponsesAgent, the answer is seen part-written before it ends with the full text, Stop
keeps the part read so far, and an error event mid-stream is shown as an error.

Screenshots land in tests/ui/artifacts/<test>/; a failed step leaves NN-step-FAILED.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from agent_models import register_agents
from lab_support import ARTIFACTS, UI_DIR, Lab
from serving_support import entity, eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

ENDPOINT = "page-agent"


def ready(lab: Lab, name: str) -> bool:
    return lab.api("GET", f"api/2.0/serving-endpoints/{name}").json()["state"]["ready"] == "READY"


def test_query_tab_streams_agent(
    lab: Lab, browser_tools: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    node, chromium = browser_tools
    artifacts = ARTIFACTS / request.node.name
    shutil.rmtree(artifacts, ignore_errors=True)
    register_agents()  # into the session registry, which the lab's serving extension reads
    config = {"served_entities": [entity("agent-echo", 1)]}
    created = lab.api("POST", "api/2.0/serving-endpoints", json={"name": ENDPOINT, "config": config})
    assert created.ok, created.text
    try:
        eventually(lambda: ready(lab, ENDPOINT), 180, 0.2, f"{ENDPOINT} READY")
        stopped = tmp_path / "stopped"  # the agent writes it when its stream is closed early
        env = {
            **os.environ,
            "LAB_URL": lab.url,
            "LAB_TOKEN": lab.token,
            "ARTIFACTS": str(artifacts),
            "CHROMIUM_PATH": chromium,
            "ENDPOINT": ENDPOINT,
            "STOP_MARKER": str(stopped),
        }
        result = subprocess.run([node, str(UI_DIR / "stream_flow.mjs")], cwd=UI_DIR, env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        report = (
            f"{result.stdout}\n{result.stderr}\nbrowser log: {artifacts / 'browser.log'}\nlab log: {lab.log}"
        )
        assert result.returncode == 0, report
        assert "ok   " in result.stdout and "FAIL" not in result.stdout, report
        # Stop in the browser reached the model through Jupyter's server: its generator was closed.
        eventually(stopped.exists, 30, 0.05, "Stop closing the agent's stream")
        run_openai_snippet(lab, artifacts)
    finally:
        lab.api("DELETE", f"api/2.0/serving-endpoints/{ENDPOINT}")


def run_openai_snippet(lab: Lab, artifacts: Path) -> None:
    """The Query tab's OpenAI-client snippet for the agent, run as printed with the real `openai`
    package, the token only in the environment: it prints the agent's answer to the pre-filled
    question."""
    code = (artifacts / "snippet-openai.txt").read_text()
    assert lab.token not in code and "client.responses.create(" in code, code
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABRICKS_", "OPENAI_"))}
    env["DATABRICKS_TOKEN"] = lab.token
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "echo: Hello!", out.stdout
