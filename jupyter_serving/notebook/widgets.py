"""ipywidgets for endpoints: `EndpointForm` (create/edit, like the Serving UI) and `EndpointMonitor`.

Both take a `Client` and only call its methods. Anything slow (waiting for a deploy, refreshing the
monitor) runs on a daemon thread that sets widget traits, so the kernel stays free between cells.
The rules (traffic rebalancing, form -> request, metrics -> rates) are module functions, unit-tested
without widgets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from jupyter_serving.model.config import WORKLOAD_TYPES, default_served_name
from jupyter_serving.notebook.client import (
    Client,
    EndpointUpdateFailed,
    ServingAPIError,
    ServingClientError,
    parse_metrics,
    served_entities,
)
from jupyter_serving.notebook.health import HealthNotices
from jupyter_serving.notebook.magics import (
    badge,
    endpoint_status,
    render_endpoint,
    text_table,
    traffic_bar,
)

__all__ = ["EndpointForm", "EndpointMonitor", "rebalance"]

WORKLOAD_SIZES = ("Small", "Medium", "Large")
_ROW = w.Layout(width="100%")
_LABEL = {"description_width": "140px"}


# -- rules ---------------------------------------------------------------------------------------


def rebalance(values: list[int], changed: int) -> list[int]:
    """Keep `values[changed]` and share the rest of 100 among the others, in proportion to their
    current values (evenly when they are all 0); integer shares by largest remainder."""
    fixed = max(0, min(100, values[changed]))
    others = [i for i in range(len(values)) if i != changed]
    if not others:
        return [100]
    remaining = 100 - fixed
    weights = [values[i] for i in others]
    total = sum(weights)
    raw = [remaining * wt / total for wt in weights] if total > 0 else [remaining / len(others)] * len(others)
    shares = [int(r) for r in raw]
    for k in sorted(range(len(others)), key=lambda k: raw[k] - shares[k], reverse=True)[
        : remaining - sum(shares)
    ]:
        shares[k] += 1
    out = list(values)
    out[changed] = fixed
    for i, share in zip(others, shares, strict=True):
        out[i] = share
    return out


def normalize(values: list[int]) -> list[int]:
    """Scale shares to sum to 100 (after an entity is added or removed)."""
    if not values:
        return []
    total = sum(values)
    if total == 100:
        return list(values)
    if total == 0:
        values = [1] * len(values)
    # Rebalancing around a zero-weight phantom entry spreads 100 by the current proportions.
    return rebalance([*values, 0], len(values))[:-1]


def parse_env_vars(text: str) -> dict[str, str]:
    """`KEY=VALUE` lines (blank lines and `#` comments skipped) to a dict."""
    env: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Environment variable line {n} must look like KEY=VALUE; got {line!r}.")
        env[key.strip()] = value.strip()
    return env


@dataclass
class EntityCounters:
    requests: float = 0.0
    errors: float = 0.0
    client_errors: float = 0.0  # 4xx: the caller's mistake, not the model failing
    server_errors: float = 0.0  # 5xx
    latency_sum: float = 0.0
    latency_count: float = 0.0
    replicas: float = 0.0
    inflight: float = 0.0


def metric_counters(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, EntityCounters]:
    """Per served entity: the counters of the server's metrics route (see `data/metrics.py`)."""
    out: dict[str, EntityCounters] = {}
    for name, labels, value in samples:
        c = out.setdefault(labels.get("served_entity", ""), EntityCounters())
        if name == "requests_total":
            c.requests += value
            status = labels.get("status", "200")[:1]
            c.errors += value if status in ("4", "5") else 0.0
            c.client_errors += value if status == "4" else 0.0
            c.server_errors += value if status == "5" else 0.0
        elif name == "request_latency_seconds_sum":
            c.latency_sum += value
        elif name == "request_latency_seconds_count":
            c.latency_count += value
        elif name == "replicas":
            c.replicas = value
        elif name == "inflight_requests":
            c.inflight = value
    return out


def rates(before: EntityCounters | None, now: EntityCounters, seconds: float) -> tuple[float, float | None]:
    """Requests per second and mean latency (ms) between two scrapes; latency None without requests."""
    if before is None or seconds <= 0:
        return 0.0, None
    count = now.latency_count - before.latency_count
    rps = max(0.0, now.requests - before.requests) / seconds
    latency = (now.latency_sum - before.latency_sum) / count * 1000 if count > 0 else None
    return rps, latency


# -- the form ------------------------------------------------------------------------------------


class EntityEditor(w.VBox):
    """One served entity of the form: model, version, name, compute, scale-out, env vars, traffic."""

    def __init__(self, models: Mapping[str, list[str]], on_remove: Callable[[EntityEditor], None]) -> None:
        self.models = dict(models)
        self.model = w.Dropdown(options=sorted(self.models), description="Model", style=_LABEL, layout=_ROW)
        self.version = w.Dropdown(description="Version", style=_LABEL)
        self.served_name = w.Text(description="Served entity name", style=_LABEL, layout=_ROW)
        self.workload_type = w.Dropdown(
            options=WORKLOAD_TYPES, value="CPU", description="Compute type", style=_LABEL
        )
        self.workload_size = w.Dropdown(
            options=WORKLOAD_SIZES, value="Small", description="Scale-out", style=_LABEL
        )
        self.scale_to_zero = w.Checkbox(description="Scale to zero", indent=False)
        self.env_vars = w.Textarea(
            description="Environment vars", placeholder="KEY=VALUE, one per line", style=_LABEL, layout=_ROW
        )
        self.traffic = w.IntSlider(value=100, min=0, max=100, description="Traffic %", style=_LABEL)
        self.remove = w.Button(description="Remove", icon="trash", layout=w.Layout(width="auto"))
        self.remove.on_click(lambda _: on_remove(self))
        self.model.observe(self._on_model_change, names="value")
        self.version.observe(self._on_version_change, names="value")
        self._on_model_change()
        super().__init__(
            children=[
                self.model,
                self.version,
                self.served_name,
                w.HBox([self.workload_type, self.workload_size, self.scale_to_zero]),
                self.env_vars,
                w.HBox([self.traffic, self.remove]),
            ],
            layout=w.Layout(border="1px solid #d0d7de", padding="6px", margin="4px 0"),
        )

    def _on_model_change(self, change: Any = None) -> None:
        versions = sorted(self.models.get(self.model.value, []), key=_version_key, reverse=True)
        self.version.options = versions
        self.version.value = versions[0] if versions else None
        self._on_version_change()

    def _on_version_change(self, change: Any = None) -> None:
        # The placeholder shows the name the server will give when the field is left empty.
        self.served_name.placeholder = self.default_name

    @property
    def default_name(self) -> str:
        return default_served_name(self.model.value, self.version.value) if self.model.value else ""

    @property
    def name(self) -> str:
        return self.served_name.value.strip() or self.default_name

    def to_json(self) -> dict[str, Any]:
        if not self.model.value or not self.version.value:
            raise ValueError("Pick a model and a version for every served entity.")
        entity: dict[str, Any] = {
            "name": self.name,
            "entity_name": self.model.value,
            "entity_version": str(self.version.value),
            "workload_type": self.workload_type.value,
            "workload_size": self.workload_size.value,
            "scale_to_zero_enabled": bool(self.scale_to_zero.value),
        }
        env = parse_env_vars(self.env_vars.value)
        if env:
            entity["environment_vars"] = env
        return entity

    def load(self, entity: Mapping[str, Any], percent: int) -> None:
        model = entity.get("entity_name") or entity.get("model_name") or ""
        version = str(entity.get("entity_version") or entity.get("model_version") or "")
        if model not in self.models:  # a model the registry no longer lists still round-trips
            self.models[model] = [version]
            self.model.options = sorted(self.models)
        elif version not in self.models[model]:
            self.models[model] = [*self.models[model], version]
        self.model.value = model
        self._on_model_change()
        self.version.value = version
        self.served_name.value = entity.get("name", "")
        self.workload_type.value = entity.get("workload_type") or "CPU"
        self.workload_size.value = entity.get("workload_size") or "Small"
        self.scale_to_zero.value = bool(entity.get("scale_to_zero_enabled"))
        self.env_vars.value = "\n".join(f"{k}={v}" for k, v in (entity.get("environment_vars") or {}).items())
        self.traffic.value = int(percent)


class EndpointForm(w.VBox):
    """Create or edit an endpoint, in the steps of the Serving UI; the button submits and a status
    line follows the deploy live. `EndpointForm()` creates; `EndpointForm(endpoint="name")` edits. The
    client defaults to the discovered server, as `Client()` does.
    """

    def __init__(
        self, client: Client | None = None, endpoint: str | None = None, *, timeout: float = 1200.0
    ) -> None:
        self.client = client = client if client is not None else _default_client()
        self.timeout = timeout
        self.models = {
            m["name"]: [str(v["version"]) for v in m.get("versions", [])] for m in client.registered_models()
        }
        self.entities: list[EntityEditor] = []
        self._balancing = False
        self._capture_was_on = False  # then switching the table off must be sent as enabled: false
        self._watcher: threading.Thread | None = None
        self.endpoint_name = w.Text(description="Endpoint name", placeholder="my-endpoint", style=_LABEL)
        self.entity_box = w.VBox()
        self.add_entity = w.Button(description="Add served entity", icon="plus")
        self.add_entity.on_click(lambda _: self.add())
        self.inference_table = w.Checkbox(description="Enable inference table", indent=False)
        self.table_prefix = w.Text(description="Table name prefix", style=_LABEL)
        self.submit = w.Button(description="Create", button_style="primary", icon="rocket")
        self.submit.on_click(self._on_submit)
        self.status = w.HTML()
        super().__init__(
            children=[
                w.HTML("<b>Endpoint</b>"),
                self.endpoint_name,
                w.HTML("<b>Served entities</b>"),
                self.entity_box,
                self.add_entity,
                w.HTML("<b>Inference table</b>"),
                w.HBox([self.inference_table, self.table_prefix]),
                self.submit,
                self.status,
            ],
            layout=w.Layout(width="720px"),
        )
        if endpoint is None:
            self.add()
        else:
            self.load(client.get(endpoint))

    # -- served entities and traffic -----------------------------------------------------------

    def add(self) -> EntityEditor:
        editor = EntityEditor(self.models, self.remove)
        editor.traffic.value = 0 if self.entities else 100
        editor.traffic.observe(lambda change, e=editor: self._on_traffic(e), names="value")
        self.entities.append(editor)
        self._entities_changed()
        return editor

    def remove(self, editor: EntityEditor) -> None:
        if len(self.entities) > 1:
            self.entities.remove(editor)
            self._set_traffic(normalize([e.traffic.value for e in self.entities]))
            self._entities_changed()

    def _entities_changed(self) -> None:
        self.entity_box.children = tuple(self.entities)
        alone = len(self.entities) == 1
        for e in self.entities:
            e.remove.disabled = alone
            e.traffic.disabled = alone  # one entity always takes all the traffic

    def _on_traffic(self, editor: EntityEditor) -> None:
        if self._balancing:
            return
        values = [e.traffic.value for e in self.entities]
        self._set_traffic(rebalance(values, self.entities.index(editor)))

    def _set_traffic(self, values: list[int]) -> None:
        self._balancing = True  # our own writes must not trigger another rebalance
        try:
            for e, v in zip(self.entities, values, strict=True):
                e.traffic.value = v
        finally:
            self._balancing = False

    # -- request building and loading ---------------------------------------------------------

    def config(self) -> dict[str, Any]:
        entities = [e.to_json() for e in self.entities]
        config: dict[str, Any] = {
            "served_entities": entities,
            "traffic_config": {
                "routes": [
                    {"served_model_name": e["name"], "traffic_percentage": ed.traffic.value}
                    for e, ed in zip(entities, self.entities, strict=True)
                ]
            },
        }
        if self.inference_table.value or self._capture_was_on:
            config["auto_capture_config"] = {
                "catalog_name": "main",
                "schema_name": "default",
                "table_name_prefix": self.table_prefix.value.strip() or self.endpoint_name.value.strip(),
                "enabled": bool(self.inference_table.value),
            }
        return config

    def request(self) -> dict[str, Any]:
        return {"name": self.endpoint_name.value.strip(), "config": self.config()}

    def load(self, endpoint: Mapping[str, Any]) -> None:
        """Fill the form from an endpoint (GET JSON) and switch it to update mode."""
        config = endpoint.get("config") or endpoint.get("pending_config") or {}
        routes = {
            r["served_model_name"]: r["traffic_percentage"]
            for r in (config.get("traffic_config") or {}).get("routes", [])
        }
        self.endpoint_name.value = endpoint["name"]
        self.entities = []
        for entity in served_entities(endpoint):
            editor = self.add()
            self._balancing = True
            try:
                editor.load(entity, routes.get(entity["name"], 0))
            finally:
                self._balancing = False
        self._entities_changed()
        capture = config.get("auto_capture_config") or {}
        self._capture_was_on = bool(capture.get("enabled"))
        self.inference_table.value = self._capture_was_on
        self.table_prefix.value = capture.get("table_name_prefix", "")
        self._update_mode(endpoint)

    def _update_mode(self, endpoint: Mapping[str, Any]) -> None:
        self.endpoint_name.disabled = True
        self.submit.description = "Update"
        self.status.value = render_endpoint(endpoint)

    # -- submit and live status ---------------------------------------------------------------

    @property
    def is_update(self) -> bool:
        return self.submit.description == "Update"

    def _on_submit(self, _button: Any = None) -> None:
        try:
            body = self.request()
            if not body["name"]:
                raise ValueError("Give the endpoint a name.")
            if self.is_update:
                endpoint = self.client.update_config(body["name"], body["config"])
            else:
                endpoint = self.client.create(body["name"], body["config"])
        except (ValueError, ServingClientError) as exc:
            self._error(exc)
            return
        self.submit.disabled = True
        self._update_mode(endpoint)
        self._watcher = threading.Thread(target=self._watch, args=(body["name"],), daemon=True)
        self._watcher.start()

    def _watch(self, name: str) -> None:
        def show(endpoint: dict[str, Any]) -> None:
            self.status.value = render_endpoint(endpoint)

        try:
            endpoint = self.client.wait(name, timeout=self.timeout, callback=show)
            self._update_mode(endpoint)
        except EndpointUpdateFailed as exc:
            self.status.value = render_endpoint(exc.endpoint)
        except ServingClientError as exc:
            self._error(exc)
        finally:
            self.submit.disabled = False

    def _error(self, exc: Exception) -> None:
        text = f"{exc.error_code}: {exc.message}" if isinstance(exc, ServingAPIError) else str(exc)
        self.status.value = f'<div style="color:#cf222e">{_escape(text)}</div>'

    def wait(self, timeout: float | None = None) -> None:
        """Block until the status line has followed the last submit to its end (for scripts and tests)."""
        if self._watcher is not None:
            self._watcher.join(timeout)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """Outside a widget front end the form cannot be used: say so, and what to use instead."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        name = self.endpoint_name.value.strip()
        what = f"Update form for endpoint '{name}'" if self.is_update else "Create-endpoint form"
        hint = (
            f"{what}: it needs a widget front end (JupyterLab, Notebook 7, VS Code). Elsewhere use "
            "%%serve create / %%serve update, or jupyter_serving.Client."
        )
        return {**bundle, "text/plain": hint, "text/html": f"<div>{_escape(hint)}</div>{self.status.value}"}


# -- the monitor ---------------------------------------------------------------------------------


class EndpointMonitor(w.VBox):
    """State, replicas, traffic, requests/s and latency of one endpoint, with charts of the server's
    metrics history (the last `window_s`) and its latest events, refreshed every `interval` seconds
    on a background thread; `stop()` (or `close()`) ends the refreshing.

    `EndpointMonitor("iris")` watches through the discovered server; `EndpointMonitor(client, "iris")`
    through a given client."""

    def __init__(
        self,
        name_or_client: str | Client,
        name: str | None = None,
        *,
        interval: float = 2.0,
        start: bool = True,
        window_s: float = 900.0,
        charts: bool = True,
    ) -> None:
        if isinstance(name_or_client, str):
            client, name = _default_client(), name_or_client
        else:
            client = name_or_client
        if not name:
            raise TypeError("EndpointMonitor needs the name of the endpoint to watch.")
        self.client = client
        self.name = name
        self.interval = interval
        self.window_s = window_s
        self.header = w.HTML()
        self.table = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(display="" if charts else "none"))
        self.events = w.HTML()
        self.footer = w.HTML()
        self._charts = charts
        self.notice = w.HTML()  # failure / recovery notifications, newest first
        self.notifications: list[tuple[str, str]] = []
        self._notices = HealthNotices(name)  # reads the server's events (see notebook.health)
        self.refreshes = 0
        self._previous: tuple[float, dict[str, EntityCounters]] | None = None
        self._status = "not read yet"  # what the text form shows, kept beside the widgets' HTML
        self._rows: list[tuple[Any, ...]] = []
        self._events: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        parts = [self.header, self.notice, self.table, self.chart, self.events, self.footer]
        super().__init__(children=parts)
        self.refresh()
        if start:
            self.start()

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, daemon=True, name=f"monitor-{self.name}")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.interval + 10)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def close(self) -> None:
        self.stop()
        super().close()

    def _loop(self) -> None:
        # Event.wait is the timer: it returns early when stop() is called.
        while not self._stop.wait(self.interval):
            self.refresh()

    def refresh(self) -> None:
        """Fetch the endpoint and its metrics once and redraw; errors are shown, not raised."""
        try:
            endpoint = self.client.get(self.name)
            counters = metric_counters(parse_metrics(self.client.metrics(self.name)))
        except ServingClientError as exc:
            self.footer.value = f'<span style="color:#cf222e">{_escape(str(exc))}</span>'
            return
        now = time.monotonic()
        before, seconds = (
            ({}, 0.0) if self._previous is None else (self._previous[1], now - self._previous[0])
        )
        self._previous = (now, counters)
        label, tone = endpoint_status(endpoint)
        self._status = label
        self._notify()
        self.header.value = f"<b>{_escape(self.name)}</b> {badge(label, tone)}"
        self.table.value = self._render_entities(endpoint, counters, before, seconds)
        if self._charts:
            self._draw_history(endpoint)
        self.footer.value = f'<span style="color:#57606a">updated {time.strftime("%H:%M:%S")}</span>'
        self.refreshes += 1

    def _draw_history(self, endpoint: Mapping[str, Any]) -> None:
        """The history charts and the last events; a server without the history routes shows none."""
        from jupyter_serving.notebook.charts import history_png

        since = int((time.time() - self.window_s) * 1000)
        try:
            history = self.client.history(self.name, since)
            events = self.client.events(self.name)[-5:]
        except ServingClientError:
            return
        self.chart.value = history_png(history, [e["name"] for e in served_entities(endpoint)])
        self._events = events
        self.events.value = _render_events(events)

    def _notify(self) -> None:
        """Announce failures and recoveries once each, as the server's events report them (see
        notebook.health); a server without the events route announces none."""
        try:
            events = self.client.events(self.name, self._notices.since_ms)
        except ServingClientError:
            return
        fresh = self._notices.read(events)
        if not fresh:
            return
        self.notifications = fresh[::-1] + self.notifications
        colors = {"bad": "#cf222e", "ok": "#1a7f37"}
        self.notice.value = "".join(
            f'<div style="color:{colors[tone]};font-weight:600">{_escape(message)}</div>'
            for tone, message in self.notifications[:5]
        )

    def _render_entities(
        self,
        endpoint: Mapping[str, Any],
        counters: dict[str, EntityCounters],
        before: dict[str, EntityCounters],
        seconds: float,
    ) -> str:
        self._rows = entity_rows(endpoint, counters, before, seconds)
        rows = []
        for row in self._rows:
            cells = [f"<b>{_escape(row[0])}</b>", row[1], traffic_bar(row[2]), *row[3:]]
            rows.append("<tr>" + "".join(f'<td style="padding:2px 8px">{x}</td>' for x in cells) + "</tr>")
        head = "".join(f'<th style="padding:2px 8px;text-align:left">{h}</th>' for h in MONITOR_COLUMNS)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"

    # -- outside a widget front end -----------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget for front ends that render widgets; a snapshot as HTML and text for the rest
        (nbconvert, a saved notebook, a terminal IPython), instead of the widget's repr."""
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        return {**bundle, "text/plain": self.text(), "text/html": self.snapshot_html()}

    def text(self) -> str:
        """The monitor as plain text: state, one line per served entity, the latest events."""
        lines = [f"{self.name}: {self._status}"]
        lines += [message for _, message in self.notifications[:5]]
        if self._rows:
            table = [MONITOR_COLUMNS, *[(r[0], r[1], _percent(r[2]), *r[3:]) for r in self._rows]]
            lines += ["", text_table(table)]
        if self._events:
            lines += ["", "Events:", *[_event_text(e) for e in reversed(self._events)]]
        return "\n".join(lines)

    def snapshot_html(self) -> str:
        """The widget's parts as one HTML block, the chart inlined as a PNG."""
        import base64

        chart = ""
        if self._charts and self.chart.value:
            data = base64.b64encode(self.chart.value).decode()
            chart = f'<img alt="metrics history of {_escape(self.name)}" src="data:image/png;base64,{data}"/>'
        parts = (self.header.value, self.notice.value, self.table.value, chart, self.events.value)
        return "<div>" + "".join(parts) + self.footer.value + "</div>"


MONITOR_COLUMNS = (
    "Served entity",
    "Replicas",
    "Traffic",
    "Requests/s",
    "Latency ms",
    "Requests",
    "Errors 4xx",
    "Errors 5xx",
)


def entity_rows(
    endpoint: Mapping[str, Any],
    counters: dict[str, EntityCounters],
    before: dict[str, EntityCounters],
    seconds: float,
) -> list[tuple[Any, ...]]:
    """One row per served entity: name, ready/replicas, traffic % (None off the split), then rates
    and totals as display strings."""
    config = endpoint.get("config") or endpoint.get("pending_config") or {}
    routes = {
        r["served_model_name"]: r["traffic_percentage"]
        for r in config.get("traffic_config", {}).get("routes", [])
    }
    rows: list[tuple[Any, ...]] = []
    for e in served_entities(endpoint):
        local = e.get("local") or {}
        c = counters.get(e["name"], EntityCounters())
        rps, latency = rates(before.get(e["name"]), c, seconds)
        rows.append(
            (
                e["name"],
                f"{local.get('ready_replicas', 0)}/{local.get('replicas', 0)}",
                routes.get(e["name"]),
                f"{rps:.1f}",
                "-" if latency is None else f"{latency:.1f}",
                f"{int(c.requests)}",
                f"{int(c.client_errors)}",
                f"{int(c.server_errors)}",
            )
        )
    return rows


def _percent(value: int | None) -> str:
    return "" if value is None else f"{int(value)}%"


def _event_text(e: Mapping[str, Any]) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(e["timestamp_ms"] / 1000))
    who = f" {e['served_entity']}:" if e.get("served_entity") else ""
    return f"  {when} {e['type'].replace('_', ' ').lower()}{who} {e['message']}"


_SEVERITY_COLOURS = {"ERROR": "#cf222e", "WARNING": "#9a6700"}


def _render_events(events: list[dict[str, Any]]) -> str:
    if not events:
        return ""
    rows = []
    for e in reversed(events):
        colour = _SEVERITY_COLOURS.get(e.get("severity", ""), "#57606a")
        when = time.strftime("%H:%M:%S", time.localtime(e["timestamp_ms"] / 1000))
        who = f" {_escape(e['served_entity'])}:" if e.get("served_entity") else ""
        kind = _escape(e["type"].replace("_", " ").lower())
        rows.append(
            f'<div><span style="color:#57606a">{when}</span> <b style="color:{colour}">{kind}</b>'
            f"{who} {_escape(e['message'])}</div>"
        )
    return "<div><b>Events</b></div>" + "".join(rows)


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def _default_client() -> Client:
    """The client `Client()` makes: the server discovery finds for this kernel."""
    return Client()
