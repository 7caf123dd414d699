"""Start a standalone `jupyter-serving serve` in a subprocess and learn where it listens.

The server is started on port 0 with `--info-file`, so the OS picks a free port and the server writes
`{url, token, pid}` to that file, atomically, once it listens. The caller waits for the file instead
of guessing a port or polling HTTP; while it waits it watches the process, so a server that dies at
start-up fails at once with the end of its log instead of at the deadline.

Used by the notebook's embedded server, `make demo`, the tests and the benchmarks. The notebook
imports it on `%load_ext`, so it must stay cheap: standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOKEN_ENV = "JUPYTER_SERVING_TOKEN"  # the admin token of `jupyter-serving serve` (see cli.py)


class ServerStartError(RuntimeError):
    """The server exited, or did not write its info file in time; the message ends with its log tail."""

    def __init__(self, message: str, *, returncode: int | None, log_path: Path) -> None:
        super().__init__(message)
        self.returncode = returncode  # None: still running at the deadline
        self.log_path = log_path


@dataclass
class LaunchedServer:
    """A started server: its process, and what it wrote to its info file."""

    process: subprocess.Popen[bytes]
    info: dict[str, Any]
    log_path: Path

    @property
    def url(self) -> str:
        return str(self.info["url"])


def serve_command(info_file: Path, *args: str) -> list[str]:
    """argv of `jupyter-serving serve --port 0 --info-file F *args` run by this interpreter.

    `python -m` rather than the console script, so the server runs in this environment even when
    its `bin` is not on PATH.
    """
    return [
        sys.executable, "-m", "jupyter_serving", "serve",
        "--port", "0", "--info-file", str(info_file), *args,
    ]  # fmt: skip


def spawn(
    command: Sequence[str],
    *,
    info_file: Path,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
    **popen_kwargs: Any,
) -> subprocess.Popen[bytes]:
    """Start `command` with stdout and stderr appended to `log_path`; does not wait.

    A stale `info_file` (from an earlier run) is removed first, or the wait would read the old
    address. `extra_env` is set on top of this process's environment. Other keyword arguments go to
    `subprocess.Popen` (stdin, start_new_session, cwd, ...).
    """
    info_file.unlink(missing_ok=True)
    env = {**os.environ, **(extra_env or {})}
    # The child gets its own copy of the log's descriptor; ours can close at once.
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(command), env=env, stdout=log, stderr=subprocess.STDOUT, **popen_kwargs)


def wait_for_info(
    process: subprocess.Popen[bytes],
    info_file: Path,
    log_path: Path,
    *,
    timeout: float,
    name: str = "jupyter-serving server",
    poll_s: float = 0.05,
) -> dict[str, Any]:
    """What the server wrote to `info_file` ({url, token, pid}), once it listens.

    Raises `ServerStartError` with the tail of `log_path` when `process` exits first, or when the
    file has not appeared after `timeout` seconds; the process is left as it is either way (the
    caller owns it and knows how to stop it).
    """
    deadline = time.monotonic() + timeout
    while not info_file.exists():
        if process.poll() is not None:
            raise ServerStartError(
                f"The {name} exited with code {process.returncode} before listening. " + _log_says(log_path),
                returncode=process.returncode,
                log_path=log_path,
            )
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"The {name} did not start within {timeout:g} s. " + _log_says(log_path),
                returncode=None,
                log_path=log_path,
            )
        time.sleep(poll_s)
    info: dict[str, Any] = json.loads(info_file.read_text())
    return info


def launch(
    args: Sequence[str],
    *,
    info_file: Path,
    log_path: Path,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    token: str | None = None,
) -> LaunchedServer:
    """`spawn` `jupyter-serving serve *args` on port 0 and `wait_for_info`; stop it if that fails.

    `token`, the admin token, travels in $JUPYTER_SERVING_TOKEN: only the process's owner can read
    its environment, while every local user can read its argv.

    For callers with no special way to stop the server: on failure it is sent SIGTERM (it stops
    its workers), then SIGKILL, since nobody else knows about the process yet.
    """
    env = {**(extra_env or {}), **({TOKEN_ENV: token} if token is not None else {})}
    process = spawn(serve_command(info_file, *args), info_file=info_file, log_path=log_path, extra_env=env)
    try:
        info = wait_for_info(process, info_file, log_path, timeout=timeout)
    except BaseException:
        _stop(process)
        raise
    return LaunchedServer(process, info, log_path)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file; empty when it cannot be read."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _log_says(log_path: Path) -> str:
    tail = log_tail(log_path)
    return f"Its log ({log_path}) ends with:\n{tail}" if tail else f"Its log ({log_path}) is empty."


def _stop(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
