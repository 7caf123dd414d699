"""Side by side: `mlflow models serve` (uvicorn, -w 2) against jupyter-serving, same model, same load.

Run: ``.venv/bin/python -m benchmarks.run [--quick] [--out results.json]``. Registers an iris
LogisticRegression as ``iris-lr`` v1 in a fresh sqlite MLflow registry in a temp dir, serves it with
each server in turn (never both at once), drives each with `loadgen.py` in its own process at 1 and
16 concurrent clients (one-row ``dataframe_split`` requests), checks every answer, and prints a
Markdown table plus the ratios ours / mlflow. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests

from jupyter_serving.launch import TOKEN_ENV, log_tail, serve_command, wait_for_info

HOST = "127.0.0.1"
TOKEN = "bench-token"
MODEL = "iris-lr"
ENDPOINT = "bench"
COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]  # one row per class
START_TIMEOUT_S = 180.0
POLL_S = 0.02
CREATE_RETRY_S = 60.0  # see create(): a 5xx right after start-up is a known server race
LOADGEN = Path(__file__).with_name("loadgen.py")
TARGET_THROUGHPUT_RATIO = 3.0
TARGET_P50_MS = 1.5
# "plain": an ordinary keep-alive client. "quickack": the same client ACKing at once, which removes
# the ~40 ms Nagle/delayed-ACK stall of `uvicorn --workers N` (it never sets TCP_NODELAY, see
# README); targets are checked against mlflow in that mode, so the ratio is about the servers.
MODES = {"plain": False, "quickack": True}
FAIR = "quickack"


@dataclass(frozen=True)
class Plan:
    clients: tuple[int, ...]
    warmup_s: float
    duration_s: float
    quick: bool
    ours_args: tuple[str, ...] = ()


@dataclass
class Target:
    """One server under test: where to send invocations, and the process tree to bill CPU to."""

    host: str
    port: int
    path: str
    headers: dict[str, str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    reference: list[bytes] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{self.path}"


# -- model ------------------------------------------------------------------------------------------


def register_model(root: Path) -> tuple[dict[str, str], list[Any]]:
    """Log + register iris-lr v1 in a fresh sqlite registry; the env for servers and local predictions."""
    from sklearn.linear_model import LogisticRegression

    env, experiment = setup_registry(root)
    X, y = iris()
    model = LogisticRegression(max_iter=500).fit(X, y)
    return env, register_sklearn(model, MODEL, experiment)


def setup_registry(root: Path) -> tuple[dict[str, str], str]:
    """A fresh sqlite tracking + registry store in `root`: the env for servers, and an experiment id."""
    import mlflow

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("bench", artifact_location=(root / "artifacts").as_uri())
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}, experiment


def iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


def register_sklearn(model: Any, name: str, experiment: str) -> list[Any]:
    """Log a fitted iris classifier as the next version of `name`; its local predictions for ROWS."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    X, _ = iris()
    with mlflow.start_run(experiment_id=experiment):
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(X, model.predict(X)),
            registered_model_name=name,
            serialization_format="cloudpickle",
            pip_requirements=["scikit-learn", "pandas"],
        )
    return [model.predict(pd.DataFrame([row], columns=COLUMNS)).tolist() for row in ROWS]


def request_bodies() -> list[bytes]:
    return [json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [row]}}).encode() for row in ROWS]


# -- processes --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def spawn(cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            cmd,
            env={**os.environ, **env, "PYTHONUNBUFFERED": "1", "PATH": venv_path()},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            start_new_session=True,  # its own process group, so stop() reaches every worker it forks
        )


def venv_path() -> str:
    """PATH with this interpreter's bin first: `mlflow models serve` execs a bare `uvicorn`."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """SIGTERM the process's group (servers stop their workers), then SIGKILL after a timeout."""
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process and its live descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def root_cpu_s(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return float(times.user + times.system)


def check_alive(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"{log_path.name}: exited with {proc.returncode}\n{log_tail(log_path, 40)}")


# -- HTTP checks ------------------------------------------------------------------------------------


def wait_for_answer(target: Target, body: bytes, session: requests.Session) -> float:
    """Poll one invocation until it answers 200; the perf_counter time when it did."""
    deadline = time.perf_counter() + START_TIMEOUT_S
    while time.perf_counter() < deadline:
        check_alive(target.proc, target.log_path)
        try:
            response = session.post(target.url, data=body, headers=target.headers, timeout=30)
            if response.status_code == 200:
                return time.perf_counter()
        except requests.ConnectionError:
            pass
        time.sleep(POLL_S)
    raise TimeoutError(f"no answer from {target.url} within {START_TIMEOUT_S:g} s")


def fetch_reference(target: Target, bodies: list[bytes], session: requests.Session) -> list[Any]:
    """Store each request's exact answer body (the load generator compares bytes); its predictions."""
    predictions = []
    for body in bodies:
        response = session.post(target.url, data=body, headers=target.headers, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"{target.url} answered {response.status_code}: {response.text[:500]}")
        target.reference.append(response.content)
        predictions.append(response.json()["predictions"])
    return predictions


def raw_request(target: Target, body: bytes) -> str:
    head = [f"POST {target.path} HTTP/1.1", f"Host: {target.host}:{target.port}"]
    head += [f"{k}: {v}" for k, v in target.headers.items()]
    head += [f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(head) + body.decode()


def load_spec(
    target: Target, bodies: list[bytes], clients: int, warmup_s: float, duration_s: float, **options: Any
) -> dict[str, Any]:
    """The JSON spec loadgen.py reads (see its docstring); `options` adds its optional keys."""
    return {
        "host": target.host,
        "port": target.port,
        "requests": [raw_request(target, body) for body in bodies],
        "expected": [ref.decode() for ref in target.reference],
        "clients": clients,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        **options,
    }


def run_load(target: Target, bodies: list[bytes], clients: int, quickack: bool, plan: Plan) -> dict[str, Any]:
    """One scenario through loadgen.py in its own interpreter; adds the server's CPU per request."""
    spec = load_spec(target, bodies, clients, plan.warmup_s, plan.duration_s, quickack=quickack)
    cpu_before, root_before = tree_cpu_s(target.proc.pid), root_cpu_s(target.proc.pid)
    done = subprocess.run(
        [sys.executable, str(LOADGEN)],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=plan.warmup_s + plan.duration_s + 60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    server_cpu = tree_cpu_s(target.proc.pid) - cpu_before  # includes warm-up: an approximation
    root_cpu = root_cpu_s(target.proc.pid) - root_before
    result["server_cpu_ms_per_request"] = 1000 * server_cpu / max(1, result["answers_checked"])
    result["server_root_process_cpu_ms_per_request"] = 1000 * root_cpu / max(1, result["answers_checked"])
    check_alive(target.proc, target.log_path)
    return result


def run_scenarios(target: Target, bodies: list[bytes], plan: Plan) -> dict[str, dict[str, Any]]:
    """Every client count, with a plain keep-alive client and with a TCP_QUICKACK client (see MODES)."""
    scenarios: dict[str, dict[str, Any]] = {}
    for mode, quickack in MODES.items():
        for clients in plan.clients:
            print(
                f"  {mode}, {clients} client(s): {plan.warmup_s:g} s warm-up + {plan.duration_s:g} s",
                flush=True,
            )
            result = run_load(target, bodies, clients, quickack, plan)
            scenarios.setdefault(mode, {})[str(clients)] = result
            print(
                f"    {result['throughput_rps']:.0f} req/s, p50 {fmt(result['p50_ms'], 2)} ms, "
                f"p99 {fmt(result['p99_ms'], 2)} ms, errors {result['errors']}",
                flush=True,
            )
    return scenarios


# -- the two servers --------------------------------------------------------------------------------


def bench_mlflow(root: Path, env: dict[str, str], bodies: list[bytes], plan: Plan) -> dict[str, Any]:
    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    serve = ["models", "serve", "-m", f"models:/{MODEL}/1", "--env-manager", "local", "-w", "2"]
    serve += ["-h", HOST, "-p", str(port)]
    prefix = [str(mlflow_cli)] if mlflow_cli.exists() else [sys.executable, "-m", "mlflow"]
    cmd = [*prefix, *serve]
    log_path = root / "mlflow-serve.log"
    started = time.perf_counter()
    target = Target(
        HOST, port, "/invocations", {"Content-Type": "application/json"}, spawn(cmd, env, log_path), log_path
    )
    try:
        with requests.Session() as session:
            first_answer_s = wait_for_answer(target, bodies[0], session) - started
            predictions = fetch_reference(target, bodies, session)
        print(f"  started: first answer after {first_answer_s:.2f} s", flush=True)
        scenarios = run_scenarios(target, bodies, plan)
    finally:
        stop(target.proc)
    return {
        "command": " ".join(["mlflow", *serve]),
        "start_to_first_answer_s": first_answer_s,
        "predictions": predictions,
        "scenarios": scenarios,
    }


class OursApi:
    """The few control-plane calls the benchmark needs."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url
        self.session = session
        self.create_errors: list[str] = []

    def create(self, name: str, config: dict[str, Any] | None = None) -> None:
        """POST the endpoint (default: iris-lr v1, Small); 5xx answers are retried for a while (and kept
        in `create_errors`)."""
        entity = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small"}
        body = {"name": name, "config": config or {"served_entities": [entity]}}
        deadline = time.perf_counter() + CREATE_RETRY_S
        while True:
            response = self.session.post(self.url + "api/2.0/serving-endpoints", json=body, timeout=60)
            if response.status_code == 200:
                return
            error = f"create {name}: {response.status_code} {response.text[:300]}"
            if response.status_code < 500 or time.perf_counter() > deadline:
                raise RuntimeError(error)
            print(f"  WARNING (server bug, retrying): {error}", flush=True)
            self.create_errors.append(error)
            time.sleep(1.0)

    def get(self, name: str) -> dict[str, Any]:
        response = self.session.get(self.url + f"api/2.0/serving-endpoints/{name}", timeout=60)
        response.raise_for_status()
        return dict(response.json())

    def wait_ready(self, name: str) -> dict[str, Any]:
        deadline = time.perf_counter() + START_TIMEOUT_S
        while (endpoint := self.get(name))["state"]["config_update"] == "IN_PROGRESS":
            if time.perf_counter() > deadline:
                raise TimeoutError(f"endpoint {name} not ready within {START_TIMEOUT_S:g} s")
            time.sleep(POLL_S)
        if endpoint["state"] != {"ready": "READY", "config_update": "NOT_UPDATING"}:
            raise RuntimeError(f"endpoint {name} did not become ready: {json.dumps(endpoint)[:2000]}")
        return endpoint

    def create_ready_s(self, name: str, config: dict[str, Any] | None = None) -> float:
        started = time.perf_counter()
        self.create(name, config)
        self.wait_ready(name)
        return time.perf_counter() - started

    def delete(self, name: str) -> None:
        self.session.delete(self.url + f"api/2.0/serving-endpoints/{name}", timeout=60).raise_for_status()


def wait_for_url(proc: subprocess.Popen[bytes], info: Path, log_path: Path) -> str:
    """Where a `jupyter-serving serve` started by `spawn` listens, with the benchmarks' patience."""
    return str(wait_for_info(proc, info, log_path, timeout=START_TIMEOUT_S, poll_s=POLL_S)["url"])


@dataclass
class Ours:
    """A started `jupyter-serving serve`: where it listens, a session with the token, its API."""

    url: str
    session: requests.Session
    api: OursApi
    proc: subprocess.Popen[bytes]
    log_path: Path
    cmd: list[str]

    def target(self, endpoint: str) -> Target:
        """The invocations route of `endpoint`, as loadgen.py and the checks here drive it."""
        parsed = urlsplit(self.url)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        path = f"{parsed.path}serving-endpoints/{endpoint}/invocations"
        return Target(parsed.hostname or HOST, parsed.port or 80, path, headers, self.proc, self.log_path)


@contextlib.contextmanager
def start_ours(root: Path, env: dict[str, str], *args: str, name: str = "") -> Iterator[Ours]:
    """Start `jupyter-serving serve` (files in `root`, named after `name` when given: several servers
    can share a root) and wait until it listens; stopped, with its workers, when the block ends."""
    info, log_path, state = (
        (root / f"{name}-info.json", root / f"{name}.log", root / f"{name}-state")
        if name
        else (root / "server-info.json", root / "jupyter-serving.log", root / "state")
    )
    cmd = serve_command(info, "--host", HOST, "--state-dir", str(state), *args)
    proc = spawn(cmd, {**env, TOKEN_ENV: TOKEN}, log_path)
    try:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            url = wait_for_url(proc, info, log_path)
            yield Ours(url, session, OursApi(url, session), proc, log_path, cmd)
    finally:
        stop(proc)


def bench_ours(root: Path, env: dict[str, str], bodies: list[bytes], plan: Plan) -> dict[str, Any]:
    started = time.perf_counter()
    with start_ours(root, env, *plan.ours_args) as ours:
        listening_s = time.perf_counter() - started
        api, session = ours.api, ours.session
        create_to_ready_s = api.create_ready_s(ENDPOINT)
        target = ours.target(ENDPOINT)
        first_answer_s = wait_for_answer(target, bodies[0], session) - started
        predictions = fetch_reference(target, bodies, session)
        print(
            f"  started: listening {listening_s:.2f} s, create->READY {create_to_ready_s:.2f} s, "
            f"first answer {first_answer_s:.2f} s after start",
            flush=True,
        )
        scenarios = run_scenarios(target, bodies, plan)
        replicas = api.get(ENDPOINT)["config"]["served_entities"][0].get("local", {})
        warm_create_s = api.create_ready_s(ENDPOINT + "-warm")  # warm pool is full by now
        api.delete(ENDPOINT + "-warm")
    return {
        "command": " ".join(["jupyter-serving", *ours.cmd[3:]]).replace(str(root), "$TMP"),
        "start_to_listening_s": listening_s,
        "create_to_ready_s": create_to_ready_s,
        "warm_create_to_ready_s": warm_create_s,
        "start_to_first_answer_s": first_answer_s,
        "replicas_after_load": replicas,
        "create_errors": api.create_errors,
        "predictions": predictions,
        "scenarios": scenarios,
    }


# -- report -----------------------------------------------------------------------------------------


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def fmt(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def build_report(
    plan: Plan, mlf: dict[str, Any], ours: dict[str, Any], local: list[Any], load_before: float
) -> dict[str, Any]:
    ratios: dict[str, dict[str, float | None]] = {}
    for mode in MODES:
        ratios[mode] = {}
        for clients in map(str, plan.clients):
            a, b = ours["scenarios"][mode][clients], mlf["scenarios"][mode][clients]
            for key in ("throughput_rps", "p50_ms", "p99_ms"):
                ratios[mode][f"{key}@{clients}"] = ratio(a[key], b[key])
    first = "start_to_first_answer_s"
    top, one = str(max(plan.clients)), str(min(plan.clients))
    tput = ratios[FAIR][f"throughput_rps@{top}"]
    p50 = ours["scenarios"]["plain"][one]["p50_ms"]
    errors = {name: total_errors(result) for name, result in (("mlflow", mlf), ("jupyter_serving", ours))}
    return {
        "meta": machine_meta(plan, load_before),
        "mlflow": mlf,
        "jupyter_serving": ours,
        "ratios": {**ratios, first: ratio(ours[first], mlf[first])},
        "targets": {
            f"throughput {top} clients, ours / mlflow ({FAIR} client) >= {TARGET_THROUGHPUT_RATIO:g}": (
                tput is not None and tput >= TARGET_THROUGHPUT_RATIO
            ),
            f"p50 {one} client, ours (plain client) < {TARGET_P50_MS:g} ms": (
                p50 is not None and p50 < TARGET_P50_MS
            ),
        },
        "correctness": {
            "errors": errors,
            "same_predictions": mlf["predictions"] == ours["predictions"] == local,
            "local_predictions": local,
        },
    }


def total_errors(result: dict[str, Any]) -> int:
    return sum(s["errors"] for by_clients in result["scenarios"].values() for s in by_clients.values())


def machine_meta(plan: Plan, load_before: float) -> dict[str, Any]:
    import mlflow

    from jupyter_serving import _version

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "quick": plan.quick,
        # quick runs are short; a 1-minute load average above half the CPUs means others competed
        "noisy": plan.quick or max(load_before, os.getloadavg()[0]) > 0.5 * (os.cpu_count() or 1),
        "loadavg_1min_at_start": load_before,
        "warmup_s": plan.warmup_s,
        "duration_s": plan.duration_s,
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "mlflow": mlflow.__version__,
        "jupyter_serving": _version.__version__,
        "platform": platform.platform(),
        "ours_args": list(plan.ours_args),
    }


def markdown(report: dict[str, Any]) -> str:
    meta, mlf, ours = report["meta"], report["mlflow"], report["jupyter_serving"]
    lines = [
        "| one-row iris LogisticRegression | `mlflow models serve -w 2` | jupyter-serving (Small) "
        "| ours / mlflow | mlflow, quickack client¹ | ours, quickack client¹ | ours / mlflow¹ |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for clients in mlf["scenarios"]["plain"]:
        label = f"{clients} client" + ("s" if clients != "1" else "")
        for key, name, digits in (
            ("throughput_rps", "throughput", 0),
            ("p50_ms", "p50", 2),
            ("p99_ms", "p99", 2),
        ):
            unit = "req/s" if key == "throughput_rps" else "ms"
            cells = []
            for mode in MODES:
                theirs, ours_v = mlf["scenarios"][mode][clients][key], ours["scenarios"][mode][clients][key]
                cells += [fmt(theirs, digits), fmt(ours_v, digits), fmt(ratio(ours_v, theirs), 2, "x")]
            lines.append(f"| {name}, {label} ({unit}) | " + " | ".join(cells) + " |")
    first = "start_to_first_answer_s"
    lines.append(
        f"| process start -> first answer (s) | {fmt(mlf[first], 2)} | {fmt(ours[first], 2)} "
        f"| {fmt(report['ratios'][first], 2, 'x')} | | | |"
    )
    lines.append(f"| create -> READY, fresh server (s) | | {fmt(ours['create_to_ready_s'], 2)} | | | | |")
    lines.append(f"| create -> READY, warm server (s) | | {fmt(ours['warm_create_to_ready_s'], 2)} | | | | |")
    errors = report["correctness"]["errors"]
    lines.append(
        f"| errors (non-200, wrong body, I/O) | {errors['mlflow']} | {errors['jupyter_serving']} | | | | |"
    )
    noisy = " - **noisy (quick run or busy machine): indicative only**" if meta["noisy"] else ""
    header = (
        f"{meta['date']}, {meta['cpus']} CPUs, 1-min load avg {meta['loadavg_1min_at_start']:.1f} at start, "
        f"{meta['loadavg_at_end'][0]:.1f} at end, "
        f"mlflow {meta['mlflow']}, {meta['warmup_s']:g} s warm-up + {meta['duration_s']:g} s "
        f"per scenario{noisy}"
    )
    note = (
        "¹ The client ACKs each response at once (TCP_QUICKACK). That removes a ~40 ms Nagle/delayed-ACK "
        "stall `uvicorn --workers N` adds to every keep-alive request (it never sets TCP_NODELAY), "
        "so these columns compare the servers themselves; the first three are what an ordinary client sees."
    )
    checks = [f"- {'PASS' if ok else 'FAIL'} {name}" for name, ok in report["targets"].items()]
    same = report["correctness"]["same_predictions"]
    checks.append(f"- {'PASS' if same else 'FAIL'} same predictions from both servers and the local model")
    if ours["create_errors"]:
        checks.append(
            f"- WARNING {len(ours['create_errors'])} create call(s) failed with 5xx and were retried"
        )
    return "\n".join([header, "", *lines, "", note, "", *checks])


# -- main -------------------------------------------------------------------------------------------


def bench_both(root: Path, plan: Plan) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    print("registering iris-lr v1 in a fresh sqlite registry ...", flush=True)
    env, local = register_model(root)
    bodies = request_bodies()
    print("mlflow models serve:", flush=True)
    mlf = bench_mlflow(root, env, bodies, plan)
    print("jupyter-serving:", flush=True)
    return mlf, bench_ours(root, env, bodies, plan), local


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run (0.5 s warm-up, 2 s scenarios)")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--duration", type=float, help="seconds measured per scenario (default 10, quick 2)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up per scenario (default 2, quick 0.5)")
    parser.add_argument("--clients", default="1,16", help="concurrent clients per scenario (default 1,16)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (registry, state, server logs)"
    )
    parser.add_argument(
        "--ours-arg", action="append", default=[], help="extra flag for jupyter-serving serve (repeatable)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(
        clients=tuple(sorted({int(c) for c in args.clients.split(",")})),
        warmup_s=args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0),
        duration_s=args.duration if args.duration is not None else (2.0 if args.quick else 10.0),
        quick=args.quick,
        ours_args=tuple(args.ours_arg),
    )
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="jsbench-") as tmp:
        root = Path(tempfile.mkdtemp(prefix="jsbench-")) if args.keep else Path(tmp)
        try:
            mlf, ours, local = bench_both(root, plan)
        except Exception:
            for log_path in sorted(root.glob("*.log")):
                print(f"--- last lines of {log_path.name}:\n{log_tail(log_path, 40)}", file=sys.stderr)
            raise
        finally:
            if args.keep:
                print(f"kept the registry, state dir and server logs in {root}")
    report = build_report(plan, mlf, ours, local, load_before)
    print("\n" + markdown(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    correctness = report["correctness"]
    return 0 if correctness["same_predictions"] and not any(correctness["errors"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
