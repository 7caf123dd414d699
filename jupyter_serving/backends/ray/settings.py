"""The Ray backend's own settings: which cluster, and what each replica reserves on it.

Configured as ``c.RayBackendSettings.<name>``, by the variable ``JUPYTER_SERVING_<NAME>`` or by the
flag ``--<name-with-dashes>`` of ``jupyter-serving serve`` (see jupyter_serving/settings.py).
Importing this module imports no Ray.
"""

from __future__ import annotations

from traitlets import Float, Unicode

from jupyter_serving.settings import EnvConfigurable


class RayBackendSettings(EnvConfigurable):
    """Settings only the Ray backend (Ray Serve applications on a Ray cluster) reads."""

    legacy_section = "ServingSettings"  # where these settings lived before

    ray_address = Unicode(
        "local",
        config=True,
        help="With backend 'ray': the running Ray cluster to deploy on ('auto', or the head's "
        "'host:port'), or 'local' to start a private cluster on this machine for this server alone, "
        "stopped with it. Env: JUPYTER_SERVING_RAY_ADDRESS.",
    ).tag(env=True)

    ray_replica_cpus = Float(
        1.0,
        config=True,
        help="With backend 'ray': CPUs Ray reserves for each replica (fractions pack several on one "
        "CPU). GPUs come from the entity's workload_type. Env: JUPYTER_SERVING_RAY_REPLICA_CPUS.",
    ).tag(env=True)
