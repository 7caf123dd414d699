"""Traffic splitting: weighted choice matches the configured split; routing keys are sticky."""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace

from scipy.stats import chisquare

from jupyter_serving.dataplane.router import RoutingTable


def table(routes):
    sets = {name: SimpleNamespace(name=name) for name, _ in routes}
    return RoutingTable(1, sets, tuple(routes), rng=random.Random(1234))  # type: ignore[arg-type]


def test_split_follows_the_percentages() -> None:
    routes = (("current", 80), ("challenger", 20))
    t = table(routes)
    counts = Counter(t.choose().name for _ in range(5000))
    assert chisquare([counts["current"], counts["challenger"]], [4000, 1000]).pvalue > 0.001


def test_zero_percent_entities_get_no_split_traffic() -> None:
    counts = Counter(table((("a", 100), ("shadow", 0))).choose().name for _ in range(500))
    assert counts == {"a": 500}


def test_routing_key_always_reaches_the_same_entity_and_keys_spread() -> None:
    t = table((("a", 50), ("b", 50)))
    assert len({t.choose("customer-17").name for _ in range(50)}) == 1
    spread = Counter(t.choose(f"customer-{i}").name for i in range(2000))
    assert chisquare([spread["a"], spread["b"]]).pvalue > 0.001
