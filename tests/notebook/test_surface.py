"""What users import: the public names, and a `%load_ext` that stays light."""

from __future__ import annotations

import subprocess
import sys

import jupyter_serving.notebook as notebook


def test_public_names_resolve() -> None:
    for name in notebook.__all__:
        assert getattr(notebook, name) is not None


def test_magics_import_without_heavy_libraries() -> None:
    # `%load_ext jupyter_serving` must not pay for MLflow, pandas or ipywidgets (seconds, not ms).
    code = (
        "import sys, IPython, jupyter_serving.notebook.magics\n"
        "print(sorted(m for m in ('mlflow', 'pandas', 'ipywidgets', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


def test_top_level_public_surface_is_pinned() -> None:
    import jupyter_serving
    import jupyter_serving.widgets

    assert sorted(jupyter_serving.__all__) == [
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
    for name in jupyter_serving.__all__:
        assert getattr(jupyter_serving, name) is not None
    assert jupyter_serving.widgets.EndpointForm.__name__ == "EndpointForm"
