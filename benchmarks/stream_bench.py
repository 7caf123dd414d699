"""Streaming side by side in one run, one agent: jupyter-serving (Jupyter-hosted invocations route and
route-optimized listener), a hand-written FastAPI/uvicorn `StreamingResponse` server and a
hand-written Ray Serve streaming deployment, against the agent's own `predict_stream` in-process.

Run: ``.venv/bin/python -m benchmarks.stream_bench [--quick] [--no-ray] [--out results.json]``.
Registers benchmarks/stream_agent.py (a model whose `predict_stream` yields N tiny ResponsesAgent-
shaped deltas and does no other work; N from ``custom_inputs.n``) as ``chunks`` v1 in a fresh sqlite
registry. Every server loads the same downloaded model files; every HTTP request is
``{"input": [...], "custom_inputs": {"n": N}, "stream": true}`` and every answer is checked
(``text/event-stream``, N events, ``data: [DONE]``) by stream_loadgen.py in its own interpreter.

1. Time to first chunk, 1 client, one stream after another (N = 4): p50/p90 of request written ->
   first whole event held, on each route; minus the p50 of ``next(model.predict_stream(...))`` on
   the model loaded in this process (target: ours minus in-process <= 2 ms at p50).
2. Chunk throughput, 64 concurrent streams of N = 200 chunks, back to back: events received per
   second across all streams (target: ours >= 1.5x each hand-written peer). Ours and FastAPI run at
   the same time (idle when not loaded) and alternate rounds; Ray Serve runs alone afterwards on a
   one-CPU Ray cluster (``ray.init(num_cpus=1)``) that this benchmark starts and stops.
3. Server CPU per chunk: user + system CPU of each server's process tree (ours: the server and its
   workers; Ray: the driver, GCS, raylet, controller, proxy and replica) over a throughput round,
   divided by the events it sent.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests

from benchmarks import run as base

MODEL = "chunks"
ENDPOINT = "stream"
AGENT = Path(__file__).with_name("stream_agent.py")
LOADGEN = Path(__file__).with_name("stream_loadgen.py")
TTFC_CHUNKS = 4
CHUNKS = 200
CLIENTS = 64
TARGET_TTFC_MS = 2.0
TARGET_RATIO = 1.5
PEERS = ("fastapi", "ray_serve")  # prefixes of the hand-written peers' keys
MESSAGES = [{"role": "user", "content": "count"}]
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def body(chunks: int) -> str:
    return json.dumps({"input": MESSAGES, "custom_inputs": {"n": chunks}, "stream": True})


@dataclass(frozen=True)
class Plan:
    quick: bool
    ttfc_warmup: int
    ttfc_repeats: int  # per route and round
    warmup_s: float
    duration_s: float
    rounds: int
    ray: bool


# -- the hand-written peers (what a user would write instead) ------------------------------------------

# MLflow's `PyFuncModel.predict_stream` wraps the generator in a ContextVar (the prediction context)
# that it resets when the generator ends; Starlette runs each `next()` of a sync generator in a fresh
# copy of the context (anyio's thread pool), so that reset raises ValueError and cuts every stream
# before its end. What a user then writes, and what these peers run: the model's own generator
# (`unwrap_python_model().predict_stream`), which skips only MLflow's ~1 us/chunk wrapper.
FASTAPI = """
import json, sys
import mlflow.pyfunc, uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

agent = mlflow.pyfunc.load_model(sys.argv[2]).unwrap_python_model()
on_loop = sys.argv[3] == "loop"
app = FastAPI()

@app.post("/invocations")
async def invocations(request: Request):
    payload = await request.json()
    payload.pop("stream", None)

    def events():  # a sync generator: Starlette pulls each item through its thread pool
        for chunk in agent.predict_stream(None, payload):
            yield f"data: {json.dumps(chunk)}\\n\\n"
        yield "data: [DONE]\\n\\n"

    async def events_on_loop():  # the same loop on the event loop: fine for a model that never blocks
        for chunk in agent.predict_stream(None, payload):
            yield f"data: {json.dumps(chunk)}\\n\\n"
        yield "data: [DONE]\\n\\n"

    return StreamingResponse(events_on_loop() if on_loop else events(), media_type="text/event-stream")

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), workers=1, log_level="warning")
"""

RAY_SERVE = """
import json, sys
import mlflow.pyfunc, ray
from ray import serve
from starlette.requests import Request
from starlette.responses import StreamingResponse

@serve.deployment(max_ongoing_requests=256)
class Chunks:
    def __init__(self, uri):
        self.agent = mlflow.pyfunc.load_model(uri).unwrap_python_model()

    async def __call__(self, request: Request) -> StreamingResponse:
        payload = await request.json()
        payload.pop("stream", None)

        def events():
            for chunk in self.agent.predict_stream(None, payload):
                yield f"data: {json.dumps(chunk)}\\n\\n"
            yield "data: [DONE]\\n\\n"

        return StreamingResponse(events(), media_type="text/event-stream")

port, uri, temp = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ray.init(num_cpus=1, include_dashboard=False, _temp_dir=temp, log_to_driver=False)
serve.start(http_options={"host": "127.0.0.1", "port": port})
serve.run(Chunks.bind(uri), name="chunks", route_prefix="/invocations")
print("ready", flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
serve.shutdown()
ray.shutdown()
"""


@contextlib.contextmanager
def start_script(
    root: Path, name: str, source: str, args: list[str], ready_line: bool, env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a peer script from `root` in its own process group; stopped (group and all) at the end.
    Named ``peer_*``: our server runs in `root` too, and a script named like a module it imports
    (``fastapi.py``) would shadow that module."""
    script, log_path = root / f"{name}.py", root / f"{name}.log"
    script.write_text(source)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if ready_line else log,
            stderr=log,
            env={**os.environ, **env, **RAY_ENV, "PYTHONUNBUFFERED": "1"},
            cwd=root,
            start_new_session=True,
        )
    try:
        if ready_line:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"{name} did not start:\n{base.log_tail(log_path, 40)}")
        yield proc
    finally:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30 if ready_line else 0.1)
        kill_tree(proc.pid)
        base.stop(proc, timeout_s=10)


def kill_tree(pid: int | None, marker: str = "") -> None:
    """SIGKILL `pid`, its descendants, and (when `marker` is given) any process naming it (a Ray temp
    dir: Ray's daemons are not all our descendants once their parent exits)."""
    victims: dict[int, psutil.Process] = {}
    if pid is not None:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            victims = {p.pid: p for p in [root, *root.children(recursive=True)]}
    if marker:
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if proc.pid != os.getpid() and marker in " ".join(proc.info["cmdline"] or []):
                    victims.update({p.pid: p for p in [proc, *proc.children(recursive=True)]})
    for proc in victims.values():
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(list(victims.values()), timeout=30)


# -- measurements --------------------------------------------------------------------------------------


def loadgen(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(LOADGEN)],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=timeout_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"stream_loadgen failed: {done.stderr.decode()[-2000:]}")
    return dict(json.loads(done.stdout))


def spec_for(target: base.Target) -> dict[str, Any]:
    headers = {k: v for k, v in target.headers.items() if k.lower() != "content-type"}
    return {
        "host": target.host,
        "port": target.port,
        "path": target.path,
        "headers": {"Content-Type": "application/json", **headers},
    }


def quantiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": at(0.5), "p90_ms": at(0.9), "n": len(ordered)}


def measure_ttfc(target: base.Target, plan: Plan, label: str) -> dict[str, Any]:
    spec = {
        **spec_for(target),
        "mode": "ttfc",
        "body": body(TTFC_CHUNKS),
        "chunks": TTFC_CHUNKS,
        "warmup": plan.ttfc_warmup,
        "repeats": plan.ttfc_repeats,
    }
    result = loadgen(spec, 300)
    out = {
        **quantiles(result["ttfc_ms"]),
        "ms": result["ttfc_ms"],
        "errors": result["errors"],
        "error_samples": result["error_samples"],
    }
    print(
        f"  {label}: first chunk p50 {out['p50_ms']:.3f} ms, p90 {out['p90_ms']:.3f} ms, "
        f"errors {out['errors']}",
        flush=True,
    )
    return out


def measure_throughput(target: base.Target, plan: Plan, label: str) -> dict[str, Any]:
    spec = {
        **spec_for(target),
        "mode": "throughput",
        "body": body(CHUNKS),
        "chunks": CHUNKS,
        "clients": CLIENTS,
        "warmup_s": plan.warmup_s,
        "duration_s": plan.duration_s,
    }
    cpu_before, root_before = base.tree_cpu_s(target.proc.pid), base.root_cpu_s(target.proc.pid)
    result = loadgen(spec, plan.warmup_s + plan.duration_s + 300)
    cpu = base.tree_cpu_s(target.proc.pid) - cpu_before
    root = base.root_cpu_s(target.proc.pid) - root_before
    result["server_cpu_s"] = cpu
    result["server_cpu_us_per_chunk"] = 1e6 * cpu / max(1, result["chunks_received"])
    # ours: the server process alone (HTTP, routing, capture) vs its workers (the model, SSE framing)
    result["server_root_cpu_us_per_chunk"] = 1e6 * root / max(1, result["chunks_received"])
    print(
        f"  {label}, {CLIENTS} streams x {CHUNKS}: {result['chunks_per_s']:.0f} chunks/s, "
        f"server CPU {result['server_cpu_us_per_chunk']:.1f} us/chunk "
        f"({result['server_root_cpu_us_per_chunk']:.1f} in its main process), client CPU "
        f"{result['client_cpu_s']:.1f} s in {result['wall_s']:.1f} s, streams {result['streams']}, "
        f"errors {result['errors']} {result['error_samples'][:1]}",
        flush=True,
    )
    return result


def in_process_ttfc(uri: str, plan: Plan) -> dict[str, Any]:
    """`next(model.predict_stream(request))` on the model loaded here: the floor every server adds to."""
    import mlflow

    model = mlflow.pyfunc.load_model(uri)
    request = {"input": MESSAGES, "custom_inputs": {"n": TTFC_CHUNKS}}
    times = []
    for i in range(plan.ttfc_warmup + plan.ttfc_repeats):
        started = time.perf_counter()
        chunks = model.predict_stream(request)
        next(chunks)
        elapsed = time.perf_counter() - started
        assert len(list(chunks)) == TTFC_CHUNKS - 1
        if i >= plan.ttfc_warmup:
            times.append(elapsed * 1000)
    out = quantiles(times)
    print(f"  in-process predict_stream: first chunk p50 {out['p50_ms']:.3f} ms, p90 {out['p90_ms']:.3f} ms")
    return out


# -- the run -------------------------------------------------------------------------------------------


def register(root: Path) -> tuple[dict[str, str], str]:
    """Log the agent as chunks v1; the env for our server, and the local path of its files."""
    import mlflow

    env, experiment = base.setup_registry(root)
    with warnings.catch_warnings(), mlflow.start_run(experiment_id=experiment):
        warnings.simplefilter("ignore")  # "add type hints to predict": the agent takes any input
        mlflow.pyfunc.log_model(
            name="model", python_model=str(AGENT), registered_model_name=MODEL, pip_requirements=["mlflow"]
        )
    return env, mlflow.artifacts.download_artifacts(f"models:/{MODEL}/1", dst_path=str(root / "files"))


def start_endpoint(ours: base.Ours) -> tuple[base.Target, base.Target]:
    """Create the route-optimized endpoint; (Jupyter-hosted route, listener route) to it."""
    entity = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small"}
    response = ours.session.post(
        ours.url + "api/2.0/serving-endpoints",
        json={"name": ENDPOINT, "config": {"served_entities": [entity]}, "route_optimized": True},
        timeout=60,
    )
    response.raise_for_status()
    ours.api.wait_ready(ENDPOINT)
    return ours.target(ENDPOINT), listener_target(ours)


def listener_target(ours: base.Ours) -> base.Target:
    """The listener's URL and a token for it, the way `serving_endpoints_data_plane` gets them."""
    info = ours.api.get(ENDPOINT)["data_plane_info"]["query_info"]
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": base.TOKEN,
        "authorization_details": info["authorization_details"],
    }
    token = requests.post(ours.url + "oidc/v1/token", data=form, timeout=30).json()["access_token"]
    parsed = urlsplit(info["endpoint_url"])
    headers = {"Authorization": f"Bearer {token}"}
    return base.Target(
        parsed.hostname or base.HOST, parsed.port or 80, parsed.path, headers, ours.proc, ours.log_path
    )


def bench(root: Path, plan: Plan) -> dict[str, Any]:
    print(f"registering {MODEL} v1 (benchmarks/stream_agent.py) in a fresh sqlite registry ...", flush=True)
    env, files = register(root)
    out: dict[str, Any] = {"ttfc": {}, "throughput": {}}
    out["ttfc"]["in_process"] = in_process_ttfc(files, plan)
    ports = base.free_port(), base.free_port()
    print("starting jupyter-serving and the two FastAPI/uvicorn servers ...", flush=True)
    with (
        base.start_ours(root, env) as ours,
        start_script(
            root, "peer_fastapi_thread", FASTAPI, [str(ports[0]), files, "thread"], False, env
        ) as threaded,
        start_script(
            root, "peer_fastapi_loop", FASTAPI, [str(ports[1]), files, "loop"], False, env
        ) as looped,
    ):
        jupyter, listener = start_endpoint(ours)
        fastapi = base.Target(
            base.HOST, ports[0], "/invocations", {}, threaded, root / "peer_fastapi_thread.log"
        )
        fastapi_loop = base.Target(
            base.HOST, ports[1], "/invocations", {}, looped, root / "peer_fastapi_loop.log"
        )
        wait_streaming(fastapi)
        wait_streaming(fastapi_loop)
        targets = {
            "ours_jupyter": jupyter,
            "ours_listener": listener,
            "fastapi": fastapi,
            "fastapi_loop": fastapi_loop,
        }
        for i in range(plan.rounds):  # interleaved, so every route sees the same share of the load
            for key, target in targets.items():
                ttfc = measure_ttfc(target, plan, f"{key} #{i}")
                merged = out["ttfc"].setdefault(key, {"ms": [], "errors": 0, "error_samples": []})
                merged["ms"] += ttfc.pop("ms")
                merged["errors"] += ttfc["errors"]
                merged["error_samples"] += ttfc["error_samples"]
        for key in targets:
            out["ttfc"][key].update(quantiles(out["ttfc"][key].pop("ms")))
        for i in range(plan.rounds):
            for key, target in targets.items():
                out["throughput"].setdefault(key, []).append(measure_throughput(target, plan, f"{key} #{i}"))
    if plan.ray:
        ray = bench_ray(root, env, files, plan)
        for key in ("ttfc", "throughput"):
            out[key].update(ray.pop(key, {}))
        out.update(ray)
    return out


def wait_streaming(target: base.Target, timeout_s: float = base.START_TIMEOUT_S) -> None:
    """Poll until `target` answers a stream (a peer has no readiness route of its own)."""
    deadline = time.perf_counter() + timeout_s
    while True:
        base.check_alive(target.proc, target.log_path)
        try:
            response = requests.post(
                target.url, data=body(2), headers=spec_for(target)["headers"], timeout=30
            )
            if response.status_code == 200 and response.text.endswith("data: [DONE]\n\n"):
                return
        except requests.ConnectionError:
            pass
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{target.url} did not stream within {timeout_s:g} s")
        time.sleep(0.2)


def bench_ray(root: Path, env: dict[str, str], files: str, plan: Plan) -> dict[str, Any]:
    """The Ray Serve peer on a one-CPU cluster of its own; what it measured, even if it did not finish.
    A start is tried twice: Ray gives its raylet a fixed 30 s to register, which a busy VM can miss."""
    out: dict[str, Any] = {"ray_errors": []}
    for attempt in range(2):
        temp = tempfile.mkdtemp(prefix="jsrs-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        print(
            f"starting a one-CPU Ray cluster with the hand-written deployment (try {attempt + 1}) ...",
            flush=True,
        )
        started, port = time.perf_counter(), base.free_port()
        try:
            with start_script(root, "peer_ray_serve", RAY_SERVE, [str(port), files, temp], True, env) as proc:
                out["ray_start_s"] = time.perf_counter() - started
                print(f"  Ray Serve ready after {out['ray_start_s']:.1f} s", flush=True)
                target = base.Target(base.HOST, port, "/invocations", {}, proc, root / "peer_ray_serve.log")
                wait_streaming(target)
                ttfc = measure_ttfc(target, plan, "ray_serve")
                del ttfc["ms"]
                out["ttfc"] = {"ray_serve": ttfc}
                out["throughput"] = {"ray_serve": [measure_throughput(target, plan, "ray_serve")]}
                return out
        except Exception as exc:  # Ray on 2 busy cores: report what was measured
            print(f"  Ray Serve run failed: {str(exc)[-600:]}", flush=True)
            out["ray_errors"].append(str(exc)[-2000:])
            if "ttfc" in out:  # it started and measured something: keep that, no second try
                return out
        finally:
            kill_tree(None, marker=temp)  # whatever of this cluster outlived its driver
            shutil.rmtree(temp, ignore_errors=True)
    return out


# -- report --------------------------------------------------------------------------------------------

LABELS = {
    "in_process": "in-process `predict_stream`",
    "ours_jupyter": "jupyter-serving, invocations route",
    "ours_listener": "jupyter-serving, route-optimized listener",
    "fastapi": "hand-written FastAPI/uvicorn, sync generator (thread pool)",
    "fastapi_loop": "same, the loop as an async generator (on the event loop)",
    "ray_serve": "hand-written Ray Serve (1 CPU)",
}


def summarize(out: dict[str, Any]) -> dict[str, Any]:
    """Medians over rounds, ratios, targets."""
    tput: dict[str, dict[str, float]] = {}
    for key, rounds in out["throughput"].items():
        tput[key] = {
            "chunks_per_s": statistics.median(r["chunks_per_s"] for r in rounds),
            "server_cpu_us_per_chunk": statistics.median(r["server_cpu_us_per_chunk"] for r in rounds),
            "server_root_cpu_us_per_chunk": statistics.median(
                r["server_root_cpu_us_per_chunk"] for r in rounds
            ),
            "errors": sum(r["errors"] for r in rounds),
            "rounds": [round(r["chunks_per_s"]) for r in rounds],
        }
    floor = out["ttfc"]["in_process"]["p50_ms"]
    added = {k: v["p50_ms"] - floor for k, v in out["ttfc"].items() if k != "in_process"}
    ours = tput["ours_jupyter"]["chunks_per_s"]
    ratios = {f"ours_jupyter/{k}": ours / v["chunks_per_s"] for k, v in tput.items() if k.startswith(PEERS)}
    ratios.update(
        {
            f"ours_listener/{k}": tput["ours_listener"]["chunks_per_s"] / v["chunks_per_s"]
            for k, v in tput.items()
            if k.startswith(PEERS)
        }
    )
    targets = {
        f"first chunk, ours ({k}) minus in-process <= {TARGET_TTFC_MS:g} ms at p50": added[k]
        <= TARGET_TTFC_MS
        for k in ("ours_jupyter", "ours_listener")
    }
    for peer in ("fastapi", "ray_serve"):  # the target's peers; fastapi_loop is reported alongside
        if f"ours_jupyter/{peer}" in ratios:
            targets[f"throughput ours / {peer} >= {TARGET_RATIO:g}x"] = (
                ratios[f"ours_jupyter/{peer}"] >= TARGET_RATIO
            )
    errors = sum(v["errors"] for v in tput.values()) + sum(v.get("errors", 0) for v in out["ttfc"].values())
    return {
        "throughput": tput,
        "ttfc_added_p50_ms": added,
        "ratios": ratios,
        "targets": targets,
        "errors": errors,
    }


def markdown(out: dict[str, Any], summary: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"{meta['date']} · {meta['cpus']} CPUs ({meta['cpu_model']}) · load {meta['load_before']} before, "
        f"{meta['load_after']} after · {'quick' if meta['quick'] else 'full'} run",
        "",
        f"| `chunks` agent | first chunk p50 / p90 (ms), N={TTFC_CHUNKS} | minus in-process at p50 (ms) "
        f"| chunks/s, {CLIENTS} streams x {CHUNKS} | server CPU per chunk (us) | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in LABELS.items():
        ttfc = out["ttfc"].get(key)
        tput = summary["throughput"].get(key)
        if ttfc is None and tput is None:
            continue
        first = f"{ttfc['p50_ms']:.3f} / {ttfc['p90_ms']:.3f}" if ttfc else ""
        added = summary["ttfc_added_p50_ms"].get(key)
        rate = f"{tput['chunks_per_s']:.0f}" if tput else ""
        cpu = f"{tput['server_cpu_us_per_chunk']:.1f}" if tput else ""
        errors = (ttfc or {}).get("errors", 0) + (tput or {}).get("errors", 0)
        lines.append(
            f"| {label} | {first} | {'' if added is None else f'{added:+.3f}'} | {rate} | {cpu} | "
            f"{errors if key != 'in_process' else ''} |"
        )
    lines.append("")
    for name, value in summary["ratios"].items():
        lines.append(f"- throughput {name}: **{value:.2f}x**")
    for key, tput in summary["throughput"].items():
        lines.append(f"- {key} rounds (chunks/s): {tput['rounds']}")
    if "ray_start_s" in out:
        lines.append(f"- Ray Serve start (cluster + deployment): {out['ray_start_s']:.1f} s")
    for error in out.get("ray_errors", []):
        lines.append(f"- Ray Serve try failed: {error.strip().splitlines()[-1][:300]}")
    lines += [f"- {'PASS' if ok else 'FAIL'} {name}" for name, ok in summary["targets"].items()]
    return "\n".join(lines)


def machine(quick: bool, load_before: str) -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "quick": quick,
        "load_before": load_before,
    }


def loadavg() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.stream_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 round of 1 + 3 s, 100 first chunks"
    )
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray Serve peer")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (registry, logs)")
    args = parser.parse_args(argv)
    plan = (
        Plan(True, 20, 100, 1.0, 3.0, 1, not args.no_ray)
        if args.quick
        else Plan(False, 20, 200, 2.0, 8.0, 3, not args.no_ray)
    )
    meta = machine(plan.quick, loadavg())
    root = Path(tempfile.mkdtemp(prefix="jsstream-"))
    try:
        out = bench(root, plan)
    except Exception:
        for log_path in sorted(root.glob("*.log")):
            print(f"--- last lines of {log_path.name}:\n{base.log_tail(log_path, 40)}", file=sys.stderr)
        raise
    finally:
        if args.keep:
            print(f"kept the registry and logs in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    meta["load_after"] = loadavg()
    summary = summarize(out)
    print("\n" + markdown(out, summary, meta))
    if args.out:
        args.out.write_text(json.dumps({"meta": meta, "summary": summary, "results": out}, indent=2) + "\n")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
