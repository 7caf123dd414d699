"""The notebook side's pure rules: framing predictions, traffic maths, parsing, rendering. No server."""

from __future__ import annotations

import pandas as pd
import pytest
from IPython.core.error import UsageError

from jupyter_serving.notebook.client import (
    BadRequestError,
    ConflictError,
    EndpointUpdateFailed,
    NotFoundError,
    ServerError,
    ServingClientError,
    api_error,
    frame_to_split,
    input_config,
    parse_metrics,
    predictions_to_frame,
)
from jupyter_serving.notebook.magics import (
    EndpointList,
    endpoint_status,
    parse_body,
    parse_split,
    render_endpoint,
    render_endpoint_text,
)
from jupyter_serving.notebook.widgets import metric_counters, normalize, parse_env_vars, rates, rebalance

# The GET example of docs/CONTRACT.md, trimmed.
ENDPOINT = {
    "name": "ep",
    "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
    "config": {
        "config_version": 2,
        "served_entities": [
            {
                "name": "iris-lr-1",
                "entity_name": "iris-lr",
                "entity_version": "1",
                "workload_size": "Small",
                "workload_type": "CPU",
                "scale_to_zero_enabled": False,
                "state": {"deployment": "DEPLOYMENT_READY", "deployment_state_message": ""},
                "creator": "user",
                "creation_timestamp": 1700000000000,
                "local": {"replicas": 2, "ready_replicas": 1, "gpus": []},
            }
        ],
        "traffic_config": {"routes": [{"served_model_name": "iris-lr-1", "traffic_percentage": 100}]},
        "auto_capture_config": {
            "catalog_name": "main",
            "enabled": True,
            "state": {"payload_table": {"name": "ep_payload", "status": "ACTIVE", "path": "/x"}},
        },
    },
}


def failed(ready: str = "NOT_READY") -> dict:
    entity = {"name": "bad-1", "entity_name": "bad", "entity_version": "1"}
    entity["state"] = {
        "deployment": "DEPLOYMENT_FAILED",
        "deployment_state_message": "ModuleNotFoundError: nope",
    }
    return {
        "name": "ep",
        "state": {"ready": ready, "config_update": "UPDATE_FAILED"},
        "pending_config": {"served_entities": [entity], "config_version": 1},
    }


def test_predictions_keep_the_input_index() -> None:
    frame = predictions_to_frame({"predictions": [0, 2, 1]}, pd.Index([10, 20, 30]))
    assert list(frame.index) == [10, 20, 30]
    assert list(frame["prediction"]) == [0, 2, 1]


def test_record_and_column_predictions_become_columns() -> None:
    records = predictions_to_frame(
        {"predictions": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}, pd.Index(["x", "y"])
    )
    assert records.loc["y", "b"] == 4
    columns = predictions_to_frame({"predictions": {"a": [1, 2]}})
    assert list(columns["a"]) == [1, 2]
    tensor = predictions_to_frame({"outputs": [[0.1, 0.9], [0.8, 0.2]]})
    assert tensor.shape == (2, 2)


def test_prediction_count_mismatch_is_explained() -> None:
    with pytest.raises(ServingClientError, match="2 predictions for 3 rows"):
        predictions_to_frame({"predictions": [1, 2]}, pd.Index([0, 1, 2]))
    with pytest.raises(ServingClientError, match="query_raw"):
        predictions_to_frame({"predictions": "text"})


def test_dataframe_is_sent_as_split_without_index() -> None:
    df = pd.DataFrame({"a": [1.5, None], "when": pd.to_datetime(["2024-01-01", "2024-01-02"])}, index=[7, 8])
    split = frame_to_split(df)
    assert split["columns"] == ["a", "when"]
    assert split["data"][1][0] is None
    assert split["data"][0][1].startswith("2024-01-01")
    assert "index" not in split


def test_input_config_drops_output_fields_for_a_put() -> None:
    body = input_config(ENDPOINT["config"])
    entity = body["served_entities"][0]
    assert set(entity) == {
        "name",
        "entity_name",
        "entity_version",
        "workload_size",
        "workload_type",
        "scale_to_zero_enabled",
    }
    assert "state" not in body["auto_capture_config"]
    assert "config_version" not in body


def test_api_errors_are_typed_and_keep_the_server_message() -> None:
    err = api_error(404, '{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Endpoint x not found"}')
    assert isinstance(err, NotFoundError)
    assert (err.status, err.error_code, err.message) == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "Endpoint x not found",
    )
    assert isinstance(api_error(409, '{"error_code": "RESOURCE_CONFLICT", "message": "busy"}'), ConflictError)
    assert isinstance(
        api_error(400, '{"error_code": "INVALID_PARAMETER_VALUE", "message": "m"}'), BadRequestError
    )
    plain = api_error(502, "<html>bad gateway</html>")
    assert isinstance(plain, ServerError)
    assert plain.message == "<html>bad gateway</html>"


def test_update_failed_names_the_deployment_message() -> None:
    err = EndpointUpdateFailed(failed())
    assert "UPDATE_FAILED" in str(err)
    assert "ModuleNotFoundError: nope" in str(err)


@pytest.mark.parametrize(
    ("state", "label", "tone"),
    [
        ({"ready": "READY", "config_update": "NOT_UPDATING"}, "Ready", "ok"),
        ({"ready": "NOT_READY", "config_update": "IN_PROGRESS"}, "Not ready (Updating)", "busy"),
        ({"ready": "READY", "config_update": "UPDATE_FAILED"}, "Ready (Update failed)", "bad"),
        ({"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}, "Not ready (Update failed)", "bad"),
        ({"ready": "NOT_READY", "config_update": "NOT_UPDATING"}, "Not ready (Stopped)", "idle"),
    ],
)
def test_status_words_follow_the_serving_ui(state: dict, label: str, tone: str) -> None:
    assert endpoint_status({"state": state}) == (label, tone)


def test_endpoint_card_shows_entities_replicas_traffic_and_table() -> None:
    html = render_endpoint(ENDPOINT)
    for text in (
        "ep",
        "Ready",
        "config v2",
        "iris-lr-1",
        "iris-lr v1",
        "CPU · Small",
        "1/2",
        "100%",
        "ep_payload",
    ):
        assert text in html
    text = render_endpoint_text(ENDPOINT)
    assert "iris-lr-1: iris-lr v1 DEPLOYMENT_READY replicas 1/2 traffic 100%" in text


def test_endpoint_card_and_text_show_tags() -> None:
    tagged = {**ENDPOINT, "tags": [{"key": "team", "value": "ml"}, {"key": "flag"}]}
    assert "Tags: team=ml, flag" in render_endpoint(tagged)
    assert "  tags: team=ml, flag" in render_endpoint_text(tagged).splitlines()
    assert "tags" not in render_endpoint_text(ENDPOINT)


def test_failure_card_shows_the_error() -> None:
    assert "ModuleNotFoundError: nope" in render_endpoint(failed())
    assert "ModuleNotFoundError: nope" in render_endpoint_text(failed())


def test_empty_list_tells_how_to_create() -> None:
    assert "%%serve create" in EndpointList([])._repr_html_()


def test_cell_bodies_parse_as_json_or_yaml() -> None:
    assert parse_body('{"name": "a", "config": {}}', "create") == {"name": "a", "config": {}}
    assert parse_body("name: a\nconfig:\n  served_entities: []\n", "create")["config"] == {
        "served_entities": []
    }
    with pytest.raises(UsageError, match="needs a cell body"):
        parse_body("  ", "create")
    with pytest.raises(UsageError, match="mapping"):
        parse_body("- 1\n- 2", "create")
    with pytest.raises(UsageError, match="neither JSON nor valid YAML"):
        parse_body("name: [unclosed", "create")


def test_traffic_arguments() -> None:
    assert parse_split(["a=90", "b=10"]) == {"a": 90, "b": 10}
    with pytest.raises(UsageError, match="SERVED=PERCENT"):
        parse_split(["a:90"])


@pytest.mark.parametrize(
    ("values", "changed", "expected"),
    [
        ([50, 50], 0, [50, 50]),
        ([80, 50], 0, [80, 20]),
        ([30, 40, 30], 0, [30, 40, 30]),
        ([60, 40, 30], 0, [60, 23, 17]),
        ([100, 0, 0], 0, [100, 0, 0]),
        ([40, 0, 0], 0, [40, 30, 30]),
        ([33, 33, 34], 2, [33, 33, 34]),
        ([0, 50, 50], 0, [0, 50, 50]),
        ([100], 0, [100]),
    ],
)
def test_traffic_sliders_always_sum_to_100(values: list[int], changed: int, expected: list[int]) -> None:
    result = rebalance(values, changed)
    assert result == expected
    assert sum(result) == 100


def test_normalize_after_add_or_remove() -> None:
    assert normalize([70, 0]) == [100, 0]
    assert normalize([30, 30]) == [50, 50]
    assert normalize([0, 0, 0]) == [34, 33, 33]
    assert sum(normalize([1, 1, 1, 1, 1, 1, 1])) == 100


def test_env_vars_text() -> None:
    assert parse_env_vars("A=1\n# note\n\nB = two=2\n") == {"A": "1", "B": "two=2"}
    with pytest.raises(ValueError, match="line 1"):
        parse_env_vars("oops")


METRICS = """\
# TYPE requests_total counter
requests_total{served_entity="a",status="200"} 10.0
requests_total{served_entity="a",status="500"} 2.0
# TYPE request_latency_seconds histogram
request_latency_seconds_bucket{served_entity="a",le="+Inf"} 12.0
request_latency_seconds_count{served_entity="a"} 12.0
request_latency_seconds_sum{served_entity="a"} 0.024
# TYPE replicas gauge
replicas{served_entity="a"} 2.0
"""


def test_metrics_become_rates() -> None:
    now = metric_counters(parse_metrics(METRICS))["a"]
    assert (now.requests, now.errors, now.replicas) == (12.0, 2.0, 2.0)
    before = metric_counters(
        parse_metrics(METRICS.replace("10.0", "4.0").replace("12.0", "6.0").replace("0.024", "0.012"))
    )["a"]
    rps, latency = rates(before, now, 2.0)
    assert rps == pytest.approx(3.0)
    assert latency == pytest.approx(2.0)
    assert rates(None, now, 2.0) == (0.0, None)
