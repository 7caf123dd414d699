"""The progressive-delivery guard: table tests, and simulations over seeded streams that check its
error rates hold under continuous monitoring (the point of an always-valid method)."""

from __future__ import annotations

import math
import random

import pytest

from jupyter_serving.policy.guard import (
    BREACH,
    CONTINUE,
    FINE_BOUNDS,
    ArmStats,
    GuardConfig,
    LatencyHistogram,
    count_sequence,
    evaluate,
    fine_bucket,
    quantile_sequence,
    rate_sequence,
)


def histogram(samples: list[float]) -> LatencyHistogram:
    """Bucket samples exactly as the endpoint's metrics do for the guard."""
    counts = [0] * len(FINE_BOUNDS)
    for s in samples:
        counts[fine_bucket(s)] += 1
    return LatencyHistogram(FINE_BOUNDS, tuple(counts))


@pytest.mark.parametrize("seconds", [1e-6, 5e-5, 0.001, 0.0042, 1.0, 30.0, 1e6])
def test_fine_bucket_holds_the_value(seconds: float) -> None:
    i = fine_bucket(seconds)
    lower = FINE_BOUNDS[i - 1] if i else 0.0
    assert lower < seconds <= FINE_BOUNDS[i]


@pytest.mark.parametrize(
    ("k", "n", "contains", "excludes"),
    [
        (0, 0, [0.0, 0.5, 1.0], []),
        (0, 1000, [0.0, 0.001], [0.02]),
        (50, 1000, [0.05, 0.04, 0.065], [0.01, 0.1]),
        (1000, 1000, [1.0, 0.999], [0.98]),
        (500, 1000, [0.5, 0.45], [0.4, 0.6]),
    ],
)
def test_rate_sequence_table(k: int, n: int, contains: list[float], excludes: list[float]) -> None:
    lower, upper = rate_sequence(k, n, 0.05)
    assert 0.0 <= lower <= k / max(n, 1) <= upper <= 1.0
    for p in contains:
        assert lower <= p <= upper
    for p in excludes:
        assert not lower <= p <= upper


def test_rate_sequence_narrows_with_data_and_widens_with_confidence() -> None:
    widths = [
        (lambda lo_hi: lo_hi[1] - lo_hi[0])(rate_sequence(n // 20, n, 0.05)) for n in (100, 1000, 10_000)
    ]
    assert widths[0] > widths[1] > widths[2]
    assert rate_sequence(50, 1000, 0.001)[0] < rate_sequence(50, 1000, 0.1)[0]


def test_count_sequence_brackets_the_expected_count() -> None:
    k_lo, k_hi = count_sequence(1000, 0.5, 0.01)
    assert k_lo < 500 < k_hi and k_hi - k_lo < 200
    k_lo, k_hi = count_sequence(1000, 0.99, 0.01)
    assert k_lo < 990 <= k_hi <= 1000
    assert count_sequence(10, 0.99, 0.01)[1] == 10  # too few samples to bound p99 from above


def test_quantile_sequence_from_buckets_covers_the_median() -> None:
    rng = random.Random(7)
    samples = [rng.lognormvariate(math.log(0.004), 0.3) for _ in range(2000)]
    lower, upper = quantile_sequence(histogram(samples), 0.5, 0.01)
    assert lower <= 0.004 <= upper
    assert upper / lower < 1.25  # a few fine buckets around the median
    assert quantile_sequence(LatencyHistogram(), 0.5, 0.01) == (0.0, math.inf)


@pytest.mark.parametrize(
    ("challenger", "control", "decision", "guard"),
    [
        (ArmStats(0, 0), ArmStats(0, 0), CONTINUE, None),
        (ArmStats(20, 1), ArmStats(400, 0), CONTINUE, None),  # one error in 20: not enough evidence
        (ArmStats(1000, 50), ArmStats(3000, 0), BREACH, "error_rate_increase"),
        (ArmStats(1000, 50), ArmStats(3000, 150), CONTINUE, None),  # equal rates
        (ArmStats(1000, 0), ArmStats(3000, 150), CONTINUE, None),  # better is never a breach
    ],
)
def test_error_rate_table(challenger: ArmStats, control: ArmStats, decision: str, guard: str | None) -> None:
    verdict = evaluate(GuardConfig(latency=False), challenger, control)
    assert verdict.decision == decision
    assert [i.name for i in verdict.intervals if i.breached] == ([guard] if guard else [])
    assert (verdict.reason is None) == (decision == CONTINUE)


def test_error_rate_tolerance_and_reason() -> None:
    challenger, control = ArmStats(2000, 100), ArmStats(6000, 0)
    assert evaluate(GuardConfig(latency=False), challenger, control).breached
    assert not evaluate(GuardConfig(latency=False, max_error_increase=0.06), challenger, control).breached
    verdict = evaluate(GuardConfig(latency=False), challenger, control)
    assert verdict.reason is not None and verdict.reason.startswith("Error rate:")
    first = verdict.to_json()["guards"][0]
    assert first["estimate"] == pytest.approx(0.05) and first["lower"] < 0.05 < first["upper"]


def test_latency_ratio_table() -> None:
    rng = random.Random(3)
    fast = [rng.lognormvariate(math.log(0.003), 0.2) for _ in range(600)]
    slow = [3 * rng.lognormvariate(math.log(0.003), 0.2) for _ in range(600)]
    same = [rng.lognormvariate(math.log(0.003), 0.2) for _ in range(600)]
    config = GuardConfig(error_rate=False)
    verdict = evaluate(config, ArmStats(600, 0, histogram(slow)), ArmStats(600, 0, histogram(fast)))
    assert verdict.breached and verdict.reason is not None and "p50" in verdict.reason
    assert not evaluate(config, ArmStats(600, 0, histogram(same)), ArmStats(600, 0, histogram(fast))).breached
    # No latencies yet on one side: nothing to say, and nothing breaks.
    assert not evaluate(config, ArmStats(0, 0), ArmStats(600, 0, histogram(fast))).breached
    as_json = evaluate(config, ArmStats(0, 0), ArmStats(0, 0)).to_json()
    assert {g["name"] for g in as_json["guards"]} == {"latency_p50_ratio", "latency_p99_ratio"}


def test_disabled_guards_never_breach() -> None:
    verdict = evaluate(GuardConfig(error_rate=False, latency=False), ArmStats(1000, 1000), ArmStats(1000, 0))
    assert verdict.decision == CONTINUE and verdict.intervals == ()


@pytest.mark.parametrize(
    "body",
    [
        {"alpha": 0},
        {"alpha": "0.05"},
        {"error_rate": {"enabled": "yes"}},
        {"latency": {"p50_ratio": -1}},
        {"latency": []},
        {"unknown": 1},
        {"error_rate": {"max_increase": 0.1, "extra": 1}},
    ],
)
def test_config_rejects_bad_input(body: dict) -> None:
    with pytest.raises(ValueError):
        GuardConfig.from_json(body)


def test_config_round_trips() -> None:
    config = GuardConfig.from_json({"alpha": 0.01, "latency": {"enabled": False}})
    assert config == GuardConfig(alpha=0.01, latency=False)
    assert GuardConfig.from_json(config.to_json()) == config
    assert GuardConfig.from_json(None) == GuardConfig()


# --- simulations: the guard looked at continuously ---------------------------------------------

RUNS, REQUESTS, LOOK_EVERY, SHARE = 200, 1500, 25, 0.25
ALPHA = 0.05


def _stream(
    seed: int,
    challenger_error: float,
    control_error: float,
    challenger_slowdown: float = 1.0,
    requests: int = REQUESTS,
):
    """Yield (challenger, control) cumulative counts every LOOK_EVERY requests of a split stream."""
    rng = random.Random(seed)
    n = [0, 0]
    e = [0, 0]
    buckets = [[0] * len(FINE_BOUNDS), [0] * len(FINE_BOUNDS)]
    for i in range(1, requests + 1):
        arm = 0 if rng.random() < SHARE else 1
        n[arm] += 1
        e[arm] += rng.random() < (challenger_error if arm == 0 else control_error)
        latency = rng.lognormvariate(math.log(0.004), 0.4)
        buckets[arm][fine_bucket(latency * (challenger_slowdown if arm == 0 else 1.0))] += 1
        if i % LOOK_EVERY == 0:
            yield tuple(
                ArmStats(n[a], e[a], LatencyHistogram(FINE_BOUNDS, tuple(buckets[a]))) for a in (0, 1)
            )


def _margin(p: float, runs: int) -> float:
    """Three binomial standard deviations: room for sampling noise in the observed rate."""
    return 3 * math.sqrt(p * (1 - p) / runs)


def test_false_rollback_rate_under_continuous_monitoring_is_at_most_alpha() -> None:
    """Equal arms (2 % errors each, the same latency distribution), looked at 60 times per run:
    the fraction of runs ever breached stays within alpha."""
    config = GuardConfig(alpha=ALPHA)
    false_rollbacks = 0
    naive_rollbacks = 0
    for seed in range(RUNS):
        breached = naive = False
        for challenger, control in _stream(seed, 0.02, 0.02):
            breached = breached or evaluate(config, challenger, control).breached
            naive = naive or _naive_z_breach(challenger, control)
            if breached and naive:
                break
        false_rollbacks += breached
        naive_rollbacks += naive
    assert false_rollbacks / RUNS <= ALPHA + _margin(ALPHA, RUNS)
    # The same streams fool a fixed-sample z-test repeated at every look: the simulation can tell
    # a method that is safe to peek at from one that is not.
    assert naive_rollbacks / RUNS > ALPHA + _margin(ALPHA, RUNS)


def _naive_z_breach(challenger: ArmStats, control: ArmStats) -> bool:
    """A one-sided two-proportion z-test at 5 %, as a dashboard refreshing a p-value would run it."""
    if not challenger.requests or not control.requests:
        return False
    p1 = challenger.errors / challenger.requests
    p2 = control.errors / control.requests
    pooled = (challenger.errors + control.errors) / (challenger.requests + control.requests)
    se = math.sqrt(pooled * (1 - pooled) * (1 / challenger.requests + 1 / control.requests))
    return se > 0 and (p1 - p2) / se > 1.645


def test_a_challenger_failing_five_percent_is_detected() -> None:
    """5 % errors against 0 %: every seeded run breaches on the error rate, typically within 300
    of the challenger's requests (4 % of traffic: 1,200 requests at a 25 % share)."""
    config = GuardConfig(alpha=ALPHA)
    detected_at = []
    for seed in range(20):
        for challenger, control in _stream(seed, 0.05, 0.0, requests=4000):
            verdict = evaluate(config, challenger, control)
            if verdict.breached:
                assert [i.name for i in verdict.intervals if i.breached] == ["error_rate_increase"]
                detected_at.append(challenger.requests)
                break
    assert len(detected_at) == 20
    assert sorted(detected_at)[10] < 300 and max(detected_at) < 1000


def test_a_challenger_three_times_slower_is_detected() -> None:
    config = GuardConfig(alpha=ALPHA)
    for seed in range(20):
        reasons = [
            v.reason
            for v in (evaluate(config, c, b) for c, b in _stream(seed, 0.0, 0.0, challenger_slowdown=3.0))
            if v.breached
        ]
        assert reasons and "p50" in reasons[0]
