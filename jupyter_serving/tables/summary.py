"""The inference-table tab's data: the latest rows and the A/B comparison, as plain JSON.

Runs pandas, so the server calls it in a worker thread (never on the event loop) and only when the
Model Serving page asks; nothing imports it at start-up.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

ROW_COLUMNS = (
    "timestamp_ms",
    "served_entity_name",
    "status_code",
    "execution_time_ms",
    "databricks_request_id",
    "client_request_id",
)


def table_summary(path: Path, limit: int = 50, control: str | None = None) -> dict[str, Any]:
    """{"rows": the latest `limit` requests, "comparison": compare_entities' verdict and summary}.

    `control` is the user's choice of control entity; one without captured requests (yet) falls
    back to the default (the entity with the most traffic), and `comparison.control` says which
    was used."""
    from jupyter_serving.tables.analysis import ENTITY, compare_entities
    from jupyter_serving.tables.reader import inference_table, unpack_frame

    requests = inference_table(path, unpack=False)
    if requests.empty:
        return {"requests": 0, "rows": [], "comparison": None}
    latest = requests.iloc[::-1].head(limit)
    columns = [c for c in (*ROW_COLUMNS, "request", "response") if c in latest.columns]
    rows = [{c: _plain(v) for c, v in zip(columns, values, strict=True)} for values in latest[columns].values]
    frame = unpack_frame(requests)
    if control is not None and control not in set(frame[ENTITY].dropna()):
        control = None
    report = compare_entities(frame, control=control)
    summary = [
        {"served_entity_name": name, **{k: _plain(v) for k, v in values.items()}}
        for name, values in report.summary.to_dict(orient="index").items()
    ]
    comparison = {"control": report.control, "verdict": report.verdict, "entities": summary}
    return {"requests": len(requests), "rows": rows, "comparison": comparison}


def _plain(value: Any) -> Any:
    """numpy scalars and NaN as JSON values."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
