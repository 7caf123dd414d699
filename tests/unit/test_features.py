"""Feature tables and lookups on real Delta tables: point in time, merges, composite and string keys,
missing keys, background refresh, and the fast path agreeing with the full path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jupyter_serving.features import FeatureEngineeringClient, FeatureLookup
from jupyter_serving.features.index import FeatureIndex
from jupyter_serving.features.spec import FeatureSpec, join_features
from jupyter_serving.features.tables import ServedTables


@pytest.fixture
def fe(tmp_path: Path) -> FeatureEngineeringClient:
    return FeatureEngineeringClient(tmp_path / "catalog")


def utc(*days: str) -> pd.Series:
    return pd.Series(pd.to_datetime(list(days), utc=True))


def test_point_in_time_lookups_pick_the_row_at_or_before_the_timestamp(fe: FeatureEngineeringClient) -> None:
    events = pd.DataFrame(
        {
            "uid": [1, 1, 1, 2],
            "ts": utc("2024-01-01", "2024-01-05", "2024-01-10", "2024-01-03"),
            "v": [1.0, 5.0, 10.0, 3.0],
        }
    )
    fe.create_table("main.t.events", "uid", events, timeseries_column="ts")
    assert fe.get_table("main.t.events").primary_keys == ["uid", "ts"]
    at = utc("2023-12-31", "2024-01-05", "2024-01-06", "2024-02-01", "2024-01-03", "2024-01-02", "2024-01-01")
    query = pd.DataFrame({"uid": [1, 1, 1, 1, 2, 2, 3], "at": at, "y": range(7)})
    lookup = FeatureLookup("main.t.events", "uid", timestamp_lookup_key="at")
    frame = fe.create_training_set(query, [lookup], label="y").load_df()
    assert frame["v"].tolist()[1:5] == [5.0, 5.0, 10.0, 3.0]
    assert frame["v"].isna().tolist() == [True, False, False, False, False, True, True]
    # without the timestamp the latest row per key
    latest = fe.create_training_set(query[["uid", "y"]], [FeatureLookup("main.t.events", "uid")], label="y")
    assert latest.load_df()["v"].tolist()[:5] == [10.0, 10.0, 10.0, 10.0, 3.0]


def test_merge_upserts_by_primary_key_and_new_versions_are_served(fe: FeatureEngineeringClient) -> None:
    fe.create_table("main.t.c", "id", pd.DataFrame({"id": [1, 2], "x": [1.0, 2.0]}))
    tables = ServedTables(["main.t.c"], fe.root)
    assert not tables.refresh("main.t.c")  # nothing new yet
    assert fe.write_table("main.t.c", pd.DataFrame({"id": [2, 3], "x": [20.0, 30.0]})) == 1
    assert fe.read_table("main.t.c").sort_values("id")["x"].tolist() == [1.0, 20.0, 30.0]
    assert tables.refresh("main.t.c")
    index = tables.indexes["main.t.c"]
    assert index.version == 1 and index.positions([3, 2, 4]).tolist()[2] == -1
    assert tables.describe()[0] | {"loaded_at": 0} == {
        "name": "main.t.c",
        "version": 1,
        "rows": 3,
        "loaded_at": 0,
    }


def test_string_and_composite_keys_and_renamed_outputs(fe: FeatureEngineeringClient) -> None:
    fe.create_table("main.t.s", "sku", pd.DataFrame({"sku": ["b", "a", "c"], "price": [2.0, 1.0, 3.0]}))
    stores = pd.DataFrame({"region": ["eu", "eu", "us"], "store": [1, 2, 1], "size": [10, 20, 30]})
    fe.create_table("main.t.st", ["region", "store"], stores)
    spec = FeatureSpec(
        [
            FeatureLookup("main.t.s", "item", rename_outputs={"price": "item_price"}),
            FeatureLookup("main.t.st", ["r", "s"], feature_names="size"),
        ]
    )
    indexes = {n: FeatureIndex.load(n, fe.root) for n in spec.tables}
    frame = pd.DataFrame({"item": ["c", "zz", "a"], "r": ["us", "eu", "eu"], "s": [1, 2, 9]})
    joined = join_features(frame, spec, indexes)
    assert joined.frame["item_price"].tolist()[::2] == [3.0, 1.0]
    assert np.isnan(joined.frame["item_price"][1])
    assert joined.frame["size"].tolist()[:2] == [30, 20] and np.isnan(joined.frame["size"][2])
    assert joined.missing == [
        [],
        [{"table_name": "main.t.s", "item": "zz"}],
        [{"table_name": "main.t.st", "r": "eu", "s": 9}],
    ]
    assert (
        join_features(pd.DataFrame({"item": [5], "r": [None], "s": [1]}), spec, indexes)
        .frame["item_price"]
        .isna()
        .all()
    )


def test_table_rules_are_checked(fe: FeatureEngineeringClient) -> None:
    with pytest.raises(ValueError, match="catalog"):
        fe.create_table("just_a_name", "id", pd.DataFrame({"id": [1]}))
    with pytest.raises(ValueError, match="not unique"):
        fe.create_table("main.t.d", "id", pd.DataFrame({"id": [1, 1], "x": [1.0, 2.0]}))
    with pytest.raises(ValueError, match="not in the data"):
        fe.create_table("main.t.d", "key", pd.DataFrame({"id": [1]}))
    fe.create_table("main.t.d", "id", pd.DataFrame({"id": [1], "x": [1.0]}))
    with pytest.raises(ValueError, match="already exists"):
        fe.create_table("main.t.d", "id", pd.DataFrame({"id": [1]}))
    fe.drop_table("main.t.d")
    with pytest.raises(LookupError, match="does not exist"):
        fe.read_table("main.t.d")


@pytest.mark.timeout(600)  # logs a model: minutes on a loaded machine
def test_fast_path_answers_exactly_as_the_full_path(fe: FeatureEngineeringClient, tmp_path: Path) -> None:
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("features-fast-path")  # not the active experiment of another test's registry
    try:
        check_fast_path(fe)
    finally:
        mlflow.set_tracking_uri(previous)


def check_fast_path(fe: FeatureEngineeringClient) -> None:
    import mlflow
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline

    from jupyter_serving.features.catalog import using_root
    from jupyter_serving.worker.scoring import Scorer

    rng = np.random.default_rng(3)
    fe.create_table(
        "main.t.f",
        "id",
        pd.DataFrame({"id": np.arange(50), "a": rng.normal(size=50), "b": rng.normal(size=50)}),
    )
    training = fe.create_training_set(
        pd.DataFrame({"id": np.arange(50), "extra": rng.normal(size=50), "y": rng.normal(size=50)}),
        [FeatureLookup("main.t.f", "id")],
        label="y",
        exclude_columns=["id"],
    )
    frame = training.load_df()
    model = make_pipeline(SimpleImputer(), LinearRegression()).fit(frame[["extra", "a", "b"]], frame.y)
    info = fe.log_model(
        model, "m", flavor=mlflow.sklearn, training_set=training, serialization_format="cloudpickle"
    )
    with using_root(fe.root):
        loaded = mlflow.pyfunc.load_model(info.model_uri)
    fast, full = Scorer(loaded), Scorer(loaded, fast_path=False)
    assert type(fast.fast).__name__ == "FeatureFastPath" and full.fast is None
    requests = [
        {"dataframe_records": [{"id": 3, "extra": 0.5}]},
        {"dataframe_split": {"columns": ["extra", "id"], "data": [[1.5, 7], [0.0, 999]]}},
        {"dataframe_records": [{"id": 3}]},  # no `extra`: the full path's 400
        {"dataframe_records": [{"id": "3", "extra": 0.5}]},
    ]
    raw = [("application/json", json.dumps(r).encode()) for r in requests]
    for a, b in zip(fast.score(raw), full.score(raw), strict=True):
        assert (a.status, json.loads(a.body)) == (b.status, json.loads(b.body))
    body = json.loads(fast.score(raw[1:2])[0].body)
    assert body["missing_keys"] == [{"table_name": "main.t.f", "id": 999}]


def test_serve_get_shows_feature_tables_and_versions() -> None:
    from jupyter_serving.notebook.magics import _entity_row

    entity = {
        "name": "m-1",
        "entity_name": "m",
        "entity_version": "1",
        "state": {"deployment": "DEPLOYMENT_READY"},
    }
    local = {
        "replicas": 1,
        "ready_replicas": 1,
        "feature_tables": [{"name": "main.s.t", "version": 3, "rows": 9}],
    }
    assert "features: main.s.t v3" in _entity_row({**entity, "local": local}, 100)
    assert "features:" not in _entity_row({**entity, "local": {"replicas": 1}}, 100)
