"""The metrics history's maths and bounds, and events derived from snapshots (no server needed)."""

from __future__ import annotations

import json
import stat

import psutil
import pytest
from prometheus_client import Histogram

from jupyter_serving.backends.base import DeploymentStatus, ProcessUsage
from jupyter_serving.control.endpoint import Endpoint
from jupyter_serving.control.store import EndpointRecord
from jupyter_serving.dataplane.invoke import DataPlane
from jupyter_serving.model.config import parse_config
from jupyter_serving.model.states import READY
from jupyter_serving.monitoring.events import EntitySnapshot, EventLog, Snapshot, diff
from jupyter_serving.monitoring.history import FIELDS, Counters, EndpointHistory, Live, Ring, quantile
from jupyter_serving.monitoring.metrics import LATENCY_BUCKETS, EndpointMetrics
from jupyter_serving.monitoring.observer import Observer, _counters

INF = float("inf")


def buckets(counts: dict[float, float]) -> list[tuple[float, float]]:
    """Cumulative (bound, count) pairs from per-bucket counts, +Inf last."""
    total, out = 0.0, []
    for bound in (*LATENCY_BUCKETS, INF):
        total += counts.get(bound, 0.0)
        out.append((bound, total))
    return out


# ------------------------------------------------------------------ quantiles and rates
def test_quantile_interpolates_inside_the_bucket_holding_the_rank() -> None:
    now = buckets({0.001: 50, 0.002: 50})  # 50 in (0.5, 1] ms, 50 in (1, 2] ms
    assert quantile(0.5, [], now) == pytest.approx(0.001, abs=1e-9)
    assert quantile(0.75, [], now) == pytest.approx(0.0015, abs=1e-9)
    assert quantile(0.99, [], now) == pytest.approx(0.00198, abs=1e-9)


def test_quantile_uses_only_what_arrived_between_two_readings() -> None:
    before = buckets({0.5: 1000})  # an old slow burst
    now = buckets({0.5: 1000, 0.001: 10})
    assert quantile(0.99, before, now) == pytest.approx(0.000995, abs=1e-9)
    assert quantile(0.5, now, now) is None  # nothing new: no latency, not zero latency


def test_quantile_in_the_inf_bucket_answers_the_largest_bound() -> None:
    assert quantile(0.99, [], buckets({INF: 3})) == LATENCY_BUCKETS[-1]


def test_quantile_matches_prometheus_client_buckets() -> None:
    metrics = EndpointMetrics(lambda: [])
    for _ in range(90):
        metrics.observe("a", 200, 0.003, batch=2)
    for _ in range(10):
        metrics.observe("a", 503, 0.2, batch=4)
    counters = _counters(metrics)["a"]
    assert counters.by_status == {"200": 90.0, "503": 10.0}
    assert (counters.batch_sum, counters.batch_count) == (220.0, 100.0)
    assert 0.002 < quantile(0.5, [], counters.latency_buckets) <= 0.005
    assert 0.1 < quantile(0.99, [], counters.latency_buckets) <= 0.25
    assert isinstance(metrics.latency, Histogram)


def test_sample_rates_by_status_class_and_batch_mean() -> None:
    history = EndpointHistory(capacity=10)
    zero = Counters({"200": 0.0}, buckets({}), 0.0, 0.0)
    history.record(1000, 2.0, {"a": (zero, Live(replicas=1, ready_replicas=1))}, {"a": 100})
    later = Counters({"200": 40.0, "404": 4.0, "503": 2.0}, buckets({0.001: 46}), 92.0, 23.0)
    history.record(
        3000, 2.0, {"a": (later, Live(replicas=2, ready_replicas=1, starting_replicas=1))}, {"a": 100}
    )
    s = history.to_json()["served_entities"][0]["samples"]
    assert set(s) == set(FIELDS)
    assert s["timestamp_ms"] == [1000, 3000]
    assert s["requests_per_s"] == [0.0, 23.0]
    assert (s["requests_2xx_per_s"][1], s["requests_4xx_per_s"][1], s["requests_5xx_per_s"][1]) == (
        20.0,
        2.0,
        1.0,
    )
    assert s["batch_size_mean"] == [None, 4.0]
    assert s["replicas"] == [1, 2] and s["starting_replicas"] == [0, 1]
    assert s["latency_p50_ms"][0] is None and 0.5 < s["latency_p50_ms"][1] <= 1.0


def test_a_counter_reset_counts_from_zero_instead_of_going_negative() -> None:
    history = EndpointHistory(capacity=10)
    history.record(1000, 1.0, {"a": (Counters({"200": 0.0}), Live())}, {})
    history.record(2000, 1.0, {"a": (Counters({"200": 500.0}), Live())}, {})
    history.record(3000, 1.0, {"a": (Counters({"200": 7.0}), Live())}, {})
    assert history.to_json()["served_entities"][0]["samples"]["requests_per_s"] == [0.0, 500.0, 7.0]


def test_an_entity_first_seen_with_traffic_starts_at_the_next_sample() -> None:
    """No earlier reading to take a delta from: a rate from zero would be a fake spike."""
    history = EndpointHistory(capacity=10)
    history.record(1000, 1.0, {"a": (Counters({"200": 10_000.0}), Live())}, {})
    assert history.to_json()["served_entities"] == []
    history.record(2000, 1.0, {"a": (Counters({"200": 10_010.0}), Live())}, {})
    assert history.to_json()["served_entities"][0]["samples"]["requests_per_s"] == [10.0]


# ------------------------------------------------------------------ bounds and resolution
def test_ring_keeps_only_the_last_capacity_samples() -> None:
    ring = Ring(3)
    for t in range(10):
        ring.append({"timestamp_ms": t})
    assert len(ring) == 3
    assert [s["timestamp_ms"] for s in ring.since(-1)] == [7, 8, 9]
    assert [s["timestamp_ms"] for s in ring.since(8)] == [9]


class _NoEndpoints:
    endpoints: dict[str, object] = {}


@pytest.mark.parametrize(("interval", "retention", "capacity"), [(2.0, 3600.0, 1801), (5.0, 3600.0, 721)])
def test_capacity_covers_the_retention_at_the_interval(tmp_path, interval, retention, capacity) -> None:
    observer = Observer(_NoEndpoints(), tmp_path, interval, retention, 10)
    assert observer.capacity == capacity
    assert (observer.capacity - 1) * interval >= retention  # at least the last hour, never unbounded


def test_history_memory_is_bounded_however_long_it_runs() -> None:
    history = EndpointHistory(capacity=100)
    for t in range(5000):
        counters = Counters({"200": float(t)})
        history.record(t * 1000, 1.0, {"a": (counters, Live()), "b": (counters, Live())}, {"a": 50, "b": 50})
    body = history.to_json()
    assert [len(e["samples"]["timestamp_ms"]) for e in body["served_entities"]] == [100, 100]
    assert len(body["traffic"]["timestamp_ms"]) == 100
    assert body["traffic"]["timestamp_ms"][0] == 4900 * 1000
    assert body["traffic"]["a"][-1] == 50


def test_since_ms_returns_only_newer_samples() -> None:
    history = EndpointHistory(capacity=10)
    for t in range(1, 6):
        history.record(t, 1.0, {"a": (Counters(), Live())}, {"a": 100})
    assert history.to_json(since_ms=3)["served_entities"][0]["samples"]["timestamp_ms"] == [4, 5]


# ------------------------------------------------------------------ events
def snap(t: int, version: int = 1, update: str = "NOT_UPDATING", message: str = "", **kw) -> Snapshot:
    return Snapshot(t, version, update, message, kw.pop("pending_version", None), **kw)


def ready(replicas: int = 1, cold: int = 0) -> EntitySnapshot:
    return EntitySnapshot("DEPLOYMENT_READY", "", replicas, replicas, cold)


def kinds(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_update_started_then_succeeded() -> None:
    before = snap(0, active={"a": ready()})
    during = snap(
        1000,
        update="IN_PROGRESS",
        pending_version=2,
        active={"a": ready()},
        pending={"b": EntitySnapshot("DEPLOYMENT_CREATING", "Building the environment with uv.")},
    )
    after = snap(2000, version=2, active={"a": ready(), "b": ready()})
    first = diff(before, during, {})
    assert kinds(first) == ["UPDATE_STARTED", "DEPLOYMENT_PROGRESS"]
    assert "version 2" in first[0]["message"]
    assert first[1]["served_entity"] == "b" and "uv" in first[1]["message"]
    assert kinds(diff(during, after, {})) == ["UPDATE_SUCCEEDED"]


def test_failed_and_canceled_updates_carry_their_message() -> None:
    during = snap(0, update="IN_PROGRESS", pending_version=2, active={"a": ready()})
    failed = snap(
        1000, update="UPDATE_FAILED", message="The model did not load within 5 s.", pending_version=2
    )
    events = diff(during, failed, {})
    assert kinds(events) == ["UPDATE_FAILED"]
    assert events[0]["severity"] == "ERROR" and "did not load" in events[0]["message"]
    canceled = snap(1000, update="UPDATE_CANCELED", message="The config update was canceled.")
    assert kinds(diff(during, canceled, {})) == ["UPDATE_CANCELED"]


def test_an_update_between_two_samples_is_still_reported() -> None:
    """A rollout faster than the sampling interval never shows IN_PROGRESS to the observer."""
    events = diff(snap(0, version=1), snap(1000, version=2), {})
    assert kinds(events) == ["UPDATE_STARTED", "UPDATE_SUCCEEDED"] and "version 2" in events[0]["message"]
    failed = snap(1000, version=2, update="UPDATE_FAILED", message="boom", pending_version=3)
    assert kinds(diff(snap(0, version=2), failed, {})) == ["UPDATE_STARTED", "UPDATE_FAILED"]
    again = snap(2000, version=2, update="UPDATE_FAILED", message="boom", pending_version=4)
    assert kinds(diff(failed, again, {})) == ["UPDATE_STARTED", "UPDATE_FAILED"]  # a second failed try
    assert (
        kinds(
            diff(failed, snap(3000, version=2, update="UPDATE_FAILED", message="boom", pending_version=3), {})
        )
        == []
    )


def test_scale_events_and_cold_start_duration() -> None:
    cold: dict[str, int] = {}
    one = snap(0, active={"a": ready(1)})
    two = snap(1000, active={"a": ready(2)})
    zero = snap(2000, active={"a": ready(0)})
    waking = snap(3000, active={"a": EntitySnapshot("DEPLOYMENT_READY", "Cold start", 0, 0, 1)})
    woken = snap(7000, active={"a": ready(1, cold=1)})
    assert kinds(diff(one, two, cold)) == ["SCALED_UP"]
    assert kinds(diff(two, zero, cold)) == ["SCALED_TO_ZERO"]
    assert kinds(diff(zero, waking, cold)) == ["COLD_START"]
    done = diff(waking, woken, cold)
    assert kinds(done) == ["COLD_START_DONE", "SCALED_UP"]
    assert "4 s" in done[0]["message"] and cold == {}
    assert kinds(diff(woken, one, cold)) == []
    assert kinds(diff(two, one, cold)) == ["SCALED_DOWN"]


def test_crash_and_failed_deployment() -> None:
    crashed = EntitySnapshot("DEPLOYMENT_RECOVERING", "Replacing a replica that exited with code -9.")
    events = diff(snap(0, active={"a": ready()}), snap(1000, active={"a": crashed}), {})
    assert kinds(events) == ["REPLICA_CRASHED", "SCALED_TO_ZERO"]
    failed = EntitySnapshot("DEPLOYMENT_FAILED", "The worker exited while loading the model.")
    during = snap(0, update="IN_PROGRESS", pending_version=2)
    events = diff(during, snap(1000, update="IN_PROGRESS", pending_version=2, pending={"b": failed}), {})
    assert kinds(events) == ["DEPLOYMENT_FAILED"] and events[0]["severity"] == "ERROR"


def test_nothing_changed_means_no_events() -> None:
    s = snap(0, active={"a": ready(2)})
    assert diff(s, snap(1000, active={"a": ready(2)}), {}) == []


# ------------------------------------------------------------------ the event log on disk
def test_event_log_survives_a_restart_is_private_and_bounded(tmp_path) -> None:
    log = EventLog(tmp_path / "events", limit=5)
    for t in range(23):
        log.append("ep", [{"timestamp_ms": t, "type": "X", "message": str(t)}])
    path = tmp_path / "events" / "ep.jsonl"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().splitlines()) <= 10  # rewritten with the last 5 past 2 x limit
    again = EventLog(tmp_path / "events", limit=5)
    again.load("ep")
    assert [e["timestamp_ms"] for e in again.get("ep")] == [18, 19, 20, 21, 22]
    assert [e["timestamp_ms"] for e in again.get("ep", since_ms=20)] == [21, 22]


def test_event_log_skips_a_torn_line_and_forgets_deleted_endpoints(tmp_path) -> None:
    directory = tmp_path / "events"
    directory.mkdir()
    (directory / "a%2Fb.jsonl").write_text(json.dumps({"timestamp_ms": 1, "type": "X"}) + '\n{"timest')
    log = EventLog(directory, limit=5)
    log.load("a/b")  # names are quoted into one file name
    assert [e["timestamp_ms"] for e in log.get("a/b")] == [1]
    log.forget("a/b")
    assert log.get("a/b") == [] and not (directory / "a%2Fb.jsonl").exists()


# ------------------------------------------------------------------ the observer over a double of the manager
class _Deployment:
    """A deployment double whose replicas are this test process, reported in typed fields only."""

    def __init__(self, name: str, replicas: int) -> None:
        self.name = name
        self.replicas = replicas

    def status(self) -> DeploymentStatus:
        n = self.replicas
        me = psutil.Process()
        times = me.cpu_times()
        usage = ProcessUsage(me.pid, times.user + times.system, me.memory_info().rss)
        return DeploymentStatus(READY, "", n, n, processes=(usage,) * n)


def _endpoint() -> Endpoint:
    record = EndpointRecord(
        "ep",
        "id",
        "me",
        0,
        0,
        config=parse_config({"served_entities": [{"name": "a", "entity_name": "m", "entity_version": "1"}]}),
        config_version=1,
    )
    endpoint = Endpoint(record, DataPlane(lambda: None, 1.0))  # its lane: the metrics the observer reads
    endpoint.active = {"a": _Deployment("a", 1)}  # type: ignore[dict-item]
    return endpoint


class _Manager:
    def __init__(self) -> None:
        self.endpoints = {"ep": _endpoint()}


def test_observer_samples_rates_processes_and_scaling_then_forgets_a_deleted_endpoint(tmp_path) -> None:
    manager = _Manager()
    endpoint = manager.endpoints["ep"]
    observer = Observer(manager, tmp_path / "events", 2.0, 60.0, 50)
    observer.tick()
    for _ in range(20):
        endpoint.metrics.observe("a", 200, 0.004, batch=2)
    endpoint.active["a"].replicas = 2  # type: ignore[attr-defined]
    observer.tick()
    body = observer.history("ep")
    samples = body["served_entities"][0]["samples"]
    assert samples["requests_2xx_per_s"][0] == 0.0 and samples["requests_2xx_per_s"][1] > 0
    assert samples["replicas"] == [1, 2] and samples["batch_size_mean"][1] == 2.0
    assert samples["memory_bytes"][1] > 0 and samples["cpu_percent"][1] is not None  # this process
    assert body["traffic"]["a"] == [100, 100]
    assert [e["type"] for e in observer.events.get("ep")] == ["ENDPOINT_CREATED", "SCALED_UP"]
    del manager.endpoints["ep"]
    observer.tick()
    assert observer.history("ep")["served_entities"] == [] and not (tmp_path / "events" / "ep.jsonl").exists()


def test_update_events_carry_the_transition_times_not_the_sampling_time() -> None:
    """An update that began at 1200 and ended at 1700, seen by samples at 1000 and 2000."""
    from jupyter_serving.model.states import ConfigUpdate

    update = ConfigUpdate()
    assert update.changed_ms is None and update.started_ms is None
    update.begin()
    begun = update.started_ms
    assert begun is not None and update.changed_ms == begun
    update.succeed()
    assert update.started_ms == begun and update.changed_ms is not None and update.changed_ms >= begun

    after = snap(2000, version=2, update_started_ms=1200, update_changed_ms=1700)
    events = diff(snap(1000, version=1), after, {})
    assert [(e["type"], e["timestamp_ms"]) for e in events] == [
        ("UPDATE_STARTED", 1200),
        ("UPDATE_SUCCEEDED", 1700),
    ]
    during = snap(
        1500, update="IN_PROGRESS", pending_version=2, update_started_ms=1200, update_changed_ms=1200
    )
    assert [e["timestamp_ms"] for e in diff(snap(1000), during, {})] == [1200]
    # A state read back after a restart has no transition time: the sample's time stands in.
    assert [e["timestamp_ms"] for e in diff(snap(0, version=1), snap(2000, version=2), {})] == [2000, 2000]


def test_endpoint_created_event_carries_the_creation_time(tmp_path) -> None:
    manager = _Manager()
    manager.endpoints["ep"].record.creation_timestamp = 1_234
    observer = Observer(manager, tmp_path / "events", 2.0, 60.0, 50)
    observer.tick()
    created = observer.events.get("ep")[0]
    assert (created["type"], created["timestamp_ms"]) == ("ENDPOINT_CREATED", 1_234)


def test_an_update_that_fails_before_the_first_look_is_still_an_event(tmp_path) -> None:
    """A new endpoint whose model failed to load within one sampling interval: the notebook monitor
    and the JupyterLab panel announce the failure from this UPDATE_FAILED (notebook/health.py)."""
    config = parse_config({"served_entities": [{"name": "a", "entity_name": "m", "entity_version": "1"}]})
    record = EndpointRecord("ep", "id", "me", 1_000, 1_000)
    record.begin_update(config, 1_000)
    record.fail_update("Failed to load the model.")
    manager = _Manager()
    manager.endpoints["ep"] = Endpoint(record, DataPlane(lambda: None, 1.0))
    observer = Observer(manager, tmp_path / "events", 2.0, 60.0, 50)
    observer.tick()
    events = observer.events.get("ep")
    assert [e["type"] for e in events] == ["ENDPOINT_CREATED", "UPDATE_STARTED", "UPDATE_FAILED"]
    assert events[2]["message"] == "Config update failed: Failed to load the model."
    observer.tick()
    assert len(observer.events.get("ep")) == 3  # once


def test_memory_sums_pss_where_the_backend_reads_it_else_rss(tmp_path) -> None:
    observer = Observer(_Manager(), tmp_path / "events", 2.0, 60.0, 50)
    usage = (ProcessUsage(1, 0.0, 1000, 400), ProcessUsage(2, 0.0, 1000, None))
    assert observer._usage(usage)[1] == 1400
