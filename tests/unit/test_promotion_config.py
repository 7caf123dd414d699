"""The pure parts of promotion: what a source endpoint's GET becomes on the target, and when the
target already has it."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_serving.promotion.models import default_artifact_location, source_marker
from jupyter_serving.promotion.promote import (
    config_differs,
    endpoint_settings,
    pin_versions,
    promoted_config,
    split_entity_name,
    tag_patch,
)
from jupyter_serving.promotion.workspace import (
    PromotionError,
    is_databricks_host,
    normalize_host,
    short_reason,
)


def deployed(*entities: dict[str, Any], **config: Any) -> dict[str, Any]:
    """A source endpoint as our GET shows it: output-only fields on every served entity."""
    out = []
    for e in entities:
        out.append(
            {
                "workload_size": "Small",
                "workload_type": "CPU",
                "scale_to_zero_enabled": False,
                **e,
                "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""},
                "creator": "admin",
                "creation_timestamp": 1,
                "local": {"replicas": 1},
            }
        )
    return {"name": "ep", "config": {"served_entities": out, "config_version": 3, **config}}


def test_output_fields_go_and_models_uris_become_name_and_version() -> None:
    endpoint = deployed(
        {"name": "a", "entity_name": "models:/iris-lr/2"},
        {"name": "b", "entity_name": "main.default.iris", "entity_version": "1"},
        traffic_config={
            "routes": [
                {"served_model_name": "a", "traffic_percentage": 70},
                {"served_model_name": "b", "traffic_percentage": 30},
            ]
        },
    )
    config = promoted_config(endpoint)
    assert config["served_entities"] == [
        {
            "name": "a",
            "entity_name": "iris-lr",
            "entity_version": "2",
            "workload_size": "Small",
            "workload_type": "CPU",
            "scale_to_zero_enabled": False,
        },
        {
            "name": "b",
            "entity_name": "main.default.iris",
            "entity_version": "1",
            "workload_size": "Small",
            "workload_type": "CPU",
            "scale_to_zero_enabled": False,
        },
    ]
    assert config["traffic_config"] == endpoint["config"]["traffic_config"]
    assert "config_version" not in config


def test_an_alias_needs_copy_models_and_a_never_ready_endpoint_cannot_be_promoted() -> None:
    config = promoted_config(deployed({"name": "a", "entity_name": "models:/iris-lr@champion"}))
    with pytest.raises(PromotionError, match=r"alias 'champion'.*--copy-models"):
        pin_versions(config, None)
    with pytest.raises(PromotionError, match="no deployed config yet") as caught:
        promoted_config({"name": "ep", "pending_config": {"served_entities": []}})
    assert caught.value.error_code == "INVALID_STATE"


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        ({"entity_name": "iris-lr", "entity_version": "3"}, ("iris-lr", "3", None)),
        ({"entity_name": "models:/iris-lr/4"}, ("iris-lr", "4", None)),
        ({"entity_name": "models:/iris-lr", "entity_version": 5}, ("iris-lr", "5", None)),
        ({"entity_name": "models:/iris-lr@prod"}, ("iris-lr", None, "prod")),
        ({"model_name": "legacy", "model_version": "1"}, ("legacy", "1", None)),
    ],
)
def test_split_entity_name(entity: dict[str, Any], expected: tuple[Any, ...]) -> None:
    assert split_entity_name(entity) == expected


def test_config_differs_only_on_what_the_promotion_sets() -> None:
    desired = promoted_config(deployed({"name": "a", "entity_name": "iris-lr", "entity_version": "1"}))
    # A workspace echoes more than was sent (ids, states, defaults): that is not a difference.
    current = deployed(
        {"name": "a", "entity_name": "iris-lr", "entity_version": "1", "foundation_model": None}
    )["config"]
    assert not config_differs(desired, current)
    assert config_differs(desired, None)
    bumped = deployed({"name": "a", "entity_name": "iris-lr", "entity_version": "2"})["config"]
    assert config_differs(desired, bumped)
    renamed = deployed({"name": "b", "entity_name": "iris-lr", "entity_version": "1"})["config"]
    assert config_differs(desired, renamed)
    desired["traffic_config"] = {"routes": [{"served_model_name": "a", "traffic_percentage": "100"}]}
    current["traffic_config"] = {"routes": [{"served_entity_name": "a", "traffic_percentage": 100}]}
    assert not config_differs(desired, current)
    desired["auto_capture_config"] = {"catalog_name": "main", "schema_name": "s", "table_name_prefix": "p"}
    current["auto_capture_config"] = {**desired["auto_capture_config"], "state": {"payload_table": {}}}
    assert not config_differs(desired, current)
    current["auto_capture_config"]["schema_name"] = "other"
    assert config_differs(desired, current)


def test_tag_patch_adds_changes_and_deletes() -> None:
    desired = [{"key": "team", "value": "ml"}, {"key": "flag"}, {"key": "stage", "value": "prod"}]
    current = [{"key": "team", "value": "ml"}, {"key": "stage", "value": "dev"}, {"key": "old", "value": "x"}]
    assert tag_patch(desired, current) == ([{"key": "flag"}, {"key": "stage", "value": "prod"}], ["old"])
    assert tag_patch(current, current) == ([], [])


def test_endpoint_settings_carry_what_is_set() -> None:
    endpoint = {
        "name": "ep",
        "tags": [],
        "description": "iris",
        "route_optimized": False,
        "ai_gateway": {"rate_limits": [{"calls": 5, "key": "endpoint", "renewal_period": "minute"}]},
    }
    assert endpoint_settings(endpoint) == {"description": "iris", "ai_gateway": endpoint["ai_gateway"]}
    assert endpoint_settings({**endpoint, "route_optimized": True})["route_optimized"] is True


def test_hosts_markers_and_messages() -> None:
    assert normalize_host("adb-1.2.azuredatabricks.net/") == "https://adb-1.2.azuredatabricks.net"
    assert is_databricks_host("https://dbc-1234.cloud.databricks.com")
    assert is_databricks_host("adb-1.2.azuredatabricks.net")
    assert not is_databricks_host("http://127.0.0.1:8765/")
    assert not is_databricks_host("https://databricks.com.evil.example")
    assert source_marker("iris-lr", "2", "abc") == "models:/iris-lr/2 run abc"
    assert default_artifact_location("sqlite:////srv/mlflow/mlflow.db") == "file:///srv/mlflow/mlartifacts"
    assert default_artifact_location("databricks") is None
    refused = ConnectionError("HTTPConnectionPool(...): ... [Errno 111] Connection refused'))")
    assert short_reason(refused) == "Connection refused"
