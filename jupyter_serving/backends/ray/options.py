"""What one served entity becomes on Ray Serve: pure translation, no Ray import (unit-tested without it).

| this server                                   | Ray Serve                                             |
|-----------------------------------------------|-------------------------------------------------------|
| endpoint + served entity (runtime key)        | one application (`app_name`), one deployment in it    |
| replica range (provisioned concurrency / 4)   | `autoscaling_config` min / max / initial replicas     |
| `scale_to_zero_enabled`                       | `min_replicas` 0, `downscale_to_zero_delay_s`         |
| `scale_down_delay_s`                          | `downscale_delay_s`                                   |
| `replica_concurrency`                         | `target_ongoing_requests`                             |
| GPU workload types (policy/placement.py)      | `ray_actor_options.num_gpus`                          |
| `ray_replica_cpus`                            | `ray_actor_options.num_cpus`                          |
| the model's environment (env_manager)         | `runtime_env` (`uv` packages, or none: the node's)    |
| `environment_vars`, feature-table settings    | `runtime_env.env_vars`                                |
| `cold_start_queue_size`                       | `max_queued_requests` (503 beyond it)                 |
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from jupyter_serving.policy.autoscaler import ScalingPolicy
from jupyter_serving.policy.placement import gpus_per_replica

DEPLOYMENT_NAME = "ServedModel"
APP_PREFIX = "jsrv"
UPSCALE_DELAY_S = 0.0  # scale up at once, like the local backend's request-path scale-up
DEFAULT_LOOK_BACK_S, MIN_LOOK_BACK_S, DEFAULT_PUSH_S = 30.0, 2.0, 10.0  # Serve's defaults, our floor
CONSTRUCTOR_RETRIES = 2  # a model that cannot load fails its deploy after this many tries, not Serve's 20


@dataclass(frozen=True)
class ReplicaSizing:
    """Server-wide knobs that size every replica, whatever its entity."""

    num_cpus: float = 1.0
    max_batch_size: int = 64
    queue_limit: int = 256


def server_prefix(state_path: str) -> str:
    """Names of the apps of one server (one state dir): a restarted server finds what a killed one
    left on the cluster by this prefix, and two servers sharing a cluster never touch each other's."""
    return f"{APP_PREFIX}-{hashlib.sha1(state_path.encode()).hexdigest()[:8]}-"


def app_name(prefix: str, endpoint: str, served: str, key: str, nonce: str) -> str:
    """Unique per deployment object. An unchanged entity keeps its deployment object (and so its app
    and replicas) across updates; the nonce keeps a second deployment of the same key (an update
    while the first is recovering, a restore) from updating the first app in place."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{endpoint}-{served}")[:60]
    return f"{prefix}{readable}-{key[:8]}{nonce}"


def look_back_s(policy: ScalingPolicy) -> float:
    """Serve averages demand over this window: its default 30 s, shorter only when the server's own
    scale-down delay is (tests, demos), so a 1 s delay is not held up by a 30 s average."""
    return min(DEFAULT_LOOK_BACK_S, max(MIN_LOOK_BACK_S, policy.scale_down_delay_s))


def metrics_push_s(look_back: float) -> float:
    """How often handles and replicas report demand to Serve's controller: Serve's 10 s, or a
    quarter of a shorter look-back window so the window holds several reports."""
    return DEFAULT_PUSH_S if look_back >= DEFAULT_LOOK_BACK_S else min(DEFAULT_PUSH_S, look_back / 4)


def autoscaling_config(policy: ScalingPolicy) -> dict[str, Any]:
    # Like the local backend: never below one replica unless the entity scales to zero.
    low = 0 if policy.scale_to_zero else max(1, policy.min_replicas)
    config: dict[str, Any] = {
        "min_replicas": low,
        "initial_replicas": policy.initial_replicas,  # a deploy proves the model loads, even at 0
        "max_replicas": max(policy.max_replicas, policy.initial_replicas),
        "target_ongoing_requests": policy.concurrency,
        "upscale_delay_s": UPSCALE_DELAY_S,
        "downscale_delay_s": policy.scale_down_delay_s,
        "look_back_period_s": look_back_s(policy),
    }
    if policy.scale_to_zero:
        config["downscale_to_zero_delay_s"] = policy.idle_s
    return config


def deployment_options(
    policy: ScalingPolicy,
    workload_type: str,
    sizing: ReplicaSizing,
    runtime_env: dict[str, Any],
) -> dict[str, Any]:
    """Keyword arguments of `serve.deployment(...).options()` for one served entity. A new sizing of
    the same code and arguments is a light update: Serve changes replica counts without restarts."""
    actor: dict[str, Any] = {"num_cpus": sizing.num_cpus, "runtime_env": runtime_env}
    if gpus := gpus_per_replica(workload_type):
        actor["num_gpus"] = gpus
    return {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor,
        "autoscaling_config": autoscaling_config(policy),
        # Room for a whole batch per replica; autoscaling aims at `concurrency` ongoing requests.
        "max_ongoing_requests": max(policy.concurrency, sizing.max_batch_size),
        "max_queued_requests": sizing.queue_limit,
        "max_constructor_retry_count": CONSTRUCTOR_RETRIES,
        # A replica's log is what its model writes (as Databricks shows it), not a line per request:
        # the inference table and the server's metrics count requests.
        "logging_config": {"enable_access_log": False},
    }


def runtime_env(env_vars: dict[str, str], packages: tuple[str, ...] | None) -> dict[str, Any]:
    """The replica's runtime_env: its variables, and the model's packages when it needs its own
    environment (uv, like the local backend's builds); None packages: the node's own environment."""
    env: dict[str, Any] = {"env_vars": dict(env_vars)}
    if packages is not None:
        env["uv"] = {"packages": list(packages)}
    return env


def replica_counts(replica_states: dict[str, int]) -> tuple[int, int]:
    """(running, starting) from Serve's per-state replica counts."""
    running = replica_states.get("RUNNING", 0)
    starting = sum(
        n for state, n in replica_states.items() if state in ("STARTING", "UPDATING", "RECOVERING")
    )
    return running, starting
