"""The autoscaling policy, as pure functions of demand and time (the replica set applies them).

The policy, after Knative's KPA and Ray Serve's autoscaler:

- Capacity is replicas x per-replica concurrency; a served entity's provisioned-concurrency range
  (workload size, or min/max_provisioned_concurrency) divided by the per-replica concurrency gives
  its replica range, as Databricks sizes replicas.
- Scale up at once, on the request path: when in-flight plus queued requests exceed capacity, start
  as many replicas as the demand needs in one step (Knative's "panic" mode), not one per tick.
- Scale down slowly: a periodic tick compares the peak concurrency seen since the last tick with
  capacity; only after `scale_down_delay_s` of continuously lower demand does one replica go, and
  the delay restarts for the next one (Databricks scales down about every five minutes).
- Scale to zero in two stages, if the entity allows it: replicas drain down to the minimum like any
  scale-down, and the last replica goes only after `scale_to_zero_idle_s` without any request
  (Databricks: 30 minutes). The next request is then held in a bounded queue during the cold start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HOLD, DOWN, ZERO = "hold", "down", "zero"


@dataclass(frozen=True)
class ScalingPolicy:
    concurrency: int
    min_replicas: int
    max_replicas: int
    scale_to_zero: bool
    scale_down_delay_s: float
    idle_s: float

    @classmethod
    def from_range(
        cls,
        low: int,
        high: int,
        *,
        concurrency: int,
        scale_to_zero: bool,
        scale_down_delay_s: float,
        idle_s: float,
    ) -> ScalingPolicy:
        concurrency = max(1, concurrency)
        floor = math.ceil(low / concurrency)
        ceiling = max(1, floor, math.ceil(high / concurrency))
        return cls(concurrency, floor, ceiling, scale_to_zero, scale_down_delay_s, idle_s)

    @property
    def initial_replicas(self) -> int:
        """Replicas a deploy starts: the floor, but at least one, so a new config is proven to load."""
        return max(1, self.min_replicas)

    def needed(self, demand: int) -> int:
        """Replicas that serve `demand` concurrent requests, within the entity's range."""
        wanted = math.ceil(demand / self.concurrency) if demand > 0 else 0
        return min(self.max_replicas, max(self.min_replicas, wanted))


def replicas_to_add(policy: ScalingPolicy, demand: int, running: int, starting: int) -> int:
    """How many replicas to start now for `demand` (in flight + queued), given what runs or starts."""
    return max(0, policy.needed(demand) - running - starting)


def tick(
    policy: ScalingPolicy,
    *,
    now: float,
    running: int,
    peak_demand: int,
    last_request: float,
    low_since: float | None,
) -> tuple[str, float | None]:
    """One autoscaler tick: (HOLD | DOWN | ZERO, the new start of the low-demand period)."""
    if running == 0:
        return HOLD, None
    floor = max(1, policy.min_replicas)
    if policy.scale_to_zero and policy.min_replicas == 0 and running <= floor and peak_demand == 0:
        return (ZERO, None) if now - last_request >= policy.idle_s else (HOLD, low_since)
    if policy.needed(peak_demand) >= running or running <= floor:
        return HOLD, None
    if low_since is None:
        return HOLD, now
    if now - low_since >= policy.scale_down_delay_s:
        return DOWN, now  # one step; the next needs another full delay of low demand
    return HOLD, low_since
