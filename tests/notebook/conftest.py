"""Fixtures for the notebook side: a client, an IPython shell with the extension loaded, and
endpoints that are deleted after the test. All of them talk to the real `serving_server`."""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jupyter_serving.notebook.client import Client, NotFoundError

_counter = itertools.count()


def make_iris_config(*versions: str, split: list[int] | None = None, **entity: Any) -> dict[str, Any]:
    """A config serving `iris-lr` at the given versions (entity names `iris-lr-<v>`)."""
    entities = [
        {
            "entity_name": "iris-lr",
            "entity_version": v,
            "workload_size": "Small",
            "scale_to_zero_enabled": False,
            **entity,
        }
        for v in versions
    ]
    config: dict[str, Any] = {"served_entities": entities}
    if split is not None:
        config["traffic_config"] = {
            "routes": [
                {"served_model_name": f"iris-lr-{v}", "traffic_percentage": p}
                for v, p in zip(versions, split, strict=True)
            ]
        }
    return config


@pytest.fixture(scope="session")
def iris_config() -> Callable[..., dict[str, Any]]:
    return make_iris_config


@pytest.fixture(scope="session")
def server_env(serving_server: Any) -> dict[str, str]:
    return {"JUPYTER_SERVING_URL": serving_server.url, "JUPYTER_SERVING_TOKEN": serving_server.token}


@pytest.fixture(scope="session")
def client(serving_server: Any) -> Client:
    return Client(serving_server.url, serving_server.token)


@pytest.fixture
def new_name(client: Client) -> Iterator[Callable[[], str]]:
    """Fresh endpoint names; every endpoint created under one is deleted after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"nb-{next(_counter)}-{uuid.uuid4().hex[:6]}")
        return names[-1]

    yield make
    for name in names:
        with contextlib.suppress(NotFoundError):
            client.delete(name)


@pytest.fixture(scope="session")
def iris_endpoint(client: Client) -> Iterator[str]:
    """One READY endpoint serving iris-lr v1, shared by the tests that only read and query it."""
    name = f"nb-shared-{uuid.uuid4().hex[:6]}"
    client.create_and_wait(name, make_iris_config("1"), timeout=170)
    yield name
    with contextlib.suppress(NotFoundError):
        client.delete(name)


@pytest.fixture
def shell(server_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real IPython shell (history off, as jupysql's tests do) with `%load_ext jupyter_serving`."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    for key, value in server_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("JPY_PARENT_PID", raising=False)
    config = Config()
    config.HistoryAccessor.enabled = False
    ip = InteractiveShell.instance(config=config)
    with capture_output() as loaded:
        ip.run_line_magic("load_ext", "jupyter_serving")
    ip.load_output = loaded.stdout
    yield ip
    ip.run_line_magic("unload_ext", "jupyter_serving")
    InteractiveShell.clear_instance()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The process environment without any pointer to a serving server."""
    for key in ("JUPYTER_SERVING_URL", "JUPYTER_SERVING_TOKEN", "JPY_PARENT_PID"):
        monkeypatch.delenv(key, raising=False)
    return dict(os.environ)
