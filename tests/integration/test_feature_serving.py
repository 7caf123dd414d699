"""Feature Serving end to end: real Delta feature tables, a real MLflow registry, a real server.

A model trained on a training set answers key-only requests exactly as `score_batch` scores the same
keys; a `write_table(mode="merge")` reaches the served predictions without a redeploy; a feature spec
served alone answers with the features; databricks-sdk queries both.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serving_support import MlflowEnv, ServingServer, entity, eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # the module fixture starts two endpoints

TABLE = "main.fs.customers"
MODEL = "fs-customer-model"
SPEC = "fs-customer-features"
REFRESH_S = 0.3
N = 40


@dataclass
class FeatureWorld:
    server: ServingServer
    catalog: Path

    @property
    def client(self) -> Any:
        from jupyter_serving.features import FeatureEngineeringClient

        return FeatureEngineeringClient(self.catalog)


def _register(catalog: Path) -> None:
    """A customers table, a model trained on it through a training set, and a feature spec."""
    import mlflow
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    from jupyter_serving.features import FeatureEngineeringClient, FeatureLookup

    fe = FeatureEngineeringClient(catalog)
    rng = np.random.default_rng(7)
    ids = np.arange(N)
    features = pd.DataFrame({"customer_id": ids, "spend": rng.normal(size=N), "visits": rng.normal(size=N)})
    fe.create_table(TABLE, "customer_id", features, description="per customer")
    labels = pd.DataFrame({"customer_id": ids, "churn": 3 * features.spend - features.visits})
    lookup = FeatureLookup(TABLE, "customer_id")
    training = fe.create_training_set(labels, [lookup], label="churn", exclude_columns=["customer_id"])
    frame = training.load_df()
    model = make_pipeline(SimpleImputer(), LinearRegression()).fit(frame[["spend", "visits"]], frame.churn)
    fe.log_model(
        model,
        "model",
        flavor=mlflow.sklearn,
        training_set=training,
        registered_model_name=MODEL,
        serialization_format="cloudpickle",
        pip_requirements=["scikit-learn"],
    )
    fe.create_feature_spec(
        SPEC, [FeatureLookup(TABLE, "customer_id", rename_outputs={"spend": "total_spend"})]
    )


@pytest.fixture(scope="module")
def world(mlflow_env: MlflowEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureWorld]:
    catalog = tmp_path_factory.mktemp("feature-catalog")
    _register(catalog)
    args = ["--catalog-root", str(catalog), "--feature-refresh-s", str(REFRESH_S), "--capture-flush-s", "0.2"]
    server = ServingServer(tmp_path_factory.mktemp("fs") / "state", mlflow_env.env, args).start()
    try:
        server.create_ready("fs-model", {"served_entities": [entity(MODEL, 1)]})
        server.create_ready("fs-features", {"served_entities": [entity(SPEC, 1)]})
        yield FeatureWorld(server, catalog)
    finally:
        server.stop()


def served_tables(server: ServingServer, endpoint: str) -> list[dict[str, Any]]:
    return server.get(endpoint)["config"]["served_entities"][0]["local"].get("feature_tables", [])


def wait_served_version(world: FeatureWorld, endpoint: str) -> int:
    from deltalake import DeltaTable

    version = DeltaTable(str(world.catalog / "main" / "fs" / "customers")).version()
    eventually(
        lambda: [t["version"] for t in served_tables(world.server, endpoint)] == [version],
        30,
        0.05,
        f"{endpoint} serving version {version}",
    )
    return version


def keys(*ids: int) -> dict[str, Any]:
    return {"dataframe_records": [{"customer_id": i} for i in ids]}


def test_key_only_requests_get_exactly_the_score_batch_predictions(world: FeatureWorld) -> None:
    wait_served_version(world, "fs-model")
    ids = list(range(N))
    expected = world.client.score_batch(f"models:/{MODEL}/1", pd.DataFrame({"customer_id": ids}))
    reply = world.server.invoke("fs-model", keys(*ids))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    np.testing.assert_allclose(body["predictions"], expected["prediction"], rtol=0, atol=1e-12)
    assert body["missing_keys"] == []
    # one key per request (the replica batches concurrent ones): the same answer key by key
    for i in (0, 17, N - 1):
        one = world.server.invoke("fs-model", keys(i)).json()["predictions"]
        assert one == pytest.approx([expected["prediction"][i]], abs=1e-12)


def test_a_missing_key_gets_null_features_and_is_reported(world: FeatureWorld) -> None:
    expected = world.client.score_batch(f"models:/{MODEL}/1", pd.DataFrame({"customer_id": [1, 999]}))
    body = world.server.invoke("fs-model", keys(1, 999)).json()
    assert body["predictions"] == pytest.approx(expected["prediction"].tolist(), abs=1e-12)
    assert body["missing_keys"] == [{"table_name": TABLE, "customer_id": 999}]


def test_a_missing_key_column_is_400_naming_it(world: FeatureWorld) -> None:
    reply = world.server.invoke("fs-model", {"dataframe_records": [{"cust": 1}]})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")
    assert "customer_id" in reply.json()["message"]


def test_feature_serving_endpoint_answers_with_the_features(world: FeatureWorld) -> None:
    wait_served_version(world, "fs-features")
    table = world.client.read_table(TABLE).set_index("customer_id")
    body = world.server.invoke("fs-features", keys(3, 5, 999)).json()
    rows = body["predictions"]
    assert [r["customer_id"] for r in rows] == [3, 5, 999]
    for row in rows[:2]:
        assert row["total_spend"] == pytest.approx(table.loc[row["customer_id"], "spend"], abs=1e-12)
        assert row["visits"] == pytest.approx(table.loc[row["customer_id"], "visits"], abs=1e-12)
    assert rows[2] == {"customer_id": 999, "total_spend": None, "visits": None}
    assert body["missing_keys"] == [{"table_name": TABLE, "customer_id": 999}]


def test_merge_reaches_served_predictions_without_a_redeploy(world: FeatureWorld) -> None:
    before_version = wait_served_version(world, "fs-model")
    config_version = world.server.get("fs-model")["config"]["config_version"]
    new = pd.DataFrame({"customer_id": [4, N + 1], "spend": [50.0, 1.0], "visits": [0.0, 2.0]})
    world.client.write_table(TABLE, new, mode="merge")
    expected = world.client.score_batch(f"models:/{MODEL}/1", pd.DataFrame({"customer_id": [4, N + 1]}))

    def served() -> list[float] | None:
        body = world.server.invoke("fs-model", keys(4, N + 1)).json()
        hit = np.allclose(body["predictions"], expected["prediction"], rtol=0, atol=1e-12)
        return body["predictions"] if hit and not body["missing_keys"] else None

    eventually(served, REFRESH_S + 30, 0.05, "the merged features being served")
    assert world.server.get("fs-model")["config"]["config_version"] == config_version
    assert [t["version"] for t in served_tables(world.server, "fs-model")] == [before_version + 1]
    spec_rows = eventually(
        lambda: world.server.invoke("fs-features", keys(4)).json()["predictions"],
        30,
        0.05,
        "the feature endpoint serving the merge",
        until=lambda rows: rows[0]["total_spend"] == 50.0,
    )
    assert spec_rows[0]["visits"] == 0.0


def test_get_shows_the_served_feature_tables(world: FeatureWorld) -> None:
    tables = served_tables(world.server, "fs-features")
    assert [t["name"] for t in tables] == [TABLE]
    assert tables[0]["rows"] >= N and isinstance(tables[0]["version"], int)


def test_databricks_sdk_queries_both_endpoints(world: FeatureWorld) -> None:
    from databricks.sdk import WorkspaceClient

    w = WorkspaceClient(host=world.server.url, token=world.server.token, auth_type="pat")
    wait_served_version(world, "fs-model")
    expected = world.client.score_batch(f"models:/{MODEL}/1", pd.DataFrame({"customer_id": [2, 6]}))
    model = w.serving_endpoints.query(
        name="fs-model", dataframe_records=[{"customer_id": 2}, {"customer_id": 6}]
    )
    assert model.predictions == pytest.approx(expected["prediction"].tolist(), abs=1e-12)
    wait_served_version(world, "fs-features")
    features = w.serving_endpoints.query(name="fs-features", dataframe_records=[{"customer_id": 2}])
    table = world.client.read_table(TABLE).set_index("customer_id")
    assert features.predictions[0]["total_spend"] == pytest.approx(table.loc[2, "spend"], abs=1e-12)


def test_feature_tracing_logs_the_looked_up_values_in_the_inference_table(world: FeatureWorld) -> None:
    from deltalake import DeltaTable

    capture = {"catalog_name": "main", "schema_name": "fs", "table_name_prefix": "traced", "enabled": True}
    traced = entity(MODEL, 1, environment_vars={"ENABLE_FEATURE_TRACING": "true"})
    endpoint = world.server.create_ready(
        "fs-traced", {"served_entities": [traced], "auto_capture_config": capture}
    )
    wait_served_version(world, "fs-traced")
    table = world.client.read_table(TABLE).set_index("customer_id")
    reply = world.server.invoke("fs-traced", keys(7, 999))
    assert reply.status_code == 200, reply.text
    values = reply.json()["feature_values"]
    assert values[0] == pytest.approx({"spend": table.loc[7, "spend"], "visits": table.loc[7, "visits"]})
    assert values[1] == {"spend": None, "visits": None}
    path = endpoint["config"]["auto_capture_config"]["state"]["payload_table"]["path"]

    def logged() -> dict[str, Any] | None:
        if not Path(path, "_delta_log").exists():
            return None
        frame = DeltaTable(path).to_pandas()
        return frame.iloc[0].to_dict() if len(frame) else None

    row = eventually(logged, 30, 0.05, "the request reaching the inference table")
    assert '"feature_values"' in row["response"] and '"missing_keys"' in row["response"]
    assert world.server.delete("fs-traced").status_code == 200


def test_a_creator_needs_select_on_the_feature_tables(world: FeatureWorld) -> None:
    """Issue 30: serving a feature spec (or a model with lookups) reads its Unity Catalog tables, so
    the creator needs SELECT on them (and USE_CATALOG / USE_SCHEMA above), even for a workspace model."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.errors import PermissionDenied
    from databricks.sdk.service.catalog import PermissionsChange, Privilege
    from databricks.sdk.service.serving import EndpointCoreConfigInput, ServedEntityInput

    server = world.server
    admin = WorkspaceClient(host=server.url.rstrip("/"), token=server.token, auth_type="pat")
    app_id = admin.service_principals.create(display_name="fs-reader").application_id or ""
    token = admin.token_management.create_obo_token(application_id=app_id).token_value
    bot = WorkspaceClient(host=server.url.rstrip("/"), token=token, auth_type="pat")
    served = [ServedEntityInput(entity_name=SPEC, entity_version="1", workload_size="Small")]
    config = EndpointCoreConfigInput(name="fs-granted", served_entities=served)

    def grant(kind: str, name: str, privilege: Privilege) -> None:
        change = PermissionsChange(principal=app_id, add=[privilege])
        admin.grants.update(securable_type=kind, full_name=name, changes=[change])

    with pytest.raises(PermissionDenied, match="USE_CATALOG on catalog 'main'"):
        bot.serving_endpoints.create(name="fs-granted", config=config)
    grant("catalog", "main", Privilege.USE_CATALOG)
    grant("schema", "main.fs", Privilege.USE_SCHEMA)
    with pytest.raises(PermissionDenied, match=f"SELECT on table '{TABLE}'"):
        bot.serving_endpoints.create(name="fs-granted", config=config)
    grant("table", TABLE, Privilege.SELECT)
    assert bot.serving_endpoints.create(name="fs-granted", config=config).response.creator == "fs-reader"
    server.wait_settled("fs-granted")
    assert server.delete("fs-granted").status_code == 200
