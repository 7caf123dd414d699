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
    ("requests_4xx_per_s", "Client errors (4xx) / s"),
    ("requests_5xx_per_s", "Server errors (5xx) / s"),
    ("ready_replicas", "Ready replicas"),
)
# Equal series (a 50/50 split, two entities at one replica each) would hide each other: each entity
# gets its own dash pattern and marker as well as a colour, and later lines are drawn thinner.
STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))


def _times(values: Sequence[int]) -> list[_dt.datetime]:
    return [_dt.datetime.fromtimestamp(t / 1000) for t in values]


def _series(samples: Mapping[str, list[Any]], metric: str) -> list[float]:
    return [float("nan") if v is None else v for v in samples.get(metric, [])]


def _style(index: int, points: int) -> dict[str, Any]:
    line, marker = STYLES[index % len(STYLES)]
    every = max(1, points // 8)  # a few markers per line, not one per sample
    return {"linestyle": line, "marker": marker, "markevery": (index % every, every), "markersize": 4,
            "linewidth": max(1.0, 2.4 - 0.6 * index), "color": f"C{index}"}  # fmt: skip


def history_figure(history: Mapping[str, Any], entities: Sequence[str], *, width_in: float = 10.0) -> Any:
    """Six panels (requests, p99, 4xx, 5xx, replicas, traffic split), one line per served entity,
    a shared 24-hour time axis with several labels, and the legend under the panels."""
    from matplotlib.dates import DateFormatter
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, 6.0), layout="constrained")
    axes = fig.subplots(3, 2, sharex=True).ravel()
    by_name = {e["name"]: e["samples"] for e in history.get("served_entities", [])}
    names = list(entities) + [n for n in by_name if n not in entities]
    for ax, (metric, title) in zip(axes, PANELS, strict=False):
        for i, name in enumerate(names):
            samples = by_name.get(name)
            if samples and samples["timestamp_ms"]:
                drawstyle = "steps-post" if metric == "ready_replicas" else "default"
                ax.plot(_times(samples["timestamp_ms"]), _series(samples, metric), label=name,
                        drawstyle=drawstyle, **_style(i, len(samples["timestamp_ms"])))  # fmt: skip
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylim(bottom=0)
    traffic, ax = history.get("traffic", {}), axes[5]
    for i, name in enumerate(names):
        if name in traffic:
            values = [float("nan") if v is None else v for v in traffic[name]]
            ax.plot(_times(traffic["timestamp_ms"]), values, label=name, drawstyle="steps-post",
                    **_style(i, len(values)))  # fmt: skip
    ax.set_title("Traffic split (%)", fontsize=10, loc="left")
    ax.set_ylim(0, 105)
    handles, labels = [], []
    for candidate in axes:
        handles, labels = candidate.get_legend_handles_labels()
        if handles:
            break
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(4, len(handles)), frameon=False)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.xaxis.set_major_locator(_locator())
        ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S"))  # 24-hour, as everywhere else
    return fig


def history_png(history: Mapping[str, Any], entities: Sequence[str], *, width_in: float = 10.0) -> bytes:
    """`history_figure` as PNG bytes, for the monitor's `ipywidgets.Image`."""
    buffer = io.BytesIO()
    history_figure(history, entities, width_in=width_in).savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def _locator() -> Any:
    """3-6 date ticks for any span. Matplotlib's own steps leave gaps: a span of 2.5-3 minutes is
    under 3 minutes but over 5 x 30 seconds, so `AutoDateLocator` warns and falls back (likewise
    2.5-3 hours, 2.5-3 days). One step more per unit closes them. (A warnings filter around the
    drawing would not do: the monitor draws on its own thread, and the filter list is global.)"""
    from matplotlib.dates import HOURLY, MINUTELY, SECONDLY, AutoDateLocator

    locator = AutoDateLocator(minticks=3, maxticks=6)
    locator.intervald[SECONDLY] = [1, 2, 5, 10, 15, 30, 60]
    locator.intervald[MINUTELY] = [1, 2, 5, 10, 15, 30, 60]
    locator.intervald[HOURLY] = [1, 2, 3, 4, 6, 12, 24]
    return locator
