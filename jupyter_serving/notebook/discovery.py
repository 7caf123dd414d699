"""How a kernel finds its serving server, and the embedded server it starts when there is none.

Order: `JUPYTER_SERVING_URL` / `JUPYTER_SERVING_TOKEN`; else the Jupyter server whose pid is the
kernel's `JPY_PARENT_PID`, when it answers our health route; else an embedded standalone server on
loopback with a fresh token, started for this kernel and ended with it.

Ending with the kernel: the server runs under a tiny watchdog process whose stdin is a pipe that only
the kernel holds. When the kernel exits for any reason, SIGKILL included, the OS closes that pipe;
the watchdog reads EOF and SIGTERMs the server (which stops its workers), escalating to SIGKILL.
`atexit` closes the pipe early on a clean exit and waits. The watchdog runs in its own session so a
kernel interrupt (SIGINT to the kernel's process group) does not reach the server.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import requests

from jupyter_serving.launch import ServerStartError, serve_command, spawn, wait_for_info

log = logging.getLogger(__name__)

HEALTH_PATH = "api/2.0/jupyter-serving/health"
URL_ENV, TOKEN_ENV = "JUPYTER_SERVING_URL", "JUPYTER_SERVING_TOKEN"
STATE_DIR_ENV = "JUPYTER_SERVING_STATE_DIR"

# Runs as `python -c _WATCHDOG <workdir> <server command...>`. Self-contained on purpose: it imports
# nothing of ours, so it starts in milliseconds and cannot be broken by the package it supervises.
# When the kernel is gone (EOF) it also removes the kernel's scratch folder, which atexit could not.
_WATCHDOG = """
import os, select, shutil, signal, subprocess, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
signal.signal(signal.SIGINT, signal.SIG_IGN)
workdir, command = sys.argv[1], sys.argv[2:]
child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
orphaned = False
try:
    while child.poll() is None:
        ready, _, _ = select.select([0], [], [], 0.5)
        if ready and not os.read(0, 4096):
            orphaned = True
            break
finally:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
if orphaned:
    shutil.rmtree(workdir, ignore_errors=True)
sys.exit(max(child.returncode, 0))
"""


class DiscoveryError(RuntimeError):
    """No serving server could be found or started."""


@dataclass
class ServerInfo:
    """Where the serving API is, and how it was found."""

    url: str
    token: str
    source: Literal["env", "jupyter", "embedded"]
    detail: str = ""
    embedded: EmbeddedServer | None = field(default=None, repr=False)

    def describe(self) -> str:
        """The one line `%load_ext jupyter_serving` prints."""
        if self.source == "env":
            return f"jupyter-serving: using the server at {self.url} (from ${URL_ENV})"
        if self.source == "jupyter":
            return f"jupyter-serving: using this kernel's Jupyter server at {self.url} ({self.detail})"
        return (
            f"jupyter-serving: started an embedded server for this kernel at {self.url}; "
            f"it stops with the kernel ({self.detail})"
        )


def discover(
    *, environ: Mapping[str, str] | None = None, start_embedded: bool = True, timeout: float = 90.0
) -> ServerInfo:
    """Find the server this kernel should use; see the module docstring for the order."""
    env = os.environ if environ is None else environ
    found = from_env(env) or from_parent_jupyter(env)
    if found is not None:
        return found
    if not start_embedded:
        raise DiscoveryError(
            f"No serving server found: set ${URL_ENV} / ${TOKEN_ENV}, or run this kernel under a "
            "Jupyter server with the jupyter_serving extension."
        )
    return embedded_server(env, timeout=timeout)


def from_env(env: Mapping[str, str]) -> ServerInfo | None:
    url = env.get(URL_ENV, "").strip()
    if not url:
        return None
    return ServerInfo(_slash(url), env.get(TOKEN_ENV, ""), "env")


def from_parent_jupyter(env: Mapping[str, str], runtime_dir: str | None = None) -> ServerInfo | None:
    """The Jupyter server that launched this kernel, if it has our extension (answers the health probe)."""
    try:
        parent = int(env.get("JPY_PARENT_PID", ""))
    except ValueError:
        return None
    info = _jupyter_server_info(parent, runtime_dir)
    if info is None or not info.get("url"):
        return None
    url, token = _slash(str(info["url"])), str(info.get("token") or "")
    if not probe(url, token):
        log.info("The Jupyter server at %s does not serve jupyter-serving; not using it.", url)
        return None
    return ServerInfo(url, token, "jupyter", f"pid {parent}")


def _jupyter_server_info(pid: int, runtime_dir: str | None) -> dict[str, object] | None:
    # Read the jpserver-*.json files directly instead of importing jupyter_server: the kernel's
    # environment need not have it, and the files are all list_running_servers() reads anyway.
    if runtime_dir is None:
        from jupyter_core.paths import jupyter_runtime_dir

        runtime_dir = jupyter_runtime_dir()
    for path in sorted(Path(runtime_dir).glob("jpserver-*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and info.get("pid") == pid:
            return info
    return None


def probe(url: str, token: str, timeout: float = 5.0) -> bool:
    """True when `url` serves the jupyter-serving API and accepts `token`."""
    headers = {"Authorization": f"token {token}"} if token else {}
    try:
        resp = requests.get(_slash(url) + HEALTH_PATH, headers=headers, timeout=timeout)
    except requests.RequestException:
        return False
    return resp.status_code == 200


def _slash(url: str) -> str:
    return url if url.endswith("/") else url + "/"


# -- the embedded server ---------------------------------------------------------------------

_embedded: EmbeddedServer | None = None


def embedded_server(env: Mapping[str, str] | None = None, *, timeout: float = 90.0) -> ServerInfo:
    """This kernel's embedded server, started on first use and reused while it runs."""
    global _embedded
    if _embedded is None or not _embedded.running:
        env = os.environ if env is None else env
        _embedded = EmbeddedServer(state_dir=env.get(STATE_DIR_ENV) or None)
        _embedded.start(timeout=timeout)
    return _embedded.info


class EmbeddedServer:
    """A standalone `jupyter-serving serve` on 127.0.0.1, owned by this process (see module docstring)."""

    def __init__(self, state_dir: str | None = None) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="jupyter-serving-kernel-"))
        # A state dir we made ourselves goes with the kernel; one the user named is theirs to keep.
        self.state_dir = Path(state_dir) if state_dir else self.workdir / "state"
        self.info_file = self.workdir / "server.json"
        self.log_file = self.workdir / "server.log"
        self.token = secrets.token_urlsafe(32)
        self.process: subprocess.Popen[bytes] | None = None
        self._info: ServerInfo | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def info(self) -> ServerInfo:
        if self._info is None:
            raise DiscoveryError("The embedded server has not been started.")
        return self._info

    @property
    def server_pid(self) -> int:
        return int(json.loads(self.info_file.read_text())["pid"])

    def command(self) -> list[str]:
        # The token travels in $JUPYTER_SERVING_TOKEN (see `start`), not argv: any local user can read a
        # process's argv, only its owner its environment.
        return serve_command(self.info_file, "--host", "127.0.0.1", "--state-dir", str(self.state_dir))

    def start(self, timeout: float = 90.0) -> ServerInfo:
        self.process = spawn(
            [sys.executable, "-c", _WATCHDOG, str(self.workdir), *self.command()],
            info_file=self.info_file,
            log_path=self.log_file,
            extra_env={"JUPYTER_SERVING_TOKEN": self.token},
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            info = wait_for_info(
                self.process,
                self.info_file,
                self.log_file,
                timeout=timeout,
                name="embedded jupyter-serving server",
            )
        except ServerStartError as exc:
            self._terminate()  # keep the log the error points to
            raise DiscoveryError(str(exc)) from exc
        except BaseException:
            self._terminate()  # an interrupt while waiting: no server left behind
            raise
        # The info file is the server's own word on where it listens and what token it accepts.
        self.token = str(info.get("token") or self.token)
        self._info = ServerInfo(
            _slash(str(info["url"])), self.token, "embedded", f"logs: {self.log_file}", self
        )
        return self._info

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server and its workers and remove its files; safe to call twice."""
        self._terminate(timeout)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _terminate(self, timeout: float = 30.0) -> None:
        atexit.unregister(self.stop)
        proc, self.process = self.process, None
        if proc is not None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()  # EOF: the watchdog SIGTERMs the server and waits for it
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # The watchdog leads its own session, so its group holds it and the server.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
