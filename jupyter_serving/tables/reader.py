"""Reading an inference table into pandas, with requests and responses unpacked into columns.

`inference_table` returns one row per *input row*: a request carrying a batch of three inputs
becomes three rows that share the request's id, status and latency, each with its own feature
columns and `prediction`. All four MLflow scoring formats are understood (`dataframe_split`,
`dataframe_records`, `instances`, `inputs`); a request that cannot be unpacked (a failed request,
an unknown format) still appears, as one row with its `error` and no features, so error rates
computed from the frame stay right.

Both forms of payload table are read, into the same columns: the legacy one
(``auto_capture_config``) and the AI Gateway-enabled one (``ai_gateway.inference_table_config``,
https://docs.databricks.com/aws/en/ai-gateway/inference-tables), whose `request_date`,
`request_time`, `execution_duration_ms` and `served_entity_id` become `date`, `timestamp_ms`,
`execution_time_ms` and `served_entity_name`; its `requester` and `logging_error_codes` are kept.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jupyter_serving.capture.row import METADATA_KEYS, SHADOW_KEY, TTFT_KEY

REQUEST_COLUMNS = (
    "databricks_request_id",
    "client_request_id",
    "date",
    "timestamp_ms",
    "status_code",
    "execution_time_ms",
    "sampling_fraction",
)
GATEWAY_COLUMNS = ("requester", "served_entity_id", "logging_error_codes")  # AI Gateway tables only
# AI Gateway column -> the legacy column it is read as (see the module docstring).
GATEWAY_RENAMES = {
    "request_date": "date",
    "execution_duration_ms": "execution_time_ms",
}
# Columns the reader adds; a model feature with one of these names is renamed `input_<name>`.
RESERVED = frozenset(
    (
        *REQUEST_COLUMNS,
        *METADATA_KEYS,
        *GATEWAY_COLUMNS,
        TTFT_KEY,
        SHADOW_KEY,
        "timestamp",
        "row_index",
        "prediction",
        "error",
    )
)


def inference_table(
    source: str | Path,
    *,
    unpack: bool = True,
    start: _dt.datetime | None = None,
    end: _dt.datetime | None = None,
) -> pd.DataFrame:
    """Read the payload table at `source` (a directory path), newest snapshot.

    With `unpack` (the default), one row per input row with features and predictions as columns;
    without, one row per request with the raw `request`/`response` JSON. Either way the
    `request_metadata` map is spread into `endpoint_name`, `model_name`, `model_version` and
    `served_entity_name`, and `timestamp` (UTC) is added. Where streamed requests recorded their
    time to first token, it is the float column `time_to_first_token_ms` (NaN for the others).
    Where the endpoint mirrored requests to a shadow entity, the bool column `shadow` marks the
    shadow rows (see `compare_shadow`); a table with no shadow rows has no such column.
    An AI Gateway table gives the same columns (see the module docstring). `start`/`end` bound
    `timestamp_ms` (end exclusive); whole `date` partitions outside the range are never read.
    """
    requests = _read_requests(Path(source), start, end)
    return unpack_frame(requests) if unpack else requests


def _read_requests(path: Path, start: _dt.datetime | None, end: _dt.datetime | None) -> pd.DataFrame:
    import pyarrow.compute as pc
    import pyarrow.dataset as ds
    from deltalake import DeltaTable

    dataset = DeltaTable(str(path)).to_pyarrow_dataset()
    if "request_date" in dataset.schema.names:
        return _gateway_frame(dataset.to_table(filter=_time_filter(ds, start, end, gateway=True)))
    table = dataset.to_table(filter=_time_filter(ds, start, end))
    metadata = table.column("request_metadata")
    for key in METADATA_KEYS:
        table = table.append_column(key, pc.map_lookup(metadata, key, "first"))
    ttft = pc.map_lookup(metadata, TTFT_KEY, "first")
    if ttft.null_count < len(ttft):
        table = table.append_column(TTFT_KEY, pc.cast(ttft, "float64"))
    shadow = pc.map_lookup(metadata, SHADOW_KEY, "first")
    if shadow.null_count < len(shadow):  # mirrored requests' rows (dataplane/shadow.py)
        table = table.append_column(SHADOW_KEY, pc.fill_null(pc.equal(shadow, "true"), False))
    table = table.drop_columns(["request_metadata"])
    frame = table.to_pandas()
    frame.insert(3, "timestamp", pd.to_datetime(frame["timestamp_ms"], unit="ms", utc=True))
    return frame.sort_values("timestamp_ms", kind="stable", ignore_index=True)


def _gateway_frame(table: Any) -> pd.DataFrame:
    """An AI Gateway table's rows in the legacy frame's columns, plus requester and the others."""
    frame = table.to_pandas().rename(columns=GATEWAY_RENAMES)
    stamps = pd.to_datetime(frame.pop("request_time"), utc=True)
    frame.insert(2, "timestamp_ms", (stamps - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1))
    frame.insert(2, "timestamp", stamps)
    for key in METADATA_KEYS:  # no request_metadata map in this schema: only the entity is known
        frame[key] = frame["served_entity_id"] if key == "served_entity_name" else None
    return frame.sort_values("timestamp_ms", kind="stable", ignore_index=True)


def _time_filter(
    ds: Any, start: _dt.datetime | None, end: _dt.datetime | None, *, gateway: bool = False
) -> Any:
    # The date conditions let the dataset skip whole partitions; the time conditions are exact.
    date, conditions = ds.field("request_date" if gateway else "date"), []

    def moment(value: _dt.datetime) -> Any:
        return _utc(value) if gateway else int(_utc(value).timestamp() * 1000)

    time = ds.field("request_time" if gateway else "timestamp_ms")
    if start is not None:
        conditions.append(date >= _utc(start).date())
        conditions.append(time >= moment(start))
    if end is not None:
        conditions.append(date <= _utc(end).date())
        conditions.append(time < moment(end))
    expr = None
    for condition in conditions:
        expr = condition if expr is None else expr & condition
    return expr


def _utc(moment: _dt.datetime) -> _dt.datetime:
    return moment.replace(tzinfo=_dt.UTC) if moment.tzinfo is None else moment.astimezone(_dt.UTC)


def unpack_frame(requests: pd.DataFrame) -> pd.DataFrame:
    """One row per input row from a frame of raw requests (as `inference_table(unpack=False)`)."""
    from jupyter_serving.tables.fastunpack import unpack_fast

    fast = unpack_fast(requests, _safe_name) if len(requests) else None
    return fast if fast is not None else unpack_rows(requests)


def unpack_rows(requests: pd.DataFrame) -> pd.DataFrame:
    """`unpack_frame` one request at a time: slow, but handles any body (the reference)."""
    owners: list[int] = []
    records: list[dict[str, Any]] = []
    pairs = zip(requests["request"].tolist(), requests["response"].tolist(), strict=True)
    for position, (request, response) in enumerate(pairs):
        rows = unpack(request, response)
        owners.extend([position] * len(rows))
        records.extend(rows)
    meta = requests.drop(columns=["request", "response"]).iloc[np.asarray(owners, dtype=np.int64)]
    meta = meta.reset_index(drop=True)
    unpacked = pd.DataFrame.from_records(records, index=meta.index)
    if "prediction" in unpacked and unpacked["prediction"].dtype == float:
        unpacked["prediction"] = _restore_ints([r.get("prediction") for r in records], unpacked["prediction"])
    if any(str(c).startswith("prediction_") for c in unpacked) and unpacked["prediction"].isna().all():
        unpacked = unpacked.drop(columns=["prediction"])  # only failed rows had a bare prediction
    elif "prediction" not in unpacked:
        unpacked["prediction"] = None
    errors = unpacked.pop("error") if "error" in unpacked else pd.Series(None, index=unpacked.index)
    unpacked["error"] = errors.astype("str")  # a text column even when nothing failed
    return pd.concat([meta, unpacked], axis=1)


def _restore_ints(values: list[Any], column: pd.Series) -> pd.Series:
    # pandas turns integer class ids into floats as soon as one row (a failed request) has none.
    if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
        return column.astype("Int64")
    return column


def unpack(request: str | None, response: str | None) -> list[dict[str, Any]]:
    """Per input row: `row_index`, the features, `prediction` (or `prediction_<key>`), `error`."""
    inputs = _parse_inputs(_loads(request))
    predictions, error = _parse_predictions(_loads(response), response)
    if not inputs:
        return [{"row_index": 0, "error": error, **_prediction_columns(predictions, 0, 1)}]
    rows = []
    for index, features in enumerate(inputs):
        row: dict[str, Any] = {"row_index": index}
        row.update({_safe_name(k): v for k, v in features.items()})
        row.update(_prediction_columns(predictions, index, len(inputs)))
        row["error"] = error
        rows.append(row)
    return rows


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _safe_name(name: Any) -> str:
    name = str(name)
    return f"input_{name}" if name in RESERVED else name


def _parse_inputs(body: Any) -> list[dict[str, Any]]:
    """Input rows as dicts, for each of MLflow's scoring formats; [] if not recognisable."""
    if not isinstance(body, dict):
        return []
    if "dataframe_split" in body:
        return _split_rows(body["dataframe_split"])
    if "dataframe_records" in body:
        records = body["dataframe_records"]
        if not isinstance(records, list):
            return []
        return [r if isinstance(r, dict) else {"input": r} for r in records]
    for key in ("instances", "inputs"):
        if key in body:
            return _tensor_rows(body[key])
    return []


def _split_rows(split: Any) -> list[dict[str, Any]]:
    if isinstance(split, list) and split and isinstance(split[0], dict):
        split = split[0]  # the docs' examples sometimes wrap the split in a list
    if not isinstance(split, dict) or not isinstance(split.get("data"), list):
        return []
    data = split["data"]
    columns = split.get("columns") or [f"input_{i}" for i in range(len(data[0]) if data else 0)]
    return [dict(zip(columns, row if isinstance(row, list) else [row], strict=False)) for row in data]


def _tensor_rows(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        # Columnar ({"x": [..], "y": [..]}): rows only if every column has the same length.
        lengths = {len(v) for v in value.values() if isinstance(v, list)}
        if len(lengths) == 1 and all(isinstance(v, list) for v in value.values()):
            n = lengths.pop()
            return [{k: v[i] for k, v in value.items()} for i in range(n)]
        return [value]
    if not isinstance(value, list):
        return [{"input": value}]
    rows = []
    for item in value:
        if isinstance(item, dict):
            rows.append(item)
        elif isinstance(item, list) and all(not isinstance(x, list | dict) for x in item):
            rows.append({f"input_{i}": x for i, x in enumerate(item)})
        else:
            rows.append({"input": item})
    return rows


def _parse_predictions(body: Any, text: str | None) -> tuple[Any, str | None]:
    """`(predictions, error message)` from a response body (parsed) and its raw text."""
    if body is None:
        # Responses are JSON; anything else is a proxy's or a crash's error page.
        return None, (text[:1000] if text else None)
    if not isinstance(body, dict):
        return body, None
    if "error_code" in body or ("message" in body and "predictions" not in body):
        return None, str(body.get("message") or body.get("error_code"))
    for key in ("predictions", "outputs"):
        if key in body:
            return body[key], None
    return None, None


def _prediction_columns(predictions: Any, index: int, n_rows: int) -> dict[str, Any]:
    value = _prediction_at(predictions, index, n_rows)
    if isinstance(value, dict):
        return {f"prediction_{k}": v for k, v in value.items()}
    return {"prediction": value}


def _prediction_at(predictions: Any, index: int, n_rows: int) -> Any:
    if isinstance(predictions, list):
        return predictions[index] if len(predictions) == n_rows else (predictions if n_rows == 1 else None)
    if isinstance(predictions, dict):
        # Columnar dict output ({"label": [..], "score": [..]}) → this row's slice.
        if all(isinstance(v, list) and len(v) == n_rows for v in predictions.values()):
            return {k: v[index] for k, v in predictions.items()}
        return predictions if n_rows == 1 else None
    return predictions
