"""The monitor's history chart and events list, drawn from a history as the server answers it."""

from __future__ import annotations

import io

from jupyter_serving.notebook.charts import history_figure, history_png
from jupyter_serving.notebook.widgets import _render_events

T0 = 1_700_000_000_000


def history(n: int = 30) -> dict:
    times = [T0 + i * 2000 for i in range(n)]

    def samples(scale: float) -> dict:
        return {
            "timestamp_ms": times,
            "requests_per_s": [scale * i for i in range(n)],
            "requests_4xx_per_s": [0.0] * n,
            "requests_5xx_per_s": [None] * (n - 1) + [1.0],
            "latency_p99_ms": [None if i % 5 == 0 else 3.0 for i in range(n)],
            "ready_replicas": [1] * (n // 2) + [2] * (n - n // 2),
        }

    return {
        "interval_s": 2.0,
        "retention_s": 3600.0,
        "served_entities": [{"name": "a", "samples": samples(1.0)}, {"name": "b", "samples": samples(0.5)}],
        "traffic": {"timestamp_ms": times, "a": [50] * n, "b": [50] * n},
    }


def test_history_png_is_an_image_with_one_line_per_entity_per_panel() -> None:
    from matplotlib.image import imread

    png = history_png(history(), ["a", "b"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = imread(io.BytesIO(png)).shape
    assert (width, height) == (800, 480)  # 10 x 6 in at 80 dpi


def test_no_span_of_history_makes_the_date_axis_warn() -> None:
    """The monitor draws on a thread of its own, where a warnings filter cannot be set safely (the
    list is global): no span may make Matplotlib's date locator warn (2.5-3 minutes did, failing a
    monitor test once). Warnings are errors in this suite, so a warning fails this test."""
    for span_s in (1, 20, 150, 160, 179, 600, 3600, 9000, 10_000, 10_790, 250_000):
        short = history(4)
        stamps = [T0 + round(i * span_s * 1000 / 3) for i in range(4)]
        for entity in short["served_entities"]:
            entity["samples"]["timestamp_ms"] = stamps
        short["traffic"]["timestamp_ms"] = stamps
        buffer = io.BytesIO()
        history_figure(short, ["a", "b"]).savefig(buffer, format="png", dpi=80)  # no filter around it
        assert buffer.getvalue()[:4] == b"\x89PNG", span_s


def test_history_png_draws_an_empty_history_without_failing() -> None:
    empty = {"interval_s": 2.0, "retention_s": 3600.0, "served_entities": [], "traffic": {"timestamp_ms": []}}
    assert history_png(empty, ["a"])[:4] == b"\x89PNG"


def test_events_newest_first_with_severity_colours_and_escaping() -> None:
    events = [
        {
            "timestamp_ms": T0,
            "type": "UPDATE_STARTED",
            "severity": "INFO",
            "message": "Config update to version 2",
        },
        {"timestamp_ms": T0 + 1000, "type": "UPDATE_FAILED", "severity": "ERROR", "message": "<boom>"},
    ]
    html = _render_events(events)
    assert html.index("update failed") < html.index("update started")
    assert "#cf222e" in html and "&lt;boom&gt;" in html and "<boom>" not in html
    assert _render_events([]) == ""


def test_errors_are_split_equal_series_stay_distinguishable_and_time_reads_24_hour() -> None:
    from jupyter_serving.notebook.charts import history_figure

    fig = history_figure(history(), ["a", "b"])
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles == [
        "Requests / s",
        "Latency p99 (ms)",
        "Client errors (4xx) / s",
        "Server errors (5xx) / s",
        "Ready replicas",
        "Traffic split (%)",
    ]
    traffic = fig.axes[5].get_lines()  # a 50/50 split: two equal lines
    assert [line.get_label() for line in traffic] == ["a", "b"]
    assert traffic[0].get_linestyle() != traffic[1].get_linestyle()
    assert traffic[0].get_marker() != traffic[1].get_marker()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    labels = [t.get_text() for t in fig.axes[4].get_xticklabels() if t.get_text()]
    assert len(labels) >= 2
    assert all(len(label) == 8 and label[2] == ":" for label in labels)  # HH:MM:SS, no AM/PM
