"""The endpoint-level settings beside the config: tags, AI Gateway, rate limits, notifications, telemetry.

Pure functions from request JSON to the normalised JSON we store and echo. Each rule names the
field it refuses (400 INVALID_PARAMETER_VALUE), so nothing a client sends is silently dropped:
what a local server cannot do (guardrails, fallbacks, token limits) is refused, not ignored.
"""

from __future__ import annotations

import re
from typing import Any

from jupyter_serving.errors import InvalidParameterValue

RATE_LIMIT_KEYS = ("endpoint", "user", "user_group", "service_principal")
LEGACY_RATE_LIMIT_KEYS = ("endpoint", "user")
RENEWAL_PERIODS = ("minute",)
TELEMETRY_FEATURES = (
    "TELEMETRY_FEATURE_INFERENCE_TABLE",
    "TELEMETRY_FEATURE_LOGS",
    "TELEMETRY_FEATURE_METRICS",
    "TELEMETRY_FEATURE_TRACES",
)
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+")  # server/openapi.yaml's EmailAddress
_GATEWAY_FIELDS = (
    "rate_limits",
    "usage_tracking_config",
    "inference_table_config",
    "guardrails",
    "fallback_config",
)


def refuse_unknown(raw: dict[str, Any], known: tuple[str, ...] | set[str], where: str) -> None:
    """400 naming the first field we do not know, instead of storing or dropping it."""
    for key in raw:
        if key not in known:
            prefix = f"{where}." if where else ""
            raise InvalidParameterValue(
                f"Field '{prefix}{key}' is not supported by this server; supported fields are: "
                f"{', '.join(sorted(known))}."
            )


def _object(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidParameterValue(f"Field '{where}' must be a JSON object.")
    return raw


def parse_tags(raw: Any, where: str = "tags") -> list[dict[str, str]]:
    """Tags of PATCH .../tags, held to the limits create applies (`model.config.parse_tags`)."""
    from jupyter_serving.model.config import parse_tags as check_limits

    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidParameterValue(f'Field \'{where}\' must be a list of {{"key", "value"}} objects.')
    out: list[dict[str, str]] = []
    for i, tag in enumerate(raw):
        if not isinstance(tag, dict) or not isinstance(tag.get("key"), str) or not tag["key"]:
            raise InvalidParameterValue(f"{where}[{i}] must be an object with a non-empty string 'key'.")
        refuse_unknown(tag, ("key", "value"), f"{where}[{i}]")
        value = tag.get("value")
        if value is not None and not isinstance(value, str):
            raise InvalidParameterValue(f"{where}[{i}].value must be a string.")
        out.append({"key": tag["key"], **({"value": value} if value is not None else {})})
    check_limits(out, where)
    return out


def patch_tags(current: list[dict[str, Any]], add: Any, delete: Any) -> list[dict[str, Any]]:
    """PATCH .../tags: delete keys, then add (an added key replaces the old value)."""
    added = parse_tags(add, "add_tags")
    if delete is None:
        delete = []
    if not isinstance(delete, list) or not all(isinstance(k, str) for k in delete):
        raise InvalidParameterValue("Field 'delete_tags' must be a list of tag keys.")
    new_keys = {t["key"] for t in added}
    kept = [t for t in current if t["key"] not in set(delete) and t["key"] not in new_keys]
    return kept + added


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidParameterValue(f"{where} must be a non-negative integer; got {value!r}.")
    return value


def parse_rate_limit(raw: Any, where: str, *, legacy: bool = False) -> dict[str, Any]:
    """One limit: `calls` per `renewal_period` (minute), counted per `key` (and `principal`)."""
    item = _object(raw, where)
    known = (
        ("calls", "key", "renewal_period")
        if legacy
        else ("calls", "key", "renewal_period", "principal", "tokens")
    )
    refuse_unknown(item, known, where)
    if item.get("tokens") is not None:
        raise InvalidParameterValue(
            f"{where}.tokens: token-based limits apply to foundation-model endpoints, which this server "
            "does not host; use 'calls'."
        )
    if item.get("calls") is None:
        raise InvalidParameterValue(f"{where}.calls is required: the calls allowed per renewal period.")
    calls = _positive_int(item["calls"], f"{where}.calls")
    keys = LEGACY_RATE_LIMIT_KEYS if legacy else RATE_LIMIT_KEYS
    key = item.get("key")
    if key is None:  # absent or null: the default; any other value must be one of the keys
        key = "endpoint" if legacy else "user"
    if not isinstance(key, str) or key not in keys:
        raise InvalidParameterValue(f"{where}.key {key!r} is invalid; use one of {', '.join(keys)}.")
    period = item.get("renewal_period")
    if period is None:
        period = "minute"
    if not isinstance(period, str) or period not in RENEWAL_PERIODS:
        raise InvalidParameterValue(f"{where}.renewal_period {period!r} is invalid; use 'minute'.")
    out: dict[str, Any] = {"calls": calls, "key": key, "renewal_period": period}
    principal = item.get("principal")
    if principal is not None:
        if (
            not isinstance(principal, str)
            or not principal
            or key not in ("user", "user_group", "service_principal")
        ):
            raise InvalidParameterValue(
                f"{where}.principal must be a non-empty string, "
                "with key user, user_group or service_principal."
            )
        out["principal"] = principal
    return out


def parse_rate_limits(raw: Any, where: str, *, legacy: bool = False) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise InvalidParameterValue(f"Field '{where}' must be a list of rate limits.")
    return [parse_rate_limit(item, f"{where}[{i}]", legacy=legacy) for i, item in enumerate(raw)]


def legacy_rate_limits(limits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The AI Gateway limits the legacy `rate-limits` route can express, in its shape."""
    return [
        {k: lim[k] for k in ("calls", "key", "renewal_period")}
        for lim in limits
        if lim["key"] in LEGACY_RATE_LIMIT_KEYS and "principal" not in lim
    ]


def _enabled_only(raw: Any, where: str, *, allow_true: bool = True) -> dict[str, Any]:
    item = _object(raw, where)
    refuse_unknown(item, ("enabled",), where)
    enabled = item.get("enabled", False)
    if not isinstance(enabled, bool):
        raise InvalidParameterValue(f"{where}.enabled must be true or false.")
    if enabled and not allow_true:
        raise InvalidParameterValue(
            f"{where}: traffic fallback needs external-model endpoints, which this server does not host."
        )
    return {"enabled": enabled}


def parse_ai_gateway(raw: Any, where: str = "ai_gateway") -> dict[str, Any]:
    """The AI Gateway config as stored; `inference_table_config` keeps auto_capture_config's keys."""
    from jupyter_serving.model.config import parse_capture  # the payload table's rules, in one place

    item = _object(raw, where)
    refuse_unknown(item, _GATEWAY_FIELDS, where)
    if item.get("guardrails") is not None:
        raise InvalidParameterValue(
            f"{where}.guardrails: AI Guardrails (safety, PII, keyword filters) apply to LLM endpoints "
            "and are not available on this server."
        )
    out: dict[str, Any] = {}
    if item.get("rate_limits") is not None:
        out["rate_limits"] = parse_rate_limits(item["rate_limits"], f"{where}.rate_limits")
    if item.get("usage_tracking_config") is not None:
        out["usage_tracking_config"] = _enabled_only(
            item["usage_tracking_config"], f"{where}.usage_tracking_config"
        )
    if item.get("fallback_config") is not None:
        out["fallback_config"] = _enabled_only(
            item["fallback_config"], f"{where}.fallback_config", allow_true=False
        )
    if item.get("inference_table_config") is not None:
        table = _object(item["inference_table_config"], f"{where}.inference_table_config")
        refuse_unknown(
            table,
            ("catalog_name", "schema_name", "table_name_prefix", "enabled"),
            f"{where}.inference_table_config",
        )
        out["inference_table_config"] = parse_capture(table)
    return out


def inference_table_form(ai_gateway: dict[str, Any] | None) -> str:
    """Which schema the endpoint's payload table has: "ai_gateway" when the table was set in
    `ai_gateway.inference_table_config` (Databricks' AI Gateway-enabled inference table), else
    "legacy" (`config.auto_capture_config`). Both are stored as the config's auto_capture_config;
    the record's ai_gateway remembers which one the user asked for."""
    return "ai_gateway" if (ai_gateway or {}).get("inference_table_config") is not None else "legacy"


def parse_email_notifications(raw: Any, where: str = "email_notifications") -> dict[str, list[str]]:
    item = _object(raw, where)
    refuse_unknown(item, ("on_update_failure", "on_update_success"), where)
    out: dict[str, list[str]] = {}
    for key in ("on_update_failure", "on_update_success"):
        value = item.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(
            isinstance(v, str) and EMAIL_RE.fullmatch(v) for v in value
        ):
            raise InvalidParameterValue(f"{where}.{key} must be a list of email addresses.")
        out[key] = list(value)
    return out


def parse_telemetry_config(raw: Any, where: str = "telemetry_config") -> dict[str, Any]:
    """Stored and returned; logs, metrics and traces already go to the endpoint's local files."""
    item = _object(raw, where)
    refuse_unknown(
        item,
        ("enabled_telemetry_features", "inference_table_config", "table_names", "telemetry_profile_id"),
        where,
    )
    out: dict[str, Any] = {}
    features = item.get("enabled_telemetry_features")
    if features is not None:
        if not isinstance(features, list) or any(f not in TELEMETRY_FEATURES for f in features):
            raise InvalidParameterValue(
                f"{where}.enabled_telemetry_features must list values of {', '.join(TELEMETRY_FEATURES)}."
            )
        out["enabled_telemetry_features"] = list(features)
    table = item.get("inference_table_config")
    if table is not None:
        table = _object(table, f"{where}.inference_table_config")
        refuse_unknown(table, ("name", "sampling_fraction"), f"{where}.inference_table_config")
        if table.get("name") is not None and not isinstance(table["name"], str):
            raise InvalidParameterValue(f"{where}.inference_table_config.name must be a table name.")
        fraction = table.get("sampling_fraction")
        if fraction is not None and (
            isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1
        ):
            raise InvalidParameterValue(
                f"{where}.inference_table_config.sampling_fraction must be a number from 0 to 1."
            )
        out["inference_table_config"] = {k: v for k, v in table.items() if v is not None}
    names = item.get("table_names")
    if names is not None:
        names = _object(names, f"{where}.table_names")
        known = ("annotations_table", "logs_table", "metrics_table", "traces_table")
        refuse_unknown(names, known, f"{where}.table_names")
        if not all(isinstance(v, str) for v in names.values()):
            raise InvalidParameterValue(f"{where}.table_names values must be table names.")
        out["table_names"] = dict(names)
    profile = item.get("telemetry_profile_id")
    if profile is not None:
        if not isinstance(profile, str):
            raise InvalidParameterValue(f"{where}.telemetry_profile_id must be a string.")
        out["telemetry_profile_id"] = profile
    return out


def parse_optional_str(raw: Any, where: str) -> str | None:
    if raw is not None and not isinstance(raw, str):
        raise InvalidParameterValue(f"Field '{where}' must be a string.")
    return raw


def parse_bool(raw: Any, where: str) -> bool:
    if raw is None:
        return False
    if not isinstance(raw, bool):
        raise InvalidParameterValue(f"Field '{where}' must be true or false.")
    return raw
