"""Scenarios beyond raw throughput: inference-table capture, config updates under load, cold starts.

Run: ``.venv/bin/python -m benchmarks.scenarios [--quick] [--out FILE] [--only NAME]``. Like
`run.py`: one invocation registers its models in a fresh sqlite MLflow registry in a temp dir, starts
`jupyter-serving serve` (and, for the cold-start comparison, `mlflow models serve`) as subprocesses,
drives them with `loadgen.py` in its own interpreter, checks every answer, prints a Markdown table per
scenario with its targets, and writes every number as JSON. Scenarios (``--only``; a prefix such as
``capture`` selects both capture scenarios; comma-separated lists work):

- ``capture-overhead``: throughput and p50/p99 at 16 and 64 clients, auto_capture_config on vs off (issue 5).
- ``capture-kill``: kill -9 of the server under load with capture on; acknowledged rows lost (issue 5).
- ``update``: 3 config updates under steady load on a two-entity endpoint; errors, added latency (issue 3).
- ``cold-start``: first request to a scaled-to-zero endpoint vs `mlflow models serve` start-up (issue 4).

See benchmarks/README.md for what each one does and why.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import requests

from benchmarks import run as base
from benchmarks.loadgen import percentile
from jupyter_serving.capture.writer import SERVICE_MODULE as CAPTURE_SERVICE_MODULE
from jupyter_serving.launch import TOKEN_ENV, log_tail, serve_command
from tests.serving_support import worker_processes

HOST, TOKEN, COLUMNS, ROWS = base.HOST, base.TOKEN, base.COLUMNS, base.ROWS
CAPTURE = {"catalog_name": "main", "schema_name": "default"}

TARGET_CAPTURE_COST = 0.10  # capture on costs < 10% of throughput (at the last of CAPTURE_CLIENTS)
CAPTURE_CLIENTS = (16, 64)  # the first saturates the server with capture off; the last either way
TARGET_COLD_FIRST_S = 1.0  # scale-from-zero first request < 1 s (median of the repeats)
ROWS_TIMEOUT_S = 120.0  # longest we wait for a restarted server to commit the spool to Delta
ZERO_TIMEOUT_S = 60.0
SPARE_SETTLE_S = 3.0  # minimum wait after scale-to-zero before timing a cold request (see cold_start)
SPARE_IDLE_CPU_S = 0.01  # a warm spare that used less CPU than this over SPARE_IDLE_WINDOW_S is idle
SPARE_IDLE_WINDOW_S = 0.5
POLL_S = 0.05


def estimators() -> dict[tuple[str, int], Any]:
    """The registered models. Every one must give the same answer for each of ROWS (checked), so the
    load generator can compare bodies byte for byte whichever served entity answers."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.tree import DecisionTreeClassifier

    return {
        ("iris-lr", 1): LogisticRegression(max_iter=500),
        ("iris-lr", 2): LogisticRegression(max_iter=500, C=0.5),
        ("iris-lr", 3): LogisticRegression(max_iter=500, C=2.0),
        ("iris-tree", 1): DecisionTreeClassifier(random_state=0),
    }


@dataclass(frozen=True)
class Config:
    quick: bool
    warmup_s: float
    duration_s: float  # capture on/off: measured seconds per run
    rounds: int  # capture on/off: rounds of (off, on), order alternating
    kill_after_s: float  # capture-kill: load before the kill
    after_kill_s: float  # capture-kill: load kept running against the dead server
    steady_s: float  # update: steady load before the first update (and after the last)
    update_gap_s: float  # update: steady load between updates
    cold_repeats: int
    mlflow_repeats: int

    @classmethod
    def make(cls, quick: bool, warmup: float | None, duration: float | None) -> Config:
        return cls(
            quick=quick,
            warmup_s=warmup if warmup is not None else (0.5 if quick else 2.0),
            duration_s=duration if duration is not None else (2.0 if quick else 10.0),
            rounds=1 if quick else 3,
            kill_after_s=2.0 if quick else 6.0,
            after_kill_s=0.5 if quick else 1.0,
            steady_s=(duration if duration is not None else (2.0 if quick else 10.0)),
            update_gap_s=0.5 if quick else 2.0,
            cold_repeats=3 if quick else 5,
            mlflow_repeats=1 if quick else 3,
        )


# -- servers ----------------------------------------------------------------------------------------


class Ours:
    """One `jupyter-serving serve` on a state dir; can be killed and started again on the same dir."""

    def __init__(self, root: Path, env: dict[str, str], name: str, args: list[str]) -> None:
        self.root, self.env, self.name, self.args = root, env, name, args
        self.state_dir = root / f"{name}-state"
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / f"{name}.log"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {TOKEN}"
        self.url = ""

    def start(self) -> float:
        """Start the server; seconds from process start to listening (its info file)."""
        self.starts += 1
        tag = f"{self.name}-{self.starts}"
        info, self.log_path = self.root / f"{tag}-info.json", self.root / f"{tag}.log"
        cmd = serve_command(info, "--host", HOST, "--state-dir", str(self.state_dir), *self.args)
        started = time.perf_counter()
        self.proc = base.spawn(cmd, {**self.env, TOKEN_ENV: TOKEN}, self.log_path)
        self.url = base.wait_for_url(self.proc, info, self.log_path)
        return time.perf_counter() - started

    @property
    def api(self) -> base.OursApi:
        return base.OursApi(self.url, self.session)

    def target(self, endpoint: str, served: str | None = None) -> base.Target:
        assert self.proc is not None
        parsed = urlsplit(self.url)
        path = f"{parsed.path}serving-endpoints/{endpoint}/"
        path += f"served-models/{served}/invocations" if served else "invocations"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        return base.Target(
            parsed.hostname or HOST, parsed.port or 80, path, headers, self.proc, self.log_path
        )

    def put_config(self, endpoint: str, config: dict[str, Any]) -> requests.Response:
        url = self.url + f"api/2.0/serving-endpoints/{endpoint}/config"
        return self.session.put(url, json=config, timeout=60)

    def workers(self, *also: str, fork_servers: bool = True) -> list[psutil.Process]:
        """This server's worker interpreters (replicas and warm spares; with `fork_servers`, the fork
        server of each environment too), and processes running the modules in `also` (e.g. the
        capture service)."""
        if self.proc is None:
            return []
        return worker_processes(self.proc.pid, *also, fork_servers=fork_servers)

    def kill9(self) -> float:
        """SIGKILL the server process alone (workers live in their own sessions); the monotonic time."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        at = time.monotonic()
        self.proc.wait(30)
        return at

    def stop(self) -> None:
        if self.proc is not None:
            base.stop(self.proc)


@contextlib.contextmanager
def ours_server(root: Path, env: dict[str, str], name: str, args: list[str]) -> Iterator[Ours]:
    server = Ours(root, env, name, args)
    try:
        yield server
    finally:
        server.stop()
        server.session.close()


def references(target: base.Target, session: requests.Session) -> list[str]:
    """Store the reference answer body per row in `target` (see run.fetch_reference); their x-request-ids."""
    ids = []
    for body in base.request_bodies():
        response = session.post(target.url, data=body, headers=target.headers, timeout=60)
        if response.status_code != 200:
            raise RuntimeError(f"{target.url} answered {response.status_code}: {response.text[:500]}")
        target.reference.append(response.content)
        ids.append(response.headers.get("x-request-id", ""))
    return ids


def same_answers(target: base.Target, reference: list[bytes], session: requests.Session) -> bool:
    for body, expected in zip(base.request_bodies(), reference, strict=True):
        response = session.post(target.url, data=body, headers=target.headers, timeout=60)
        if response.status_code != 200 or response.content != expected:
            return False
    return True


def start_load(target: base.Target, clients: int, root: Path, tag: str, **options: Any) -> LoadRun:
    """loadgen.py in the background until `LoadRun.finish` (a stop file; 600 s at most)."""
    stop_file = root / f"{tag}.stop"
    spec = base.load_spec(
        target,
        base.request_bodies(),
        clients,
        options.pop("warmup_s", 0.0),
        600.0,
        stop_file=str(stop_file),
        samples=True,
        **options,
    )
    out = root / f"{tag}.loadgen.json"
    with open(out, "wb") as stdout:
        proc = subprocess.Popen([sys.executable, str(base.LOADGEN)], stdin=subprocess.PIPE, stdout=stdout)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode())
    proc.stdin.close()
    return LoadRun(proc, stop_file, out, time.monotonic())


@dataclass
class LoadRun:
    proc: subprocess.Popen[bytes]
    stop_file: Path
    out: Path
    started: float

    def finish(self) -> dict[str, Any]:
        self.stop_file.touch()
        code = self.proc.wait(60 + 15)  # the loadgen's grace for stuck clients is 10 s
        if code != 0:
            raise RuntimeError(f"loadgen exited with {code}")
        return dict(json.loads(self.out.read_text()))


def phase_stats(samples: list[list[float]], start: float, end: float) -> dict[str, Any]:
    """Answers sent in [start, end): count, errors, throughput, latency percentiles (ms)."""
    inside = [s for s in samples if start <= s[0] < end]
    ok = sorted(s[1] for s in inside if s[2])
    span = max(end - start, 1e-9)
    return {
        "seconds": end - start,
        "requests": len(inside),
        "errors": sum(1 for s in inside if not s[2]),
        "throughput_rps": len(ok) / span,
        "p50_ms": percentile(ok, 50),
        "p99_ms": percentile(ok, 99),
        "max_ms": 1000 * ok[-1] if ok else None,
    }


# -- capture ----------------------------------------------------------------------------------------


def capture_overhead(root: Path, env: dict[str, str], cfg: Config) -> dict[str, Any]:
    """Same endpoint, same server, capture toggled by config updates (the replica is reused).

    At CAPTURE_CLIENTS[0] the server is saturated with capture off; with it on, every answer also
    waits for its disk flush, so that level shows what the added latency costs a closed-loop client
    pool. The target is judged at the last level, where the server is saturated either way: the
    throughput the server can give (its capacity) with capture on versus off. Rounds alternate the
    order (off, on / on, off) so a drift of the machine's speed does not favour one mode.
    """
    name = "cap"
    entity = {"entity_name": "iris-lr", "entity_version": "1", "workload_size": "Small"}
    levels: dict[int, dict[str, list[dict[str, Any]]]] = {c: {"off": [], "on": []} for c in CAPTURE_CLIENTS}
    with ours_server(root, env, "capture-overhead", []) as server:
        server.start()
        server.api.create(name, {"served_entities": [entity]})
        server.api.wait_ready(name)
        target = server.target(name)
        references(target, server.session)
        on_answers, current = 0, "off"
        for round_no in range(cfg.rounds):
            for clients in CAPTURE_CLIENTS:
                plan = base.Plan((clients,), cfg.warmup_s, cfg.duration_s, cfg.quick)
                for mode in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
                    if mode != current:
                        set_capture(server, name, entity, mode == "on")
                        current = mode
                    print(
                        f"  capture {mode}, {clients} clients: {cfg.warmup_s:g} s + {cfg.duration_s:g} s",
                        flush=True,
                    )
                    result = base.run_load(target, base.request_bodies(), clients, False, plan)
                    levels[clients][mode].append(result)
                    on_answers += result["answers_checked"] if mode == "on" else 0
                    print(
                        f"    {result['throughput_rps']:.0f} req/s, p50 {base.fmt(result['p50_ms'], 2)} ms, "
                        f"p99 {base.fmt(result['p99_ms'], 2)} ms, errors {result['errors']}",
                        flush=True,
                    )
        if current == "off":  # the table's path is shown while capture is on
            set_capture(server, name, entity, True)
        table = server.api.get(name)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
        # every answer while capture was on must reach the table (default flush interval: a few seconds)
        captured, waited = wait_for_rows(table, lambda ids: len(ids) >= on_answers, 60.0)
    results = {}
    for clients, runs in levels.items():
        summary = {mode: summarise_runs(rs) for mode, rs in runs.items()}
        off, on = summary["off"]["throughput_rps"], summary["on"]["throughput_rps"]
        cost = 1 - on / off if off else None
        results[clients] = {"runs": runs, "summary": summary, "throughput_cost": cost}
    cost = results[CAPTURE_CLIENTS[-1]]["throughput_cost"]
    errors = sum(r["errors"] for level in levels.values() for rs in level.values() for r in rs)
    return {
        "levels": results,
        "throughput_cost": cost,
        "answers_while_on": on_answers,
        "rows_in_table": len(captured),
        "distinct_rows_in_table": len(set(captured)),
        "seconds_waited_for_rows": waited,
        "errors": errors,
        "targets": {
            f"capture costs < {TARGET_CAPTURE_COST:.0%} of throughput at {CAPTURE_CLIENTS[-1]} clients": (
                cost is not None and cost < TARGET_CAPTURE_COST
            )
        },
        "checks": {
            "zero errors": errors == 0,
            "every answer while capture was on is in the table, once": len(captured)
            == len(set(captured))
            == on_answers,
        },
    }


def set_capture(server: Ours, name: str, entity: dict[str, Any], enabled: bool) -> None:
    capture = {**CAPTURE, "enabled": enabled}
    response = server.put_config(name, {"served_entities": [entity], "auto_capture_config": capture})
    if response.status_code != 200:
        raise RuntimeError(f"PUT config (capture {enabled}): {response.status_code} {response.text[:300]}")
    server.api.wait_ready(name)


def summarise_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean throughput over the rounds; median of each round's p50/p99 (one round: its own numbers)."""
    return {
        "throughput_rps": statistics.fmean(r["throughput_rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs if r["p50_ms"] is not None),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs if r["p99_ms"] is not None),
        "server_cpu_ms_per_request": statistics.fmean(r["server_cpu_ms_per_request"] for r in runs),
        "server_root_cpu_ms_per_request": statistics.fmean(
            r["server_root_process_cpu_ms_per_request"] for r in runs
        ),
    }


def table_ids(path: str) -> list[str]:
    if not Path(path, "_delta_log").exists():
        return []
    from deltalake import DeltaTable

    column = DeltaTable(path).to_pyarrow_table(columns=["databricks_request_id"]).column(0)
    return [str(v) for v in column.to_pylist()]


def wait_for_rows(path: str, done: Callable[[list[str]], bool], timeout_s: float) -> tuple[list[str], float]:
    """Poll the Delta table until `done(ids)`, or the timeout; (ids, seconds waited)."""
    started = time.monotonic()
    while True:
        ids = table_ids(path)
        if done(ids) or time.monotonic() - started > timeout_s:
            return ids, time.monotonic() - started
        time.sleep(0.2)


def capture_kill(root: Path, env: dict[str, str], cfg: Config) -> dict[str, Any]:
    """kill -9 under load with a 30 s flush interval (acknowledged rows sit in the spool), restart on the
    same state dir, and compare the table with the x-request-ids of every 200 the clients received."""
    clients, name = 16, "capkill"
    entity = {"entity_name": "iris-lr", "entity_version": "1", "workload_size": "Small"}
    config = {"served_entities": [entity], "auto_capture_config": {**CAPTURE, "enabled": True}}
    with ours_server(root, env, "capture-kill", ["--capture-flush-s", "30"]) as server:
        server.start()
        server.api.create(name, config)
        server.api.wait_ready(name)
        table = server.api.get(name)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
        target = server.target(name)
        acknowledged = references(target, server.session)
        print(
            f"  capture on, flush 30 s, {clients} clients; kill -9 after {cfg.kill_after_s:g} s of load",
            flush=True,
        )
        load = start_load(target, clients, root, "capture-kill", record_ids=True)
        time.sleep(cfg.kill_after_s)
        pids = [p.pid for p in server.workers(CAPTURE_SERVICE_MODULE)]
        killed_at = server.kill9()
        time.sleep(cfg.after_kill_s)  # the clients keep trying against the dead server
        result = load.finish()
        # workers and the capture service notice the server is gone and exit on their own
        orphans = wait_gone(pids, 10.0)
        acknowledged += result.pop("acknowledged_ids")
        samples = result.pop("samples")
        restart_s = time.monotonic()
        listening_s = server.start()
        print(f"  restarted (listening after {listening_s:.2f} s); waiting for the rows ...", flush=True)
        wanted = set(acknowledged)
        ids, waited = wait_for_rows(table, lambda got: wanted <= set(got), ROWS_TIMEOUT_S)
        to_rows_s = time.monotonic() - restart_s
        wait_serving(server, name)  # the endpoint comes back too (redeployed), and answers
        after = same_answers(server.target(name), target.reference, server.session)
    counts = Counter(ids)
    lost = sorted(wanted - set(counts))
    before_kill = [s for s in samples if s[0] + s[1] < killed_at]
    errors_before_kill = sum(1 for s in before_kill if not s[2])
    return {
        "clients": clients,
        "load_before_kill_s": cfg.kill_after_s,
        "acknowledged": len(acknowledged),
        "acknowledged_distinct": len(wanted),
        "answers_before_kill": len(before_kill),
        "errors_before_kill": errors_before_kill,
        "failed_after_kill": sum(1 for s in samples if not s[2]) - errors_before_kill,
        "rows_in_table": len(ids),
        "lost": len(lost),
        "lost_ids": lost[:50],
        "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "unacknowledged_rows": len(set(counts) - wanted),  # in flight at the kill: may or may not be kept
        "restart_to_listening_s": listening_s,
        "restart_to_rows_s": to_rows_s if not lost else None,
        "seconds_waited_for_rows": waited,
        "worker_pids_at_kill": pids,
        "workers_alive_10s_after_kill": orphans,
        "answers_after_restart": after,
        "loadgen": result,
        "targets": {"zero acknowledged rows lost after kill -9": not lost and len(wanted) > len(ROWS)},
        "checks": {
            "no duplicate rows": all(c == 1 for c in counts.values()),
            "every acknowledged id is distinct": len(wanted) == len(acknowledged),
            "zero errors before the kill": errors_before_kill == 0,
            "no worker or capture service outlives the killed server by 10 s": not orphans,
            "restarted server answers correctly": after,
        },
    }


def wait_serving(server: Ours, name: str) -> None:
    """After a restart the server redeploys stored endpoints: state NOT_READY + NOT_UPDATING, then READY."""
    deadline = time.monotonic() + base.START_TIMEOUT_S
    while (state := server.api.get(name)["state"]) != {"ready": "READY", "config_update": "NOT_UPDATING"}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"endpoint {name} not serving again in {base.START_TIMEOUT_S:g} s: {state}")
        time.sleep(POLL_S)


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while alive := [p for p in pids if pid_alive(p)]:
        if time.monotonic() > deadline:
            return alive
        time.sleep(0.1)
    return []


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- updates under load -----------------------------------------------------------------------------


def entity(name: str, model: str, version: int) -> dict[str, Any]:
    return {"name": name, "entity_name": model, "entity_version": str(version), "workload_size": "Small"}


def routes(split: dict[str, int]) -> dict[str, Any]:
    return {"routes": [{"served_model_name": k, "traffic_percentage": v} for k, v in split.items()]}


INITIAL = {
    "served_entities": [entity("champion", "iris-lr", 1), entity("challenger", "iris-lr", 2)],
    "traffic_config": routes({"champion": 50, "challenger": 50}),
}
UPDATES = [
    (
        "split change 50/50 -> 80/20",
        {
            "served_entities": [entity("champion", "iris-lr", 1), entity("challenger", "iris-lr", 2)],
            "traffic_config": routes({"champion": 80, "challenger": 20}),
        },
    ),
    (
        "version swap: challenger iris-lr v2 -> v3",
        {
            "served_entities": [entity("champion", "iris-lr", 1), entity("challenger", "iris-lr", 3)],
            "traffic_config": routes({"champion": 80, "challenger": 20}),
        },
    ),
    (
        "entity replaced: challenger -> tree (iris-tree v1)",
        {
            "served_entities": [entity("champion", "iris-lr", 1), entity("tree", "iris-tree", 1)],
            "traffic_config": routes({"champion": 80, "tree": 20}),
        },
    ),
]


def update_under_load(root: Path, env: dict[str, str], cfg: Config) -> dict[str, Any]:
    clients, name = 8, "upd"
    with ours_server(root, env, "update", []) as server:
        server.start()
        server.api.create(name, INITIAL)
        version = server.api.wait_ready(name)["config"]["config_version"]
        target = server.target(name)
        references(target, server.session)
        direct = {
            e["name"]: same_answers(server.target(name, e["name"]), target.reference, server.session)
            for e in INITIAL["served_entities"]
        }
        print(
            f"  {clients} clients: {cfg.warmup_s:g} s warm-up, {cfg.steady_s:g} s steady, "
            f"{len(UPDATES)} updates {cfg.update_gap_s:g} s apart, {cfg.steady_s:g} s steady",
            flush=True,
        )
        load = start_load(target, clients, root, "update", warmup_s=cfg.warmup_s)
        time.sleep(cfg.warmup_s + cfg.steady_s)
        updates = []
        try:
            for label, config in UPDATES:
                if updates:
                    time.sleep(cfg.update_gap_s)
                updates.append(timed_update(server, name, label, config, version))
                version = updates[-1]["config_version"] or version
                for e in config["served_entities"]:
                    direct[e["name"]] = direct.get(e["name"], True) and same_answers(
                        server.target(name, e["name"]), target.reference, server.session
                    )
                print(f"    {label}: {updates[-1]['seconds']:.2f} s, {updates[-1]['outcome']}", flush=True)
            time.sleep(cfg.steady_s)
        finally:
            result = load.finish()
        final = server.api.get(name)["config"]
    samples = result.pop("samples")
    # the load generator's own clock: its first request went out as it started; warm-up, then the window
    measure_from = min((s[0] for s in samples), default=load.started) + cfg.warmup_s
    end = measure_from + result["duration_s"]
    first, last = updates[0]["started"], updates[-1]["ended"]
    during = [s for s in samples if any(u["started"] <= s[0] < u["ended"] for u in updates)]
    ok = sorted(s[1] for s in during if s[2])
    span = sum(u["ended"] - u["started"] for u in updates)
    phases = {
        "steady_before": phase_stats(samples, measure_from, first),
        "during_updates": {
            "seconds": span,
            "requests": len(during),
            "errors": sum(1 for s in during if not s[2]),
            "throughput_rps": len(ok) / max(span, 1e-9),
            "p50_ms": percentile(ok, 50),
            "p99_ms": percentile(ok, 99),
            "max_ms": 1000 * ok[-1] if ok else None,
        },
        "steady_after": phase_stats(samples, last, end),
    }
    steady, upd = phases["steady_before"], phases["during_updates"]
    added = {k: diff(upd[k], steady[k]) for k in ("p50_ms", "p99_ms")}
    all_applied = all(u["outcome"] == "NOT_UPDATING/READY" for u in updates)
    served = sorted(e["name"] for e in final["served_entities"])
    return {
        "clients": clients,
        "updates": [
            {
                **{k: v for k, v in u.items() if k not in ("started", "ended")},
                "load": phase_stats(samples, u["started"], u["ended"]),
            }
            for u in updates
        ],
        "phases": phases,
        "added_latency_ms": added,
        "errors": result["errors"],
        "loadgen": result,
        "direct_answers_match": direct,
        "final_served_entities": served,
        "targets": {"zero failed requests across 3 updates": result["errors"] == 0},
        "checks": {
            "every update applied (NOT_UPDATING, READY)": all_applied,
            "config_version went up by one per update": all(u.get("version_incremented") for u in updates),
            "final config serves champion + tree": served == ["champion", "tree"],
            "every entity answers the same bytes directly": all(direct.values()),
        },
    }


def diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def timed_update(server: Ours, name: str, label: str, config: dict[str, Any], version: int) -> dict[str, Any]:
    """PUT the config, then poll until the update is no longer IN_PROGRESS (monotonic times)."""
    started = time.monotonic()
    response = server.put_config(name, config)
    if response.status_code != 200:
        return {
            "label": label,
            "started": started,
            "ended": time.monotonic(),
            "seconds": 0.0,
            "outcome": f"PUT {response.status_code}: {response.text[:300]}",
            "config_version": None,
        }
    deadline = started + base.START_TIMEOUT_S
    while (endpoint := server.api.get(name))["state"]["config_update"] == "IN_PROGRESS":
        if time.monotonic() > deadline:
            break
        time.sleep(POLL_S)
    ended = time.monotonic()
    state = endpoint["state"]
    new_version = endpoint.get("config", {}).get("config_version")
    return {
        "label": label,
        "started": started,
        "ended": ended,
        "seconds": ended - started,
        "outcome": f"{state['config_update']}/{state['ready']}",
        "config_version": new_version,
        "version_incremented": new_version == version + 1,
    }


# -- cold start -------------------------------------------------------------------------------------


def cold_start(root: Path, env: dict[str, str], cfg: Config) -> dict[str, Any]:
    """First request to a scaled-to-zero endpoint, with the warm spare ready; mlflow's start-up beside it.

    Why wait for the spare: the previous first request took the pool's warm spare, and the pool
    starts a new one in the background (import mlflow + scikit-learn, ~2 s on a quiet machine,
    more on a busy one). With a 2 s idle timer the endpoint can reach zero before that new spare is
    ready, and a request then would wait for an interpreter still importing: that measures this
    benchmark's short timers, not a real scale-from-zero (after 30 idle minutes the spare is long
    ready). So after zero we wait SPARE_SETTLE_S, then until the server's only worker process (the
    spare: the scaled-down replica has exited) has been idle for SPARE_IDLE_WINDOW_S."""
    name = "cold"
    flags = ["--scale-to-zero-idle-s", "2", "--autoscale-interval-s", "0.2"]
    config = {"served_entities": [{**entity("iris-lr-1", "iris-lr", 1), "scale_to_zero_enabled": True}]}
    attempts = []
    with ours_server(root, env, "cold-start", flags) as server:
        server.start()
        server.api.create(name, config)
        server.api.wait_ready(name)
        target = server.target(name)
        references(target, server.session)
        body = base.request_bodies()[0]
        for i in range(cfg.cold_repeats):
            zero_s = wait_local(server, name, lambda local: local.get("replicas") == 0)
            spare_s = wait_spare(server)
            before = local_state(server, name)
            seconds, status, answer = timed_request(target, body)
            after = local_state(server, name)
            attempts.append(
                {
                    "seconds": seconds,
                    "ok": status == 200 and answer == target.reference[0],
                    "status": status,
                    "waited_for_zero_s": zero_s,
                    "waited_for_spare_s": spare_s,
                    "replicas_before": before.get("replicas"),
                    "cold_starts_counted": after.get("cold_starts", 0) - before.get("cold_starts", 0),
                }
            )
            print(
                f"  ours, from zero #{i + 1}: first answer {seconds * 1000:.0f} ms (status {status})",
                flush=True,
            )
    mlflow = [mlflow_start(root, env, i) for i in range(cfg.mlflow_repeats)]
    ours_s = [a["seconds"] for a in attempts]
    mlf_s = [m["seconds"] for m in mlflow]
    median = statistics.median(ours_s)
    return {
        "ours_first_request_s": ours_s,
        "ours_median_s": median,
        "ours_max_s": max(ours_s),
        "attempts": attempts,
        "mlflow_start_to_first_answer_s": mlf_s,
        "mlflow_median_s": statistics.median(mlf_s) if mlf_s else None,
        "mlflow_max_s": max(mlf_s) if mlf_s else None,
        "mlflow": mlflow,
        "targets": {
            f"scale-from-zero first request < {TARGET_COLD_FIRST_S:g} s (median)": median
            < TARGET_COLD_FIRST_S
        },
        "checks": {
            "every first request answered 200 with the right body": all(a["ok"] for a in attempts),
            "each was a counted cold start from 0 replicas": all(
                a["replicas_before"] == 0 and a["cold_starts_counted"] == 1 for a in attempts
            ),
            "mlflow answered correctly": all(m["ok"] for m in mlflow),
        },
    }


def local_state(server: Ours, name: str) -> dict[str, Any]:
    return dict(server.api.get(name)["config"]["served_entities"][0].get("local", {}))


def wait_local(server: Ours, name: str, done: Callable[[dict[str, Any]], bool]) -> float:
    started = time.monotonic()
    while not done(local_state(server, name)):
        if time.monotonic() - started > ZERO_TIMEOUT_S:
            raise TimeoutError(f"{name}: not scaled to zero within {ZERO_TIMEOUT_S:g} s")
        time.sleep(POLL_S)
    return time.monotonic() - started


def wait_spare(server: Ours) -> float:
    """SPARE_SETTLE_S, then until exactly one worker (the spare) is left and it is idle; seconds waited.
    The fork server is not counted: it stays whatever the replicas do."""
    started = time.monotonic()
    time.sleep(SPARE_SETTLE_S)
    while time.monotonic() - started < ZERO_TIMEOUT_S:
        workers = server.workers(fork_servers=False)
        if len(workers) == 1 and cpu_s(workers[0], SPARE_IDLE_WINDOW_S) < SPARE_IDLE_CPU_S:
            return time.monotonic() - started
        time.sleep(POLL_S)
    raise TimeoutError(
        f"no idle warm spare within {ZERO_TIMEOUT_S:g} s: workers {server.workers(fork_servers=False)}"
    )


def cpu_s(proc: psutil.Process, window_s: float) -> float:
    try:
        before = proc.cpu_times()
        time.sleep(window_s)
        after = proc.cpu_times()
    except psutil.Error:
        return float("inf")
    return (after.user + after.system) - (before.user + before.system)


def timed_request(target: base.Target, body: bytes) -> tuple[float, int, bytes]:
    """One request on a new connection (as a first client would): seconds to the full answer."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection(target.host, target.port, timeout=base.START_TIMEOUT_S)
    try:
        conn.request("POST", target.path, body=body, headers=target.headers)
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    return time.perf_counter() - started, response.status, answer


def mlflow_start(root: Path, env: dict[str, str], i: int) -> dict[str, Any]:
    """`mlflow models serve --env-manager local -w 2`: process start -> first 200 (as in run.py)."""
    port = base.free_port()
    cli = Path(sys.executable).with_name("mlflow")
    prefix = [str(cli)] if cli.exists() else [sys.executable, "-m", "mlflow"]
    cmd = [*prefix, "models", "serve", "-m", "models:/iris-lr/1", "--env-manager", "local", "-w", "2"]
    cmd += ["-h", HOST, "-p", str(port)]
    log_path = root / f"mlflow-serve-{i}.log"
    started = time.perf_counter()
    target = base.Target(
        HOST,
        port,
        "/invocations",
        {"Content-Type": "application/json"},
        base.spawn(cmd, env, log_path),
        log_path,
    )
    try:
        with requests.Session() as session:
            seconds = base.wait_for_answer(target, base.request_bodies()[0], session) - started
            predictions = session.post(
                target.url, data=base.request_bodies()[0], headers=target.headers, timeout=60
            ).json()["predictions"]
    finally:
        base.stop(target.proc)
    print(
        f"  mlflow models serve -w 2 #{i + 1}: first answer {seconds:.2f} s after process start", flush=True
    )
    return {"seconds": seconds, "predictions": predictions, "ok": predictions == [0]}


# -- report -----------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def ms(value: float | None) -> str:
    return base.fmt(value, 2)


def row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def times(a: float | None, b: float | None) -> str:
    return base.fmt(base.ratio(a, b), 2, "x")


def md_capture_overhead(r: dict[str, Any]) -> list[str]:
    ((target, ok),) = r["targets"].items()
    errors = sum(x["errors"] for level in r["levels"].values() for rs in level["runs"].values() for x in rs)
    lines = [
        row(
            "clients",
            "req/s off",
            "req/s on",
            "on / off",
            "p50 ms off / on",
            "p99 ms off / on",
            "server process CPU ms/req off / on¹",
            "whole tree CPU ms/req off / on²",
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for clients, level in r["levels"].items():
        off, on = level["summary"]["off"], level["summary"]["on"]
        cost = level["throughput_cost"]
        lines.append(
            row(
                clients,
                f"{off['throughput_rps']:.0f}",
                f"{on['throughput_rps']:.0f}",
                f"{times(on['throughput_rps'], off['throughput_rps'])} "
                f"(cost {base.fmt(None if cost is None else 100 * cost, 1, '%')})",
                f"{ms(off['p50_ms'])} / {ms(on['p50_ms'])}",
                f"{ms(off['p99_ms'])} / {ms(on['p99_ms'])}",
                f"{ms(off['server_root_cpu_ms_per_request'])} / {ms(on['server_root_cpu_ms_per_request'])}",
                f"{ms(off['server_cpu_ms_per_request'])} / {ms(on['server_cpu_ms_per_request'])}",
            )
        )
    return [
        *lines,
        "",
        f"- {verdict(ok)} target: {target}",
        f"- errors: {errors}; rows in the table / answers while on: "
        f"{r['rows_in_table']} / {r['answers_while_on']}",
        "",
        "¹ CPU time of the server process alone (Tornado, routing, capture encoding), warm-up included, per "
        "answer: the core that bounds throughput here. ² Its whole process tree: workers and the capture "
        "service (spool syncs, Delta commits) too.",
    ]


def md_capture_kill(r: dict[str, Any]) -> list[str]:
    ((target, ok),) = r["targets"].items()
    orphans = r["workers_alive_10s_after_kill"]
    return [
        row(f"kill -9 under load, capture on, flush 30 s, {r['clients']} clients", "value", "target"),
        "|---|---:|---|",
        row("acknowledged requests (200 + x-request-id)", r["acknowledged"], ""),
        row("acknowledged rows missing from the table", r["lost"], f"{verdict(ok)} {target}"),
        row("duplicate rows", r["duplicates"], f"{verdict(r['duplicates'] == 0)} zero"),
        row(
            "rows of requests in flight at the kill (kept, never acknowledged)", r["unacknowledged_rows"], ""
        ),
        row(
            "failed requests before the kill",
            r["errors_before_kill"],
            f"{verdict(r['errors_before_kill'] == 0)} zero",
        ),
        row("restart -> every acknowledged row in the table (s)", base.fmt(r["restart_to_rows_s"], 2), ""),
        row(
            "workers and capture service alive 10 s after the kill",
            len(orphans),
            f"{verdict(not orphans)} zero",
        ),
    ]


def md_update(r: dict[str, Any]) -> list[str]:
    ((target, ok),) = r["targets"].items()
    before, during, after = (r["phases"][k] for k in ("steady_before", "during_updates", "steady_after"))
    lines = [
        row(
            f"update under load, {r['clients']} clients",
            "steady (before)",
            "during updates",
            "added",
            "steady (after)",
        ),
        "|---|---:|---:|---:|---:|",
        row("seconds", f"{before['seconds']:.1f}", f"{during['seconds']:.1f}", "", f"{after['seconds']:.1f}"),
        row(
            "throughput (req/s)",
            f"{before['throughput_rps']:.0f}",
            f"{during['throughput_rps']:.0f}",
            "",
            f"{after['throughput_rps']:.0f}",
        ),
    ]
    for key, label in (("p50_ms", "p50 (ms)"), ("p99_ms", "p99 (ms)")):
        added = base.fmt(r["added_latency_ms"][key], 2, " ms")
        lines.append(row(label, ms(before[key]), ms(during[key]), added, ms(after[key])))
    lines.append(row("failed requests", before["errors"], during["errors"], "", after["errors"]))
    lines += ["", f"- {verdict(ok)} {target}: {r['errors']} failed request(s) in the whole run"]
    for u in r["updates"]:
        lines.append(
            f"- {u['label']}: {u['seconds']:.2f} s, {u['outcome']}, config_version {u['config_version']}; "
            f"{u['load']['requests']} requests, {u['load']['errors']} failed, "
            f"p50 {ms(u['load']['p50_ms'])} ms, p99 {ms(u['load']['p99_ms'])} ms"
        )
    return lines


def md_cold(r: dict[str, Any]) -> list[str]:
    ((target, ok),) = r["targets"].items()
    n, m = len(r["ours_first_request_s"]), len(r["mlflow_start_to_first_answer_s"])
    return [
        "| first answer from nothing | median (s) | max (s) | runs | target |",
        "|---|---:|---:|---:|---|",
        f"| jupyter-serving: scaled to zero -> first request answered | {r['ours_median_s']:.3f} "
        f"| {r['ours_max_s']:.3f} | {n} | {verdict(ok)} {target} |",
        f"| `mlflow models serve -w 2`: process start -> first answer | {base.fmt(r['mlflow_median_s'], 2)} "
        f"| {base.fmt(r['mlflow_max_s'], 2)} | {m} | |",
    ]


MARKDOWN = {
    "capture-overhead": md_capture_overhead,
    "capture-kill": md_capture_kill,
    "update": md_update,
    "cold-start": md_cold,
}
SCENARIOS: dict[str, Callable[[Path, dict[str, str], Config], dict[str, Any]]] = {
    "capture-overhead": capture_overhead,
    "capture-kill": capture_kill,
    "update": update_under_load,
    "cold-start": cold_start,
}
NEEDS = {  # models each scenario serves
    "capture-overhead": [("iris-lr", 1)],
    "capture-kill": [("iris-lr", 1)],
    "update": [("iris-lr", 1), ("iris-lr", 2), ("iris-lr", 3), ("iris-tree", 1)],
    "cold-start": [("iris-lr", 1)],
}


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    noisy = " - **noisy (quick run or busy machine): indicative only**" if meta["noisy"] else ""
    out = [
        f"{meta['date']}, {meta['cpus']} CPUs, 1-min load avg {meta['loadavg_1min_at_start']:.1f} at start, "
        f"{meta['loadavg_at_end'][0]:.1f} at end, mlflow {meta['mlflow']}{noisy}"
    ]
    for name, result in report["scenarios"].items():
        out += ["", f"### {name}", ""]
        if "error" in result:
            out.append(f"FAILED TO RUN: {result['error']}")
            continue
        out += MARKDOWN[name](result)
        out += [""] + [f"- {verdict(ok)} {check}" for check, ok in result["checks"].items()]
        out += [f"- {verdict(ok)} target: {t}" for t, ok in result["targets"].items()]
    return "\n".join(out)


# -- main -------------------------------------------------------------------------------------------


def selected(only: str | None) -> list[str]:
    if not only:
        return list(SCENARIOS)
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    names = [n for n in SCENARIOS if any(n.startswith(w) for w in wanted)]
    if not names:
        raise SystemExit(f"--only {only}: no such scenario; choose from {', '.join(SCENARIOS)}")
    return names


def register_models(root: Path, names: list[str]) -> dict[str, str]:
    needed = sorted({m for n in names for m in NEEDS[n]})
    print(
        f"registering {', '.join(f'{m} v{v}' for m, v in needed)} in a fresh sqlite registry ...", flush=True
    )
    env, experiment = base.setup_registry(root)
    X, y = base.iris()
    models = estimators()
    answers = {}
    for model, version in needed:
        if version > 1 and (model, version - 1) not in needed:
            raise ValueError(f"{model} v{version} needs v{version - 1} registered first")
        answers[(model, version)] = base.register_sklearn(
            models[(model, version)].fit(X, y), model, experiment
        )
    if len({json.dumps(a) for a in answers.values()}) != 1:  # the load generator compares bodies
        raise RuntimeError(f"models disagree on the benchmark rows: {answers}")
    return env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scenarios", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (noisy numbers)")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument("--only", help=f"scenario name(s) or prefix, comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--duration", type=float, help="measured seconds per load run (default 10, quick 2)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per load run (default 2, quick 0.5)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (registry, state, logs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = Config.make(args.quick, args.warmup, args.duration)
    names = selected(args.only)
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="jsbench-") as tmp:
        root = Path(tempfile.mkdtemp(prefix="jsbench-")) if args.keep else Path(tmp)
        try:
            env = register_models(root, names)
            for name in names:
                print(f"{name}:", flush=True)
                try:
                    results[name] = SCENARIOS[name](root, env, cfg)
                except Exception as exc:  # report it, go on with the other scenarios
                    results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                    print(f"  ERROR: {results[name]['error']}", flush=True)
                    for log_path in sorted(root.glob("*.log")):
                        print(
                            f"--- last lines of {log_path.name}:\n{log_tail(log_path, 15)}",
                            file=sys.stderr,
                        )
        finally:
            if args.keep:
                print(f"kept the registry, state dirs and server logs in {root}")
    plan = base.Plan((), cfg.warmup_s, cfg.duration_s, cfg.quick)
    report = {"meta": {**base.machine_meta(plan, load_before), "config": cfg.__dict__}, "scenarios": results}
    print("\n" + markdown(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    # exit 1 on a correctness failure (errors, lost or duplicate rows, ...); performance targets only print
    failed = [n for n, r in results.items() if "error" in r or not all(r["checks"].values())]
    failed += [
        n
        for n in ("capture-kill", "update")
        if n in results and "error" not in results[n] and not all(results[n]["targets"].values())
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
