"""The `jupyter-serving` MLflow deployments target: `mlflow.deployments.get_deploy_client("jupyter-serving")`.

Endpoint methods take the same config dicts as MLflow's `"databricks"` target and return the same
attribute-dicts. MLflow's older *deployment* methods map onto one-entity endpoints: a deployment
named N serving `models:/M/V` is the endpoint N serving M version V. The server is found as
`%load_ext jupyter_serving` finds it (`$JUPYTER_SERVING_URL`/`$JUPYTER_SERVING_TOKEN` first).
MLflow loads this module by entry point; it must hold exactly one `BaseDeploymentClient` subclass.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from typing import Any

from mlflow.deployments import BaseDeploymentClient
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2
from mlflow.utils import AttrDict

from jupyter_serving.notebook.client import (
    Client,
    NotFoundError,
    ServingAPIError,
    ServingClientError,
    frame_to_split,
)

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_ENTITY_KEYS = ("workload_size", "workload_type", "scale_to_zero_enabled", "environment_vars")


def target_help() -> str:
    return """\
Target jupyter-serving: Databricks-style Model Serving run locally (jupyter-serving).

Target URI: "jupyter-serving". The server is $JUPYTER_SERVING_URL (token $JUPYTER_SERVING_TOKEN);
else the Jupyter server the kernel runs under; else an embedded server started for this process.

Endpoints (same config dicts as the "databricks" target):
  client.create_endpoint(name="ep", config={"served_entities": [{"entity_name": "iris-lr",
      "entity_version": "1", "workload_size": "Small", "scale_to_zero_enabled": False}]})
  client.create_endpoint(config={"name": "ep", "config": {...}})       # full request body
  client.update_endpoint(endpoint="ep", config={...})                   # PUT .../config
  client.get_endpoint("ep"); client.list_endpoints(); client.delete_endpoint("ep")
  client.predict(endpoint="ep", inputs={"dataframe_split": {...}})      # or a pandas DataFrame
create/update block until the endpoint is ready and raise MlflowException when the deploy fails.

Deployments (a deployment is a one-entity endpoint of the same name):
  client.create_deployment("ep", "models:/iris-lr/1", config={"workload_size": "Small"})
  config keys: workload_size, workload_type, scale_to_zero_enabled, environment_vars.
"""


def run_local(
    name: str, model_uri: str, flavor: str | None = None, config: dict[str, Any] | None = None
) -> None:
    """Serve `model_uri` as endpoint `name` on a server started for this process, until Ctrl-C
    (SIGINT); then stop the server and its workers and exit normally."""
    from jupyter_serving.notebook.discovery import EmbeddedServer

    server = EmbeddedServer()
    with _sigint_interrupts():
        info = server.start()  # a failed start keeps the log its error names
        try:
            client = JupyterServingDeploymentClient("jupyter-serving", Client.from_server(info))
            client.create_deployment(name, model_uri, flavor, config)
            print(f"Serving {model_uri} at {info.url}serving-endpoints/{name}/invocations", flush=True)
            print(f"Authorization: Bearer {info.token}", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
            assert server.process is not None
            server.process.wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()


@contextlib.contextmanager
def _sigint_interrupts() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt here even in a process that started with SIGINT ignored.

    A non-interactive shell starts its background commands (`make test &` in a script, some CI
    runners) with SIGINT ignored, and Python then keeps it ignored instead of raising
    KeyboardInterrupt: run-local served on after the SIGINT meant to stop it. Only the main thread
    may set handlers (MLflow's CLI calls us there); the previous handler comes back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class JupyterServingDeploymentClient(BaseDeploymentClient):
    """MLflow deployment client for jupyter-serving endpoints."""

    def __init__(self, target_uri: str, client: Client | None = None) -> None:
        super().__init__(target_uri)
        self._client = client

    @property
    def client(self) -> Client:
        if self._client is None:
            try:
                self._client = Client()
            except Exception as exc:
                raise MlflowException(f"Cannot reach a jupyter-serving server: {exc}") from exc
        return self._client

    # -- endpoints (the "databricks" target's API) -------------------------------------------

    def create_endpoint(
        self, name: str | None = None, config: dict[str, Any] | None = None, route_optimized: bool = False
    ) -> AttrDict:
        """Create an endpoint and wait until it is ready. Like the databricks target, `config` is
        either the endpoint config (with `name`) or the whole request body (with its `name`)."""
        config = dict(config or {})
        if "config" in config:  # the full request body, as the databricks target's new style
            body = config
            name = body.pop("name", name)
        else:
            body = {"config": config}
        if not name:
            raise MlflowException("create_endpoint needs a name.", databricks_pb2.INVALID_PARAMETER_VALUE)
        extra = {k: v for k, v in body.items() if k != "config"}
        return self._settle(name, lambda: self.client.create(name, body["config"], **extra))

    def update_endpoint(self, endpoint: str, config: dict[str, Any] | None = None) -> AttrDict:
        """Replace the endpoint's config (served entities, traffic) and wait until it is ready."""
        return self.update_endpoint_config(endpoint, config)

    def update_endpoint_config(self, endpoint: str, config: dict[str, Any] | None = None) -> AttrDict:
        return self._settle(endpoint, lambda: self.client.update_config(endpoint, config or {}))

    def delete_endpoint(self, endpoint: str) -> AttrDict:
        """Delete the endpoint; deleting one that does not exist is not an error."""
        try:
            self.client.delete(endpoint)
        except NotFoundError:
            pass
        except ServingClientError as exc:
            raise _mlflow_error(exc) from exc
        return AttrDict({})

    def list_endpoints(self) -> list[AttrDict]:
        return [AttrDict(e) for e in self._call(self.client.list)]

    def get_endpoint(self, endpoint: str) -> AttrDict:
        return AttrDict(self._call(self.client.get, endpoint))

    def predict(
        self, deployment_name: str | None = None, inputs: Any = None, endpoint: str | None = None
    ) -> AttrDict:
        """Score `inputs` (an invocation payload dict, or a pandas DataFrame) on the endpoint."""
        name = endpoint or deployment_name
        if not name:
            raise MlflowException(
                "predict needs an endpoint (or deployment_name).", databricks_pb2.INVALID_PARAMETER_VALUE
            )
        import pandas as pd

        if isinstance(inputs, pd.DataFrame):
            payload = {"dataframe_split": frame_to_split(inputs)}
        elif isinstance(inputs, dict):
            payload = inputs
        else:
            raise MlflowException(
                "predict inputs must be an invocation payload dict or a pandas DataFrame.",
                databricks_pb2.INVALID_PARAMETER_VALUE,
            )
        return AttrDict(self._call(lambda: self.client.query_raw(name, payload).json()))

    # -- deployments: one-entity endpoints ----------------------------------------------------

    def create_deployment(
        self,
        name: str,
        model_uri: str,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> AttrDict:
        _only_own_endpoint(name, endpoint)
        entity = _entity(model_uri, flavor, config)
        return self._settle(name, lambda: self.client.create(name, {"served_entities": [entity]}))

    def update_deployment(
        self,
        name: str,
        model_uri: str | None = None,
        flavor: str | None = None,
        config: dict[str, Any] | None = None,
        endpoint: str | None = None,
    ) -> AttrDict:
        _only_own_endpoint(name, endpoint)
        current = self.get_endpoint(name)
        entities = (current.get("config") or {}).get("served_entities") or []
        if model_uri is None:
            if len(entities) != 1:
                raise MlflowException(
                    f"Deployment '{name}' serves {len(entities)} entities; "
                    "give model_uri, or use update_endpoint.",
                    databricks_pb2.INVALID_PARAMETER_VALUE,
                )
            model_uri = f"models:/{entities[0]['entity_name']}/{entities[0]['entity_version']}"
        entity = _entity(model_uri, flavor, config)
        return self._settle(name, lambda: self.client.update_config(name, {"served_entities": [entity]}))

    def delete_deployment(
        self, name: str, config: dict[str, Any] | None = None, endpoint: str | None = None
    ) -> None:
        _only_own_endpoint(name, endpoint)
        self.delete_endpoint(name)

    def list_deployments(self, endpoint: str | None = None) -> list[AttrDict]:
        if endpoint is not None:
            return [
                AttrDict(e) for e in self.get_endpoint(endpoint).get("config", {}).get("served_entities", [])
            ]
        return self.list_endpoints()

    def get_deployment(self, name: str, endpoint: str | None = None) -> AttrDict:
        _only_own_endpoint(name, endpoint)
        return self.get_endpoint(name)

    # -- helpers --------------------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ServingClientError as exc:
            raise _mlflow_error(exc) from exc

    def _settle(self, name: str, start: Any) -> AttrDict:
        # MLflow's plugin contract: create/update return once the endpoint can serve.
        self._call(start)
        return AttrDict(self._call(self.client.wait, name))


def _entity(model_uri: str, flavor: str | None, config: dict[str, Any] | None) -> dict[str, Any]:
    if flavor not in (None, "python_function", "pyfunc"):
        raise MlflowException(
            f"jupyter-serving serves models through MLflow's pyfunc flavor; {flavor!r} is not supported.",
            databricks_pb2.INVALID_PARAMETER_VALUE,
        )
    match = _MODEL_URI.match(model_uri)
    if match is None:
        raise MlflowException(
            f"jupyter-serving serves registered models: model_uri must look like models:/<name>/<version>, "
            f"not {model_uri!r}. Register the model first (mlflow.register_model).",
            databricks_pb2.INVALID_PARAMETER_VALUE,
        )
    config = dict(config or {})
    unknown = set(config) - set(_ENTITY_KEYS)
    if unknown:
        raise MlflowException(
            f"Unknown deployment config keys {sorted(unknown)}; use {', '.join(_ENTITY_KEYS)}.",
            databricks_pb2.INVALID_PARAMETER_VALUE,
        )
    return {"entity_name": match["name"], "entity_version": match["version"], **config}


def _only_own_endpoint(name: str, endpoint: str | None) -> None:
    if endpoint is not None and endpoint != name:
        raise MlflowException(
            "A jupyter-serving deployment is the one-entity endpoint of the same name; to serve several "
            "models from one endpoint, use create_endpoint/update_endpoint with served_entities.",
            databricks_pb2.INVALID_PARAMETER_VALUE,
        )


def _mlflow_error(exc: ServingClientError) -> MlflowException:
    code = databricks_pb2.INTERNAL_ERROR
    if isinstance(exc, ServingAPIError):
        # MLflow knows the Databricks error codes by name; anything else stays INTERNAL_ERROR.
        known = exc.error_code in databricks_pb2.ErrorCode.DESCRIPTOR.values_by_name
        code = databricks_pb2.ErrorCode.Value(exc.error_code) if known else code
        return MlflowException(exc.message, code)
    return MlflowException(str(exc), code)
