"""A/B verdicts, intervals, drift and plots on synthetic traffic with a known truth."""

from __future__ import annotations

import json
import math
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from jupyter_serving.tables.analysis import (
    compare_entities,
    drift,
    holm,
    split_by_entity,
    split_by_time,
    wilson_interval,
)
from jupyter_serving.tables.plots import plot_latency, plot_metric_over_time, plot_predictions
from jupyter_serving.tables.reader import unpack_frame

T0 = 1_700_000_000_000


def traffic(
    entity: str,
    n: int,
    rng: np.random.Generator,
    *,
    accuracy: float = 0.9,
    error_rate: float = 0.0,
    latency_ms: float = 5.0,
    shift: float = 0.0,
    regression_noise: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Raw payload rows (as `inference_table(unpack=False)`) and their ground-truth labels."""
    rows, labels = [], []
    for i in range(n):
        rid = f"{entity}-{i}"
        x = float(rng.normal(shift, 1.0))
        failed = rng.random() < error_rate
        if regression_noise is not None:
            truth: float | int = 2 * x
            prediction: float | int = 2 * x + float(rng.normal(0, regression_noise))
        else:
            truth = int(rng.integers(0, 3))
            prediction = truth if rng.random() < accuracy else (truth + 1) % 3
        response = (
            {"error_code": "BAD_REQUEST", "message": "boom"} if failed else {"predictions": [prediction]}
        )
        rows.append(
            {
                "databricks_request_id": rid,
                "client_request_id": f"c-{rid}",
                "date": None,
                "timestamp": pd.Timestamp(T0 + i * 60_000, unit="ms", tz="UTC"),
                "timestamp_ms": T0 + i * 60_000,
                "status_code": 400 if failed else 200,
                "execution_time_ms": int(rng.exponential(latency_ms)) + 1,
                "sampling_fraction": 1.0,
                "request": json.dumps(
                    {"dataframe_records": [{"x": x, "colour": "red" if x > shift else "blue"}]}
                ),
                "response": json.dumps(response),
                "endpoint_name": "ep",
                "model_name": "m",
                "model_version": entity[-1],
                "served_entity_name": entity,
            }
        )
        labels.append({"client_request_id": f"c-{rid}", "label": truth})
    return pd.DataFrame(rows), pd.DataFrame(labels)


def ab(rng: np.random.Generator, a: dict, b: dict, n: int = 1500) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw_a, labels_a = traffic("model-1", n, rng, **a)
    raw_b, labels_b = traffic("model-2", n, rng, **b)
    frame = unpack_frame(pd.concat([raw_a, raw_b], ignore_index=True))
    return frame, pd.concat([labels_a, labels_b], ignore_index=True)


def test_known_winner_is_declared_better_with_significance() -> None:
    frame, labels = ab(np.random.default_rng(11), {"accuracy": 0.80}, {"accuracy": 0.92})
    report = compare_entities(frame, labels)
    row = report.comparisons.iloc[0]
    assert report.metric == "accuracy" and report.control == "model-1"
    assert bool(row["better"]) and row["p_adjusted"] < 1e-6
    assert row["diff_ci_low"] > 0 and row["diff_ci_low"] < 0.12 < row["diff_ci_high"]
    assert "model-2 is better than model-1" in report.verdict
    q = report.quality.set_index("served_entity_name")
    assert q.loc["model-1", "ci_low"] < 0.80 < q.loc["model-1", "ci_high"]
    assert q.loc["model-2", "ci_low"] < 0.92 < q.loc["model-2", "ci_high"]


def test_equal_models_get_no_significant_difference_and_a_detectable_effect_size() -> None:
    frame, labels = ab(np.random.default_rng(2), {"accuracy": 0.85}, {"accuracy": 0.85})
    report = compare_entities(frame, labels)
    row = report.comparisons.iloc[0]
    assert not row["significant"] and not row["better"] and not row["worse"]
    assert report.verdict.count("No significant difference between model-2 and model-1") == 1
    assert 0.01 < row["detectable_difference"] < 0.06


def test_worse_challenger_is_called_worse() -> None:
    frame, labels = ab(np.random.default_rng(3), {"accuracy": 0.9}, {"accuracy": 0.75})
    assert "model-2 is worse than model-1" in compare_entities(frame, labels).verdict


def test_regression_labels_compare_mean_absolute_error_lower_is_better() -> None:
    frame, labels = ab(np.random.default_rng(4), {"regression_noise": 1.0}, {"regression_noise": 0.5}, n=800)
    report = compare_entities(frame, labels)
    assert report.metric == "mae"
    assert bool(report.comparisons.iloc[0]["better"])
    mae = report.quality.set_index("served_entity_name")["mae"]
    # E|N(0, s)| = s * sqrt(2 / pi)
    assert mae["model-1"] == pytest.approx(math.sqrt(2 / math.pi), rel=0.1)
    assert mae["model-2"] == pytest.approx(0.5 * math.sqrt(2 / math.pi), rel=0.1)


def test_summary_counts_errors_and_latency_per_entity_and_flags_a_flaky_challenger() -> None:
    frame, _ = ab(
        np.random.default_rng(5), {"error_rate": 0.0, "latency_ms": 5}, {"error_rate": 0.1, "latency_ms": 50}
    )
    report = compare_entities(frame)
    s = report.summary
    assert list(s.index) == ["model-1", "model-2"] and (s["requests"] == 1500).all()
    assert s.loc["model-1", "errors"] == 0
    assert s.loc["model-2", "error_rate_ci_low"] < 0.1 < s.loc["model-2", "error_rate_ci_high"]
    assert s.loc["model-2", "latency_p50_ms"] > 5 * s.loc["model-1", "latency_p50_ms"]
    assert (
        s.loc["model-1", "latency_p50_ms"]
        <= s.loc["model-1", "latency_p95_ms"]
        <= s.loc["model-1", "latency_p99_ms"]
    )
    assert "model-2 fails more often than model-1" in report.verdict
    assert "No ground-truth labels given" in report.verdict
    assert report.quality is None


def test_prediction_distribution_shows_each_entitys_class_shares() -> None:
    frame, _ = ab(np.random.default_rng(6), {"accuracy": 1.0}, {"accuracy": 0.0})
    dist = compare_entities(frame).prediction_distribution
    assert dist.sum(axis=1).round(6).tolist() == [1.0, 1.0]
    assert set(dist.columns) == {0, 1, 2}


def test_labels_can_be_a_mapping_and_unmatched_labels_are_reported() -> None:
    frame, labels = ab(np.random.default_rng(7), {}, {}, n=50)
    mapping = dict(zip(labels["client_request_id"], labels["label"], strict=True))
    assert compare_entities(frame, mapping).quality["n"].tolist() == [50, 50]
    assert "No labels matched" in compare_entities(frame, {"nope": 1}).verdict


def test_drift_between_windows_flags_the_shifted_feature_only() -> None:
    rng = np.random.default_rng(8)
    before, _ = traffic("model-1", 2000, rng)
    after, _ = traffic("model-1", 2000, rng, shift=1.0)
    after["timestamp"] = after["timestamp"] + pd.Timedelta(days=3)
    frame = unpack_frame(pd.concat([before, after], ignore_index=True))
    old, new = split_by_time(frame, before["timestamp"].max() + pd.Timedelta(hours=1))
    assert (len(old), len(new)) == (2000, 2000)
    report = drift(old, new).set_index("feature")
    assert (
        report.loc["x", "drifted"]
        and report.loc["x", "severity"] == "major"
        and report.loc["x", "test"] == "ks"
    )
    assert report.loc["prediction", "severity"] == "stable" and not report.loc["prediction", "drifted"]

    same_old, same_new = split_by_time(unpack_frame(traffic("model-1", 4000, rng)[0]), "2023-11-15T12:00:00Z")
    stable = drift(same_old, same_new).set_index("feature")
    assert not stable["drifted"].any()
    assert stable.loc["colour", "kind"] == "categorical" and stable.loc["colour", "test"] == "chi-square"


def test_drift_between_entities_sees_a_categorical_shift() -> None:
    frame, _ = ab(np.random.default_rng(9), {}, {"shift": 0.0})
    frame.loc[frame["served_entity_name"] == "model-2", "colour"] = "green"
    report = drift(*split_by_entity(frame, "model-1", "model-2")).set_index("feature")
    assert report.loc["colour", "drifted"] and report.loc["colour", "p_value"] < 1e-6
    assert not report.loc["x", "drifted"]


def test_wilson_interval_and_holm_match_textbook_values() -> None:
    low, high = wilson_interval(81, 100)
    assert (round(low, 4), round(high, 4)) == (0.7222, 0.8749)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_plots_draw_one_series_per_entity(tmp_path) -> None:
    import matplotlib.pyplot as plt

    frame, labels = ab(np.random.default_rng(10), {"accuracy": 0.8}, {"accuracy": 0.95}, n=600)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    plot_latency(frame, ax=axes[0])
    plot_predictions(frame, ax=axes[1])
    plot_metric_over_time(frame, labels, freq="2h", ax=axes[2])
    for ax in axes:
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert [name.split(" ")[0] for name in legend] == ["model-1", "model-2"]
    assert "p95" in axes[0].get_legend().get_texts()[0].get_text()
    assert axes[2].get_ylabel() == "accuracy" and len(axes[2].containers) == 2
    fig.savefig(tmp_path / "ab.png")
    plt.close(fig)
    assert (tmp_path / "ab.png").stat().st_size > 10_000


def test_interval_bounds_never_leave_zero_to_one_or_cross_the_estimate() -> None:
    from jupyter_serving.tables.analysis import wilson_interval

    for n in range(1, 201):
        for successes in (0, n):
            low, high = wilson_interval(successes, n)
            p = successes / n
            assert 0.0 <= low <= p <= high <= 1.0


def test_integer_class_predictions_drift_as_categories() -> None:
    import pandas as pd

    from jupyter_serving.tables.analysis import drift

    ref = pd.DataFrame({"prediction": [0, 1, 2] * 50})
    cur = pd.DataFrame({"prediction": [0] * 120 + [1] * 30})
    row = drift(ref, cur).set_index("feature").loc["prediction"]
    assert (row["kind"], row["test"] != "ks") == ("categorical", True)
    assert bool(row["drifted"])


def test_the_report_renders_as_a_chart_plus_the_verdict() -> None:
    frame, labels = ab(
        np.random.default_rng(12), {"accuracy": 0.8, "error_rate": 0.1}, {"accuracy": 0.95}, n=400
    )
    report = compare_entities(frame, labels)
    fig = report.plot()
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["Error rate (95 % CI)", "Latency p50 (solid) / p95", "accuracy (95 % CI)"]
    error_bars = fig.axes[0].patches
    assert error_bars[0].get_height() == pytest.approx(
        report.summary.loc["model-1", "error_rate"] * 100, abs=1e-9
    )
    html = report._repr_html_()
    assert html.index("model-2 is better") < html.index(
        '<img alt="A/B comparison" src="data:image/png;base64,'
    )
    without_labels = compare_entities(frame).plot()
    assert len(without_labels.axes) == 2


def test_the_control_is_the_entity_with_most_traffic_unless_chosen() -> None:
    """An 80/20 split of "champion" and "challenger": alphabetical order would pick the challenger."""
    rng = np.random.default_rng(13)
    raw_champion, _ = traffic("champion-1", 80, rng)
    raw_challenger, _ = traffic("challenger-2", 20, rng)
    frame = unpack_frame(pd.concat([raw_challenger, raw_champion], ignore_index=True))
    report = compare_entities(frame)
    assert report.control == "champion-1"
    assert "(control: champion-1)" in report.verdict and repr(report).startswith(
        "A/B comparison (control: champion-1)"
    )
    chosen = compare_entities(frame, control="challenger-2")
    assert chosen.control == "challenger-2" and "Latency p50/p95 champion-1:" in chosen.verdict
    with pytest.raises(ValueError, match="not among the served entities"):
        compare_entities(frame, control="nobody")


def test_sub_millisecond_latencies_read_under_1_ms_never_0() -> None:
    """The table stores whole milliseconds (Databricks' schema): a 0 there is under a millisecond."""
    rng = np.random.default_rng(14)
    raw_a, _ = traffic("model-1", 50, rng)
    raw_b, _ = traffic("model-2", 50, rng, latency_ms=40.0)
    raw_a["execution_time_ms"] = 0
    report = compare_entities(unpack_frame(pd.concat([raw_a, raw_b], ignore_index=True)))
    assert report.summary.loc["model-1", "latency_p50_ms"] == 0
    assert "model-1: < 1 ms / < 1 ms" in report.verdict
    assert not re.search(r"(?<![\d.])0(\.0)? ms", report.verdict)
    text = repr(report)
    row = next(line for line in text.splitlines() if line.startswith("model-1"))
    assert row.split()[1:4] == ["50", "0", "0.0%"] and row.count("< 1 ms") == 3
    assert "&lt; 1 ms" in report._repr_html_()


def test_latency_histogram_puts_sub_millisecond_requests_at_under_1_not_at_a_tenth() -> None:
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(15)
    raw_a, _ = traffic("model-1", 40, rng, latency_ms=0.5)
    raw_b, _ = traffic("model-2", 40, rng, latency_ms=3.0)
    raw_a["execution_time_ms"] = 0
    fig, ax = plt.subplots()
    plot_latency(unpack_frame(pd.concat([raw_a, raw_b], ignore_index=True)), ax=ax)
    fig.canvas.draw()
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] < 0 < ax.get_xlim()[1]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "< 1" in labels
    assert "model-1 (p50 < 1 ms, p95 < 1 ms)" in [t.get_text() for t in ax.get_legend().get_texts()]
    plt.close(fig)


def test_metric_over_time_labels_clock_times() -> None:
    import matplotlib.pyplot as plt

    frame, labels = ab(np.random.default_rng(16), {"accuracy": 0.8}, {"accuracy": 0.9}, n=200)
    fig, ax = plt.subplots()
    plot_metric_over_time(frame, labels, freq="30min", ax=ax)
    fig.canvas.draw()
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert len(ticks) >= 2 and all(len(t) == 8 and t[2] == t[5] == ":" for t in ticks), ticks
    plt.close(fig)
