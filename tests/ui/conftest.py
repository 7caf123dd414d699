"""Browser-test fixtures: the tools (node, Chromium, playwright-core, the built panel) and one Lab."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lab_support import Lab, browser_prerequisites, running_lab
from serving_support import MlflowEnv


@pytest.fixture(scope="session")
def browser_tools() -> tuple[str, str]:
    """(node, chromium); the browser tests skip, saying what is missing, where they cannot run."""
    found = browser_prerequisites()
    if isinstance(found, str):
        pytest.skip(found)
    return found


@pytest.fixture(scope="session")
def lab(
    browser_tools: tuple[str, str], mlflow_env: MlflowEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    with running_lab(tmp_path_factory.mktemp("lab"), mlflow_env) as lab:
        yield lab
