"""The real Databricks clients, unchanged, against the standalone server: databricks-sdk and MLflow."""

from __future__ import annotations

import datetime

import pytest
from serving_support import IRIS_COLUMNS, IRIS_ROWS, ServingServer


def workspace(server: ServingServer):  # type: ignore[no-untyped-def]
    from databricks.sdk import WorkspaceClient

    return WorkspaceClient(host=server.url, token=server.token, auth_type="pat")


def test_databricks_sdk_lifecycle(serving_server: ServingServer) -> None:
    from databricks.sdk.service.serving import (
        DataframeSplitInput,
        EndpointCoreConfigInput,
        EndpointStateConfigUpdate,
        EndpointStateReady,
        ServedEntityInput,
        TrafficConfig,
    )

    w = workspace(serving_server)
    entity = ServedEntityInput(
        entity_name="iris-lr", entity_version="1", workload_size="Small", scale_to_zero_enabled=False
    )
    endpoint = w.serving_endpoints.create_and_wait(
        name="sdk-ep",
        config=EndpointCoreConfigInput(name="sdk-ep", served_entities=[entity]),
        timeout=datetime.timedelta(minutes=3),
    )
    assert endpoint.state.ready == EndpointStateReady.READY
    assert endpoint.state.config_update == EndpointStateConfigUpdate.NOT_UPDATING
    assert endpoint.config.served_entities[0].name == "iris-lr-1"
    assert w.serving_endpoints.get("sdk-ep").config.config_version == 1
    assert "sdk-ep" in [e.name for e in w.serving_endpoints.list()]

    response = w.serving_endpoints.query(
        name="sdk-ep",
        dataframe_split=DataframeSplitInput(columns=IRIS_COLUMNS, data=IRIS_ROWS),
        client_request_id="c1",
    )
    assert response.predictions == [0, 2, 1]
    assert response.served_model_name == "iris-lr-1"

    v2 = ServedEntityInput(
        entity_name="iris-lr", entity_version="2", workload_size="Small", scale_to_zero_enabled=False
    )
    updated = w.serving_endpoints.update_config_and_wait(
        name="sdk-ep",
        served_entities=[v2],
        traffic_config=TrafficConfig.from_dict(
            {"routes": [{"served_model_name": "iris-lr-2", "traffic_percentage": 100}]}
        ),
        timeout=datetime.timedelta(minutes=3),
    )
    assert updated.config.config_version == 2
    assert [e.name for e in updated.config.served_entities] == ["iris-lr-2"]
    assert (
        w.serving_endpoints.query(
            name="sdk-ep", dataframe_records=[dict(zip(IRIS_COLUMNS, IRIS_ROWS[0], strict=True))]
        ).served_model_name
        == "iris-lr-2"
    )

    w.serving_endpoints.delete("sdk-ep")
    from databricks.sdk.errors import ResourceDoesNotExist

    with pytest.raises(ResourceDoesNotExist):
        w.serving_endpoints.get("sdk-ep")


def test_databricks_sdk_surfaces_a_failed_deployment(serving_server: ServingServer) -> None:
    from databricks.sdk.errors import OperationFailed
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    w = workspace(serving_server)
    entity = ServedEntityInput(
        entity_name="fail-load", entity_version="1", workload_size="Small", scale_to_zero_enabled=False
    )
    with pytest.raises(OperationFailed, match="UPDATE_FAILED"):
        w.serving_endpoints.create_and_wait(
            name="sdk-fail",
            config=EndpointCoreConfigInput(name="sdk-fail", served_entities=[entity]),
            timeout=datetime.timedelta(minutes=3),
        )
    failed = w.serving_endpoints.get("sdk-fail")
    state = failed.pending_config.served_entities[0].state
    assert state.deployment.value == "DEPLOYMENT_FAILED"
    assert "weights file is corrupt" in state.deployment_state_message
    w.serving_endpoints.delete("sdk-fail")


def test_mlflow_databricks_deployments_target(
    serving_server: ServingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.deployments import get_deploy_client

    monkeypatch.setenv("DATABRICKS_HOST", serving_server.url)
    monkeypatch.setenv("DATABRICKS_TOKEN", serving_server.token)
    monkeypatch.setenv("DATABRICKS_AUTH_TYPE", "pat")
    client = get_deploy_client("databricks")
    created = client.create_endpoint(
        config={
            "name": "mlflow-ep",
            "config": {
                "served_entities": [
                    {
                        "entity_name": "iris-lr",
                        "entity_version": "1",
                        "workload_size": "Small",
                        "scale_to_zero_enabled": False,
                    }
                ]
            },
        }
    )
    assert created["name"] == "mlflow-ep"
    serving_server.wait_settled("mlflow-ep")
    assert client.get_endpoint("mlflow-ep")["state"]["ready"] == "READY"
    assert "mlflow-ep" in [e["name"] for e in client.list_endpoints()]
    prediction = client.predict(
        endpoint="mlflow-ep", inputs={"dataframe_split": {"columns": IRIS_COLUMNS, "data": IRIS_ROWS}}
    )
    assert prediction["predictions"] == [0, 2, 1]
    updated = client.update_endpoint_config(
        endpoint="mlflow-ep",
        config={
            "served_entities": [
                {
                    "entity_name": "iris-lr",
                    "entity_version": "2",
                    "workload_size": "Small",
                    "scale_to_zero_enabled": False,
                }
            ]
        },
    )
    assert updated["name"] == "mlflow-ep"
    assert serving_server.wait_settled("mlflow-ep")["config"]["config_version"] == 2
    assert client.delete_endpoint("mlflow-ep") == {}
    assert "mlflow-ep" not in [e["name"] for e in client.list_endpoints()]
