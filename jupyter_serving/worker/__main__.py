"""The worker process: one replica of one served entity.

Lifecycle, driven by the server over the process's stdin/stdout (lines of JSON):

    start ─▶ import mlflow.pyfunc ─▶ "warm" ─▶ (assignment line) ─▶ load model ─▶ "ready" | "failed"

A worker waits "warm" until it is assigned a model, so the server can keep spare interpreters
with the expensive imports done (~2 s here) and turn one into a replica in the time it takes to
load the model. stdin doubles as a lifeline: the server holds its write end, so end-of-file means
the server is gone (even after kill -9) and the worker exits at once instead of lingering.

Requests arrive as frames (`protocol.py`) on a Unix socket; whatever arrived while a predict call
ran is scored together by the next one. That is micro-batching that adapts to load, with no added
wait at low load. Slow models score on a scoring thread so the loop keeps reading frames and
answering pings meanwhile; fast ones (batches under 2 ms) score on the loop itself, where two thread
handoffs per request would cost more than the model.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from typing import Any, TextIO

from jupyter_serving.worker.batcher import Batcher

PRELOAD = ("sklearn.base", "mlflow.sklearn")
# What the fork server imports besides PRELOAD: the estimator families most scikit-learn models unpickle
# (a LogisticRegression pulls in sklearn.linear_model, .metrics, .model_selection, .preprocessing and
# .svm, ~160 modules). Imported once in the fork server they cost it ~10-15 MB and ~0.3 s, shared by
# all its replicas; imported by each replica after the fork they cost that replica ~16 MB of private
# memory (the import writes into the inherited heap pages, copying them) and ~0.1 s of its start. A
# spawned worker does not import them before it knows its model: nothing is shared there, and a model
# that does not need them would pay.
FORK_PRELOAD = (
    "sklearn.linear_model",
    "sklearn.tree",
    "sklearn.ensemble",
    "sklearn.pipeline",
    "sklearn.compose",
)


def main() -> int:
    # An agent's trace is exported when its root span ends, not up to 5 s later in a batch, so the
    # request that made it can carry it (worker/traces.py); the store write stays asynchronous.
    os.environ.setdefault("MLFLOW_USE_BATCH_SPAN_PROCESSOR", "false")
    status = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything the model prints goes to the log, never into the status channel
    assignments: queue.Queue[str] = queue.Queue(maxsize=1)
    # The lifeline reads stdin from the first instant, so a server killed while this worker is still
    # importing (seconds, more on a busy machine) takes the worker with it at once.
    threading.Thread(target=_lifeline, args=(assignments,), daemon=True, name="lifeline").start()
    prepare()  # a no-op in a child of the fork server, which did it once for all its children
    _send(status, event="warm", pid=os.getpid())
    assignment = json.loads(assignments.get())
    _redirect_output(assignment["log_path"])
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {assignment['label']} %(levelname)s %(message)s"
    )
    from jupyter_serving.worker.request_log import RequestIdFilter

    for handler in logging.getLogger().handlers:  # lines written while scoring name the request
        handler.addFilter(RequestIdFilter())
    os.environ.update(_feature_env(assignment))
    os.environ.update(assignment.get("env") or {})
    try:
        scorer = _load(assignment)
    except Exception as exc:
        traceback.print_exc()
        _send(status, event="failed", message=_load_error_message(exc))
        return 1
    asyncio.run(_serve(scorer, assignment, status))
    return 0


def prepare(extra: tuple[str, ...] = ()) -> None:
    """The imports every replica needs, done before a worker reports warm (and, in the fork server,
    before it forks: its children share these modules' pages); `extra`: modules to import too, where
    present (the fork server's FORK_PRELOAD)."""
    import mlflow.pyfunc  # noqa: F401  (the slow import)

    from jupyter_serving.worker import scoring  # noqa: F401

    _preload(PRELOAD + extra)


def _preload(modules: tuple[str, ...] = PRELOAD) -> None:
    """Do while warm what every cold start would otherwise pay for: import what unpickling the
    commonest models needs (scikit-learn's core, ~2 s), and build the installed-package map that
    MLflow's dependency-mismatch check scans the whole environment for (seconds; cached per process)."""
    for module in modules:
        if importlib.util.find_spec(module.partition(".")[0]) is None:
            continue
        try:
            importlib.import_module(module)
        except Exception as exc:  # an optimisation only: a model that needs it fails at load, clearly
            print(f"preloading {module} failed: {exc!r}", file=sys.stderr)
    from mlflow.utils import requirements_utils

    init_map = getattr(requirements_utils, "_init_modules_to_packages_map", None)
    if init_map is not None:  # private to MLflow: without it the check simply runs at load time
        init_map()


def _load(assignment: dict[str, Any]) -> Any:
    return load_scorer(assignment["model_uri"], fast_path=assignment.get("fast_path", True))


def load_scorer(model_uri: str, *, fast_path: bool = True, log: Any = logging) -> Any:
    """Load the model, warm it up and wrap it in a Scorer; also what a Ray Serve replica runs."""
    import mlflow.pyfunc

    from jupyter_serving.worker.scoring import Scorer

    started = time.perf_counter()
    log.info("loading model %s", model_uri)
    model = mlflow.pyfunc.load_model(model_uri)
    log.info("model loaded in %.2f s", time.perf_counter() - started)
    _warm_up(model, log)
    return Scorer(model, fast_path=fast_path)


def _warm_up(model: Any, log: Any = logging) -> None:
    """Score the model's saved input example once before reporting ready, so the first real request
    does not pay for lazy initialisation (CUDA context and kernels, JIT, caches)."""
    example = getattr(model, "input_example", None)
    if example is None:
        return
    started = time.perf_counter()
    try:
        model.predict(example)
    except Exception as exc:  # the example is the model author's, not the user's request: warn only
        log.warning("warm-up on the model's input example failed: %r", exc)
        return
    log.info("warm-up on the input example took %.3f s", time.perf_counter() - started)


def _load_error_message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"Failed to load the model: {type(exc).__name__}: {first}"[:2000]


async def _serve(scorer: Any, assignment: dict[str, Any], status: TextIO) -> None:
    # Per served entity, through its environment_vars: JUPYTER_SERVING_MAX_BATCH_SIZE overrides the
    # server-wide setting; JUPYTER_SERVING_BATCH_WAIT_MS > 0 waits that long for a batch to fill.
    max_batch = int(os.environ.get("JUPYTER_SERVING_MAX_BATCH_SIZE", assignment.get("max_batch_size", 64)))
    wait_ms = float(os.environ.get("JUPYTER_SERVING_BATCH_WAIT_MS", "0"))
    from jupyter_serving.worker.streaming import Streams

    # Streams per replica: the entity's concurrency, so the router's view of a busy replica holds.
    max_streams = int(os.environ.get("JUPYTER_SERVING_MAX_STREAMS", assignment.get("max_streams", 16)))
    batcher = Batcher(scorer, max_batch, wait_ms / 1000, Streams(scorer.model, max_streams))
    server = await asyncio.start_unix_server(batcher.handle_connection, path=assignment["socket_path"])
    _send(status, event="ready", pid=os.getpid())
    async with server:
        await batcher.run()


def _feature_env(assignment: dict[str, Any]) -> dict[str, str]:
    """For models that look features up (`jupyter_serving.features`): where the tables live, how often
    to re-read them (the entity's environment_vars may override), and the file the worker keeps the
    served table versions in, which the server reads for the entity's `local` block."""
    env = {"JUPYTER_SERVING_FEATURE_STATUS_PATH": f"{assignment['socket_path']}.features.json"}
    if assignment.get("catalog_root"):
        env["JUPYTER_SERVING_CATALOG_ROOT"] = str(assignment["catalog_root"])
    if assignment.get("feature_refresh_s") is not None:
        env["JUPYTER_SERVING_FEATURE_REFRESH_S"] = str(assignment["feature_refresh_s"])
    return env


def _send(status: TextIO, **event: Any) -> None:
    status.write(json.dumps(event) + "\n")


def _redirect_output(log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _lifeline(assignments: queue.Queue[str]) -> None:
    """Hand the one assignment line to the main thread, then wait for end-of-file: the server closed
    its end or died, and a worker without its server has nothing left to do."""
    line = sys.stdin.readline()
    if line:
        assignments.put(line)
        sys.stdin.read()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
