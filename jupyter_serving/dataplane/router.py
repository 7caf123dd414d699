"""Routing tables: immutable snapshots mapping a request to a served entity by the traffic split.

An update builds a new table and swaps it in with one assignment; a request keeps the table it
started with, which is what makes config updates atomic for traffic.
"""

from __future__ import annotations

import bisect
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_serving.backends.base import Deployment

ROUTING_KEY_HEADER = "X-Serving-Routing-Key"


@dataclass(frozen=True)
class RoutingTable:
    config_version: int
    deployments: dict[str, Deployment]
    routes: tuple[tuple[str, int], ...]
    capture_path: Path | None = None  # the payload table of this config version, if capture is on
    capture_form: str = (
        "legacy"  # its schema: "legacy" or "ai_gateway" (model.endpoint_fields.inference_table_form)
    )
    rng: random.Random = field(default_factory=random.Random, compare=False)  # seeded in tests
    _names: tuple[str, ...] = field(init=False)
    _bounds: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        live = [(name, pct) for name, pct in self.routes if pct > 0]
        bounds, total = [], 0
        for _, pct in live:
            total += pct
            bounds.append(total)
        object.__setattr__(self, "_names", tuple(name for name, _ in live))
        object.__setattr__(self, "_bounds", tuple(bounds))

    def choose(self, routing_key: str | None = None) -> Deployment:
        """The entity for one request: weighted at random, or fixed for a given routing key."""
        if len(self._names) == 1:
            return self.deployments[self._names[0]]
        point = zlib.crc32(routing_key.encode()) % 100 if routing_key else self.rng.randrange(100)
        return self.deployments[self._names[bisect.bisect_right(self._bounds, point)]]
