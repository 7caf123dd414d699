"""Create or update an endpoint on another workspace so that it serves what a local endpoint serves.

The source is read through our REST API (`Client.get`); the target is written only through
databricks-sdk calls (`serving_endpoints.create`, `update_config`, `patch`, `put_ai_gateway`,
`update_notifications`), so the same code promotes to a second local server and to a Databricks
workspace. Served entity names are always sent explicitly: with `--copy-models` the target may
number a version differently, and the traffic routes (and anyone querying a served entity
directly) must keep working under the same names.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from jupyter_serving.model.config import MODELS_URI
from jupyter_serving.notebook.client import (
    Client,
    NotFoundError,
    ServingAPIError,
    ServingClientError,
    ServingConnectionError,
    failure_message,
    input_config,
)
from jupyter_serving.promotion.models import CopiedVersion, ModelCopier
from jupyter_serving.promotion.workspace import (
    PromotionError,
    TargetAuth,
    is_databricks_host,
    normalize_host,
    sdk_error,
    short_reason,
    workspace_client,
)

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

# Endpoint-level settings carried over at create; on update only those with an update call are.
CREATE_SETTINGS = (
    "tags",
    "description",
    "ai_gateway",
    "route_optimized",
    "email_notifications",
    "budget_policy_id",
    "telemetry_config",
)
ENTITY_KEYS = ("served_entities", "served_models")
Report = Callable[[str], None]


@dataclass
class PromotionOptions:
    copy_models: bool = False
    wait: bool = False
    timeout_s: float = 1200.0
    source_registry_uri: str | None = None
    source_tracking_uri: str | None = None
    target_registry_uri: str | None = None
    target_tracking_uri: str | None = None


@dataclass
class PromotionResult:
    """What a promotion did; `endpoint` is the target's last GET (as JSON)."""

    name: str
    target: str
    action: str  # created | updated | unchanged
    endpoint: dict[str, Any]
    copied: list[CopiedVersion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def state(self) -> dict[str, Any]:
        return dict(self.endpoint.get("state") or {})

    def summary(self) -> str:
        state = self.state
        head = {
            "created": f"Created endpoint '{self.name}' on {self.target}",
            "updated": f"Updated endpoint '{self.name}' on {self.target}",
            "unchanged": f"Endpoint '{self.name}' on {self.target} already serves this config",
        }[self.action]
        lines = [f"{head} ({state.get('ready', '?')}, {state.get('config_update', '?')})."]
        lines += [f"  {c.describe()}" for c in self.copied]
        lines += [f"  {n}" for n in self.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()


# -- the source side (pure once the endpoint JSON is read) ---------------------------------------


def read_source(client: Client, name: str) -> dict[str, Any]:
    try:
        return client.get(name)
    except NotFoundError as exc:
        raise PromotionError(
            f"{exc.message} (source {client.url.rstrip('/')})", exc.error_code or "RESOURCE_DOES_NOT_EXIST"
        ) from None
    except ServingAPIError as exc:
        raise PromotionError(f"{exc.message} (source {client.url.rstrip('/')})", exc.error_code) from None
    except ServingConnectionError as exc:
        reason = short_reason(exc.__cause__ or exc)
        raise PromotionError(
            f"Cannot reach the source server at {client.url.rstrip('/')}: {reason}."
            " Start it (`jupyter-serving serve`) or say where it is: --from URL / $JUPYTER_SERVING_URL.",
            "SOURCE_UNREACHABLE",
        ) from None
    except ServingClientError as exc:
        raise PromotionError(str(exc)) from None


def split_entity_name(entity: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """(model name, version, alias) of a served entity, `models:/name/1` and `models:/name@a` included."""
    key_name, key_version = (
        ("model_name", "model_version") if "model_name" in entity else ("entity_name", "entity_version")
    )
    name, version = str(entity[key_name]), entity.get(key_version)
    if not name.startswith(MODELS_URI):
        return name, (str(version) if version is not None else None), None
    path = name[len(MODELS_URI) :].strip("/")
    if "@" in path:
        model, alias = path.split("@", 1)
        return model, None, alias
    model, _, in_uri = path.partition("/")
    return model, in_uri or (str(version) if version is not None else None), None


def promoted_config(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The deployed config of a source endpoint as a config a workspace accepts: output-only fields
    dropped, `models:/` names split into name + version, every served entity named."""
    config = endpoint.get("config")
    if not config:
        raise PromotionError(
            f"Endpoint '{endpoint.get('name')}' has no deployed config yet; promote it once it is READY.",
            "INVALID_STATE",
        )
    body = input_config(config)
    key = next(k for k in ENTITY_KEYS if k in body)
    entities = []
    for entity in body[key]:
        out = {k: v for k, v in entity.items() if v is not None}
        model, version, alias = split_entity_name(entity)
        if alias is not None:
            out["_alias"] = alias  # resolved (and removed) by `pin_versions`
        name_key, version_key = ("model_name", "model_version") if key == "served_models" else (
            "entity_name", "entity_version"
        )  # fmt: skip
        out[name_key] = model
        if version is not None:
            out[version_key] = version
        entities.append(out)
    body[key] = entities
    return body


def endpoint_settings(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The endpoint-level settings of the source worth carrying over (only those that are set)."""
    out = {k: endpoint[k] for k in CREATE_SETTINGS if endpoint.get(k) not in (None, [], {})}
    if not out.get("route_optimized"):
        out.pop("route_optimized", None)
    return out


def pin_versions(config: dict[str, Any], copier: ModelCopier | None) -> list[CopiedVersion]:
    """Point every entity at a target version: the copy's with `--copy-models`, else the source's."""
    key = next(k for k in ENTITY_KEYS if k in config)
    name_key, version_key = ("model_name", "model_version") if key == "served_models" else (
        "entity_name", "entity_version"
    )  # fmt: skip
    copied: list[CopiedVersion] = []
    for entity in config[key]:
        alias = entity.pop("_alias", None)
        if copier is None:
            if alias is not None:
                raise PromotionError(
                    f"Served entity '{entity.get('name')}' names alias '{alias}', which a workspace "
                    "endpoint cannot serve: pin a version, or promote with --copy-models.",
                    "INVALID_PARAMETER_VALUE",
                )
            continue
        version = copier.resolve(entity[name_key], entity.get(version_key), alias)
        copy = copier.copy(entity[name_key], version)
        if copy not in copied:
            copied.append(copy)
        entity[version_key] = copy.target_version
    return copied


# -- the target side ------------------------------------------------------------------------------


def _routes(config: Mapping[str, Any] | None) -> dict[str, int]:
    routes = ((config or {}).get("traffic_config") or {}).get("routes") or []
    return {
        str(r.get("served_model_name") or r.get("served_entity_name")): int(r.get("traffic_percentage", 0))
        for r in routes
    }


def config_differs(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """True unless the target's deployed config already has every field the promotion sets."""
    if not current:
        return True
    key = next(k for k in ENTITY_KEYS if k in desired)
    have = {e.get("name"): e for e in current.get(key) or []}
    want = {e.get("name"): e for e in desired[key]}
    if set(have) != set(want):
        return True
    for name, entity in want.items():
        for field_name, value in entity.items():
            if str(have[name].get(field_name)) != str(value):
                return True
    if _routes(desired) and _routes(desired) != _routes(current):
        return True
    return capture_differs(desired.get("auto_capture_config"), current.get("auto_capture_config"))


def capture_differs(desired: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> bool:
    if desired is None:
        return False
    current = {k: v for k, v in (current or {}).items() if k != "state"}
    return any(current.get(k) != v for k, v in desired.items())


def tag_patch(desired: list[Mapping[str, Any]], current: list[Mapping[str, Any]]) -> tuple[list, list]:
    """(tags to add or change, keys to delete) that make the target's tags the source's."""
    want = {t["key"]: t.get("value") for t in desired}
    have = {t["key"]: t.get("value") for t in current}
    add = [
        {"key": k, **({"value": v} if v is not None else {})}
        for k, v in want.items()
        if have.get(k, object()) != v
    ]
    delete = [k for k in have if k not in want]
    return add, delete


@dataclass
class Promoter:
    """One promotion: a source client, a target workspace, and what to copy."""

    source: Client
    auth: TargetAuth
    options: PromotionOptions = field(default_factory=PromotionOptions)
    report: Report = print
    workspace: WorkspaceClient | None = None

    @property
    def where(self) -> str:
        """The target's URL (from the profile once the client is built, when only --profile was given)."""
        if self.workspace is not None and self.workspace.config.host:
            return str(self.workspace.config.host)
        return normalize_host(self.auth.host) if self.auth.host else f"profile {self.auth.profile}"

    def run(self, name: str) -> PromotionResult:
        endpoint = read_source(self.source, name)
        config = promoted_config(endpoint)
        settings = endpoint_settings(endpoint)
        w = self.workspace or workspace_client(self.auth)
        self.workspace = w
        copier = self._copier(w) if self.options.copy_models else None
        copied = pin_versions(config, copier)
        from databricks.sdk.errors import DatabricksError, ResourceDoesNotExist

        notes: list[str] = []
        try:
            try:
                current = w.serving_endpoints.get(name).as_dict()
            except ResourceDoesNotExist:
                current = None
            if current is None:
                self._create(w, name, config, settings)
                action = "created"
            else:
                action = self._update(w, name, config, settings, current, notes)
            final = w.serving_endpoints.get(name).as_dict()
            if self.options.wait and action != "unchanged":
                final = self._wait(w, name)
        except DatabricksError as exc:
            error = sdk_error(exc, self.where)
            if error.error_code == "RESOURCE_DOES_NOT_EXIST" and not self.options.copy_models:
                error = PromotionError(
                    f"{error.message}; --copy-models registers the served versions there first.",
                    error.error_code,
                )
            raise error from None
        if not self.options.wait and action != "unchanged":
            notes.append("Not waiting for the target to deploy it (--wait waits until it is READY).")
        return PromotionResult(name, self.where, action, final, copied, notes)

    # -- create / update ----------------------------------------------------------------------

    def _create(
        self, w: WorkspaceClient, name: str, config: dict[str, Any], settings: dict[str, Any]
    ) -> None:
        from databricks.sdk.service import serving

        kwargs: dict[str, Any] = {
            "config": serving.EndpointCoreConfigInput.from_dict({"name": name, **config})
        }
        if "tags" in settings:
            kwargs["tags"] = [serving.EndpointTag.from_dict(t) for t in settings["tags"]]
        for key, cls in (
            ("ai_gateway", serving.AiGatewayConfig),
            ("email_notifications", serving.EmailNotifications),
            ("telemetry_config", serving.TelemetryConfig),
        ):
            if key in settings:
                kwargs[key] = cls.from_dict(settings[key])
        for key in ("description", "route_optimized", "budget_policy_id"):
            if key in settings:
                kwargs[key] = settings[key]
        w.serving_endpoints.create(name, **kwargs)
        self.report(f"Creating endpoint '{name}' on {self.where}.")

    def _update(
        self,
        w: WorkspaceClient,
        name: str,
        config: dict[str, Any],
        settings: dict[str, Any],
        current: dict[str, Any],
        notes: list[str],
    ) -> str:
        from databricks.sdk.service import serving

        changed = False
        deployed = current.get("config")
        if config_differs(config, deployed):
            body = dict(config)
            if not capture_differs(
                body.get("auto_capture_config"), (deployed or {}).get("auto_capture_config")
            ):
                body.pop("auto_capture_config", None)  # unchanged: leave the table as it is
            inputs = serving.EndpointCoreConfigInput.from_dict({"name": name, **body})
            w.serving_endpoints.update_config(
                name,
                served_entities=inputs.served_entities,
                served_models=inputs.served_models,
                traffic_config=inputs.traffic_config,
                auto_capture_config=inputs.auto_capture_config,
            )
            self.report(f"Updating the config of endpoint '{name}' on {self.where}.")
            changed = True
        add, delete = tag_patch(settings.get("tags") or [], current.get("tags") or [])
        if add or delete:
            w.serving_endpoints.patch(
                name,
                add_tags=[serving.EndpointTag.from_dict(t) for t in add] or None,
                delete_tags=delete or None,
            )
            changed = True
        if "ai_gateway" in settings and settings["ai_gateway"] != current.get("ai_gateway"):
            gateway = serving.AiGatewayConfig.from_dict(settings["ai_gateway"])
            w.serving_endpoints.put_ai_gateway(
                name,
                fallback_config=gateway.fallback_config,
                guardrails=gateway.guardrails,
                inference_table_config=gateway.inference_table_config,
                rate_limits=gateway.rate_limits,
                usage_tracking_config=gateway.usage_tracking_config,
            )
            changed = True
        notifications = settings.get("email_notifications")
        if notifications is not None and notifications != current.get("email_notifications"):
            w.serving_endpoints.update_notifications(
                name, email_notifications=serving.EmailNotifications.from_dict(notifications)
            )
            changed = True
        if bool(settings.get("route_optimized")) != bool(current.get("route_optimized")):
            notes.append("route_optimized differs on the target; it is fixed when an endpoint is created.")
        return "updated" if changed else "unchanged"

    def _wait(self, w: WorkspaceClient, name: str) -> dict[str, Any]:
        """Poll like the SDK's waiter (config_update only), faster at first: local deploys take seconds."""
        deadline = time.monotonic() + self.options.timeout_s
        interval = 0.25
        while True:
            endpoint = w.serving_endpoints.get(name).as_dict()
            status = (endpoint.get("state") or {}).get("config_update")
            if status == "NOT_UPDATING":
                return endpoint
            if status in ("UPDATE_FAILED", "UPDATE_CANCELED"):
                reason = failure_message(endpoint) or "no deployment message was given"
                raise PromotionError(
                    f"Endpoint '{name}' on {self.where} ended in {status}: {reason}", "UPDATE_FAILED"
                )
            if time.monotonic() > deadline:
                raise PromotionError(
                    f"Endpoint '{name}' on {self.where} was still {status} after "
                    f"{timedelta(seconds=self.options.timeout_s)}; its update goes on there.",
                    "DEADLINE_EXCEEDED",
                )
            time.sleep(interval)
            interval = min(interval * 1.5, 5.0)

    # -- registries ---------------------------------------------------------------------------

    def _copier(self, w: WorkspaceClient) -> ModelCopier:
        source_registry, source_tracking = self._source_uris()
        target_registry, target_tracking, env = self._target_uris(w)
        self.report(f"Copying model versions from {source_registry} to {target_registry}.")
        return ModelCopier(source_registry, source_tracking, target_registry, target_tracking, env)

    def _source_uris(self) -> tuple[str, str]:
        """--source-registry-uri, else what the source server uses, else this process's MLflow default."""
        registry, tracking = self.options.source_registry_uri, self.options.source_tracking_uri
        if registry is None or tracking is None:
            try:
                uris = self.source.registry_uris()
            except ServingClientError:
                uris = {}
            default = os.environ.get("MLFLOW_REGISTRY_URI") or os.environ.get("MLFLOW_TRACKING_URI")
            registry = registry or uris.get("registry_uri") or default
            tracking = tracking or uris.get("tracking_uri") or registry
        if not registry:
            raise PromotionError(
                "Cannot tell which MLflow registry the source server uses: pass --source-registry-uri.",
                "INVALID_PARAMETER_VALUE",
            )
        return registry, tracking or registry

    def _target_uris(self, w: WorkspaceClient) -> tuple[str, str, dict[str, str]]:
        """--target-registry-uri; else Unity Catalog for a Databricks workspace, or what a
        jupyter-serving target reports it uses."""
        registry = self.options.target_registry_uri
        if registry is None and is_databricks_host(self.where):
            registry = f"databricks-uc://{self.auth.profile}" if self.auth.profile else "databricks-uc"
        reported: dict[str, Any] = {}
        if registry is None:
            try:
                reported = w.api_client.do("GET", "/api/2.0/jupyter-serving/registered-models")  # type: ignore[assignment]
            except Exception:  # not a jupyter-serving server, or not allowed to ask
                reported = {}
            registry = reported.get("registry_uri")
        if not registry:
            raise PromotionError(
                f"Cannot tell which MLflow registry {self.where} uses: pass --target-registry-uri.",
                "INVALID_PARAMETER_VALUE",
            )
        tracking = self.options.target_tracking_uri or reported.get("tracking_uri")
        if tracking is None:
            tracking = "databricks" if registry.startswith("databricks") else registry
        env: dict[str, str] = {}
        token = self.auth.resolved_token()
        if registry.startswith("databricks") and "://" not in registry:
            # MLflow's Databricks stores read the workspace from the environment.
            env["DATABRICKS_HOST"] = self.where
            if token:
                env["DATABRICKS_TOKEN"] = token
        return str(registry), str(tracking), env


def promote(
    source: Client,
    name: str,
    auth: TargetAuth,
    options: PromotionOptions | None = None,
    report: Report = print,
) -> PromotionResult:
    """Create or update endpoint `name` on the target so it serves the source's deployed config."""
    return Promoter(source, auth, options or PromotionOptions(), report).run(name)
