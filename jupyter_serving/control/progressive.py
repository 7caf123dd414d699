"""Progressive delivery: move an endpoint's traffic to a challenger step by step, under a guard.

    PUT .../rollout {"to": "challenger", "steps": [5, 25, 50, 100], "step_duration_s": 60, "guard": {}}

    RUNNING --(each step's duration passes)--> next step ... --(100 % applied)--> SUCCEEDED
       |  ^                                  \\--(guard breach, any time)--> ROLLED_BACK
     pause resume                             \\--(cancel)--> CANCELED
       v  |
      PAUSED (the split holds; the guard keeps watching and still rolls back)

Each step is an ordinary config update with only the traffic_config changed, made through
`EndpointManager.update_config` like a user's `PUT .../config`: the served entities are unchanged, so
the rollout reuses their deployments and swaps the routing table in one assignment (zero downtime).

The guard (policy/guard.py) compares the challenger with the control entities (those that had
traffic when the rollout began) on the answers each served since then, read from the endpoint's
metrics tallies (monitoring/metrics.py `GuardTally`). It is evaluated every `tick_s`; its intervals
are always-valid, so looking that often does not inflate the false-rollback rate beyond `alpha`.

With a ``quality`` guard, the controller also joins ground-truth labels to each arm's
inference-table rows on ``client_request_id`` (control/quality.py) every ``poll_interval_s``, in a
worker thread, and feeds each arm's labelled count and score sum to the same guard; with
``min_labels`` a step does not end before each arm has that many labelled answers.

A breach rolls back at once to the split the endpoint had before the rollout: that is the last split
known safe, since the breach is evidence about the challenger at any share, not only the current
one. Cancel also restores that split; pause holds the current one.

The rollout's state, including the guard's evidence so far and the time spent in the current step,
lives in the endpoint's record (`EndpointRecord.rollout`), saved on every tick that changes it, so
a restarted server resumes the same step with the evidence it had. Every step and decision is an
event in the endpoint's event log (monitoring/events.py), and the state keeps the same timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_serving.control.endpoint import Endpoint
from jupyter_serving.control.endpoint_settings import save
from jupyter_serving.control.manager import EndpointManager
from jupyter_serving.control.quality import QualityCounts, check_labels_table, labels_location, read_counts
from jupyter_serving.errors import InvalidParameterValue, InvalidState, ResourceConflict, ResourceDoesNotExist
from jupyter_serving.model.config import EndpointConfig
from jupyter_serving.model.states import NOT_UPDATING
from jupyter_serving.monitoring.events import ERROR, INFO, WARNING, EventLog, event
from jupyter_serving.policy.guard import (
    FINE_BOUNDS,
    ArmStats,
    Decision,
    GuardConfig,
    LatencyHistogram,
    QualityConfig,
    evaluate,
)

log = logging.getLogger("jupyter_serving")

RUNNING, PAUSED, SUCCEEDED, ROLLED_BACK, CANCELED = (
    "RUNNING",
    "PAUSED",
    "SUCCEEDED",
    "ROLLED_BACK",
    "CANCELED",
)
ACTIVE = (RUNNING, PAUSED)
DEFAULT_STEPS = (5, 25, 50, 100)
DEFAULT_STEP_S = 60.0


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class RolloutPlan:
    to: str
    steps: tuple[int, ...]
    step_duration_s: float
    guard: GuardConfig
    original: dict[str, int]  # the split before the rollout: where a breach or a cancel returns


def parse_rollout(body: Any, config: EndpointConfig | None, name: str) -> RolloutPlan:
    """Validate a PUT body against the endpoint's active config (InvalidParameterValue on bad input)."""
    if not isinstance(body, dict):
        raise InvalidParameterValue("The request body must be a JSON object.")
    unknown = set(body) - {"to", "steps", "step_duration_s", "guard", "name"}
    if unknown:
        raise InvalidParameterValue(f"Unknown rollout field(s): {', '.join(sorted(unknown))}.")
    if config is None:
        raise InvalidState(f"Endpoint '{name}' has no active config to roll out from.")
    to = body.get("to")
    names = [e.name for e in config.served_entities]
    if not isinstance(to, str) or to not in names:
        raise InvalidParameterValue(
            f"'to' must name a served entity of endpoint '{name}' ({', '.join(names)}); got {to!r}."
        )
    steps = body.get("steps", list(DEFAULT_STEPS))
    if (
        not isinstance(steps, list)
        or not steps
        or any(isinstance(s, bool) or not isinstance(s, int) or not 0 < s <= 100 for s in steps)
        or any(a >= b for a, b in itertools.pairwise(steps))
        or steps[-1] != 100
    ):
        raise InvalidParameterValue(
            "'steps' must be a list of increasing integer percentages in 1..100 that ends at 100, "
            f"e.g. [5, 25, 50, 100]; got {steps!r}."
        )
    duration = body.get("step_duration_s", DEFAULT_STEP_S)
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 < duration <= 7 * 86400:
        raise InvalidParameterValue(
            f"'step_duration_s' must be a number of seconds in (0, 604800]; got {duration!r}."
        )
    try:
        guard = GuardConfig.from_json(body.get("guard"))
    except ValueError as exc:
        raise InvalidParameterValue(str(exc)) from None
    original = {e: 0 for e in names} | {r.served_model_name: r.traffic_percentage for r in config.routes}
    if not any(p > 0 for n, p in original.items() if n != to):
        raise InvalidParameterValue(
            f"Served entity '{to}' already takes all of the traffic: there is nothing to roll out from."
        )
    return RolloutPlan(to, tuple(steps), float(duration), guard, original)


def split_for(original: dict[str, int], to: str, percent: int) -> dict[str, int]:
    """`percent` to the challenger; the rest shared by the control entities in their original
    proportions (largest remainder, so the split sums to exactly 100)."""
    weights = {n: p for n, p in original.items() if n != to and p > 0}
    total = sum(weights.values())
    rest = 100 - percent
    exact = {n: rest * w / total for n, w in weights.items()}
    split = {n: 0 for n in original} | {n: math.floor(x) for n, x in exact.items()}
    short = rest - sum(split[n] for n in weights)
    for n in sorted(weights, key=lambda n: exact[n] - math.floor(exact[n]), reverse=True)[:short]:
        split[n] += 1
    split[to] = percent
    return split


def _sparse(buckets: list[int]) -> dict[str, int]:
    return {str(i): c for i, c in enumerate(buckets) if c}


def _dense(sparse: dict[str, int] | None) -> list[int]:
    out = [0] * len(FINE_BOUNDS)
    for i, c in (sparse or {}).items():
        out[int(i)] += int(c)
    return out


class _Evidence:
    """One arm's counts since the rollout began: what was saved, plus the tallies' growth since
    this server started watching (metrics restart at zero with the server)."""

    def __init__(self, saved: dict[str, Any] | None, tallies: dict[str, Any], names: list[str]) -> None:
        saved = saved or {}
        self.names = names
        self.base = (int(saved.get("requests", 0)), int(saved.get("errors", 0)), _dense(saved.get("latency")))
        self.start = self._read(tallies)

    def _read(self, tallies: dict[str, Any]) -> tuple[int, int, list[int]]:
        requests, errors, latency = 0, 0, [0] * len(FINE_BOUNDS)
        for n in self.names:
            tally = tallies.get(n)
            if tally is not None:
                requests += tally.requests
                errors += tally.errors
                latency = [a + b for a, b in zip(latency, tally.latency, strict=True)]
        return requests, errors, latency

    def now(self, tallies: dict[str, Any]) -> tuple[int, int, list[int]]:
        requests, errors, latency = self._read(tallies)
        base, start = self.base, self.start
        return (
            base[0] + requests - start[0],
            base[1] + errors - start[1],
            [b + x - s for b, x, s in zip(base[2], latency, start[2], strict=True)],
        )


def _arm(counts: tuple[int, int, list[int]], labeled: int = 0, quality_sum: float = 0.0) -> ArmStats:
    return ArmStats(
        counts[0], counts[1], LatencyHistogram(FINE_BOUNDS, tuple(counts[2])), labeled, quality_sum
    )


def _to_json(counts: tuple[int, int, list[int]], quality: dict[str, Any] | None = None) -> dict[str, Any]:
    out = {"requests": counts[0], "errors": counts[1], "latency": _sparse(counts[2])}
    return out | (quality or {})


class _Quality:
    """The quality guard's latest counts, refreshed by a join in a worker thread every
    poll_interval_s; until the first join ends, the counts saved before a restart stand."""

    def __init__(self, config: QualityConfig, saved: dict[str, Any]) -> None:
        self.config = config
        self.counts: dict[str, tuple[int, float]] = {
            arm: (int(v.get("labeled", 0)), float(v.get("quality_sum", 0.0))) for arm, v in saved.items()
        }
        self.message: str | None = "Waiting for the first join of labels."
        self.task: asyncio.Task[QualityCounts] | None = None
        self.polled = -math.inf

    def refresh(self, start: Callable[[], asyncio.Task[QualityCounts]]) -> None:
        """Take a finished join's counts; start the next one when the interval has passed."""
        if self.task is not None and self.task.done():
            task, self.task = self.task, None
            if task.cancelled():
                pass
            elif (exc := task.exception()) is not None:
                log.warning("the quality guard's join failed: %r", exc)
                self.message = f"Could not join the labels: {exc}"
            else:
                found = task.result()
                self.counts = {
                    "challenger": (found.challenger.labeled, found.challenger.total),
                    "control": (found.control.labeled, found.control.total),
                }
                self.message = found.message
        if self.task is None and time.monotonic() - self.polled >= self.config.poll_interval_s:
            self.polled = time.monotonic()
            self.task = start()

    def of(self, arm: str) -> tuple[int, float]:
        return self.counts.get(arm, (0, 0.0))

    def enough(self) -> bool:
        need = self.config.min_labels
        return all(self.of(arm)[0] >= need for arm in ("challenger", "control"))

    def to_json(self, arm: str) -> dict[str, Any]:
        labeled, total = self.of(arm)
        return {"labeled": labeled, "quality_sum": total}

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class ProgressiveDelivery:
    """Owns the rollout tasks of one server: one per endpoint with a RUNNING or PAUSED rollout."""

    def __init__(
        self, manager: EndpointManager, events: Callable[[], EventLog] | None = None, tick_s: float = 0.5
    ) -> None:
        self.manager = manager
        self._events = events
        self.tick_s = tick_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._started = False

    # ------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Resume every stored rollout that was running or paused (idempotent; the manager has
        loaded its endpoints)."""
        if self._started or not self.manager.started:
            return
        self._started = True
        for endpoint in self.manager.list():
            state = endpoint.record.rollout
            if state is not None and state.get("state") in ACTIVE:
                self._note(
                    endpoint,
                    state,
                    "ROLLOUT_RESUMED",
                    f"Rollout resumed after a restart at {state['step']} %.",
                )
                self._spawn(endpoint)

    async def stop(self) -> None:
        """Stop watching; the stored state stays as it is for the next start to resume."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, endpoint: Endpoint) -> None:
        task = asyncio.get_running_loop().create_task(self._drive(endpoint))
        self._tasks[endpoint.name] = task
        name = endpoint.name

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(name) is done:
                del self._tasks[name]

        task.add_done_callback(forget)

    # ------------------------------------------------------------- operations
    def get(self, name: str) -> dict[str, Any]:
        endpoint = self.manager.get(name)
        if endpoint.record.rollout is None:
            raise ResourceDoesNotExist(f"Endpoint '{name}' has no rollout.")
        return _public(endpoint.record.rollout)

    def put(self, name: str, body: Any) -> dict[str, Any]:
        endpoint = self.manager.get(name)
        current = endpoint.record.rollout
        if current is not None and current.get("state") in ACTIVE:
            raise ResourceConflict(
                f"Endpoint '{name}' already has a rollout {current['state']}; cancel it first."
            )
        if endpoint.record.update.in_progress:
            raise ResourceConflict(
                f"Endpoint '{name}' has a config update in progress; start the rollout when it ends."
            )
        plan = parse_rollout(body, endpoint.record.config, name)
        if plan.guard.quality is not None:
            self._check_quality(endpoint, plan.guard.quality)
        controls = [n for n, p in plan.original.items() if n != plan.to and p > 0]
        started = now_ms()
        state: dict[str, Any] = {
            "to": plan.to,
            "from": controls,
            "steps": list(plan.steps),
            "step_duration_s": plan.step_duration_s,
            "guard": plan.guard.to_json(),
            "state": RUNNING,
            "step_index": 0,
            "step": plan.steps[0],
            "step_elapsed_s": 0.0,
            "reason": None,
            "estimate": None,
            "original_split": plan.original,
            "started_ms": started,
            "updated_ms": started,
            "timeline": [],
            "evidence": None,
        }
        endpoint.record.rollout = state
        self._note(
            endpoint,
            state,
            "ROLLOUT_STARTED",
            f"Rollout to '{plan.to}' started: steps {', '.join(f'{s} %' for s in plan.steps)}, "
            f"{plan.step_duration_s:g} s each.",
        )
        save(self.manager, endpoint)
        self._spawn(endpoint)
        return _public(state)

    def _check_quality(self, endpoint: Endpoint, quality: QualityConfig) -> None:
        """The quality guard needs rows to join labels to, and a labels table with the named
        columns (one that does not exist yet is fine: labels may come later)."""
        if self._inference_path(endpoint) is None:
            raise InvalidParameterValue(
                f"guard.quality joins labels to the inference table of endpoint '{endpoint.name}', "
                "which has none: enable auto_capture_config (or the AI Gateway inference table) first."
            )
        problem = check_labels_table(quality, labels_location(quality, self.manager.settings.catalog_path))
        if problem is not None:
            raise InvalidParameterValue(problem)

    def _inference_path(self, endpoint: Endpoint) -> Any:
        routing = endpoint.routing
        if routing is not None and routing.capture_path is not None:
            return routing.capture_path
        config = endpoint.record.config
        return self.manager.table_path(config.auto_capture_config) if config is not None else None

    def pause(self, name: str) -> dict[str, Any]:
        endpoint, state = self._active(name)
        if state["state"] == RUNNING:
            state["state"] = PAUSED
            self._note(endpoint, state, "ROLLOUT_PAUSED", f"Rollout paused at {state['step']} %.")
            save(self.manager, endpoint)
        return _public(state)

    def resume(self, name: str) -> dict[str, Any]:
        endpoint, state = self._active(name)
        if state["state"] == PAUSED:
            state["state"] = RUNNING
            self._note(endpoint, state, "ROLLOUT_RESUMED", f"Rollout resumed at {state['step']} %.")
            save(self.manager, endpoint)
        return _public(state)

    async def cancel(self, name: str) -> dict[str, Any]:
        """Stop the rollout and put back the split from before it."""
        endpoint, state = self._active(name)
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        state["state"] = CANCELED
        state["reason"] = "Canceled by a user."
        self._note(
            endpoint,
            state,
            "ROLLOUT_CANCELED",
            "Rollout canceled: traffic goes back to the split before it.",
            WARNING,
        )
        save(self.manager, endpoint)
        self.manager._spawn(self._restore(endpoint, state))  # the manager's task set: stopped with it
        return _public(state)

    def _active(self, name: str) -> tuple[Endpoint, dict[str, Any]]:
        endpoint = self.manager.get(name)
        state = endpoint.record.rollout
        if state is None or state.get("state") not in ACTIVE:
            raise InvalidState(f"Endpoint '{name}' has no rollout running or paused.")
        return endpoint, state

    # ------------------------------------------------------------- the controller
    async def _drive(self, endpoint: Endpoint) -> None:
        state = endpoint.record.rollout
        assert state is not None
        tallies = endpoint.metrics.tallies
        saved = state.get("evidence") or {}
        challenger = _Evidence(saved.get("challenger"), tallies, [state["to"]])
        control = _Evidence(saved.get("control"), tallies, list(state["from"]))
        guard = GuardConfig.from_json(state["guard"])
        quality = _Quality(guard.quality, saved) if guard.quality is not None else None
        try:
            await self._apply(endpoint, self._split(state))
            last = time.monotonic()
            while self._current(endpoint, state):
                await asyncio.sleep(self.tick_s)
                if not self._current(endpoint, state):
                    return
                now = time.monotonic()
                c, b = challenger.now(tallies), control.now(tallies)
                if quality is not None:
                    quality.refresh(lambda: self._join(endpoint, state, quality.config))
                    decision = evaluate(
                        guard, _arm(c, *quality.of("challenger")), _arm(b, *quality.of("control"))
                    )
                    state["evidence"] = {
                        "challenger": _to_json(c, quality.to_json("challenger")),
                        "control": _to_json(b, quality.to_json("control")),
                    }
                    state["quality"] = {"message": quality.message}
                else:
                    decision = evaluate(guard, _arm(c), _arm(b))
                    state["evidence"] = {"challenger": _to_json(c), "control": _to_json(b)}
                state["estimate"] = decision.to_json()
                if decision.breached:
                    await self._roll_back(endpoint, state, decision)
                    return
                if state["state"] == RUNNING:
                    state["step_elapsed_s"] += now - last
                last = now
                labels_due = quality is None or quality.enough()
                if (
                    quality is not None
                    and not labels_due
                    and state["step_elapsed_s"] >= state["step_duration_s"]
                ):
                    need = quality.config.min_labels
                    state["quality"]["message"] = (
                        f"Holding at {state['step']} % until each arm has {need} labelled answers "
                        f"(challenger {quality.of('challenger')[0]}, control {quality.of('control')[0]})."
                    )
                if (
                    state["state"] == RUNNING
                    and state["step_elapsed_s"] >= state["step_duration_s"]
                    and labels_due
                ):
                    await self._advance(endpoint, state)
                    if state["state"] == SUCCEEDED:
                        return
                state["updated_ms"] = now_ms()
                save(self.manager, endpoint)
        except asyncio.CancelledError:
            raise
        except Exception:  # a controller bug must not take serving down: hold the split, say why
            log.exception("rollout of endpoint %s failed", endpoint.name)
            if self._current(endpoint, state) and state["state"] == RUNNING:
                state["state"] = PAUSED
                state["reason"] = (
                    "The rollout controller failed (see the server log); paused at the current split."
                )
                self._note(endpoint, state, "ROLLOUT_PAUSED", state["reason"], ERROR)
                save(self.manager, endpoint)
        finally:  # a join still running in its thread is not waited for: its counts have no reader
            if quality is not None:
                quality.cancel()

    def _join(
        self, endpoint: Endpoint, state: dict[str, Any], config: QualityConfig
    ) -> asyncio.Task[QualityCounts]:
        """Join the labels to the arms' rows since the rollout began, in a worker thread."""
        job = asyncio.to_thread(
            read_counts,
            config,
            self._inference_path(endpoint),
            labels_location(config, self.manager.settings.catalog_path),
            int(state["started_ms"]),
            state["to"],
            list(state["from"]),
        )
        return asyncio.get_running_loop().create_task(job)

    def _current(self, endpoint: Endpoint, state: dict[str, Any]) -> bool:
        return (
            self.manager.endpoints.get(endpoint.name) is endpoint
            and endpoint.record.rollout is state
            and state["state"] in ACTIVE
        )

    def _split(self, state: dict[str, Any]) -> dict[str, int]:
        return split_for(state["original_split"], state["to"], state["steps"][state["step_index"]])

    async def _advance(self, endpoint: Endpoint, state: dict[str, Any]) -> None:
        index = state["step_index"] + 1
        state["step_index"], state["step"], state["step_elapsed_s"] = index, state["steps"][index], 0.0
        await self._apply(endpoint, self._split(state))
        if not self._current(endpoint, state):
            return
        if index == len(state["steps"]) - 1:
            state["state"] = SUCCEEDED
            self._note(
                endpoint,
                state,
                "ROLLOUT_SUCCEEDED",
                f"Rollout succeeded: '{state['to']}' takes 100 % of traffic.",
            )
        else:
            self._note(endpoint, state, "ROLLOUT_STEP", f"Traffic to '{state['to']}': {state['step']} %.")
        state["updated_ms"] = now_ms()
        save(self.manager, endpoint)

    async def _roll_back(self, endpoint: Endpoint, state: dict[str, Any], decision: Decision) -> None:
        state["state"] = ROLLED_BACK
        state["reason"] = decision.reason
        state["updated_ms"] = now_ms()
        self._note(
            endpoint,
            state,
            "ROLLOUT_ROLLED_BACK",
            f"Rolled back at {state['step']} %: {decision.reason}",
            ERROR,
        )
        save(self.manager, endpoint)
        await self._restore(endpoint, state)

    async def _restore(self, endpoint: Endpoint, state: dict[str, Any]) -> None:
        try:
            await self._apply(endpoint, dict(state["original_split"]), final=True)
        except Exception as exc:
            log.exception("could not restore the traffic split of endpoint %s", endpoint.name)
            self._note(
                endpoint,
                state,
                "ROLLOUT_RESTORE_FAILED",
                f"Could not restore the traffic split: {exc}",
                ERROR,
            )
            save(self.manager, endpoint)

    async def _apply(self, endpoint: Endpoint, split: dict[str, int], *, final: bool = False) -> None:
        """Make `split` the endpoint's traffic, through the same config update a user's PUT .../config
        makes (reused deployments, one routing swap). Waits out a user's update in progress."""
        while self.manager.endpoints.get(endpoint.name) is endpoint:
            if not final and not self._current(endpoint, endpoint.record.rollout or {}):
                return
            config = endpoint.record.config
            if config is None:
                raise InvalidState("The endpoint has no active config.")
            current = {r.served_model_name: r.traffic_percentage for r in config.routes}
            if {n: p for n, p in current.items() if p} == {n: p for n, p in split.items() if p}:
                return
            if endpoint.record.update.in_progress:
                await asyncio.sleep(self.tick_s)
                continue
            body = config.to_json()
            body["traffic_config"] = {
                "routes": [{"served_model_name": n, "traffic_percentage": split.get(n, 0)} for n in split]
            }
            try:
                await self.manager.update_config(endpoint.name, body)
            except ResourceConflict:  # a user's update slipped in first: wait for it
                await asyncio.sleep(self.tick_s)
                continue
            task = endpoint.rollout
            if task is not None:
                await asyncio.shield(asyncio.gather(task, return_exceptions=True))
            if endpoint.record.update.state != NOT_UPDATING:
                update = endpoint.record.update
                raise RuntimeError(f"the traffic update ended {update.state}: {update.message}")

    # ------------------------------------------------------------- events
    def _note(
        self, endpoint: Endpoint, state: dict[str, Any], kind: str, message: str, severity: str = INFO
    ) -> None:
        item = event(now_ms(), kind, message, severity)
        item["rollout_step"] = state.get("step")
        timeline = state.setdefault("timeline", [])
        timeline.append(item)
        del timeline[:-200]  # bounded: a rollout has few steps, pauses are the only repeats
        if self._events is not None:
            with contextlib.suppress(Exception):  # the page's log must never stop a rollout
                self._events().append(endpoint.name, [item])


def _public(state: dict[str, Any]) -> dict[str, Any]:
    """GET's answer: the state without the guard's raw evidence (latency buckets)."""
    out = {k: v for k, v in state.items() if k != "evidence"}
    evidence = state.get("evidence") or {}
    out["requests"] = {
        arm: {"requests": v.get("requests", 0), "errors": v.get("errors", 0)}
        | ({"labeled": v["labeled"]} if "labeled" in v else {})
        for arm, v in evidence.items()
    }
    return out
