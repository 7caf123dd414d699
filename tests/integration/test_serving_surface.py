"""The rest of the serving API through the real clients: one test per databricks-sdk `serving_endpoints`
method and MLflow `databricks` client method beyond the lifecycle (tags, rate limits, AI Gateway,
notifications, telemetry, OpenAPI, the route-optimized data plane), the fields of the SDK's inputs,
and the routes of what a local server does not do."""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from serving_support import IRIS_COLUMNS, IRIS_ROWS, ServingServer, entity, eventually, iris_split

READY_TIMEOUT = datetime.timedelta(minutes=3)
EP = "surface-ep"


def workspace(server: ServingServer):  # type: ignore[no-untyped-def]
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=server.url, token=server.token, auth_type="pat")


def m2m_workspace(server: ServingServer):  # type: ignore[no-untyped-def]
    """An OAuth M2M client (what `serving_endpoints_data_plane` needs); its secret is the server token."""
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(
        host=server.url, client_id="ci-robot", client_secret=server.token, auth_type="oauth-m2m"
    )


def mlflow_client(server: ServingServer, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from mlflow.deployments import get_deploy_client

    monkeypatch.setenv("DATABRICKS_HOST", server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", server.token)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    return get_deploy_client("databricks")


@pytest.fixture(scope="module")
def endpoint(serving_server: ServingServer) -> Iterator[str]:
    """One route-optimized iris endpoint shared by this module's tests (each touches its own fields)."""
    body = {"name": EP, "config": {"served_entities": [entity("iris-lr", 1)]}, "route_optimized": True}
    response = serving_server.api("POST", "api/2.0/serving-endpoints", json=body)
    assert response.status_code == 200, response.text
    assert serving_server.wait_settled(EP)["state"]["ready"] == "READY"
    yield EP
    serving_server.delete(EP)


# --------------------------------------------------------------------------- databricks-sdk
def test_sdk_patch_tags_shows_them_in_get_and_list(serving_server: ServingServer, endpoint: str) -> None:
    from databricks.sdk.service.serving import EndpointTag

    w = workspace(serving_server)
    tags = w.serving_endpoints.patch(
        endpoint, add_tags=[EndpointTag(key="team", value="ml"), EndpointTag(key="tmp", value="x")]
    )
    assert {t.key: t.value for t in tags.tags}.items() >= {"team": "ml", "tmp": "x"}.items()
    tags = w.serving_endpoints.patch(endpoint, delete_tags=["tmp"])
    assert "tmp" not in {t.key for t in tags.tags}
    assert {t.key: t.value for t in w.serving_endpoints.get(endpoint).tags}["team"] == "ml"
    listed = next(e for e in w.serving_endpoints.list() if e.name == endpoint)
    assert {t.key: t.value for t in listed.tags}["team"] == "ml"


def test_sdk_put_rate_limits_maps_onto_the_ai_gateway(serving_server: ServingServer, endpoint: str) -> None:
    from databricks.sdk.service.serving import RateLimit, RateLimitKey, RateLimitRenewalPeriod

    w = workspace(serving_server)
    limit = RateLimit(calls=1000, key=RateLimitKey.ENDPOINT, renewal_period=RateLimitRenewalPeriod.MINUTE)
    answer = w.serving_endpoints.put(endpoint, rate_limits=[limit])
    assert answer.rate_limits == [limit]
    gateway = w.serving_endpoints.get(endpoint).ai_gateway
    assert gateway.rate_limits[0].calls == 1000
    w.serving_endpoints.put(endpoint, rate_limits=[])


def test_sdk_put_ai_gateway_round_trips(serving_server: ServingServer, endpoint: str) -> None:
    from databricks.sdk.errors import InvalidParameterValue
    from databricks.sdk.service.serving import (
        AiGatewayGuardrails,
        AiGatewayRateLimit,
        AiGatewayRateLimitKey,
        AiGatewayRateLimitRenewalPeriod,
        AiGatewayUsageTrackingConfig,
    )

    w = workspace(serving_server)
    limit = AiGatewayRateLimit(
        calls=500, key=AiGatewayRateLimitKey.USER, renewal_period=AiGatewayRateLimitRenewalPeriod.MINUTE
    )
    answer = w.serving_endpoints.put_ai_gateway(
        endpoint, rate_limits=[limit], usage_tracking_config=AiGatewayUsageTrackingConfig(enabled=False)
    )
    assert answer.rate_limits == [limit] and answer.usage_tracking_config.enabled is False
    assert w.serving_endpoints.get(endpoint).ai_gateway.rate_limits == [limit]
    with pytest.raises(InvalidParameterValue, match="guardrails"):
        w.serving_endpoints.put_ai_gateway(endpoint, guardrails=AiGatewayGuardrails())
    w.serving_endpoints.put_ai_gateway(endpoint)


def test_sdk_update_notifications(serving_server: ServingServer, endpoint: str) -> None:
    from databricks.sdk.service.serving import EmailNotifications

    w = workspace(serving_server)
    wanted = EmailNotifications(
        on_update_failure=["oncall@example.com"], on_update_success=["me@example.com"]
    )
    answer = w.serving_endpoints.update_notifications(endpoint, email_notifications=wanted)
    assert answer.email_notifications == wanted and answer.name == endpoint
    assert w.serving_endpoints.get(endpoint).email_notifications == wanted


def test_sdk_patch_telemetry_config(serving_server: ServingServer, endpoint: str) -> None:
    from databricks.sdk.service.serving import TelemetryConfig, TelemetryFeature

    w = workspace(serving_server)
    config = TelemetryConfig(enabled_telemetry_features=[TelemetryFeature.TELEMETRY_FEATURE_LOGS])
    answer = w.serving_endpoints.patch_telemetry_config(endpoint, telemetry_config=config)
    assert answer.telemetry_config == config
    assert w.serving_endpoints.patch_telemetry_config(endpoint).telemetry_config is None


def test_sdk_get_open_api(serving_server: ServingServer, endpoint: str) -> None:
    w = workspace(serving_server)
    doc = json.loads(w.serving_endpoints.get_open_api(endpoint).contents.read())
    assert doc["openapi"].startswith("3.")
    assert list(doc["paths"]) == ["/served-models/iris-lr-1/invocations"]
    schema = doc["paths"]["/served-models/iris-lr-1/invocations"]["post"]["requestBody"]["content"]
    records = schema["application/json"]["schema"]["oneOf"][1]["properties"]["dataframe_records"]
    assert set(records["items"]["properties"]) == set(IRIS_COLUMNS)


def test_sdk_data_plane_query_goes_through_the_route_optimized_listener(
    serving_server: ServingServer, endpoint: str
) -> None:
    from databricks.sdk.service.serving import DataframeSplitInput

    w = m2m_workspace(serving_server)
    detail = w.serving_endpoints.get(endpoint)  # the M2M token authenticates the control plane too
    assert detail.route_optimized is True
    url = detail.data_plane_info.query_info.endpoint_url
    assert url == detail.endpoint_url and not url.startswith(serving_server.url)
    answer = w.serving_endpoints_data_plane.query(
        endpoint, dataframe_split=DataframeSplitInput(columns=IRIS_COLUMNS, data=IRIS_ROWS)
    )
    assert answer.predictions == [0, 2, 1]
    # the listener takes only endpoint-scoped tokens: not the server's token, not an all-apis token
    for token in (serving_server.token, "jsv1.forged.sig"):
        denied = requests.post(
            url, json=iris_split(), headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert denied.status_code == 401 and denied.json()["error_code"] == "UNAUTHENTICATED"


def data_plane_token(server: ServingServer, endpoint: str) -> tuple[str, str]:
    """The endpoint's route-optimized URL and a token for it, obtained as the SDK does."""
    info = server.get(endpoint)["data_plane_info"]["query_info"]
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": server.token,
        "authorization_details": info["authorization_details"],
    }
    token = requests.post(server.url + "oidc/v1/token", data=grant, timeout=30).json()["access_token"]
    return info["endpoint_url"], token


def test_route_optimized_listener_answers_every_path_and_method_in_databricks_form(
    serving_server: ServingServer, endpoint: str
) -> None:
    url, token = data_plane_token(serving_server, endpoint)
    auth = {"Authorization": f"Bearer {token}"}
    base = url.removesuffix(f"/serving-endpoints/{endpoint}/invocations")
    with requests.Session() as session:  # one keep-alive connection through every case
        served = session.post(
            f"{base}/serving-endpoints/{endpoint}/served-models/iris-lr-1/invocations",
            json=iris_split(), headers=auth, timeout=30,
        )  # fmt: skip
        assert served.status_code == 200 and served.json()["predictions"] == [0, 2, 1]
        assert served.headers["served-model-name"] == "iris-lr-1" and served.headers["x-request-id"]
        cases = [
            ("GET", url, 405, "BAD_REQUEST"),
            ("POST", f"{base}/api/2.0/serving-endpoints", 404, "ENDPOINT_NOT_FOUND"),
            ("POST", f"{base}/serving-endpoints/other-ep/invocations", 403, "PERMISSION_DENIED"),
            ("POST", f"{base}/serving-endpoints/{endpoint}/served-models/nope/invocations", 404,
             "RESOURCE_DOES_NOT_EXIST"),
        ]  # fmt: skip
        for method, target, status, code in cases:
            answer = session.request(method, target, json=iris_split(), headers=auth, timeout=30)
            assert (answer.status_code, answer.json()["error_code"]) == (status, code), (target, answer.text)
            assert answer.headers["x-request-id"]
        assert session.get(url, headers=auth, timeout=30).headers["Allow"] == "POST"
        unsupported = session.post(
            url, data="a,b", headers={**auth, "Content-Type": "text/plain"}, timeout=30
        )
        assert unsupported.status_code == 415 and unsupported.json()["error_code"] == "BAD_REQUEST"
        limit = 16 * 1024 * 1024  # the server's default max_request_bytes
        big = session.post(url, data=b"x" * (limit + 1), headers=auth, timeout=60)
        assert big.status_code == 413 and str(limit) in big.json()["message"]
    again = requests.post(url, json=iris_split(), headers=auth, timeout=30)  # a fresh connection still works
    assert again.status_code == 200 and again.json()["predictions"] == [0, 2, 1]


def test_sdk_provisioned_throughput_and_http_request_say_they_are_out_of_scope(
    serving_server: ServingServer,
) -> None:
    from databricks.sdk.errors import DatabricksError
    from databricks.sdk.service.serving import ExternalFunctionRequestHttpMethod, PtEndpointCoreConfig

    w = workspace(serving_server)
    with pytest.raises(DatabricksError, match="Provisioned-throughput") as pt:
        w.serving_endpoints.create_provisioned_throughput_endpoint(
            name="pt-ep", config=PtEndpointCoreConfig(served_entities=[])
        )
    assert pt.value.error_code == "FEATURE_DISABLED"
    with pytest.raises(DatabricksError, match="External functions"):
        w.serving_endpoints.http_request(conn="c", method=ExternalFunctionRequestHttpMethod.GET, path="/x")


def test_workload_types_outside_the_sdks_enum_are_refused(serving_server: ServingServer) -> None:
    """The SDK reads a workload_type outside its enum as None, so the server must not accept one."""
    from databricks.sdk.service.serving import ServingModelWorkloadType

    response = serving_server.create(
        "gpu2", {"served_entities": [entity("iris-lr", workload_type="GPU_LARGE_2")]}
    )
    assert response.status_code == 400 and "workload_type" in response.json()["message"]
    assert "GPU_LARGE_2" not in {t.value for t in ServingModelWorkloadType}


# --------------------------------------------------------------------------- every field of the SDK's inputs
# A sample value for each field of the SDK's create inputs, and whether it is applied (then it reads
# back equal) or refused (400 naming it). A field the SDK adds fails the coverage assertion below.
APPLIED_ENTITY = {
    "entity_name": "iris-lr",
    "entity_version": "1",
    "name": "all-fields",
    "workload_size": "Small",
    "workload_type": "CPU",
    "scale_to_zero_enabled": False,
    "environment_vars": {"GREETING": "hi"},
    "burst_scaling_enabled": False,
}
REFUSED_ENTITY = {
    "external_model": {"name": "gpt", "provider": "openai", "task": "llm/v1/chat"},
    "instance_profile_arn": "arn:aws:iam::1:instance-profile/x",
    "max_provisioned_throughput": 100,
    "min_provisioned_throughput": 0,
    "provisioned_model_units": 1,
}
# applied in place of workload_size (the two are mutually exclusive)
CONCURRENCY = {"min_provisioned_concurrency": 0, "max_provisioned_concurrency": 4}
APPLIED_ENDPOINT = {
    "description": "every field",
    "budget_policy_id": "bp-1",
    "route_optimized": True,
    "tags": [{"key": "k", "value": "v"}],
    "email_notifications": {"on_update_failure": ["a@example.com"]},
    "telemetry_config": {"enabled_telemetry_features": ["TELEMETRY_FEATURE_METRICS"]},
    "ai_gateway": {
        "rate_limits": [{"calls": 100, "key": "endpoint", "renewal_period": "minute"}],
        "usage_tracking_config": {"enabled": True},
        "inference_table_config": {"catalog_name": "main", "schema_name": "sfx", "enabled": True},
        "fallback_config": {"enabled": False},
    },
}
REFUSED_ENDPOINT = {
    "rate_limits": [{"calls": 1, "key": "endpoint", "renewal_period": "minute"}],  # with ai_gateway's
}
REFUSED_GATEWAY = {"guardrails": {"input": {"safety": True}}}


def test_every_field_of_the_sdk_create_inputs_is_applied_or_refused_by_name(
    serving_server: ServingServer,
) -> None:
    from databricks.sdk.service import serving

    def names(cls: type) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    assert names(serving.ServedEntityInput) == set(APPLIED_ENTITY) | set(REFUSED_ENTITY) | set(CONCURRENCY)
    assert names(serving.AiGatewayConfig) == set(APPLIED_ENDPOINT["ai_gateway"]) | set(REFUSED_GATEWAY)
    create_params = set(serving.ServingEndpointsAPI.create.__code__.co_varnames[1:11])
    assert create_params == {"name", "config", *APPLIED_ENDPOINT, *REFUSED_ENDPOINT}
    assert names(serving.EndpointCoreConfigInput) == {
        "name", "served_entities", "served_models", "traffic_config", "auto_capture_config"
    }  # fmt: skip

    def create(name: str, entity_fields: dict[str, Any], **endpoint_fields: Any) -> requests.Response:
        config = {"name": name, "served_entities": [entity_fields]}
        return serving_server.create(name, config, **endpoint_fields)

    for field, value in REFUSED_ENTITY.items():
        response = create("refused", {**APPLIED_ENTITY, field: value})
        assert response.status_code == 400, (field, response.text)
        assert (
            response.json()["error_code"] == "INVALID_PARAMETER_VALUE" and field in response.json()["message"]
        )
    for field, value in {
        **REFUSED_ENDPOINT,
        "ai_gateway": {**APPLIED_ENDPOINT["ai_gateway"], **REFUSED_GATEWAY},
    }.items():
        response = create("refused", APPLIED_ENTITY, **{**APPLIED_ENDPOINT, field: value})
        assert response.status_code == 400, (field, response.text)
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    sized = {**{k: v for k, v in APPLIED_ENTITY.items() if k != "workload_size"}, **CONCURRENCY}
    response = create("sized", sized)
    assert response.status_code == 200, response.text
    echoed = response.json()["pending_config"]["served_entities"][0]
    assert {k: echoed[k] for k in CONCURRENCY} == CONCURRENCY and "workload_size" not in echoed
    serving_server.delete("sized")

    response = create("all-fields", APPLIED_ENTITY, **APPLIED_ENDPOINT)
    assert response.status_code == 200, response.text
    try:
        got = serving_server.wait_settled("all-fields")
        typed = serving.ServingEndpointDetailed.from_dict(got)
        assert typed.as_dict()["config"]["served_entities"][0]["workload_type"] == "CPU"
        served = got["config"]["served_entities"][0]
        assert {k: served[k] for k in APPLIED_ENTITY} == APPLIED_ENTITY
        for field in ("description", "budget_policy_id", "route_optimized", "tags", "email_notifications"):
            assert got[field] == APPLIED_ENDPOINT[field], field
        assert got["telemetry_config"] == APPLIED_ENDPOINT["telemetry_config"]
        gateway = got["ai_gateway"]
        assert gateway["rate_limits"] == APPLIED_ENDPOINT["ai_gateway"]["rate_limits"]
        assert gateway["usage_tracking_config"] == {"enabled": True}
        assert gateway["fallback_config"] == {"enabled": False}
        capture = got["config"]["auto_capture_config"]  # the gateway's inference table is the payload table
        assert (capture["catalog_name"], capture["schema_name"]) == ("main", "sfx")
        assert capture["state"]["payload_table"]["name"] == "all-fields_payload"
        assert got["data_plane_info"]["query_info"]["endpoint_url"] == got["endpoint_url"]
    finally:
        serving_server.delete("all-fields")


# --------------------------------------------------------------------------- over HTTP: limits, usage, routes
def test_rate_limit_refuses_the_call_after_n_and_renews_and_usage_counts_every_request(
    start_server: Callable[..., ServingServer],
) -> None:
    from deltalake import DeltaTable

    window = 4.0
    server = start_server("--rate-limit-window-s", str(window), "--capture-flush-s", "0.2")
    server.create_ready("limited", {"served_entities": [entity("iris-lr", 1)]})
    gateway = {
        "rate_limits": [{"calls": 3, "key": "user", "renewal_period": "minute"}],
        "usage_tracking_config": {"enabled": True},
    }
    assert server.api("PUT", "api/2.0/serving-endpoints/limited/ai-gateway", json=gateway).status_code == 200
    path = server.state_dir / "catalog" / "system" / "serving" / "endpoint_usage"
    assert DeltaTable.is_deltatable(str(path))  # created with the setting, not by the first commit
    sent = 0
    started = time.monotonic()
    for _ in range(3):
        assert server.invoke("limited", iris_split()).status_code == 200
        sent += 1
    refused = server.invoke("limited", iris_split())
    sent += 1
    assert time.monotonic() - started < window, "the machine was too slow to test a window this short"
    assert refused.status_code == 429, refused.text
    assert refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED"
    assert 1 <= int(refused.headers["Retry-After"]) <= window

    def renewed() -> bool:
        nonlocal sent
        sent += 1
        return server.invoke("limited", iris_split()).status_code == 200

    eventually(renewed, window + 10, 0.5, "the rate-limit window renewing")
    table = server.get("limited")
    assert table["ai_gateway"]["usage_tracking_config"] == {"enabled": True}

    def rows() -> Any:
        if not DeltaTable.is_deltatable(str(path)):
            return None
        frame = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
        return frame if len(frame) == sent else None

    got = eventually(rows, 30, 0.1, "every request in the usage table")
    assert {r["endpoint_name"] for r in got} == {"limited"}
    assert sorted(r["status_code"] for r in got).count(429) == sent - 4
    ok = next(r for r in got if r["status_code"] == 200)
    assert ok["requester"] == "token" and ok["served_entity_name"] == "iris-lr-1"
    assert ok["request_bytes"] == len(json.dumps(iris_split())) and ok["response_bytes"] > 0


def test_content_types_answer_as_mlflows_scoring_server(serving_server: ServingServer, endpoint: str) -> None:
    body = json.dumps(iris_split())
    for content_type in ("text/plain", "application/json; something=something"):
        response = serving_server.invoke(endpoint, data=body, headers={"Content-Type": content_type})
        assert response.status_code == 415, (content_type, response.text)
        assert response.json()["error_code"] == "BAD_REQUEST"
    ok = serving_server.invoke(
        endpoint, data=body, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "api/2.0/no-such-api", 404, "ENDPOINT_NOT_FOUND"),
        ("POST", "api/2.0/clusters/create", 404, "ENDPOINT_NOT_FOUND"),
        ("PUT", "api/2.0/serving-endpoints/pt/x/config", 400, "FEATURE_DISABLED"),
        # The OpenAI route hands the request to the endpoint `model` names: iris refuses chat input.
        ("POST", "serving-endpoints/chat/completions", 400, "INVALID_PARAMETER_VALUE"),
    ],
)
def test_unknown_and_out_of_scope_routes_answer_databricks_errors(
    serving_server: ServingServer, endpoint: str, method: str, path: str, status: int, code: str
) -> None:
    response = serving_server.api(method, path, json={"model": endpoint, "messages": []})
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error_code"] == code


@pytest.mark.parametrize(
    ("method", "route", "body", "field"),
    [
        ("PUT", "rate-limits", {"rate_limits": [{"calls": 5, "renewal_period": {}}]}, "renewal_period"),
        ("PUT", "rate-limits", {"rate_limits": [{"calls": 5, "key": ""}]}, "key"),
        ("PUT", "rate-limits", {"name": 7, "rate_limits": []}, "name"),
        (
            "PATCH",
            "notifications",
            {"email_notifications": {"on_update_success": ["ops@"]}},
            "on_update_success",
        ),
        ("PATCH", "tags", {"add_tags": [{"key": "k" * 256}]}, "add_tags[0].key"),
        ("PATCH", "tags", {"add_tags": [{"key": "k", "value": "v" * 1025}]}, "add_tags[0].value"),
        (
            "PATCH",
            "telemetry-config",
            {"telemetry_config": {"inference_table_config": {"sampling_fraction": 2}}},
            "sampling_fraction",
        ),
        ("PUT", "ai-gateway", {"inference_table_config": {"enabled": False, "state": {}}}, "state"),
    ],
)
def test_settings_routes_refuse_what_the_spec_refuses_by_name(
    serving_server: ServingServer, endpoint: str, method: str, route: str, body: dict[str, Any], field: str
) -> None:
    """Found by the schemathesis fuzz (benchmarks/fuzz_openapi.py): each was once accepted, or defaulted."""
    response = serving_server.api(method, f"api/2.0/serving-endpoints/{endpoint}/{route}", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert field in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("PUT", "rate-limits", {"rate_limits": [{"calls": 5, "key": None, "renewal_period": None}]}),
        ("PATCH", "notifications", {"email_notifications": {"on_update_success": None}}),
        ("PATCH", "tags", {"add_tags": [{"key": "fuzz", "value": None}], "delete_tags": None}),
        ("PATCH", "telemetry-config", None),
        ("PUT", "ai-gateway", {"inference_table_config": None, "rate_limits": []}),
    ],
)
def test_settings_routes_read_null_as_absent(
    serving_server: ServingServer, endpoint: str, method: str, route: str, body: dict[str, Any] | None
) -> None:
    """Protobuf's JSON mapping, which Databricks' API follows: a null field is the field left out
    (server/openapi.yaml lets these fields be null; a PATCH .../telemetry-config may have no body)."""
    response = serving_server.api(method, f"api/2.0/serving-endpoints/{endpoint}/{route}", json=body)
    assert response.status_code == 200, response.text
    if route == "rate-limits":
        assert response.json()["rate_limits"] == [{"calls": 5, "key": "endpoint", "renewal_period": "minute"}]
        serving_server.api(
            "PUT", f"api/2.0/serving-endpoints/{endpoint}/rate-limits", json={"rate_limits": []}
        )
    if route == "tags":
        assert {"key": "fuzz"} in response.json()["tags"]


def test_oauth_token_route_refuses_bad_grants(serving_server: ServingServer, endpoint: str) -> None:
    url = serving_server.url + "oidc/v1/token"
    wrong = requests.post(url, data={"grant_type": "client_credentials"}, auth=("me", "wrong"), timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": serving_server.token}
    no_details = requests.post(url, data=grant, timeout=30)
    assert no_details.status_code == 400 and no_details.json()["error"] == "invalid_request"
    details = serving_server.get(endpoint)["data_plane_info"]["query_info"]["authorization_details"]
    token = requests.post(url, data={**grant, "authorization_details": details}, timeout=30).json()
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    other = requests.get(
        serving_server.url + "api/2.0/serving-endpoints",
        headers={"Authorization": f"Bearer {token['access_token']}"},
        timeout=30,
    )
    assert other.status_code == 401  # an endpoint-scoped token is not a control-plane credential


# --------------------------------------------------------------------------- MLflow's databricks client
def test_mlflow_update_endpoint_tags(
    serving_server: ServingServer, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow_client(serving_server, monkeypatch)
    answer = client.update_endpoint_tags(endpoint, {"add_tags": [{"key": "via", "value": "mlflow"}]})
    assert {"key": "via", "value": "mlflow"} in answer["tags"]
    assert {"key": "via", "value": "mlflow"} in client.get_endpoint(endpoint)["tags"]


def test_mlflow_update_endpoint_rate_limits_and_update_endpoint(
    serving_server: ServingServer, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow_client(serving_server, monkeypatch)
    limits = {"rate_limits": [{"calls": 900, "key": "user", "renewal_period": "minute"}]}
    assert client.update_endpoint_rate_limits(endpoint, limits)["rate_limits"] == limits["rate_limits"]
    with pytest.warns(UserWarning, match="deprecated"):  # MLflow still routes rate_limits through it
        answer = client.update_endpoint(endpoint, {"rate_limits": []})
    assert answer["rate_limits"] == []
    assert client.get_endpoint(endpoint)["ai_gateway"]["rate_limits"] == []


def test_mlflow_update_endpoint_ai_gateway(
    serving_server: ServingServer, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow_client(serving_server, monkeypatch)
    config = {"usage_tracking_config": {"enabled": False}, "rate_limits": []}
    assert client.update_endpoint_ai_gateway(endpoint, config) == config


def test_mlflow_create_endpoint_route_optimized(
    serving_server: ServingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = mlflow_client(serving_server, monkeypatch)
    # MLflow's full-payload form conflicts with its own route_optimized=False default: use its older form
    with pytest.warns(UserWarning, match="deprecated"):
        created = client.create_endpoint(
            name="mlflow-ro",
            config={"served_entities": [entity("iris-lr", 1)], "tags": [{"key": "a", "value": "b"}]},
            route_optimized=True,
        )
    try:
        assert created["route_optimized"] is True and created["tags"] == [{"key": "a", "value": "b"}]
        assert "endpoint_url" in created
    finally:
        client.delete_endpoint("mlflow-ro")
