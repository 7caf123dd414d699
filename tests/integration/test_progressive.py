"""Progressive delivery end to end (issue 29): a real server moves traffic to a challenger step by
step while the guard (policy/guard.py) watches the real answers of real workers.

The fixture model `flaky` fails on a known share of inputs (FLAKY_PERCENT, set through the served
entity's environment_vars), so the failing challenger's share is exact; inputs are seeded.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.serving import ServingEndpointAccessControlRequest, ServingEndpointPermissionLevel
from rollouts import ROLLOUT, rollout, split, traffic
from serving_support import ServingServer, entity, eventually


def ab_config(challenger_percent: int, delays: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
    """`current` never fails; `challenger` fails on `challenger_percent` % of inputs; each sleeps
    its delay per predict call."""
    env = [{"FLAKY_PERCENT": "0"}, {"FLAKY_PERCENT": str(challenger_percent)}]
    for variables, delay in zip(env, delays, strict=True):
        if delay:
            variables["FLAKY_DELAY_S"] = str(delay)
    return {
        "served_entities": [
            entity("flaky", 1, name="current", environment_vars=env[0]),
            entity("flaky", 1, name="challenger", environment_vars=env[1]),
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "current", "traffic_percentage": 100},
                {"served_model_name": "challenger", "traffic_percentage": 0},
            ]
        },
    }


def events(server: ServingServer, name: str) -> list[str]:
    return [
        e["type"]
        for e in server.api("GET", f"api/2.0/jupyter-serving/endpoints/{name}/events").json()["events"]
    ]


def test_validation_and_a_failing_challenger_is_rolled_back_before_25_percent(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server()
    server.create_ready("canary", ab_config(5))
    route = ROLLOUT.format("canary")

    missing = server.api("GET", route)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for body in (
        {"to": "nobody"},
        {"to": "current"},  # already takes all the traffic
        {"to": "challenger", "steps": [50, 25, 100]},
        {"to": "challenger", "steps": [5, 25]},  # does not end at 100
        {"to": "challenger", "steps": [0, 100]},
        {"to": "challenger", "steps": "5,25"},
        {"to": "challenger", "step_duration_s": 0},
        {"to": "challenger", "step_duration_s": "60"},
        {"to": "challenger", "guard": {"alpha": 2}},
        {"to": "challenger", "guard": {"latency": {"p50_ratio": "x"}}},
        {"to": "challenger", "guard": {"quality": {"labels_path": "/tmp/labels"}}},  # no inference table
        {"to": "challenger", "extra": 1},
        ["challenger"],
    ):
        refused = server.api("PUT", route, json=body)
        assert refused.status_code == 400, (body, refused.text)
        assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text
    assert server.api("PUT", route, data=b"{not json").status_code == 400
    assert server.api("PUT", ROLLOUT.format("no-such"), json={"to": "x"}).status_code == 404
    assert server.api("POST", route + "/pause").status_code == 400  # nothing to pause

    with traffic(server, "canary", seed=1):
        started = server.api(
            "PUT", route, json={"to": "challenger", "steps": [5, 25, 50, 100], "step_duration_s": 20}
        )
        assert started.status_code == 200, started.text
        assert started.json()["state"] == "RUNNING" and started.json()["step"] == 5
        again = server.api("PUT", route, json={"to": "challenger"})
        assert again.status_code == 409 and again.json()["error_code"] == "RESOURCE_CONFLICT"
        done = eventually(
            lambda: rollout(server, "canary"),
            timeout=120,
            interval=0.2,
            what="the guard rolling the challenger back",
            until=lambda r: r["state"] != "RUNNING",
        )
    assert done["state"] == "ROLLED_BACK", (done["requests"], done["estimate"], done["timeline"])
    assert done["step"] <= 25
    assert done["reason"].startswith("Error rate:"), done["reason"]
    error_guard = next(g for g in done["estimate"]["guards"] if g["name"] == "error_rate_increase")
    assert error_guard["breached"] and error_guard["lower"] > 0
    assert done["requests"]["challenger"]["errors"] > 0 and done["requests"]["control"]["errors"] == 0
    # Rolled back at once to the split before the rollout.
    eventually(lambda: split(server, "canary"), until=lambda s: s == {"current": 100, "challenger": 0})
    kinds = events(server, "canary")
    assert "ROLLOUT_STARTED" in kinds and "ROLLOUT_ROLLED_BACK" in kinds
    assert done["timeline"][0]["type"] == "ROLLOUT_STARTED"

    # Reading takes CAN_VIEW; changing, CAN_MANAGE.
    admin = WorkspaceClient(host=server.url.rstrip("/"), token=server.token, auth_type="pat")
    app_id = admin.service_principals.create(display_name="rollout-viewer").application_id
    assert app_id
    token = admin.token_management.create_obo_token(application_id=app_id, lifetime_seconds=3600).token_value

    def as_viewer(method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(
            method, server.url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kwargs
        )

    assert as_viewer("GET", route).status_code == 403
    endpoint_id = server.get("canary")["id"]
    viewer = ServingEndpointPermissionLevel.CAN_VIEW
    acl = [ServingEndpointAccessControlRequest(service_principal_name=app_id, permission_level=viewer)]
    admin.serving_endpoints.update_permissions(endpoint_id, access_control_list=acl)
    assert as_viewer("GET", route).json()["state"] == "ROLLED_BACK"
    for method, path in (("PUT", route), ("DELETE", route), ("POST", route + "/pause")):
        refused = as_viewer(method, path, json={"to": "challenger"})
        assert refused.status_code == 403 and refused.json()["error_code"] == "PERMISSION_DENIED"


def test_an_equal_challenger_reaches_100_and_a_restart_resumes_the_same_step(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server()
    server.create_ready("steady", ab_config(0))
    route = ROLLOUT.format("steady")
    body = {"to": "challenger", "steps": [10, 50, 100], "step_duration_s": 10}
    assert server.api("PUT", route, json=body).status_code == 200
    eventually(lambda: split(server, "steady"), until=lambda s: s == {"current": 90, "challenger": 10})
    with traffic(server, "steady", seed=2, clients=4) as statuses:
        eventually(lambda: len(statuses), until=lambda n: n >= 100)
    assert set(statuses) == {200}
    before = eventually(  # the guard has counted every answer (it samples every tick)
        lambda: rollout(server, "steady"),
        until=lambda r: sum(arm["requests"] for arm in r["requests"].values()) == len(statuses),
    )
    assert before["state"] == "RUNNING" and before["step"] == 10

    server.stop(signal.SIGTERM)
    restarted = start_server(state_dir=server.state_dir)
    after = rollout(restarted, "steady")
    assert after["state"] == "RUNNING" and after["step"] == 10, after
    assert after["requests"] == before["requests"]  # the evidence so far survived the restart
    assert after["step_elapsed_s"] >= before["step_elapsed_s"] > 0
    assert split(restarted, "steady") == {"current": 90, "challenger": 10}

    paused = restarted.api("POST", route + "/pause").json()
    assert paused["state"] == "PAUSED"
    assert restarted.api("POST", route + "/resume").json()["state"] == "RUNNING"
    with traffic(restarted, "steady", seed=3, clients=4):
        done = eventually(
            lambda: rollout(restarted, "steady"),
            timeout=120,
            interval=0.2,
            what="the rollout finishing",
            until=lambda r: r["state"] != "RUNNING",
        )
    assert done["state"] == "SUCCEEDED", done
    assert done["step"] == 100 and done["reason"] is None
    assert split(restarted, "steady") == {"current": 0, "challenger": 100}
    kinds = [e["type"] for e in done["timeline"]]
    assert kinds[0] == "ROLLOUT_STARTED" and kinds[-1] == "ROLLOUT_SUCCEEDED"
    assert {"ROLLOUT_STEP", "ROLLOUT_PAUSED", "ROLLOUT_RESUMED"} <= set(kinds)
    assert "ROLLOUT_SUCCEEDED" in events(restarted, "steady")

    # A rollout back to `current`, canceled: the split before it returns.
    back = restarted.api("PUT", route, json={"to": "current", "steps": [50, 100], "step_duration_s": 600})
    assert back.status_code == 200, back.text
    eventually(lambda: split(restarted, "steady"), until=lambda s: s == {"current": 50, "challenger": 50})
    canceled = restarted.api("DELETE", route).json()
    assert canceled["state"] == "CANCELED"
    eventually(lambda: split(restarted, "steady"), until=lambda s: s == {"current": 0, "challenger": 100})
    assert restarted.api("POST", route + "/resume").status_code == 400


def test_a_challenger_three_times_slower_is_stopped_by_the_latency_guard(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server()
    server.create_ready("sluggish", ab_config(0, delays=(0.02, 0.06)))
    route = ROLLOUT.format("sluggish")
    with traffic(server, "sluggish", seed=4):
        body = {"to": "challenger", "steps": [25, 50, 100], "step_duration_s": 30}
        assert server.api("PUT", route, json=body).status_code == 200
        done = eventually(
            lambda: rollout(server, "sluggish"),
            timeout=120,
            interval=0.2,
            what="the latency guard stopping the challenger",
            until=lambda r: r["state"] != "RUNNING",
        )
    assert done["state"] == "ROLLED_BACK" and done["step"] == 25, done
    assert done["reason"].startswith("Latency: the challenger's p50"), done["reason"]
    assert done["requests"]["challenger"]["errors"] == 0
    eventually(lambda: split(server, "sluggish"), until=lambda s: s == {"current": 100, "challenger": 0})
