"""The MLflow models that carry a feature spec: a model that looks its features up, and a spec alone.

Both are ordinary pyfunc models, so `mlflow.pyfunc.load_model` (in a replica, in `score_batch`, in any
notebook) gives one that takes keys: no special serving path. Each keeps the last lookup it made on
the scoring thread, which the worker reads to tell the client which keys were missing (and, with
ENABLE_FEATURE_TRACING, the feature values used).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc.model import PythonModel

from jupyter_serving.features.index import KeyColumnError
from jupyter_serving.features.spec import FeatureSpec, Joined, join_features
from jupyter_serving.features.tables import ServedTables

SPEC_ARTIFACT = "feature_spec"
MODEL_ARTIFACT = "model"
TRACING_ENV = "ENABLE_FEATURE_TRACING"


class _LookupModel(PythonModel):
    """What both models share: the spec, the served tables, the lookup and its last result."""

    spec: FeatureSpec
    tables: ServedTables

    def load_context(self, context: Any) -> None:
        self.spec = FeatureSpec.from_json(Path(context.artifacts[SPEC_ARTIFACT]).read_text())
        self.tables = ServedTables(self.spec.tables)
        self.tables.start()
        self.tracing = os.environ.get(TRACING_ENV, "").strip().lower() in ("1", "true", "yes")
        self._last = threading.local()

    def lookup(self, model_input: Any) -> Joined:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        try:
            joined = join_features(frame, self.spec, self.tables.indexes)
        except KeyColumnError as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        self._last.value = joined
        return joined

    def take_lookup(self) -> Joined | None:
        """The lookup the last `predict` on this thread made (once), for the worker's response."""
        joined, self._last.value = getattr(self._last, "value", None), None
        return joined


class FeatureModel(_LookupModel):
    """A model trained on a training set: looks its features up by key, then calls the model."""

    def load_context(self, context: Any) -> None:
        self.model = mlflow.pyfunc.load_model(context.artifacts[MODEL_ARTIFACT])
        super().load_context(context)

    def predict(self, context, model_input, params=None):  # unannotated: MLflow reads hints
        joined = self.lookup(model_input)
        columns = self.spec.model_input_columns or list(joined.frame.columns)
        absent = [c for c in columns if c not in joined.frame.columns]
        if absent:
            raise MlflowException(
                f"Missing input column(s) {absent}: the model needs them and no feature lookup gives them.",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return self.model.predict(joined.frame[columns], params=params)

    def fast_path(self, build_inner: Any) -> Any:
        """The worker's NumPy fast path over the inner model, with lookups (None if it does not apply)."""
        from jupyter_serving.features.fastpath import FeatureFastPath

        if self.tracing or self.spec.model_input_columns is None:
            return None
        return FeatureFastPath.build(self.spec, self.tables, build_inner(self.model))


class FeatureSpecModel(_LookupModel):
    """A feature spec served alone (a Feature Serving endpoint): answers with the keys' features."""

    def predict(self, context, model_input, params=None):  # unannotated: MLflow reads hints
        joined = self.lookup(model_input)
        keys = [c for c in self.spec.key_columns if c in joined.frame.columns]
        out = pd.concat([joined.frame[keys], joined.features], axis=1)
        out = out.drop(columns=[c for c in self.spec.exclude_columns if c in out.columns]).astype(object)
        return out.where(out.notna(), None)  # a missing key's features are JSON nulls, not NaN
