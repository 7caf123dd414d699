"""Shared fixtures: one real MLflow registry and one real standalone server for the session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ray_cluster import RAY_MISSING, RayCluster, start_cluster
from serving_support import MlflowEnv, ServingServer, build_registry

from jupyter_serving.promotion.models import environ

pytest_plugins = ("pytest_jupyter.jupyter_server",)

# The modules that need a Ray cluster run one after the other on one xdist worker, sharing its
# session cluster (`ray_cluster`): two clusters at once on a 2-core machine made both slow.
RAY_MODULES = ("test_ray_backend.py", "test_ray_dataplane.py")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """`--dist loadfile` with the Ray modules as one unit of work (xdist's scheduler, one scope more)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class OneRayCluster(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "ray-cluster" if Path(scope).name in RAY_MODULES else scope

    # Collection order, not xdist's largest-module-first: the hook below puts the Ray unit first.
    config.option.loadscopereorder = False
    return OneRayCluster(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The Ray unit first: it is the longest (a third of the suite's time on 2 cores), so it starts
    at once on one worker while the other takes everything else, instead of forming the tail."""
    items.sort(key=lambda item: item.path.name not in RAY_MODULES)  # stable: the rest keep their order


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
    cluster = start_cluster(attempts=6)  # a node's fixed 30 s start-up wait can pass under load
    try:
        yield cluster
    finally:
        cluster.stop()
