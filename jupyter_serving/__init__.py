"""jupyter-serving: Databricks-style Model Serving for MLflow models, run locally and driven from Jupyter.

Importing this package is cheap: the server, the client and the notebook helpers load on first use,
so `%load_ext jupyter_serving` and Jupyter Server's extension discovery stay fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from jupyter_serving._version import __version__

__all__ = [
    "Client",
    "FeatureEngineeringClient",
    "FeatureLookup",
    "ServingApp",
    "__version__",
    "compare_entities",
    "drift",
    "inference_table",
    "validate",
]

_LAZY = {
    "Client": "jupyter_serving.notebook.client",
    "ServingApp": "jupyter_serving.app",
    "inference_table": "jupyter_serving.notebook.tables",
    "compare_entities": "jupyter_serving.tables.analysis",
    "drift": "jupyter_serving.tables.analysis",
    "FeatureEngineeringClient": "jupyter_serving.features",
    "FeatureLookup": "jupyter_serving.features",
    "validate": "jupyter_serving.notebook.validate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jupyter_serving' has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from jupyter_serving.app import ServingApp

    return [{"module": "jupyter_serving", "app": ServingApp}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": "labextension", "dest": "jupyter-serving"}]


def load_ipython_extension(ipython: Any) -> None:
    from jupyter_serving.notebook.magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from jupyter_serving.notebook.magics import unload_ipython_extension as unload

    unload(ipython)
