"""Databricks' endpoint configuration schema: parsing, validation and naming defaults.

Pure functions from request JSON to frozen dataclasses. Every rule a client can trip raises
`InvalidParameterValue` with a message naming the field, so handlers stay thin and the rules
are unit-testable without a server.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from jupyter_serving.errors import InvalidParameterValue
from jupyter_serving.model import endpoint_fields

# Always used with `fullmatch`: `$` also matches before a trailing newline, and a name such as
# "main\n" then reaches folder names and Delta table paths.
NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
CAPTURE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
MAX_SERVED_NAME = 63
# Upper bounds a single served entity may ask for: more would make the server allocate per-slot
# state until it runs out of memory (4e18 was accepted once). Each replica runs one worker process.
MAX_PROVISIONED_CONCURRENCY = 1024
MAX_VERSION_DIGITS = 18
MAX_TAGS = 100
MAX_TAG_KEY = 255
MAX_TAG_VALUE = 1024
MAX_DESCRIPTION = 4096
MAX_ENDPOINT_NAME = 63
MAX_SERVED_ENTITIES = 15
RESERVED_PREFIX = "databricks-"
WORKLOAD_SIZES = {"small": ("Small", 4, 4), "medium": ("Medium", 8, 16), "large": ("Large", 16, 64)}
# Exactly the SDK's `ServingModelWorkloadType` enum: a value outside it reads back as None in the SDK.
WORKLOAD_TYPES = (
    "CPU",
    "CPU_MEDIUM",
    "CPU_LARGE",
    "GPU_SMALL",
    "GPU_MEDIUM",
    "GPU_LARGE",
    "GPU_XLARGE",
    "GPU_XLARGE_8",
    "MULTIGPU_MEDIUM",
)
_WORKLOAD_ALIASES = {"GPU_LARGE_2": "GPU_XLARGE", "GPU_LARGE_4": "MULTIGPU_MEDIUM"}
MODELS_URI = "models:/"
# Fields of a served entity we apply; the SDK's others are refused by name (`_OUT_OF_SCOPE`).
_ENTITY_FIELDS = {
    "burst_scaling_enabled",
    "name",
    "entity_name",
    "entity_version",
    "model_name",
    "model_version",
    "workload_size",
    "workload_type",
    "scale_to_zero_enabled",
    "min_provisioned_concurrency",
    "max_provisioned_concurrency",
    "environment_vars",
}
_OUT_OF_SCOPE = {
    "external_model": "external models (OpenAI, Anthropic, ...) are proxied by Databricks, not served here",
    "instance_profile_arn": "AWS instance profiles do not exist on a local server",
    "min_provisioned_throughput": "provisioned throughput is for foundation-model endpoints",
    "max_provisioned_throughput": "provisioned throughput is for foundation-model endpoints",
    "provisioned_model_units": "provisioned throughput is for foundation-model endpoints",
}
_CONFIG_FIELDS = {"name", "served_entities", "served_models", "traffic_config", "auto_capture_config"}
CREATE_FIELDS = {
    "name",
    "config",
    "tags",
    "description",
    "route_optimized",
    "rate_limits",
    "ai_gateway",
    "email_notifications",
    "budget_policy_id",
    "telemetry_config",
}


@dataclass(frozen=True)
class ServedEntity:
    """One model (version) served by an endpoint, as the user configured it."""

    name: str
    entity_name: str
    entity_version: str | None
    workload_type: str = "CPU"
    workload_size: str | None = "Small"
    min_provisioned_concurrency: int | None = None
    max_provisioned_concurrency: int | None = None
    scale_to_zero_enabled: bool = False
    environment_vars: dict[str, str] = field(default_factory=dict)
    legacy: bool = False
    burst_scaling_enabled: bool | None = None

    @property
    def model_uri(self) -> str:
        if not self.entity_name.startswith(MODELS_URI):
            return f"{MODELS_URI}{self.entity_name}/{self.entity_version}"
        path = self.entity_name[len(MODELS_URI) :].strip("/")
        if "/" not in path and "@" not in path and self.entity_version:
            return f"{MODELS_URI}{path}/{self.entity_version}"
        return self.entity_name

    @property
    def concurrency_range(self) -> tuple[int, int]:
        """Provisioned concurrency bounds; scale-to-zero lowers the floor to 0 as Databricks does."""
        if self.workload_size is not None:
            _, low, high = WORKLOAD_SIZES[self.workload_size.lower()]
        else:
            low, high = self.min_provisioned_concurrency or 0, self.max_provisioned_concurrency or 0
        return (0 if self.scale_to_zero_enabled else low), high

    @property
    def runtime_key(self) -> str:
        """Identity of what a replica runs: equal keys across config versions reuse replicas."""
        spec = [self.name, self.model_uri, self.workload_type, sorted(self.environment_vars.items())]
        return hashlib.sha1(json.dumps(spec).encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.legacy:
            out["model_name"], out["model_version"] = self.entity_name, self.entity_version
        else:
            out["entity_name"] = self.entity_name
            if self.entity_version is not None:
                out["entity_version"] = self.entity_version
        if self.workload_size is not None:
            out["workload_size"] = self.workload_size
        else:
            out["min_provisioned_concurrency"] = self.min_provisioned_concurrency
            out["max_provisioned_concurrency"] = self.max_provisioned_concurrency
        out["workload_type"] = self.workload_type
        out["scale_to_zero_enabled"] = self.scale_to_zero_enabled
        if self.environment_vars:
            out["environment_vars"] = dict(self.environment_vars)
        if self.burst_scaling_enabled is not None:
            out["burst_scaling_enabled"] = self.burst_scaling_enabled
        return out


@dataclass(frozen=True)
class Route:
    served_model_name: str
    traffic_percentage: int

    def to_json(self) -> dict[str, Any]:
        return {"served_model_name": self.served_model_name, "traffic_percentage": self.traffic_percentage}


@dataclass(frozen=True)
class EndpointConfig:
    """A full endpoint config (the `config` of create, or the body of PUT .../config)."""

    served_entities: tuple[ServedEntity, ...]
    routes: tuple[Route, ...]
    auto_capture_config: dict[str, Any] | None = None

    @property
    def legacy(self) -> bool:
        return bool(self.served_entities) and self.served_entities[0].legacy

    @property
    def entities_key(self) -> str:
        """The one place that knows legacy configs say `served_models` and others `served_entities`."""
        return "served_models" if self.legacy else "served_entities"

    def entity(self, name: str) -> ServedEntity | None:
        return next((e for e in self.served_entities if e.name == name), None)

    def to_json(self) -> dict[str, Any]:
        """The stored (and echoed) form; `parse_config(to_json())` round-trips."""
        out: dict[str, Any] = {
            self.entities_key: [e.to_json() for e in self.served_entities],
            "traffic_config": {"routes": [r.to_json() for r in self.routes]},
        }
        if self.auto_capture_config is not None:
            out["auto_capture_config"] = self.auto_capture_config
        return out


@dataclass(frozen=True)
class CreateRequest:
    name: str
    config: EndpointConfig
    tags: tuple[dict[str, str], ...] = ()
    description: str | None = None
    route_optimized: bool = False
    ai_gateway: dict[str, Any] | None = None
    email_notifications: dict[str, Any] | None = None
    budget_policy_id: str | None = None
    telemetry_config: dict[str, Any] | None = None

    def record_fields(self) -> dict[str, Any]:
        """The endpoint-level settings, as `EndpointRecord` stores them."""
        return {
            "route_optimized": self.route_optimized,
            "ai_gateway": self.ai_gateway,
            "email_notifications": self.email_notifications,
            "budget_policy_id": self.budget_policy_id,
            "telemetry_config": self.telemetry_config,
        }


def validate_endpoint_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidParameterValue("Endpoint name must be a non-empty string.")
    if len(name) > MAX_ENDPOINT_NAME:
        raise InvalidParameterValue(
            f"Endpoint name '{name[:80]}' is too long: at most {MAX_ENDPOINT_NAME} characters are allowed."
        )
    if not NAME_RE.fullmatch(name):
        raise InvalidParameterValue(
            f"Endpoint name '{name}' is invalid: an endpoint name can consist of alphanumeric "
            "characters, dashes, and underscores."
        )
    if name.lower().startswith(RESERVED_PREFIX):
        raise InvalidParameterValue(
            f"Endpoint name '{name}' is invalid: the '{RESERVED_PREFIX}' prefix is reserved for "
            "Databricks preconfigured endpoints."
        )
    return name


def parse_create(body: Any) -> CreateRequest:
    """Every field of the SDK's create input is applied, or refused by name."""
    if not isinstance(body, dict):
        raise InvalidParameterValue("The request body must be a JSON object.")
    endpoint_fields.refuse_unknown(body, CREATE_FIELDS, "")
    name = validate_endpoint_name(body.get("name"))
    if not isinstance(body.get("config"), dict):
        raise InvalidParameterValue("Field 'config' is required: it lists the served entities to deploy.")
    config = parse_config(body["config"])
    ai_gateway = (
        endpoint_fields.parse_ai_gateway(body["ai_gateway"]) if body.get("ai_gateway") is not None else None
    )
    legacy_limits = endpoint_fields.parse_rate_limits(body.get("rate_limits"), "rate_limits", legacy=True)
    if legacy_limits:  # the legacy field is the AI Gateway's rate limits in an older shape
        if ai_gateway and ai_gateway.get("rate_limits"):
            raise InvalidParameterValue(
                "Give rate limits in 'ai_gateway.rate_limits' or 'rate_limits', not both."
            )
        ai_gateway = {**(ai_gateway or {}), "rate_limits": legacy_limits}
    if ai_gateway and ai_gateway.get("inference_table_config") is not None:
        if config.auto_capture_config is not None:
            raise InvalidParameterValue(
                "Give the inference table in 'config.auto_capture_config' or "
                "'ai_gateway.inference_table_config', not both."
            )
        config = replace(config, auto_capture_config=ai_gateway["inference_table_config"])
    notifications = body.get("email_notifications")
    telemetry = body.get("telemetry_config")
    return CreateRequest(
        name,
        config,
        parse_tags(endpoint_fields.parse_tags(body.get("tags")), "tags"),
        _parse_description(body.get("description")),
        endpoint_fields.parse_bool(body.get("route_optimized"), "route_optimized"),
        ai_gateway,
        endpoint_fields.parse_email_notifications(notifications) if notifications is not None else None,
        endpoint_fields.parse_optional_str(body.get("budget_policy_id"), "budget_policy_id"),
        endpoint_fields.parse_telemetry_config(telemetry) if telemetry is not None else None,
    )


def _parse_description(description: Any) -> str | None:
    if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
        raise InvalidParameterValue(
            f"Field 'description' must be a string of at most {MAX_DESCRIPTION} characters."
        )
    return description


def parse_tags(tags: Any, where: str) -> tuple[dict[str, str], ...]:
    """Tags as Databricks takes them: string keys, optional string values, within size limits."""
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise InvalidParameterValue(
            f'Field \'{where}\' must be a list of at most {MAX_TAGS} {{"key", "value"}} objects.'
        )
    for i, tag in enumerate(tags):
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str) or not tag["key"]:
            raise InvalidParameterValue(f"{where}[{i}].key must be a non-empty string.")
        if len(tag["key"]) > MAX_TAG_KEY or not _printable(tag["key"]):
            raise InvalidParameterValue(
                f"{where}[{i}].key must be at most {MAX_TAG_KEY} printable characters."
            )
        value = tag.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > MAX_TAG_VALUE):
            raise InvalidParameterValue(
                f"{where}[{i}].value must be a string of at most {MAX_TAG_VALUE} characters."
            )
    return tuple(tags)


def _env_safe(text: str) -> bool:
    """What a process environment can hold: no NUL, valid UTF-8."""
    return "\x00" not in text and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _printable(text: str) -> bool:
    return text.isprintable() and not any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def parse_config(cfg: Any) -> EndpointConfig:
    if not isinstance(cfg, dict):
        raise InvalidParameterValue("The endpoint config must be a JSON object.")
    endpoint_fields.refuse_unknown(cfg, _CONFIG_FIELDS, "config")
    if cfg.get("served_entities") and cfg.get("served_models"):
        raise InvalidParameterValue("Specify either 'served_entities' or 'served_models', not both.")
    legacy = not cfg.get("served_entities") and bool(cfg.get("served_models"))
    raw = cfg.get("served_models") if legacy else cfg.get("served_entities")
    if not isinstance(raw, list) or not raw:
        raise InvalidParameterValue(
            "The config must contain at least one served entity in 'served_entities'."
        )
    if len(raw) > MAX_SERVED_ENTITIES:
        raise InvalidParameterValue(
            f"An endpoint can serve at most {MAX_SERVED_ENTITIES} entities; got {len(raw)}."
        )
    entities = tuple(parse_entity(item, legacy, i) for i, item in enumerate(raw))
    seen: set[str] = set()
    for e in entities:
        if e.name in seen:
            raise InvalidParameterValue(
                f"Served entity name '{e.name}' is used more than once in the config."
            )
        seen.add(e.name)
    routes = parse_routes(cfg.get("traffic_config"), entities)
    return EndpointConfig(entities, routes, parse_capture(cfg.get("auto_capture_config")))


def parse_capture(raw: Any) -> dict[str, Any] | None:
    """auto_capture_config; its names become folders, so they are held to a strict alphabet."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidParameterValue("Field 'auto_capture_config' must be a JSON object.")
    endpoint_fields.refuse_unknown(
        {k: v for k, v in raw.items() if k != "state"},  # `state` is ours, on output: a GET sent back
        ("catalog_name", "schema_name", "table_name_prefix", "enabled"),
        "auto_capture_config",
    )
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidParameterValue("auto_capture_config.enabled must be true or false.")
    out: dict[str, Any] = {"enabled": enabled}
    for key in ("catalog_name", "schema_name", "table_name_prefix"):
        value = raw.get(key)
        if value is None:
            if key != "table_name_prefix" and enabled:
                raise InvalidParameterValue(
                    f"auto_capture_config.{key} is required to enable the inference table."
                )
            continue
        if not isinstance(value, str) or not CAPTURE_NAME_RE.fullmatch(value):
            raise InvalidParameterValue(
                f"auto_capture_config.{key} '{value}' is invalid: use letters, digits, '_' and '-'."
            )
        out[key] = value
    return out


def parse_entity(item: Any, legacy: bool, index: int) -> ServedEntity:
    where = f"served_{'models' if legacy else 'entities'}[{index}]"
    if not isinstance(item, dict):
        raise InvalidParameterValue(f"{where} must be a JSON object.")
    _refuse_entity_fields(item, where, legacy)
    name_key, version_key = ("model_name", "model_version") if legacy else ("entity_name", "entity_version")
    entity_name = item.get(name_key)
    if not isinstance(entity_name, str) or not entity_name.strip():
        raise InvalidParameterValue(f"{where}.{name_key} is required: the registered model to serve.")
    version = _parse_version(item.get(version_key), entity_name, f"{where}.{version_key}")
    size, low, high = _parse_sizing(item, where)
    workload_type = item.get("workload_type")
    if workload_type is None:
        workload_type = "CPU"
    if not isinstance(workload_type, str) or workload_type not in WORKLOAD_TYPES:
        hint = (
            f" ('{_WORKLOAD_ALIASES[workload_type]}' has as many GPUs)"
            if isinstance(workload_type, str) and workload_type in _WORKLOAD_ALIASES
            else ""
        )
        raise InvalidParameterValue(
            f"{where}.workload_type '{workload_type}' is invalid; "
            f"use one of {', '.join(WORKLOAD_TYPES)}{hint}."
        )
    burst = item.get("burst_scaling_enabled")
    if burst is not None and not isinstance(burst, bool):
        raise InvalidParameterValue(f"{where}.burst_scaling_enabled must be true or false.")
    env = item.get("environment_vars") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and _env_safe(k) and _env_safe(v)
        for k, v in env.items()
    ):
        raise InvalidParameterValue(
            f"{where}.environment_vars must map strings to strings (names without '='); NUL and unpaired "
            "surrogates cannot be in a process environment."
        )
    scale_to_zero = item.get("scale_to_zero_enabled", False)
    if not isinstance(scale_to_zero, bool):
        raise InvalidParameterValue(f"{where}.scale_to_zero_enabled must be true or false.")
    name = item.get("name") or default_served_name(entity_name, version)
    if not isinstance(name, str) or len(name) > MAX_SERVED_NAME or not NAME_RE.fullmatch(name):
        raise InvalidParameterValue(
            f"{where}.name '{name}' is invalid: served entity names can consist of alphanumeric "
            "characters, dashes, and underscores."
        )
    return ServedEntity(
        name, entity_name, version, workload_type, size, low, high, scale_to_zero, dict(env), legacy, burst
    )


def _refuse_entity_fields(item: dict[str, Any], where: str, legacy: bool) -> None:
    """What a local server cannot apply is refused by name; a field of the other form is a typo."""
    for key, why in _OUT_OF_SCOPE.items():
        if item.get(key) is not None:
            raise InvalidParameterValue(f"{where}.{key} is not supported by this server: {why}.")
    other = {"entity_name", "entity_version"} if legacy else {"model_name", "model_version"}
    known = (_ENTITY_FIELDS - other) | set(_OUT_OF_SCOPE)
    endpoint_fields.refuse_unknown(item, known, where)


def default_served_name(entity_name: str, version: str | None) -> str:
    """`<model>-<version>`, with the last dotted segment of a three-level UC name as the model."""
    if entity_name.startswith(MODELS_URI):
        path = entity_name[len(MODELS_URI) :].strip("/")
        model, _, ref = path.partition("/") if "/" in path else path.partition("@")
        entity_name, version = model, ref or version
    base = entity_name.rsplit(".", 1)[-1]
    name = f"{base}-{version}" if version else base
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def parse_routes(traffic: Any, entities: tuple[ServedEntity, ...]) -> tuple[Route, ...]:
    if traffic is None or traffic == {}:
        if len(entities) == 1:
            return (Route(entities[0].name, 100),)
        raise InvalidParameterValue(
            "traffic_config is required when an endpoint serves more than one entity: give each "
            "served entity a traffic_percentage; the percentages must sum to 100."
        )
    if isinstance(traffic, dict):
        endpoint_fields.refuse_unknown(traffic, ("routes",), "traffic_config")
    routes_raw = traffic.get("routes") if isinstance(traffic, dict) else None
    if not isinstance(routes_raw, list) or not routes_raw:
        raise InvalidParameterValue("traffic_config.routes must be a non-empty list of routes.")
    names = {e.name for e in entities}
    routes: list[Route] = []
    for i, raw in enumerate(routes_raw):
        if not isinstance(raw, dict):
            raise InvalidParameterValue(f"traffic_config.routes[{i}] must be a JSON object.")
        endpoint_fields.refuse_unknown(
            raw,
            ("served_model_name", "served_entity_name", "traffic_percentage"),
            f"traffic_config.routes[{i}]",
        )
        named = [raw.get(k) for k in ("served_model_name", "served_entity_name")]
        if any(v is not None and not isinstance(v, str) for v in named):
            raise InvalidParameterValue(
                f"traffic_config.routes[{i}].served_model_name must be a served entity's name."
            )
        target = next((v for v in named if v), None)
        if target not in names:
            raise InvalidParameterValue(
                f"traffic_config.routes[{i}] names served entity '{target}', which is not in the config; "
                f"served entities are: {', '.join(sorted(names))}."
            )
        if any(r.served_model_name == target for r in routes):
            raise InvalidParameterValue(f"traffic_config has more than one route for '{target}'.")
        routes.append(Route(target, _parse_percentage(raw.get("traffic_percentage"), i)))
    total = sum(r.traffic_percentage for r in routes)
    if total != 100:
        raise InvalidParameterValue(
            f"The traffic_percentage values of traffic_config.routes must sum to 100; they sum to {total}."
        )
    return tuple(routes)


def _parse_percentage(value: Any, index: int) -> int:
    where = f"traffic_config.routes[{index}].traffic_percentage"
    if isinstance(value, bool):
        raise InvalidParameterValue(f"{where} must be an integer between 0 and 100.")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= 100:
        raise InvalidParameterValue(f"{where} must be an integer between 0 and 100; got {value!r}.")
    return value


def _parse_version(value: Any, entity_name: str, where: str) -> str | None:
    if value is None or value == "":
        if entity_name.startswith(MODELS_URI):
            return None
        raise InvalidParameterValue(f"{where} is required for model '{entity_name}'.")
    if isinstance(value, float) and value.is_integer() and 0 <= value < 1e18:  # JSON's 3.0 is the integer 3
        value = int(value)
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text.isascii() or not text.isdigit() or len(text) > MAX_VERSION_DIGITS:
        raise InvalidParameterValue(
            f'{where} must be a model version number such as "1" (at most {MAX_VERSION_DIGITS} digits); '
            f"got {_short(value)}."
        )
    return str(int(text))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _parse_sizing(item: dict[str, Any], where: str) -> tuple[str | None, int | None, int | None]:
    size = item.get("workload_size")
    low, high = item.get("min_provisioned_concurrency"), item.get("max_provisioned_concurrency")
    if size is not None and (low is not None or high is not None):
        raise InvalidParameterValue(
            f"{where}: workload_size and min/max_provisioned_concurrency are mutually exclusive; use one."
        )
    if low is None and high is None:
        if size is None:
            return "Small", None, None
        if not isinstance(size, str) or size.lower() not in WORKLOAD_SIZES:
            raise InvalidParameterValue(
                f"{where}.workload_size '{size}' is invalid; use Small, Medium or Large."
            )
        return WORKLOAD_SIZES[size.lower()][0], None, None
    for label, v in (("min", low), ("max", high)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v % 4:
            raise InvalidParameterValue(
                f"{where}.{label}_provisioned_concurrency must be a non-negative multiple of 4; "
                f"got {_short(v)}."
            )
        if v > MAX_PROVISIONED_CONCURRENCY:
            raise InvalidParameterValue(
                f"{where}.{label}_provisioned_concurrency is {_short(v)}; the limit is "
                f"{MAX_PROVISIONED_CONCURRENCY}."
            )
    assert low is not None and high is not None  # the loop above rejected a missing one
    if high == 0 or low > high:
        raise InvalidParameterValue(
            f"{where}: min_provisioned_concurrency ({low}) must not exceed max_provisioned_concurrency "
            f"({high}), and the maximum must be at least 4."
        )
    return None, low, high
