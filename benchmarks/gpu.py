"""GPU benchmark (issue 8): a PyTorch MLP served on GPU_SMALL, with and without dynamic batching.

    python -m benchmarks.gpu [--quick] [--out FILE]

Measures throughput and p50/p99 at 1, 16 and 64 concurrent one-row clients for the same model served
twice: batched (JUPYTER_SERVING_MAX_BATCH_SIZE=64, JUPYTER_SERVING_BATCH_WAIT_MS=2 in the served
entity's environment_vars) and unbatched (JUPYTER_SERVING_MAX_BATCH_SIZE=1), plus the GPU memory the
replica holds (from the endpoint's metrics). Target: batching gives at least 5x the throughput at 64
clients. Run it on a CUDA machine (the device tool); on a machine without one it runs the same steps on
the CPU with a declared GPU inventory (JUPYTER_SERVING_GPUS=0) and says so, which checks the harness,
not the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from benchmarks.run import (
    HOST,
    LOADGEN,
    TOKEN,
    OursApi,
    Target,
    load_spec,
    spawn,
    stop,
    wait_for_url,
)
from jupyter_serving.launch import TOKEN_ENV, serve_command

FEATURES, HIDDEN, CLASSES = 256, 2048, 16
CLIENTS = (1, 16, 64)
TARGET_SPEEDUP = 5.0
MODES = {
    "batched": {"JUPYTER_SERVING_MAX_BATCH_SIZE": "64", "JUPYTER_SERVING_BATCH_WAIT_MS": "2"},
    "unbatched": {"JUPYTER_SERVING_MAX_BATCH_SIZE": "1"},
}


def cuda_device() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(0))
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:
        return None


def register_mlp(root: Path) -> dict[str, str]:
    import mlflow
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, HIDDEN),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN, CLASSES),
    )
    example = np.random.default_rng(0).normal(size=(2, FEATURES)).astype(np.float32)
    with torch.no_grad():
        out = net(torch.from_numpy(example)).numpy()
    with mlflow.start_run():
        mlflow.pytorch.log_model(
            net,
            name="model",
            signature=infer_signature(example, out),
            input_example=example,
            registered_model_name="gpu-mlp",
            pip_requirements=["torch"],
        )
    return {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}


def measure(target: Target, body: bytes, clients: int, warmup_s: float, duration_s: float) -> dict[str, Any]:
    import subprocess

    target.reference = [b""]
    spec = load_spec(target, [body], clients, warmup_s, duration_s, check_body=False)
    done = subprocess.run(
        [sys.executable, str(LOADGEN)],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=warmup_s + duration_s + 60,
        check=True,
    )
    return dict(json.loads(done.stdout))


def gpu_memory(api: OursApi, name: str) -> float | None:
    text = api.session.get(api.url + f"api/2.0/serving-endpoints/{name}/metrics", timeout=30).text
    used = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("gpu_memory_used_bytes")]
    return sum(used) if used else None


def run(root: Path, quick: bool) -> dict[str, Any]:
    device = cuda_device()
    env = {**register_mlp(root), **({} if device else {"JUPYTER_SERVING_GPUS": "0"})}
    info, log_path = root / "info.json", root / "server.log"
    cmd = serve_command(info, "--host", HOST, "--state-dir", str(root / "state"))
    proc = spawn(cmd, {**env, TOKEN_ENV: TOKEN}, log_path)
    warmup_s, duration_s = (0.5, 2.0) if quick else (2.0, 10.0)
    body = json.dumps({"inputs": [[0.1] * FEATURES]}).encode()
    results: dict[str, Any] = {"device": device or "CPU (no CUDA GPU here; declared inventory)", "modes": {}}
    try:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {TOKEN}"
            api = OursApi(wait_for_url(proc, info, log_path), session)
            for mode, env_vars in MODES.items():
                name = f"mlp-{mode}"
                entity = {
                    "entity_name": "gpu-mlp",
                    "entity_version": "1",
                    "workload_type": "GPU_SMALL",
                    "workload_size": "Small",
                    "environment_vars": env_vars,
                }
                api.create_ready_s(name, {"served_entities": [entity]})
                parsed = urlsplit(api.url)
                headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
                target = Target(
                    parsed.hostname or HOST,
                    parsed.port or 80,
                    f"{parsed.path}serving-endpoints/{name}/invocations",
                    headers,
                    proc,
                    log_path,
                )
                runs = {}
                for clients in CLIENTS:
                    result = measure(target, body, clients, warmup_s, duration_s)
                    runs[str(clients)] = result
                    print(
                        f"  {mode}, {clients} clients: {result['throughput_rps']:.0f} req/s, "
                        f"p50 {result['p50_ms']:.2f} ms, errors {result['errors']}",
                        flush=True,
                    )
                results["modes"][mode] = {"runs": runs, "gpu_memory_bytes": gpu_memory(api, name)}
                api.delete(name)  # frees the GPU for the next mode
    finally:
        stop(proc)
    batched = results["modes"]["batched"]["runs"]["64"]["throughput_rps"]
    single = results["modes"]["unbatched"]["runs"]["64"]["throughput_rps"]
    results["speedup_64"] = batched / single if single else None
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Device: {results['device']}",
        "",
        "| clients | unbatched req/s | batched req/s | batched p50 ms | speedup |",
        "|---:|---:|---:|---:|---:|",
    ]
    for clients in CLIENTS:
        b = results["modes"]["batched"]["runs"][str(clients)]
        u = results["modes"]["unbatched"]["runs"][str(clients)]
        speedup = b["throughput_rps"] / u["throughput_rps"] if u["throughput_rps"] else float("nan")
        cells = [str(clients), f"{u['throughput_rps']:.0f}", f"{b['throughput_rps']:.0f}"]
        cells.append(f"{b['p50_ms']:.2f}")
        lines.append("| " + " | ".join([*cells, f"{speedup:.1f}x"]) + " |")
    memory = results["modes"]["batched"]["gpu_memory_bytes"]
    lines.append("")
    lines.append(
        f"GPU memory held: {memory / 2**20:.0f} MiB" if memory else "GPU memory: not reported (no NVML)"
    )
    verdict = "PASS" if (results["speedup_64"] or 0) >= TARGET_SPEEDUP else "FAIL"
    lines.append(f"- {verdict} batching at 64 clients >= {TARGET_SPEEDUP:g}x ({results['speedup_64']:.1f}x)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs, to check the harness")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jupyter-serving-gpu-bench-") as tmp:
        results = run(Path(tmp), args.quick)
    print(markdown(results))
    print(f"({time.perf_counter() - started:.0f} s)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    errors = sum(r["errors"] for m in results["modes"].values() for r in m["runs"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
