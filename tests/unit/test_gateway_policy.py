"""Pure pieces of the AI Gateway: the windowed rate limiter, data-plane tokens, tag patches,
scoring content types and the per-endpoint OpenAPI document."""

from __future__ import annotations

import pytest

from jupyter_serving.api.endpoint_openapi import endpoint_openapi
from jupyter_serving.dataplane.ingress import scoring_content_type
from jupyter_serving.dataplane.limits import RateLimiter
from jupyter_serving.errors import InvalidParameterValue, UnsupportedMediaType
from jupyter_serving.identity.tokens import (
    ALL_APIS,
    TokenSigner,
    authorization_details,
    endpoint_scope,
    requested_endpoint,
)
from jupyter_serving.model.endpoint_fields import (
    legacy_rate_limits,
    parse_email_notifications,
    parse_rate_limits,
    parse_telemetry_config,
    patch_tags,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits(*items: dict) -> list[dict]:
    return parse_rate_limits([{"renewal_period": "minute", **i} for i in items], "rate_limits")


def test_the_n_plus_first_call_in_a_window_is_refused_and_the_window_renews() -> None:
    clock = Clock()
    limiter = RateLimiter(window_s=60.0, clock=clock)
    rules = limits({"calls": 3, "key": "endpoint"})
    assert [limiter.admit("ep", rules, "alice") for _ in range(3)] == [None, None, None]
    clock.now += 10
    assert limiter.admit("ep", rules, "bob") == pytest.approx(50.0)
    assert limiter.retry_after(50.0) == "50" and limiter.retry_after(0.2) == "1"
    clock.now += 50
    assert limiter.admit("ep", rules, "bob") is None


def test_user_limits_count_per_principal_and_a_named_principal_overrides() -> None:
    limiter = RateLimiter(window_s=60.0, clock=Clock())
    rules = limits({"calls": 1, "key": "user"}, {"calls": 3, "key": "user", "principal": "vip"})
    assert limiter.admit("ep", rules, "alice") is None
    assert limiter.admit("ep", rules, "alice") is not None
    assert limiter.admit("ep", rules, "bob") is None
    assert [limiter.admit("ep", rules, "vip") for _ in range(3)] == [None, None, None]
    assert limiter.admit("ep", rules, "vip") is not None
    assert limiter.admit("other-ep", rules, "alice") is None  # counters are per endpoint


def test_a_refused_call_counts_against_no_limit_and_groups_share_one() -> None:
    limiter = RateLimiter(window_s=60.0, clock=Clock())
    rules = limits({"calls": 2, "key": "endpoint"}, {"calls": 1, "key": "user_group", "principal": "g"})
    assert limiter.admit("ep", rules, "a", groups=["g"]) is None
    assert limiter.admit("ep", rules, "b", groups=["g"]) is not None  # the group's one call is used
    assert limiter.admit("ep", rules, "c") is None  # the refusal did not use the endpoint's second call
    assert limiter.admit("ep", rules, "d") is not None


def test_legacy_rate_limits_show_what_the_legacy_shape_can_say() -> None:
    rules = limits({"calls": 2, "key": "endpoint"}, {"calls": 1, "key": "user", "principal": "x"})
    assert legacy_rate_limits(rules) == [{"calls": 2, "key": "endpoint", "renewal_period": "minute"}]


def test_tokens_are_scoped_signed_and_expire() -> None:
    clock = Clock()
    signer = TokenSigner(clock=clock)
    token = signer.mint("alice", endpoint_scope("ep"), ttl_s=60)
    assert signer.verify(token, endpoint_scope("ep"))["sub"] == "alice"
    assert signer.verify(token, endpoint_scope("other")) is None
    assert signer.verify(token, ALL_APIS) is None
    assert TokenSigner(clock=clock).verify(token) is None  # another server's key
    assert signer.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
    clock.now += 61
    assert signer.verify(token) is None


def test_authorization_details_name_the_endpoint() -> None:
    assert requested_endpoint(authorization_details("abc", "ep")) == "ep"
    assert requested_endpoint("[]") is None and requested_endpoint("nope") is None


def test_tag_patch_deletes_then_adds_and_replaces_values() -> None:
    tags = [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]
    out = patch_tags(tags, [{"key": "b", "value": "3"}, {"key": "c"}], ["a"])
    assert out == [{"key": "b", "value": "3"}, {"key": "c"}]
    with pytest.raises(InvalidParameterValue, match="delete_tags"):
        patch_tags(tags, None, "a")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, "application/json"),
        ("application/x-www-form-urlencoded", "application/json"),
        ("application/json; charset=UTF-8", "application/json; charset=UTF-8"),
        ("text/csv", "text/csv"),
    ],
)
def test_scoring_content_types_accepted(header: str | None, expected: str) -> None:
    assert scoring_content_type(header) == expected


@pytest.mark.parametrize(
    "header", ["text/plain", "application/json; something=something", "text/csv; charset=latin-1"]
)
def test_scoring_content_types_refused_with_415(header: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        scoring_content_type(header)


def test_endpoint_openapi_has_one_path_per_served_entity_typed_from_the_signature() -> None:
    columns = {"inputs": [{"type": "double", "name": "x", "required": True}], "outputs": [{"type": "long"}]}
    tensor = {"inputs": [{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}}]}
    doc = endpoint_openapi("ep", "http://h", [("a", columns), ("b", tensor), ("c", None)])
    assert doc["openapi"] == "3.1.0" and doc["servers"] == [{"url": "http://h/serving-endpoints/ep"}]
    assert list(doc["paths"]) == [f"/served-models/{n}/invocations" for n in "abc"]
    a = doc["paths"]["/served-models/a/invocations"]["post"]
    records = a["requestBody"]["content"]["application/json"]["schema"]["oneOf"][1]
    assert records["properties"]["dataframe_records"]["items"]["properties"]["x"] == {
        "type": "number",
        "format": "double",
    }
    predictions = a["responses"]["200"]["content"]["application/json"]["schema"]["properties"]["predictions"]
    assert predictions["items"] == {"type": "integer", "format": "int64"}
    b = doc["paths"]["/served-models/b/invocations"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert b["oneOf"][0]["properties"]["instances"]["items"] == {"type": "array", "items": {"type": "number"}}


def _event(t: int, kind: str, served: str | None = None, message: str = "") -> dict:
    """An event as `GET .../events` returns it (monitoring.events.event)."""
    item: dict = {"timestamp_ms": t, "type": kind, "severity": "INFO", "message": message or kind}
    if served is not None:
        item["served_entity"] = served
    return item


def test_health_notices_fire_once_on_failure_and_on_recovery_from_the_servers_events() -> None:
    from jupyter_serving.notebook.health import LOOKBACK_MS, HealthNotices

    notices = HealthNotices("ep")
    assert notices.since_ms == 0
    # The first read is the whole log: a failure that recovered before anyone looked is not news.
    history = [_event(1000, "DEPLOYMENT_FAILED", "m-0"), _event(2000, "ENTITY_READY", "m-0")]
    assert notices.read(history) == []
    assert notices.since_ms == 0  # looks back a minute from the newest event
    failed = [_event(70_000, "UPDATE_FAILED"), _event(71_000, "DEPLOYMENT_FAILED", "m-1")]
    assert notices.read(history + failed) == [
        ("bad", "Endpoint 'ep' has failed"),
        ("bad", "Served entity 'm-1' of endpoint 'ep' has failed"),
    ]
    assert notices.since_ms == 71_000 - LOOKBACK_MS
    assert notices.read(failed) == []  # read again (the look-back): announced once
    again = [_event(72_000, "DEPLOYMENT_FAILED", "m-1", "crashed again")]
    assert notices.read(again) == []  # still failed: no second notice
    recovered = [_event(80_000, "UPDATE_SUCCEEDED"), _event(81_000, "ENTITY_READY", "m-1")]
    assert notices.read(recovered) == [
        ("ok", "Endpoint 'ep' has recovered"),
        ("ok", "Served entity 'm-1' of endpoint 'ep' has recovered"),
    ]
    # Events that are neither (scaling, progress, replica crashes that recover) say nothing.
    assert notices.read([_event(90_000, "SCALED_UP", "m-1"), _event(90_000, "REPLICA_CRASHED", "m-1")]) == []


def test_health_notices_first_read_announces_what_is_failed_now() -> None:
    from jupyter_serving.notebook.health import HealthNotices

    notices = HealthNotices("ep")
    assert notices.read([_event(5, "UPDATE_FAILED"), _event(6, "DEPLOYMENT_FAILED", "m-1")]) == [
        ("bad", "Endpoint 'ep' has failed"),
        ("bad", "Served entity 'm-1' of endpoint 'ep' has failed"),
    ]
    assert notices.read([]) == []


class _Polled:
    """A double of our own `Client` interface: the endpoint's events as successive reads return
    them (each read adds the next batch to the server's log, answered after `since_ms`)."""

    def __init__(self, batches: list[list[dict]]) -> None:
        self.batches = batches
        self.log: list[dict] = []

    def get(self, name: str) -> dict:
        entity = {"name": "m-1", "state": {"deployment": "DEPLOYMENT_READY"}, "local": {}}
        config = {"served_entities": [entity], "traffic_config": {"routes": []}}
        return {"name": name, "state": {"ready": "READY", "config_update": "NOT_UPDATING"}, "config": config}

    def metrics(self, name: str) -> str:
        return ""

    def events(self, name: str, since_ms: int = 0) -> list[dict]:
        if self.batches:
            self.log += self.batches.pop(0)
        return [e for e in self.log if e["timestamp_ms"] > since_ms]


def test_endpoint_monitor_shows_a_notification_when_an_endpoint_fails_and_recovers() -> None:
    from jupyter_serving.notebook.widgets import EndpointMonitor

    client = _Polled(
        [
            [_event(1000, "UPDATE_SUCCEEDED")],
            [_event(2000, "UPDATE_FAILED"), _event(2000, "DEPLOYMENT_FAILED", "m-1")],
            [],
            [_event(3000, "UPDATE_SUCCEEDED")],
        ]
    )
    monitor = EndpointMonitor(client, "ep", start=False, charts=False)  # type: ignore[arg-type]
    assert monitor.notifications == [] and monitor.notice.value == ""
    monitor.refresh()
    monitor.refresh()
    assert [t for t, _ in monitor.notifications] == ["bad", "bad"]
    assert "Endpoint &#x27;ep&#x27; has failed" in monitor.notice.value
    monitor.refresh()
    assert monitor.notifications[0] == ("ok", "Endpoint 'ep' has recovered")


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"calls": 1, "renewal_period": {}}, "renewal_period"),
        ({"calls": 1, "renewal_period": ""}, "renewal_period"),
        ({"calls": 1, "key": ""}, "key"),
        ({"calls": 1, "key": 0}, "key"),
        ({"calls": -1}, "calls"),
    ],
)
def test_a_rate_limit_field_of_the_wrong_value_is_refused_not_defaulted(item: dict, field: str) -> None:
    with pytest.raises(InvalidParameterValue, match=field) as caught:
        parse_rate_limits([item], "rate_limits", legacy=True)
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"


def test_a_null_rate_limit_key_or_period_is_the_default() -> None:
    assert parse_rate_limits([{"calls": 0, "key": None, "renewal_period": None}], "r", legacy=True) == [
        {"calls": 0, "key": "endpoint", "renewal_period": "minute"}
    ]


@pytest.mark.parametrize("address", ["", "ops", "ops@", "@example.com", "a b@example.com", "a@b@c"])
def test_notifications_refuse_what_is_not_an_email_address(address: str) -> None:
    with pytest.raises(InvalidParameterValue, match="email addresses"):
        parse_email_notifications({"on_update_failure": [address]})
    assert parse_email_notifications(
        {"on_update_failure": ["ops@example.com"], "on_update_success": None}
    ) == {"on_update_failure": ["ops@example.com"]}


def test_patched_tags_are_held_to_the_limits_of_create() -> None:
    with pytest.raises(InvalidParameterValue, match=r"add_tags\[0\]\.key"):
        patch_tags([], [{"key": "k" * 256}], None)
    with pytest.raises(InvalidParameterValue, match=r"add_tags\[0\]\.value"):
        patch_tags([], [{"key": "k", "value": "v" * 1025}], None)
    assert patch_tags([], [{"key": "k" * 255, "value": None}], None) == [{"key": "k" * 255}]


@pytest.mark.parametrize("fraction", [-0.1, 1.5, "0.5", True])
def test_telemetry_sampling_fraction_is_a_number_from_0_to_1(fraction: object) -> None:
    config = {"inference_table_config": {"name": "c.s.t", "sampling_fraction": fraction}}
    with pytest.raises(InvalidParameterValue, match="sampling_fraction"):
        parse_telemetry_config(config)
    config["inference_table_config"]["sampling_fraction"] = 0.25
    assert parse_telemetry_config(config) == config
