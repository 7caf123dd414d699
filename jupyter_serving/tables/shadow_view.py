"""The shadow view's comparison: live against shadow on the same requests, as plain JSON.

Runs pandas (`compare_shadow` over the inference table), so the server calls it in a worker thread
and only when the Model Serving page asks; nothing imports it at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jupyter_serving.tables.summary import _plain


def shadow_summary(path: Path) -> dict[str, Any]:
    """{"requests": live requests in the table, "comparison": one entry per shadow entity (see
    `compare_shadow`), or an empty list and a message where nothing was mirrored yet}."""
    from jupyter_serving.capture.row import SHADOW_KEY
    from jupyter_serving.tables.analysis import compare_shadow
    from jupyter_serving.tables.reader import inference_table

    frame = inference_table(path)
    if frame.empty or SHADOW_KEY not in frame or not frame[SHADOW_KEY].astype(bool).any():
        return {"comparison": [], "message": "No mirrored request in the inference table yet."}
    report = compare_shadow(frame)
    comparison = [
        {"shadow_entity": name, **{k: _plain(v) for k, v in values.items()}}
        for name, values in report.to_dict(orient="index").items()
    ]
    return {"comparison": comparison, "message": None}
