"""The page's progressive-delivery views end to end (issue 29), in headless Chromium against a real
jupyter lab: a rollout started from the Rollout tab walks its steps to 100 %, a running one is paused,
resumed and canceled from its buttons, and one whose challenger starts failing is rolled back with the
guard's reason on the timeline; the Shadow tab starts a mirror and shows the agreement of live and shadow
answers on the same requests; the Overview shows the live A/B verdict (estimate, interval, "worse").

Entities are the `flaky` fixture model: `current` and `steady` never fail; `challenger` fails on 30 % of
inputs (FLAKY_PERCENT), but the load sends only inputs it answers until the browser flow opens the gate
(a file it writes), so a rollout to it stays healthy exactly as long as the flow needs.

Screenshots land in tests/ui/artifacts/<test>/; a failed step leaves NN-step-FAILED.png.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
import zlib
from pathlib import Path

import pytest
from lab_support import ARTIFACTS, UI_DIR, Lab
from scenarios import CAPTURE
from serving_support import entity, eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(600)]

ENDPOINT = "page-delivery"
FAILING_PERCENT = 30
LOAD_LIMIT_S = 480.0  # the load stops with the browser script, or at this bound


def delivery_config() -> dict[str, object]:
    percents = {"current": 0, "steady": 0, "challenger": FAILING_PERCENT}
    return {
        "served_entities": [
            entity("flaky", 1, name=n, environment_vars={"FLAKY_PERCENT": str(p)})
            for n, p in percents.items()
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": n, "traffic_percentage": 100 if n == "current" else 0} for n in percents
            ]
        },
        "auto_capture_config": CAPTURE,
    }


def fails(x: int) -> bool:
    """tests/model_code/flaky.py's rule, for the challenger's share."""
    return zlib.crc32(str(x).encode()) % 100 < FAILING_PERCENT


def load(lab: Lab, stop: threading.Event, gate: Path, answered: list[tuple[bool, int]]) -> None:
    """About 20 seeded requests a second (a load shape, not synchronisation): inputs the challenger
    answers until `gate` exists, any input after; then a third of them also go to the challenger
    itself (bypassing the split), so the Overview's verdict has evidence once the rollback took
    its traffic away."""
    rng = random.Random(29)
    deadline = time.monotonic() + LOAD_LIMIT_S
    while not stop.is_set() and time.monotonic() < deadline:
        x = rng.randrange(10**9)
        opened = gate.exists()
        if fails(x) and not opened:
            continue
        body = {"dataframe_split": {"columns": ["x"], "data": [[float(x)]]}}
        status = lab.api("POST", f"serving-endpoints/{ENDPOINT}/invocations", json=body).status_code
        answered.append((opened, status))
        if opened and x % 3 == 0:  # evidence on the challenger after its rollback, for the verdict
            lab.api("POST", f"serving-endpoints/{ENDPOINT}/served-models/challenger/invocations", json=body)
        stop.wait(0.05)


def ready(lab: Lab) -> bool:
    return lab.api("GET", f"api/2.0/serving-endpoints/{ENDPOINT}").json()["state"]["ready"] == "READY"


def test_rollout_timeline_shadow_view_and_live_verdict(
    lab: Lab, browser_tools: tuple[str, str], request: pytest.FixtureRequest
) -> None:
    node, chromium = browser_tools
    artifacts = ARTIFACTS / request.node.name
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    gate = artifacts / "open-failing-inputs"
    created = lab.api(
        "POST", "api/2.0/serving-endpoints", json={"name": ENDPOINT, "config": delivery_config()}
    )
    assert created.ok, created.text
    stop, answered = threading.Event(), list[tuple[bool, int]]()
    loader = threading.Thread(target=load, args=(lab, stop, gate, answered), daemon=True)
    try:
        eventually(lambda: ready(lab), 180, 0.2, f"{ENDPOINT} READY")
        loader.start()
        env = {
            **os.environ,
            "LAB_URL": lab.url,
            "LAB_TOKEN": lab.token,
            "ARTIFACTS": str(artifacts),
            "CHROMIUM_PATH": chromium,
            "ENDPOINT": ENDPOINT,
            "FAILING_GATE": str(gate),
        }
        result = subprocess.run([node, str(UI_DIR / "delivery_flow.mjs")], cwd=UI_DIR, env=env, capture_output=True,
                                text=True, timeout=540)  # fmt: skip
        report = (
            f"{result.stdout}\n{result.stderr}\nbrowser log: {artifacts / 'browser.log'}\nlab log: {lab.log}"
        )
        assert result.returncode == 0, report
        assert "ok   " in result.stdout and "FAIL" not in result.stdout, report
    finally:
        stop.set()
        loader.join(timeout=30)
        lab.api("DELETE", f"api/2.0/serving-endpoints/{ENDPOINT}")
    rollout = lab_rollout_types(artifacts)
    assert rollout >= {"ROLLOUT_STARTED", "ROLLOUT_ROLLED_BACK"}, rollout
    # Before the gate opened every answer was a 200 (pauses, cancels and steps dropped none);
    # after it, the challenger's share of the failing inputs failed until the rollback.
    before = {status for opened, status in answered if not opened}
    after = [status for opened, status in answered if opened]
    assert before == {200}, sorted(before)
    assert 200 in after and any(s != 200 for s in after), sorted(set(after))


def lab_rollout_types(artifacts: Path) -> set[str]:
    """The timeline event types the flow saw on the rolled-back rollout (it writes them down)."""
    return set((artifacts / "rolled-back-timeline.txt").read_text().split())
