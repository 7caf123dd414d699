"""Side by side in one run: the route-optimized listener against the Jupyter-hosted invocations route
on the same endpoint, and the Jupyter-hosted route with AI Gateway rate limiting + usage tracking on
against off (issue 15).

Run: ``.venv/bin/python -m benchmarks.gateway_bench [--quick] [--out FILE]``. Registers iris-lr v1 in
a fresh sqlite registry, starts one `jupyter-serving serve`, creates a `route_optimized` endpoint,
gets a data-plane token from `/oidc/v1/token` as the SDK does, and drives each route with
`loadgen.py` in its own interpreter (plain keep-alive clients, one-row requests, every answer
checked). The gateway cost is measured in GATEWAY_ROUNDS short rounds, each running the three
arms (off, limits only, on) back to back in an order that rotates from round to round; the cost is
one minus the median over rounds of on/off within the round, so a shared machine's drift (seen:
+-15% between rounds of one arm on the 2-core VM) hits both sides of each ratio alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from benchmarks import run as base
from jupyter_serving.launch import log_tail

ENDPOINT = "gw-bench"
TARGET_P50_MS = 1.0  # listener, 1 client
TARGET_SPEEDUP = 1.5  # listener / Jupyter route throughput at 16 clients
TARGET_GATEWAY_COST = 0.05  # rate limiting + usage tracking on cost < 5 % of throughput at 64 clients
GATEWAY_ON = {
    "rate_limits": [
        {"calls": 100_000_000, "key": "endpoint", "renewal_period": "minute"},
        {"calls": 100_000_000, "key": "user", "renewal_period": "minute"},
    ],
    "usage_tracking_config": {"enabled": True},
}
GATEWAY_OFF: dict[str, Any] = {}
GATEWAY_LIMITS = {"rate_limits": GATEWAY_ON["rate_limits"]}  # rate limiting alone, to split the cost
REPEATS = 3  # listener vs Jupyter route: interleaved A B A B A B, medians reported
GATEWAY_ROUNDS = 7  # gateway arms: rounds of (off, limits, on) in rotating order, paired ratios
GATEWAY_ARMS = (("gateway_off", GATEWAY_OFF), ("limits_only", GATEWAY_LIMITS), ("gateway_on", GATEWAY_ON))


def data_plane_target(api: base.OursApi, url: str, proc: Any, log_path: Path) -> base.Target:
    """The listener's URL and a token for it, the way `serving_endpoints_data_plane` gets them."""
    info = api.get(ENDPOINT)["data_plane_info"]["query_info"]
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": base.TOKEN,
        "authorization_details": info["authorization_details"],
    }
    token = requests.post(url + "oidc/v1/token", data=form, timeout=30).json()["access_token"]
    parsed = urlsplit(info["endpoint_url"])
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    return base.Target(parsed.hostname or base.HOST, parsed.port or 80, parsed.path, headers, proc, log_path)


def measure(
    target: base.Target, bodies: list[bytes], clients: int, plan: base.Plan, label: str
) -> dict[str, Any]:
    result = base.run_load(target, bodies, clients, False, plan)
    print(
        f"  {label}, {clients} client(s): {result['throughput_rps']:.0f} req/s, "
        f"p50 {base.fmt(result['p50_ms'], 3)} ms, p99 {base.fmt(result['p99_ms'], 2)} ms, "
        f"server CPU {result['server_cpu_ms_per_request']:.3f} ms/request, errors {result['errors']}",
        flush=True,
    )
    return result


def bench(root: Path, plan: base.Plan, gateway_plan: base.Plan, gateway_clients: int) -> dict[str, Any]:
    env, _ = base.register_model(root)
    bodies = base.request_bodies()
    out: dict[str, Any] = {}
    with base.start_ours(root, env) as ours:
        try:
            session, url, api = ours.session, ours.url, ours.api
            entity = {"entity_name": base.MODEL, "entity_version": "1", "workload_size": "Small"}
            response = session.post(
                url + "api/2.0/serving-endpoints",
                json={"name": ENDPOINT, "config": {"served_entities": [entity]}, "route_optimized": True},
                timeout=60,
            )
            response.raise_for_status()
            api.wait_ready(ENDPOINT)
            jupyter = ours.target(ENDPOINT)
            listener = data_plane_target(api, url, ours.proc, ours.log_path)
            base.fetch_reference(jupyter, bodies, session)
            with requests.Session() as bare:  # no control-plane credential: the target's token only
                base.fetch_reference(listener, bodies, bare)
            assert listener.reference == jupyter.reference, "the two routes answer differently"
            for i in range(REPEATS):
                for clients in (1, 16):
                    out[f"jupyter@{clients}#{i}"] = measure(jupyter, bodies, clients, plan, "jupyter route")
                    out[f"listener@{clients}#{i}"] = measure(listener, bodies, clients, plan, "listener")
            gateway_url = url + f"api/2.0/serving-endpoints/{ENDPOINT}/ai-gateway"
            for i in range(GATEWAY_ROUNDS):
                start = i % len(GATEWAY_ARMS)  # the order rotates from round to round
                for label, config in GATEWAY_ARMS[start:] + GATEWAY_ARMS[:start]:
                    session.put(gateway_url, json=config, timeout=60).raise_for_status()
                    key = f"{label}@{gateway_clients}#{i}"
                    name = label.replace("_", " ")
                    out[key] = measure(jupyter, bodies, gateway_clients, gateway_plan, name)
            usage = root / "state" / "catalog" / "system" / "serving" / "endpoint_usage"
            out["usage_table"] = str(usage)
        except Exception:
            print(f"--- server log:\n{log_tail(ours.log_path, 40)}", file=sys.stderr)
            raise
    return out


def report(results: dict[str, Any], gateway_clients: int) -> dict[str, Any]:
    """Medians over the interleaved repeats (a shared machine's load drifts between runs); the
    gateway's costs from the ratios within each round."""

    def med(prefix: str, key: str = "throughput_rps", rounds: int = REPEATS) -> float:
        return float(statistics.median(float(results[f"{prefix}#{i}"][key]) for i in range(rounds)))

    def paired_cost(arm: str, key: str = "throughput_rps") -> tuple[float, list[float]]:
        """1 - median of arm/off over the rounds, and each round's cost."""
        n = gateway_clients
        costs = [
            1 - float(results[f"{arm}@{n}#{i}"][key]) / float(results[f"gateway_off@{n}#{i}"][key])
            for i in range(GATEWAY_ROUNDS)
        ]
        return float(statistics.median(costs)), [round(c, 4) for c in costs]

    def gw(arm: str, key: str = "throughput_rps") -> float:
        return med(f"{arm}@{gateway_clients}", key, GATEWAY_ROUNDS)

    off, on, limits = gw("gateway_off"), gw("gateway_on"), gw("limits_only")
    speedup = med("listener@16") / med("jupyter@16")
    p50 = med("listener@1", "p50_ms")
    cost, cost_rounds = paired_cost("gateway_on")
    limits_cost, limits_rounds = paired_cost("limits_only")
    cpu = "server_cpu_ms_per_request"
    errors = sum(int(r["errors"]) for r in results.values() if isinstance(r, dict))
    return {
        "listener_p50_ms@1": p50,
        "jupyter_p50_ms@1": med("jupyter@1", "p50_ms"),
        "listener_rps@16": med("listener@16"),
        "jupyter_rps@16": med("jupyter@16"),
        "listener_speedup@16": speedup,
        "listener_cpu_ms_per_request@16": med("listener@16", cpu),
        "jupyter_cpu_ms_per_request@16": med("jupyter@16", cpu),
        f"gateway_off_rps@{gateway_clients}": off,
        f"gateway_on_rps@{gateway_clients}": on,
        f"gateway_off_cpu_ms_per_request@{gateway_clients}": gw("gateway_off", cpu),
        f"gateway_on_cpu_ms_per_request@{gateway_clients}": gw("gateway_on", cpu),
        f"limits_only_rps@{gateway_clients}": limits,
        f"limits_only_cpu_ms_per_request@{gateway_clients}": gw("limits_only", cpu),
        "limits_only_cost": limits_cost,
        "limits_only_cost_rounds": limits_rounds,
        "gateway_cost": cost,
        "gateway_cost_rounds": cost_rounds,
        "gateway_cpu_increase_rounds": [-c for c in paired_cost("gateway_on", cpu)[1]],
        "errors": errors,
        "targets": {
            f"listener p50 at 1 client <= {TARGET_P50_MS} ms": p50 <= TARGET_P50_MS,
            f"listener / jupyter route at 16 clients >= {TARGET_SPEEDUP}x": speedup >= TARGET_SPEEDUP,
            f"gateway cost at {gateway_clients} clients < {TARGET_GATEWAY_COST:.0%}": cost
            < TARGET_GATEWAY_COST,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test, not numbers)")
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--gateway-clients", type=int, default=64)
    parser.add_argument("--gateway-duration", type=float, default=None, help="seconds per gateway arm")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    duration = args.duration if args.duration is not None else (2.0 if args.quick else 10.0)
    plan = base.Plan(
        clients=(1, 16), warmup_s=0.5 if args.quick else 2.0, duration_s=duration, quick=args.quick
    )
    gateway_duration = args.gateway_duration
    if gateway_duration is None:
        gateway_duration = 1.0 if args.quick else 5.0
    gateway_plan = base.Plan(
        clients=(args.gateway_clients,), warmup_s=0.5 if args.quick else 1.0,
        duration_s=gateway_duration, quick=args.quick,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="jsgw-") as tmp:
        started = time.perf_counter()
        results = bench(Path(tmp), plan, gateway_plan, args.gateway_clients)
    summary = report(results, args.gateway_clients)
    summary["wall_s"] = time.perf_counter() - started
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "runs": results}, indent=2) + "\n")
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
