"""What a 100 % shadow costs live traffic: throughput and p50 at 16 clients, shadow on vs off, one run.

Run: ``.venv/bin/python -m benchmarks.shadow_bench [--quick] [--rounds N] [--out FILE]``.

One `jupyter-serving serve` (inference table on, as a shadow is only useful with one), one endpoint
with two served entities of the same model (iris-lr v1): ``live`` takes 100 % of the traffic and
``mirror`` none. The same server and the same replicas are measured with the shadow off
(``DELETE .../shadow``) and on (``PUT .../shadow {"served_entity_name": "mirror", "percentage":
100}``), rounds alternating the order so that a drift of the machine's speed favours neither. The
load is `loadgen.py` in its own interpreter, 16 closed-loop clients, one-row requests whose answers
are checked byte for byte. The shadow competes with live traffic for the same cores (issue 29's
point: on this 2-core machine it is not free).

Besides throughput and p50/p99, the server's CPU is read with psutil before and after each run:
the server process alone (where mirroring happens: queue, call, shadow row) and its whole tree
(plus the workers that score the mirrored copies). CPU per mirrored request is the CPU per live
answer with the shadow on minus that with it off, over the mirrored calls per live answer (from
the endpoint's `shadow_requests` counter), so the warm-up's share cancels out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from benchmarks import run as base
from benchmarks import scenarios as sc
from jupyter_serving.notebook.client import parse_metrics

NAME = "shadowed"
LEVELS = (16, 2)  # the target's level (saturated), and one where the shadow keeps up
TARGET_COST = 0.10  # the shadow costs at most 10 % of live throughput (and of p50)
ENTITY = {"entity_name": base.MODEL, "entity_version": "1", "workload_size": "Small"}
CONFIG = {
    "served_entities": [{**ENTITY, "name": "live"}, {**ENTITY, "name": "mirror"}],
    "traffic_config": {
        "routes": [
            {"served_model_name": "live", "traffic_percentage": 100},
            {"served_model_name": "mirror", "traffic_percentage": 0},
        ]
    },
    "auto_capture_config": sc.CAPTURE,
}


def shadow_counts(server: sc.Ours) -> dict[str, float]:
    """The endpoint's shadow counters: calls answered (any status), errors, drops (any reason)."""
    text = server.session.get(server.url + f"api/2.0/serving-endpoints/{NAME}/metrics", timeout=60).text
    counts = {"shadow_requests": 0.0, "shadow_errors": 0.0, "shadow_dropped": 0.0}
    for sample, _labels, value in parse_metrics(text):
        key = sample.removesuffix("_total")
        if sample.endswith("_total") and key in counts:
            counts[key] += value
    return counts


def set_shadow(server: sc.Ours, on: bool) -> None:
    url = server.url + f"api/2.0/jupyter-serving/endpoints/{NAME}/shadow"
    if on:
        response = server.session.put(
            url, json={"served_entity_name": "mirror", "percentage": 100}, timeout=60
        )
    else:
        response = server.session.delete(url, timeout=60)
    if response.status_code not in (200, 404 if not on else 200):
        raise RuntimeError(f"shadow {'on' if on else 'off'}: {response.status_code} {response.text[:300]}")


def drain(server: sc.Ours, timeout_s: float = 30.0) -> None:
    """Wait until no mirrored call is still running (the counters stop moving)."""
    deadline = time.monotonic() + timeout_s
    last = shadow_counts(server)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = shadow_counts(server)
        if now == last:
            return
        last = now


def renice_shadow(server: sc.Ours, nice: int) -> list[int]:
    """Experiment: lower the CPU priority of the shadow entity's replica processes (those writing
    its log, logs/<endpoint>/mirror.log); the pids changed."""
    assert server.proc is not None
    changed = []
    for proc in psutil.Process(server.proc.pid).children(recursive=True):
        try:
            if any(f.path.endswith(f"/{NAME}/mirror.log") for f in proc.open_files()):
                proc.nice(nice)
                changed.append(proc.pid)
        except psutil.Error:
            continue
    return changed


def measure(server: sc.Ours, target: base.Target, plan: base.Plan, clients: int) -> dict[str, Any]:
    assert server.proc is not None
    before = shadow_counts(server)
    root0, tree0 = base.root_cpu_s(server.proc.pid), base.tree_cpu_s(server.proc.pid)
    result = base.run_load(target, base.request_bodies(), clients, False, plan)
    drain(server)  # the mirrored calls queued by the last answers are billed to this run
    root1, tree1 = base.root_cpu_s(server.proc.pid), base.tree_cpu_s(server.proc.pid)
    after = shadow_counts(server)
    answered = result["answers_checked"]  # warm-up included, as the CPU readings are
    result["root_cpu_s"], result["tree_cpu_s"] = root1 - root0, tree1 - tree0
    result["shadow"] = {k: after[k] - before[k] for k in after}
    result["answers_incl_warmup"] = answered
    return result


def cost(root: Path, plan: base.Plan, rounds: int, nice: int = 0) -> dict[int, dict[str, Any]]:
    env, _ = base.register_model(root)
    runs: dict[int, dict[str, list[dict[str, Any]]]] = {c: {"off": [], "on": []} for c in plan.clients}
    with sc.ours_server(root, env, "shadow-cost", []) as server:
        server.start()
        server.api.create(NAME, CONFIG)
        server.api.wait_ready(NAME)
        target = server.target(NAME)
        sc.references(target, server.session)
        if nice:
            print(f"  shadow replicas at nice {nice}: pids {renice_shadow(server, nice)}", flush=True)
        current = False
        for round_no in range(rounds):
            for clients in plan.clients:
                for mode in ("off", "on") if round_no % 2 == 0 else ("on", "off"):
                    if (mode == "on") != current:
                        set_shadow(server, mode == "on")
                        current = mode == "on"
                        drain(server)
                    print(
                        f"  shadow {mode}, {clients} clients: {plan.warmup_s:g} s + {plan.duration_s:g} s",
                        flush=True,
                    )
                    result = measure(server, target, plan, clients)
                    runs[clients][mode].append(result)
                    print(
                        f"    {result['throughput_rps']:.0f} req/s, p50 {base.fmt(result['p50_ms'], 2)} ms, "
                        f"p99 {base.fmt(result['p99_ms'], 2)} ms, errors {result['errors']}, "
                        f"shadow {json.dumps(result['shadow'])}",
                        flush=True,
                    )
    return {clients: summarise(level) for clients, level in runs.items()}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def mean(mode: str, key: str) -> float:
        return statistics.fmean(r[key] for r in runs[mode])

    def per_answer_ms(mode: str, key: str) -> float:
        return 1000 * sum(r[key] for r in runs[mode]) / sum(r["answers_incl_warmup"] for r in runs[mode])

    off_rps, on_rps = mean("off", "throughput_rps"), mean("on", "throughput_rps")
    off_p50 = statistics.median(r["p50_ms"] for r in runs["off"])
    on_p50 = statistics.median(r["p50_ms"] for r in runs["on"])
    mirrored = sum(r["shadow"]["shadow_requests"] for r in runs["on"])
    answers_on = sum(r["answers_incl_warmup"] for r in runs["on"])
    mirrored_per_answer = mirrored / answers_on if answers_on else 0.0
    cpu: dict[str, float | None] = {}
    for key in ("root_cpu_s", "tree_cpu_s"):
        extra = per_answer_ms("on", key) - per_answer_ms("off", key)
        cpu[key.replace("_s", "_ms_per_mirrored_request")] = (
            extra / mirrored_per_answer if mirrored_per_answer else None
        )
        cpu[key.replace("_s", "_ms_per_answer_off")] = per_answer_ms("off", key)
        cpu[key.replace("_s", "_ms_per_answer_on")] = per_answer_ms("on", key)
    throughput_cost = 1 - on_rps / off_rps if off_rps else None
    # Each round measures off and on back to back: the median of the rounds' own ratios is less
    # swayed by the machine's load drifting between rounds than the ratio of the means.
    pairs = list(zip(runs["off"], runs["on"], strict=True))
    paired_cost = 1 - statistics.median(b["throughput_rps"] / a["throughput_rps"] for a, b in pairs)
    paired_p50_cost = statistics.median(b["p50_ms"] / a["p50_ms"] for a, b in pairs) - 1
    p50_cost = on_p50 / off_p50 - 1 if off_p50 else None
    errors = sum(r["errors"] for rs in runs.values() for r in rs)
    dropped = sum(r["shadow"]["shadow_dropped"] for r in runs["on"])
    return {
        "runs": runs,
        "off": {"throughput_rps": off_rps, "p50_ms": off_p50},
        "on": {"throughput_rps": on_rps, "p50_ms": on_p50},
        "throughput_cost": throughput_cost,
        "p50_cost": p50_cost,
        "paired_throughput_cost": paired_cost,
        "paired_p50_cost": paired_p50_cost,
        "round_throughput_costs": [1 - b["throughput_rps"] / a["throughput_rps"] for a, b in pairs],
        "mirrored": mirrored,
        "mirrored_per_answer": mirrored_per_answer,
        "shadow_dropped": dropped,
        "shadow_errors": sum(r["shadow"]["shadow_errors"] for r in runs["on"]),
        "cpu": cpu,
        "errors": errors,
        "targets": {
            f"throughput cost <= {TARGET_COST:.0%}": throughput_cost is not None
            and throughput_cost <= TARGET_COST,
            f"p50 cost <= {TARGET_COST:.0%}": p50_cost is not None and p50_cost <= TARGET_COST,
        },
    }


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]

    def f(x: float | None, d: int = 2) -> str:
        return "n/a" if x is None else f"{x:.{d}f}"

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:+.1f} %"

    lines = [
        f"{meta['date']}, {meta['cpus']} CPUs, 1-min load avg {meta['loadavg_1min_at_start']:.1f} at start, "
        f"{meta['loadavg_at_end'][0]:.1f} at end; {meta['rounds']} rounds of {meta['warmup_s']:g} s + "
        f"{meta['duration_s']:g} s per mode and level, order alternating",
        "",
        "| clients | live req/s off / on | cost | live p50 ms off / on | cost | mirrored per answer "
        "(dropped) | server process CPU ms per answer off / on | per mirrored request | server + workers "
        "per mirrored request |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for clients, r in report["result"].items():
        cpu = r["cpu"]
        lines.append(
            f"| {clients} | {r['off']['throughput_rps']:.0f} / {r['on']['throughput_rps']:.0f} | "
            f"{pct(r['throughput_cost'])} (paired {pct(r['paired_throughput_cost'])}) | "
            f"{f(r['off']['p50_ms'])} / {f(r['on']['p50_ms'])} | "
            f"{pct(r['p50_cost'])} (paired {pct(r['paired_p50_cost'])}) | "
            f"{r['mirrored_per_answer']:.2f} ({r['shadow_dropped']:.0f}) | "
            f"{f(cpu['root_cpu_ms_per_answer_off'], 3)} / {f(cpu['root_cpu_ms_per_answer_on'], 3)} | "
            f"{f(cpu['root_cpu_ms_per_mirrored_request'], 3)} ms | "
            f"{f(cpu['tree_cpu_ms_per_mirrored_request'], 3)} ms |"
        )
    first = report["result"][max(report["result"])]
    lines.append("")
    for clients, r in report["result"].items():
        rounds = ", ".join(pct(c) for c in r["round_throughput_costs"])
        lines.append(f"Throughput cost per round at {clients} clients: {rounds}.")
    errors = sum(r["errors"] for r in report["result"].values())
    lines += [
        f"Live errors: {errors}. Targets at {max(report['result'])} clients: "
        + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in first["targets"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.shadow_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (noisy numbers)")
    parser.add_argument(
        "--rounds", type=int, help="rounds of (off, on), order alternating (default 3, quick 1)"
    )
    parser.add_argument("--duration", type=float, help="measured seconds per run (default 10, quick 2)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per run (default 2, quick 0.5)")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    parser.add_argument(
        "--nice-shadow", type=int, default=0, help="experiment: run the shadow's replicas at this nice value"
    )
    parser.add_argument("--clients", default=",".join(map(str, LEVELS)), help="client levels (default 16,2)")
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    duration = args.duration if args.duration is not None else (2.0 if args.quick else 10.0)
    rounds = args.rounds or (1 if args.quick else 3)
    levels = tuple(int(c) for c in args.clients.split(","))
    plan = base.Plan(levels, warmup, duration, args.quick)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="jsbench-shadow-") as tmp:
        result = cost(Path(tmp), plan, rounds, args.nice_shadow)
    meta = {**base.machine_meta(plan, load_before), "rounds": rounds, "nice_shadow": args.nice_shadow}
    report = {"meta": meta, "result": result}
    print(markdown(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    return 0 if all(r["errors"] == 0 for r in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
