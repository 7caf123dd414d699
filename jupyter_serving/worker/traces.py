"""MLflow traces an agent produced while a request was scored, kept for its answer and its row.

MLflow exports a finished trace to the tracking server (MLFLOW_TRACKING_URI, experiment
MLFLOW_EXPERIMENT_ID / _NAME, or its default) and hands it, on the way, to
`maybe_add_trace_to_serving_buffer`: the hook Databricks Model Serving reads traces from. A
worker wraps that hook to keep each finished trace here, by trace id, for a moment: the request
that produced it takes it (`take`) right after the model returns, puts it into the inference-table
row and, with `databricks_options: {"return_trace": true}`, into the answer, as Databricks does.
Without the hook (another MLflow version) requests are served as before, without traces.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Any

log = logging.getLogger("jupyter_serving.worker")

KEEP = 256  # finished traces nobody took (a model traced outside a request) are dropped oldest first
_kept: OrderedDict[str, dict[str, Any]] = OrderedDict()
_lock = threading.Lock()
_installed = False


def install() -> None:
    """Wrap MLflow's serving hook once per process."""
    global _installed
    if _installed:
        return
    try:
        from mlflow.tracing.export import mlflow_v3
    except ImportError:
        return
    original = getattr(mlflow_v3, "maybe_add_trace_to_serving_buffer", None)
    if original is None:
        log.info("this MLflow has no serving trace hook: traces are not kept with answers")
        return

    def keep(trace: Any) -> None:
        original(trace)
        try:
            data = trace.to_dict()
        except Exception:  # a trace MLflow cannot serialise: the request is answered without it
            return
        with _lock:
            _kept[trace.info.trace_id] = data
            while len(_kept) > KEEP:
                _kept.popitem(last=False)

    mlflow_v3.maybe_add_trace_to_serving_buffer = keep
    _installed = True


def last_id() -> str | None:
    """The last trace finished on this thread (MLflow tracks it per thread)."""
    import mlflow

    try:
        return mlflow.get_last_active_trace_id(thread_local=True)
    except Exception:
        return None


def take(before: str | None) -> str | None:
    """The trace this thread finished since `before` was read, as JSON text, or None."""
    trace_id = last_id()
    if trace_id is None or trace_id == before:
        return None
    with _lock:
        data = _kept.pop(trace_id, None)
    return None if data is None else json.dumps(data, default=str)


def wants_trace(payload: dict[str, Any]) -> bool:
    options = payload.get("databricks_options")
    return isinstance(options, dict) and options.get("return_trace") is True
