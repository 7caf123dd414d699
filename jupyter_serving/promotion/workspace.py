"""The target workspace: a databricks-sdk `WorkspaceClient` built the way the databricks CLI builds one.

Auth comes from a token (a 0600 file, or $DATABRICKS_TOKEN) or a `~/.databrickscfg` profile, never
from argv. The target is probed once, quickly, before the SDK is built: the SDK retries a closed port
for minutes before it gives up, and a promotion to a mistyped URL should fail at once, in one line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from databricks.sdk import WorkspaceClient

PROBE_PATH = "/.well-known/databricks-config"  # the SDK's own first call; answered without auth
DATABRICKS_HOSTS = (".cloud.databricks.com", ".azuredatabricks.net", ".gcp.databricks.com", ".databricks.com")
RETRY_TIMEOUT_S = 60  # the SDK's budget for 429/503/connection retries (its default is 300 s)


class PromotionError(Exception):
    """What went wrong, as the one line the CLI prints and the magic shows (`CODE: message`)."""

    def __init__(self, message: str, error_code: str = "") -> None:
        super().__init__(f"{error_code}: {message}" if error_code else message)
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class TargetAuth:
    """Where the target workspace is and how to authenticate to it."""

    host: str | None = None
    token: str | None = None
    profile: str | None = None

    def resolved_token(self) -> str | None:
        """The token given, else $DATABRICKS_TOKEN unless a profile says how to authenticate."""
        if self.token:
            return self.token
        if self.profile:
            return None
        return os.environ.get("DATABRICKS_TOKEN") or None


def normalize_host(host: str) -> str:
    """The SDK's rule: `https://` when no scheme is given, no trailing slash."""
    host = host.strip()
    if "://" not in host:
        host = "https://" + host
    return host.rstrip("/")


def is_databricks_host(host: str) -> bool:
    """A Databricks workspace URL (where Unity Catalog is the registry), not a local server."""
    from urllib.parse import urlparse

    name = (urlparse(normalize_host(host)).hostname or "").lower()
    return any(name.endswith(suffix) for suffix in DATABRICKS_HOSTS)


def probe(host: str, timeout: float = 10.0) -> None:
    """Fail fast, in one line, when nothing answers at `host`."""
    try:
        requests.get(normalize_host(host) + PROBE_PATH, timeout=timeout)
    except requests.RequestException as exc:
        raise PromotionError(
            f"Cannot reach the target workspace at {normalize_host(host)}: {short_reason(exc)}",
            "TARGET_UNREACHABLE",
        ) from None


def short_reason(exc: BaseException) -> str:
    """`Connection refused` rather than requests' three nested reprs."""
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if match:
        return match.group(1).strip()
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def workspace_client(auth: TargetAuth) -> WorkspaceClient:
    """A `WorkspaceClient` for the target; every failure to build one is a `PromotionError`."""
    from databricks.sdk import WorkspaceClient
    from databricks.sdk.core import Config

    if auth.host:
        probe(auth.host)
    elif not auth.profile:
        raise PromotionError("Say which workspace to promote to: --to URL (or --profile NAME).")
    token = auth.resolved_token()
    kwargs: dict[str, Any] = {"retry_timeout_seconds": RETRY_TIMEOUT_S}
    if auth.host:
        kwargs["host"] = normalize_host(auth.host)
    if auth.profile:
        kwargs["profile"] = auth.profile
    if token:
        # PAT only: other DATABRICKS_* variables in the environment must not add a second method.
        kwargs.update(token=token, auth_type="pat")
    try:
        return WorkspaceClient(config=Config(**kwargs))
    except Exception as exc:  # the SDK raises ValueError subclasses with long multi-line texts
        where = kwargs.get("host") or f"profile {auth.profile}"
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PromotionError(
            f"Cannot authenticate to the target workspace {where}: {first}. Give a token in "
            "$DATABRICKS_TOKEN or --token-file, or a --profile from ~/.databrickscfg.",
            "UNAUTHENTICATED",
        ) from None


def sdk_error(exc: Exception, where: str) -> PromotionError:
    """A databricks-sdk error (its `error_code` and message) as a `PromotionError` naming the target."""
    code = getattr(exc, "error_code", None) or type(exc).__name__
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # The SDK appends its whole config ("... Config: host=..., token=***. Env: ...") to the server's text.
    message = message.split(". Config: ", 1)[0].rstrip(".") + "."
    return PromotionError(f"{message} (target {where})", str(code))
