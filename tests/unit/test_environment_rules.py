"""Environment selection without builds: requirements parsing, keys, auto's check, eviction, the worker path."""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_serving.environments import requirements as reqs
from jupyter_serving.environments.cache import (
    MARKER,
    EnvironmentCache,
    entity_manager,
    environment_key,
    find_interpreters,
    worker_path,
)

SIX = importlib.metadata.version("six")


def test_python_env_yaml_expands_its_requirements_file_and_normalises(tmp_path: Path) -> None:
    (tmp_path / "python_env.yaml").write_text("python: 3.10.4\ndependencies:\n- -r requirements.txt\n")
    (tmp_path / "requirements.txt").write_text(
        "Scikit_Learn==1.5.0\n# comment\n\nsix>=1.0,<2 # why\nsix>=1.0,<2\n"
    )
    got = reqs.read(tmp_path)
    assert got == reqs.ModelRequirements("3.10.4", ("scikit-learn==1.5.0", "six<2,>=1.0"), "python_env.yaml")


def test_conda_yaml_pip_section_is_used_when_it_is_all_there_is(tmp_path: Path) -> None:
    (tmp_path / "conda.yaml").write_text(
        "dependencies:\n- python=3.12.1\n- pip\n- pip:\n  - mlflow==3.1\n  - Pandas\n"
    )
    assert reqs.read(tmp_path) == reqs.ModelRequirements("3.12.1", ("mlflow==3.1", "pandas"), "conda.yaml")
    assert reqs.read(tmp_path / "missing") == reqs.ModelRequirements(None, (), "")


def test_worker_packages_are_added_and_the_models_mlflow_pin_wins() -> None:
    server_mlflow = importlib.metadata.version("mlflow")
    assert reqs.with_worker_packages(("six==1.16.0",)) == (
        f"mlflow=={server_mlflow}",
        "numpy",
        "pandas",
        "six==1.16.0",
    )
    assert reqs.with_worker_packages(("mlflow==3.1.0", "pandas<3")) == ("mlflow==3.1.0", "numpy", "pandas<3")


def test_auto_accepts_the_server_only_when_every_requirement_is_met_exactly() -> None:
    python = ".".join(map(str, sys.version_info[:3]))
    met = reqs.ModelRequirements(python, (f"six=={SIX}", "pandas", 'nosuchpkg ; python_version < "3"'), "x")
    assert reqs.unmet_by_server(met) is None
    old = reqs.ModelRequirements(None, ("six==1.16.0",), "x")
    assert reqs.unmet_by_server(old) == f"the model requires six==1.16.0, the server has six=={SIX}"
    missing = reqs.ModelRequirements(None, ("inflection==0.5.1",), "x")
    assert "inflection is not installed" in (reqs.unmet_by_server(missing) or "")
    other_python = reqs.ModelRequirements("3.8.10", (), "x")
    assert "logged with Python 3.8.10" in (reqs.unmet_by_server(other_python) or "")


def test_keys_depend_on_python_and_requirements_not_their_order() -> None:
    assert environment_key("3.11.7", ("a", "b")) == environment_key("3.11.7", ("b", "a"))
    assert environment_key("3.11.7", ("a",)) != environment_key("3.12.1", ("a",))
    assert entity_manager("auto", {"JUPYTER_SERVING_ENV_MANAGER": " UV "}) == "uv"
    assert entity_manager("local", {}) == "local"


def _fake_env(root: Path, key: str, size: int, mtime: float) -> None:
    (root / key).mkdir()
    marker = root / key / MARKER
    marker.write_text(json.dumps({"size": size}))
    os.utime(marker, (mtime, mtime))


def test_eviction_removes_least_recently_used_environments_nobody_holds(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path, max_bytes=250)
    for i, key in enumerate(("old", "held", "new")):
        _fake_env(tmp_path, key, 100, 1000.0 + i)
    (tmp_path / ".tmp-half-1234").mkdir()  # a killed build: never counted, never used
    fd = os.open(tmp_path / "held.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)  # as a server using it does
    try:
        assert cache.evict() == ["old"]
        assert cache.evict() == []  # 200 <= 250
        cache.max_bytes = 50
        assert cache.evict() == ["new"]  # "held" stays while someone holds it
        assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [".tmp-half-1234", "held"]
    finally:
        os.close(fd)


def test_workers_import_only_the_worker_of_our_package(tmp_path: Path) -> None:
    """What a model environment's interpreter sees of us: the worker modules, nothing of the server."""
    code = (
        "import sys, jupyter_serving.worker.__main__, jupyter_serving.worker.scoring; "
        "print(sorted(m for m in sys.modules if m.startswith('jupyter_serving')))"
    )
    env = {**os.environ, "PYTHONPATH": str(worker_path(tmp_path))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    modules = eval(out.stdout)  # a printed list of strings
    assert modules == [
        "jupyter_serving",
        "jupyter_serving._version",
        "jupyter_serving.worker",
        "jupyter_serving.worker.__main__",
        "jupyter_serving.worker.batcher",
        "jupyter_serving.worker.linear",
        "jupyter_serving.worker.protocol",
        "jupyter_serving.worker.request_log",
        "jupyter_serving.worker.scoring",
        "jupyter_serving.worker.streaming",
        "jupyter_serving.worker.traces",
    ]


@pytest.mark.parametrize("manager", ["local", "auto"])
async def test_local_and_satisfied_auto_choose_the_server(tmp_path: Path, manager: str) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "requirements.txt").write_text(f"six=={SIX}\n")
    env = await EnvironmentCache(tmp_path / "envs", 10**9).resolve(model, manager)
    assert (env.name, env.python) == ("server", sys.executable)


async def test_the_logged_python_is_used_when_present_else_the_log_says_which(tmp_path: Path) -> None:
    cache = EnvironmentCache(tmp_path, 10**9)
    server = ".".join(map(str, sys.version_info[:3]))
    exact, note = await cache._interpreter(server)
    assert exact.version == server and note.startswith(f"Python {server}, as logged")
    missing, note = await cache._interpreter("3.4.0")
    assert missing.path == sys.executable
    assert (
        note
        == f"Python 3.4.0 (as logged) is not on this machine and no 3.4.x is: using the server's Python {server} instead."
    )


def test_a_stuck_interpreter_listing_does_not_fail_the_deploy(tmp_path: Path) -> None:
    """`uv python list` can wait on uv's cache lock while another build holds it: past the
    timeout the listing is skipped, and pyenv's versions and the server's Python remain."""
    stuck = tmp_path / "uv"
    stuck.write_text("#!/bin/sh\nexec sleep 30\n")
    stuck.chmod(0o755)
    found, listed = find_interpreters(str(stuck), timeout_s=0.5)
    assert all(i.version.startswith("3.") for i in found)
    assert not listed


async def test_a_timed_out_listing_is_asked_again_and_a_complete_one_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stuck `uv python list` must not hide uv's interpreters until restart: the next build lists
    again; once a listing completes, it is cached for the server's lifetime."""
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))  # only what uv lists is found
    calls, ready = tmp_path / "calls", tmp_path / "ready"
    listing = json.dumps([{"path": sys.executable}])
    uv = tmp_path / "uv"
    uv.write_text(
        f"#!/bin/sh\necho run >> '{calls}'\n"
        f"if [ -f '{ready}' ]; then echo '{listing}'; else exec sleep 30; fi\n"
    )
    uv.chmod(0o755)
    cache = EnvironmentCache(tmp_path / "envs", 10**9, uv=str(uv), list_timeout_s=0.5)
    runs = lambda: len(calls.read_text().splitlines())  # noqa: E731
    await cache._interpreter(None)
    assert runs() == 1 and cache._interpreters is None
    await cache._interpreter(None)
    assert runs() == 2 and cache._interpreters is None  # still stuck: asked again, still not kept
    ready.touch()  # uv's lock is free again
    await cache._interpreter(None)
    assert runs() == 3
    assert [i.path for i in cache._interpreters or []] == [sys.executable]
    await cache._interpreter(None)
    assert runs() == 3
