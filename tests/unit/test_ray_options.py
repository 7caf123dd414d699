"""The Ray backend's translation of a served entity into Ray Serve options (pure; no Ray needed),
and its start-up failure when Ray is not installed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Config

from jupyter_serving.backends.base import DeployFailed, DeploymentSpec, load_backend
from jupyter_serving.backends.ray import options as opts
from jupyter_serving.backends.ray.backend import RayBackend
from jupyter_serving.model.config import ServedEntity
from jupyter_serving.policy.autoscaler import ScalingPolicy
from jupyter_serving.settings import ServingSettings


def policy(low: int, high: int, *, zero: bool = False, delay: float = 300.0) -> ScalingPolicy:
    return ScalingPolicy.from_range(
        low, high, concurrency=4, scale_to_zero=zero, scale_down_delay_s=delay, idle_s=1800.0
    )


@pytest.mark.parametrize(
    ("low", "high", "zero", "expected"),
    [
        (0, 4, False, (1, 1, 1)),  # Small: one replica, never fewer
        (0, 4, True, (0, 1, 1)),  # scale to zero: Serve's floor is 0, a deploy still starts one
        (8, 16, False, (2, 2, 4)),
        (0, 16, True, (0, 1, 4)),
    ],
)
def test_replica_range_maps_onto_min_initial_max(low: int, high: int, zero: bool, expected: tuple) -> None:
    config = opts.autoscaling_config(policy(low, high, zero=zero))
    assert (config["min_replicas"], config["initial_replicas"], config["max_replicas"]) == expected
    assert config["target_ongoing_requests"] == 4
    assert config["upscale_delay_s"] == 0.0
    assert config["downscale_delay_s"] == 300.0
    assert ("downscale_to_zero_delay_s" in config) is zero
    if zero:
        assert config["downscale_to_zero_delay_s"] == 1800.0


def test_look_back_follows_a_short_scale_down_delay_only() -> None:
    assert opts.look_back_s(policy(0, 4)) == 30.0  # Serve's default for the server's 300 s delay
    assert opts.look_back_s(policy(0, 4, delay=1.0)) == 2.0  # floor
    assert opts.look_back_s(policy(0, 4, delay=5.0)) == 5.0
    assert opts.metrics_push_s(30.0) == 10.0 and opts.metrics_push_s(2.0) == 0.5


@pytest.mark.parametrize(("workload", "gpus"), [("CPU", None), ("GPU_SMALL", 1), ("GPU_LARGE_4", 4)])
def test_gpu_workload_types_become_num_gpus(workload: str, gpus: int | None) -> None:
    sizing = opts.ReplicaSizing(num_cpus=0.5, max_batch_size=64, queue_limit=256)
    env = opts.runtime_env({"A": "1"}, None)
    options = opts.deployment_options(policy(0, 4), workload, sizing, env)
    actor = options["ray_actor_options"]
    assert actor.get("num_gpus") == gpus
    assert actor["num_cpus"] == 0.5 and actor["runtime_env"] == {"env_vars": {"A": "1"}}
    assert options["max_ongoing_requests"] == 64  # room for a whole batch
    assert options["max_queued_requests"] == 256
    assert options["name"] == opts.DEPLOYMENT_NAME


def test_runtime_env_carries_the_models_packages_for_uv() -> None:
    env = opts.runtime_env({}, ("mlflow==3.1.0", "scikit-learn==1.5.0"))
    assert env == {"env_vars": {}, "uv": {"packages": ["mlflow==3.1.0", "scikit-learn==1.5.0"]}}


def test_app_names_are_per_server_readable_and_unique() -> None:
    prefix = opts.server_prefix("/srv/a")
    assert prefix != opts.server_prefix("/srv/b") and prefix.startswith("jsrv-")
    name = opts.app_name(prefix, "my endpoint", "iris-lr-1", "0123456789abcdef", "a1b2c3")
    assert name == f"{prefix}my_endpoint-iris-lr-1-01234567a1b2c3"
    assert name != opts.app_name(prefix, "my endpoint", "iris-lr-1", "0123456789abcdef", "d4e5f6")


def test_replica_counts_from_serve_states() -> None:
    assert opts.replica_counts({"RUNNING": 2, "STARTING": 1, "STOPPING": 1}) == (2, 1)
    assert opts.replica_counts({}) == (0, 0)


def test_ray_is_registered_and_stays_unimported_until_start(tmp_path: Path) -> None:
    """Loading either backend (and the app) imports no Ray: it costs seconds, only `start()` pays."""
    code = (
        "import sys; from jupyter_serving.backends.base import load_backend; "
        "from jupyter_serving.settings import ServingSettings; import jupyter_serving.app; "
        f"s = ServingSettings(state_dir={str(tmp_path)!r}); "
        "print(type(load_backend('ray', s)).__name__, type(load_backend('local', s)).__name__, "
        "any(m == 'ray' or m.startswith('ray.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["RayBackend", "LocalBackend", "False"], out.stderr


def test_without_ray_the_backend_fails_at_start_saying_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    config = Config({"RayBackendSettings": {"ray_address": "local"}})
    backend = load_backend("ray", ServingSettings(state_dir=str(tmp_path), config=config))
    with pytest.raises(RuntimeError, match=r"pip install 'jupyter-serving\[ray\]'"):
        asyncio.run(backend.start())


def test_the_runtime_env_carries_the_secrets_the_server_resolved_into_the_spec(tmp_path: Path) -> None:
    """The Ray backend reads no secret store: the spec's resolved values become env_vars, and a
    secret missing when the spec was made fails the deploy with the local backend's message."""
    backend = RayBackend(ServingSettings(state_dir=str(tmp_path), env_manager="local"))
    entity = ServedEntity("m-1", "m", "1", environment_vars={"TOKEN": "{{secrets/s/k}}"})
    policy = ScalingPolicy(4, 1, 1, False, 300.0, 1800.0)
    spec = DeploymentSpec("ep", entity, policy, environment_vars={"TOKEN": "s3cr3t"})
    env = asyncio.run(backend.runtime_env(spec, lambda reason: None))
    assert env["env_vars"]["TOKEN"] == "s3cr3t"
    assert "s3cr3t" not in backend.build_logs[("ep", "m-1")]  # names only in the build log
    missing = DeploymentSpec(
        "ep", entity, policy, environment_error="secret s/k (environment variable TOKEN) does not exist"
    )
    with pytest.raises(DeployFailed, match=r"^Cannot set the environment: secret s/k .* does not exist\.$"):
        asyncio.run(backend.runtime_env(missing, lambda reason: None))


def test_a_private_cluster_keeps_its_auth_token_in_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray writes ~/.ray/auth_token for a new local cluster, and then every later `ray start` of the
    user demands it; a private cluster's token lives in its temp dir instead."""
    from jupyter_serving.backends.ray.backend import private_auth

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    private = tmp_path / "jsray"
    private.mkdir()
    private_auth(str(private))
    token = private / "auth_token"
    assert os.environ["RAY_AUTH_MODE"] == "token" and os.environ["RAY_AUTH_TOKEN_PATH"] == str(token)
    assert len(token.read_text()) == 64 and token.stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "home" / ".ray").exists()
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user's explicit choice stands
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    private_auth(str(private))
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and "RAY_AUTH_TOKEN_PATH" not in os.environ


def test_a_refused_connection_says_how_to_fix_a_token_mismatch() -> None:
    """Ray reports a token mismatch only in its log; its exception is a bare "Failed to connect".
    (Seen for real: a cluster started while ~/.ray/auth_token existed refused a server started with
    RAY_AUTH_MODE=disabled.)"""
    from jupyter_serving.backends.ray.backend import connect_error

    refused = connect_error(ConnectionError("Failed to connect to Ray cluster at 192.0.2.2:60833"))
    assert isinstance(refused, RuntimeError)
    assert "InvalidAuthToken" in str(refused) and "RAY_AUTH_MODE=disabled" in str(refused)
    assert "RAY_AUTH_TOKEN_PATH" in str(connect_error(RuntimeError("Authentication token is missing")))
    other = ValueError("ray_address must be host:port")
    assert connect_error(other) is other
