"""Reading and analysing the tables serving writes (payload tables): pandas, A/B analysis, drift, plots.

These import pandas, scipy and matplotlib, so each loads on first use and never on the server's paths.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "inference_table": "jupyter_serving.tables.reader",
    "unpack": "jupyter_serving.tables.reader",
    "compare_entities": "jupyter_serving.tables.analysis",
    "compare_shadow": "jupyter_serving.tables.analysis",
    "ABReport": "jupyter_serving.tables.analysis",
    "drift": "jupyter_serving.tables.analysis",
    "split_by_time": "jupyter_serving.tables.analysis",
    "split_by_entity": "jupyter_serving.tables.analysis",
    "plot_latency": "jupyter_serving.tables.plots",
    "plot_predictions": "jupyter_serving.tables.plots",
    "plot_metric_over_time": "jupyter_serving.tables.plots",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
