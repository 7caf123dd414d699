"""How a kernel finds its server: env override, the parent Jupyter server, the embedded fallback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from jupyter_core.paths import jupyter_runtime_dir
from serving_support import eventually

from jupyter_serving.notebook.discovery import (
    DiscoveryError,
    EmbeddedServer,
    discover,
    from_parent_jupyter,
)

# A stand-in kernel: finds its server, reports it, then idles until stdin closes (a clean exit).
KERNEL = """
import json, sys
from jupyter_serving.notebook.discovery import discover
info = discover()
print(json.dumps({"url": info.url, "token": info.token, "line": info.describe(),
                  "server": info.embedded.server_pid, "watchdog": info.embedded.process.pid,
                  "workdir": str(info.embedded.workdir)}), flush=True)
sys.stdin.read()
"""


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout: float) -> list[int]:
    try:
        return eventually(lambda: [p for p in pids if alive(p)], timeout, 0.1, until=lambda left: not left)
    except AssertionError:
        return [p for p in pids if alive(p)]


def test_env_override_wins() -> None:
    info = discover(
        environ={
            "JUPYTER_SERVING_URL": "http://127.0.0.1:9/x",
            "JUPYTER_SERVING_TOKEN": "t",
            "JPY_PARENT_PID": "1",
        }
    )
    assert (info.url, info.token, info.source) == ("http://127.0.0.1:9/x/", "t", "env")
    assert (
        info.describe()
        == "jupyter-serving: using the server at http://127.0.0.1:9/x/ (from $JUPYTER_SERVING_URL)"
    )


def test_parent_jupyter_server_is_found_by_pid(serving_server: Any, tmp_path: Path) -> None:
    # The standalone server is a Jupyter server with our extension: it wrote its jpserver-<pid>.json.
    pid = next(
        info["pid"]
        for path in Path(jupyter_runtime_dir()).glob("jpserver-*.json")
        if (info := json.loads(path.read_text()))["url"] == serving_server.url
    )
    found = discover(environ={"JPY_PARENT_PID": str(pid)}, start_embedded=False)
    assert (found.source, found.url, found.token) == ("jupyter", serving_server.url, serving_server.token)
    assert found.describe().startswith(
        f"jupyter-serving: using this kernel's Jupyter server at {serving_server.url}"
    )
    # A Jupyter server that refuses our token (or lacks the extension) is passed over.
    (tmp_path / f"jpserver-{pid}.json").write_text(
        json.dumps({"url": serving_server.url, "token": "no", "pid": pid})
    )
    assert from_parent_jupyter({"JPY_PARENT_PID": str(pid)}, runtime_dir=str(tmp_path)) is None


def test_without_a_server_and_no_fallback_it_says_what_to_set(tmp_path: Path) -> None:
    with pytest.raises(DiscoveryError, match="JUPYTER_SERVING_URL"):
        discover(environ={"JPY_PARENT_PID": str(os.getpid())}, start_embedded=False)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("kernel_end", ["exit", "SIGKILL"])
def test_embedded_server_answers_and_ends_with_the_kernel(
    clean_env: dict[str, str], tmp_path: Path, kernel_end: str
) -> None:
    kernel = subprocess.Popen(
        [sys.executable, "-c", KERNEL],
        env=clean_env,
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert kernel.stdout is not None and kernel.stdin is not None
        report = json.loads(kernel.stdout.readline() or "{}")
        assert report, f"the kernel exited with {kernel.wait()}"
        assert report["line"].startswith(
            f"jupyter-serving: started an embedded server for this kernel at {report['url']}"
        )
        health = requests.get(
            report["url"] + "api/2.0/jupyter-serving/health",
            headers={"Authorization": f"Bearer {report['token']}"},
            timeout=10,
        )
        assert health.json()["status"] == "ok"
        assert requests.get(report["url"] + "api/2.0/serving-endpoints", timeout=10).status_code in (401, 403)
        # The token is not in any process's argv, where other local users could read it.
        assert report["token"] not in " ".join(psutil.Process(report["server"]).cmdline())
        processes = [
            report["watchdog"],
            report["server"],
            *[p.pid for p in psutil.Process(report["server"]).children(recursive=True)],
        ]
        if kernel_end == "exit":
            kernel.stdin.close()
            assert kernel.wait(timeout=60) == 0
        else:
            kernel.send_signal(signal.SIGKILL)
            kernel.wait(timeout=10)
        assert wait_gone(processes, timeout=60) == []
        with pytest.raises(requests.ConnectionError):
            requests.get(report["url"] + "api/2.0/jupyter-serving/health", timeout=5)
        assert not Path(report["workdir"]).exists()  # its logs and state went with it
    finally:
        if kernel.poll() is None:
            kernel.kill()
            kernel.wait()


def test_embedded_server_that_dies_at_start_fails_clearly(tmp_path: Path) -> None:
    class Broken(EmbeddedServer):
        def command(self) -> list[str]:
            return [sys.executable, "-c", "import sys; print('cannot bind: fixture failure'); sys.exit(3)"]

    server = Broken()
    started = time.monotonic()
    with pytest.raises(DiscoveryError, match="cannot bind: fixture failure") as info:
        server.start(timeout=60)
    assert "exited with code 3" in str(info.value)
    assert time.monotonic() - started < 30  # noticed at once, not at the deadline
    assert not server.running
    server.stop()
