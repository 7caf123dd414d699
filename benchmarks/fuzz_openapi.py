"""Fuzz a real server against server/openapi.yaml with schemathesis (all operations, stateful phase).

    python -m benchmarks.fuzz_openapi [--max-examples 50] [--root DIR]

Starts `jupyter-serving serve` on a fresh state dir with a one-model MLflow registry (iris-lr) and one
ready endpoint (`fuzz-ep`), then runs the schemathesis CLI as the admin with every check
(`not_a_server_error`, response schema conformance, status codes, ...). Prints schemathesis' summary
and exits with its status. `benchmarks/schemathesis.toml` lists the few 400s that depend on
state or on the model, which a schema cannot express. Not part of CI: it needs the `fuzz` extra
(schemathesis) and minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from benchmarks import run as base
from jupyter_serving.launch import TOKEN_ENV, serve_command

SPEC = Path(__file__).resolve().parent.parent / "server" / "openapi.yaml"
CONFIG = Path(__file__).resolve().parent / "schemathesis.toml"
TOKEN = "fuzz-admin-token"


def start(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    env, _ = base.register_model(root)
    info, log_path = root / "info.json", root / "server.log"
    cmd = serve_command(info, "--host", "127.0.0.1", "--state-dir", str(root / "state"))
    proc = base.spawn(cmd, {**env, TOKEN_ENV: TOKEN}, log_path)
    return proc, base.wait_for_url(proc, info, log_path)


def create_endpoint(url: str) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {
        "name": "fuzz-ep",
        "config": {"served_entities": [{"entity_name": "iris-lr", "entity_version": "1"}]},
    }
    requests.post(url + "api/2.0/serving-endpoints", json=body, headers=auth, timeout=60).raise_for_status()
    deadline = time.monotonic() + 120
    while (
        requests.get(url + "api/2.0/serving-endpoints/fuzz-ep", headers=auth, timeout=30).json()["state"][
            "config_update"
        ]
        == "IN_PROGRESS"
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("fuzz-ep did not deploy")
        time.sleep(0.2)


def fuzz(url: str, root: Path, max_examples: int, seed: int) -> int:
    report = root / "report.json"
    cmd = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG),
        "run", str(SPEC), "--url", url.rstrip("/"),
        "-H", f"Authorization: Bearer {TOKEN}", "--checks", "all",
        "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(max_examples),
        "--seed", str(seed), "--continue-on-failure", "--request-timeout", "60", "--workers", "1",
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]  # fmt: skip
    return subprocess.run(cmd, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-examples", type=int, default=50, help="examples per operation and phase")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--root", default=None, help="work folder (default: a temp dir)")
    args = parser.parse_args(argv)
    root = Path(args.root or tempfile.mkdtemp(prefix="fuzz-openapi-"))
    root.mkdir(parents=True, exist_ok=True)
    proc, url = start(root)
    try:
        create_endpoint(url)
        status = fuzz(url, root, args.max_examples, args.seed)
    finally:
        proc.terminate()
        proc.wait(60)
    errors = [
        line for line in (root / "server.log").read_text(errors="replace").splitlines() if " 500 " in line
    ]
    print(json.dumps({"schemathesis_exit": status, "server_500_log_lines": len(errors), "root": str(root)}))
    return status


if __name__ == "__main__":
    sys.exit(main())
