"""Databricks' config rules as pure functions: naming defaults, sizing, traffic."""

from __future__ import annotations

import pytest

from jupyter_serving.errors import InvalidParameterValue
from jupyter_serving.model.config import (
    WORKLOAD_TYPES,
    default_served_name,
    parse_config,
    parse_create,
    validate_endpoint_name,
)


def entity(**extra):
    return {"entity_name": "iris", "entity_version": "1", **extra}


@pytest.mark.parametrize(
    ("name", "version", "expected"),
    [
        ("ads1", "1", "ads1-1"),
        ("catalog.schema.my_model", "3", "my_model-3"),
        ("models:/iris/2", None, "iris-2"),
        ("models:/iris@champion", None, "iris-champion"),
        ("models:/iris", "4", "iris-4"),
    ],
)
def test_default_served_entity_names(name: str, version: str | None, expected: str) -> None:
    assert default_served_name(name, version) == expected


def test_single_entity_gets_a_full_route_and_small_default() -> None:
    config = parse_config({"served_entities": [entity()]})
    assert [(r.served_model_name, r.traffic_percentage) for r in config.routes] == [("iris-1", 100)]
    assert config.served_entities[0].workload_size == "Small"
    assert config.served_entities[0].concurrency_range == (4, 4)
    assert config.served_entities[0].model_uri == "models:/iris/1"


def test_string_percentages_int_versions_and_round_trip() -> None:
    raw = {
        "served_entities": [
            entity(name="a"),
            {
                "entity_name": "iris",
                "entity_version": 2,
                "name": "b",
                "workload_size": "medium",
                "scale_to_zero_enabled": True,
            },
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "a", "traffic_percentage": "90"},
                {"served_entity_name": "b", "traffic_percentage": 10},
            ]
        },
    }
    config = parse_config(raw)
    assert [r.traffic_percentage for r in config.routes] == [90, 10]
    b = config.entity("b")
    assert (b.entity_version, b.workload_size, b.concurrency_range) == ("2", "Medium", (0, 16))
    assert parse_config(config.to_json()) == config


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (
            {"served_entities": [entity(min_provisioned_concurrency=3, max_provisioned_concurrency=8)]},
            "multiple of 4",
        ),
        (
            {"served_entities": [entity(min_provisioned_concurrency=12, max_provisioned_concurrency=8)]},
            "must not exceed",
        ),
        ({"served_entities": [entity(workload_size="Huge")]}, "Small, Medium or Large"),
        ({"served_entities": [entity(workload_type="TPU")]}, "workload_type"),
        ({"served_entities": [entity(), entity(entity_version="2")]}, "traffic_config is required"),
        ({"served_entities": [entity(environment_vars={"A": 1})]}, "strings to strings"),
        ({"served_entities": [entity(name="bad name")]}, "alphanumeric"),
        (
            {
                "served_entities": [entity()],
                "traffic_config": {"routes": [{"served_model_name": "iris-1", "traffic_percentage": 101}]},
            },
            "between 0 and 100",
        ),
        ({"served_entities": [entity()] * 16}, "at most 15"),
        ({"served_entities": [entity()], "served_models": [{"model_name": "x"}]}, "not both"),
    ],
)
def test_invalid_configs_name_the_problem(raw: dict, fragment: str) -> None:
    with pytest.raises(InvalidParameterValue, match=fragment):
        parse_config(raw)


@pytest.mark.parametrize("name", ["", "a.b", "databricks-gte", "DATABRICKS-x", "x" * 64, "sp ace", 7])
def test_invalid_endpoint_names(name) -> None:
    with pytest.raises(InvalidParameterValue):
        validate_endpoint_name(name)


def test_create_applies_every_endpoint_field_and_accepts_the_config_name() -> None:
    request = parse_create(
        {
            "name": "ep",
            "route_optimized": True,
            "budget_policy_id": "bp-1",
            "description": "d",
            "tags": [{"key": "team", "value": "ml"}, {"key": "flag"}],
            "email_notifications": {"on_update_failure": ["a@x.io"]},
            "telemetry_config": {"enabled_telemetry_features": ["TELEMETRY_FEATURE_LOGS"]},
            "rate_limits": [{"calls": 5, "key": "endpoint", "renewal_period": "minute"}],
            "config": {"name": "ep", "served_entities": [entity(burst_scaling_enabled=False)]},
        }
    )
    assert request.record_fields() == {
        "route_optimized": True,
        "ai_gateway": {"rate_limits": [{"calls": 5, "key": "endpoint", "renewal_period": "minute"}]},
        "email_notifications": {"on_update_failure": ["a@x.io"]},
        "budget_policy_id": "bp-1",
        "telemetry_config": {"enabled_telemetry_features": ["TELEMETRY_FEATURE_LOGS"]},
    }
    assert request.tags == ({"key": "team", "value": "ml"}, {"key": "flag"})
    assert request.config.served_entities[0].to_json()["burst_scaling_enabled"] is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"surprise": 1}, "surprise"),
        ({"config": {"served_entities": [entity()], "extra": 1}}, "config.extra"),
        ({"config": {"served_entities": [entity(instance_profile_arn="arn")]}}, "instance_profile_arn"),
        ({"config": {"served_entities": [entity(external_model={"name": "gpt"})]}}, "external_model"),
        ({"config": {"served_entities": [entity(provisioned_model_units=1)]}}, "provisioned_model_units"),
        ({"config": {"served_entities": [entity(model_name="x")]}}, "model_name"),
        ({"config": {"served_entities": [entity(workload_type="GPU_LARGE_2")]}}, "workload_type"),
        ({"ai_gateway": {"guardrails": {}}}, "guardrails"),
        ({"ai_gateway": {"fallback_config": {"enabled": True}}}, "fallback_config"),
        ({"ai_gateway": {"rate_limits": [{"calls": 1, "tokens": 5, "renewal_period": "minute"}]}}, "tokens"),
        ({"ai_gateway": {"rate_limits": [{"calls": 1, "key": "planet", "renewal_period": "minute"}]}}, "key"),
        ({"rate_limits": [{"calls": 1, "key": "user_group", "renewal_period": "minute"}]}, "key"),
        ({"email_notifications": {"on_update_failure": ["not-an-address"]}}, "on_update_failure"),
        ({"telemetry_config": {"enabled_telemetry_features": ["X"]}}, "enabled_telemetry_features"),
        ({"route_optimized": "yes"}, "route_optimized"),
        ({"config": {"served_entities": [entity()], "auto_capture_config": {"catalog": "x"}}}, "catalog"),
        (
            {"config": {"served_entities": [entity()], "traffic_config": {"routes": [], "x": 1}}},
            "traffic_config.x",
        ),
    ],
)
def test_create_refuses_what_it_cannot_apply_naming_the_field(body: dict, field: str) -> None:
    full = {"name": "ep", "config": {"served_entities": [entity()]}, **body}
    with pytest.raises(InvalidParameterValue, match=field):
        parse_create(full)


def test_gateway_inference_table_is_the_auto_capture_config() -> None:
    table = {"catalog_name": "main", "schema_name": "logs", "enabled": True}
    request = parse_create(
        {
            "name": "ep",
            "config": {"served_entities": [entity()]},
            "ai_gateway": {"inference_table_config": table},
        }
    )
    assert request.config.auto_capture_config == {
        "enabled": True,
        "catalog_name": "main",
        "schema_name": "logs",
    }
    with pytest.raises(InvalidParameterValue, match="not both"):
        parse_create(
            {
                "name": "ep",
                "config": {"served_entities": [entity()], "auto_capture_config": table},
                "ai_gateway": {"inference_table_config": table},
            }
        )


def test_workload_types_are_the_sdks_enum() -> None:
    from databricks.sdk.service.serving import ServingModelWorkloadType

    assert set(WORKLOAD_TYPES) == {t.value for t in ServingModelWorkloadType}


def test_runtime_key_changes_with_what_a_replica_runs_only() -> None:
    base = parse_config({"served_entities": [entity()]}).served_entities[0]
    resized = parse_config({"served_entities": [entity(workload_size="Large")]}).served_entities[0]
    other_version = parse_config(
        {"served_entities": [entity(entity_version="2", name="iris-1")]}
    ).served_entities[0]
    assert base.runtime_key == resized.runtime_key
    assert base.runtime_key != other_version.runtime_key


@pytest.mark.parametrize("target", [{}, [], 3, True])
def test_a_route_naming_its_entity_with_no_string_is_refused_not_a_500(target: object) -> None:
    """Found by the schemathesis fuzz: `{"served_entity_name": {}}` raised TypeError (unhashable)."""
    route = {"served_model_name": "", "served_entity_name": target, "traffic_percentage": 100}
    with pytest.raises(InvalidParameterValue, match=r"routes\[0\]\.served_model_name") as caught:
        parse_config({"served_entities": [entity()], "traffic_config": {"routes": [route]}})
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    route["served_entity_name"] = parse_config({"served_entities": [entity()]}).routes[0].served_model_name
    assert (
        parse_config({"served_entities": [entity()], "traffic_config": {"routes": [route]}})
        .routes[0]
        .traffic_percentage
        == 100
    )


@pytest.mark.parametrize("workload_type", [[None, None], {}, "", 3])
def test_a_workload_type_that_is_not_a_known_string_is_refused_not_a_500(workload_type: object) -> None:
    """Found by the schemathesis fuzz: a list raised TypeError (unhashable) looking up GPU aliases."""
    with pytest.raises(InvalidParameterValue, match=r"workload_type") as caught:
        parse_config({"served_entities": [entity(workload_type=workload_type)]})
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"
    config = parse_config({"served_entities": [entity(workload_type=None)]})
    assert config.served_entities[0].workload_type == "CPU"
