"""Per-model environments, side by side: create -> READY of one iris model under each env manager, and
`mlflow models serve --env-manager uv` from launch to first answer; plus PSS per replica.

Run: ``.venv/bin/python -m benchmarks.envs_bench [--out results.json]``. In one temp dir, one run:

1. ``local``: the server's environment (``JUPYTER_SERVING_ENV_MANAGER=local`` on the entity).
2. ``uv`` cold: a build with an empty uv cache (``UV_CACHE_DIR`` in the temp dir) and an empty env cache.
3. ``uv`` warm uv cache: a second server with a fresh env cache but the now-full uv cache (a new
   model environment whose packages were downloaded before).
4. ``uv`` env cached: a second endpoint of the same model on that server (the environment is built and
   its warm pool holds a spare).
5. ``mlflow models serve --env-manager uv`` with its own empty uv cache and env root: launch -> first 200.

Each create is timed once the server's warm pools are full (no worker still importing), as on a server in use.
PSS (psutil ``memory_full_info().pss``) of one replica of ours, and of each of mlflow's ``-w 2`` workers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from benchmarks import run
from benchmarks.run import (
    HOST,
    TOKEN,
    OursApi,
    Target,
    free_port,
    register_model,
    request_bodies,
    spawn,
    stop,
    wait_for_answer,
    wait_for_url,
)
from jupyter_serving.launch import TOKEN_ENV, serve_command

START_TIMEOUT_S = 900.0  # environment builds take minutes on a busy machine (both servers')
ENTITY = {"entity_name": "iris-lr", "entity_version": "1", "workload_size": "Small"}


def config(manager: str) -> dict[str, Any]:
    return {"served_entities": [{**ENTITY, "environment_vars": {"JUPYTER_SERVING_ENV_MANAGER": manager}}]}


def pss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_full_info().pss / 2**20


def ours(root: Path, env: dict[str, str], name: str, steps: list[tuple[str, str]]) -> dict[str, Any]:
    """Start a server, time create -> READY for each (endpoint, env manager) step, measure PSS."""
    info, log_path = root / f"{name}-info.json", root / f"{name}.log"
    cmd = serve_command(info, "--host", HOST, "--state-dir", str(root / f"{name}-state"))
    proc = spawn(cmd, {**env, TOKEN_ENV: TOKEN}, log_path)
    out: dict[str, Any] = {}
    try:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            api = OursApi(wait_for_url(proc, info, log_path), session)
            for endpoint, manager in steps:
                wait_spares_warm(proc.pid)  # as on a server in use: its warm pools are full
                seconds = api.create_ready_s(endpoint, config(manager))
                local = api.get(endpoint)["config"]["served_entities"][0]["local"]
                out[endpoint] = {"create_to_ready_s": round(seconds, 2), "environment": local["environment"]}
                print(
                    f"  {endpoint}: create->READY {seconds:.2f} s in {local['environment']['name']}",
                    flush=True,
                )
            out[f"{name}_replica_pss_mb"] = [round(pss_mb(p), 1) for p in _replica_pids(proc.pid)]
    finally:
        stop(proc)
    return out


def wait_spares_warm(server_pid: int, limit_s: float = 600.0) -> None:
    """Until no worker of the server is still importing (a warm spare idles on its stdin)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        tree = psutil.Process(server_pid).children(recursive=True)  # forked workers are grandchildren
        workers = [c for c in tree if "jupyter_serving.worker" in _cmd(c)]
        before = {w.pid: _cpu(w) for w in workers}
        time.sleep(1.0)
        if all(_cpu(w) - before[w.pid] < 0.05 for w in workers):
            return


def _cmd(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return ""


def _cpu(proc: psutil.Process) -> float:
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _replica_pids(server_pid: int) -> list[int]:
    """Worker processes serving a model: they have a Unix socket open for listening."""
    pids = []
    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            if "jupyter_serving.worker" in " ".join(child.cmdline()) and _listening_unix(child):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def _listening_unix(proc: psutil.Process) -> bool:
    return any(c.status == psutil.CONN_NONE and c.laddr for c in proc.net_connections(kind="unix"))


def mlflow_uv(root: Path, env: dict[str, str], body: bytes) -> dict[str, Any]:
    port = free_port()
    serve = ["models", "serve", "-m", "models:/iris-lr/1", "--env-manager", "uv", "-w", "2"]
    serve += ["-h", HOST, "-p", str(port)]
    mlflow_env = {
        **env,
        "UV_CACHE_DIR": str(root / "mlflow-uv-cache"),
        "MLFLOW_ENV_ROOT": str(root / "mlflow-envs"),
        "UV_PYTHON_DOWNLOADS": "never",
    }
    log_path = root / "mlflow-serve-uv.log"
    started = time.perf_counter()
    proc = spawn([sys.executable, "-m", "mlflow", *serve], mlflow_env, log_path)
    target = Target(HOST, port, "/invocations", {"Content-Type": "application/json"}, proc, log_path)
    try:
        with requests.Session() as session:
            first = wait_for_answer(target, body, session) - started
        pss = sorted(round(pss_mb(c.pid), 1) for c in uvicorn_workers(proc.pid))
    finally:
        stop(proc)
    print(f"  mlflow models serve --env-manager uv: first answer {first:.2f} s", flush=True)
    return {"launch_to_first_answer_s": round(first, 2), "worker_pss_mb": pss}


def uvicorn_workers(root_pid: int) -> list[psutil.Process]:
    """mlflow's `-w 2` workers: uvicorn's supervisor starts them with multiprocessing's spawn."""
    tree = psutil.Process(root_pid).children(recursive=True)
    return [p for p in tree if "multiprocessing.spawn" in _cmd(p)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    run.START_TIMEOUT_S = START_TIMEOUT_S
    root = Path(tempfile.mkdtemp(prefix="envs-bench-"))
    load_before = psutil.getloadavg()[0]
    try:
        env, _ = register_model(root)
        uv_cache = {"UV_CACHE_DIR": str(root / "uv-cache")}
        print("server 1: local, then uv with a cold uv cache", flush=True)
        first = ours(root, {**env, **uv_cache}, "s1", [("local", "local"), ("uv-cold", "uv")])
        print("server 2: fresh env cache, warm uv cache; then the environment cached", flush=True)
        second = ours(root, {**env, **uv_cache}, "s2", [("uv-warm-uv-cache", "uv"), ("uv-env-cached", "uv")])
        theirs = mlflow_uv(root, env, request_bodies()[0])
        report = {
            "load_average_1m": [round(load_before, 1), round(psutil.getloadavg()[0], 1)],
            "ours": {**first, **second},
            "mlflow_uv": theirs,
        }
        local_s = first["local"]["create_to_ready_s"]
        report["ratios"] = {
            "env_cached_over_local": round(second["uv-env-cached"]["create_to_ready_s"] / local_s, 2),
            "warm_uv_cache_over_local": round(second["uv-warm-uv-cache"]["create_to_ready_s"] / local_s, 2),
            "cold_over_mlflow": round(
                first["uv-cold"]["create_to_ready_s"] / theirs["launch_to_first_answer_s"], 2
            ),
        }
        text = json.dumps(report, indent=1)
        print(text)
        if args.out:
            Path(args.out).write_text(text)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
