"""The live A/B verdict on the page's Overview: the rollout guard's always-valid intervals, read both ways.

The Overview is looked at continuously (it polls every 2 s), so a fixed-sample test recomputed on
every poll would, sooner or later, call two equal entities different. The verdict therefore uses
exactly the guard's method (policy/guard.py: beta-binomial mixture confidence sequences for the
error rates, Howard et al. 2021; the quantile confidence sequence for p50/p99, Howard & Ramdas
2022), through its public `evaluate`: every interval holds at every moment at once, with the
alpha shared over all of them, so the chance that an equal pair is *ever* reported as different,
however often the page is read, is at most ``alpha``.

Where the guard only asks "is the challenger worse by more than the allowed margin?", the verdict
holds each interval against "no difference" (0 for the error-rate difference, 1 for latency
ratios) on both sides: an interval wholly above says worse, wholly below says better, and one
that still covers it says "no difference yet" -- the honest answer until the evidence is in.
Pure functions of counts: the handler (api/verdict_handlers.py) feeds them the per-entity tallies
the metrics keep since the server started (monitoring/metrics.py `GuardTally`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jupyter_serving.policy.guard import ArmStats, GuardConfig, Interval, evaluate

NO_DATA, NO_DIFFERENCE, WORSE, BETTER = "no_data", "no_difference_yet", "worse", "better"
METHOD = (
    "always-valid confidence sequences (beta-binomial mixture for error rates, Howard et al. 2021; "
    "quantile confidence sequence for latency, Howard & Ramdas 2022), as the rollout guard"
)
_LABELS = {
    "error_rate_increase": "error rate",
    "latency_p50_ratio": "latency p50",
    "latency_p99_ratio": "latency p99",
}


@dataclass(frozen=True)
class Finding:
    """One guard interval with its direction: WORSE, BETTER or NO_DIFFERENCE."""

    interval: Interval
    direction: str

    def to_json(self) -> dict[str, Any]:
        return {**self.interval.to_json(), "label": _LABELS[self.interval.name], "direction": self.direction}


@dataclass(frozen=True)
class Verdict:
    """Entity B against control A: the overall word, a sentence, and each interval behind it."""

    entity: str
    control: str
    verdict: str
    summary: str
    findings: tuple[Finding, ...]
    requests: int
    errors: int
    control_requests: int
    control_errors: int

    def to_json(self) -> dict[str, Any]:
        return {
            "served_entity_name": self.entity,
            "control": self.control,
            "verdict": self.verdict,
            "summary": self.summary,
            "requests": self.requests,
            "errors": self.errors,
            "control_requests": self.control_requests,
            "control_errors": self.control_errors,
            "guards": [f.to_json() for f in self.findings],
        }


def direction(interval: Interval) -> str:
    """WORSE when the whole interval lies above "no difference", BETTER when below."""
    if interval.lower > interval.threshold:
        return WORSE
    if interval.upper < interval.threshold:
        return BETTER
    return NO_DIFFERENCE


def verdict(
    entity: str, challenger: ArmStats, control_name: str, control: ArmStats, alpha: float = 0.05
) -> Verdict:
    """B (`challenger`) against A (`control`) on everything observed so far; safe to recompute
    after every request (at most `alpha` chance of ever reporting a difference between equals)."""
    if challenger.requests == 0 or control.requests == 0:
        return Verdict(
            entity, control_name, NO_DATA,
            f"No requests answered by {entity if challenger.requests == 0 else control_name} yet.",
            (), challenger.requests, challenger.errors, control.requests, control.errors,
        )  # fmt: skip
    # Thresholds at "no difference": the guard's intervals, held to 0 and 1 instead of a margin.
    config = GuardConfig(alpha=alpha, max_error_increase=0.0, p50_ratio=1.0, p99_ratio=1.0)
    decision = evaluate(config, challenger, control)
    findings = tuple(Finding(i, direction(i)) for i in decision.intervals)
    worse = [f for f in findings if f.direction == WORSE]
    better = [f for f in findings if f.direction == BETTER]
    if worse:
        word, named = WORSE, worse
    elif better:
        word, named = BETTER, better
    else:
        word, named = NO_DIFFERENCE, []
    return Verdict(
        entity, control_name, word, _summary(entity, control_name, word, named, alpha), findings,
        challenger.requests, challenger.errors, control.requests, control.errors,
    )  # fmt: skip


def _summary(entity: str, control: str, word: str, named: list[Finding], alpha: float) -> str:
    confidence = f"{(1 - alpha) * 100:g}%"
    if word == NO_DIFFERENCE:
        return (
            f"No difference yet between {entity} and {control}: every {confidence} always-valid "
            "interval still covers no difference."
        )
    parts = [_describe(f.interval) for f in named]
    return f"{entity} is {word} than {control}: {'; '.join(parts)} ({confidence} always-valid)."


def _describe(interval: Interval) -> str:
    label = _LABELS[interval.name]
    if interval.name == "error_rate_increase":
        estimate = "?" if interval.estimate is None else f"{interval.estimate:+.2%}"
        return f"{label} {estimate} [{interval.lower:+.2%}, {interval.upper:+.2%}]"
    estimate = "?" if interval.estimate is None else f"{interval.estimate:.2f}x"
    upper = "inf" if math.isinf(interval.upper) else f"{interval.upper:.2f}"
    return f"{label} {estimate} [{interval.lower:.2f}, {upper}]"


def pick_control(split: Mapping[str, int], observed: Mapping[str, ArmStats]) -> str | None:
    """The default control: the entity with the most traffic now (the incumbent), ties to the
    first; where no entity has traffic, the one that answered the most requests."""
    if split and max(split.values()) > 0:
        return max(split, key=lambda n: split[n])
    if observed:
        return max(observed, key=lambda n: observed[n].requests)
    return None


def verdicts(control: str, arms: Mapping[str, ArmStats], alpha: float = 0.05) -> list[Verdict]:
    """Every other observed entity against `control`, in name order."""
    base = arms.get(control, ArmStats())
    return [verdict(n, arms[n], control, base, alpha) for n in sorted(arms) if n != control]
