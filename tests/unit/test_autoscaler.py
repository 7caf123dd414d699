"""The autoscaling policy as pure functions: replica ranges, immediate scale-up, slow scale-down, zero."""

from __future__ import annotations

from jupyter_serving.policy.autoscaler import DOWN, HOLD, ZERO, ScalingPolicy, replicas_to_add, tick


def policy(
    low: int, high: int, *, zero: bool = False, delay: float = 300, idle: float = 1800
) -> ScalingPolicy:
    return ScalingPolicy.from_range(
        low, high, concurrency=4, scale_to_zero=zero, scale_down_delay_s=delay, idle_s=idle
    )


def test_concurrency_ranges_become_replica_ranges() -> None:
    assert (policy(4, 4).min_replicas, policy(4, 4).max_replicas) == (1, 1)  # Small
    assert (policy(8, 16).min_replicas, policy(8, 16).max_replicas) == (2, 4)  # Medium
    assert (policy(16, 64).min_replicas, policy(16, 64).max_replicas) == (4, 16)  # Large
    assert (policy(0, 4, zero=True).min_replicas, policy(0, 4, zero=True).initial_replicas) == (0, 1)


def test_scale_up_jumps_to_what_demand_needs_within_the_range() -> None:
    p = policy(4, 16)
    assert replicas_to_add(p, demand=4, running=1, starting=0) == 0
    assert replicas_to_add(p, demand=5, running=1, starting=0) == 1
    assert replicas_to_add(p, demand=13, running=1, starting=0) == 3  # panic: all at once
    assert replicas_to_add(p, demand=13, running=1, starting=3) == 0  # already on their way
    assert replicas_to_add(p, demand=100, running=1, starting=0) == 3  # never past max
    assert replicas_to_add(policy(0, 4, zero=True), demand=1, running=0, starting=0) == 1  # cold start


def test_scale_down_waits_a_full_delay_of_low_demand_per_step() -> None:
    p = policy(4, 16, delay=10)
    decision, low = tick(p, now=100, running=3, peak_demand=2, last_request=99, low_since=None)
    assert (decision, low) == (HOLD, 100)
    assert tick(p, now=105, running=3, peak_demand=2, last_request=104, low_since=low)[0] == HOLD
    decision, low = tick(p, now=110, running=3, peak_demand=2, last_request=109, low_since=low)
    assert (decision, low) == (DOWN, 110)
    assert tick(p, now=115, running=2, peak_demand=2, last_request=114, low_since=low)[0] == HOLD
    assert tick(p, now=116, running=2, peak_demand=9, last_request=116, low_since=low) == (
        HOLD,
        None,
    )  # demand is back
    assert tick(p, now=500, running=1, peak_demand=0, last_request=0, low_since=400) == (
        HOLD,
        None,
    )  # at the floor


def test_scale_to_zero_only_after_the_idle_time_and_only_if_enabled() -> None:
    p = policy(0, 4, zero=True, idle=30)
    assert tick(p, now=120, running=1, peak_demand=0, last_request=100, low_since=None)[0] == HOLD
    assert tick(p, now=130, running=1, peak_demand=0, last_request=100, low_since=None)[0] == ZERO
    assert (
        tick(p, now=130, running=1, peak_demand=1, last_request=100, low_since=None)[0] == HOLD
    )  # in flight
    assert tick(policy(4, 4), now=10_000, running=1, peak_demand=0, last_request=0, low_since=None)[0] == HOLD
    assert tick(p, now=10_000, running=0, peak_demand=0, last_request=0, low_since=None) == (HOLD, None)
