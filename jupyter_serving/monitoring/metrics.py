"""Per-endpoint Prometheus metrics (served at GET /api/2.0/serving-endpoints/{name}/metrics).

Request counts and latencies are counted as requests finish; replica counts, in-flight requests
and cold starts are read from the live replica sets when scraped, so they cost nothing per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from jupyter_serving.backends.base import Deployment, GpuStats
from jupyter_serving.policy.guard import FINE_BOUNDS, fine_bucket

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    120.0,
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _LiveGauges:
    """Collects gauges from the endpoint's deployments' status at scrape time."""

    def __init__(self, deployments: Callable[[], Iterable[Deployment]]) -> None:
        self._deployments = deployments

    def collect(self) -> Iterable[Metric]:
        replicas = GaugeMetricFamily(
            "replicas", "Running replicas per served entity", labels=["served_entity"]
        )
        inflight = GaugeMetricFamily(
            "inflight_requests", "Requests in flight per served entity", labels=["served_entity"]
        )
        queued = GaugeMetricFamily(
            "queued_requests",
            "Requests waiting for a replica to start, per served entity",
            labels=["served_entity"],
        )
        cold = CounterMetricFamily(
            "cold_starts", "Replicas started for a request that found none", labels=["served_entity"]
        )
        gpus: dict[int, GpuStats] = {}
        for deployment in self._deployments():
            status = deployment.status()
            replicas.add_metric([deployment.name], status.replicas)
            inflight.add_metric([deployment.name], status.inflight)
            queued.add_metric([deployment.name], status.queued)
            cold.add_metric([deployment.name], status.cold_starts)
            gpus.update((g.index, g) for g in status.gpu_stats)
        yield from (replicas, inflight, queued, cold)
        yield from _gpu_gauges([gpus[i] for i in sorted(gpus)])


def _gpu_gauges(stats: list[GpuStats]) -> Iterable[Metric]:
    """Memory and utilisation of the GPUs this endpoint's replicas hold, as their backends report
    them (nothing where the host cannot tell)."""
    if not stats:
        return
    used = GaugeMetricFamily("gpu_memory_used_bytes", "GPU memory in use", labels=["device"])
    total = GaugeMetricFamily("gpu_memory_total_bytes", "GPU memory", labels=["device"])
    busy = GaugeMetricFamily("gpu_utilization_percent", "GPU utilisation", labels=["device"])
    for gpu in stats:
        used.add_metric([str(gpu.index)], gpu.memory_used_bytes)
        total.add_metric([str(gpu.index)], gpu.memory_total_bytes)
        busy.add_metric([str(gpu.index)], gpu.utilization_percent)
    yield from (used, total, busy)


# MLflow's scoring server answers a model that raised in predict with 400 BAD_REQUEST and this
# message (mlflow.pyfunc.scoring_server.invocations); the worker keeps it, adding the cause.
MODEL_ERROR_MESSAGE = "Encountered an unexpected error while evaluating the model"


def model_error(status: int, response: str) -> bool:
    """Whether an answer is an error for the progressive-delivery guard: a server error (>= 500)
    or a model error, which MLflow answers as a 400 (only 4xx bodies are searched)."""
    return status >= 500 or (400 <= status < 500 and MODEL_ERROR_MESSAGE in response)


class GuardTally:
    """One entity's answers as the progressive-delivery guard counts them (policy/guard.py):
    requests, errors (`model_error`) and latencies on the guard's fine log-scale buckets, which
    the Prometheus histogram's coarse buckets are too wide for."""

    __slots__ = ("errors", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = [0] * len(FINE_BOUNDS)


class EndpointMetrics:
    def __init__(self, deployments: Callable[[], Iterable[Deployment]]) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "requests",
            "Invocations by served entity and HTTP status",
            ["served_entity", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "request_latency_seconds",
            "Invocation latency seen by the server",
            ["served_entity"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch = Histogram(
            "batch_size",
            "Requests scored together by one predict call (micro-batching)",
            ["served_entity"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        # Shadow traffic (dataplane/shadow.py): mirrored calls by status, calls that failed, and
        # mirrored requests (or their rows) dropped, by reason; none of them is a live request.
        self.shadow_requests = Counter(
            "shadow_requests",
            "Mirrored requests answered by the shadow entity, by HTTP status",
            ["served_entity", "status"],
            registry=self.registry,
        )
        self.shadow_errors = Counter(
            "shadow_errors",
            "Mirrored requests the shadow entity failed",
            ["served_entity"],
            registry=self.registry,
        )
        self.shadow_dropped = Counter(
            "shadow_dropped",
            "Mirrored requests or shadow rows dropped (queue_full, not_deployed, row_not_stored, stopped)",
            ["served_entity", "reason"],
            registry=self.registry,
        )
        self.registry.register(_LiveGauges(deployments))
        self.tallies: dict[str, GuardTally] = {}

    def observe(
        self, served: str, status: int, seconds: float, batch: int | None = None, error: bool | None = None
    ) -> None:
        """`error`: whether the guard counts the answer as an error (`model_error`); by default,
        a status >= 500."""
        tally = self.tallies.get(served)
        if tally is None:
            tally = self.tallies[served] = GuardTally()
        tally.requests += 1
        tally.errors += status >= 500 if error is None else error
        tally.latency[fine_bucket(seconds)] += 1
        self.requests.labels(served, str(status)).inc()
        self.latency.labels(served).observe(seconds)
        if batch is not None:
            self.batch.labels(served).observe(batch)

    def render(self) -> bytes:
        return generate_latest(self.registry)
