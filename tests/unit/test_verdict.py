"""The Overview's live A/B verdict (policy/verdict.py): table tests, and simulations over seeded
streams showing it is safe to look at continuously (equal entities are reported different in at
most alpha of the runs, however often the page polls) and that real differences are found."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from jupyter_serving.policy.guard import FINE_BOUNDS, ArmStats, LatencyHistogram, fine_bucket
from jupyter_serving.policy.verdict import (
    BETTER,
    NO_DATA,
    NO_DIFFERENCE,
    WORSE,
    pick_control,
    verdict,
    verdicts,
)

RUNS, REQUESTS, LOOK_EVERY, SHARE = 200, 1500, 25, 0.5
ALPHA = 0.05


def _stream(
    seed: int,
    b_error: float,
    a_error: float,
    b_slowdown: float = 1.0,
    requests: int = REQUESTS,
) -> Iterator[tuple[ArmStats, ArmStats]]:
    """(B, A) cumulative counts every LOOK_EVERY requests of a 50/50 split stream, as the page
    would see them on each poll."""
    rng = random.Random(seed)
    n, e = [0, 0], [0, 0]
    buckets = [[0] * len(FINE_BOUNDS), [0] * len(FINE_BOUNDS)]
    for i in range(1, requests + 1):
        arm = 0 if rng.random() < SHARE else 1
        n[arm] += 1
        e[arm] += rng.random() < (b_error if arm == 0 else a_error)
        latency = rng.lognormvariate(math.log(0.004), 0.4) * (b_slowdown if arm == 0 else 1.0)
        buckets[arm][fine_bucket(latency)] += 1
        if i % LOOK_EVERY == 0:
            yield tuple(  # type: ignore[misc]
                ArmStats(n[a], e[a], LatencyHistogram(FINE_BOUNDS, tuple(buckets[a]))) for a in (0, 1)
            )


def _margin(p: float, runs: int) -> float:
    """Three binomial standard deviations of the observed rate."""
    return 3 * math.sqrt(p * (1 - p) / runs)


def test_no_requests_is_no_data() -> None:
    v = verdict("b", ArmStats(), "a", ArmStats(10, 0))
    assert v.verdict == NO_DATA and v.findings == () and "No requests answered by b" in v.summary
    assert v.to_json()["guards"] == []


def test_few_requests_say_no_difference_yet() -> None:
    stream = _stream(1, 0.0, 0.0, requests=50)
    b, a = list(stream)[-1]
    v = verdict("b", b, "a", a, ALPHA)
    assert v.verdict == NO_DIFFERENCE and v.summary.startswith("No difference yet")
    for guard in v.to_json()["guards"]:
        assert guard["direction"] == NO_DIFFERENCE
        assert guard["lower"] is None or guard["upper"] is None or guard["lower"] <= guard["upper"]


def test_the_verdict_is_the_guard_interval_read_both_ways() -> None:
    # 10 % errors against none, in plenty of requests: worse on the error rate, with the estimate
    # inside the interval, and the sentence naming what is worse.
    worse = verdict("b", ArmStats(2000, 200), "a", ArmStats(2000, 0), ALPHA)
    assert worse.verdict == WORSE
    error = next(f for f in worse.findings if f.interval.name == "error_rate_increase")
    assert error.direction == WORSE
    assert error.interval.lower <= 0.1 <= error.interval.upper
    assert "b is worse than a" in worse.summary and "error rate +10.00%" in worse.summary
    # The same counts the other way round: better.
    better = verdict("a", ArmStats(2000, 0), "b", ArmStats(2000, 200), ALPHA)
    assert better.verdict == BETTER and "a is better than b" in better.summary


def test_equal_entities_looked_at_continuously_are_rarely_called_different() -> None:
    """Equal arms (2 % errors each, one latency distribution), the verdict read 60 times a run:
    the share of runs ever reported different (either way, on any guard) stays within alpha."""
    ever_different = 0
    for seed in range(RUNS):
        for b, a in _stream(seed, 0.02, 0.02):
            if verdict("b", b, "a", a, ALPHA).verdict != NO_DIFFERENCE:
                ever_different += 1
                break
    assert ever_different / RUNS <= ALPHA + _margin(ALPHA, RUNS)


def test_a_failing_b_is_found_worse_and_a_faster_b_better() -> None:
    for seed in range(10):
        final = [verdict("b", b, "a", a, ALPHA) for b, a in _stream(100 + seed, 0.08, 0.0, requests=3000)]
        assert final[-1].verdict == WORSE, final[-1].summary
        # Once found worse, later looks keep saying so (the intervals only narrow around the truth).
        first = next(i for i, v in enumerate(final) if v.verdict == WORSE)
        assert all(v.verdict == WORSE for v in final[first:])
    for seed in range(10):
        *_, (b, a) = _stream(200 + seed, 0.0, 0.0, b_slowdown=0.4, requests=3000)
        v = verdict("b", b, "a", a, ALPHA)
        assert v.verdict == BETTER, v.summary
        assert {f.interval.name for f in v.findings if f.direction == BETTER} >= {"latency_p50_ratio"}


def test_a_three_times_slower_b_is_worse_on_latency() -> None:
    for seed in range(10):
        *_, (b, a) = _stream(300 + seed, 0.0, 0.0, b_slowdown=3.0, requests=1500)
        v = verdict("b", b, "a", a, ALPHA)
        assert v.verdict == WORSE and "latency p50" in v.summary, v.summary
        p50 = next(f for f in v.findings if f.interval.name == "latency_p50_ratio")
        assert p50.interval.lower > 1.0 and p50.interval.estimate is not None
        assert 2.0 < p50.interval.estimate < 4.5


def test_control_is_the_entity_with_most_traffic() -> None:
    arms = {"a": ArmStats(10, 0), "b": ArmStats(30, 0)}
    assert pick_control({"a": 80, "b": 20}, arms) == "a"
    assert pick_control({"a": 0, "b": 0}, arms) == "b"  # no traffic: the most answered
    assert pick_control({}, {}) is None
    listed = verdicts("a", {"c": ArmStats(1, 0), "a": ArmStats(5, 0), "b": ArmStats(2, 0)})
    assert [v.entity for v in listed] == ["b", "c"] and {v.control for v in listed} == {"a"}
