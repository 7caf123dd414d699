"""`--copy-models`: register a source model version in the target's MLflow registry.

The version's files are downloaded from the source registry and registered under the same model
name in the target registry, with the source version's tags and description. Unity Catalog
(`databricks-uc`) uploads the files itself when given a local folder; any other registry (a local
sqlite one, the workspace registry) gets them logged to a run in the target's tracking store first,
so the version's files live where that registry's users can read them.

A copy is tagged with where it came from, so promoting again reuses it instead of registering the
same model once more; the version number on the target is whatever the target registry assigns.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_serving.promotion.workspace import PromotionError

SOURCE_TAG = "jupyter_serving.promoted_from"
EXPERIMENT = "jupyter-serving-promotions"


@dataclass(frozen=True)
class CopiedVersion:
    """One source version and the target version that now holds the same files."""

    name: str
    source_version: str
    target_version: str
    reused: bool  # an earlier promotion had copied it already

    def describe(self) -> str:
        how = "already in" if self.reused else "registered in"
        return f"{self.name} v{self.source_version} {how} the target registry as v{self.target_version}"


def source_marker(name: str, version: str, run_id: str | None) -> str:
    """The tag value that identifies a source version: name, version and the run that logged it."""
    return f"models:/{name}/{version}" + (f" run {run_id}" if run_id else "")


def _not_found(exc: Any) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND") or "not found" in str(exc).lower()


@dataclass
class ModelCopier:
    """Copies versions from one registry to another; `env` is set while the target is written
    (DATABRICKS_HOST/TOKEN for a Databricks registry)."""

    source_registry_uri: str
    source_tracking_uri: str
    target_registry_uri: str
    target_tracking_uri: str
    env: Mapping[str, str] = field(default_factory=dict)
    _done: dict[tuple[str, str], CopiedVersion] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from mlflow import MlflowClient

        self.source = MlflowClient(
            tracking_uri=self.source_tracking_uri, registry_uri=self.source_registry_uri
        )
        with self._target_env():
            self.target = MlflowClient(
                tracking_uri=self.target_tracking_uri, registry_uri=self.target_registry_uri
            )

    @property
    def to_unity_catalog(self) -> bool:
        return self.target_registry_uri.startswith("databricks-uc")

    def resolve(self, name: str, version: str | None, alias: str | None) -> str:
        """The source version number an entity names (an alias resolved in the source registry)."""
        from mlflow.exceptions import MlflowException

        try:
            if alias is not None:
                return str(self.source.get_model_version_by_alias(name, alias).version)
            if version is None:
                raise PromotionError(
                    f"The served entity of model '{name}' names no version.", "INVALID_PARAMETER_VALUE"
                )
            return str(self.source.get_model_version(name, version).version)
        except MlflowException as exc:
            if _not_found(exc):
                what = f"Model '{name}' " + (f"alias '{alias}'" if alias else f"version '{version}'")
                raise PromotionError(
                    f"{what} does not exist in the source registry ({self.source_registry_uri}).",
                    "RESOURCE_DOES_NOT_EXIST",
                ) from None
            raise PromotionError(
                f"Could not read model '{name}' from the source registry: {exc.message}"
            ) from None

    def copy(self, name: str, version: str) -> CopiedVersion:
        """The target version holding source `name` v`version`, registering it on first use."""
        key = (name, version)
        if key not in self._done:
            self._done[key] = self._copy(name, version)
        return self._done[key]

    def _copy(self, name: str, version: str) -> CopiedVersion:
        from mlflow.exceptions import MlflowException

        source_version = self.source.get_model_version(name, version)
        marker = source_marker(name, version, source_version.run_id)
        try:
            with self._target_env():
                existing = self._existing(name, marker)
                if existing is not None:
                    return CopiedVersion(name, version, existing, reused=True)
                self._ensure_registered_model(name)
                target_version = self._register(name, version, source_version, marker)
        except MlflowException as exc:
            raise PromotionError(
                f"Could not register model '{name}' in the target registry ({self.target_registry_uri}): "
                f"{exc.message.splitlines()[0] if exc.message else exc}",
                str(exc.error_code or ""),
            ) from None
        return CopiedVersion(name, version, target_version, reused=False)

    def _existing(self, name: str, marker: str) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            versions = self.target.search_model_versions(f"name = '{name}'")
        except MlflowException as exc:
            if _not_found(exc):
                return None
            raise
        for v in sorted(versions, key=lambda v: int(v.version)):
            tags = v.tags
            if not tags and self.to_unity_catalog:  # UC's search leaves tags out
                tags = self.target.get_model_version(name, v.version).tags
            if (tags or {}).get(SOURCE_TAG) == marker and v.status == "READY":
                return str(v.version)
        return None

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.target.get_registered_model(name)
            return
        except MlflowException as exc:
            if not _not_found(exc):
                raise
        model = self.source.get_registered_model(name)
        self.target.create_registered_model(name, tags=dict(model.tags or {}), description=model.description)

    def _register(self, name: str, version: str, source_version: Any, marker: str) -> str:
        import mlflow.artifacts

        tags = {**(source_version.tags or {}), SOURCE_TAG: marker}
        uri = self.source.get_model_version_download_uri(name, version)
        quiet = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}  # no progress bars in a CLI's output
        with tempfile.TemporaryDirectory(prefix="jupyter-serving-promote-") as tmp, environ(quiet):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=self.source_tracking_uri
            )
            run_id = None
            if self.to_unity_catalog:
                source = local  # UC uploads the folder to the version's own storage location
            else:
                run_id, source = self._log_files(name, version, local)
            created = self.target.create_model_version(
                name, source, run_id=run_id, tags=tags, description=source_version.description
            )
        return str(created.version)

    def _log_files(self, name: str, version: str, local: str) -> tuple[str, str]:
        """Log the model folder to a run of the target's tracking store; returns (run id, its URI)."""
        experiment = (
            EXPERIMENT if not self.target_tracking_uri.startswith("databricks") else f"/Shared/{EXPERIMENT}"
        )
        found = self.target.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            experiment_id = self.target.create_experiment(
                experiment, artifact_location=default_artifact_location(self.target_tracking_uri)
            )
        run = self.target.create_run(experiment_id, run_name=f"promote {name} v{version}")
        self.target.log_artifacts(run.info.run_id, local, artifact_path="model")
        self.target.set_terminated(run.info.run_id)
        return run.info.run_id, f"{run.info.artifact_uri.rstrip('/')}/model"

    def _target_env(self) -> contextlib.AbstractContextManager[None]:
        return environ(self.env)


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block (MLflow reads its settings there),
    then restore each to what it was, unset ones unset again. The tests use it too."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def default_artifact_location(tracking_uri: str) -> str | None:
    """Beside the database for a sqlite store (MLflow's own default is ./mlruns of whatever
    directory the promotion runs in); the store's default otherwise."""
    prefix = "sqlite:///"
    if tracking_uri.startswith(prefix):
        db = Path(tracking_uri[len(prefix) :]).resolve()
        return (db.parent / "mlartifacts").as_uri()
    return None
