"""`%serve shadow` and `Client.shadow` / `Client.set_shadow` against the real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from jupyter_serving.notebook.client import BadRequestError, Client, NotFoundError

pytestmark = pytest.mark.slow


def line(shell: Any, text: str) -> Any:
    with capture_output():
        result = shell.run_cell(text)
    return result


def test_shadow_magic_sets_shows_and_stops(
    shell: Any, client: Client, new_name: Callable[[], str], iris_config: Callable[..., dict[str, Any]]
) -> None:
    name = new_name()
    client.create_and_wait(name, iris_config("1", "2", split=[100, 0]))
    assert client.shadow(name) is None
    result = line(shell, f"%serve shadow {name}")
    assert result.result == f"{name}: no shadow traffic"

    result = line(shell, f"%serve shadow {name} iris-lr-2=20")
    assert result.success, result.error_in_exec
    assert result.result == f"{name}: 20% of live requests mirrored to iris-lr-2"
    assert client.shadow(name) == {"served_entity_name": "iris-lr-2", "percentage": 20}
    assert line(shell, f"%serve shadow {name}").result == result.result

    refused = line(shell, f"%serve shadow {name} iris-lr-1=20")  # the live entity
    assert isinstance(refused.error_in_exec, UsageError)
    assert "INVALID_PARAMETER_VALUE" in str(refused.error_in_exec)
    assert isinstance(line(shell, f"%serve shadow {name} iris-lr-2").error_in_exec, UsageError)

    assert line(shell, f"%serve shadow {name} off").result == f"{name}: no shadow traffic"
    assert client.shadow(name) is None

    assert client.set_shadow(name, "iris-lr-2", 5) == {"served_entity_name": "iris-lr-2", "percentage": 5}
    with pytest.raises(BadRequestError):
        client.set_shadow(name, "iris-lr-2", 150)
    assert client.set_shadow(name, None) == {}
    with pytest.raises(NotFoundError):
        client.shadow("no-such-endpoint")
