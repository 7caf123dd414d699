"""Scoring inside a worker: MLflow's scoring protocol, plus three ways to do less work per request.

1. Micro-batching: requests that arrive together and share a tabular shape (``dataframe_split`` /
   ``dataframe_records`` with the same columns, no ``params``) are concatenated into one DataFrame
   and scored with one ``predict`` call, so schema enforcement and model overhead are paid once.
   Tensor models (a single unnamed tensor input) get the same for ``inputs`` / ``instances``: arrays
   of the same dtype and trailing shape are stacked into one forward pass and split back.
2. A NumPy fast path for scikit-learn models whose signature is all-numeric columns: rows go
   straight into an array and the estimator, skipping pandas and schema enforcement. It accepts
   only requests whose every value already has the signature's type, so it cannot change a result;
   anything else (strings, nulls, missing columns, ``params``, CSV, ``inputs``...) takes MLflow's own
   ``scoring_server.invocations`` path and gets MLflow's own answer or error message. XGBoost and
   LightGBM models (their sklearn API and native Boosters) qualify when their signature is all
   ``double`` and names the features in the model's own order, the case where MLflow's DataFrame
   reaches the same predict call with the same float values. scikit-learn's linear models
   (LogisticRegression, LinearRegression, Ridge, SGD, LinearSVC...) are scored there from their
   fitted coefficients without scikit-learn's per-call input checks (``worker/linear.py``), which
   cost ~0.2 ms of a one-row request; only where that reproduces the estimator's own predict.
3. Text batching for pipelines whose output is one row per input string (transformers
   text classification and generation, sentence-transformers embeddings): string or list-of-string
   ``inputs`` / ``instances`` with equal ``params`` are joined into one list, so a batch of string
   requests is one pipeline call. Feature extraction is not among them: MLflow answers one array of
   token vectors however many strings it is given, so its requests are scored one by one.

Imported only by the worker process: it imports MLflow and pandas at module level on purpose.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from mlflow.pyfunc.scoring_server import NumpyEncoder
from mlflow.types import DataType
from mlflow.utils.proto_json_utils import _get_jsonable_obj

from jupyter_serving.worker import request_log, traces
from jupyter_serving.worker.linear import linear_predict
from jupyter_serving.worker.streaming import SERVING_KEYS

log = logging.getLogger("jupyter_serving.worker")


class _NoInstancesAdvice(logging.Filter):
    """MLflow logs a five-line note about the `instances` key after every schema failure, whatever
    key the request used (most often `dataframe_records`): in a replica's log it buries the one line
    that says what failed."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("If using `instances` as input key")


logging.getLogger("mlflow.pyfunc.scoring_server").addFilter(_NoInstancesAdvice())

JSON_TYPES = ("application/json", "")
TABULAR = ("dataframe_split", "dataframe_records")
TENSOR = ("inputs", "instances")
_INTEGER = (DataType.long, DataType.integer)
_NUMERIC = (DataType.double, DataType.float, *_INTEGER)
LLM_KEYS = frozenset(("messages", "input", "prompt"))  # MLflow's unified LLM/agent request keys


@dataclass(slots=True)
class Result:
    status: int
    body: bytes
    client_request_id: str | None = None
    execution_ms: float = 0.0
    batch: int = 1  # requests scored by the same predict call
    trace: str | None = None  # the MLflow trace the model produced (JSON), for the inference table


@dataclass(slots=True)
class Prepared:
    """A parsed request: `rows` for the fast path, `frame` for batching, else `payload` alone."""

    payload: dict[str, Any] | None
    client_request_id: str | None
    rows: np.ndarray | None = None
    frame: pd.DataFrame | None = None
    tensor: np.ndarray | None = None
    texts: list[str] | None = None
    params_key: str = ""  # the request's params as canonical JSON: texts batch only with equal params
    error: Result | None = None  # refused before scoring (input the server can tell is malformed)
    agent: bool = False  # agent/chat input: its MLflow trace is kept (worker/traces.py)
    return_trace: bool = False  # databricks_options.return_trace: the answer carries the trace


class Scorer:
    """Scores lists of raw requests against one loaded pyfunc model."""

    def __init__(self, model: Any, *, fast_path: bool = True) -> None:
        self.model = model
        self.input_schema = model.metadata.get_input_schema()
        self.lookups = FeatureLookups.build(model)
        self.fast = self._fast_path(model) if fast_path else None
        self.batchable = self._batchable(model)
        schema = self.input_schema
        self.tensor_input = schema is not None and schema.is_tensor_spec() and len(schema.inputs) == 1
        self.text_rows = row_per_string(model)

    def _fast_path(self, model: Any) -> Any:
        if self.lookups is not None:  # a model with a feature spec: the fast path of the model inside
            return self.lookups.fast_path(NumericFastPath.build)
        return NumericFastPath.build(model)

    def _batchable(self, model: Any) -> bool:
        meta = model.metadata
        from_hints = getattr(meta, "_is_signature_from_type_hint", lambda: False)()
        return not from_hints and meta.get_params_schema() is None

    def score(
        self, requests: list[tuple[str, bytes]], request_ids: Sequence[str] | None = None
    ) -> list[Result]:
        """Score concurrent requests, coalescing the compatible ones; one Result per request.
        `request_ids`: the server's ids of the requests, for the log lines of one scored alone."""
        started = time.perf_counter()
        prepared = [self._prepare(ct, body) for ct, body in requests]
        results: list[Result | None] = [p.error for p in prepared]
        self._score_fast(prepared, results)
        self._score_frames(prepared, results)
        self._score_tensors(prepared, results)
        self._score_texts(prepared, results)
        for i, item in enumerate(prepared):
            if results[i] is None:
                results[i] = self._score_one(requests[i], item, request_ids[i] if request_ids else "")
        elapsed = (time.perf_counter() - started) * 1000
        scored = cast("list[Result]", results)  # every slot is filled by now
        for r in scored:
            r.execution_ms = r.execution_ms or elapsed
        return scored

    def _prepare(self, content_type: str, body: bytes) -> Prepared:
        if content_type.split(";")[0].strip().lower() not in JSON_TYPES:
            return Prepared(None, None)
        try:
            payload = json.loads(body)
        except RecursionError:
            return Prepared(None, None, error=bad_request("The request body nests JSON too deeply to parse."))
        except ValueError:
            return Prepared(None, None)
        if not isinstance(payload, dict):
            return Prepared(None, None)
        crid = payload.get("client_request_id")
        if isinstance(crid, str) and not _encodable(crid):
            message = "client_request_id must be valid Unicode text (it has an unpaired surrogate)."
            return Prepared(None, None, error=bad_request(message))
        agent = not LLM_KEYS.isdisjoint(payload)
        return_trace = agent and traces.wants_trace(payload)
        if agent:  # agent/chat input: serving keys are not the model's
            payload = {k: v for k, v in payload.items() if k not in SERVING_KEYS}
        item = Prepared(
            payload, crid if isinstance(crid, str) else None, agent=agent, return_trace=return_trace
        )
        fmt = [k for k in payload if k in scoring_server.SUPPORTED_FORMATS]
        if len(fmt) == 1 and fmt[0] in TENSOR and self.text_rows:
            return self._text_item(item, payload[fmt[0]], payload.get("params"))
        if len(fmt) != 1 or "params" in payload or not self.batchable:
            return item
        if fmt[0] in TENSOR and self.tensor_input:
            item.tensor = self._tensor(fmt[0], payload)
            return item
        if fmt[0] not in TABULAR:
            return item
        if self.fast is not None:
            item.rows = self.fast.rows(fmt[0], payload[fmt[0]])
        if item.rows is None:
            item.frame = self._frame(fmt[0], payload)
        return item

    def _tensor(self, fmt: str, payload: dict[str, Any]) -> np.ndarray | None:
        try:
            data = scoring_server.infer_and_parse_data({fmt: payload[fmt]}, self.input_schema)
        except Exception:
            return None
        return data if isinstance(data, np.ndarray) and data.ndim >= 1 else None

    def _score_tensors(self, prepared: list[Prepared], results: list[Result | None]) -> None:
        groups: dict[tuple[str, tuple[int, ...]], list[int]] = {}
        for i, p in enumerate(prepared):
            if p.tensor is not None and results[i] is None:
                groups.setdefault((p.tensor.dtype.str, p.tensor.shape[1:]), []).append(i)
        for idx in groups.values():
            arrays = cast("list[np.ndarray]", [prepared[i].tensor for i in idx])  # grouped: not None
            counts = [len(a) for a in arrays]
            try:
                preds = self.model.predict(np.concatenate(arrays) if len(arrays) > 1 else arrays[0])
            except Exception:
                continue  # scored one by one, so each request gets its own error
            self._split_into(results, idx, prepared, preds, counts)

    def _text_item(self, item: Prepared, value: Any, params: Any) -> Prepared:
        """Strings to join with other requests' strings; params only where the signature has them."""
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return item
        declared = self.model.metadata.get_params_schema() is not None
        if params is not None and not (isinstance(params, dict) and declared):
            return item
        item.texts = texts
        item.params_key = json.dumps(params, sort_keys=True) if params else ""
        return item

    def _score_texts(self, prepared: list[Prepared], results: list[Result | None]) -> None:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prepared):
            if p.texts is not None and results[i] is None:
                groups.setdefault(p.params_key, []).append(i)
        for key, idx in groups.items():
            texts = [t for i in idx for t in prepared[i].texts]  # type: ignore[union-attr]
            counts = [len(prepared[i].texts) for i in idx]  # type: ignore[arg-type]
            try:
                preds = self.model.predict(texts, params=json.loads(key) if key else None)
            except Exception:
                continue  # scored one by one, so each request gets its own error
            self._split_into(results, idx, prepared, preds, counts)

    def _frame(self, fmt: str, payload: dict[str, Any]) -> pd.DataFrame | None:
        try:
            return scoring_server.infer_and_parse_data({fmt: payload[fmt]}, self.input_schema)
        except Exception:
            return None  # the single-request path reports MLflow's own parse error

    def _score_fast(self, prepared: list[Prepared], results: list[Result | None]) -> None:
        idx = [i for i, p in enumerate(prepared) if p.rows is not None]
        if not idx:
            return
        counts = [len(prepared[i].rows) for i in idx]  # type: ignore[arg-type]
        stacked = np.concatenate([prepared[i].rows for i in idx]) if len(idx) > 1 else prepared[idx[0]].rows
        lookup = self.fast.take() if self.lookups is not None else None  # type: ignore[union-attr]
        try:
            preds = self.fast.predict(stacked)  # type: ignore[union-attr]
        except Exception:
            for i in idx:  # let MLflow's path produce the exact error for each request
                prepared[i].rows = None
            return
        self._split_into(results, idx, prepared, preds, counts, lookup)

    def _score_frames(self, prepared: list[Prepared], results: list[Result | None]) -> None:
        groups: dict[tuple[str, ...], list[int]] = {}
        for i, p in enumerate(prepared):
            if p.frame is not None and results[i] is None:
                groups.setdefault(tuple(map(str, p.frame.columns)), []).append(i)
        for idx in groups.values():
            frames = [prepared[i].frame for i in idx]
            counts = [len(f) for f in frames]  # type: ignore[arg-type]
            try:
                batch = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
                preds = self.model.predict(batch)
            except Exception:
                continue  # scored one by one, so each request gets its own error
            lookup = self.lookups.take() if self.lookups is not None else None
            self._split_into(results, idx, prepared, preds, counts, lookup)

    def _split_into(
        self,
        results: list[Result | None],
        idx: list[int],
        prepared: list[Prepared],
        preds: Any,
        counts: list[int],
        lookup: Any = None,
    ) -> None:
        if len(preds) != sum(counts):
            return  # not row-aligned: each request is scored alone
        offset = 0
        for i, n in zip(idx, counts, strict=True):
            part = preds[offset : offset + n]
            if isinstance(part, pd.DataFrame | pd.Series):
                part = part.reset_index(drop=True)
            reply = {"predictions": _get_jsonable_obj(part, pandas_orient="records")}
            if self.lookups is not None:
                reply.update(self.lookups.extras(lookup, offset, n))
            offset += n
            body = json.dumps(reply, cls=NumpyEncoder)
            results[i] = Result(200, body.encode(), prepared[i].client_request_id, batch=len(idx))

    def _score_one(self, request: tuple[str, bytes], item: Prepared, request_id: str = "") -> Result:
        before = request_log.scoring(request_id)  # its lines name this request, not the whole batch
        try:
            return self._score_alone(request, item)
        finally:
            request_log.scoring(before)

    def _score_alone(self, request: tuple[str, bytes], item: Prepared) -> Result:
        content_type, body = request
        started = time.perf_counter()
        data: Any = item.payload if item.payload is not None else body
        before = traces.last_id() if item.agent else None
        try:
            out = scoring_server.invocations(
                data, content_type or "application/json", self.model, self.input_schema
            )
            status, text = out.status, out.response
            if self.lookups is not None and status == 200:
                text = self.lookups.add_to(text)
            if out.mimetype != "application/json":  # MLflow answers 415 in plain text; clients expect JSON
                status, text = 400, json.dumps({"error_code": "BAD_REQUEST", "message": out.response})
        except MlflowException as exc:
            trace = (getattr(exc, "json_kwargs", None) or {}).get("stack_trace") or ""
            status = exc.get_http_status_code()
            message = _with_cause(without_data(exc.message), trace)
            log.warning("invocation failed (%s%s): %s", status, _crid(item), one_line(message))
            log.debug("the model's traceback:\n%s", trace)
            text = json.dumps({"error_code": exc.error_code, "message": client_safe(message)})
        except Exception as exc:
            # The event's own line first (the model's exception, one line), then its traceback.
            log.error(
                "model raised while scoring%s: %s: %s\n%s",
                _crid(item),
                type(exc).__name__,
                one_line(str(exc))[:500],
                traceback.format_exc(),
            )
            message = client_safe(f"Model error: {type(exc).__name__}: {exc}")
            status, text = 500, json.dumps({"error_code": "INTERNAL_ERROR", "message": message})
        elapsed = (time.perf_counter() - started) * 1000
        trace = traces.take(before) if item.agent else None
        if trace is not None and item.return_trace and status == 200:
            text = with_trace(text, trace)
        return Result(status, text.encode(), item.client_request_id, elapsed, trace=trace)


# Pipelines whose pyfunc output has one row per input string, so a joined batch splits back exactly.
ROW_PER_STRING_TASKS = ("text-classification", "sentiment-analysis", "text-generation")


def row_per_string(model: Any) -> bool:
    """Whether the model takes one string column and answers one row per string (see TEXT batching)."""
    meta = model.metadata
    schema = meta.get_input_schema()
    if schema is None or schema.is_tensor_spec() or len(schema.inputs) != 1:
        return False
    if schema.inputs[0].type != DataType.string:
        return False
    loader = meta.flavors.get("python_function", {}).get("loader_module")
    if loader == "mlflow.sentence_transformers":
        return True
    flavor = meta.flavors.get("transformers", {})
    return (
        loader == "mlflow.transformers"
        and flavor.get("task") in ROW_PER_STRING_TASKS
        and not flavor.get("inference_task")  # llm/v1 tasks take chat/completion dicts, not strings
    )


def with_trace(text: str, trace: str) -> str:
    """The answer with `databricks_output.trace`, as Databricks returns it for return_trace."""
    try:
        answer = json.loads(text)
    except ValueError:
        return text
    if not isinstance(answer, dict):
        return text
    answer.setdefault("databricks_output", {})["trace"] = json.loads(trace)
    return json.dumps(answer)


def bad_request(message: str) -> Result:
    return Result(400, json.dumps({"error_code": "BAD_REQUEST", "message": message}).encode())


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def client_safe(message: str) -> str:
    """The Databricks SDK retries, for minutes, any error whose message contains "Unexpected error"."""
    return message.replace("Unexpected error", "unexpected error")


# MLflow quotes the whole input DataFrame (a multi-line repr) in its schema errors; the client sent
# that input and the log needs one line per event, so the quote goes and MLflow's reason stays.
_PREDICT_DATA = re.compile(r"^Failed to predict data '.*?'\. \nError: ", re.DOTALL)
_SCHEMA_DATA = re.compile(r"Failed to enforce schema of data '.*?' with schema", re.DOTALL)


def without_data(message: str) -> str:
    message = _PREDICT_DATA.sub("", message, count=1)
    return _SCHEMA_DATA.sub("Failed to enforce schema of the input with schema", message)


def one_line(text: str) -> str:
    return " ".join(text.split())


def _crid(item: Prepared) -> str:
    return f", client_request_id={item.client_request_id}" if item.client_request_id else ""


def _with_cause(message: str, stack_trace: str) -> str:
    """MLflow's generic predict-failure message plus the model's own exception line, which says why."""
    lines = stack_trace.strip().splitlines()
    return f"{message} Model error: {lines[-1].strip()}" if lines else message


class FeatureLookups:
    """What a model logged with a feature spec looked up: the keys it did not find (always in the
    reply, as `missing_keys`) and, with ENABLE_FEATURE_TRACING, the feature values (`feature_values`),
    which the inference table then records with the response."""

    def __init__(self, python_model: Any) -> None:
        self.python_model = python_model
        self.take = python_model.take_lookup
        self.tracing = bool(getattr(python_model, "tracing", False))

    @classmethod
    def build(cls, model: Any) -> FeatureLookups | None:
        try:
            python_model = model.unwrap_python_model()
        except Exception:  # not a python_function model of ours: nothing is looked up
            return None
        return cls(python_model) if callable(getattr(python_model, "take_lookup", None)) else None

    def fast_path(self, build: Any) -> Any:
        make = getattr(self.python_model, "fast_path", None)
        return make(build) if make is not None else None

    def extras(self, joined: Any, start: int, count: int) -> dict[str, Any]:
        if joined is None:
            return {}
        rows = joined.missing[start : start + count]
        extra: dict[str, Any] = {"missing_keys": [key for row in rows for key in row]}
        if self.tracing and joined.features is not None:
            values = joined.features.iloc[start : start + count].astype(object)
            extra["feature_values"] = values.where(values.notna(), None).to_dict(orient="records")
        return extra

    def add_to(self, text: str) -> str:
        joined = self.take()
        if joined is None:
            return text
        reply = json.loads(text)
        reply.update(self.extras(joined, 0, len(joined.missing)))
        return json.dumps(reply, cls=NumpyEncoder)


class NumericFastPath:
    """Direct NumPy scoring for scikit-learn (and XGBoost, LightGBM) models with a numeric signature."""

    def __init__(self, predict: Any, columns: list[str], integer: list[bool]) -> None:
        self.predict = predict
        self.columns = columns
        self.integer = integer
        self.index = {c: i for i, c in enumerate(columns)}

    @classmethod
    def build(cls, model: Any) -> NumericFastPath | None:
        meta = model.metadata
        loader = meta.flavors.get("python_function", {}).get("loader_module")
        if loader not in ("mlflow.sklearn", *BOOSTING):
            return None
        schema = meta.get_input_schema()
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return None
        specs = schema.inputs
        if any(not s.required or s.type not in _NUMERIC for s in specs):
            return None
        # Fitted on a DataFrame, scored with an array in the same column order: the warning is moot,
        # and left on it would add a log line per request.
        warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
        if loader in BOOSTING:
            columns = [s.name for s in specs]
            if any(s.type != DataType.double for s in specs):
                return None
            try:
                boosted = BOOSTING[loader](model.get_raw_model(), columns)
            except Exception:  # a model object these checks do not know: MLflow's path serves it
                boosted = None
            return None if boosted is None else cls(boosted, columns, [False] * len(specs))
        predict_fn = model._predict_fn  # the bound method pyfunc itself would call
        raw = model.get_raw_model()
        if getattr(predict_fn, "__self__", None) is not raw:
            predict_fn = raw.predict  # the wrapper's own predict is exactly estimator.predict(data)
        predict_fn = linear_predict(raw, predict_fn, len(specs)) or predict_fn  # see worker/linear.py
        return cls(predict_fn, [s.name for s in specs], [s.type in _INTEGER for s in specs])

    def rows(self, fmt: str, data: Any) -> np.ndarray | None:
        """The request as a float array in signature order, or None if it needs MLflow's path."""
        try:
            matrix = self._split(data) if fmt == "dataframe_split" else self._records(data)
        except (TypeError, KeyError, ValueError, AttributeError):
            return None
        if matrix is None or not matrix:
            return None
        for row in matrix:
            for value, is_int in zip(row, self.integer, strict=True):
                kind = type(value)
                if kind is not int and (is_int or kind is not float):
                    return None
        return np.array(matrix, dtype=np.float64)

    def _split(self, data: dict[str, Any]) -> list[list[Any]] | None:
        columns, rows = data["columns"], data["data"]
        if not set(self.columns) <= set(columns) or len(set(columns)) != len(columns):
            return None
        if any(len(r) != len(columns) for r in rows):
            return None
        if columns == self.columns:
            return rows
        pos = [columns.index(c) for c in self.columns]
        return [[r[p] for p in pos] for r in rows]

    def _records(self, data: list[dict[str, Any]]) -> list[list[Any]]:
        return [[record[c] for c in self.columns] for record in data]


def _xgboost_predict(raw: Any, columns: list[str]) -> Any:
    """What MLflow's xgboost wrapper calls, fed the array its DataFrame would become.

    Only when the model's feature names are the signature's, in order (or it has none): MLflow's
    frame reaches xgboost in signature order with validate_features on, so then the check passes
    and skipping it changes nothing; any other model keeps MLflow's path and its error.
    """
    import xgboost as xgb

    if not isinstance(raw, xgb.Booster | xgb.XGBModel):
        return None
    booster = raw if isinstance(raw, xgb.Booster) else raw.get_booster()
    if booster.feature_names not in (None, columns):
        return None
    if isinstance(raw, xgb.Booster):
        return lambda rows: raw.predict(xgb.DMatrix(rows, feature_names=booster.feature_names))
    return lambda rows: raw.predict(rows, validate_features=False)


def _lightgbm_predict(raw: Any, columns: list[str]) -> Any:
    """LightGBM scores a float64 frame as its float64 values, in column order: the same array.

    Not for models trained on pandas categoricals, whose frames LightGBM re-encodes first, nor for
    an estimator fitted on other column names (there scikit-learn's name check rejects MLflow's frame).
    """
    import lightgbm as lgb

    if not isinstance(raw, lgb.Booster | lgb.LGBMModel):
        return None
    booster = raw if isinstance(raw, lgb.Booster) else raw.booster_
    if booster.pandas_categorical or booster.num_feature() != len(columns):
        return None
    fitted = getattr(raw, "feature_names_in_", None)
    if fitted is not None and list(fitted) != columns:
        return None
    return raw.predict


# pyfunc loader module -> builder of an exactly equivalent NumPy predict (or None: use MLflow's path)
BOOSTING = {"mlflow.xgboost": _xgboost_predict, "mlflow.lightgbm": _lightgbm_predict}
