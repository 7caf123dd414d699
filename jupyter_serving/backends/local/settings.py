"""The local backend's own settings: how worker processes start, and this machine's GPUs and memory.

Configured as ``c.LocalBackendSettings.<name>``, by the variable ``JUPYTER_SERVING_<NAME>`` or by the
flag ``--<name-with-dashes>`` of ``jupyter-serving serve`` (see jupyter_serving/settings.py).
"""

from __future__ import annotations

import sys

from traitlets import CaselessStrEnum, Int, List

from jupyter_serving.settings import EnvConfigurable


class LocalBackendSettings(EnvConfigurable):
    """Settings only the local backend (worker subprocesses on this machine) reads."""

    legacy_section = "ServingSettings"  # where these settings lived before

    warm_pool_size = Int(
        1,
        config=True,
        help="Worker interpreters kept started with MLflow already imported, ready to load a model. "
        "They make deploys and cold starts skip the ~2 s import. Env: JUPYTER_SERVING_WARM_POOL_SIZE.",
    ).tag(env=True)

    worker_start = CaselessStrEnum(
        ["fork", "spawn"],
        default_value="fork" if sys.platform == "linux" else "spawn",
        config=True,
        help="How worker replicas start: 'fork' forks them from one warm fork server per Python "
        "environment that imported MLflow, pandas and scikit-learn once, so replicas share those pages "
        "(iris model: 56 MB PSS, 29 MB private per replica instead of 166-195 MB PSS; Linux only; "
        "pidfds need kernel >= 5.3); 'spawn' starts each as an interpreter of its own. "
        "Env: JUPYTER_SERVING_WORKER_START.",
    ).tag(env=True)

    memory_headroom_bytes = Int(
        512 * 1024 * 1024,
        config=True,
        help="Memory left free when scaling out: a replica is added only if free memory minus this "
        "still holds one. Env: JUPYTER_SERVING_MEMORY_HEADROOM_BYTES.",
    ).tag(env=True)

    gpus = List(
        Int(),
        default_value=None,
        allow_none=True,
        config=True,
        help="GPU device indices this server may place replicas on, e.g. 0,1; empty means none. "
        "Unset: discovered with NVML. Env: JUPYTER_SERVING_GPUS.",
    ).tag(env=True)
