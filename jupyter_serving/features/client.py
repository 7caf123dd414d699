"""`FeatureEngineeringClient`: feature tables, training sets and feature-aware models, named as on Databricks.

Tables are Delta tables under the local catalog (`catalog.catalog_root`); models are registered in
whatever MLflow registry the notebook points at, the one the serving server loads from.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from jupyter_serving.features.catalog import (
    FeatureTableInfo,
    catalog_root,
    read_info,
    split_name,
    table_path,
    using_root,
    write_info,
)
from jupyter_serving.features.index import FeatureIndex
from jupyter_serving.features.spec import FeatureLookup, FeatureSpec
from jupyter_serving.features.training import TrainingSet, feature_model_signature, spec_model_signature

WRITE_MODES = ("merge", "overwrite")


class FeatureEngineeringClient:
    """Create, write and read feature tables; build training sets; log, score and serve with them."""

    def __init__(self, catalog_root: str | Path | None = None) -> None:
        self._root = Path(catalog_root).expanduser() if catalog_root else None

    @property
    def root(self) -> Path:
        return self._root or catalog_root()

    # ------------------------------------------------------------------ tables
    def create_table(
        self,
        name: str,
        primary_keys: str | list[str],
        df: Any = None,
        *,
        timeseries_column: str | None = None,
        description: str | None = None,
        schema: Any = None,
    ) -> FeatureTableInfo:
        """A new feature table; `df` (pandas or Arrow) is its first data, else `schema` its columns."""
        from deltalake import write_deltalake

        split_name(name)
        keys = [primary_keys] if isinstance(primary_keys, str) else list(primary_keys)
        if timeseries_column and timeseries_column not in keys:
            keys.append(timeseries_column)  # Databricks requires it among the primary keys; we add it
        path = table_path(name, self.root)
        if (path / "_delta_log").exists():
            raise ValueError(f"Feature table {name!r} already exists at {path}.")
        data = _arrow(df) if df is not None else _empty(schema)
        _check_keys(data, keys, name)
        path.mkdir(parents=True, exist_ok=True)
        info = FeatureTableInfo(name, keys, timeseries_column, description)
        write_deltalake(str(path), data, mode="error", name=name, description=description)
        write_info(path, info)
        return info

    def write_table(self, name: str, df: Any, mode: str = "merge") -> int:
        """Upsert `df` by primary key ("merge") or replace the table ("overwrite"); the new version."""
        from deltalake import DeltaTable, write_deltalake

        if mode not in WRITE_MODES:
            raise ValueError(f"mode must be one of {WRITE_MODES}, not {mode!r}.")
        info = read_info(name, self.root)
        data = _arrow(df)
        _check_keys(data, info.primary_keys, name)
        path = str(table_path(name, self.root))
        if mode == "overwrite":
            write_deltalake(path, data, mode="overwrite")
            return DeltaTable(path).version()
        table = DeltaTable(path)
        predicate = " AND ".join(f"t.`{k}` = s.`{k}`" for k in info.primary_keys)
        (
            table.merge(data, predicate=predicate, source_alias="s", target_alias="t")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute()
        )
        return table.version()

    def read_table(self, name: str, version: int | None = None) -> pd.DataFrame:
        from deltalake import DeltaTable

        read_info(name, self.root)
        return DeltaTable(str(table_path(name, self.root)), version=version).to_pandas()

    def get_table(self, name: str) -> FeatureTableInfo:
        return read_info(name, self.root)

    def drop_table(self, name: str) -> None:
        read_info(name, self.root)
        shutil.rmtree(table_path(name, self.root))

    # ---------------------------------------------------------- training sets
    def create_training_set(
        self,
        df: pd.DataFrame,
        feature_lookups: list[FeatureLookup],
        label: str | None,
        exclude_columns: list[str] | None = None,
    ) -> TrainingSet:
        """`df` (keys, timestamps, labels) with each lookup's features joined by `load_df()`."""
        indexes = {n: FeatureIndex.load(n, self.root) for n in {lk.table_name for lk in feature_lookups}}
        return TrainingSet(df, feature_lookups, label, list(exclude_columns or []), indexes)

    # ----------------------------------------------------------------- models
    def log_model(
        self,
        model: Any,
        name: str | None = None,
        *,
        flavor: Any,
        training_set: TrainingSet,
        registered_model_name: str | None = None,
        artifact_path: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """Log `model` (saved with `flavor`, e.g. `mlflow.sklearn`) wrapped so it looks its features up."""
        import mlflow.pyfunc
        from mlflow.models import infer_signature

        from jupyter_serving.features.pyfunc import MODEL_ARTIFACT, SPEC_ARTIFACT, FeatureModel

        frame = training_set.load_df()
        inputs = frame[training_set.spec.model_input_columns]
        with tempfile.TemporaryDirectory() as tmp:
            inner = Path(tmp) / MODEL_ARTIFACT
            inner_sig = infer_signature(inputs, model.predict(inputs))
            flavor.save_model(model, path=str(inner), signature=inner_sig, **kwargs)
            spec_file = Path(tmp) / "feature_spec.json"
            spec_file.write_text(training_set.spec.to_json())
            return mlflow.pyfunc.log_model(
                name=name or artifact_path or "model",
                python_model=FeatureModel(),
                artifacts={MODEL_ARTIFACT: str(inner), SPEC_ARTIFACT: str(spec_file)},
                signature=feature_model_signature(training_set, inner_sig),
                registered_model_name=registered_model_name,
                pip_requirements=_requirements(inner),
            )

    def score_batch(self, model_uri: str, df: pd.DataFrame, result_type: str = "double") -> pd.DataFrame:
        """`df` plus a `prediction` column, scored by the same lookup code a serving replica runs."""
        import mlflow.pyfunc

        with using_root(self._root):
            model = mlflow.pyfunc.load_model(model_uri)
        predictions = model.predict(df)
        out = df.reset_index(drop=True).copy()
        if isinstance(predictions, pd.DataFrame) and predictions.shape[1] == 1:
            predictions = predictions.iloc[:, 0]
        values = predictions.tolist() if hasattr(predictions, "tolist") else list(predictions)
        out["prediction"] = pd.Series(values).astype(result_type) if result_type else values
        return out

    def create_feature_spec(
        self, name: str, features: list[FeatureLookup], exclude_columns: list[str] | None = None
    ) -> Any:
        """Register `features` as an MLflow model `name` that answers with them (Feature Serving)."""
        import mlflow.pyfunc

        from jupyter_serving.features.pyfunc import SPEC_ARTIFACT, FeatureSpecModel

        spec = FeatureSpec(list(features), None, list(exclude_columns or []))
        indexes = {n: FeatureIndex.load(n, self.root) for n in spec.tables}
        spec.table_versions = {n: i.version for n, i in indexes.items()}
        with tempfile.TemporaryDirectory() as tmp:
            spec_file = Path(tmp) / "feature_spec.json"
            spec_file.write_text(spec.to_json())
            return mlflow.pyfunc.log_model(
                name="feature_spec",
                python_model=FeatureSpecModel(),
                artifacts={SPEC_ARTIFACT: str(spec_file)},
                signature=spec_model_signature(spec, indexes),
                registered_model_name=name,
                pip_requirements=["pandas", "pyarrow", "deltalake"],
            )


def _arrow(df: Any) -> Any:
    import pyarrow as pa

    if isinstance(df, pa.Table):
        return df
    if isinstance(df, pd.DataFrame):
        return pa.Table.from_pandas(df, preserve_index=False)
    raise TypeError(f"Expected a pandas DataFrame or a pyarrow Table, got {type(df).__name__}.")


def _empty(schema: Any) -> Any:
    import pyarrow as pa

    if schema is None:
        raise ValueError("create_table needs a df or a schema (a pyarrow.Schema).")
    return pa.Table.from_pylist([], schema=schema)


def _check_keys(data: Any, keys: list[str], name: str) -> None:
    absent = [k for k in keys if k not in data.column_names]
    if absent:
        raise ValueError(f"Primary key column(s) {absent} are not in the data for {name!r}.")
    for k in keys:
        if data[k].null_count:
            raise ValueError(f"Primary key column {k!r} of {name!r} has nulls.")
    distinct = data.group_by(keys).aggregate([]).num_rows if data.num_rows else 0
    if distinct != data.num_rows:
        raise ValueError(f"Primary keys {keys} of {name!r} are not unique in the data.")


def _requirements(model_dir: Path) -> list[str]:
    path = model_dir / "requirements.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    reqs = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    return list(dict.fromkeys([*reqs, "pandas", "pyarrow", "deltalake"]))
