"""Browser-test support: a real `jupyter lab` carrying the serving extension and the freshly built panel.

Everything Jupyter reads (config, data, runtime, workspaces) lives in a temp dir, so the test neither
sees nor changes the developer's Lab, and it always loads `jupyter_serving/labextension` (the build
output) ahead of any installed copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from serving_support import MlflowEnv, jupyter_url

REPO = Path(__file__).resolve().parents[2]
UI_DIR = Path(__file__).resolve().parent
BUILT_EXTENSION = REPO / "jupyter_serving" / "labextension"
ARTIFACTS = UI_DIR / "artifacts"
LAB_START_TIMEOUT_S = 90.0
TOKEN = "ui-test-token"


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path

    def api(self, method: str, path: str, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"token {self.token}"}
        return requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


def browser_prerequisites() -> tuple[str, str] | str:
    """(node, chromium) paths, or the reason the browser test cannot run here."""
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if node is None:
        return "node is not installed"
    if not Path(chromium).exists():
        return f"no Chromium at {chromium} (apt-get install chromium, or set CHROMIUM_PATH)"
    if not (UI_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed (cd tests/ui && npm ci)"
    if not (BUILT_EXTENSION / "package.json").exists():
        return "the labextension is not built (make install, or cd labextension && jlpm build)"
    return node, chromium


@contextlib.contextmanager
def running_lab(home: Path, mlflow_env: MlflowEnv) -> Iterator[Lab]:
    env = _isolated_env(home, mlflow_env)
    log = home / "lab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ServerApp.ip=127.0.0.1", "--ServerApp.port=0", "--ServerApp.allow_root=True",
        f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={home / 'root'}",
        f"--LabApp.workspaces_dir={home / 'workspaces'}", f"--LabApp.user_settings_dir={home / 'settings'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        runtime = Path(env["JUPYTER_RUNTIME_DIR"])
        url = jupyter_url(proc, runtime, TOKEN, "api/2.0/jupyter-serving/health", LAB_START_TIMEOUT_S, log)
        yield Lab(url, TOKEN, home / "root", log)
    finally:
        _stop(proc)


def _isolated_env(home: Path, mlflow_env: MlflowEnv) -> dict[str, str]:
    for sub in ("root", "config/labconfig", "data", "runtime", "share/jupyter/labextensions", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / "share/jupyter/labextensions/jupyter-serving").symlink_to(BUILT_EXTENSION)
    config = {"ServerApp": {"jpserver_extensions": {"jupyter_serving": True}}}
    (home / "config/jupyter_server_config.json").write_text(json.dumps(config))
    # The news prompt would cover the panel in screenshots.
    page_config = {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}
    (home / "config/labconfig/page_config.json").write_text(json.dumps(page_config))
    return {
        **os.environ,
        **mlflow_env.env,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        # First on Lab's labextensions path: the build output wins over an installed copy.
        "JUPYTER_PATH": str(home / "share/jupyter"),
        "JUPYTER_SERVING_STATE_DIR": str(home / "state"),
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
