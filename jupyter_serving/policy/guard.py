"""The progressive-delivery guard: a sequential test that is safe to evaluate after every request.

A rollout looks at its numbers continuously, so a repeated fixed-sample test (a z-test every
second) would roll back an equal challenger far more often than its nominal level. Every interval
here is instead an *always-valid confidence sequence*: with probability at least 1 - alpha it
covers the truth at every moment simultaneously, so the guard may be evaluated as often as we
like and a false rollback over the whole rollout still has probability at most ``alpha``.

Method (Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform, nonparametric, nonasymptotic
confidence sequences", Ann. Statist. 49(2), 2021, sections 3 and 6; Robbins, "Statistical
methods related to the law of the iterated logarithm", Ann. Math. Statist. 41, 1970):

- For n Bernoulli(p) observations with k successes, the beta-binomial mixture
  ``M_n(p) = B(a + k, b + n - k) / B(a, b) / (p^k (1 - p)^(n - k))`` is a nonnegative martingale
  with mean 1 under p (the likelihood ratio of a Beta(a, b) mixture against p). By Ville's
  inequality ``P(exists n: M_n(p) >= 1/alpha) <= alpha``, so ``{p : M_n(p) < 1/alpha}`` is a
  confidence sequence. Unlike the sub-Gaussian (Hoeffding-type) boundaries it is tight for the
  small rates that error rates are, which is what makes a 5 % failure detectable in hundreds of
  requests rather than thousands.
- Error-rate guard: one confidence sequence per arm (challenger and control, each counted over
  its own requests). The difference ``p_challenger - p_control`` then lies in
  ``[lo_c - hi_b, hi_c - lo_b]``; the guard breaches when the lower end exceeds
  ``max_increase``.
- Latency guards (p50 and p99 ratios): the confidence sequence for a fixed quantile of Howard &
  Ramdas, "Sequential estimation of quantiles with applications to A/B-testing and best-arm
  identification", Bernoulli 28(3), 2022, section 2. The count of observations at or below the
  true q-quantile is Binomial(n, q); the same mixture bounds that count to ``[k_lo, k_hi]`` at
  every n, so the quantile lies between the order statistics ``X_(k_lo)`` and ``X_(k_hi + 1)``.
  Latencies come as a Prometheus histogram, so an order statistic is known only to its bucket:
  the lower end takes the bucket's lower edge and the upper end its upper edge, which only
  widens the interval. The ratio of challenger to control quantile lies in
  ``[lo_c / hi_b, hi_c / lo_b]``; the guard breaches when the lower end exceeds the allowed ratio.
- Quality guard (optional; labels joined on ``client_request_id`` by control/quality.py): one
  sequence per arm for the arm's mean per-row score. Accuracy scores are 1/0 (Bernoulli), so the
  beta-binomial mixture above applies as is; the guard breaches when the lower end of
  ``accuracy_control - accuracy_challenger`` exceeds ``max_decrease``. Absolute errors are
  clipped to ``[0, max_error]`` (a bounded mean needs a bound) and, being ``max_error / 2``
  sub-Gaussian, get Robbins' two-sided normal-mixture boundary (Robbins 1970; Howard et al. 2021,
  section 3): with ``V = n / 4`` in units of ``max_error``, ``|S_n - n mu| <
  sqrt(2 (V + rho) log(sqrt((V + rho) / rho) / alpha))`` at every n with probability 1 - alpha;
  any ``rho > 0`` is valid, ours makes it tightest near 100 labels. The guard breaches when the
  lower end of ``mae_challenger - mae_control`` exceeds ``max_increase``.
- Every one-arm sequence gets an equal share of ``alpha`` (a union bound), so the probability
  that *any* enabled guard falsely breaches, at any time, is at most ``alpha``.

Assumptions: within an arm, requests are exchangeable (the traffic split assigns requests at
random, independently of their content), and latencies are continuous; for the quality guard, whether
and when a row gets its label does not depend on which arm answered it. Everything here is a pure
function of counts: the rollout controller feeds it the per-entity deltas since the rollout began.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONTINUE, BREACH = "continue", "breach"

# Beta(1/2, 1/2) (Jeffreys) puts more mass near 0 and 1 than the uniform prior: tighter for the
# small error rates and extreme quantiles the guard looks at.
_A = _B = 0.5

# Latency buckets for the guard: a geometric grid of ratio 2^(1/8) (about 9 %) from 50 us to
# ~10 min, so that bucket rounding costs the ratio test under 10 %, where the Prometheus
# histogram's coarse buckets (0.002, 0.005, 0.01...) would hide a 2x slowdown.
FINE_RATIO = 2 ** (1 / 8)
FINE_BOUNDS: tuple[float, ...] = (
    *(5e-5 * FINE_RATIO**i for i in range(190)),
    math.inf,
)
_LOG_BASE = math.log(5e-5)
_LOG_RATIO = math.log(FINE_RATIO)


def fine_bucket(seconds: float) -> int:
    """The index into FINE_BOUNDS of the bucket that holds ``seconds``."""
    if seconds <= FINE_BOUNDS[0]:
        return 0
    i = math.ceil((math.log(seconds) - _LOG_BASE) / _LOG_RATIO - 1e-9)
    return min(i, len(FINE_BOUNDS) - 1)


QUALITY_METRICS = ("accuracy", "mae")
_NAME_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")  # as features/catalog.py's table names
QUALITY_FIELDS = {
    "enabled",
    "labels_table",
    "labels_path",
    "label_column",
    "prediction_column",
    "metric",
    "max_decrease",
    "max_increase",
    "max_error",
    "min_labels",
    "poll_interval_s",
}


@dataclass(frozen=True)
class QualityConfig:
    """The optional quality guard: ground truth from a Delta table of labels, joined on
    ``client_request_id`` to each arm's inference-table rows (control/quality.py does the join).

    ``tolerance`` is how much worse the challenger may be, in the metric's units: the wire's
    ``max_decrease`` (accuracy) or ``max_increase`` (mae). ``min_labels`` holds the rollout at a
    step until each arm has that many labelled answers, so that labels arriving late cannot let a
    challenger through unexamined.
    """

    labels_table: str | None = None  # catalog.schema.table under the catalog root
    labels_path: str | None = None  # or the folder of a Delta table
    label_column: str = "label"
    prediction_column: str = "prediction"
    metric: str = "accuracy"
    tolerance: float = 0.0
    max_error: float | None = None  # mae: absolute errors are clipped to this
    min_labels: int = 0
    poll_interval_s: float = 5.0

    @property
    def labels_source(self) -> str:
        return self.labels_table or self.labels_path or ""

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> QualityConfig | None:
        """The ``guard.quality`` object, or None when it is switched off; ValueError on bad input."""
        unknown = set(body) - QUALITY_FIELDS
        if unknown:
            raise ValueError(f"Unknown guard.quality field(s): {', '.join(sorted(unknown))}.")
        if not _flag(body, "enabled", True):
            return None
        table, path = body.get("labels_table"), body.get("labels_path")
        if (table is None) == (path is None):
            raise ValueError(
                "guard.quality needs exactly one of 'labels_table' (<catalog>.<schema>.<table> under "
                "the catalog root) or 'labels_path' (the folder of a Delta table)."
            )
        if table is not None and (
            not isinstance(table, str)
            or len(table.split(".")) != 3
            or not all(_NAME_PART.match(part) for part in table.split("."))
        ):
            raise ValueError(
                f"guard.quality.labels_table must be '<catalog>.<schema>.<table>'; got {table!r}."
            )
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise ValueError(f"guard.quality.labels_path must be an absolute path; got {path!r}.")
        columns = {}
        for key, default in (("label_column", "label"), ("prediction_column", "prediction")):
            value = body.get(key, default)
            if not isinstance(value, str) or not value:
                raise ValueError(f"guard.quality.{key} must be a column name.")
            columns[key] = value
        metric = body.get("metric", "accuracy")
        if metric not in QUALITY_METRICS:
            raise ValueError(
                f"guard.quality.metric must be one of {', '.join(QUALITY_METRICS)}; got {metric!r}."
            )
        own, other = (
            ("max_decrease", "max_increase") if metric == "accuracy" else ("max_increase", "max_decrease")
        )
        if other in body:
            raise ValueError(f"guard.quality.{other} does not apply to metric {metric!r}: use {own}.")
        tolerance = _number(body, own, 0.0)
        max_error = None
        if metric == "mae":
            if "max_error" not in body:
                raise ValueError(
                    "guard.quality.max_error is required for metric 'mae': absolute errors are clipped "
                    "to it, as an always-valid interval for a mean needs a bound."
                )
            max_error = _number(body, "max_error", 0.0)
            if max_error <= 0:
                raise ValueError("guard.quality.max_error must be positive.")
        elif "max_error" in body:
            raise ValueError("guard.quality.max_error applies to metric 'mae' only.")
        if metric == "accuracy" and not -1 < tolerance < 1:
            raise ValueError("guard.quality.max_decrease must be between -1 and 1.")
        min_labels = body.get("min_labels", 0)
        if isinstance(min_labels, bool) or not isinstance(min_labels, int) or not 0 <= min_labels <= 10**9:
            raise ValueError(f"guard.quality.min_labels must be a non-negative integer; got {min_labels!r}.")
        poll = _number(body, "poll_interval_s", 5.0)
        if not 0.1 <= poll <= 3600:
            raise ValueError("guard.quality.poll_interval_s must be between 0.1 and 3600 seconds.")
        return cls(
            labels_table=table,
            labels_path=path,
            label_column=columns["label_column"],
            prediction_column=columns["prediction_column"],
            metric=metric,
            tolerance=tolerance,
            max_error=max_error,
            min_labels=min_labels,
            poll_interval_s=poll,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"enabled": True}
        if self.labels_table is not None:
            out["labels_table"] = self.labels_table
        if self.labels_path is not None:
            out["labels_path"] = self.labels_path
        out |= {
            "label_column": self.label_column,
            "prediction_column": self.prediction_column,
            "metric": self.metric,
            ("max_decrease" if self.metric == "accuracy" else "max_increase"): self.tolerance,
        }
        if self.max_error is not None:
            out["max_error"] = self.max_error
        return out | {"min_labels": self.min_labels, "poll_interval_s": self.poll_interval_s}


@dataclass(frozen=True)
class GuardConfig:
    """What the rollout's ``guard`` object says; defaults switch both guards on (quality is
    off unless a ``quality`` object names its labels)."""

    alpha: float = 0.05
    error_rate: bool = True
    max_error_increase: float = 0.0  # absolute: 0.01 tolerates one more error in 100 requests
    latency: bool = True
    p50_ratio: float = 1.5
    p99_ratio: float = 3.0
    quality: QualityConfig | None = None

    @classmethod
    def from_json(cls, body: Mapping[str, Any] | None) -> GuardConfig:
        """Parse the wire form; raises ValueError with a user-facing message on bad input.

        ``{"alpha": 0.05, "error_rate": {"enabled": true, "max_increase": 0.0},
        "latency": {"enabled": true, "p50_ratio": 1.5, "p99_ratio": 3.0}}``, every key optional.
        """
        body = dict(body or {})
        unknown = set(body) - {"alpha", "error_rate", "latency", "quality"}
        if unknown:
            raise ValueError(f"Unknown guard field(s): {', '.join(sorted(unknown))}.")
        errors = _section(body, "error_rate", {"enabled", "max_increase"})
        latency = _section(body, "latency", {"enabled", "p50_ratio", "p99_ratio"})
        quality = _section(body, "quality", QUALITY_FIELDS)
        config = cls(
            alpha=_number(body, "alpha", cls.alpha),
            error_rate=_flag(errors, "enabled", True),
            max_error_increase=_number(errors, "max_increase", cls.max_error_increase),
            latency=_flag(latency, "enabled", True),
            p50_ratio=_number(latency, "p50_ratio", cls.p50_ratio),
            p99_ratio=_number(latency, "p99_ratio", cls.p99_ratio),
            quality=QualityConfig.from_json(quality) if body.get("quality") is not None else None,
        )
        if not 0 < config.alpha < 1:
            raise ValueError("guard.alpha must be between 0 and 1 (exclusive).")
        if not -1 < config.max_error_increase < 1:
            raise ValueError("guard.error_rate.max_increase must be between -1 and 1.")
        if config.p50_ratio <= 0 or config.p99_ratio <= 0:
            raise ValueError("guard.latency ratios must be positive.")
        return config

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "error_rate": {"enabled": self.error_rate, "max_increase": self.max_error_increase},
            "latency": {
                "enabled": self.latency,
                "p50_ratio": self.p50_ratio,
                "p99_ratio": self.p99_ratio,
            },
            "quality": self.quality.to_json() if self.quality is not None else {"enabled": False},
        }


def _section(body: Mapping[str, Any], key: str, allowed: set[str]) -> dict[str, Any]:
    value = body.get(key)
    value = {} if value is None else value
    if not isinstance(value, Mapping):
        raise ValueError(f"guard.{key} must be an object.")
    unknown = set(value) - allowed
    if unknown:
        raise ValueError(f"Unknown guard.{key} field(s): {', '.join(sorted(unknown))}.")
    return dict(value)


def _number(body: Mapping[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"guard field {key!r} must be a number.")
    return float(value)


def _flag(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"guard field {key!r} must be true or false.")
    return value


@dataclass(frozen=True)
class LatencyHistogram:
    """Latency counts per bucket: ``counts[i]`` observations in ``(bounds[i-1], bounds[i]]``
    (the first bucket starts at 0, the last bound may be ``inf``); Prometheus's shape, not
    cumulative."""

    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return sum(self.counts)

    @classmethod
    def of_samples(cls, samples: Sequence[float]) -> LatencyHistogram:
        """Exact samples as a histogram with one bucket per distinct value (for tests and callers
        that keep raw latencies)."""
        values = sorted(set(samples))
        index = {v: i for i, v in enumerate(values)}
        counts = [0] * len(values)
        for s in samples:
            counts[index[s]] += 1
        return cls(tuple(values), tuple(counts))

    def edges_of(self, j: int) -> tuple[float, float]:
        """The (lower, upper) edges of the bucket holding the j-th smallest observation (1-based)."""
        seen = 0
        for i, c in enumerate(self.counts):
            seen += c
            if seen >= j:
                return (self.bounds[i - 1] if i else 0.0), self.bounds[i]
        raise IndexError(j)

    def quantile(self, q: float) -> float | None:
        """Point estimate, interpolated within the bucket as Prometheus's histogram_quantile does."""
        n = self.total
        if n == 0:
            return None
        rank = q * n
        seen = 0
        for i, c in enumerate(self.counts):
            if c and seen + c >= rank:
                lower = self.bounds[i - 1] if i else 0.0
                upper = self.bounds[i]
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * max(rank - seen, 0.0) / c
            seen += c
        return self.bounds[-1]


@dataclass(frozen=True)
class ArmStats:
    """One arm's counts since the rollout began: requests, errors among them, and latencies."""

    requests: int = 0
    errors: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    labeled: int = 0  # answers joined to a label (quality guard)
    quality_sum: float = 0.0  # their scores' sum: correct answers, or clipped absolute errors


@dataclass(frozen=True)
class Interval:
    """A guard's current estimate, its always-valid interval and the threshold it is held to."""

    name: str
    estimate: float | None
    lower: float
    upper: float
    threshold: float
    breached: bool

    def to_json(self) -> dict[str, Any]:
        def finite(x: float | None) -> float | None:
            return None if x is None or math.isinf(x) or math.isnan(x) else round(x, 6)

        return {
            "name": self.name,
            "estimate": finite(self.estimate),
            "lower": finite(self.lower),
            "upper": finite(self.upper),
            "threshold": self.threshold,
            "breached": self.breached,
        }


@dataclass(frozen=True)
class Decision:
    decision: str  # CONTINUE or BREACH
    reason: str | None
    intervals: tuple[Interval, ...]

    @property
    def breached(self) -> bool:
        return self.decision == BREACH

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision,
            "reason": self.reason,
            "guards": [i.to_json() for i in self.intervals],
        }


def _lbeta(x: float, y: float) -> float:
    return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)


def log_mixture(k: int, n: int, p: float) -> float:
    """log M_n(p): the beta-binomial mixture martingale for k successes in n trials against p."""
    if p <= 0.0:
        return math.inf if k > 0 else _lbeta(_A, _B + n) - _lbeta(_A, _B)
    if p >= 1.0:
        return math.inf if k < n else _lbeta(_A + n, _B) - _lbeta(_A, _B)
    return _lbeta(_A + k, _B + n - k) - _lbeta(_A, _B) - k * math.log(p) - (n - k) * math.log1p(-p)


def rate_sequence(k: int, n: int, alpha: float) -> tuple[float, float]:
    """The always-valid (1 - alpha) interval for a Bernoulli rate after k successes in n trials."""
    if n <= 0:
        return 0.0, 1.0
    level = math.log(1.0 / alpha)
    center = k / n

    def inside(p: float) -> bool:
        return log_mixture(k, n, p) < level

    lower = 0.0 if inside(0.0) else _boundary(inside, 0.0, center)
    upper = 1.0 if inside(1.0) else _boundary(inside, 1.0, center)
    return lower, upper


def _boundary(inside: Any, outside_at: float, inside_at: float) -> float:
    """Bisect between a point outside the set and one inside it (the set is an interval: log M_n
    is convex in p); returns the outermost point known to be inside, so the interval errs wide."""
    out, ins = outside_at, inside_at
    for _ in range(60):
        mid = (out + ins) / 2
        if inside(mid):
            ins = mid
        else:
            out = mid
    return out


def count_sequence(n: int, q: float, alpha: float) -> tuple[int, int]:
    """Bounds [k_lo, k_hi] on the number of n observations at or below the true q-quantile,
    holding at every n at once with probability 1 - alpha (the mixture inverted in k)."""
    level = math.log(1.0 / alpha)

    def inside(k: int) -> bool:
        return log_mixture(k, n, q) < level

    center = min(max(round(n * q), 0), n)
    if not inside(center):  # cannot happen for the mixture (its value at k = nq is <= 1); be safe
        return 0, n
    lo, hi = 0, center  # smallest inside k in [0, center]
    while lo < hi:
        mid = (lo + hi) // 2
        if inside(mid):
            hi = mid
        else:
            lo = mid + 1
    k_lo = lo
    lo, hi = center, n  # largest inside k in [center, n]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if inside(mid):
            lo = mid
        else:
            hi = mid - 1
    return k_lo, lo


def quantile_sequence(hist: LatencyHistogram, q: float, alpha: float) -> tuple[float, float]:
    """Always-valid (1 - alpha) interval for the q-quantile of the latencies behind ``hist``."""
    n = hist.total
    if n == 0:
        return 0.0, math.inf
    k_lo, k_hi = count_sequence(n, q, alpha)
    lower = hist.edges_of(k_lo)[0] if k_lo >= 1 else 0.0
    upper = hist.edges_of(k_hi + 1)[1] if k_hi + 1 <= n else math.inf
    return lower, upper


# The normal mixture's precision: any rho > 0 gives a valid sequence; this one makes the boundary
# tightest near n = 100 observations of a 1/2-sub-Gaussian variable at alpha ~ 0.01.
_RHO = 0.25 * 100 / (2 * math.log(100) + math.log(1 + 2 * math.log(100)))


def mean_sequence(total: float, n: int, bound: float, alpha: float) -> tuple[float, float]:
    """Always-valid (1 - alpha) interval for the mean of values in ``[0, bound]`` after ``n`` of
    them summing to ``total`` (the two-sided normal mixture; see the module docstring)."""
    if n <= 0:
        return 0.0, bound
    v = n / 4 + _RHO  # (1/2)^2 per observation, in units of `bound`
    radius = math.sqrt(2 * v * math.log(math.sqrt(v / _RHO) / alpha)) / n
    center = total / bound / n
    return max(0.0, center - radius) * bound, min(1.0, center + radius) * bound


def quality_interval(
    config: QualityConfig, challenger: ArmStats, control: ArmStats, share: float
) -> Interval:
    """How much worse the challenger's quality is than the control's, with its interval: the
    accuracy decrease, or the mean-absolute-error increase (positive = the challenger is worse)."""
    estimate = None
    if config.metric == "accuracy":
        c_lo, c_hi = rate_sequence(round(challenger.quality_sum), challenger.labeled, share)
        b_lo, b_hi = rate_sequence(round(control.quality_sum), control.labeled, share)
        if challenger.labeled and control.labeled:
            estimate = control.quality_sum / control.labeled - challenger.quality_sum / challenger.labeled
        lower, upper, name = b_lo - c_hi, b_hi - c_lo, "quality_accuracy_decrease"
    else:
        bound = config.max_error or 1.0
        c_lo, c_hi = mean_sequence(challenger.quality_sum, challenger.labeled, bound, share)
        b_lo, b_hi = mean_sequence(control.quality_sum, control.labeled, bound, share)
        if challenger.labeled and control.labeled:
            estimate = challenger.quality_sum / challenger.labeled - control.quality_sum / control.labeled
        lower, upper, name = c_lo - b_hi, c_hi - b_lo, "quality_mae_increase"
    return Interval(name, estimate, lower, upper, config.tolerance, lower > config.tolerance)


def evaluate(config: GuardConfig, challenger: ArmStats, control: ArmStats) -> Decision:
    """The guard's verdict on the counts so far: BREACH (with the first reason) or CONTINUE.

    Safe to call after every request: the chance that an equal challenger is ever breached, over
    the whole stream, is at most ``config.alpha``.
    """
    sequences = 2 * (int(config.error_rate) + 2 * int(config.latency) + int(config.quality is not None))
    if sequences == 0:
        return Decision(CONTINUE, None, ())
    share = config.alpha / sequences
    intervals: list[Interval] = []
    if config.error_rate:
        c_lo, c_hi = rate_sequence(challenger.errors, challenger.requests, share)
        b_lo, b_hi = rate_sequence(control.errors, control.requests, share)
        estimate = None
        if challenger.requests and control.requests:
            estimate = challenger.errors / challenger.requests - control.errors / control.requests
        lower = c_lo - b_hi
        intervals.append(
            Interval(
                "error_rate_increase",
                estimate,
                lower,
                c_hi - b_lo,
                config.max_error_increase,
                lower > config.max_error_increase,
            )
        )
    if config.latency:
        for name, q, allowed in (
            ("latency_p50_ratio", 0.5, config.p50_ratio),
            ("latency_p99_ratio", 0.99, config.p99_ratio),
        ):
            c_lo, c_hi = quantile_sequence(challenger.latency, q, share)
            b_lo, b_hi = quantile_sequence(control.latency, q, share)
            c_est, b_est = challenger.latency.quantile(q), control.latency.quantile(q)
            estimate = c_est / b_est if c_est is not None and b_est else None
            lower = c_lo / b_hi if b_hi > 0 and not math.isinf(b_hi) else 0.0
            upper = c_hi / b_lo if b_lo > 0 else math.inf
            intervals.append(Interval(name, estimate, lower, upper, allowed, lower > allowed))
    if config.quality is not None:
        intervals.append(quality_interval(config.quality, challenger, control, share))
    breached = [i for i in intervals if i.breached]
    if not breached:
        return Decision(CONTINUE, None, tuple(intervals))
    return Decision(BREACH, _reason(breached[0], config.alpha), tuple(intervals))


def _reason(interval: Interval, alpha: float) -> str:
    confidence = f"{(1 - alpha) * 100:g}%"
    if interval.name == "error_rate_increase":
        return (
            f"Error rate: the challenger's errors exceed the control's by at least "
            f"{interval.lower:.2%} ({confidence} always-valid interval "
            f"[{interval.lower:.2%}, {interval.upper:.2%}]; allowed increase "
            f"{interval.threshold:.2%})."
        )
    if interval.name == "quality_accuracy_decrease":
        return (
            f"Quality: the challenger's accuracy is below the control's by at least "
            f"{interval.lower:.2%} ({confidence} always-valid interval "
            f"[{interval.lower:.2%}, {interval.upper:.2%}]; allowed decrease {interval.threshold:.2%})."
        )
    if interval.name == "quality_mae_increase":
        return (
            f"Quality: the challenger's mean absolute error exceeds the control's by at least "
            f"{interval.lower:.4g} ({confidence} always-valid interval "
            f"[{interval.lower:.4g}, {interval.upper:.4g}]; allowed increase {interval.threshold:g})."
        )
    quantile = "p50" if "p50" in interval.name else "p99"
    upper = "inf" if math.isinf(interval.upper) else f"{interval.upper:.2f}"
    return (
        f"Latency: the challenger's {quantile} is at least {interval.lower:.2f}x the control's "
        f"({confidence} always-valid interval [{interval.lower:.2f}, {upper}]; allowed "
        f"{interval.threshold:g}x)."
    )
