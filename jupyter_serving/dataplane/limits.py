"""AI Gateway rate limits: calls per window, counted per endpoint, user, group or service principal.

A fixed window per counter, opened by the first call that counts against it: simple, O(1) per
call, and what "calls per minute" promises. The clock and the window are injectable so tests
can renew a window without waiting a minute. A call refused by one limit counts against none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

MAX_COUNTERS = 100_000  # beyond this, expired windows are dropped before a new one is opened

Counter = list[float]  # [window start, calls counted]


class RateLimiter:
    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s = window_s
        self.clock = clock
        self._counters: dict[tuple[str, ...], Counter] = {}

    def admit(
        self,
        endpoint: str,
        limits: Sequence[dict[str, Any]],
        principal: str,
        groups: Iterable[str] = (),
    ) -> float | None:
        """Count one call; None if admitted, else the seconds until the fullest window renews."""
        now = self.clock()
        applicable = list(_applicable(endpoint, limits, principal, set(groups)))
        counters = [(self._counter(key, now), calls) for key, calls in applicable]
        full = [c for c, calls in counters if c[1] >= calls]
        if full:
            return max(c[0] + self.window_s - now for c in full)
        for counter, _ in counters:
            counter[1] += 1
        return None

    def retry_after(self, seconds: float) -> str:
        """The Retry-After header value: whole seconds, at least one."""
        return str(max(1, math.ceil(seconds)))

    def _counter(self, key: tuple[str, ...], now: float) -> Counter:
        counter = self._counters.get(key)
        if counter is None or now - counter[0] >= self.window_s:
            if counter is None and len(self._counters) >= MAX_COUNTERS:
                self._prune(now)
            counter = self._counters[key] = [now, 0]
        return counter

    def _prune(self, now: float) -> None:
        self._counters = {k: c for k, c in self._counters.items() if now - c[0] < self.window_s}


def _applicable(
    endpoint: str, limits: Sequence[dict[str, Any]], principal: str, groups: set[str]
) -> Iterable[tuple[tuple[str, ...], int]]:
    """(counter key, calls allowed) of each limit that applies to this caller.

    As on Databricks, a limit naming a principal replaces the general limit of the same key for
    that principal; a group limit is shared by the group's members.
    """
    named_users = {
        lim["principal"]
        for lim in limits
        if lim["key"] in ("user", "service_principal") and "principal" in lim
    }
    for lim in limits:
        key, calls, who = lim["key"], lim["calls"], lim.get("principal")
        if key == "endpoint":
            yield (endpoint, "endpoint"), calls
        elif key in ("user", "service_principal"):
            if who is None and principal not in named_users:
                yield (endpoint, key, principal), calls
            elif who == principal:
                yield (endpoint, key, principal, "named"), calls
        elif key == "user_group":
            if who is not None and who in groups:
                yield (endpoint, key, who), calls
            elif who is None:
                for group in groups:
                    yield (endpoint, key, group), calls
