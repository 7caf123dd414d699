"""A transformers text classifier under load: jupyter-serving with and without micro-batching, and
`mlflow models serve` (uvicorn, -w 2), same model, same requests, one server at a time.

Run: ``.venv/bin/python -m benchmarks.flavors_bench [--quick] [--out results.json]``. Builds the tiny
BERT-like classifier of tests/flavor_models.py (2 layers, random seeded weights, a WordPiece
tokenizer trained on eight sentences; no model hub), registers it in a fresh sqlite registry and
drives each server with `loadgen.py` at 16 concurrent clients sending one-string ``inputs``
requests, checking every answer byte for byte against that server's own first answer. "Without
batching" is the same server with ``JUPYTER_SERVING_MAX_BATCH_SIZE=1`` in the entity's
``environment_vars``.

With ``--gpu`` (for a device session, see gpu_run.sh): a DistilBERT-sized classifier (6 layers x 768,
random weights) logged with ``model_config={"batch_size": 64}`` so a micro-batch is one padded forward
pass, served on GPU_SMALL batched (max batch 64, 2 ms wait) and unbatched at 1, 16 and 64 clients;
answers are checked for status only (padded batches differ from single passes in the last bits), the
served scores are compared with the CPU pipeline's, and the replica's GPU memory is read from metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from benchmarks import run
from jupyter_serving.launch import TOKEN_ENV, log_tail, serve_command

MODEL = "hf-classifier"
TEXTS = [
    "the film was wonderful and moving",
    "a dull and tedious movie",
    "great acting and a great story",
    "i hated the ending",
]


GPU_BATCHING = {"JUPYTER_SERVING_MAX_BATCH_SIZE": "64", "JUPYTER_SERVING_BATCH_WAIT_MS": "2"}


def register(root: Path, gpu: bool) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Register the classifier; the env for servers, and its CPU pipeline's answers to TEXTS."""
    from tests import flavor_models

    env, experiment = run.setup_registry(root)
    pipe = flavor_models.classifier_pipeline(**({"hidden": 768, "layers": 6} if gpu else {}))
    config = {"batch_size": 64} if gpu else None
    flavor_models.register_transformers(
        pipe, MODEL, flavor_models.SENTENCES[:2], model_config=config, experiment_id=experiment
    )
    # One torch thread per process for every server on the CPU: on a 2-core machine shared with other
    # work, torch's default (one OpenMP thread per core, spinning at each barrier) made a 2 x 32 BERT
    # 10x slower per call. On a GPU the host threads hardly matter; keep torch's default there.
    threads = {} if gpu else {"OMP_NUM_THREADS": "1"}
    return {**env, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **threads}, pipe(TEXTS)


def bodies() -> list[bytes]:
    return [json.dumps({"inputs": text}).encode() for text in TEXTS]


def bench_mlflow(root: Path, env: dict[str, str], plan: run.Plan) -> dict[str, Any]:
    port = run.free_port()
    serve = ["models", "serve", "-m", f"models:/{MODEL}/1", "--env-manager", "local", "-w", "2"]
    serve += ["-h", run.HOST, "-p", str(port)]
    cmd = [sys.executable, "-m", "mlflow", *serve]
    log_path = root / "mlflow-serve.log"
    proc = run.spawn(cmd, env, log_path)
    target = run.Target(run.HOST, port, "/invocations", {"Content-Type": "application/json"}, proc, log_path)
    try:
        return measure(target, plan)
    finally:
        run.stop(proc)


def bench_ours(
    root: Path, env: dict[str, str], plan: run.Plan, batching: bool, gpu: bool = False
) -> dict[str, Any]:
    tag = "batched" if batching else "unbatched"
    info, log_path = root / f"{tag}-info.json", root / f"{tag}-server.log"
    cmd = serve_command(info, "--host", run.HOST, "--state-dir", str(root / tag))
    proc = run.spawn(cmd, {**env, TOKEN_ENV: run.TOKEN}, log_path)
    try:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {run.TOKEN}"
            url = run.wait_for_url(proc, info, log_path)
            entity: dict[str, Any] = {"entity_name": MODEL, "entity_version": "1", "workload_size": "Small"}
            if not batching:
                entity["environment_vars"] = {"JUPYTER_SERVING_MAX_BATCH_SIZE": "1"}
            elif gpu:
                entity["environment_vars"] = GPU_BATCHING
            if gpu:
                entity["workload_type"] = "GPU_SMALL"
            run.OursApi(url, session).create_ready_s(run.ENDPOINT, {"served_entities": [entity]})
            parsed = urlsplit(url)
            headers = {"Content-Type": "application/json", "Authorization": f"Bearer {run.TOKEN}"}
            path = f"{parsed.path}serving-endpoints/{run.ENDPOINT}/invocations"
            target = run.Target(parsed.hostname or run.HOST, parsed.port or 80, path, headers, proc, log_path)
            result = measure(target, plan, check_body=not gpu)
            metrics = session.get(url + f"api/2.0/serving-endpoints/{run.ENDPOINT}/metrics", timeout=30).text
            result["mean_batch_size"] = mean_batch(metrics)
            used = [
                float(x.split()[-1]) for x in metrics.splitlines() if x.startswith("gpu_memory_used_bytes")
            ]
            result["gpu_memory_bytes"] = sum(used) if used else None
            return result
    finally:
        run.stop(proc)


def measure(target: run.Target, plan: run.Plan, check_body: bool = True) -> dict[str, Any]:
    with requests.Session() as session:
        session.headers.update(target.headers)
        run.wait_for_answer(target, bodies()[0], session)
        predictions = run.fetch_reference(target, bodies(), session)
    scenarios = {}
    for clients in plan.clients:
        result = load(target, clients, plan, check_body)
        print(
            f"    {clients} client(s): {result['throughput_rps']:.0f} req/s, "
            f"p50 {run.fmt(result['p50_ms'], 2)} ms, errors {result['errors']}",
            flush=True,
        )
        scenarios[str(clients)] = result
    return {"predictions": predictions, "scenarios": scenarios}


def load(target: run.Target, clients: int, plan: run.Plan, check_body: bool) -> dict[str, Any]:
    """One scenario through loadgen.py in its own interpreter (a TCP_QUICKACK client, as run.py's fair
    mode); with `check_body` off only the status must be 200."""
    spec = run.load_spec(
        target, bodies(), clients, plan.warmup_s, plan.duration_s, quickack=True, check_body=check_body
    )
    done = subprocess.run(
        [sys.executable, str(run.LOADGEN)],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=plan.warmup_s + plan.duration_s + 60,
        check=True,
    )
    run.check_alive(target.proc, target.log_path)
    return dict(json.loads(done.stdout))


def max_score_diff(served: list[Any], local: list[dict[str, Any]]) -> float:
    """Largest |served - local| score over TEXTS, where the labels agree (inf where one differs)."""
    diffs = []
    for answer, wanted in zip(served, local, strict=True):
        row = answer[0]
        same = row["label"] == wanted["label"]
        diffs.append(abs(row["score"] - wanted["score"]) if same else float("inf"))
    return max(diffs)


def mean_batch(metrics: str) -> float | None:
    values = {}
    for line in metrics.splitlines():
        for key in ("batch_size_sum", "batch_size_count"):
            if line.startswith(key):
                values[key] = float(line.split()[-1])
    count = values.get("batch_size_count", 0.0)
    return values.get("batch_size_sum", 0.0) / count if count else None


def gpu_name() -> str:
    from benchmarks.gpu import cuda_device

    return cuda_device() or "no CUDA GPU found (the GPU_SMALL replica ran on the CPU)"


def markdown(report: dict[str, Any]) -> str:
    size = "6 x 768 BERT" if report["device"] != "CPU" else "2 x 32 BERT"
    rows = [
        f"Device: {report['device']}",
        "",
        f"| {MODEL} ({size}, one string per request) | req/s | p50 ms | p99 ms | errors | mean batch |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in (
        ("`mlflow models serve -w 2`", "mlflow"),
        ("jupyter-serving, batching off (max batch 1)", "ours_unbatched"),
        ("jupyter-serving, micro-batching (default)", "ours_batched"),
    ):
        result = report.get(key)
        if result is None:
            continue
        for clients, s in result["scenarios"].items():
            batch = result.get("mean_batch_size")
            rows.append(
                f"| {label}, {clients} clients | {s['throughput_rps']:.0f} | {run.fmt(s['p50_ms'], 1)} "
                f"| {run.fmt(s['p99_ms'], 1)} | {s['errors']} | {run.fmt(batch, 1) if batch else '-'} |"
            )
    memory = (report.get("ours_batched") or {}).get("gpu_memory_bytes")
    if memory:
        rows += ["", f"GPU memory held by the batched replica: {memory / 2**20:.0f} MiB"]
    rows += ["", f"Largest served-vs-local score difference: {report['max_score_diff_vs_local_cpu']:.2g}"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.flavors_bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="short smoke run (0.5 s warm-up, 3 s scenarios)")
    parser.add_argument("--clients", help="concurrent clients per scenario (default 16; --gpu: 1,16,64)")
    parser.add_argument(
        "--gpu", action="store_true", help="GPU_SMALL, a DistilBERT-sized model, no mlflow side"
    )
    parser.add_argument("--no-mlflow", action="store_true", help="skip the `mlflow models serve` side")
    parser.add_argument("--out", type=Path, help="write the JSON results here")
    args = parser.parse_args(argv)
    plan = run.Plan(
        clients=tuple(
            sorted({int(c) for c in (args.clients or ("1,16,64" if args.gpu else "16")).split(",")})
        ),
        warmup_s=0.5 if args.quick else 2.0,
        duration_s=3.0 if args.quick else 10.0,
        quick=args.quick,
    )
    # Loading torch and transformers in two uvicorn workers can take minutes on a busy 2-core machine.
    run.START_TIMEOUT_S = max(run.START_TIMEOUT_S, 600.0)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jsflavors-") as tmp:
        root = Path(tmp)
        print(f"registering {MODEL} v1 in a fresh sqlite registry ...", flush=True)
        env, local = register(root, args.gpu)
        report: dict[str, Any] = {}
        benches = {
            "mlflow": lambda: bench_mlflow(root, env, plan),
            "ours_unbatched": lambda: bench_ours(root, env, plan, batching=False, gpu=args.gpu),
            "ours_batched": lambda: bench_ours(root, env, plan, batching=True, gpu=args.gpu),
        }
        if args.gpu or args.no_mlflow:
            del benches["mlflow"]
        try:
            for key, bench in benches.items():
                print(f"{key}:", flush=True)
                report[key] = bench()
        except Exception:
            for log_path in sorted(root.glob("*.log")):
                print(f"--- last lines of {log_path.name}:\n{log_tail(log_path, 40)}", file=sys.stderr)
            raise
    answers = [r["predictions"] for k, r in report.items() if k in benches]
    report["max_score_diff_vs_local_cpu"] = max(max_score_diff(a, local) for a in answers)
    same = (
        all(a == answers[0] for a in answers)
        if not args.gpu
        else report["max_score_diff_vs_local_cpu"] < 1e-3
    )
    report["machine"] = {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg()[0]}
    report["device"] = gpu_name() if args.gpu else "CPU"
    report["same_predictions"] = same
    report["wall_s"] = time.perf_counter() - started
    print("\n" + markdown(report))
    print(
        f"\nsame predictions from every server: {same}; "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    errors = sum(s["errors"] for k in benches for s in report[k]["scenarios"].values())
    return 0 if same and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
