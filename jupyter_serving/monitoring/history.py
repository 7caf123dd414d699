"""A short in-memory metrics history per endpoint and served entity, for charts (no Prometheus needed).

It is sampled, never fed from the request path: every `interval_s` the observer reads the counters
the data plane keeps anyway (`EndpointMetrics`) and the replica sets' live state, and appends one
sample per entity to a fixed-size ring, so memory is bounded by `retention_s / interval_s` samples
per entity whatever the traffic. Rates and latency percentiles are computed from counter *deltas*
between two samples, the way Prometheus' `rate()` and `histogram_quantile()` do.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The columns of one sample, in the order the API returns them (see server/openapi.yaml, History).
FIELDS = (
    "timestamp_ms",
    "requests_per_s",
    "requests_2xx_per_s",
    "requests_4xx_per_s",
    "requests_5xx_per_s",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "replicas",
    "ready_replicas",
    "starting_replicas",
    "queued_requests",
    "inflight_requests",
    "cold_starts",
    "batch_size_mean",
    "cpu_percent",
    "memory_bytes",
    "gpu_memory_bytes",
)


@dataclass(frozen=True)
class Counters:
    """Cumulative counters of one served entity at one moment (what Prometheus would scrape)."""

    by_status: Mapping[str, float] = field(default_factory=dict)  # HTTP status -> requests
    latency_buckets: Sequence[tuple[float, float]] = ()  # (upper bound s, cumulative count), +Inf last
    batch_sum: float = 0.0
    batch_count: float = 0.0


@dataclass(frozen=True)
class Live:
    """Gauges read from the running replicas of one served entity at one moment."""

    replicas: int = 0
    ready_replicas: int = 0
    starting_replicas: int = 0
    queued_requests: int = 0
    inflight_requests: int = 0
    cold_starts: int = 0
    cpu_percent: float | None = None
    memory_bytes: int | None = None
    gpu_memory_bytes: int | None = None


def quantile(
    q: float, before: Sequence[tuple[float, float]], now: Sequence[tuple[float, float]]
) -> float | None:
    """The q-quantile (seconds) of the observations that arrived between two cumulative histograms.

    Linear interpolation inside the bucket holding the rank, as `histogram_quantile` does; a rank in
    the +Inf bucket answers the largest finite bound. None when nothing arrived.
    """
    prior = dict(before)
    counts = [(bound, count - prior.get(bound, 0.0)) for bound, count in now]
    if not counts or counts[-1][1] <= 0:
        return None
    rank = q * counts[-1][1]
    lower, below = 0.0, 0.0
    for bound, cumulative in counts:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            inside = cumulative - below
            return lower + (bound - lower) * ((rank - below) / inside if inside > 0 else 1.0)
        lower, below = bound, cumulative
    return lower


def _rate(before: float, now: float, seconds: float) -> float:
    # A counter that went down was reset (the entity's set was replaced): count from zero.
    delta = now - before if now >= before else now
    return delta / seconds if seconds > 0 else 0.0


def sample(
    timestamp_ms: int, seconds: float, before: Counters | None, now: Counters, live: Live
) -> dict[str, Any]:
    """One history sample from two successive counter readings `seconds` apart."""
    before = before or Counters()
    classes = {"2": 0.0, "4": 0.0, "5": 0.0}
    total = 0.0
    for status, count in now.by_status.items():
        rate = _rate(before.by_status.get(status, 0.0), count, seconds)
        total += rate
        if status[:1] in classes:
            classes[status[:1]] += rate
    q = {p: quantile(p, before.latency_buckets, now.latency_buckets) for p in (0.5, 0.9, 0.99)}
    batches = now.batch_count - before.batch_count
    return {
        "timestamp_ms": timestamp_ms,
        "requests_per_s": round(total, 3),
        "requests_2xx_per_s": round(classes["2"], 3),
        "requests_4xx_per_s": round(classes["4"], 3),
        "requests_5xx_per_s": round(classes["5"], 3),
        "latency_p50_ms": _ms(q[0.5]),
        "latency_p90_ms": _ms(q[0.9]),
        "latency_p99_ms": _ms(q[0.99]),
        "replicas": live.replicas,
        "ready_replicas": live.ready_replicas,
        "starting_replicas": live.starting_replicas,
        "queued_requests": live.queued_requests,
        "inflight_requests": live.inflight_requests,
        "cold_starts": live.cold_starts,
        "batch_size_mean": round((now.batch_sum - before.batch_sum) / batches, 2) if batches > 0 else None,
        "cpu_percent": None if live.cpu_percent is None else round(live.cpu_percent, 1),
        "memory_bytes": live.memory_bytes,
        "gpu_memory_bytes": live.gpu_memory_bytes,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class Ring:
    """The last `capacity` samples of one series; older ones fall off, so memory never grows."""

    def __init__(self, capacity: int) -> None:
        self._samples: deque[dict[str, Any]] = deque(maxlen=max(1, capacity))

    def __len__(self) -> int:
        return len(self._samples)

    def append(self, item: dict[str, Any]) -> None:
        self._samples.append(item)

    def since(self, timestamp_ms: int) -> list[dict[str, Any]]:
        return [s for s in self._samples if s["timestamp_ms"] > timestamp_ms]


def columns(samples: Iterable[Mapping[str, Any]], names: Sequence[str]) -> dict[str, list[Any]]:
    """Row samples as columns (one list per field): what chart libraries draw directly."""
    rows = list(samples)
    return {name: [row.get(name) for row in rows] for name in names}


class EndpointHistory:
    """Rings per served entity of one endpoint, plus the traffic split at each sample."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entities: dict[str, Ring] = {}
        self.traffic = Ring(capacity)
        self._last: dict[str, Counters] = {}

    def record(
        self,
        timestamp_ms: int,
        seconds: float,
        readings: Mapping[str, tuple[Counters, Live]],
        split: Mapping[str, int],
    ) -> None:
        """Append one sample per entity in `readings`; an entity seen for the first time starts its
        rates at the next sample (there is no earlier reading to take a delta from)."""
        for name, (counters, live) in readings.items():
            before = self._last.get(name)
            self._last[name] = counters
            if before is None and any(counters.by_status.values()):
                continue
            self.entities.setdefault(name, Ring(self.capacity)).append(
                sample(timestamp_ms, seconds, before, counters, live)
            )
        self.traffic.append({"timestamp_ms": timestamp_ms, **split})

    def to_json(self, since_ms: int = 0) -> dict[str, Any]:
        traffic = self.traffic.since(since_ms)
        names = sorted({k for row in traffic for k in row if k != "timestamp_ms"})
        return {
            "served_entities": [
                {"name": name, "samples": columns(ring.since(since_ms), FIELDS)}
                for name, ring in sorted(self.entities.items())
            ],
            "traffic": columns(traffic, ("timestamp_ms", *names)),
        }
