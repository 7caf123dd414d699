"""A state dir too deep for AF_UNIX puts the workers' sockets in a temp dir named for the state dir:
stopping removes it, a restart after kill -9 reuses it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_serving.backends.local.backend import MAX_SOCKET_DIR, LocalBackend, fallback_socket_dir
from jupyter_serving.backends.local.settings import LocalBackendSettings
from jupyter_serving.settings import ServingSettings


@pytest.fixture
def temp_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp dir of this test's own (short, as sockets need), so it sees exactly what the server
    makes there and nothing other servers on the machine make."""
    with tempfile.TemporaryDirectory(prefix="js-") as root:
        monkeypatch.setattr(tempfile, "tempdir", root)
        yield Path(root)


def _backend(tmp_path: Path) -> LocalBackend:
    state = tmp_path / ("deep-" * 20) / "state"
    assert len(str(state / "sockets")) > MAX_SOCKET_DIR
    return LocalBackend(
        ServingSettings(state_dir=str(state)),
        LocalBackendSettings(warm_pool_size=0, worker_start="spawn", gpus=[]),
    )


async def test_the_fallback_socket_dir_is_removed_when_the_backend_stops(
    tmp_path: Path, temp_root: Path
) -> None:
    backend = _backend(tmp_path)
    await backend.start()
    try:
        made = list(temp_root.iterdir())
        assert [p.name.startswith("jupyter-serving-") for p in made] == [True]
        assert backend.spawner is not None and backend.spawner.socket_dir == made[0]
    finally:
        await backend.stop()
    assert not list(temp_root.iterdir())


async def test_the_fallback_socket_dir_is_removed_when_the_start_fails(
    tmp_path: Path, temp_root: Path
) -> None:
    backend = _backend(tmp_path)
    envs = backend.settings.env_cache_path
    envs.mkdir(parents=True)
    (envs / ".worker-path").write_text("")  # a file where the start makes a folder: it fails
    with pytest.raises(FileExistsError):
        await backend.start()
    assert not list(temp_root.iterdir())


async def test_a_restart_after_kill_reuses_and_clears_the_fallback_socket_dir(
    tmp_path: Path, temp_root: Path
) -> None:
    """A server killed with -9 cannot remove its dir; the next server of that state dir must find
    it (one dir, not one per run) and clear the sockets its predecessor left."""
    first = _backend(tmp_path)
    await first.start()
    assert first.spawner is not None
    left = first.spawner.socket_dir
    (left / "replica-1.sock").write_bytes(b"")  # what a killed server's replica leaves
    first._temp_socket_dir = None  # as after kill -9: this server never removes its dir
    await first.stop()
    assert left.is_dir()

    second = _backend(tmp_path)
    await second.start()
    try:
        assert second.spawner is not None and second.spawner.socket_dir == left
        assert list(temp_root.iterdir()) == [left]
        assert not list(left.glob("*.sock"))
    finally:
        await second.stop()
    assert not list(temp_root.iterdir())


def test_a_fallback_path_that_is_not_our_directory_is_not_used(tmp_path: Path, temp_root: Path) -> None:
    """The temp dir is shared: a symlink planted where our dir would be is never followed."""
    state = tmp_path / "state"
    expected = fallback_socket_dir(state)
    expected.rmdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    expected.symlink_to(target, target_is_directory=True)
    chosen = fallback_socket_dir(state)
    assert chosen != expected and chosen.parent == temp_root and not chosen.is_symlink()
    assert fallback_socket_dir(tmp_path / "other-state") != chosen
