"""The Ray backend's own settings: which cluster, and what each replica reserves on it.

Configured as ``c.RayBackendSettings.<name>``, by the variable ``JUPYTER_SERVING_<NAME>`` or by the
flag ``--<name-with-dashes>`` of ``jupyter-serving serve`` (see jupyter_serving/settings.py).
Importing this module imports no Ray.
"""

from __future__ import annotations

from traitlets import Bool, Float, Int, Unicode

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

    ray_ingress = Bool(
        True,
        config=True,
        help="With backend 'ray': give every endpoint a Ray Serve ingress behind Serve's HTTP proxy on "
        "every node, so queries reach the models without this server in their path (see docs/RAY.md). "
        "Env: JUPYTER_SERVING_RAY_INGRESS.",
    ).tag(env=True)

    ray_http_host = Unicode(
        "",
        config=True,
        help="With backend 'ray': the address Serve's HTTP proxies listen on; empty: 127.0.0.1 for a "
        "private ('local') cluster, 0.0.0.0 for a running one. Env: JUPYTER_SERVING_RAY_HTTP_HOST.",
    ).tag(env=True)

    ray_http_port = Int(
        8000,
        config=True,
        help="With backend 'ray': the port of Serve's HTTP proxies (Serve's default 8000; fixed by "
        "whoever starts Serve on the cluster first). Env: JUPYTER_SERVING_RAY_HTTP_PORT.",
    ).tag(env=True)

    ray_ingress_url = Unicode(
        "",
        config=True,
        help="With backend 'ray': the base URL clients reach the proxies at (a load balancer in front "
        "of the nodes), shown as endpoint_url; empty: the head node's proxy. "
        "Env: JUPYTER_SERVING_RAY_INGRESS_URL.",
    ).tag(env=True)

    ray_spool_dir = Unicode(
        "",
        config=True,
        help="With backend 'ray': where each node's ingress spools inference-table rows before they are "
        "committed (a node-local disk path every node can create); empty: <state dir>/ray-spool. "
        "Env: JUPYTER_SERVING_RAY_SPOOL_DIR.",
    ).tag(env=True)
