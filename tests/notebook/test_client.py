"""`Client` against the real standalone server: every route, the waiters, DataFrames in and out."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from sklearn.datasets import load_iris

from jupyter_serving.notebook.client import (
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    EndpointUpdateFailed,
    NotFoundError,
    ServingClientError,
    parse_metrics,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def iris() -> pd.DataFrame:
    X, _ = load_iris(return_X_y=True, as_frame=True)
    return X.iloc[[0, 60, 120]].set_axis(["setosa", "versicolor", "virginica"])


def test_registered_models_list_the_fixture_versions(client: Client) -> None:
    models = {m["name"]: {v["version"] for v in m["versions"]} for m in client.registered_models()}
    assert {"1", "2"} <= models["iris-lr"]


def test_create_and_wait_reaches_ready(
    client: Client, iris_config: Callable[..., dict], new_name: Callable[[], str]
) -> None:
    name = new_name()
    first = client.create(name, iris_config("1"), description="from the client test")
    assert first["state"]["config_update"] == "IN_PROGRESS"
    endpoint = client.wait(name, timeout=170)
    assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    entity = endpoint["config"]["served_entities"][0]
    assert entity["name"] == "iris-lr-1"
    assert entity["local"]["ready_replicas"] >= 1
    assert name in [e["name"] for e in client.list()]


def test_query_returns_predictions_on_the_input_index(
    client: Client, iris_endpoint: str, iris: pd.DataFrame
) -> None:
    preds = client.query(iris_endpoint, iris)
    assert list(preds.index) == ["setosa", "versicolor", "virginica"]
    assert list(preds["prediction"]) == [0, 1, 2]
    assert preds.attrs["served_model_name"] == "iris-lr-1"


def test_query_takes_a_raw_payload(client: Client, iris_endpoint: str, iris: pd.DataFrame) -> None:
    records = iris.to_dict(orient="records")
    preds = client.query(iris_endpoint, {"dataframe_records": records}, served="iris-lr-1")
    assert list(preds["prediction"]) == [0, 1, 2]
    assert list(preds.index) == [0, 1, 2]


def test_scoring_errors_carry_the_server_message(client: Client, iris_endpoint: str) -> None:
    with pytest.raises(BadRequestError) as info:
        client.query(iris_endpoint, pd.DataFrame({"not a feature": [1.0]}))
    assert info.value.status == 400
    assert info.value.message


def test_errors_are_typed(
    client: Client, iris_config: Callable[..., dict], iris_endpoint: str, serving_server: object
) -> None:
    with pytest.raises(NotFoundError, match="RESOURCE_DOES_NOT_EXIST"):
        client.get("no-such-endpoint")
    with pytest.raises(ConflictError, match="RESOURCE_ALREADY_EXISTS"):
        client.create(iris_endpoint, iris_config("1"))
    with pytest.raises(BadRequestError, match="INVALID_PARAMETER_VALUE"):
        client.create("bad name!", iris_config("1"))
    with pytest.raises(AuthenticationError):
        Client(client.url, "wrong-token").list()


def test_logs_and_metrics(client: Client, iris_endpoint: str, iris: pd.DataFrame) -> None:
    for _ in range(3):
        client.query(iris_endpoint, iris)
    assert isinstance(client.logs(iris_endpoint), str)
    assert client.logs(iris_endpoint, "iris-lr-1") == client.logs(iris_endpoint)
    samples = parse_metrics(client.metrics(iris_endpoint))
    served = [
        v for n, labels, v in samples if n == "requests_total" and labels["served_entity"] == "iris-lr-1"
    ]
    assert sum(served) >= 3


def test_update_traffic_and_served_query(
    client: Client, iris_config: Callable[..., dict], new_name: Callable[[], str], iris: pd.DataFrame
) -> None:
    name = new_name()
    client.create_and_wait(name, iris_config("1"), timeout=170)
    endpoint = client.update_config_and_wait(name, iris_config("1", "2", split=[50, 50]), timeout=170)
    assert endpoint["config"]["config_version"] == 2
    with pytest.raises(ServingClientError, match="serves 2 entities"):
        client.logs(name)
    client.set_traffic(name, {"iris-lr-1": 0, "iris-lr-2": 100})
    endpoint = client.wait(name, timeout=170)
    routes = {
        r["served_model_name"]: r["traffic_percentage"]
        for r in endpoint["config"]["traffic_config"]["routes"]
    }
    assert routes == {"iris-lr-1": 0, "iris-lr-2": 100}
    assert client.query(name, iris).attrs["served_model_name"] == "iris-lr-2"
    assert client.query(name, iris, served="iris-lr-1").attrs["served_model_name"] == "iris-lr-1"
    # The server-side fields of GET were not sent back as user settings.
    assert "local" not in client.get(name)["config"]["served_entities"][0].get("extra", {})


def test_failed_deploy_raises_with_the_deployment_message(
    client: Client, new_name: Callable[[], str]
) -> None:
    name = new_name()
    client.create(name, {"served_entities": [{"entity_name": "fail-load", "entity_version": "1"}]})
    with pytest.raises(EndpointUpdateFailed) as info:
        client.wait(name, timeout=170)
    assert "UPDATE_FAILED" in str(info.value)
    assert "weights file is corrupt" in str(info.value)
    assert info.value.endpoint["state"]["config_update"] == "UPDATE_FAILED"
    with pytest.raises(NotFoundError, match=r"version .99. does not exist"):
        client.create(new_name(), iris_config_unknown_version())


def iris_config_unknown_version() -> dict:
    return {"served_entities": [{"entity_name": "iris-lr", "entity_version": "99"}]}


def test_delete(client: Client, iris_config: Callable[..., dict], new_name: Callable[[], str]) -> None:
    name = new_name()
    client.create(name, iris_config("1"))
    client.delete(name)
    with pytest.raises(NotFoundError):
        client.get(name)
