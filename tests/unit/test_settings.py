"""The settings classes (the server's and each backend's own): defaults, JUPYTER_SERVING_*
environment variables, config, CLI flags, and the backend class they pick."""

from __future__ import annotations

from pathlib import Path

import pytest
from inprocess_backend import InProcessBackend
from traitlets.config import Config

from jupyter_serving.backends.base import build_backend
from jupyter_serving.backends.local.backend import LocalBackend
from jupyter_serving.backends.local.settings import LocalBackendSettings
from jupyter_serving.backends.ray.backend import RayBackend
from jupyter_serving.backends.ray.settings import RayBackendSettings
from jupyter_serving.cli import build_parser, server_argv, server_env
from jupyter_serving.settings import ServingSettings


def test_environment_overrides_defaults_and_config_overrides_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert ServingSettings().request_timeout_s == 120.0
    monkeypatch.setenv("JUPYTER_SERVING_REQUEST_TIMEOUT_S", "7.5")
    monkeypatch.setenv("JUPYTER_SERVING_GPUS", "0, 2")
    monkeypatch.setenv("JUPYTER_SERVING_FAST_PATH", "false")
    from_env = ServingSettings()
    assert (from_env.request_timeout_s, from_env.fast_path) == (7.5, False)
    assert LocalBackendSettings(parent=from_env).gpus == [0, 2]
    config = Config({"ServingSettings": {"request_timeout_s": 3.0}})
    assert ServingSettings(config=config).request_timeout_s == 3.0


def test_empty_gpu_list_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_SERVING_GPUS", "")
    assert LocalBackendSettings().gpus == []
    monkeypatch.delenv("JUPYTER_SERVING_GPUS")
    assert LocalBackendSettings().gpus is None  # unset: discover with NVML


def test_backend_settings_read_their_own_section_the_servers_config_and_the_old_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A backend's settings come from its own class's config (inherited from the server's
    settings, its parent), below which the JUPYTER_SERVING_* variables keep their old names."""
    monkeypatch.setenv("JUPYTER_SERVING_RAY_ADDRESS", "auto")
    monkeypatch.setenv("JUPYTER_SERVING_WORKER_START", "spawn")
    monkeypatch.setenv("JUPYTER_SERVING_WARM_POOL_SIZE", "3")
    config = Config(
        {"RayBackendSettings": {"ray_replica_cpus": 0.5}, "LocalBackendSettings": {"warm_pool_size": 0}}
    )
    server = ServingSettings(config=config, state_dir=str(tmp_path))
    ray, local = RayBackendSettings(parent=server), LocalBackendSettings(parent=server)
    assert (ray.ray_address, ray.ray_replica_cpus) == ("auto", 0.5)
    assert (local.worker_start, local.warm_pool_size) == ("spawn", 0)  # config beats the variable
    assert not {"ray_address", "worker_start", "warm_pool_size", "gpus"} & set(ServingSettings.class_traits())
    backend = LocalBackend(server)
    assert (backend.own.worker_start, backend.own.warm_pool_size) == ("spawn", 0)
    assert RayBackend(server).sizing.num_cpus == 0.5


def test_backend_settings_under_their_old_section_still_apply(tmp_path: Path) -> None:
    """Config files written when these were ServingSettings traits keep working, below the new
    section, and ServingSettings does not call them unknown options (warnings are errors here)."""
    config = Config(
        {
            "ServingSettings": {"worker_start": "spawn", "warm_pool_size": 2, "ray_address": "auto"},
            "LocalBackendSettings": {"warm_pool_size": 0},
        }
    )
    server = ServingSettings(config=config, state_dir=str(tmp_path))
    local, ray = LocalBackendSettings(parent=server), RayBackendSettings(parent=server)
    assert (local.worker_start, local.warm_pool_size, ray.ray_address) == ("spawn", 0, "auto")


def test_backend_class_wins_over_the_backend_shorthand(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert type(build_backend(ServingSettings(state_dir=str(tmp_path)))) is LocalBackend
    assert type(build_backend(ServingSettings(state_dir=str(tmp_path), backend="ray"))) is RayBackend
    named = ServingSettings(
        state_dir=str(tmp_path), backend="ray", backend_class="inprocess_backend.InProcessBackend"
    )
    assert type(build_backend(named)) is InProcessBackend
    monkeypatch.setenv("JUPYTER_SERVING_BACKEND_CLASS", "jupyter_serving.backends.ray.backend.RayBackend")
    assert type(build_backend(ServingSettings(state_dir=str(tmp_path)))) is RayBackend
    flags = server_argv(
        build_parser().parse_args(["serve", "--backend-class", "inprocess_backend.InProcessBackend"])
    )
    assert "--ServingSettings.backend_class=inprocess_backend.InProcessBackend" in flags


def test_every_setting_is_a_flag_of_serve() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--port",
            "0",
            "--state-dir",
            "/tmp/s",
            "--request-timeout-s",
            "9",
            "--gpus",
            "0,1",
            "--no-fast-path",
        ]
    )
    argv = server_argv(args)
    assert "--ServingSettings.state_dir=/tmp/s" in argv
    assert "--ServingSettings.request_timeout_s=9" in argv
    assert server_env(args) == {"JUPYTER_SERVING_GPUS": "0,1"}
    assert server_env(build_parser().parse_args(["serve", "--gpus", ""])) == {"JUPYTER_SERVING_GPUS": ""}
    assert "--ServingSettings.fast_path=False" in argv
    flags = {a.dest for a in build_parser()._subparsers._group_actions[0].choices["serve"]._actions}
    for cls in (ServingSettings, LocalBackendSettings, RayBackendSettings):
        assert set(cls.class_traits(env=True)) <= flags


def test_backend_flags_configure_the_backends_own_settings_class() -> None:
    args = build_parser().parse_args(
        ["serve", "--ray-address", "auto", "--ray-replica-cpus", "0.5", "--worker-start", "spawn"]
    )
    argv = server_argv(args)
    assert "--RayBackendSettings.ray_address=auto" in argv
    assert "--RayBackendSettings.ray_replica_cpus=0.5" in argv
    assert "--LocalBackendSettings.worker_start=spawn" in argv


def test_env_manager_is_a_setting_flag_and_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert ServingSettings().env_manager == "auto"
    monkeypatch.setenv("JUPYTER_SERVING_ENV_MANAGER", "UV")
    assert ServingSettings().env_manager == "uv"
    args = build_parser().parse_args(["serve", "--env-manager", "local", "--env-cache-max-bytes", "1000"])
    argv = server_argv(args)
    assert (
        "--ServingSettings.env_manager=local" in argv and "--ServingSettings.env_cache_max_bytes=1000" in argv
    )
    assert ServingSettings(state_dir=str(tmp_path)).env_cache_path == tmp_path / "envs"
    monkeypatch.setenv("JUPYTER_SERVING_ENV_MANAGER", "conda")
    with pytest.raises(Exception, match="conda"):
        ServingSettings()
