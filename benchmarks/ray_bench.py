"""Side by side on one model and one load generator: the local backend, the Ray backend, and the Ray
Serve deployment a Ray user would write by hand (`@serve.batch`, Serve's own HTTP proxy).

Run: ``.venv/bin/python -m benchmarks.ray_bench [--quick] [--out results.json]``. Registers iris-lr v1
(benchmarks/run.py), then, one at a time: `jupyter-serving serve` (local backend); a one-node Ray
cluster (`ray start --head`, all CPUs) serving the hand-written deployment first, then
`jupyter-serving serve --backend ray` on it, queried through the server's route and through Serve's
proxies (a route-optimized endpoint of one entity, whose replica fronts the route, and one with a
50/50 split, through the endpoint's ingress app). Each is driven by loadgen.py at 16 clients
(one-row requests, every answer checked). Then scale from zero on Ray: an entity with
scale_to_zero_enabled, idle until Serve has removed its replica, and the time to the first answer of
the next request. Reports the Ray proxy path's throughput over hand-written Ray Serve (target: at
most 10 % lower).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from benchmarks.run import (
    HOST,
    MODEL,
    TOKEN,
    Ours,
    OursApi,
    Plan,
    Target,
    fetch_reference,
    free_port,
    register_model,
    request_bodies,
    run_load,
    start_ours,
    wait_for_answer,
)

# Unauthenticated clusters, as the test suite's (tests/ray_cluster.py): a token left in ~/.ray by an
# earlier run must not make the servers' connection fail.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

CLIENTS = 16
TARGET_OVERHEAD = 0.10
RAY = str(Path(sys.executable).with_name("ray"))
ZERO_TIMERS = ("--scale-to-zero-idle-s", "3", "--scale-down-delay-s", "2", "--autoscale-interval-s", "0.5")


# -- the hand-written Ray Serve deployment (what a Ray user would write) -------------------------------

HANDWRITTEN = """
import asyncio, sys
import mlflow.pyfunc, pandas as pd, ray
from ray import serve
from starlette.requests import Request

@serve.deployment(max_ongoing_requests=64)
class Iris:
    def __init__(self, uri):
        self.model = mlflow.pyfunc.load_model(uri)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def predict(self, frames):
        out = self.model.predict(pd.concat(frames, ignore_index=True)).tolist()
        sizes, at, parts = [len(f) for f in frames], 0, []
        for n in sizes:
            parts.append(out[at:at + n]); at += n
        return parts

    async def __call__(self, request: Request):
        split = (await request.json())["dataframe_split"]
        return {"predictions": await self.predict(pd.DataFrame(split["data"], columns=split["columns"]))}

address, port, uri = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ray.init(address=address, log_to_driver=False)
serve.start(http_options={"host": "127.0.0.1", "port": port})
serve.run(Iris.bind(uri), name="handwritten", route_prefix="/invocations")
print("ready", flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
serve.delete("handwritten")
"""


def start_cluster(root: Path) -> tuple[str, str]:
    """A one-node Ray cluster with every CPU of this machine; (address, temp dir)."""
    temp = tempfile.mkdtemp(prefix="jsray-bench-", dir="/tmp")
    port = free_port()
    ports = [
        f"--{n}={free_port()}"
        for n in ("metrics-export-port", "dashboard-agent-grpc-port", "dashboard-agent-listen-port")
    ]  # explicit: Ray waits only 15 s for agents to report ports it has to discover
    cmd = [RAY, "start", "--head", "--port", str(port), "--temp-dir", temp, "--include-dashboard", "false"]
    cmd += ["--node-ip-address", HOST, "--disable-usage-stats", *ports]
    env = {**os.environ, **RAY_ENV}  # hermetic: unauthenticated, whatever ~/.ray holds (as the tests)
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    return f"{HOST}:{port}", temp


def stop_cluster(address: str, temp: str) -> None:
    """Kill exactly this cluster's processes (naming its temp dir, address or GCS port), no other Ray."""
    import psutil

    port = address.rpartition(":")[2]

    def ours(cmdline: str) -> bool:  # Ray's client server names the node IP, not `address`: the port
        return temp in cmdline or address in cmdline or ("ray" in cmdline and f":{port} " in cmdline + " ")

    roots = [
        p
        for p in psutil.process_iter(["cmdline"])
        if p.pid != os.getpid() and ours(" ".join(p.info["cmdline"] or []))
    ]
    victims = {c.pid: c for r in roots for c in [r, *_children(r)]}
    for proc in victims.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(victims.values()), timeout=30)
    shutil.rmtree(temp, ignore_errors=True)


def _children(proc: Any) -> list[Any]:
    try:
        return list(proc.children(recursive=True))
    except Exception:
        return []


# -- runs --------------------------------------------------------------------------------------------


def bench_server(
    root: Path,
    name: str,
    env: dict[str, str],
    args: tuple[str, ...],
    plan: Plan,
    zero: bool = False,
    proxy: bool = False,
) -> dict[str, Any]:
    """One `jupyter-serving serve` with `args`: create iris-lr v1, load it at CLIENTS; scale from zero."""
    with start_ours(root, env, *args, name=name) as ours:
        create_s = ours.api.create_ready_s("bench")
        target = ours.target("bench")
        bodies = request_bodies()
        predictions = fetch_reference(target, bodies, ours.session)
        print(f"  {name}: create->READY {create_s:.1f} s; {CLIENTS} clients", flush=True)
        load = run_load(target, bodies, CLIENTS, True, plan)
        print(f"    {load['throughput_rps']:.0f} req/s, p50 {load['p50_ms']:.1f} ms", flush=True)
        result = {"create_to_ready_s": create_s, "predictions": predictions, "load": load}
        if proxy:  # the same load through Serve's proxy: the endpoint's ingress on Ray
            ours.api.delete("bench")
            result["proxy"] = bench_proxy(ours, plan)
            result["proxy_split"] = bench_proxy(ours, plan, split=True)
        if zero:
            result["scale_from_zero_s"] = scale_from_zero(ours, rounds=3)
    return result


def proxy_target(ours: Ours, info: dict[str, Any]) -> Target:
    """Where GET's `data_plane_info.query_info` says to query (a Ray proxy), with a data-plane
    token from /oidc/v1/token, as `serving_endpoints_data_plane.query` does."""
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": TOKEN,
        "authorization_details": info["authorization_details"],
    }
    token = requests.post(ours.url + "oidc/v1/token", data=grant, timeout=60).json()["access_token"]
    url = urlsplit(info["endpoint_url"])
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return Target(url.hostname or HOST, url.port or 80, url.path, headers, ours.proc, ours.log_path)


def bench_proxy(ours: Ours, plan: Plan, split: bool = False) -> dict[str, Any]:
    """A route-optimized iris-lr v1 queried where GET says (the Ray proxy), with a data-plane token
    from /oidc/v1/token, as `serving_endpoints_data_plane.query` does. One entity: its replicas
    front the route (one actor hop); `split`: two entities 50/50, through the ingress app (two)."""
    entity = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small"}
    config: dict[str, Any] = {"served_entities": [entity]}
    if split:
        config = {
            "served_entities": [{**entity, "name": "a"}, {**entity, "name": "b"}],
            "traffic_config": {"routes": [{"served_model_name": n, "traffic_percentage": 50} for n in "ab"]},
        }
    name = "bench-split" if split else "bench-ro"
    body = {"name": name, "config": config, "route_optimized": True}
    ours.session.post(ours.url + "api/2.0/serving-endpoints", json=body, timeout=60).raise_for_status()
    info = ours.api.wait_ready(name)["data_plane_info"]["query_info"]
    target = proxy_target(ours, info)
    bodies = request_bodies()
    session = requests.Session()
    wait_for_answer(target, bodies[0], session)  # the ingress is published on the next poll
    if not split:  # and the entity takes the route at the poll after
        wait_fronted(ours.api, name)
    predictions = fetch_reference(target, bodies, session)
    print(f"  Ray proxy, {name} ({info['endpoint_url']}): {CLIENTS} clients", flush=True)
    load = run_load(target, bodies, CLIENTS, True, plan)
    print(f"    {load['throughput_rps']:.0f} req/s, p50 {load['p50_ms']:.1f} ms", flush=True)
    ours.api.delete(name)
    return {"predictions": predictions, "load": load}


def wait_fronted(api: OursApi, name: str, timeout_s: float = 120) -> None:
    deadline = time.perf_counter() + timeout_s
    while not api.get(name)["config"]["served_entities"][0]["local"]["ray"].get("route"):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name}: its entity did not take the route within {timeout_s:g} s")
        time.sleep(0.2)


def scale_from_zero(ours: Ours, rounds: int) -> list[float]:
    """Seconds from sending a request to an entity Serve scaled to zero until its answer."""
    api = ours.api
    entity = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small"}
    api.create_ready_s("zero", {"served_entities": [{**entity, "scale_to_zero_enabled": True}]})
    target = ours.target("zero")
    times = []
    for _ in range(rounds):
        # Up first (status is polled from Serve, so it lags an answer), then down to zero again.
        wait_replicas(api, "zero", lambda n: n > 0)
        wait_replicas(api, "zero", lambda n: n == 0)
        started = time.perf_counter()
        times.append(wait_for_answer(target, request_bodies()[0], ours.session) - started)
        print(f"    scale from zero: first answer after {times[-1]:.2f} s", flush=True)
    api.delete("zero")
    return times


def wait_replicas(api: OursApi, name: str, until: Any, timeout_s: float = 300) -> None:
    deadline = time.perf_counter() + timeout_s
    while not until(int(api.get(name)["config"]["served_entities"][0]["local"]["replicas"])):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name}: replica count not reached within {timeout_s:g} s")
        time.sleep(0.2)


def bench_handwritten(root: Path, env: dict[str, str], address: str, plan: Plan) -> dict[str, Any]:
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    uri = mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1")  # same files the servers load
    port, log_path = free_port(), root / "handwritten.log"
    script = root / "handwritten.py"
    script.write_text(HANDWRITTEN)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), address, str(port), uri],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env={**os.environ, **env},
        )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the hand-written deployment did not start; see {log_path}")
        target = Target(HOST, port, "/invocations", {"Content-Type": "application/json"}, proc, log_path)
        bodies = request_bodies()
        predictions = fetch_reference(target, bodies, requests.Session())
        print(f"  hand-written Ray Serve: {CLIENTS} clients", flush=True)
        load = run_load(target, bodies, CLIENTS, True, plan)
        print(f"    {load['throughput_rps']:.0f} req/s, p50 {load['p50_ms']:.1f} ms", flush=True)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"predictions": predictions, "load": load}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 s warm-up + 5 s per run")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument(
        "--ray-address",
        default="",
        help="use this running cluster (no other Serve app on it; Serve is shut down at the end) "
        "instead of starting one: starting a cluster can time out on a loaded machine",
    )
    args = parser.parse_args(argv)
    plan = Plan((CLIENTS,), 2.0 if args.quick else 5.0, 5.0 if args.quick else 15.0, args.quick)
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    report: dict[str, Any] = {"load_average_before": load_before, "cpus": os.cpu_count()}
    try:
        env, expected = register_model(root)
        env = {**env, **RAY_ENV}  # the servers and the hand-written driver join that cluster
        report["local"] = bench_server(root, "local", env, (), plan)
        address, temp = (args.ray_address, "") if args.ray_address else start_cluster(root)
        try:
            # The peer first, on the fresh cluster: ours then runs on the one it leaves behind.
            report["handwritten"] = bench_handwritten(root, env, address, plan)
            serve_shutdown(address)  # our server starts Serve afresh, with its own HTTP options
            ray_args = ("--backend", "ray", "--ray-address", address, "--env-manager", "local", *ZERO_TIMERS)
            ray_args += ("--ray-http-port", str(free_port()))
            report["ray_backend"] = bench_server(root, "ray", env, ray_args, plan, zero=True, proxy=True)
            report["ray_proxy"] = report["ray_backend"].pop("proxy")
            report["ray_proxy_split"] = report["ray_backend"].pop("proxy_split")
        finally:
            if temp:
                stop_cluster(address, temp)
            else:
                serve_shutdown(address)
        runs = ("local", "ray_backend", "ray_proxy", "ray_proxy_split", "handwritten")
        assert all(report[k]["predictions"] == expected for k in runs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["load_average_after"] = os.getloadavg()[0]
    ours, theirs = (report[k]["load"]["throughput_rps"] for k in ("ray_backend", "handwritten"))
    report["ray_backend_over_handwritten"] = ours / theirs
    proxy = report["ray_proxy"]["load"]["throughput_rps"]
    report["ray_proxy_over_handwritten"] = proxy / theirs
    report["ray_proxy_over_server_route"] = proxy / ours
    report["ray_proxy_split_over_handwritten"] = report["ray_proxy_split"]["load"]["throughput_rps"] / theirs
    print(markdown(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    return 0


def serve_shutdown(address: str) -> None:
    code = f"import ray; from ray import serve; ray.init(address={address!r}); serve.shutdown()"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=180)


def markdown(report: dict[str, Any]) -> str:
    rows = [
        ("local backend", "local"),
        ("Ray backend, server route", "ray_backend"),
        ("Ray backend, Ray proxy, one entity (its replica fronts the route)", "ray_proxy"),
        ("Ray backend, Ray proxy, 50/50 split (through the ingress app)", "ray_proxy_split"),
        ("hand-written Ray Serve", "handwritten"),
    ]
    lines = [
        f"| iris-lr, {CLIENTS} clients | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, key in rows:
        load = report[key]["load"]
        lines.append(
            f"| {label} | {load['throughput_rps']:.0f} | {load['p50_ms']:.1f} | {load['p99_ms']:.1f} | "
            f"{load['errors']} |"
        )
    ratio = report["ray_backend_over_handwritten"]
    lines.append(f"\nRay backend, server route / hand-written: {ratio:.2f}x")
    proxy = report["ray_proxy_over_handwritten"]
    verdict = "met" if proxy >= 1 - TARGET_OVERHEAD else "not met"
    lines.append(
        f"Ray proxy / hand-written: {proxy:.2f}x (target >= {1 - TARGET_OVERHEAD:.2f}: {verdict}); "
        f"Ray proxy / server route: {report['ray_proxy_over_server_route']:.2f}x; "
        f"Ray proxy, split / hand-written: {report['ray_proxy_split_over_handwritten']:.2f}x"
    )
    zero = report["ray_backend"].get("scale_from_zero_s", [])
    lines.append(f"Scale from zero on Ray, first answer: {', '.join(f'{s:.2f} s' for s in zero)}")
    lines.append(
        f"Load average before/after: {report['load_average_before']:.1f} / {report['load_average_after']:.1f}"
    )
    return "\n".join(lines)


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
