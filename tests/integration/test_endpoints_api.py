"""The control plane over real HTTP: create/get/list/delete in Databricks' wire format, and its errors."""

from __future__ import annotations

import pytest
import requests
from serving_support import ServingServer, entity


def test_well_known_config_needs_no_auth(serving_server: ServingServer) -> None:
    response = requests.get(serving_server.url + ".well-known/databricks-config", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"oidc_endpoint": serving_server.url + "oidc"}


@pytest.mark.parametrize(
    "path", ["api/2.0/serving-endpoints", "api/2.0/serving-endpoints/x", "api/2.0/jupyter-serving/health"]
)
def test_every_other_route_requires_the_token(serving_server: ServingServer, path: str) -> None:
    anonymous = requests.get(serving_server.url + path, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error_code"] == "UNAUTHENTICATED"
    wrong = requests.get(serving_server.url + path, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code == 401


def test_token_header_forms_databricks_clients_use(serving_server: ServingServer) -> None:
    url = serving_server.url + "api/2.0/serving-endpoints"
    for auth in (
        ("Authorization", f"token {serving_server.token}"),
        ("Authorization", f"Bearer {serving_server.token}"),
    ):
        assert requests.get(url, headers=dict([auth]), timeout=10).status_code == 200
    assert (
        requests.get(url, auth=("token", serving_server.token), timeout=10).status_code == 200
    )  # curl -u token:T


def test_create_reports_progress_then_ready(serving_server: ServingServer) -> None:
    response = serving_server.create("api-life", {"served_entities": [entity("iris-lr", 1)]})
    assert response.status_code == 200
    created = response.json()
    assert created["name"] == "api-life"
    assert created["state"] == {"ready": "NOT_READY", "config_update": "IN_PROGRESS"}
    assert "config" not in created
    pending = created["pending_config"]
    assert pending["config_version"] == 1
    assert pending["traffic_config"] == {
        "routes": [{"served_model_name": "iris-lr-1", "traffic_percentage": 100}]
    }
    assert pending["served_entities"][0]["state"]["deployment"] == "DEPLOYMENT_CREATING"
    ready = serving_server.wait_settled("api-life")
    assert ready["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert "pending_config" not in ready
    served = ready["config"]["served_entities"][0]
    assert served["name"] == "iris-lr-1"
    assert (served["entity_name"], served["entity_version"]) == ("iris-lr", "1")
    assert served["state"] == {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""}
    assert served["local"]["replicas"] == 1
    for key in ("id", "creator", "creation_timestamp", "last_updated_timestamp"):
        assert ready[key]
    listed = serving_server.api("GET", "api/2.0/serving-endpoints/").json()  # MLflow's trailing slash
    summary = next(e for e in listed["endpoints"] if e["name"] == "api-life")
    assert summary["config"]["served_entities"] == [
        {"name": "iris-lr-1", "entity_name": "iris-lr", "entity_version": "1"}
    ]
    assert summary["state"]["ready"] == "READY"
    deleted = serving_server.delete("api-life")
    assert (deleted.status_code, deleted.json()) == (200, {})
    assert serving_server.api("GET", "api/2.0/serving-endpoints/api-life").status_code == 404
    assert all(
        e["name"] != "api-life"
        for e in serving_server.api("GET", "api/2.0/serving-endpoints").json()["endpoints"]
    )


def test_three_level_names_and_models_uris_get_databricks_default_names(
    serving_server: ServingServer,
) -> None:
    config = {
        "served_entities": [
            entity("main.default.iris", 1),
            {"entity_name": "models:/iris-lr/2", "workload_size": "Small"},
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "iris-1", "traffic_percentage": "50"},
                {"served_model_name": "iris-lr-2", "traffic_percentage": 50},
            ]
        },
    }
    endpoint = serving_server.create_ready("api-names", config)
    names = [e["name"] for e in endpoint["config"]["served_entities"]]
    assert names == ["iris-1", "iris-lr-2"]
    assert endpoint["config"]["traffic_config"]["routes"][0]["traffic_percentage"] == 50
    serving_server.delete("api-names")


def test_legacy_served_models_are_echoed_as_served_models(serving_server: ServingServer) -> None:
    config = {
        "served_models": [
            {
                "model_name": "iris-lr",
                "model_version": "1",
                "workload_size": "Small",
                "scale_to_zero_enabled": False,
            }
        ]
    }
    endpoint = serving_server.create_ready("api-legacy", config)
    served = endpoint["config"]["served_models"][0]
    assert (served["name"], served["model_name"], served["model_version"]) == ("iris-lr-1", "iris-lr", "1")
    serving_server.delete("api-legacy")


@pytest.mark.parametrize(
    ("body", "status", "code", "fragment"),
    [
        (
            {"name": "bad.name", "config": {"served_entities": [entity("iris-lr")]}},
            400,
            "INVALID_PARAMETER_VALUE",
            "alphanumeric",
        ),
        (
            {"name": "databricks-x", "config": {"served_entities": [entity("iris-lr")]}},
            400,
            "INVALID_PARAMETER_VALUE",
            "reserved",
        ),
        (
            {"name": "x" * 64, "config": {"served_entities": [entity("iris-lr")]}},
            400,
            "INVALID_PARAMETER_VALUE",
            "too long",
        ),
        (
            {"name": "e1", "config": {"served_entities": []}},
            400,
            "INVALID_PARAMETER_VALUE",
            "at least one served entity",
        ),
        ({"name": "e1"}, 400, "INVALID_PARAMETER_VALUE", "config"),
        (
            {"name": "e1", "config": {"served_entities": [entity("no-such-model")]}},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "no-such-model",
        ),
        (
            {"name": "e1", "config": {"served_entities": [entity("iris-lr", 99)]}},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "version '99'",
        ),
        (
            {"name": "e1", "config": {"served_entities": [entity("iris-lr", "one")]}},
            400,
            "INVALID_PARAMETER_VALUE",
            "version",
        ),
        (
            {
                "name": "e1",
                "config": {
                    "served_entities": [entity("iris-lr", 1), entity("iris-lr", 1)],
                    "traffic_config": {
                        "routes": [{"served_model_name": "iris-lr-1", "traffic_percentage": 100}]
                    },
                },
            },
            400,
            "INVALID_PARAMETER_VALUE",
            "more than once",
        ),
        (
            {
                "name": "e1",
                "config": {
                    "served_entities": [entity("iris-lr", 1), entity("iris-lr", 2)],
                    "traffic_config": {
                        "routes": [
                            {"served_model_name": "iris-lr-1", "traffic_percentage": 60},
                            {"served_model_name": "iris-lr-2", "traffic_percentage": 30},
                        ]
                    },
                },
            },
            400,
            "INVALID_PARAMETER_VALUE",
            "sum to 100",
        ),
        (
            {
                "name": "e1",
                "config": {
                    "served_entities": [entity("iris-lr", 1)],
                    "traffic_config": {"routes": [{"served_model_name": "ghost", "traffic_percentage": 100}]},
                },
            },
            400,
            "INVALID_PARAMETER_VALUE",
            "ghost",
        ),
        (
            {
                "name": "e1",
                "config": {"served_entities": [{**entity("iris-lr"), "min_provisioned_concurrency": 4}]},
            },
            400,
            "INVALID_PARAMETER_VALUE",
            "mutually exclusive",
        ),
    ],
)
def test_invalid_create_requests_get_databricks_errors(
    serving_server: ServingServer, body: dict, status: int, code: str, fragment: str
) -> None:
    response = serving_server.api("POST", "api/2.0/serving-endpoints", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error_code"] == code
    assert fragment in error["message"]
    assert serving_server.api("GET", f"api/2.0/serving-endpoints/{body['name']}").status_code == 404


def test_malformed_json_is_a_clear_400(serving_server: ServingServer) -> None:
    response = serving_server.api("POST", "api/2.0/serving-endpoints", data=b"{not json")
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "not valid JSON" in response.json()["message"]


def test_duplicate_name_is_a_conflict(serving_server: ServingServer) -> None:
    serving_server.create_ready("api-dup", {"served_entities": [entity("iris-lr", 1)]})
    again = serving_server.create("api-dup", {"served_entities": [entity("iris-lr", 1)]})
    assert again.status_code == 409
    assert again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    serving_server.delete("api-dup")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "api/2.0/serving-endpoints/ghost"),
        ("DELETE", "api/2.0/serving-endpoints/ghost"),
        ("PUT", "api/2.0/serving-endpoints/ghost/config"),
        ("GET", "api/2.0/serving-endpoints/ghost/metrics"),
        ("GET", "api/2.0/serving-endpoints/ghost/served-models/x/logs"),
        ("POST", "serving-endpoints/ghost/invocations"),
    ],
)
def test_unknown_endpoint_is_resource_does_not_exist(
    serving_server: ServingServer, method: str, path: str
) -> None:
    response = serving_server.api(method, path, json={"served_entities": [entity("iris-lr")]})
    assert response.status_code == 404
    assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert "ghost" in response.json()["message"]


def test_unknown_route_is_endpoint_not_found(serving_server: ServingServer) -> None:
    response = serving_server.api("GET", "api/2.0/serving-endpoints/a/b/c")
    assert response.status_code == 404
    assert response.json()["error_code"] == "ENDPOINT_NOT_FOUND"
