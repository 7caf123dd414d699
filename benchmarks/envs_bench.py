"""Per-model environments, side by side: create -> READY of one iris model under each env manager, and
`mlflow models serve --env-manager uv` from launch to first answer; plus PSS per replica.

Run: ``.venv/bin/python -m benchmarks.envs_bench [--out results.json]``. In one temp dir, one run:

1. ``local``: the server's environment (``JUPYTER_SERVING_ENV_MANAGER=local`` on the entity).
2. ``uv`` cold: a build with an empty uv cache (``UV_CACHE_DIR`` in the temp dir) and an empty env cache.
3. ``uv`` warm uv cache: a second server with a fresh env cache but the now-full uv cache (a new
   model environment whose packages were downloaded before).
4. ``uv`` env cached: a second endpoint of the same model on that server (the environment is built and
   its warm pool holds a spare).
5. Scale from zero, on the second server (idle timer 2 s): one entity with ``scale_to_zero_enabled`` in
   the server's environment and one in the uv-built environment, side by side. Each round waits (on
   the API) until both have 0 replicas and the warm pools are full again, then times each one's first
   request on a new connection: the issue's target is an answer in under a second in a built
   environment too (its own warm pool of forked spares survives the scale-down).
6. ``mlflow models serve --env-manager uv`` with its own empty uv cache and env root: launch -> first 200.

Each create is timed once the server's warm pools are full (no worker still importing), as on a server in use.
PSS (psutil ``memory_full_info().pss``) of one replica of ours, and of each of mlflow's ``-w 2`` workers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
# Scale to zero after 2 idle seconds, checked every 0.2 s: only entities with scale_to_zero_enabled
# are affected, so the create -> READY rows on the same server are not.
ZERO_FLAGS = ("--scale-to-zero-idle-s", "2", "--autoscale-interval-s", "0.2")
ZERO_REPEATS = 5
ZERO_TIMEOUT_S = 120.0
POLL_S = 0.05
TARGET_FROM_ZERO_S = 1.0


def config(manager: str, scale_to_zero: bool = False) -> dict[str, Any]:
    entity = {**ENTITY, "environment_vars": {"JUPYTER_SERVING_ENV_MANAGER": manager}}
    if scale_to_zero:
        entity["scale_to_zero_enabled"] = True
    return {"served_entities": [entity]}


def pss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_full_info().pss / 2**20


def ours(
    root: Path,
    env: dict[str, str],
    name: str,
    steps: list[tuple[str, str]],
    from_zero: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Start a server, time create -> READY for each (endpoint, env manager) step, measure PSS; then,
    if asked, time the first request from zero of scale-to-zero entities under each env manager."""
    info, log_path = root / f"{name}-info.json", root / f"{name}.log"
    flags = ZERO_FLAGS if from_zero else ()
    cmd = serve_command(info, "--host", HOST, "--state-dir", str(root / f"{name}-state"), *flags)
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
            if from_zero:
                out["from_zero"] = scale_from_zero(api, proc.pid, from_zero)
    finally:
        stop(proc)
    return out


def scale_from_zero(api: OursApi, server_pid: int, entities: list[tuple[str, str]]) -> dict[str, Any]:
    """First request to each (endpoint, env manager) entity once it has scaled to zero, ZERO_REPEATS
    rounds, the managers interleaved so machine load hits both alike."""
    for endpoint, manager in entities:
        api.create(endpoint, config(manager, scale_to_zero=True))
        api.wait_ready(endpoint)
    body = request_bodies()[0]
    url = urlsplit(api.url)
    seconds: dict[str, list[float]] = {e: [] for e, _ in entities}
    answers: set[bytes] = set()
    checks: dict[str, list[bool]] = {e: [] for e, _ in entities}
    for i in range(ZERO_REPEATS):
        for endpoint, _ in entities:
            wait_local(api, endpoint, lambda local: local.get("replicas") == 0)
        for endpoint, _ in entities:
            wait_spares_warm(server_pid)  # the previous first request took a spare: wait for its refill
            before = api.get(endpoint)["config"]["served_entities"][0]["local"]
            took, status, answer = timed_request(
                url.hostname or HOST, url.port or 80, url.path, endpoint, body
            )
            after = api.get(endpoint)["config"]["served_entities"][0]["local"]
            seconds[endpoint].append(round(took, 3))
            answers.add(answer)
            checks[endpoint].append(
                status == 200
                and before["replicas"] == 0
                and after["cold_starts"] == before["cold_starts"] + 1
            )
            print(
                f"  {endpoint}: from zero #{i + 1}: first answer {took * 1000:.0f} ms ({status})", flush=True
            )
    out: dict[str, Any] = {}
    for endpoint, manager in entities:
        environment = api.get(endpoint)["config"]["served_entities"][0]["local"]["environment"]
        times = seconds[endpoint]
        out[endpoint] = {
            "env_manager": manager,
            "environment": environment["name"] if environment else None,
            "first_answer_s": times,
            "median_s": statistics.median(times),
            "max_s": max(times),
            "every_request_a_200_cold_start_from_0": all(checks[endpoint]),
        }
    out["same_answer_everywhere"] = len(answers) == 1
    out["targets"] = {
        f"{e} scale-from-zero first answer < {TARGET_FROM_ZERO_S:g} s (median)": out[e]["median_s"]
        < TARGET_FROM_ZERO_S
        for e, _ in entities
    }
    return out


def wait_local(api: OursApi, endpoint: str, done: Any) -> None:
    """Poll the endpoint's local state (replica count) until `done` holds."""
    deadline = time.monotonic() + ZERO_TIMEOUT_S
    while not done(api.get(endpoint)["config"]["served_entities"][0]["local"]):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{endpoint}: not scaled to zero within {ZERO_TIMEOUT_S:g} s")
        time.sleep(POLL_S)


def timed_request(host: str, port: int, base: str, endpoint: str, body: bytes) -> tuple[float, int, bytes]:
    """One invocation on a new connection, as a first client sends it: seconds to the full answer."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    started = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=START_TIMEOUT_S)
    try:
        conn.request("POST", f"{base}serving-endpoints/{endpoint}/invocations", body=body, headers=headers)
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    return time.perf_counter() - started, response.status, answer


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
        second = ours(
            root,
            {**env, **uv_cache},
            "s2",
            [("uv-warm-uv-cache", "uv"), ("uv-env-cached", "uv")],
            from_zero=[("zero-local", "local"), ("zero-uv", "uv")],
        )
        theirs = mlflow_uv(root, env, request_bodies()[0])
        from_zero = second.pop("from_zero")
        report = {
            "load_average_1m": [round(load_before, 1), round(psutil.getloadavg()[0], 1)],
            "ours": {**first, **second},
            "from_zero": from_zero,
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
