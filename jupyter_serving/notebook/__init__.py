"""The notebook side: the REST client, `%serve` magics, widgets and the MLflow deployments target.

Names load on first use, so `%load_ext jupyter_serving` does not pay for ipywidgets or MLflow.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Client",
    "EndpointForm",
    "EndpointMonitor",
    "EndpointUpdateFailed",
    "ServeMagics",
    "ServingAPIError",
    "ServingClientError",
    "discover",
]

_LAZY = {
    "Client": "jupyter_serving.notebook.client",
    "EndpointUpdateFailed": "jupyter_serving.notebook.client",
    "ServingAPIError": "jupyter_serving.notebook.client",
    "ServingClientError": "jupyter_serving.notebook.client",
    "discover": "jupyter_serving.notebook.discovery",
    "ServeMagics": "jupyter_serving.notebook.magics",
    "EndpointForm": "jupyter_serving.notebook.widgets",
    "EndpointMonitor": "jupyter_serving.notebook.widgets",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jupyter_serving.notebook' has no attribute {name!r}")
