"""The Overview's live A/B verdict, in our own namespace so the Databricks API and SDK stay exact.

    GET /api/2.0/jupyter-serving/endpoints/{name}/verdict[?control=ENTITY&alpha=0.05]

Every entity of the active config that takes traffic or has answered, against the control (the
entity with the most traffic, unless `control` names another), on the answers counted since the
server started (the metrics' per-entity tallies: requests, errors as the rollout guard counts them,
fine latency buckets). The method is the rollout guard's always-valid one (policy/verdict.py), so
the page may poll it every two seconds without inflating its error rate. Reading takes CAN_VIEW.
"""

from __future__ import annotations

from typing import Any

from tornado import web

from jupyter_serving.api.handlers import NAME, ServingHandler
from jupyter_serving.control.endpoint import Endpoint
from jupyter_serving.errors import InvalidParameterValue
from jupyter_serving.identity.permissions import CAN_VIEW
from jupyter_serving.policy.guard import FINE_BOUNDS, ArmStats, LatencyHistogram
from jupyter_serving.policy.verdict import METHOD, pick_control, verdicts


def observed_arms(endpoint: Endpoint) -> tuple[dict[str, int], dict[str, ArmStats]]:
    """(traffic split, counts) of the active config's entities that take traffic or answered."""
    config = endpoint.record.config
    names = [e.name for e in config.served_entities] if config else []
    split = {n: 0 for n in names} | (
        {r.served_model_name: r.traffic_percentage for r in config.routes} if config else {}
    )
    arms: dict[str, ArmStats] = {}
    for n in names:
        tally = endpoint.metrics.tallies.get(n)
        if tally is None:
            if split.get(n, 0) > 0:
                arms[n] = ArmStats()
            continue
        histogram = LatencyHistogram(FINE_BOUNDS, tuple(tally.latency))
        arms[n] = ArmStats(tally.requests, tally.errors, histogram)
    return split, arms


def live_verdict(endpoint: Endpoint, control: str | None, alpha: float) -> dict[str, Any]:
    split, arms = observed_arms(endpoint)
    chosen = control or pick_control({n: p for n, p in split.items() if n in arms}, arms)
    out: dict[str, Any] = {"control": chosen, "alpha": alpha, "method": METHOD, "comparisons": []}
    out["entities"] = [
        {
            "served_entity_name": n,
            "traffic_percentage": split.get(n, 0),
            "requests": a.requests,
            "errors": a.errors,
        }
        for n, a in sorted(arms.items())
    ]
    if chosen is not None:
        out["comparisons"] = [v.to_json() for v in verdicts(chosen, arms, alpha)]
    return out


class VerdictHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        endpoint = self.endpoint(name, CAN_VIEW)
        config = endpoint.record.config
        control = self.get_query_argument("control", None) or None
        served = {e.name for e in config.served_entities} if config else set()
        if control is not None and control not in served:
            raise InvalidParameterValue(f"control must name a served entity of '{name}', got '{control}'.")
        raw = self.get_query_argument("alpha", "0.05")
        try:
            alpha = float(raw)
        except ValueError:
            alpha = -1.0
        if not 0 < alpha < 1:
            raise InvalidParameterValue(f"alpha must be a number between 0 and 1 (exclusive), got '{raw}'.")
        self.write_json(live_verdict(endpoint, control, alpha))


routes: list[tuple[str, type[web.RequestHandler]]] = [
    (rf"/api/2\.0/jupyter-serving/endpoints/{NAME}/verdict/?", VerdictHandler),
]
