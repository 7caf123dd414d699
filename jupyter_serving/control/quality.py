"""The quality guard's evidence: ground-truth labels joined to each arm's inference-table rows.

A rollout whose guard has a ``quality`` object (policy/guard.py `QualityConfig`) names a Delta table
of labels, by ``catalog.schema.table`` under the catalog root (where inference tables live) or by
path, with a ``client_request_id`` column and a label column (and, to label each row of a batched
request, ``row_index``). Labels usually arrive after the answers, from wherever the truth comes
from, appended by a job or a notebook. Every ``poll_interval_s`` the rollout controller reads the
endpoint's inference table from the rollout's start and the labels table, and joins them:

- rows the live entities answered with 200 (errors are the error-rate guard's; shadow rows, marked
  ``"shadow": "true"``, are not live answers and are left out), with a ``client_request_id``;
- on ``client_request_id`` (and ``row_index`` when the labels have it; without it, only requests of
  a single input row are scored, as a request-level label cannot say which row it is for);
- the last label of a key wins, so a corrected label replaces the first one.

Each joined row gets a score (1/0 for a correct answer, or its absolute error clipped to
``max_error``) and each arm's count and sum feed the guard's always-valid sequences. The whole join
is recomputed from the tables at each poll: the tables are the evidence, so a restarted server
finds the same counts, and nothing else needs to be kept.

Reading runs in a worker thread (the controller awaits it with `asyncio.to_thread`), and pandas and
deltalake are imported there, never on the server's start-up or request paths.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_serving.policy.guard import QualityConfig

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ArmQuality:
    labeled: int = 0
    total: float = 0.0  # sum of the per-row scores


@dataclass(frozen=True)
class QualityCounts:
    """Each arm's labelled answers, and what stood in the way of more (None when nothing did)."""

    challenger: ArmQuality = field(default_factory=ArmQuality)
    control: ArmQuality = field(default_factory=ArmQuality)
    message: str | None = None


def labels_location(config: QualityConfig, catalog_root: Path) -> Path:
    """The folder of the labels' Delta table."""
    if config.labels_path is not None:
        return Path(config.labels_path)
    assert config.labels_table is not None
    return catalog_root.joinpath(*config.labels_table.split("."))


def check_labels_table(config: QualityConfig, path: Path) -> str | None:
    """Why the labels table at `path` cannot serve `config`, if it exists and cannot (a missing
    table is fine: labels may start arriving after the rollout)."""
    if not (path / "_delta_log").is_dir():
        return None
    from deltalake import DeltaTable

    try:
        names = {f.name for f in DeltaTable(str(path)).schema().fields}
    except Exception as exc:  # a broken log: say so instead of failing later in the controller
        return f"The labels table at {path} cannot be read: {exc}"
    missing = [c for c in ("client_request_id", config.label_column) if c not in names]
    if missing:
        return (
            f"The labels table {config.labels_source} has no column(s) {', '.join(missing)} "
            f"(it has {', '.join(sorted(names))})."
        )
    return None


def read_counts(
    config: QualityConfig,
    inference_path: Path | None,
    labels_path: Path,
    started_ms: int,
    challenger: str,
    controls: list[str],
) -> QualityCounts:
    """Read both tables and join them (blocking: call it in a thread)."""
    if inference_path is None:
        return QualityCounts(message="The endpoint has no inference table to join labels to.")
    if not (labels_path / "_delta_log").is_dir():
        return QualityCounts(message=f"Waiting for the labels table {config.labels_source}.")
    problem = check_labels_table(config, labels_path)
    if problem is not None:
        return QualityCounts(message=problem)
    if not (inference_path / "_delta_log").is_dir():
        return QualityCounts(message="Waiting for the first inference-table rows.")
    from deltalake import DeltaTable

    from jupyter_serving.tables.reader import inference_table

    start = _dt.datetime.fromtimestamp(started_ms / 1000, _dt.UTC)
    rows = inference_table(inference_path, start=start)
    dataset = DeltaTable(str(labels_path)).to_pyarrow_dataset()
    wanted = ["client_request_id", config.label_column]
    if "row_index" in dataset.schema.names:
        wanted.append("row_index")
    labels: pd.DataFrame = dataset.to_table(columns=wanted).to_pandas()
    return score_rows(rows, labels, config, challenger, controls)


def score_rows(
    rows: pd.DataFrame, labels: pd.DataFrame, config: QualityConfig, challenger: str, controls: list[str]
) -> QualityCounts:
    """The join and the scores, as a pure function of two frames (see the module docstring).

    `rows` is `inference_table`'s frame (one row per input row); `labels` has `client_request_id`,
    the label column and optionally `row_index`.
    """
    import numpy as np
    import pandas as pd

    if rows.empty or labels.empty:
        return QualityCounts(message=None if not rows.empty else "No answers since the rollout began.")
    live = rows[
        (rows["status_code"] == 200)
        & rows["client_request_id"].notna()
        & rows["served_entity_name"].isin([challenger, *controls])
    ]
    if "shadow" in live:
        live = live[~live["shadow"].fillna(False).astype(bool)]
    if config.prediction_column not in live:
        found = sorted(c for c in rows if str(c).startswith("prediction"))
        return QualityCounts(
            message=f"The answers have no '{config.prediction_column}' column to score "
            f"(they have {', '.join(found) or 'none'}): set guard.quality.prediction_column."
        )
    keys = ["client_request_id"]
    if "row_index" in labels:
        keys.append("row_index")
    else:  # a request-level label scores requests of one row only
        sizes = live.groupby("databricks_request_id")["row_index"].transform("size")
        live = live[sizes == 1]
    truth = labels[[*keys, config.label_column]].rename(columns={config.label_column: "_label"})
    truth = truth.dropna(subset=keys).drop_duplicates(keys, keep="last")
    truth["client_request_id"] = truth["client_request_id"].astype(str)
    if "row_index" in keys:
        truth["row_index"] = pd.to_numeric(truth["row_index"], errors="coerce")
        truth = truth.dropna(subset=["row_index"]).astype({"row_index": "int64"})
    live = live[["served_entity_name", *keys, config.prediction_column]].astype({"client_request_id": str})
    if "row_index" in keys:
        live = live.astype({"row_index": "int64"})
    joined = live.merge(truth, on=keys, how="inner")
    joined = joined[joined["_label"].notna()]
    predictions, labels_ = joined[config.prediction_column], joined["_label"]
    if config.metric == "accuracy":
        scores = _matches(predictions, labels_).astype(float)
    else:
        bound = config.max_error or math.inf
        truth_num = pd.to_numeric(labels_, errors="coerce").to_numpy(dtype=float)
        predicted = pd.to_numeric(predictions, errors="coerce").to_numpy(dtype=float)
        scores = np.minimum(np.abs(predicted - truth_num), bound)
        scores = np.where(np.isnan(predicted), bound, scores)  # a non-number is as wrong as can be
        keep = ~np.isnan(truth_num)  # a label that is not a number scores nothing
        joined, scores = joined[keep], scores[keep]
    is_challenger = (joined["served_entity_name"] == challenger).to_numpy()
    return QualityCounts(
        ArmQuality(int(is_challenger.sum()), float(scores[is_challenger].sum())),
        ArmQuality(int((~is_challenger).sum()), float(scores[~is_challenger].sum())),
    )


def _matches(predictions: Any, labels: Any) -> Any:
    """Equality that treats 1, 1.0 and "1" alike: JSON answers and label tables disagree on number
    types (as tables/analysis.py's does; not imported from there, which would pull in scipy)."""
    import numpy as np
    import pandas as pd

    p_num, l_num = pd.to_numeric(predictions, errors="coerce"), pd.to_numeric(labels, errors="coerce")
    numeric = (p_num.notna() & l_num.notna()).to_numpy()
    same_number = (p_num.to_numpy(dtype=float) == l_num.to_numpy(dtype=float)) & numeric
    same_text = predictions.astype(str).to_numpy() == labels.astype(str).to_numpy()
    return np.where(numeric, same_number, same_text)
