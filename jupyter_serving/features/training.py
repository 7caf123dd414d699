"""Training sets (a DataFrame of keys and labels with features joined) and the signatures of the models
logged from them: the input a client sends is the training DataFrame's, keys in, features out.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from jupyter_serving.features.index import FeatureIndex
from jupyter_serving.features.spec import FeatureLookup, FeatureSpec, join_features


class TrainingSet:
    """`df` joined with the features of `feature_lookups` at the table versions read when created."""

    def __init__(
        self,
        df: pd.DataFrame,
        feature_lookups: list[FeatureLookup],
        label: str | None,
        exclude_columns: list[str],
        indexes: dict[str, FeatureIndex],
    ) -> None:
        self.df = df.reset_index(drop=True)
        self.label = label
        self.exclude_columns = exclude_columns
        self._indexes = indexes
        spec = FeatureSpec(list(feature_lookups), None, exclude_columns)
        spec.table_versions = {n: i.version for n, i in indexes.items()}
        joined = join_features(self.df, spec, indexes)
        columns = [c for c in joined.frame.columns if c not in exclude_columns]
        self._frame = joined.frame[columns]
        spec.model_input_columns = [c for c in columns if c != label]
        self.spec = spec

    def load_df(self) -> pd.DataFrame:
        """The training DataFrame: input columns, looked-up features, the label; excluded ones dropped."""
        return self._frame.copy()

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self._frame.columns if c not in self.df.columns]

    @property
    def client_columns(self) -> list[str]:
        """What a scoring request carries: the training DataFrame's columns but the label."""
        return [c for c in self.df.columns if c != self.label]


def feature_model_signature(training_set: TrainingSet, inner: Any) -> Any:
    """Keys (and the other columns the model takes from the client) in; the model's output out.

    A timestamp lookup key, or a column the model does not use, is optional: without it a request
    gets the latest features.
    """
    from mlflow.models import ModelSignature, infer_signature

    spec = training_set.spec
    inputs = training_set.df[training_set.client_columns]
    needed = set(spec.key_columns) | set(spec.model_input_columns or [])
    schema = infer_signature(inputs).inputs
    cols = [_with_required(c, c.name in needed) for c in schema.inputs]
    from mlflow.types import Schema

    return ModelSignature(Schema(cols), inner.outputs)


def spec_model_signature(spec: FeatureSpec, indexes: dict[str, FeatureIndex]) -> Any:
    """Keys in, keys and features out, inferred from one row of each table."""
    from mlflow.models import infer_signature

    sample: dict[str, Any] = {}
    for lookup in spec.lookups:
        index = indexes[lookup.table_name]
        if index.table.num_rows == 0:
            return None
        row = index.table.slice(0, 1).to_pylist()[0]
        sample.update({col: [row[key]] for col, key in zip(lookup.keys, index.keys, strict=True)})
    frame = pd.DataFrame(sample)
    joined = join_features(frame, spec, indexes)
    output = pd.concat([frame, joined.features], axis=1)
    return infer_signature(frame, output)


def _with_required(col: Any, required: bool) -> Any:
    from mlflow.types import ColSpec

    return ColSpec(col.type, col.name, required=required)
