"""Inference tables: durable payload capture into Delta, and reading and analysing them in pandas.

The server side (`InferenceCapture`, `PayloadRow`) uses only the standard library at import time,
because the server imports this package on start-up. The notebook side (reader, A/B analysis,
drift, plots) imports pandas, scipy and matplotlib, so it is loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from jupyter_serving.capture.row import PayloadRow, RowEncoder, payload_table_path, request_metadata
from jupyter_serving.capture.spool import SpoolWriteError
from jupyter_serving.capture.writer import InferenceCapture

_LAZY = {
    "inference_table": "jupyter_serving.capture.reader",
    "unpack": "jupyter_serving.capture.reader",
    "compare_entities": "jupyter_serving.capture.analysis",
    "ABReport": "jupyter_serving.capture.analysis",
    "drift": "jupyter_serving.capture.analysis",
    "split_by_time": "jupyter_serving.capture.analysis",
    "split_by_entity": "jupyter_serving.capture.analysis",
    "plot_latency": "jupyter_serving.capture.plots",
    "plot_predictions": "jupyter_serving.capture.plots",
    "plot_metric_over_time": "jupyter_serving.capture.plots",
}

__all__ = [
    "ABReport",
    "InferenceCapture",
    "PayloadRow",
    "RowEncoder",
    "SpoolWriteError",
    "compare_entities",
    "drift",
    "inference_table",
    "payload_table_path",
    "plot_latency",
    "plot_metric_over_time",
    "plot_predictions",
    "request_metadata",
    "split_by_entity",
    "split_by_time",
    "unpack",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
