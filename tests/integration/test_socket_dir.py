"""A state dir too deep for AF_UNIX puts the workers' sockets in a temp dir: stopping removes it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_serving.backends.local.backend import MAX_SOCKET_DIR, LocalBackend
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
        ServingSettings(state_dir=str(state), warm_pool_size=0, worker_start="spawn", gpus=[])
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
