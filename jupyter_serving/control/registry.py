"""Looks served entities up in the MLflow model registry.

MLflow is imported lazily, in a worker thread, the first time a control-plane call needs it:
`import mlflow` costs seconds and must stay off the server's start-up and request paths.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jupyter_serving.errors import InvalidParameterValue, ResourceDoesNotExist
from jupyter_serving.model.config import MODELS_URI, EndpointConfig, ServedEntity

log = logging.getLogger("jupyter_serving")


class ModelRegistry:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="mlflow-registry")
        self._client: Any = None
        self._import_lock = threading.Lock()
        self._signatures: dict[str, dict[str, Any]] = {}  # model URI -> signature ({} if none)

    def warm_up(self) -> None:
        """Import MLflow on a registry thread once the server is up, so the first create skips it."""
        self._executor.submit(self._mlflow)

    async def validate(self, config: EndpointConfig) -> None:
        """Raise a Databricks-style error if any served entity names a model that does not exist."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(self._executor, self._check, e) for e in config.served_entities)
        )

    async def load_uris(self, entities: list[ServedEntity]) -> list[str]:
        """Where each entity's model files are, so workers load them directly: resolving `models:/`
        in a worker would cost it an MLflow client (seconds) on every cold start."""
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(*(loop.run_in_executor(self._executor, self._load_uri, e) for e in entities))
        )

    async def signatures(self, entities: list[ServedEntity]) -> list[dict[str, Any] | None]:
        """Each entity's MLflow signature (`{"inputs": [...], "outputs": [...], "params": [...]}`),
        read from its MLmodel file on a registry thread; None where the model has none."""
        loop = asyncio.get_running_loop()
        return list(
            await asyncio.gather(
                *(loop.run_in_executor(self._executor, self._signature, e) for e in entities)
            )
        )

    async def feature_tables(self, entities: list[ServedEntity]) -> list[str]:
        """The feature tables the entities' models look features up in (their feature specs), so
        the control plane can check the grants on them before serving."""
        loop = asyncio.get_running_loop()
        found = await asyncio.gather(
            *(loop.run_in_executor(self._executor, self._feature_tables, e) for e in entities)
        )
        return list(dict.fromkeys(t for tables in found for t in tables))

    def _feature_tables(self, entity: ServedEntity) -> list[str]:
        try:
            return self._read_feature_tables(entity)
        except Exception:  # a model gone from the registry, or an unreadable spec: it cannot deploy either
            log.warning("could not read the feature spec of %s", entity.entity_name, exc_info=True)
            return []

    def _read_feature_tables(self, entity: ServedEntity) -> list[str]:
        import json

        import yaml

        root = self._load_uri(entity)
        path = os.path.join(root, "MLmodel")
        if not os.path.isfile(path):
            return []
        with open(path) as f:
            flavor = ((yaml.safe_load(f) or {}).get("flavors") or {}).get("python_function") or {}
        spec = ((flavor.get("artifacts") or {}).get("feature_spec") or {}).get("path")
        spec_path = os.path.join(root, spec) if isinstance(spec, str) else ""
        if not os.path.isfile(spec_path):
            return []
        with open(spec_path) as f:
            lookups = json.load(f).get("lookups") or []
        return [
            lk["table_name"]
            for lk in lookups
            if isinstance(lk, dict) and isinstance(lk.get("table_name"), str)
        ]

    def _signature(self, entity: ServedEntity) -> dict[str, Any] | None:
        import json

        import yaml

        cached = self._signatures.get(entity.model_uri)
        if cached is not None:
            return cached or None
        path = os.path.join(self._load_uri(entity), "MLmodel")
        if not os.path.isfile(path):
            return None
        with open(path) as f:
            raw = (yaml.safe_load(f) or {}).get("signature") or {}
        signature = {
            k: json.loads(v)
            for k, v in raw.items()
            if isinstance(v, str) and k in ("inputs", "outputs", "params")
        }
        self._signatures[entity.model_uri] = signature
        return signature or None

    async def registered_models(self) -> list[dict[str, Any]]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._list)

    async def uris(self) -> dict[str, str]:
        """The registry and tracking URIs this server resolves models with, so a client copying a
        version out (`jupyter-serving promote --copy-models`) reads the same registry as the server."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._uris)

    def _uris(self) -> dict[str, str]:
        self._mlflow()
        import mlflow

        return {
            "registry_uri": _absolute(mlflow.get_registry_uri()),
            "tracking_uri": _absolute(mlflow.get_tracking_uri()),
        }

    def _mlflow(self) -> Any:
        # One importer at a time: two threads importing MLflow at once race in protobuf's descriptor pool.
        with self._import_lock:
            if self._client is None:
                from mlflow import MlflowClient

                self._client = MlflowClient()
        return self._client

    def _check(self, entity: ServedEntity) -> None:
        client = self._mlflow()  # first: it holds the import lock while MLflow is imported
        from mlflow.exceptions import MlflowException

        name, version, alias = _parse_target(entity)
        try:
            if alias is not None:
                client.get_model_version_by_alias(name, alias)
            elif version is not None:
                client.get_model_version(name, version)
            else:
                client.get_registered_model(name)
        except MlflowException as exc:
            if (
                exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
                or "not found" in exc.message.lower()
            ):
                what = f"Model '{name}'" + (f" version '{version}'" if version else "")
                what += f" alias '{alias}'" if alias else ""
                raise ResourceDoesNotExist(f"{what} does not exist in the MLflow model registry.") from None
            raise InvalidParameterValue(f"Could not look up model '{name}': {exc.message}") from None

    def _load_uri(self, entity: ServedEntity) -> str:
        client = self._mlflow()
        name, version, alias = _parse_target(entity)
        if alias is not None:
            version = client.get_model_version_by_alias(name, alias).version
        uri = client.get_model_version_download_uri(name, version)
        local = uri.removeprefix("file://")
        return local if os.path.isdir(local) else entity.model_uri

    def _list(self) -> list[dict[str, Any]]:
        client = self._mlflow()
        out = []
        for model in client.search_registered_models(max_results=1000):
            versions = client.search_model_versions(f"name = '{model.name}'", max_results=1000)
            out.append(
                {
                    "name": model.name,
                    "description": model.description or "",
                    "versions": sorted(
                        (
                            {
                                "version": str(v.version),
                                "status": v.status,
                                "creation_timestamp": v.creation_timestamp,
                                "run_id": v.run_id,
                            }
                            for v in versions
                        ),
                        key=lambda v: int(v["version"]),
                    ),
                }
            )
        return out

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _absolute(uri: str) -> str:
    """A relative `sqlite:///x.db` resolved against this server's working directory, so that a
    client in another directory opens the same file."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + os.path.abspath(uri[len(prefix) :])
    return uri


def model_name(entity: ServedEntity) -> str:
    """The registered model a served entity names (`models:/` URIs included)."""
    return _parse_target(entity)[0]


def _parse_target(entity: ServedEntity) -> tuple[str, str | None, str | None]:
    """(registered model name, version, alias) named by a served entity."""
    if not entity.entity_name.startswith(MODELS_URI):
        return entity.entity_name, entity.entity_version, None
    path = entity.entity_name[len(MODELS_URI) :].strip("/")
    if "@" in path:
        name, alias = path.split("@", 1)
        return name, None, alias
    name, _, version = path.partition("/")
    if not (version or entity.entity_version):
        raise InvalidParameterValue(
            f"Model URI '{entity.entity_name}' names no version: use models:/<name>/<version>, "
            "models:/<name>@<alias>, or give entity_version."
        )
    if version and not version.isdigit():
        raise InvalidParameterValue(
            f"Model URI '{entity.entity_name}' must name a version number or an alias."
        )
    return name, version or entity.entity_version, None
