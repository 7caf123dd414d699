"""The start-up wait shared by the embedded server, the demo, the tests and the benchmarks."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from jupyter_serving.launch import ServerStartError, serve_command, spawn, wait_for_info


def test_serve_command_runs_this_interpreter_on_port_0() -> None:
    command = serve_command(Path("/tmp/info.json"), "--token", "t")
    assert command[:4] == [sys.executable, "-m", "jupyter_serving", "serve"]
    assert command[4:] == ["--port", "0", "--info-file", "/tmp/info.json", "--token", "t"]


def test_returns_the_info_file_and_drops_a_stale_one(tmp_path: Path) -> None:
    info, log = tmp_path / "info.json", tmp_path / "server.log"
    info.write_text(json.dumps({"url": "http://stale/"}))
    write = f"import json, time; time.sleep(0.2); open({str(info)!r}, 'w').write(json.dumps({{'url': 'http://new/'}}))"
    process = spawn([sys.executable, "-c", write + "; time.sleep(30)"], info_file=info, log_path=log)
    try:
        assert wait_for_info(process, info, log, timeout=30)["url"] == "http://new/"
    finally:
        process.kill()
        process.wait()


def test_a_process_that_dies_fails_at_once_with_its_log(tmp_path: Path) -> None:
    info, log = tmp_path / "info.json", tmp_path / "server.log"
    crash = "import sys; print('cannot bind: fixture failure', flush=True); sys.exit(3)"
    process = spawn([sys.executable, "-c", crash], info_file=info, log_path=log)
    started = time.monotonic()
    with pytest.raises(ServerStartError, match="exited with code 3") as caught:
        wait_for_info(process, info, log, timeout=60)
    assert time.monotonic() - started < 30
    assert "cannot bind: fixture failure" in str(caught.value)
    assert caught.value.returncode == 3


def test_a_process_that_never_listens_times_out_with_its_log(tmp_path: Path) -> None:
    info, log = tmp_path / "info.json", tmp_path / "server.log"
    hang = "import time; print('still loading', flush=True); time.sleep(60)"
    process = spawn([sys.executable, "-c", hang], info_file=info, log_path=log)
    try:
        with pytest.raises(ServerStartError, match="did not start within 1 s") as caught:
            wait_for_info(process, info, log, timeout=1)
        assert caught.value.returncode is None
        assert "still loading" in str(caught.value)
        assert process.poll() is None  # the caller owns the process and decides how to stop it
    finally:
        process.kill()
        process.wait()
