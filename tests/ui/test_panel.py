"""The "Model Serving" panel end to end in headless Chromium: open it from the command palette, create an
endpoint through the form (a server validation message shown inline first), see it READY, change the
split, query it in the playground, read logs, open it in a notebook, delete it.

Screenshots of every step land in tests/ui/artifacts/<test>/; a failed step leaves NN-step-FAILED.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from lab_support import ARTIFACTS, UI_DIR, Lab

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

ENDPOINT = "ui-iris"


def test_panel_flow(lab: Lab, browser_tools: tuple[str, str], request: pytest.FixtureRequest) -> None:
    node, chromium = browser_tools
    artifacts = ARTIFACTS / request.node.name
    shutil.rmtree(artifacts, ignore_errors=True)
    env = {
        **os.environ,
        "LAB_URL": lab.url,
        "LAB_TOKEN": lab.token,
        "ARTIFACTS": str(artifacts),
        "CHROMIUM_PATH": chromium,
        "SPLIT_STEP": "1",
        "ENDPOINT": ENDPOINT,
    }
    result = subprocess.run([node, str(UI_DIR / "panel_flow.mjs")], cwd=UI_DIR, env=env, capture_output=True,
                            text=True, timeout=540)  # fmt: skip
    report = f"{result.stdout}\n{result.stderr}\nbrowser log: {artifacts / 'browser.log'}\nlab log: {lab.log}"
    assert result.returncode == 0, report
    assert "ok   " in result.stdout and "FAIL" not in result.stdout, report

    # The panel's delete really went through the API.
    gone = lab.api("GET", f"api/2.0/serving-endpoints/{ENDPOINT}")
    assert gone.status_code == 404, gone.text
