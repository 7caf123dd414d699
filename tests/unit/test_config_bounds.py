"""Names are full-matched (no trailing newline slips through) and sizes have upper bounds."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_serving.errors import InvalidParameterValue
from jupyter_serving.model.config import MAX_PROVISIONED_CONCURRENCY, parse_create


def body(**entity: Any) -> dict[str, Any]:
    return {
        "name": "ep",
        "config": {"served_entities": [{"entity_name": "m", "entity_version": "1", **entity}]},
    }


@pytest.mark.parametrize(
    "request_body",
    [
        {**body(), "name": "ep\n"},
        body(name="srv\n"),
        body(name="s" * 64),
        body(entity_version="9" * 5000),
        body(entity_version="\u0661"),  # a non-ASCII digit
        {
            **body(),
            "config": {
                **body()["config"],
                "auto_capture_config": {"catalog_name": "main\n", "schema_name": "d"},
            },
        },
        {
            **body(),
            "config": {
                **body()["config"],
                "auto_capture_config": {"catalog_name": "m", "schema_name": "d\n"},
            },
        },
        {
            **body(),
            "config": {
                **body()["config"],
                "auto_capture_config": {"catalog_name": "m", "schema_name": "d", "table_name_prefix": "p\n"},
            },
        },
        {**body(), "tags": [{"key": 1}]},
        {**body(), "tags": [{"key": "k", "value": 2}]},
        {**body(), "tags": [{"key": "\ud800"}]},
        {**body(), "tags": "k"},
        {**body(), "description": 5},
        {**body(), "description": "x" * 5000},
        body(min_provisioned_concurrency=4 * 10**18, max_provisioned_concurrency=4 * 10**18),
        body(environment_vars={"A": "\ud800"}),
        body(environment_vars={"A=B": "x"}),
        body(environment_vars={"A": "x\x00"}),
        body(min_provisioned_concurrency=0, max_provisioned_concurrency=MAX_PROVISIONED_CONCURRENCY + 4),
    ],
)
def test_refused(request_body: dict[str, Any]) -> None:
    with pytest.raises(InvalidParameterValue):
        parse_create(request_body)


def test_bound_is_named_in_the_message() -> None:
    with pytest.raises(InvalidParameterValue, match=f"the limit is {MAX_PROVISIONED_CONCURRENCY}"):
        parse_create(body(min_provisioned_concurrency=4 * 10**18, max_provisioned_concurrency=4 * 10**18))


def test_limits_themselves_are_accepted() -> None:
    ok = parse_create(
        {
            **body(min_provisioned_concurrency=0, max_provisioned_concurrency=MAX_PROVISIONED_CONCURRENCY),
            "tags": [{"key": "team", "value": "ml"}, {"key": "flag"}],
            "description": "d",
        }
    )
    assert ok.config.served_entities[0].concurrency_range == (0, MAX_PROVISIONED_CONCURRENCY)
