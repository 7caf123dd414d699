"""Issue 30 in the page: an update refused because the endpoint's recorded creator lost a Unity Catalog
grant shows, in the Edit form, which privilege on which securable is missing and the way out.

The Jupyter user (the server owner) holds every grant, so the refusal comes from the creator re-check:
a service principal holding USE_CATALOG / USE_SCHEMA / EXECUTE creates an endpoint serving the
three-level `main.default.iris` through the real databricks-sdk, EXECUTE is revoked, and the owner's
Update in headless Chromium must be answered with the 403's message in the form.

Screenshots land in tests/ui/artifacts/<test>/; a failed step leaves NN-step-FAILED.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.catalog import PermissionsChange, Privilege
from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput
from lab_support import ARTIFACTS, UI_DIR, Lab
from serving_support import eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(420)]

ENDPOINT = "page-grants"
UC_MODEL = "main.default.iris"
CREATOR = "page-grants-bot"


def ready(lab: Lab, name: str) -> bool:
    body = lab.api("GET", f"api/2.0/serving-endpoints/{name}").json()
    return body["state"]["ready"] == "READY" and body["state"]["config_update"] == "NOT_UPDATING"


def test_edit_form_names_the_creators_missing_grant(
    lab: Lab, browser_tools: tuple[str, str], request: pytest.FixtureRequest
) -> None:
    node, chromium = browser_tools
    artifacts = ARTIFACTS / request.node.name
    shutil.rmtree(artifacts, ignore_errors=True)
    admin = WorkspaceClient(host=lab.url.rstrip("/"), token=lab.token, auth_type="pat")
    sp = admin.service_principals.create(display_name=CREATOR)
    assert sp.id and sp.application_id
    token = admin.token_management.create_obo_token(application_id=sp.application_id).token_value
    bot = WorkspaceClient(host=admin.config.host, token=token, auth_type="pat")
    grants = (
        ("catalog", "main", Privilege.USE_CATALOG),
        ("schema", "main.default", Privilege.USE_SCHEMA),
        ("function", UC_MODEL, Privilege.EXECUTE),
    )
    for kind, name, privilege in grants:
        change = PermissionsChange(principal=sp.application_id, add=[privilege])
        admin.grants.update(securable_type=kind, full_name=name, changes=[change])
    served = ServedEntityInput(entity_name=UC_MODEL, entity_version="1", workload_size="Small")
    bot.serving_endpoints.create(
        name=ENDPOINT, config=EndpointCoreConfigInput(name=ENDPOINT, served_entities=[served])
    )
    try:
        eventually(lambda: ready(lab, ENDPOINT), 180, 0.2, f"{ENDPOINT} READY")
        revoke = PermissionsChange(principal=sp.application_id, remove=[Privilege.EXECUTE])
        admin.grants.update(securable_type="function", full_name=UC_MODEL, changes=[revoke])
        env = {
            **os.environ,
            "LAB_URL": lab.url,
            "LAB_TOKEN": lab.token,
            "ARTIFACTS": str(artifacts),
            "CHROMIUM_PATH": chromium,
            "ENDPOINT": ENDPOINT,
            "UC_MODEL": UC_MODEL,
            "CREATOR": CREATOR,
        }
        result = subprocess.run([node, str(UI_DIR / "grants_flow.mjs")], cwd=UI_DIR, env=env, capture_output=True,
                                text=True, timeout=300)  # fmt: skip
        report = (
            f"{result.stdout}\n{result.stderr}\nbrowser log: {artifacts / 'browser.log'}\nlab log: {lab.log}"
        )
        assert result.returncode == 0, report
        assert "ok   " in result.stdout and "FAIL" not in result.stdout, report
        # The refused update changed nothing: the endpoint still serves v1 without scale to zero.
        entities = admin.serving_endpoints.get(ENDPOINT).config.served_entities  # type: ignore[union-attr]
        assert [(e.entity_name, e.scale_to_zero_enabled) for e in entities or []] == [(UC_MODEL, False)]
    finally:
        lab.api("DELETE", f"api/2.0/serving-endpoints/{ENDPOINT}")
        admin.service_principals.delete(sp.id)
