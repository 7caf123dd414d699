"""What the metrics history costs: the same load on a server with the history off and one with it on.

Run: ``.venv/bin/python -m benchmarks.history_bench [--clients 64] [--rounds 3] [--duration 10]``.
Two `jupyter-serving serve` processes (history_interval_s 0, and the default 2 s or `--interval`)
serve iris-lr v1 from one fresh registry. They run side by side, and the scenarios alternate
off, on, off, on, ... so load from other users of the machine falls on both alike; the report gives
each round's throughput and the ratio of the means (on / off). The budget is a cost under 2 %.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from benchmarks.run import (
    ENDPOINT,
    Ours,
    Plan,
    Target,
    fetch_reference,
    register_model,
    request_bodies,
    run_load,
    start_ours,
    wait_for_answer,
)

BUDGET = 0.02


def start(
    stack: contextlib.ExitStack, root: Path, env: dict[str, str], label: str, interval: float
) -> tuple[Ours, Target]:
    """A server with the history sampled every `interval` s (0: off), serving iris-lr v1, answers checked."""
    ours = stack.enter_context(start_ours(root, env, f"--history-interval-s={interval}", name=label))
    ours.api.create_ready_s(ENDPOINT)
    target = ours.target(ENDPOINT)
    wait_for_answer(target, request_bodies()[0], ours.session)
    fetch_reference(target, request_bodies(), ours.session)  # the answers run_load checks
    return ours, target


def sampler(url: str, session: requests.Session) -> dict[str, Any]:
    """How many samples the server took and how long they kept its event loop busy."""
    body = session.get(url + f"api/2.0/jupyter-serving/endpoints/{ENDPOINT}/history", timeout=30).json()
    samples = sum(len(e["samples"]["timestamp_ms"]) for e in body["served_entities"])
    return {"samples": samples, **body["sampler"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.history_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=2.0, help="history_interval_s of the 'on' server")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    plan = Plan(clients=(args.clients,), warmup_s=args.warmup, duration_s=args.duration, quick=False)
    bodies = request_bodies()
    rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory(prefix="jshist-") as tmp:
        root = Path(tmp)
        env, _ = register_model(root)
        with contextlib.ExitStack() as servers:
            _, off = start(servers, root, env, "off", 0.0)
            on_server, on = start(servers, root, env, "on", args.interval)
            on_url, on_session = on_server.url, on_server.session
            before, loaded_s = sampler(on_url, on_session), 0.0
            for n in range(args.rounds):
                for label, target in (("off", off), ("on", on)) if n % 2 == 0 else (("on", on), ("off", off)):
                    result = run_load(target, bodies, args.clients, True, plan)
                    rounds[label].append(result)
                    loaded_s += (args.warmup + args.duration) if label == "on" else 0.0
                    print(
                        f"round {n + 1} {label:>3}: {result['throughput_rps']:.0f} req/s, "
                        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                        f"errors {result['errors']}",
                        flush=True,
                    )
            after = sampler(on_url, on_session)
    mean = {k: statistics.fmean(r["throughput_rps"] for r in v) for k, v in rounds.items()}
    cost = 1 - mean["on"] / mean["off"]
    pairs = [
        a["throughput_rps"] / b["throughput_rps"] for a, b in zip(rounds["on"], rounds["off"], strict=True)
    ]
    ticks = after["ticks"] - before["ticks"]
    busy = after["busy_s"] - before["busy_s"]
    report = {
        "clients": args.clients,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "interval_s": args.interval,
        "throughput_rps": {k: [round(r["throughput_rps"], 1) for r in v] for k, v in rounds.items()},
        "p99_ms": {k: [round(r["p99_ms"], 2) for r in v] for k, v in rounds.items()},
        "mean_rps": {k: round(v, 1) for k, v in mean.items()},
        "cost": round(cost, 4),
        "paired_ratios": [round(p, 3) for p in pairs],
        "median_paired_cost": round(1 - statistics.median(pairs), 4),
        # The sampler runs on the server's event loop, the resource a saturated server is short of:
        # the share of the loaded time it took bounds the throughput it can cost, without the noise.
        "sampler_ticks_under_load": ticks,
        "sampler_busy_ms_per_tick": round(1000 * busy / max(ticks, 1), 3),
        "sampler_share_of_loaded_time": round(busy / loaded_s, 6) if loaded_s else None,
        "history_samples_on_server": after["samples"],
        "errors": sum(r["errors"] for v in rounds.values() for r in v),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(report, indent=2))
    print(
        f"\nhistory on / off throughput: {mean['on'] / mean['off']:.3f} (cost {cost:+.1%}, median paired "
        f"{report['median_paired_cost']:+.1%}, budget {BUDGET:.0%}); sampling took "
        f"{report['sampler_busy_ms_per_tick']} ms per tick, {report['sampler_share_of_loaded_time']:.4%} "
        "of the loaded time"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["errors"] == 0 and after["samples"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
