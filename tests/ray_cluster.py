"""Test support: a real two-node Ray cluster on this machine (a head and one more node), in a temp dir.

Both nodes are `ray start` processes with one CPU each, so the whole cluster fits a 2-core machine.
Stopping kills exactly the processes of this cluster (those whose command line names its temp dir,
its GCS address or port, and their children), never another Ray on the machine, which `ray stop` would.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
RAY_MISSING = (
    "Ray is not installed: pip install 'jupyter-serving[ray]' (make install does)"
    if importlib.util.find_spec("ray") is None
    else ""
)
START_TIMEOUT_S = 180
# The suite's clusters are hermetic: unauthenticated, so neither they nor their clients (the servers
# under test, drivers) read a `~/.ray/auth_token` another Ray on this machine left behind (Ray 2.60
# turns token auth on whenever that file exists, and then `ray start --address` is refused).
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


@dataclass
class RayCluster:
    temp_dir: str
    address: str = ""
    # Serve's HTTP proxy ports: the head's (the servers' --ray-http-port) and the other node's (two
    # proxies on one machine need two ports: RAY_SERVE_WORKER_PROXY_HTTP_PORT, read on that node).
    proxy_ports: tuple[int, int] = (0, 0)

    def start(self) -> RayCluster:
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        self._ray(
            "start", "--head", "--port", str(port), "--temp-dir", self.temp_dir,
            "--include-dashboard", "false", "--ray-client-server-port", str(_free_port()), *_node_options(),
        )  # fmt: skip
        self.proxy_ports = (_free_port(), _free_port())
        worker_env = {"RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(self.proxy_ports[1])}
        self._ray("start", "--address", self.address, *_node_options(), env=worker_env)
        return self

    @property
    def proxy_flags(self) -> list[str]:
        """A server's flags for this cluster's proxies (the head's port; see `proxy_ports`)."""
        return ["--ray-http-host", "127.0.0.1", "--ray-http-port", str(self.proxy_ports[0])]

    def driver(self, code: str) -> str:
        """Run Python `code` as a driver of this cluster (`ray` and `serve` imported, connected) in a
        process of its own, so the test process never joins the cluster; its last line of output."""
        prelude = (
            "import json, ray; from ray import serve; "
            f"ray.init(address={self.address!r}, log_to_driver=False, logging_level='ERROR', namespace='serve')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", prelude + code],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=True,
            env={**os.environ, **RAY_ENV},
        )
        return done.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        """Kill this cluster's processes (and their children) and wait for them to go."""
        roots = [p for p in psutil.process_iter(["cmdline"]) if _ours(p, self.temp_dir, self.address)]
        victims = {p.pid: p for root in roots for p in [root, *_children(root)]}
        for proc in victims.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(list(victims.values()), timeout=30)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def applications(self) -> list[str]:
        """The Serve applications on the cluster, read by a driver of our own (a separate process,
        so the test process never joins the cluster)."""
        code = (
            "import json, ray; from ray import serve; "
            f"ray.init(address={self.address!r}, log_to_driver=False, logging_level='ERROR'); "
            "print(json.dumps(sorted(serve.status().applications)))"
        )
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=True,
            env={**os.environ, **RAY_ENV},
        )
        return list(json.loads(done.stdout.strip().splitlines()[-1]))

    def _ray(self, *args: str, env: dict[str, str] | None = None) -> None:
        # A raylet waits this long (default 15 s, as a file) for its agents' ports; a loaded 2-core
        # machine can take longer to import them (seen at load 15+: "Timed out waiting for file").
        env = {**os.environ, **RAY_ENV, "RAY_agent_register_timeout_ms": "120000", **(env or {})}
        done = subprocess.run([RAY, *args], env=env, timeout=START_TIMEOUT_S, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(
                f"ray {' '.join(args[:3])} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            )


def start_cluster(attempts: int = 3) -> RayCluster:
    """Start a fresh cluster; on a loaded machine Ray's fixed 30 s wait for a node to register can
    pass, so a start that fails is cleaned up entirely and tried again (imports are cached by then)."""
    for attempt in range(attempts):
        # A short path: Ray's Unix sockets live below it (108-byte limit).
        cluster = RayCluster(tempfile.mkdtemp(prefix="jsray-test-", dir="/tmp"))
        try:
            return cluster.start()
        except BaseException as exc:
            cluster.stop()
            if attempt + 1 == attempts or not isinstance(exc, RuntimeError):
                raise
    raise AssertionError("unreachable")


def _node_options() -> list[str]:
    """One CPU, and explicit agent ports: given none, a raylet waits at most 15 s (fixed in Ray) for
    its agents to write theirs, and on a loaded 2-core machine they can take longer to import."""
    ports = [
        f"--{name}={_free_port()}"
        for name in (
            "metrics-export-port",
            "dashboard-agent-grpc-port",
            "dashboard-agent-listen-port",
            "runtime-env-agent-port",
        )
    ]
    return ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats", *ports]


def _ours(proc: psutil.Process, temp_dir: str, address: str) -> bool:
    """A process of this cluster: its command line names the temp dir or the GCS address, or (Ray's
    client server, started with the node's own IP rather than the address given) the GCS port."""
    if proc.pid == os.getpid():
        return False
    cmdline = " ".join(proc.info["cmdline"] or [])
    port = address.rpartition(":")[2]
    gcs_port = bool(port) and "ray" in cmdline and f":{port} " in f"{cmdline} "
    return bool(temp_dir and temp_dir in cmdline) or bool(address and address in cmdline) or gcs_port


def _children(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
