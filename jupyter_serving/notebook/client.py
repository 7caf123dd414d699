"""The Python client for the serving REST API: one method per route, waiters, and DataFrame in/out.

Everything on the notebook side (magics, widgets, the MLflow target) talks to the server through
`Client`; nothing else here builds URLs. Errors form one small hierarchy:

    ServingClientError
    ├── ServingAPIError (status, error_code, message)   the server answered with an error
    │   ├── BadRequestError          400
    │   ├── AuthenticationError      401 / 403
    │   ├── NotFoundError            404
    │   ├── ConflictError            409 (RESOURCE_ALREADY_EXISTS, RESOURCE_CONFLICT)
    │   └── ServerError              5xx, and an `event: error` in the middle of a stream
    ├── ServingConnectionError       the server could not be reached
    ├── EndpointUpdateFailed         a waiter saw UPDATE_FAILED / UPDATE_CANCELED
    └── WaitTimeout                  a waiter ran out of time (also a TimeoutError)
"""

from __future__ import annotations

import builtins  # `list` in the Client's annotations is its method
import json
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import requests

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_serving.notebook.discovery import ServerInfo

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ConflictError",
    "EndpointUpdateFailed",
    "NotFoundError",
    "ServerError",
    "ServingAPIError",
    "ServingClientError",
    "ServingConnectionError",
    "WaitTimeout",
]

API = "api/2.0/serving-endpoints"
UC_API = "api/2.1/unity-catalog"
TARGET_STATES = ("NOT_UPDATING",)
FAILURE_STATES = ("UPDATE_FAILED", "UPDATE_CANCELED")
# Fields the server adds to a served entity on output; sending them back in a PUT would store them
# as user extras, so `input_config` strips them.
_OUTPUT_ONLY_ENTITY_FIELDS = frozenset(
    {"state", "creator", "creation_timestamp", "local", "foundation_model"}
)


class ServingClientError(Exception):
    """Root of every error the client raises."""


class ServingAPIError(ServingClientError):
    """The server answered with `{"error_code", "message"}` and a non-2xx status."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{error_code}: {message}" if error_code else message)
        self.status = status
        self.error_code = error_code
        self.message = message


class BadRequestError(ServingAPIError):
    pass


class AuthenticationError(ServingAPIError):
    pass


class NotFoundError(ServingAPIError):
    pass


class ConflictError(ServingAPIError):
    pass


class ServerError(ServingAPIError):
    pass


class ServingConnectionError(ServingClientError):
    pass


class EndpointUpdateFailed(ServingClientError):
    """An endpoint's config update ended in UPDATE_FAILED or UPDATE_CANCELED; `.endpoint` is the last GET."""

    def __init__(self, endpoint: dict[str, Any]) -> None:
        self.endpoint = endpoint
        state = endpoint.get("state", {}).get("config_update", "?")
        reason = failure_message(endpoint) or "no deployment message was given"
        super().__init__(f"Endpoint '{endpoint.get('name')}' ended in {state}: {reason}")


class WaitTimeout(ServingClientError, TimeoutError):
    pass


_ERRORS_BY_STATUS: dict[int, type[ServingAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
}


def api_error(status: int, body: str) -> ServingAPIError:
    """Build the typed error for a failed response, keeping the server's own message."""
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "message" in payload:
        code, message = str(payload.get("error_code", "")), str(payload["message"])
    else:
        code, message = f"HTTP_{status}", body.strip() or f"HTTP {status}"
    cls = ServerError if status >= 500 else _ERRORS_BY_STATUS.get(status, ServingAPIError)
    return cls(status, code, message)


class Client:
    """A connection to one jupyter-serving server (standalone or inside Jupyter Server).

    `Client()` finds the server the way `%load_ext jupyter_serving` does (see `discovery.discover`);
    `Client(url, token)` talks to the one given.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        session: requests.Session | None = None,
    ) -> None:
        self.server: ServerInfo | None = None
        if url is None:
            from jupyter_serving.notebook.discovery import discover

            self.server = discover()
            url, token = self.server.url, self.server.token
        self.url = url if url.endswith("/") else url + "/"
        self.token = token or ""
        self.timeout = timeout
        self.session = session or requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    @classmethod
    def from_server(cls, server: ServerInfo, **kwargs: Any) -> Client:
        client = cls(server.url, server.token, **kwargs)
        client.server = server
        return client

    def __repr__(self) -> str:
        return f"Client(url={self.url!r})"

    # -- transport --------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any
    ) -> requests.Response:
        try:
            resp = self.session.request(method, self.url + path, timeout=timeout or self.timeout, **kwargs)
        except requests.ConnectionError as exc:
            raise ServingConnectionError(f"Cannot reach the serving server at {self.url}: {exc}") from exc
        except requests.Timeout as exc:
            raise ServingConnectionError(
                f"The serving server at {self.url} did not answer in time: {exc}"
            ) from exc
        if resp.status_code >= 400:
            raise api_error(resp.status_code, resp.text)
        return resp

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    @staticmethod
    def _ep(name: str) -> str:
        return f"{API}/{quote(name, safe='')}"

    # -- endpoints --------------------------------------------------------------------------

    def create(
        self,
        name: str,
        config: Mapping[str, Any],
        *,
        tags: Iterable[Mapping[str, str]] | None = None,
        description: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """POST a new endpoint; returns at once with `config_update` IN_PROGRESS (see `create_and_wait`)."""
        body: dict[str, Any] = {"name": name, "config": dict(config), **extra}
        if tags is not None:
            body["tags"] = [dict(t) for t in tags]
        if description is not None:
            body["description"] = description
        return self._json("POST", API, json=body)

    def get(self, name: str) -> dict[str, Any]:
        return self._json("GET", self._ep(name))

    def list(self) -> list[dict[str, Any]]:
        return self._json("GET", API).get("endpoints", [])

    def update_config(self, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """PUT a whole new config (`served_entities`, `traffic_config`, `auto_capture_config`)."""
        return self._json("PUT", f"{self._ep(name)}/config", json=dict(config))

    def delete(self, name: str) -> None:
        self._request("DELETE", self._ep(name))

    def cancel_update(self, name: str) -> dict[str, Any]:
        return self._json("POST", f"{self._ep(name)}/cancel-update")

    def set_traffic(self, name: str, split: Mapping[str, int]) -> dict[str, Any]:
        """Change only the traffic split of the deployed config, e.g. `{"current": 90, "challenger": 10}`."""
        endpoint = self.get(name)
        config = endpoint.get("config")
        if not config:
            raise ServingClientError(
                f"Endpoint '{name}' has no deployed config yet; wait for it to be ready."
            )
        body = input_config(config)
        body["traffic_config"] = {
            "routes": [{"served_model_name": k, "traffic_percentage": int(v)} for k, v in split.items()]
        }
        return self.update_config(name, body)

    # -- waiters ----------------------------------------------------------------------------

    def wait(
        self,
        name: str,
        *,
        timeout: float = 1200.0,
        callback: Callable[[dict[str, Any]], None] | None = None,
        poll_interval: float = 0.25,
    ) -> dict[str, Any]:
        """Poll GET until `config_update` is NOT_UPDATING, like the Databricks SDK's waiter.

        Raises `EndpointUpdateFailed` on UPDATE_FAILED / UPDATE_CANCELED and `WaitTimeout` at the
        deadline. `callback` sees every polled endpoint, the final one included.
        """
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            endpoint = self.get(name)
            if callback is not None:
                callback(endpoint)
            status = endpoint.get("state", {}).get("config_update")
            if status in TARGET_STATES:
                return endpoint
            if status in FAILURE_STATES:
                raise EndpointUpdateFailed(endpoint)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(f"Endpoint '{name}' was still {status} after {timeout:g} s.")
            # Local deploys take seconds, so start fast and back off gently rather than the SDK's 1-10 s.
            time.sleep(min(interval, remaining))
            interval = min(interval * 1.5, 2.0)

    def create_and_wait(
        self, name: str, config: Mapping[str, Any], *, timeout: float = 1200.0, **kwargs: Any
    ) -> dict[str, Any]:
        self.create(name, config, **kwargs)
        return self.wait(name, timeout=timeout)

    def update_config_and_wait(
        self, name: str, config: Mapping[str, Any], *, timeout: float = 1200.0
    ) -> dict[str, Any]:
        self.update_config(name, config)
        return self.wait(name, timeout=timeout)

    # -- scoring ----------------------------------------------------------------------------

    def query_raw(
        self, name: str, payload: Mapping[str, Any], served: str | None = None, *, timeout: float = 130.0
    ) -> requests.Response:
        """POST an invocation body verbatim; the response keeps the `served-model-name` header."""
        path = f"serving-endpoints/{quote(name, safe='')}"
        if served is not None:
            path += f"/served-models/{quote(served, safe='')}"
        return self._request("POST", f"{path}/invocations", json=dict(payload), timeout=timeout)

    def query(
        self,
        name: str,
        data: pd.DataFrame | Mapping[str, Any],
        served: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        client_request_id: str | None = None,
        timeout: float = 130.0,
    ) -> pd.DataFrame:
        """Score a DataFrame (sent as `dataframe_split`) or a raw payload dict; predictions come back
        as a DataFrame on the input's index. `.attrs` holds `served_model_name` and `request_id`.
        `client_request_id` is logged with the request in the inference table, to join labels on."""
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            payload: dict[str, Any] = {"dataframe_split": frame_to_split(data)}
            index: Any = data.index
        elif isinstance(data, Mapping):
            payload, index = dict(data), payload_index(data)
        else:
            raise TypeError(f"query() takes a pandas DataFrame or a payload dict, not {type(data).__name__}.")
        if params:
            payload["params"] = dict(params)
        if client_request_id is not None:
            payload["client_request_id"] = client_request_id
        resp = self.query_raw(name, payload, served, timeout=timeout)
        frame = predictions_to_frame(resp.json(), index)
        frame.attrs.update(
            served_model_name=resp.headers.get("served-model-name"),
            request_id=resp.headers.get("x-request-id"),
        )
        return frame

    def stream(
        self,
        name: str,
        payload: Mapping[str, Any] | str | None = None,
        served: str | None = None,
        *,
        input: Any = None,  # the wire's own name, as in the OpenAI client
        messages: Iterable[Mapping[str, Any]] | None = None,
        custom_inputs: Mapping[str, Any] | None = None,
        timeout: float = 130.0,
    ) -> Generator[Any, None, None]:
        """Stream an agent's or LLM's answer: yields each chunk (parsed JSON) as the model yields it.

        `payload` is a request body (`input`, `messages`, `dataframe_records`, ...), or a plain
        question: it goes as `messages` to an endpoint whose signature takes `messages` (a chat
        model) and as a ResponsesAgent's `input` otherwise. `input=` / `messages=` build the body
        from keywords instead. `timeout` bounds the wait for each chunk, not the whole stream.
        An error answer, or an error event mid-stream, raises `ServingAPIError` (`ServerError` for
        a failure after the stream began). Closing the iterator early closes the connection, which
        stops the model's generator on the server.
        """
        body = self._stream_body(name, payload, input=input, messages=messages)
        if custom_inputs is not None:
            body["custom_inputs"] = dict(custom_inputs)
        body["stream"] = True
        path = f"serving-endpoints/{quote(name, safe='')}"
        if served is not None:
            path += f"/served-models/{quote(served, safe='')}"
        response = self._request("POST", f"{path}/invocations", json=body, timeout=timeout, stream=True)
        return _iter_stream(response)

    def _stream_body(
        self, name: str, payload: Mapping[str, Any] | str | None, *, input: Any, messages: Any
    ) -> dict[str, Any]:
        given = [x is not None for x in (payload, input, messages)]
        if sum(given) != 1:
            raise TypeError("stream() takes exactly one of: a payload or question, input=, messages=.")
        if isinstance(payload, Mapping):
            return dict(payload)
        if messages is not None:
            return {"messages": [dict(m) for m in messages]}
        if input is not None:
            return {"input": [{"role": "user", "content": input}] if isinstance(input, str) else list(input)}
        if not isinstance(payload, str):
            raise TypeError(f"stream() takes a payload dict or a question, not {type(payload).__name__}.")
        return question_payload(payload, self._takes_messages(name))

    def _takes_messages(self, name: str) -> bool:
        """Whether the endpoint's served model takes chat `messages` rather than `input`, read from
        its OpenAPI document (built from the MLflow signature). Not cached: a name may be reused
        for another model, and the read costs one local round trip."""
        try:
            doc = self._json("GET", f"{self._ep(name)}/openapi")
        except ServingAPIError:  # e.g. no right to read it: a ResponsesAgent is the default
            return False
        return signature_takes_messages(doc)

    # -- observability ----------------------------------------------------------------------

    def logs(self, name: str, served: str | None = None) -> str:
        """A served entity's worker logs; `served` may be left out when the endpoint serves one entity."""
        if served is None:
            served = self._only_entity(name)
        path = f"{self._ep(name)}/served-models/{quote(served, safe='')}/logs"
        return self._json("GET", path).get("logs", "")

    def metrics(self, name: str) -> str:
        """The endpoint's metrics in Prometheus text format (see `parse_metrics`)."""
        return self._request("GET", f"{self._ep(name)}/metrics").text

    def history(self, name: str, since_ms: int = 0) -> dict[str, Any]:
        """The metrics history the server sampled after `since_ms` (columnar; see server/openapi.yaml)."""
        return self._json(
            "GET", f"api/2.0/jupyter-serving/endpoints/{quote(name, safe='')}/history?since_ms={since_ms}"
        )

    def events(self, name: str, since_ms: int = 0) -> builtins.list[dict[str, Any]]:
        """The endpoint's events (updates, scaling, cold starts, crashes), oldest first."""
        path = f"api/2.0/jupyter-serving/endpoints/{quote(name, safe='')}/events?since_ms={since_ms}"
        return list(self._json("GET", path).get("events", []))

    def shadow(self, name: str) -> dict[str, Any] | None:
        """The endpoint's shadow traffic config (`served_entity_name`, `percentage`), or None."""
        try:
            return self._json("GET", self._shadow_path(name))
        except NotFoundError:
            self.get(name)  # a missing endpoint is still an error
            return None

    def set_shadow(self, name: str, served_entity: str | None, percentage: int = 100) -> dict[str, Any]:
        """Mirror `percentage` % of the endpoint's live requests to `served_entity` (one taking no
        live traffic); None stops mirroring. Returns the config now in force ({} when stopped)."""
        if served_entity is None:
            return self._json("DELETE", self._shadow_path(name))
        body = {"served_entity_name": served_entity, "percentage": percentage}
        return self._json("PUT", self._shadow_path(name), json=body)

    @staticmethod
    def _shadow_path(name: str) -> str:
        return f"api/2.0/jupyter-serving/endpoints/{quote(name, safe='')}/shadow"

    def rollout(self, name: str) -> dict[str, Any] | None:
        """The endpoint's latest progressive rollout (state, step, reason, the guard's estimate and
        the timeline), or None when it never had one."""
        try:
            return self._json("GET", self._rollout_path(name))
        except NotFoundError:
            self.get(name)  # a missing endpoint is still an error
            return None

    def start_rollout(
        self,
        name: str,
        to: str,
        steps: Sequence[int] = (5, 25, 50, 100),
        step_duration_s: float = 60.0,
        guard: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Move the traffic to served entity `to` through `steps` (percentages ending at 100), each
        held `step_duration_s`, while the server's sequential guard watches errors and latency and
        rolls back on a breach. `guard` as server/openapi.yaml's RolloutGuard (default: both on)."""
        body: dict[str, Any] = {"to": to, "steps": list(steps), "step_duration_s": step_duration_s}
        if guard is not None:
            body["guard"] = guard
        return self._json("PUT", self._rollout_path(name), json=body)

    def pause_rollout(self, name: str) -> dict[str, Any]:
        """Hold the rollout at its current split (the guard keeps watching)."""
        return self._json("POST", f"{self._rollout_path(name)}/pause")

    def resume_rollout(self, name: str) -> dict[str, Any]:
        return self._json("POST", f"{self._rollout_path(name)}/resume")

    def cancel_rollout(self, name: str) -> dict[str, Any]:
        """Stop the rollout; the split from before it returns."""
        return self._json("POST", f"{self._rollout_path(name)}/cancel")

    @staticmethod
    def _rollout_path(name: str) -> str:
        return f"api/2.0/jupyter-serving/endpoints/{quote(name, safe='')}/rollout"

    def verdict(self, name: str, control: str | None = None, alpha: float = 0.05) -> dict[str, Any]:
        """The live A/B verdict the page's Overview shows: each entity against `control` (default:
        most traffic) with the rollout guard's always-valid intervals read as `worse`, `better` or
        `no_difference_yet`; safe to call as often as you like (docs/API.md)."""
        params: dict[str, Any] = {"alpha": alpha} | ({"control": control} if control else {})
        path = f"api/2.0/jupyter-serving/endpoints/{quote(name, safe='')}/verdict"
        return dict(self._json("GET", path, params=params))

    def shadow_comparison(self, name: str) -> dict[str, Any]:
        """The shadow view's data: the shadow config (or None), the mirror's counters, and live
        against shadow on the same requests from the inference table (agreement, errors, latency)."""
        return dict(self._json("GET", f"{self._shadow_path(name)}/comparison"))

    def registered_models(self) -> builtins.list[dict[str, Any]]:
        """Models in the server's MLflow registry, each with its `versions`."""
        return self._json("GET", "api/2.0/jupyter-serving/registered-models").get("registered_models", [])

    def registry_uris(self) -> dict[str, str]:
        """The MLflow `registry_uri` and `tracking_uri` the server resolves models with (admin only)."""
        body = self._json("GET", "api/2.0/jupyter-serving/registered-models")
        return {k: str(body[k]) for k in ("registry_uri", "tracking_uri") if body.get(k)}

    def me(self) -> dict[str, Any]:
        """The calling principal (SCIM `Me`): `userName`, and `jupyter_serving.admin`."""
        return self._json("GET", "api/2.0/preview/scim/v2/Me")

    def health(self) -> dict[str, Any]:
        return self._json("GET", "api/2.0/jupyter-serving/health")

    # -- Unity Catalog grants -----------------------------------------------------------------

    def grants(
        self, securable_type: str, full_name: str, *, principal: str | None = None, effective: bool = False
    ) -> builtins.list[dict[str, Any]]:
        """`privilege_assignments` on a securable (`catalog`, `schema`, `function` for a model,
        `table`); `effective` adds what is inherited from above, with where it comes from."""
        route = "effective-permissions" if effective else "permissions"
        path = f"{UC_API}/{route}/{quote(securable_type, safe='')}/{quote(full_name, safe='')}"
        params = {"principal": principal} if principal else None
        return list(self._json("GET", path, params=params).get("privilege_assignments") or [])

    def update_grants(
        self,
        securable_type: str,
        full_name: str,
        principal: str,
        *,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
    ) -> builtins.list[dict[str, Any]]:
        """Grant (`add`) or revoke (`remove`) privileges of `principal` (admin only); the result."""
        path = f"{UC_API}/permissions/{quote(securable_type, safe='')}/{quote(full_name, safe='')}"
        body = {"changes": [{"principal": principal, "add": list(add), "remove": list(remove)}]}
        return list(self._json("PATCH", path, json=body).get("privilege_assignments") or [])

    def inference_table(self, name: str, *, unpack: bool = True, **bounds: Any) -> pd.DataFrame:
        """The endpoint's inference (payload) table as a DataFrame, one row per input row.

        Reads the Delta table at `auto_capture_config.state.payload_table.path` directly: the server
        writes it on this machine. `unpack=False` gives one row per request with the raw JSON;
        `start`/`end` (datetimes) bound the rows read. Capture is asynchronous, so the newest
        requests may take a moment to appear.
        """
        capture = (self.get(name).get("config") or {}).get("auto_capture_config") or {}
        table = (capture.get("state") or {}).get("payload_table") or {}
        if not capture.get("enabled", False) or not table.get("path"):
            raise ServingClientError(
                f"Endpoint '{name}' has no inference table: enable auto_capture_config in its config."
            )
        from deltalake.exceptions import TableNotFoundError

        from jupyter_serving.tables.reader import inference_table

        try:
            return inference_table(table["path"], unpack=unpack, **bounds)
        except TableNotFoundError as exc:
            raise ServingClientError(
                f"The inference table of '{name}' ({table.get('name')}) has no data yet: "
                "query the endpoint first."
            ) from exc

    def _only_entity(self, name: str) -> str:
        endpoint = self.get(name)
        names = [e["name"] for e in served_entities(endpoint)]
        if len(names) != 1:
            raise ServingClientError(
                f"Endpoint '{name}' serves {len(names)} entities ({', '.join(names)}); say which one."
            )
        return names[0]


# -- pure helpers (unit-tested without a server) ------------------------------------------------


def served_entities(endpoint: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The entities of the deployed config, else of the pending one (a first create not yet ready)."""
    cfg = endpoint.get("config") or endpoint.get("pending_config") or {}
    return list(cfg.get("served_entities") or cfg.get("served_models") or [])


def input_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a config as GET shows it back into a body PUT accepts (output-only fields dropped)."""
    key = "served_models" if config.get("served_models") else "served_entities"
    out: dict[str, Any] = {
        key: [
            {k: v for k, v in e.items() if k not in _OUTPUT_ONLY_ENTITY_FIELDS} for e in config.get(key, [])
        ]
    }
    if config.get("traffic_config"):
        out["traffic_config"] = config["traffic_config"]
    capture = config.get("auto_capture_config")
    if capture:
        out["auto_capture_config"] = {k: v for k, v in capture.items() if k != "state"}
    return out


def failure_message(endpoint: Mapping[str, Any]) -> str:
    """The deployment_state_message of every failed entity, pending config first."""
    messages: list[str] = []
    for key in ("pending_config", "config"):
        for e in (endpoint.get(key) or {}).get("served_entities") or []:
            state = e.get("state") or {}
            if state.get("deployment") in ("DEPLOYMENT_FAILED", "DEPLOYMENT_ABORTED"):
                text = state.get("deployment_state_message") or state["deployment"]
                messages.append(f"{e.get('name')}: {text}")
    return "; ".join(dict.fromkeys(messages))


def frame_to_split(df: pd.DataFrame) -> dict[str, Any]:
    """`dataframe_split` without the index (pandas' JSON writer handles NumPy scalars, NaN and dates)."""
    return json.loads(df.to_json(orient="split", index=False, date_format="iso"))


def payload_index(payload: Mapping[str, Any]) -> Any:
    split = payload.get("dataframe_split")
    if isinstance(split, Mapping) and split.get("index") is not None:
        return split["index"]
    return None


def predictions_to_frame(body: Any, index: Any = None) -> pd.DataFrame:
    """Frame an invocation answer (`predictions` or `outputs`) on `index`, one row per input row."""
    import pandas as pd

    if not isinstance(body, dict) or not ({"predictions", "outputs"} & body.keys()):
        raise ServingClientError(f"The answer has no 'predictions': {str(body)[:200]}")
    preds = body["predictions"] if "predictions" in body else body["outputs"]
    if isinstance(preds, dict):
        frame = pd.DataFrame(preds)
    elif isinstance(preds, list) and preds and all(isinstance(p, dict) for p in preds):
        frame = pd.DataFrame.from_records(preds)
    elif isinstance(preds, list) and preds and all(isinstance(p, list) for p in preds):
        frame = pd.DataFrame(preds)
    elif isinstance(preds, list):
        frame = pd.DataFrame({"prediction": preds})
    else:
        raise ServingClientError(
            f"The predictions are a {type(preds).__name__}, not one per row; use query_raw() for them."
        )
    if index is not None:
        if len(index) != len(frame):
            raise ServingClientError(
                f"The model returned {len(frame)} predictions for {len(index)} rows; "
                "use query_raw() for them."
            )
        frame.index = index
    return frame


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples `(name, labels, value)` of a Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.name, dict(s.labels), float(s.value))
        for f in text_string_to_metric_families(text)
        for s in f.samples
    ]


def question_payload(question: str, takes_messages: bool = False) -> dict[str, Any]:
    """A plain question as a request body: chat `messages`, or a ResponsesAgent's `input`."""
    turn = [{"role": "user", "content": question}]
    return {"messages": turn} if takes_messages else {"input": turn}


def signature_takes_messages(openapi: Mapping[str, Any]) -> bool:
    """Whether an endpoint's OpenAPI document describes chat input (a `messages` column and no
    `input` column), the way MLflow signs ChatModel and ChatAgent models."""
    columns: set[str] = set()
    for route in (openapi.get("paths") or {}).values():
        schema = route.get("post", {}).get("requestBody", {}).get("content", {})
        schema = schema.get("application/json", {}).get("schema", {})
        for form in schema.get("oneOf") or []:
            records = (form.get("properties") or {}).get("dataframe_records") or {}
            columns |= set(((records.get("items") or {}).get("properties") or {}).keys())
        break  # the first served entity speaks for the endpoint
    return "messages" in columns and "input" not in columns


def sse_events(lines: Iterable[bytes | str]) -> Iterator[tuple[str | None, str]]:
    """`(event, data)` per Server-Sent Event; `event` is None for plain `data:` events."""
    event: str | None = None
    data: list[str] = []
    for raw in lines:
        line = raw.decode() if isinstance(raw, bytes) else raw
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield event, "\n".join(data)


def stream_chunks(events: Iterable[tuple[str | None, str]]) -> Iterator[Any]:
    """Parsed chunks until `[DONE]`; an `error` event raises the server's error."""
    for event, data in events:
        if event == "error":
            raise api_error(500, data)
        if data == "[DONE]":
            return
        yield json.loads(data)


def _iter_stream(response: requests.Response) -> Generator[Any, None, None]:
    # chunk_size=None hands over each HTTP chunk as it arrives: one per model chunk.
    with response:
        try:
            yield from stream_chunks(sse_events(response.iter_lines(chunk_size=None)))  # type: ignore[call-overload]
        except requests.RequestException as exc:
            raise ServingConnectionError(f"The stream from {response.url} broke off: {exc}") from exc


def chunk_text(chunk: Any) -> str:
    """The text a streamed chunk adds: a ResponsesAgent's `response.output_text.delta`, a chat
    chunk's `choices[0].delta.content`, a ChatAgent chunk's `delta.content`, or a plain string."""
    if isinstance(chunk, str):
        return chunk
    if not isinstance(chunk, Mapping):
        return ""
    if chunk.get("type") == "response.output_text.delta":
        return str(chunk.get("delta") or "")
    choices = chunk.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        delta = choices[0].get("delta") or {}
        text = delta.get("content") if isinstance(delta, Mapping) else None
        return str(text if text is not None else choices[0].get("text") or "")
    delta = chunk.get("delta")
    if isinstance(delta, Mapping) and isinstance(delta.get("content"), str):
        return delta["content"]
    return ""
