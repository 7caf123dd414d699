"""Scale from zero on the Ray backend: the first answer, and when Serve's own replica runs.

Run: ``.venv/bin/python -m benchmarks.ray_zero_bench [--rounds 5] [--proxy] [--out results.json]``. Registers
iris-lr v1 (benchmarks/run.py), starts the test suite's two-node Ray cluster (tests/ray_cluster.py:
`ray start`, one CPU per node, unauthenticated, retried when a loaded machine misses Ray's start-up
deadline, killed by its temp dir at the end) and `jupyter-serving serve --backend ray` on it, creates
an entity with scale_to_zero_enabled, then for each round: waits until Serve has removed its replica and the
entity's warm host (backends/ray/warm.py) is ready, sends one request and times its answer (the
first answer). In the same round it also times when the server's status first shows Serve's own
replica running: what the first answer waited for before the warm hosts (the peer; polled every
0.2 s from a status that is itself polled from Serve every 0.5 s, so up to ~0.7 s late). Reports the
median of each and their ratio; target: first answer at most 3 s. ``--proxy``: the endpoint is
route-optimized and each round's request goes where GET says (a Ray proxy, with a data-plane
token from /oidc/v1/token), once the proxies' ingress names the entity's warm host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.ray_bench import ZERO_TIMERS, proxy_target
from benchmarks.run import (
    MODEL,
    Ours,
    Target,
    register_model,
    request_bodies,
    start_ours,
    wait_for_answer,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from ray_cluster import RAY_ENV, start_cluster  # the suite's hermetic two-node cluster

TARGET_S = 3.0
POLL_S = 0.2


def ray_local(ours: Ours, name: str) -> dict[str, Any]:
    return dict(ours.api.get(name)["config"]["served_entities"][0]["local"])


def wait_until(ours: Ours, name: str, until: Any, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.perf_counter() + timeout_s
    while not until(info := ray_local(ours, name)):
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{name}: not reached within {timeout_s:g} s: {info}")
        time.sleep(POLL_S)
    return info


def one_round(ours: Ours, name: str, target: Target, proxy: bool) -> dict[str, Any]:
    cold = "warm_on_proxies" if proxy else "warm_host"
    wait_until(ours, name, lambda i: i["replicas"] == 0 and i["ray"][cold] in (True, "ready"))
    before = ray_local(ours, name)["ray"]["warm_starts"]
    started = time.perf_counter()
    first = wait_for_answer(target, request_bodies()[0], ours.session) - started
    info = wait_until(ours, name, lambda i: i["replicas"] > 0)
    serve = time.perf_counter() - started
    warm = info["ray"]["warm_starts"] - before
    print(f"    first answer {first:.2f} s, Serve's replica running at {serve:.2f} s, warm starts {warm}")
    return {"first_answer_s": first, "serve_replica_running_s": serve, "warm": warm == 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--proxy", action="store_true", help="query through the Ray proxy")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    args = parser.parse_args(argv)
    os.environ.update(RAY_ENV)  # a ~/.ray/auth_token another Ray left: not for this cluster
    report: dict[str, Any] = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count()}
    root = Path(tempfile.mkdtemp(prefix="ray-zero-bench-"))
    try:
        env, _ = register_model(root)
        cluster = start_cluster()
        try:
            ray_args = (
                "--backend", "ray", "--ray-address", cluster.address, "--env-manager", "local",
                "--ray-replica-cpus", "0.5", *ZERO_TIMERS, *cluster.proxy_flags,
            )  # fmt: skip
            with start_ours(root, env, *ray_args, name="ray") as ours:
                entity = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small"}
                config = {"served_entities": [{**entity, "scale_to_zero_enabled": True}]}
                body = {"name": "zero", "config": config, "route_optimized": args.proxy}
                created = ours.session.post(ours.url + "api/2.0/serving-endpoints", json=body, timeout=60)
                created.raise_for_status()
                ours.api.wait_ready("zero")
                info = ours.api.get("zero")["data_plane_info"]["query_info"]
                target = proxy_target(ours, info) if args.proxy else ours.target("zero")
                report["path"] = "ray proxy" if args.proxy else "server route"
                rounds = [one_round(ours, "zero", target, args.proxy) for _ in range(args.rounds)]
                report["rounds"] = rounds
                ours.api.delete("zero")
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report["load_average_after"] = os.getloadavg()
    first = statistics.median(r["first_answer_s"] for r in report["rounds"])
    serve = statistics.median(r["serve_replica_running_s"] for r in report["rounds"])
    report.update(first_answer_median_s=first, serve_replica_running_median_s=serve)
    verdict = "met" if first <= TARGET_S else "not met"
    print(
        f"Scale from zero on Ray ({report['path']}), median of {args.rounds}: first answer {first:.2f} s "
        f"(target <= "
        f"{TARGET_S:g} s: {verdict}); Serve's own replica running at {serve:.2f} s ({serve / first:.1f}x); "
        f"warm path in {sum(r['warm'] for r in report['rounds'])}/{args.rounds} rounds; "
        f"load average before {report['load_average_before']}, after {report['load_average_after']}"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str))
    return 0


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
