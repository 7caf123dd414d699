"""The `%serve` / `%%serve` magics, and the HTML they (and the widgets) show for endpoints.

One line/cell magic dispatches on its first word to a subcommand with its own argparse parser.
Every failure a user can cause (bad arguments, bad YAML, an error answer from the server) surfaces
as an IPython `UsageError`: the server's message, no traceback.
"""

from __future__ import annotations

import html
import json
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, needs_local_scope
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display

from jupyter_serving.notebook.client import (
    Client,
    EndpointUpdateFailed,
    NotFoundError,
    ServingAPIError,
    ServingClientError,
    WaitTimeout,
    chunk_text,
    failure_message,
    served_entities,
)

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.display import DisplayHandle

    from jupyter_serving.notebook.discovery import ServerInfo

__all__ = ["ServeMagics", "load_ipython_extension", "unload_ipython_extension"]

DEFAULT_TIMEOUT_S = 1200.0


# -- rendering (pure: endpoint JSON in, HTML/text out) -------------------------------------------

_TONES = {"ok": "#1a7f37", "busy": "#9a6700", "bad": "#cf222e", "idle": "#6e7781"}
_CARD = "font-family:var(--jp-ui-font-family,sans-serif);font-size:13px;margin:4px 0"
_CELL = "padding:2px 8px;text-align:left;vertical-align:middle"


def endpoint_status(endpoint: Mapping[str, Any]) -> tuple[str, str]:
    """The Serving UI's status words for an endpoint, and a tone (ok/busy/bad/idle) for the badge."""
    state = endpoint.get("state") or {}
    ready = state.get("ready") == "READY"
    update = state.get("config_update", "NOT_UPDATING")
    head = "Ready" if ready else "Not ready"
    if update == "IN_PROGRESS":
        return f"{head} (Updating)", "busy"
    if update == "UPDATE_FAILED":
        return f"{head} (Update failed)", "bad"
    if update == "UPDATE_CANCELED":
        return f"{head} (Update canceled)", "ok" if ready else "bad"
    return (head, "ok") if ready else ("Not ready (Stopped)", "idle")


def badge(label: str, tone: str) -> str:
    color = _TONES.get(tone, _TONES["idle"])
    return (
        f'<span style="background:{color};color:#fff;border-radius:10px;padding:1px 8px;'
        f'font-size:11px;white-space:nowrap">{html.escape(label)}</span>'
    )


def traffic_bar(percent: int | None) -> str:
    if percent is None:
        return ""
    return (
        '<div style="display:flex;align-items:center;gap:6px">'
        '<div style="width:120px;height:8px;background:#d0d7de;border-radius:4px;overflow:hidden">'
        f'<div style="width:{int(percent)}%;height:100%;background:#0969da"></div></div>'
        f"<span>{int(percent)}%</span></div>"
    )


def _routes(config: Mapping[str, Any]) -> dict[str | None, int]:  # None: a route naming neither
    routes = (config.get("traffic_config") or {}).get("routes") or []
    return {
        r.get("served_model_name") or r.get("served_entity_name"): r.get("traffic_percentage", 0)
        for r in routes
    }


_DEPLOY_TONES = {"DEPLOYMENT_READY": "ok", "DEPLOYMENT_CREATING": "busy", "DEPLOYMENT_RECOVERING": "busy"}


def _entity_row(entity: Mapping[str, Any], percent: int | None) -> str:
    state = entity.get("state") or {}
    deployment = state.get("deployment", "")
    local = entity.get("local") or {}
    model = entity.get("entity_name") or entity.get("model_name") or ""
    version = entity.get("entity_version") or entity.get("model_version")
    compute = f"{entity.get('workload_type', 'CPU')} · {entity.get('workload_size') or 'custom'}"
    if entity.get("scale_to_zero_enabled"):
        compute += " · scale to zero"
    replicas = f"{local.get('ready_replicas', 0)}/{local.get('replicas', 0)}" if local else ""
    gpus = f" (GPU {', '.join(map(str, local['gpus']))})" if local.get("gpus") else ""
    message = state.get("deployment_state_message") or ""
    cells = [
        f"<b>{html.escape(str(entity.get('name', '')))}</b>",
        html.escape(f"{model} v{version}" if version else model) + _feature_tables(local),
        html.escape(compute),
        badge(
            deployment.removeprefix("DEPLOYMENT_").capitalize() or "?", _DEPLOY_TONES.get(deployment, "bad")
        )
        + (f'<div style="color:#57606a;font-size:11px">{html.escape(message)}</div>' if message else ""),
        html.escape(replicas + gpus),
        traffic_bar(percent),
    ]
    return "<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells) + "</tr>"


def _feature_tables(local: Mapping[str, Any]) -> str:
    """The feature tables a replica looks features up from, each with the Delta version it serves."""
    tables = local.get("feature_tables") or []
    if not tables:
        return ""
    text = ", ".join(f"{t.get('name')} v{t.get('version')}" for t in tables)
    return f'<div style="color:#57606a;font-size:11px">features: {html.escape(text)}</div>'


def _entities_table(config: Mapping[str, Any]) -> str:
    routes = _routes(config)
    head = "".join(
        f'<th style="{_CELL}">{h}</th>'
        for h in ("Served entity", "Model", "Compute", "State", "Replicas", "Traffic")
    )
    rows = "".join(
        _entity_row(e, routes.get(e.get("name")))
        for e in config.get("served_entities") or config.get("served_models") or []
    )
    return (
        f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


def format_tags(endpoint: Mapping[str, Any]) -> str:
    """`key=value, flag` for an endpoint's tags (empty without tags)."""
    tags = endpoint.get("tags") or []
    return ", ".join(
        f"{t['key']}={t['value']}" if t.get("value") is not None else str(t["key"]) for t in tags
    )


def render_endpoint(endpoint: Mapping[str, Any], *, note: str = "") -> str:
    """An endpoint card: state badge, entities with versions, replicas and traffic bars, pending update."""
    label, tone = endpoint_status(endpoint)
    name = html.escape(str(endpoint.get("name", "")))
    parts = [f'<div style="{_CARD}"><div><b style="font-size:14px">{name}</b> {badge(label, tone)}']
    config, pending = endpoint.get("config"), endpoint.get("pending_config")
    if config:
        parts.append(f' <span style="color:#57606a">config v{config.get("config_version", "?")}</span>')
    parts.append(
        f'<div style="color:#57606a">{html.escape(_principals(endpoint))}</div>'
        if endpoint.get("creator")
        else ""
    )
    parts.append("</div>")
    if tags := format_tags(endpoint):
        parts.append(f'<div style="color:#57606a">Tags: {html.escape(tags)}</div>')
    if config:
        parts.append(_entities_table(config))
    if pending:
        parts.append(
            '<div style="margin-top:4px;color:#57606a">'
            f"Pending config v{pending.get('config_version', '?')}:</div>"
        )
        parts.append(_entities_table(pending))
    capture = (config or {}).get("auto_capture_config") or {}
    table = (capture.get("state") or {}).get("payload_table") or {}
    if capture.get("enabled") and table:
        parts.append(
            f'<div style="color:#57606a">Inference table {html.escape(str(table.get("name", "")))} '
            f"({html.escape(str(table.get('status', '')))})</div>"
        )
    failure = failure_message(endpoint) if tone == "bad" else ""
    if failure:
        parts.append(f'<div style="color:{_TONES["bad"]};margin-top:4px">{html.escape(failure)}</div>')
    if note:
        parts.append(f'<div style="color:#57606a;margin-top:4px">{html.escape(note)}</div>')
    parts.append("</div>")
    return "".join(parts)


def render_endpoint_text(endpoint: Mapping[str, Any], *, note: str = "") -> str:
    label, tone = endpoint_status(endpoint)
    lines = [f"{endpoint.get('name')}: {label}"]
    lines += [f"  tags: {tags}"] if (tags := format_tags(endpoint)) else []
    lines += [f"  {_principals(endpoint)}"] if endpoint.get("creator") else []
    config = endpoint.get("config") or endpoint.get("pending_config") or {}
    routes = _routes(config)
    for e in served_entities(endpoint):
        local = e.get("local") or {}
        deployment = (e.get("state") or {}).get("deployment", "")
        version = e.get("entity_version") or e.get("model_version") or ""
        model = e.get("entity_name") or e.get("model_name")
        replicas = f" replicas {local.get('ready_replicas', 0)}/{local.get('replicas', 0)}" if local else ""
        traffic = f" traffic {routes[e['name']]}%" if e.get("name") in routes else ""
        lines.append(f"  {e.get('name')}: {model} v{version} {deployment}{replicas}{traffic}")
    failure = failure_message(endpoint) if tone == "bad" else ""
    lines += [f"  {failure}"] if failure else []
    lines += [f"  {note}"] if note else []
    return "\n".join(lines)


def _principals(endpoint: Mapping[str, Any]) -> str:
    """Who made the endpoint, and what the caller may do with it (Databricks' permission levels)."""
    level = endpoint.get("permission_level")
    return f"created by {endpoint.get('creator')}" + (f"; you: {level}" if level else "")


def render_list(endpoints: Sequence[Mapping[str, Any]]) -> str:
    if not endpoints:
        hint = "No serving endpoints yet; create one with <code>%%serve create</code>."
        return f'<div style="{_CARD}">{hint}</div>'
    head = "".join(f'<th style="{_CELL}">{h}</th>' for h in ("Name", "State", "Served entities", "Traffic"))
    rows = []
    for ep in endpoints:
        routes = _routes(ep.get("config") or ep.get("pending_config") or {})
        entities = served_entities(ep)
        served = "<br>".join(html.escape(_entity_label(e)) for e in entities)
        bars = "".join(traffic_bar(routes[e.get("name")]) for e in entities if e.get("name") in routes)
        cells = [f"<b>{html.escape(str(ep.get('name')))}</b>", badge(*endpoint_status(ep)), served, bars]
        rows.append("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in cells) + "</tr>")
    return (
        f'<table style="border-collapse:collapse;{_CARD}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_list_text(endpoints: Sequence[Mapping[str, Any]]) -> str:
    """The list as an aligned plain-text table (nbconvert, terminals): one line per served entity."""
    if not endpoints:
        return "No serving endpoints yet; create one with %%serve create."
    rows: list[tuple[str, ...]] = [("Name", "State", "Served entity", "Traffic")]
    for ep in endpoints:
        routes = _routes(ep.get("config") or ep.get("pending_config") or {})
        first = (str(ep.get("name")), endpoint_status(ep)[0])
        for i, e in enumerate(served_entities(ep) or [{}]):
            percent = routes.get(e.get("name"))
            traffic = "" if percent is None else f"{int(percent)}%"
            rows.append((*(first if i == 0 else ("", "")), _entity_label(e) if e else "", traffic))
    return text_table(rows)


def text_table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns, two spaces apart (the first row is the header)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def grants_table(assignments: Sequence[Mapping[str, Any]]) -> str:
    """Privilege assignments as a text table: principal, privilege, and where an inherited one comes from."""
    rows: list[tuple[str, ...]] = [("PRINCIPAL", "PRIVILEGE", "INHERITED FROM")]
    for assignment in assignments:
        for privilege in assignment.get("privileges") or []:
            if isinstance(privilege, Mapping):
                source = privilege.get("inherited_from_name") or ""
                rows.append((str(assignment.get("principal")), str(privilege.get("privilege")), source))
            else:
                rows.append((str(assignment.get("principal")), str(privilege), ""))
    return text_table(rows)


def _entity_label(entity: Mapping[str, Any]) -> str:
    model = entity.get("entity_name") or entity.get("model_name") or ""
    version = entity.get("entity_version") or entity.get("model_version") or ""
    return f"{entity.get('name')}: {model} v{version}" if version else f"{entity.get('name')}: {model}"


class EndpointCard:
    """What `%serve get` returns: the endpoint JSON (`.endpoint`), shown as a card."""

    def __init__(self, endpoint: dict[str, Any]) -> None:
        self.endpoint = endpoint

    def _repr_html_(self) -> str:
        return render_endpoint(self.endpoint)

    def __repr__(self) -> str:
        return render_endpoint_text(self.endpoint)


class EndpointList:
    """What `%serve list` returns: the endpoint summaries (`.endpoints`), shown as a table."""

    def __init__(self, endpoints: list[dict[str, Any]]) -> None:
        self.endpoints = endpoints

    @property
    def names(self) -> list[str]:
        return [e["name"] for e in self.endpoints]

    def _repr_html_(self) -> str:
        return render_list(self.endpoints)

    def __repr__(self) -> str:
        return render_list_text(self.endpoints)


def with_details(client: Client, summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each listed endpoint as GET shows it: the list's summaries (Databricks' shape) carry no
    traffic split and no replica state. One deleted meanwhile drops out; one that cannot be read
    keeps its summary."""
    out = []
    for summary in summaries:
        try:
            out.append(client.get(summary["name"]))
        except NotFoundError:
            continue
        except ServingClientError:
            out.append(summary)
    return out


# -- argument parsing ----------------------------------------------------------------------------


def _parser(prog: str, *names: str) -> MagicArgumentParser:
    parser = MagicArgumentParser(prog=f"%serve {prog}")
    for name in names:
        parser.add_argument(name)
    return parser


class _IntermixedParser(MagicArgumentParser):
    """Privileges may come before or after `--principal P`, as people write them."""

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        return self.parse_intermixed_args(args, namespace)


def _with_wait(parser: MagicArgumentParser) -> MagicArgumentParser:
    parser.add_argument("--no-wait", action="store_true", help="return once the server accepted the change")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds to wait for READY")
    return parser


def parse_rollout_options(words: list[str]) -> dict[str, Any]:
    """`steps=5,25,50,100 step=60 alpha=0.01 p50=2 errors=off` -> Client.start_rollout's keywords."""
    options: dict[str, Any] = {}
    guard: dict[str, Any] = {}
    numbers = {
        "alpha": ("alpha",),
        "max_increase": ("error_rate", "max_increase"),
        "p50": ("latency", "p50_ratio"),
    }
    numbers["p99"] = ("latency", "p99_ratio")
    # The optional quality guard (labels joined on client_request_id): labels= turns it on.
    numbers |= {
        "max_decrease": ("quality", "max_decrease"),
        "max_mae_increase": ("quality", "max_increase"),
        "max_error": ("quality", "max_error"),
    }
    for word in words:
        key, sep, value = word.partition("=")
        try:
            if not sep:
                raise ValueError
            if key == "steps":
                options["steps"] = [int(v) for v in value.split(",")]
            elif key == "step":
                options["step_duration_s"] = float(value)
            elif key in numbers:
                *section, field = numbers[key]
                target = guard.setdefault(section[0], {}) if section else guard
                target[field] = float(value)
            elif key == "labels" and value:
                source = "labels_path" if value.startswith("/") else "labels_table"
                guard.setdefault("quality", {})[source] = value
            elif key == "metric" and value:
                guard.setdefault("quality", {})["metric"] = value
            elif key == "min_labels":
                guard.setdefault("quality", {})["min_labels"] = int(value)
            elif key in ("errors", "latency") and value in ("on", "off"):
                guard.setdefault("error_rate" if key == "errors" else "latency", {})["enabled"] = (
                    value == "on"
                )
            else:
                raise ValueError
        except ValueError:
            raise UsageError(
                f"Cannot read {word!r}: use steps=5,25,50,100 step=SECONDS alpha=A max_increase=X "
                "p50=RATIO p99=RATIO errors=on|off latency=on|off, and for a quality guard "
                "labels=CATALOG.SCHEMA.TABLE|/PATH metric=accuracy|mae max_decrease=X "
                "max_mae_increase=X max_error=X min_labels=N."
            ) from None
    if guard:
        options["guard"] = guard
    return options


def _number(x: float | None, percent: bool, missing: str = "?") -> str:
    if x is None:
        return missing
    return f"{x:.2%}" if percent else f"{x:.2f}"


def rollout_summary(name: str, state: dict[str, Any] | None) -> str:
    """The rollout as a few lines: state, step, reason, and each guard's estimate and interval."""
    if not state:
        return f"{name}: no rollout"
    steps = state["steps"]
    where = f"{state['step']}% (step {state.get('step_index', 0) + 1} of {len(steps)})"
    lines = [f"{name}: rollout to {state['to']} {state['state']} at {where}"]
    if state.get("reason"):
        lines.append(f"  reason: {state['reason']}")
    for guard in (state.get("estimate") or {}).get("guards", []):
        percent = guard["name"] in ("error_rate_increase", "quality_accuracy_decrease")
        flag = "  BREACH" if guard["breached"] else ""
        lines.append(
            f"  {guard['name']}: {_number(guard['estimate'], percent)} "
            f"[{_number(guard['lower'], percent)}, {_number(guard['upper'], percent, 'inf')}] "
            f"(limit {_number(guard['threshold'], percent)}){flag}"
        )
    return "\n".join(lines)


def _build_parsers() -> dict[str, MagicArgumentParser]:
    create = _with_wait(_parser("create"))
    create.add_argument("name", nargs="?", help="endpoint name (else the body's `name`)")
    traffic = _with_wait(_parser("traffic", "name"))
    traffic.add_argument("split", nargs="+", metavar="SERVED=PERCENT")
    shadow = _parser("shadow", "name")
    shadow.add_argument("setting", nargs="?", metavar="SERVED=PERCENT|off", help="omit to show the config")
    rollout = _parser("rollout", "name")
    rollout.add_argument(
        "words",
        nargs="*",
        metavar="SERVED [steps=5,25,50,100] [step=60] [alpha=0.05] ... | status|pause|resume|cancel",
        help="start a rollout to SERVED, or act on the running one (omit: status)",
    )
    logs = _parser("logs", "name")
    logs.add_argument("served", nargs="?")
    query = _parser("query", "name")
    query.add_argument("-d", "--data", metavar="VAR", help="a pandas DataFrame variable to score")
    query.add_argument("--served", help="score this served entity, ignoring the traffic split")
    query.add_argument(
        "--stream",
        nargs="?",
        const="",
        metavar="QUESTION",
        help="stream an agent's answer, printing tokens as they arrive (the question, else the body or -d)",
    )
    validate = _parser("validate", "model_uri")
    validate.add_argument("-d", "--data", metavar="VAR", help="a pandas DataFrame variable to score")
    validate.add_argument(
        "--override", action="append", default=[], metavar="REQ", help="pip requirement override"
    )
    validate.add_argument("--env-manager", default="uv", choices=["uv", "auto", "local"])
    wait = _parser("wait", "name")
    wait.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S)
    monitor = _parser("monitor", "name")
    monitor.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    monitor.add_argument("--window", type=float, default=900.0, help="seconds of history charted")
    grants = _IntermixedParser(prog="%serve grants")
    grants.add_argument("action", choices=["show", "grant", "revoke"])
    grants.add_argument("securable_type", help="catalog, schema, function (a model) or table")
    grants.add_argument("full_name", help="e.g. main, main.default, main.default.iris")
    grants.add_argument("privileges", nargs="*", help="to grant or revoke, e.g. USE_CATALOG EXECUTE")
    grants.add_argument("--principal", help="service principal (name or application id) or 'account users'")
    grants.add_argument("--effective", action="store_true", help="show: include inherited grants")
    promote = _with_wait(_parser("promote", "name"))
    promote.add_argument("--to", metavar="URL", help="URL of the target workspace")
    promote.add_argument("--profile", help="~/.databrickscfg profile of the target")
    promote.add_argument("--token-file", help="file holding the target's token (else $DATABRICKS_TOKEN)")
    promote.add_argument("--copy-models", action="store_true", help="register the model versions there first")
    promote.add_argument("--target-registry-uri", help="MLflow registry of the target")
    promote.add_argument("--source-registry-uri", help="MLflow registry of this server")
    return {
        "create": create,
        "update": _with_wait(_parser("update", "name")),
        "list": _parser("list"),
        "get": _parser("get", "name"),
        "wait": wait,
        "delete": _parser("delete", "name"),
        "cancel": _parser("cancel", "name"),
        "logs": logs,
        "traffic": traffic,
        "shadow": shadow,
        "rollout": rollout,
        "query": query,
        "table": _parser("table", "name"),
        "monitor": monitor,
        "whoami": _parser("whoami"),
        "grants": grants,
        "validate": validate,
        "promote": promote,
    }


def parse_body(cell: str | None, what: str) -> dict[str, Any]:
    """A cell body in JSON or YAML, which must be a mapping."""
    if not cell or not cell.strip():
        raise UsageError(f"%%serve {what} needs a cell body (YAML or JSON); see %serve?")
    try:
        body = json.loads(cell)
    except ValueError:
        import yaml

        try:
            body = yaml.safe_load(cell)
        except yaml.YAMLError as exc:
            raise UsageError(f"The cell body is neither JSON nor valid YAML: {exc}") from None
    if not isinstance(body, dict):
        raise UsageError(f"The cell body must be a mapping (YAML or JSON object), not {type(body).__name__}.")
    return body


def parse_split(items: list[str]) -> dict[str, int]:
    """`["current=90", "challenger=10"]` -> `{"current": 90, "challenger": 10}`."""
    split: dict[str, int] = {}
    for item in items:
        served, sep, percent = item.partition("=")
        if not sep or not served or not percent.strip().isdigit():
            raise UsageError(f"Traffic must be given as SERVED=PERCENT (e.g. current=90); got {item!r}.")
        split[served] = int(percent)
    return split


# -- the magics -------------------------------------------------------------------------------


@magics_class
class ServeMagics(Magics):
    """Deploy, query and watch jupyter-serving endpoints from notebook cells (see `%serve?`)."""

    def __init__(self, shell: InteractiveShell | None = None, client: Client | None = None) -> None:
        super().__init__(shell)
        self._client = client
        self._parsers = _build_parsers()
        self._commands: dict[str, Callable[..., Any]] = {
            name: getattr(self, f"_cmd_{name}") for name in self._parsers
        }

    @property
    def client(self) -> Client:
        if self._client is None:
            self.connect()
        assert self._client is not None
        return self._client

    def connect(self) -> ServerInfo:
        """Find (or start) the server, and say in one line which one this kernel uses."""
        from jupyter_serving.notebook import discovery

        info = discovery.from_env(os.environ) or discovery.from_parent_jupyter(os.environ)
        if info is None:
            # Starting a server takes seconds: say so at once, then replace the line with the outcome.
            waiting = "jupyter-serving: no server found; starting an embedded server for this kernel..."
            handle = display({"text/plain": waiting}, raw=True, display_id=True)
            try:
                info = discovery.embedded_server()
            except Exception as exc:
                handle.update(
                    {"text/plain": f"jupyter-serving: could not start an embedded server: {exc}"}, raw=True
                )
                raise
            handle.update({"text/plain": info.describe()}, raw=True)
        else:
            print(info.describe())
        self._client = Client.from_server(info)
        return info

    @needs_local_scope
    @line_cell_magic
    def serve(self, line: str, cell: str | None = None, local_ns: dict[str, Any] | None = None) -> Any:
        """Manage jupyter-serving model endpoints (Databricks Model Serving, locally).

        Cell magics (the body is YAML or JSON, exactly the REST schema):

          %%serve create [NAME] [--no-wait] [--timeout S]
              Body: the create request, `name` + `config` (+ `tags`, `description`). With NAME on
              the line, the body may be just the config. Shows progress, updated in place, until
              the endpoint is READY or the update fails (then the error is shown).
                  %%serve create
                  name: iris
                  config:
                    served_entities:
                      - entity_name: iris-lr
                        entity_version: "1"
                        workload_size: Small
                        scale_to_zero_enabled: false
          %%serve update NAME [--no-wait] [--timeout S]
              Body: the new config (`served_entities`, `traffic_config`, `auto_capture_config`).
          %%serve query NAME [--served SERVED] [--stream]
              Body: an invocation payload (`dataframe_split`, `dataframe_records`, `instances`,
              `inputs`, with optional `params`). Returns the predictions as a DataFrame.
              With --stream (an agent's `input` / a chat model's `messages`), prints the
              answer's text as the model yields it.

        Line magics:

          %serve list                  all endpoints: state, served entities, traffic
          %serve get NAME              one endpoint: state, entities, versions, replicas, traffic
          %serve wait NAME [--timeout S]
                                       wait until the running update finishes (progress display)
          %serve delete NAME           delete the endpoint and stop its replicas
          %serve cancel NAME           cancel the update in progress
          %serve logs NAME [SERVED]    a served entity's logs (SERVED optional with one entity)
          %serve traffic NAME A=90 B=10 [--no-wait]
                                       change only the traffic split (percentages sum to 100)
          %serve rollout NAME SERVED [steps=5,25,50,100] [step=60] [alpha=0.05]
                  [max_increase=0] [p50=1.5] [p99=3] [errors=off] [latency=off]
                                       move the traffic to SERVED step by step (step: seconds
                                       per step); a sequential guard on errors and latency
                                       rolls back at once on a breach. Quality guard (labels
                                       joined on client_request_id): labels=CAT.SCHEMA.TABLE or
                                       /PATH [metric=accuracy|mae] [max_decrease=0]
                                       [max_mae_increase=0 max_error=X] [min_labels=N]
          %serve rollout NAME [status|pause|resume|cancel]
                                       the rollout's state, step, guard estimate; or act on it
          %serve shadow NAME challenger=20 | off
                                       mirror 20 % of the live requests to `challenger` (a served
                                       entity with no live traffic); the client gets the live
                                       answer, the shadow's goes to the inference table
                                       (`compare_shadow`). Without a setting: show it; off: stop
                                       ask an agent or chat model; its answer is printed token
                                       by token as it arrives (as in the OpenAI clients)
          %serve query NAME -d VAR [--served SERVED]
                                       score the pandas DataFrame VAR; returns the predictions
                                       as a DataFrame on VAR's index (`served_model_name` in .attrs)
          %serve table NAME            the endpoint's inference table as a pandas DataFrame
          %serve monitor NAME [--interval S] [--window S]
                                       live charts (requests, latency, errors, replicas, traffic)
                                       and events, updated in place; returns the EndpointMonitor
          %serve whoami                who this notebook's token is (admin, or a service principal)
          %serve grants show TYPE NAME [--principal P] [--effective]
          %serve grants grant|revoke TYPE NAME --principal P PRIVILEGE...
                                       Unity Catalog grants (TYPE: catalog, schema, function for a
                                       model, table). An endpoint's creator needs USE_CATALOG,
                                       USE_SCHEMA and EXECUTE to serve a three-level model
          %serve validate MODEL_URI -d VAR [--override REQ]... [--env-manager uv|auto|local]
                                       before creating an endpoint: build the environment it would
                                       use (same cache as the server), predict VAR there, show the
                                       build log and the output (or give the payload as the body)
          %serve promote NAME --to URL [--copy-models] [--profile P] [--token-file F] [--no-wait]
                                       create or update the same endpoint on another workspace
                                       (Databricks, or another jupyter-serving server) through
                                       databricks-sdk; --copy-models registers the served model
                                       versions in its registry first. Token: $DATABRICKS_TOKEN,
                                       --token-file or a ~/.databrickscfg --profile

        `get` and `list` return objects whose `.endpoint` / `.endpoints` hold the JSON. Errors
        show the server's message. The server is found when the extension loads:
        $JUPYTER_SERVING_URL and $JUPYTER_SERVING_TOKEN; else the Jupyter server this kernel runs
        under; else an embedded server started for this kernel, which stops with it. In Python,
        `jupyter_serving.Client()` offers the same operations.
        """
        words = line.strip().split(None, 1)
        if not words:
            raise UsageError(f"Say what to do: %serve {{{'|'.join(self._commands)}}} ...; see %serve?")
        command, rest = words[0], words[1] if len(words) > 1 else ""
        if command not in self._commands:
            raise UsageError(f"Unknown subcommand {command!r}; use one of: {', '.join(self._commands)}.")
        try:
            argv = shlex.split(rest)
        except ValueError as exc:  # e.g. an unclosed quote
            raise UsageError(f"Cannot read the arguments of %serve {command}: {exc}") from None
        args = self._parsers[command].parse_args(argv)
        assert self.shell is not None  # a registered magic runs in its shell
        try:
            return self._commands[command](
                args, cell, local_ns if local_ns is not None else self.shell.user_ns
            )
        except ServingAPIError as exc:
            raise UsageError(f"{exc.error_code}: {exc.message}") from None
        except ServingClientError as exc:
            raise UsageError(str(exc)) from None

    # -- subcommands --------------------------------------------------------------------------

    def _cmd_create(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        body = parse_body(cell, "create")
        if args.name and "config" not in body:
            body = {"name": args.name, "config": body}
        name = args.name or body.get("name")
        if not name:
            raise UsageError("Name the endpoint: `%%serve create NAME` or a `name:` in the body.")
        extra = {k: v for k, v in body.items() if k not in ("name", "config")}
        if "config" not in body:
            raise UsageError("The body needs a `config` with `served_entities`; see %serve?")
        self._deploy(name, lambda: self.client.create(name, body["config"], **extra), args)

    def _cmd_update(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        config = parse_body(cell, "update")
        self._deploy(args.name, lambda: self.client.update_config(args.name, config), args)

    def _cmd_traffic(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        split = parse_split(args.split)
        self._deploy(args.name, lambda: self.client.set_traffic(args.name, split), args)

    def _cmd_shadow(self, args: Any, cell: str | None, ns: dict[str, Any]) -> str:
        """Show, set or stop the endpoint's shadow traffic; returns the config as a line."""
        if args.setting is None:
            config = self.client.shadow(args.name)
        elif args.setting.lower() == "off":
            config = self.client.set_shadow(args.name, None) or None
        else:
            ((served, percent),) = parse_split([args.setting]).items()
            config = self.client.set_shadow(args.name, served, percent)
        if not config:
            return f"{args.name}: no shadow traffic"
        served, percent = config["served_entity_name"], config["percentage"]
        return f"{args.name}: {percent}% of live requests mirrored to {served}"

    def _cmd_rollout(self, args: Any, cell: str | None, ns: dict[str, Any]) -> str:
        """Start a progressive rollout, or show, pause, resume or cancel it; returns its state as lines."""
        words = list(args.words) or ["status"]
        action = words[0].lower()
        if action in ("status", "pause", "resume", "cancel") and len(words) == 1:
            state = {
                "status": self.client.rollout,
                "pause": self.client.pause_rollout,
                "resume": self.client.resume_rollout,
                "cancel": self.client.cancel_rollout,
            }[action](args.name)
        else:
            to, options = words[0], parse_rollout_options(words[1:])
            state = self.client.start_rollout(args.name, to, **options)
        return rollout_summary(args.name, state)

    def _cmd_wait(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        args.no_wait = False
        self._deploy(args.name, lambda: self.client.get(args.name), args)

    def _cmd_list(self, args: Any, cell: str | None, ns: dict[str, Any]) -> EndpointList:
        return EndpointList(with_details(self.client, self.client.list()))

    def _cmd_whoami(self, args: Any, cell: str | None, ns: dict[str, Any]) -> str:
        """The principal this notebook's token belongs to (admin: the server owner)."""
        me = self.client.me()
        admin = (me.get("jupyter_serving") or {}).get("admin")
        role = "admin" if admin else f"service principal {me.get('applicationId')}"
        return f"{me.get('userName')} ({role})"

    def _cmd_grants(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        """Print the grants on a securable (after the change, for grant and revoke)."""
        where = (args.securable_type, args.full_name)
        if args.action == "show":
            if args.privileges:
                raise UsageError("%serve grants show takes no privileges; use grant or revoke.")
            rows = self.client.grants(*where, principal=args.principal, effective=args.effective)
        else:
            if not args.principal or not args.privileges:
                raise UsageError(f"%serve grants {args.action} needs --principal and at least one privilege.")
            change = {"add" if args.action == "grant" else "remove": args.privileges}
            rows = self.client.update_grants(*where, args.principal, **change)
        print(grants_table(rows) if rows else f"No grants on {args.securable_type} '{args.full_name}'.")

    def _cmd_get(self, args: Any, cell: str | None, ns: dict[str, Any]) -> EndpointCard:
        return EndpointCard(self.client.get(args.name))

    def _cmd_delete(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        self.client.delete(args.name)
        print(f"Deleted endpoint '{args.name}'.")

    def _cmd_cancel(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        endpoint = self.client.cancel_update(args.name)
        display(_bundle(endpoint, note="Update canceled."), raw=True)

    def _cmd_monitor(self, args: Any, cell: str | None, ns: dict[str, Any]) -> Any:
        from jupyter_serving.notebook.widgets import EndpointMonitor

        self.client.get(args.name)  # an unknown name is a clear error, not an empty monitor
        return EndpointMonitor(self.client, args.name, interval=args.interval, window_s=args.window)

    def _cmd_logs(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        print(self.client.logs(args.name, args.served) or "(no log lines yet)")

    def _cmd_query(self, args: Any, cell: str | None, ns: dict[str, Any]) -> Any:
        if args.stream is not None:
            return self._stream(args, cell, ns)
        has_body = bool(cell and cell.strip())
        if has_body == bool(args.data):
            raise UsageError("Give the input either as `-d VAR` (a DataFrame) or as the cell body, not both.")
        if args.data:
            if args.data not in ns:
                raise UsageError(f"No variable named {args.data!r} in the notebook.")
            data = ns[args.data]
        else:
            data = parse_body(cell, "query")
        try:
            return self.client.query(args.name, data, args.served)
        except TypeError as exc:
            raise UsageError(str(exc)) from None

    def _stream(self, args: Any, cell: str | None, ns: dict[str, Any]) -> None:
        """Print the text of each chunk as it arrives. Plain `print` with a flush per token, so a
        terminal, nbclient or a frontend without widgets shows the answer growing too."""
        given = [bool(args.stream), bool(cell and cell.strip()), bool(args.data)]
        if sum(given) != 1:
            raise UsageError(
                'Give the question once: `--stream "QUESTION"`, the cell body, or `-d VAR`; see %serve?'
            )
        if args.data and args.data not in ns:
            raise UsageError(f"No variable named {args.data!r} in the notebook.")
        request = args.stream or (ns[args.data] if args.data else parse_body(cell, "query"))
        if not isinstance(request, str | Mapping):
            raise UsageError(f"--stream takes a question or a payload dict, not {type(request).__name__}.")
        chunks = self.client.stream(args.name, request, args.served)
        printed = False
        try:
            for chunk in chunks:
                text = chunk_text(chunk)
                if not text and not _is_event(chunk):
                    text = json.dumps(chunk) + "\n"  # a chunk with no text: show it whole
                if text:
                    print(text, end="", flush=True)
                    printed = True
        except KeyboardInterrupt:
            raise UsageError("Stopped streaming; the model's generator was closed.") from None
        finally:
            chunks.close()  # at once, not when the traceback goes: the server stops the model
            if printed:
                print(flush=True)

    def _cmd_validate(self, args: Any, cell: str | None, ns: dict[str, Any]) -> Any:
        from jupyter_serving.notebook.validate import validate

        if bool(cell and cell.strip()) == bool(args.data):
            raise UsageError("Give the input either as `-d VAR` (a DataFrame) or as the cell body, not both.")
        if args.data and args.data not in ns:
            raise UsageError(f"No variable named {args.data!r} in the notebook.")
        data = ns[args.data] if args.data else parse_body(cell, "validate")
        try:
            return validate(args.model_uri, data, args.override, env_manager=args.env_manager)
        except TypeError as exc:
            raise UsageError(str(exc)) from None

    def _cmd_promote(self, args: Any, cell: str | None, ns: dict[str, Any]) -> Any:
        """The same promotion as `jupyter-serving promote`, from this kernel's server."""
        from pathlib import Path

        from jupyter_serving.cli import read_token_file
        from jupyter_serving.promotion import PromotionError, PromotionOptions, TargetAuth, promote

        if not args.to and not args.profile:
            raise UsageError("Say where to promote to: %serve promote NAME --to URL (or --profile NAME).")
        token = None
        if args.token_file:
            try:
                token = read_token_file(Path(args.token_file).expanduser())  # 0600, as the CLI wants
            except OSError as exc:
                raise UsageError(f"Cannot read the token file: {exc}") from None
            except SystemExit as exc:
                raise UsageError(str(exc.code).removeprefix("jupyter-serving: ")) from None
        options = PromotionOptions(
            copy_models=args.copy_models,
            wait=not args.no_wait,
            timeout_s=args.timeout,
            source_registry_uri=args.source_registry_uri,
            target_registry_uri=args.target_registry_uri,
        )
        try:
            return promote(self.client, args.name, TargetAuth(args.to, token, args.profile), options)
        except PromotionError as exc:
            raise UsageError(str(exc)) from None

    def _cmd_table(self, args: Any, cell: str | None, ns: dict[str, Any]) -> Any:
        return self.client.inference_table(args.name)

    # -- progress -----------------------------------------------------------------------------

    def _deploy(self, name: str, start: Callable[[], dict[str, Any]], args: Any) -> None:
        """Run `start`, then show the endpoint in one display updated in place until it settles."""
        started = time.monotonic()
        endpoint = start()
        handle: DisplayHandle = display(_bundle(endpoint), raw=True, display_id=True)
        if args.no_wait:
            return
        shown = [_signature(endpoint)]

        def show(ep: dict[str, Any]) -> None:
            if _signature(ep) != shown[0]:
                shown[0] = _signature(ep)
                handle.update(_bundle(ep, note=_elapsed(started)), raw=True)

        try:
            final = self.client.wait(name, timeout=args.timeout, callback=show)
        except EndpointUpdateFailed as exc:
            handle.update(
                _bundle(exc.endpoint, note=f"Failed after {time.monotonic() - started:.1f} s."), raw=True
            )
            raise UsageError(str(exc)) from None
        except WaitTimeout as exc:
            raise UsageError(f"{exc} The update goes on; `%serve wait {name}` waits again.") from None
        except KeyboardInterrupt:
            raise UsageError(
                f"Stopped waiting for '{name}'; its update goes on. `%serve cancel {name}` cancels it."
            ) from None
        handle.update(_bundle(final, note=f"Done in {time.monotonic() - started:.1f} s."), raw=True)


def _bundle(endpoint: Mapping[str, Any], note: str = "") -> dict[str, str]:
    return {
        "text/html": render_endpoint(endpoint, note=note),
        "text/plain": render_endpoint_text(endpoint, note=note),
    }


def _signature(endpoint: Mapping[str, Any]) -> str:
    # What the progress display shows, minus timestamps: redraw only when it changes, so terminal
    # front ends (which print every update) see one line per state change.
    return render_endpoint_text(endpoint)


def _is_event(chunk: Any) -> bool:
    # ResponsesAgent events other than text deltas (item done, tool calls...) and chat chunks with an
    # empty delta (the final one, carrying finish_reason and usage) add no text: skip them quietly.
    return isinstance(chunk, Mapping) and (
        str(chunk.get("type", "")).startswith("response.") or "choices" in chunk or "delta" in chunk
    )


def _elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s elapsed."


# -- extension entry points --------------------------------------------------------------------


def load_ipython_extension(ip: InteractiveShell) -> None:
    """`%load_ext jupyter_serving`: register the magics and connect to (or start) the server."""
    magics = ServeMagics(ip)
    ip.register_magics(magics)
    try:
        magics.connect()
    except Exception as exc:  # the magics stay usable and retry discovery on first use
        print(f"jupyter-serving: no server yet; %serve will try again. ({exc})")


def unload_ipython_extension(ip: InteractiveShell) -> None:
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("serve", None)
