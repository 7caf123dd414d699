"""`%serve grants` and the creator shown by `%serve get` (issue 30), through a real IPython shell
against the real server."""

from __future__ import annotations

from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from jupyter_serving.notebook.client import Client
from jupyter_serving.notebook.magics import ServeMagics

pytestmark = pytest.mark.slow


def magic(shell: Any, line: str) -> tuple[Any, str]:
    with capture_output() as cap:
        result = shell.run_line_magic("serve", line)
    return result, cap.stdout


def test_grants_magic_shows_grants_and_revokes(shell: Any, serving_server: Any) -> None:
    """On a catalog of its own: other tests of the session grant on `main`."""
    admin = WorkspaceClient(host=serving_server.url.rstrip("/"), token=serving_server.token, auth_type="pat")
    app_id = admin.service_principals.create(display_name="nb-grantee").application_id or ""

    _, out = magic(shell, "grants grant catalog nb_cat --principal nb-grantee USE_CATALOG USE_SCHEMA")
    assert [line.split() for line in out.splitlines()[1:]] == [
        [app_id, "USE_CATALOG"],
        [app_id, "USE_SCHEMA"],
    ]
    _, out = magic(shell, f"grants show function nb_cat.default.iris --effective --principal {app_id}")
    assert [line.split() for line in out.splitlines()[1:]] == [
        [app_id, "USE_CATALOG", "nb_cat"],
        [app_id, "USE_SCHEMA", "nb_cat"],
    ]
    with pytest.raises(UsageError, match="INVALID_PARAMETER_VALUE: Privilege EXECUTE_X"):
        magic(shell, "grants grant function nb_cat.default.iris --principal nb-grantee EXECUTE_X")
    with pytest.raises(UsageError, match="needs --principal"):
        magic(shell, "grants revoke catalog nb_cat USE_CATALOG")
    _, out = magic(shell, "grants revoke catalog nb_cat --principal nb-grantee USE_CATALOG USE_SCHEMA")
    assert out.strip() == "No grants on catalog 'nb_cat'."
    assert "%serve grants" in (ServeMagics.serve.__doc__ or "")


def test_get_shows_the_recorded_creator(shell: Any, serving_server: Any, client: Client) -> None:
    admin = WorkspaceClient(host=serving_server.url.rstrip("/"), token=serving_server.token, auth_type="pat")
    sp = admin.service_principals.create(display_name="nb-creator")
    token = admin.token_management.create_obo_token(application_id=sp.application_id or "").token_value
    config = {
        "served_entities": [{"entity_name": "iris-lr", "entity_version": "1", "workload_size": "Small"}]
    }
    Client(serving_server.url, token).create("nb-created", config)
    try:
        card, _ = magic(shell, "get nb-created")
        assert card.endpoint["creator"] == "nb-creator"
        assert "created by nb-creator" in repr(card)
    finally:
        client.delete("nb-created")
