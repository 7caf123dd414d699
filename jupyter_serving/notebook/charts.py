"""Matplotlib charts of an endpoint's metrics history, for `EndpointMonitor` and `%serve monitor`.

Drawn on a bare `Figure` (no pyplot, so no global state and safe on the monitor's thread) and
returned as PNG bytes for an `ipywidgets.Image`, which updates in place in the cell.
"""

from __future__ import annotations

import datetime as _dt
import io
from collections.abc import Mapping, Sequence
from typing import Any

PANELS = (
    ("requests_per_s", "Requests / s"),
    ("latency_p99_ms", "Latency p99 (ms)"),
    ("errors_per_s", "Errors / s (4xx + 5xx)"),
    ("ready_replicas", "Ready replicas"),
)


def _times(values: Sequence[int]) -> list[_dt.datetime]:
    return [_dt.datetime.fromtimestamp(t / 1000) for t in values]


def _series(samples: Mapping[str, list[Any]], metric: str) -> list[float]:
    if metric == "errors_per_s":
        a, b = samples.get("requests_4xx_per_s", []), samples.get("requests_5xx_per_s", [])
        return [
            float("nan") if x is None and y is None else (x or 0) + (y or 0)
            for x, y in zip(a, b, strict=True)
        ]
    return [float("nan") if v is None else v for v in samples.get(metric, [])]


def history_png(history: Mapping[str, Any], entities: Sequence[str], *, width_in: float = 10.0) -> bytes:
    """Five panels (requests, p99, errors, replicas, traffic split), one line per served entity."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, 6.0), layout="constrained")
    axes = fig.subplots(3, 2, sharex=True).ravel()
    by_name = {e["name"]: e["samples"] for e in history.get("served_entities", [])}
    names = list(entities) + [n for n in by_name if n not in entities]
    colours = {n: f"C{i}" for i, n in enumerate(names)}
    for ax, (metric, title) in zip(axes, PANELS, strict=False):
        for name in names:
            samples = by_name.get(name)
            if samples and samples["timestamp_ms"]:
                drawstyle = "steps-post" if metric == "ready_replicas" else "default"
                ax.plot(_times(samples["timestamp_ms"]), _series(samples, metric), label=name,
                        color=colours[name], drawstyle=drawstyle)  # fmt: skip
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylim(bottom=0)
    traffic, ax = history.get("traffic", {}), axes[4]
    for name in names:
        if name in traffic:
            values = [float("nan") if v is None else v for v in traffic[name]]
            ax.plot(
                _times(traffic["timestamp_ms"]),
                values,
                label=name,
                color=colours[name],
                drawstyle="steps-post",
            )
    ax.set_title("Traffic split (%)", fontsize=10, loc="left")
    ax.set_ylim(0, 105)
    axes[5].axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[4].get_legend_handles_labels()
    if handles:
        axes[5].legend(handles, labels, loc="center", frameon=False, title="Served entity")
    for ax in axes[:5]:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()
