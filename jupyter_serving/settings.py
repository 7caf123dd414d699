"""The server's settings: one traitlets class, plus each execution backend's own class.

`ServingSettings` holds what every backend shares; a backend's own knobs live on a Configurable of
its own in its package (`LocalBackendSettings`, `RayBackendSettings`), built by the backend with
these settings as its parent, so a new backend adds settings without touching this file.

Each trait tagged ``env=True`` is, in increasing precedence: its built-in default, the environment
variable ``JUPYTER_SERVING_<NAME>``, and Jupyter config (``c.ServingSettings.<name>``,
``c.LocalBackendSettings.<name>``, ...) or the flag ``--<name-with-dashes>`` of
``jupyter-serving serve``. Environment variables sit below explicit config the way ``JUPYTER_PORT``
does for ServerApp, so a config file always wins over a stray export.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from traitlets import Bool, CaselessStrEnum, Float, Int, List, TraitType, Type, Unicode, default
from traitlets.config import Config, Configurable
from traitlets.config.loader import DeferredConfig

ENV_PREFIX = "JUPYTER_SERVING_"


def env_name(trait_name: str) -> str:
    return ENV_PREFIX + trait_name.upper()


class EnvConfigurable(Configurable):
    """A Configurable whose traits tagged ``env=True`` also read ``JUPYTER_SERVING_<NAME>``, below
    explicit config and keyword arguments (see the module docstring).

    `legacy_section` names a config section that used to hold these traits (the backends' settings
    were ``c.ServingSettings.<name>`` before they moved to their own classes): a value found there
    still applies, below the class's own section, so existing config files keep working."""

    legacy_section: str | None = None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        configured = set(self.config.get(type(self).__name__, {})) | set(kwargs)
        legacy = self.config.get(self.legacy_section, {}) if self.legacy_section else {}
        for name, trait in self.traits(config=True).items():
            if name in legacy and name not in configured:
                value = legacy[name]
                setattr(self, name, value.get_value(trait) if isinstance(value, DeferredConfig) else value)
                configured.add(name)
        for name, trait in self.traits(env=True).items():
            raw = os.environ.get(env_name(name))
            if raw is not None and name not in configured:
                setattr(self, name, parse_env(trait, raw))


class ServingSettings(EnvConfigurable):
    """Server-side settings shared by the Jupyter extension and the standalone server."""

    backend = Unicode(
        "local",
        config=True,
        help="What runs replicas, in short: 'local' (worker subprocesses on this machine; "
        "LocalBackendSettings), 'ray' (Ray Serve deployments on a Ray cluster; RayBackendSettings; "
        "needs pip install 'jupyter-serving[ray]'), or 'package.module:Class'. `backend_class`, when "
        "set, wins. Env: JUPYTER_SERVING_BACKEND.",
    ).tag(env=True)

    backend_class = Type(
        default_value=None,
        allow_none=True,
        klass=object,
        config=True,
        help="The execution backend class (an implementation of "
        "jupyter_serving.backends.base.ExecutionBackend, or its importable name such as "
        "'mypackage.kube.KubeBackend'), the way jupyter_server picks its kernel manager. It is built "
        "with these settings and reads its own from a Configurable of its own. Unset: the class "
        "`backend` names. Env: JUPYTER_SERVING_BACKEND_CLASS.",
    ).tag(env=True)

    state_dir = Unicode(
        config=True,
        help="Folder holding the endpoint store (SQLite), worker sockets and logs. "
        "Env: JUPYTER_SERVING_STATE_DIR. Default: <jupyter data dir>/jupyter_serving.",
    ).tag(env=True)

    request_timeout_s = Float(
        120.0,
        config=True,
        help="Longest a model may take to answer one invocation before the client gets 504 "
        "DEADLINE_EXCEEDED (Databricks' limit is 120 s). Env: JUPYTER_SERVING_REQUEST_TIMEOUT_S.",
    ).tag(env=True)

    max_request_bytes = Int(
        16 * 1024 * 1024,
        config=True,
        help="Largest invocation body accepted (Databricks: 16 MB for custom models). "
        "Env: JUPYTER_SERVING_MAX_REQUEST_BYTES.",
    ).tag(env=True)

    replica_concurrency = Int(
        4,
        config=True,
        help="Concurrent requests one worker replica is sized for; a served entity's provisioned "
        "concurrency divided by this gives its replica count. Env: JUPYTER_SERVING_REPLICA_CONCURRENCY.",
    ).tag(env=True)

    deploy_timeout_s = Float(
        600.0,
        config=True,
        help="Longest a replica may take to load its model before the deployment is marked failed. "
        "Env: JUPYTER_SERVING_DEPLOY_TIMEOUT_S.",
    ).tag(env=True)

    max_batch_size = Int(
        64,
        config=True,
        help="Most concurrent requests a worker coalesces into one predict call. 1 turns "
        "micro-batching off. Env: JUPYTER_SERVING_MAX_BATCH_SIZE.",
    ).tag(env=True)

    fast_path = Bool(
        True,
        config=True,
        help="Let workers score scikit-learn models with purely numeric signatures directly on "
        "NumPy arrays, skipping pandas; any request the fast path cannot handle exactly takes "
        "MLflow's own path. Env: JUPYTER_SERVING_FAST_PATH.",
    ).tag(env=True)

    freeze_heap = Bool(
        True,
        config=True,
        help="Move the server process's long-lived objects out of the garbage collector's full "
        "collections (gc.freeze at start-up and after any slow full collection that freed nothing), "
        "which otherwise stop the event loop for 0.1-0.3 s every few seconds under load. "
        "Env: JUPYTER_SERVING_FREEZE_HEAP.",
    ).tag(env=True)

    scale_down_delay_s = Float(
        300.0,
        config=True,
        help="Seconds of lower demand before a served entity loses one replica. "
        "Env: JUPYTER_SERVING_SCALE_DOWN_DELAY_S.",
    ).tag(env=True)

    scale_to_zero_idle_s = Float(
        1800.0,
        config=True,
        help="Seconds without requests before an entity with scale_to_zero_enabled drops to zero "
        "replicas. Env: JUPYTER_SERVING_SCALE_TO_ZERO_IDLE_S.",
    ).tag(env=True)

    autoscale_interval_s = Float(
        1.0,
        config=True,
        help="Seconds between autoscaler ticks (scale-down and scale-to-zero checks; scale-up happens on "
        "the request path). Env: JUPYTER_SERVING_AUTOSCALE_INTERVAL_S.",
    ).tag(env=True)

    cold_start_queue_size = Int(
        256,
        config=True,
        help="Requests one served entity holds while a replica starts (scale from zero, recovery); "
        "beyond it they get 503 with Retry-After. Env: JUPYTER_SERVING_COLD_START_QUEUE_SIZE.",
    ).tag(env=True)

    owner_name = Unicode(
        "admin",
        config=True,
        help="Name of the server owner (the admin: the server's own token, or the Jupyter user), "
        "recorded as `creator` of the endpoints it creates. Env: JUPYTER_SERVING_OWNER_NAME.",
    ).tag(env=True)

    catalog_root = Unicode(
        "",
        config=True,
        help="Root folder of inference tables (<catalog_root>/<catalog>/<schema>/<prefix>_payload) and "
        "feature tables (<catalog_root>/<catalog>/<schema>/<table>). "
        "Env: JUPYTER_SERVING_CATALOG_ROOT. Default: <state dir>/catalog.",
    ).tag(env=True)

    feature_refresh_s = Float(
        2.0,
        config=True,
        help="Seconds between checks of a served model's feature tables for a new Delta version, which "
        "is then loaded in the background (0: never). A served entity overrides it with "
        "JUPYTER_SERVING_FEATURE_REFRESH_S in environment_vars. Env: JUPYTER_SERVING_FEATURE_REFRESH_S.",
    ).tag(env=True)

    capture_flush_s = Float(
        2.0,
        config=True,
        help="Seconds between commits of spooled inference-table rows to Delta. "
        "Env: JUPYTER_SERVING_CAPTURE_FLUSH_S.",
    ).tag(env=True)

    capture_flush_rows = Int(
        5000,
        config=True,
        help="Spooled rows that trigger a Delta commit before the interval ends. "
        "Env: JUPYTER_SERVING_CAPTURE_FLUSH_ROWS.",
    ).tag(env=True)

    history_interval_s = Float(
        2.0,
        config=True,
        help="Seconds between samples of each endpoint's metrics history and events (the charts of the "
        "Model Serving page and EndpointMonitor); 0 turns the history off. "
        "Env: JUPYTER_SERVING_HISTORY_INTERVAL_S.",
    ).tag(env=True)

    history_retention_s = Float(
        3600.0,
        config=True,
        help="Seconds of metrics history kept in memory per served entity (retention / interval samples "
        "each). Env: JUPYTER_SERVING_HISTORY_RETENTION_S.",
    ).tag(env=True)

    history_events = Int(
        500,
        config=True,
        help="Events kept per endpoint, in memory and in <state dir>/events. "
        "Env: JUPYTER_SERVING_HISTORY_EVENTS.",
    ).tag(env=True)

    rate_limit_window_s = Float(
        60.0,
        config=True,
        help="Length of the window AI Gateway rate limits count calls in (Databricks: one minute, the "
        "only renewal_period). Shorter only for tests and demos. Env: JUPYTER_SERVING_RATE_LIMIT_WINDOW_S.",
    ).tag(env=True)

    data_plane_host = Unicode(
        "127.0.0.1",
        config=True,
        help="Interface of the route-optimized data-plane listener. Env: JUPYTER_SERVING_DATA_PLANE_HOST.",
    ).tag(env=True)

    data_plane_port = Int(
        0,
        config=True,
        help="Port of the route-optimized data-plane listener (0 picks a free one). It serves "
        "invocations of route_optimized endpoints to holders of a token from /oidc/v1/token. "
        "Env: JUPYTER_SERVING_DATA_PLANE_PORT.",
    ).tag(env=True)

    oauth_token_ttl_s = Int(
        3600,
        config=True,
        help="Lifetime of tokens minted by /oidc/v1/token (Databricks: one hour). "
        "Env: JUPYTER_SERVING_OAUTH_TOKEN_TTL_S.",
    ).tag(env=True)

    env_manager = CaselessStrEnum(
        ["auto", "uv", "local"],
        default_value="auto",
        config=True,
        help="Python environment of each served entity's workers: 'auto' reuses the server's own when it "
        "already satisfies every requirement the model logged, else builds one with uv; 'uv' always builds "
        "one; 'local' never does. A served entity overrides it with JUPYTER_SERVING_ENV_MANAGER in its "
        "environment_vars. Env: JUPYTER_SERVING_ENV_MANAGER.",
    ).tag(env=True)

    env_cache_dir = Unicode(
        "",
        config=True,
        help="Folder of built Python environments, shared by every server and notebook pointed at it. "
        "Env: JUPYTER_SERVING_ENV_CACHE_DIR. Default: <state dir>/envs.",
    ).tag(env=True)

    env_cache_max_bytes = Int(
        20 * 1024**3,
        config=True,
        help="Disk the cache of built environments (<state dir>/envs) may use before the least recently "
        "used ones no server or notebook holds are removed. Env: JUPYTER_SERVING_ENV_CACHE_MAX_BYTES.",
    ).tag(env=True)

    @default("state_dir")
    def _state_dir_default(self) -> str:
        return str(Path(jupyter_data_dir()) / "jupyter_serving")

    def _load_config(
        self, cfg: Config, section_names: list[str] | None = None, traits: dict[str, Any] | None = None
    ) -> None:
        """Settings that moved to a backend's own class are read there (`legacy_section`), so an
        old ``c.ServingSettings.worker_start`` is not reported here as an unknown option."""
        own = cfg.get(type(self).__name__)
        moved = set(own or ()) & _moved_settings()
        if moved:
            cfg = copy.deepcopy(cfg)
            for name in moved:
                del cfg[type(self).__name__][name]
        super()._load_config(cfg, section_names, traits)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()

    @property
    def env_cache_path(self) -> Path:
        return Path(self.env_cache_dir).expanduser() if self.env_cache_dir else self.state_path / "envs"

    @property
    def catalog_path(self) -> Path:
        return Path(self.catalog_root).expanduser() if self.catalog_root else self.state_path / "catalog"


def settings_classes() -> list[type[EnvConfigurable]]:
    """The server's settings and the built-in backends' own: every one of their env traits is a flag
    of `jupyter-serving serve`, and `--help-all` lists them. Imported here, lazily, because each
    backend's settings module builds on `EnvConfigurable` above."""
    from jupyter_serving.backends.local.settings import LocalBackendSettings
    from jupyter_serving.backends.ray.settings import RayBackendSettings

    return [ServingSettings, LocalBackendSettings, RayBackendSettings]


def _moved_settings() -> set[str]:
    """Names of the built-in backends' settings that once were ServingSettings traits."""
    return {name for cls in settings_classes()[1:] for name in cls.class_traits(config=True)}


def parse_env(trait: TraitType, raw: str) -> Any:
    """Parse an environment value the way the command line parses a flag of the same trait."""
    if isinstance(trait, List):
        items = [part.strip() for part in raw.split(",") if part.strip()]
        return [trait._trait.from_string(item) for item in items]
    return trait.from_string(raw)
