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
- Every one-arm sequence gets an equal share of ``alpha`` (a union bound), so the probability
  that *any* enabled guard falsely breaches, at any time, is at most ``alpha``.

Assumptions: within an arm, requests are exchangeable (the traffic split assigns requests at
random, independently of their content), and latencies are continuous. Everything here is a pure
function of counts: the rollout controller feeds it the per-entity deltas since the rollout began.
"""

from __future__ import annotations

import math
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


@dataclass(frozen=True)
class GuardConfig:
    """What the rollout's ``guard`` object says; defaults switch both guards on."""

    alpha: float = 0.05
    error_rate: bool = True
    max_error_increase: float = 0.0  # absolute: 0.01 tolerates one more error in 100 requests
    latency: bool = True
    p50_ratio: float = 1.5
    p99_ratio: float = 3.0

    @classmethod
    def from_json(cls, body: Mapping[str, Any] | None) -> GuardConfig:
        """Parse the wire form; raises ValueError with a user-facing message on bad input.

        ``{"alpha": 0.05, "error_rate": {"enabled": true, "max_increase": 0.0},
        "latency": {"enabled": true, "p50_ratio": 1.5, "p99_ratio": 3.0}}``, every key optional.
        """
        body = dict(body or {})
        unknown = set(body) - {"alpha", "error_rate", "latency"}
        if unknown:
            raise ValueError(f"Unknown guard field(s): {', '.join(sorted(unknown))}.")
        errors = _section(body, "error_rate", {"enabled", "max_increase"})
        latency = _section(body, "latency", {"enabled", "p50_ratio", "p99_ratio"})
        config = cls(
            alpha=_number(body, "alpha", cls.alpha),
            error_rate=_flag(errors, "enabled", True),
            max_error_increase=_number(errors, "max_increase", cls.max_error_increase),
            latency=_flag(latency, "enabled", True),
            p50_ratio=_number(latency, "p50_ratio", cls.p50_ratio),
            p99_ratio=_number(latency, "p99_ratio", cls.p99_ratio),
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


def evaluate(config: GuardConfig, challenger: ArmStats, control: ArmStats) -> Decision:
    """The guard's verdict on the counts so far: BREACH (with the first reason) or CONTINUE.

    Safe to call after every request: the chance that an equal challenger is ever breached, over
    the whole stream, is at most ``config.alpha``.
    """
    sequences = 2 * (int(config.error_rate) + 2 * int(config.latency))
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
    quantile = "p50" if "p50" in interval.name else "p99"
    upper = "inf" if math.isinf(interval.upper) else f"{interval.upper:.2f}"
    return (
        f"Latency: the challenger's {quantile} is at least {interval.lower:.2f}x the control's "
        f"({confidence} always-valid interval [{interval.lower:.2f}, {upper}]; allowed "
        f"{interval.threshold:g}x)."
    )
