"""One settings class: defaults, JUPYTER_SERVING_* environment variables, config, and CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from traitlets.config import Config

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
    assert (from_env.request_timeout_s, from_env.gpus, from_env.fast_path) == (7.5, [0, 2], False)
    config = Config({"ServingSettings": {"request_timeout_s": 3.0}})
    assert ServingSettings(config=config).request_timeout_s == 3.0


def test_empty_gpu_list_means_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_SERVING_GPUS", "")
    assert ServingSettings().gpus == []
    monkeypatch.delenv("JUPYTER_SERVING_GPUS")
    assert ServingSettings().gpus is None  # unset: discover with NVML


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
    assert set(ServingSettings.class_traits(env=True)) <= flags


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
