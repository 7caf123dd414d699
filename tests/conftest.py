"""Shared fixtures: one real MLflow registry and one real standalone server for the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ray_cluster import RAY_MISSING, RayCluster, start_cluster
from serving_support import MlflowEnv, ServingServer, build_registry

from jupyter_serving.promotion.models import environ

pytest_plugins = ("pytest_jupyter.jupyter_server",)


@pytest.fixture(scope="session")
def mlflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowEnv]:
    root = tmp_path_factory.mktemp("mlflow")
    env = build_registry(root)
    with environ(env.env):
        yield env


@pytest.fixture(scope="session")
def serving_server(
    mlflow_env: MlflowEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingServer]:
    server = ServingServer(tmp_path_factory.mktemp("serving") / "state", mlflow_env.env).start()
    yield server
    server.stop()


@pytest.fixture
def start_server(mlflow_env: MlflowEnv, tmp_path: Path) -> Iterator[Callable[..., ServingServer]]:
    """Start extra servers with their own settings (flags), stopped at the end of the test."""
    servers: list[ServingServer] = []

    def start(*args: str, state_dir: Path | None = None) -> ServingServer:
        server = ServingServer(
            state_dir or tmp_path / f"state{len(servers)}", mlflow_env.env, list(args)
        ).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A real Ray cluster for the session: a head and one more node, one CPU each, in a temp dir;
    its processes are killed at the end whatever happens."""
    if RAY_MISSING:
        pytest.skip(RAY_MISSING)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
