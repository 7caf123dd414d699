"""Matplotlib figures for an inference table: latency, predictions, and quality over time.

Each function draws on the given Axes (or a new figure) and returns the Axes, so notebooks can
compose them; nothing is shown or saved here. Entities keep one colour across all plots.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from jupyter_serving.tables.analysis import (
    ENTITY,
    choose_metric,
    is_discrete,
    join_labels,
    per_request,
    quality_table,
    successful,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from jupyter_serving.tables.analysis import ABReport


LINEAR_MAX_MS = 60  # up to this, one histogram bar per (whole) millisecond


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(7, 4))[1]


def _colours(entities: list[str]) -> dict[str, Any]:
    import matplotlib as mpl

    cycle = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    return {e: cycle[i % len(cycle)] for i, e in enumerate(sorted(entities))}


def plot_latency(frame: pd.DataFrame, *, ax: Axes | None = None, bins: int = 40) -> Axes:
    """Histogram of model execution time per entity, p50 and p95 in the legend.

    The table stores whole milliseconds, so a fast model's times are mostly 0 ("under 1 ms"): up
    to `LINEAR_MAX_MS` each millisecond gets its own bar on a linear axis whose 0 reads "< 1";
    beyond, a log axis, where 0 is drawn at 0.5 ms."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from jupyter_serving.tables.analysis import format_ms

    ax = _axes(ax)
    requests = per_request(frame)
    latency = requests["execution_time_ms"].astype(float)
    linear = latency.max() <= LINEAR_MAX_MS
    floor = 0.0 if linear else 0.5
    if linear:
        edges = np.arange(-0.5, latency.max() + 1.5)
    else:
        low = max(latency.min(), floor)
        edges = np.geomspace(low, max(latency.max(), low * 1.01), bins + 1)
    colours = _colours(list(requests[ENTITY].dropna().unique()))
    for entity, group in requests.groupby(ENTITY, sort=True):
        values = group["execution_time_ms"].astype(float).clip(lower=floor)
        p50, p95 = group["execution_time_ms"].quantile(0.5), group["execution_time_ms"].quantile(0.95)
        ax.hist(
            values,
            bins=edges,  # type: ignore[arg-type]  # matplotlib's hints leave out the arrays it takes
            histtype="step",
            density=True,
            color=colours[entity],
            label=f"{entity} (p50 {format_ms(p50)}, p95 {format_ms(p95)})",
        )
        ax.axvline(max(p95, floor), color=colours[entity], linestyle="--", linewidth=0.8)
    if linear:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: "< 1" if v == 0 else f"{v:.0f}"))
        xlabel = "execution time (ms, whole milliseconds as logged)"
    else:
        ax.set_xscale("log")
        xlabel = "execution time (ms; under 1 ms drawn at 0.5)"
    ax.set(xlabel=xlabel, ylabel="density", title="Latency by served entity")
    ax.legend()
    return ax


def plot_predictions(frame: pd.DataFrame, *, ax: Axes | None = None, prediction: str = "prediction") -> Axes:
    """Share of each predicted class (grouped bars) or the density of a numeric prediction."""
    ax = _axes(ax)
    ok = successful(frame, prediction)
    colours = _colours(list(ok[ENTITY].dropna().unique()))
    if is_discrete(ok[prediction]):
        shares = pd.crosstab(ok[prediction].astype(str), ok[ENTITY], normalize="columns")
        width = 0.8 / max(len(shares.columns), 1)
        x = np.arange(len(shares.index))
        for i, entity in enumerate(shares.columns):
            ax.bar(x + i * width, shares[entity], width, label=entity, color=colours[entity])
        ax.set_xticks(x + width * (len(shares.columns) - 1) / 2, shares.index)
        ax.set(xlabel=prediction, ylabel="share of predictions")
    else:
        for entity, group in ok.groupby(ENTITY, sort=True):
            ax.hist(
                group[prediction].astype(float),
                bins=40,
                histtype="step",
                density=True,
                label=entity,
                color=colours[entity],
            )
        ax.set(xlabel=prediction, ylabel="density")
    ax.set_title("Predictions by served entity")
    ax.legend()
    return ax


def plot_metric_over_time(
    frame: pd.DataFrame,
    labels: pd.DataFrame | pd.Series | Mapping[str, Any],
    *,
    freq: str = "1h",
    metric: str | None = None,
    label_column: str = "label",
    alpha: float = 0.05,
    ax: Axes | None = None,
) -> Axes:
    """The quality metric per entity per `freq` window, with confidence intervals as error bars."""
    ax = _axes(ax)
    joined = join_labels(frame, labels, label_column)
    metric = metric or choose_metric(joined)
    joined["window"] = joined["timestamp"].dt.floor(freq)
    table = quality_table(joined, metric, alpha, by=[ENTITY, "window"])
    colours = _colours(list(table[ENTITY].unique()))
    for entity, group in table.groupby(ENTITY, sort=True):
        errors = np.vstack([group[metric] - group["ci_low"], group["ci_high"] - group[metric]])
        ax.errorbar(
            group["window"],
            group[metric],
            yerr=np.clip(np.nan_to_num(errors), 0, None),
            marker="o",
            capsize=3,
            label=entity,
            color=colours[entity],
        )
    title = f"{metric} over time ({1 - alpha:.0%} CI)"
    from matplotlib.dates import AutoDateLocator, DateFormatter

    # 24-hour clock times: matplotlib's default for second-scale windows reads "53:08.000000".
    ax.xaxis.set_major_locator(AutoDateLocator(minticks=3, maxticks=7))
    ax.xaxis.set_major_formatter(DateFormatter("%H:%M:%S", tz="UTC"))
    ax.set(xlabel=f"time (UTC, {freq} windows)", ylabel=metric, title=title)
    ax.legend()
    return ax


def plot_comparison(report: ABReport, *, fig: Figure | None = None) -> Figure:
    """`compare_entities` as a chart: error rate and latency per entity, and quality when labelled.

    Intervals are the report's own (Wilson for error rates, the metric's CI for quality), so the
    bars say as much as the verdict and no more.
    """
    from matplotlib.figure import Figure

    panels = 3 if report.quality is not None else 2
    fig = fig or Figure(figsize=(4.0 * panels, 3.2), layout="constrained")
    axes = fig.subplots(1, panels)
    summary = report.summary
    entities = list(summary.index)
    colours = _colours(entities)
    x = np.arange(len(entities))
    errors = summary["error_rate"].to_numpy(float) * 100
    low = np.clip(errors - summary["error_rate_ci_low"].to_numpy(float) * 100, 0, None)
    high = np.clip(summary["error_rate_ci_high"].to_numpy(float) * 100 - errors, 0, None)
    axes[0].bar(x, errors, color=[colours[e] for e in entities], yerr=[low, high], capsize=4)
    axes[0].set(title="Error rate (95 % CI)", ylabel="% of requests")
    for offset, (column, label) in zip(
        (-0.2, 0.2), (("latency_p50_ms", "p50"), ("latency_p95_ms", "p95")), strict=True
    ):
        bars = axes[1].bar(
            x + offset, summary[column], 0.4, color=[colours[e] for e in entities], label=label
        )
        for bar in bars:
            bar.set_alpha(1.0 if label == "p50" else 0.55)
    axes[1].set(title="Latency p50 (solid) / p95", ylabel="ms")
    if report.quality is not None and report.metric is not None:
        quality = report.quality.set_index(ENTITY).reindex(entities)
        values = quality[report.metric].to_numpy(float)
        yerr = [np.clip(values - quality["ci_low"], 0, None), np.clip(quality["ci_high"] - values, 0, None)]
        axes[2].bar(x, values, color=[colours[e] for e in entities], yerr=yerr, capsize=4)
        axes[2].set(title=f"{report.metric} (95 % CI)")
    for ax in axes:
        ax.set_xticks(x, entities, rotation=15)
        ax.grid(axis="y", alpha=0.3)
    return fig
