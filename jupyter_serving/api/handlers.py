"""Tornado handlers for the Databricks serving-endpoints API (the same ones in Jupyter and standalone).

Handlers are thin: parse the request, call the `EndpointManager`, render. Every error leaves as
`{"error_code", "message"}` through `ServingHandler.write_error`, the one place errors meet HTTP.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_server.auth import IdentityProvider, User
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from jupyter_serving._version import __version__
from jupyter_serving.api.auth import AUTHORITY_KEY, Authority, bearer_token, strip_query_token
from jupyter_serving.api.render import endpoint_detail, endpoint_summary
from jupyter_serving.control.endpoint import Endpoint
from jupyter_serving.control.manager import Authorize, EndpointManager
from jupyter_serving.dataplane.ingress import Ingress, wants_stream
from jupyter_serving.dataplane.invoke import LiveStream
from jupyter_serving.dataplane.router import ROUTING_KEY_HEADER
from jupyter_serving.errors import (
    EndpointNotFound,
    InternalError,
    InvalidParameterValue,
    PayloadTooLarge,
    PermissionDenied,
    ResourceDoesNotExist,
    ServingError,
    Unauthenticated,
    send_error,
)
from jupyter_serving.identity.grants import check_serving
from jupyter_serving.identity.permissions import CAN_MANAGE, CAN_QUERY, CAN_VIEW
from jupyter_serving.identity.principals import TOKEN_PREFIX, Principal
from jupyter_serving.identity.secrets import SecretStore, secret_refs
from jupyter_serving.identity.tokens import ALL_APIS
from jupyter_serving.identity.tokens import PREFIX as OAUTH_PREFIX
from jupyter_serving.model.config import EndpointConfig
from jupyter_serving.monitoring.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from jupyter_serving.monitoring.observer import Observer

MANAGER_KEY = "jupyter_serving_manager"
OBSERVER_KEY = "jupyter_serving_observer"
INGRESS_KEY = "jupyter_serving_ingress"
TOKEN_USER = User(username="token", name="token-authenticated client")
_STATUS_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    415: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    409: "RESOURCE_CONFLICT",
    413: "BAD_REQUEST",
    504: "DEADLINE_EXCEEDED",
}


class ServingHandler(APIHandler):
    """Base: Databricks auth forms, the caller's principal, Databricks error bodies."""

    request_id: str | None = None  # set on invocations; returned as x-request-id, errors included
    principal: Principal | None = None  # who is calling; set by prepare() once authenticated

    def initialize(self) -> None:
        # No route here reads form fields, and Tornado would refuse (400) a GET or DELETE whose
        # content type says multipart but that has no body: leave bodies unparsed.
        self.request._parse_body = _no_form_parsing  # type: ignore[method-assign]

    @property
    def manager(self) -> EndpointManager:
        return self.settings[MANAGER_KEY]

    @property
    def ingress(self) -> Ingress:
        return self.settings[INGRESS_KEY]

    @property
    def authority(self) -> Authority:
        return self.settings[AUTHORITY_KEY]

    async def prepare(self) -> None:  # type: ignore[override]
        if not self.manager.started:
            await self.manager.start()
        if not self.ingress.started:
            self.ingress.start()
        strip_query_token(self.request)
        _accept_basic_token(self.request.headers)
        if (oauth_user := self._oauth_user()) is not None:  # minted from the owner's token: the owner
            self._token_login(oauth_user, self.authority.owner())
            return
        if self._bearer_token_matches():
            # Same decision Jupyter's stock IdentityProvider makes for this header, minus minting an
            # anonymous user and signing a login cookie on every call: an API client resends the
            # token anyway, and on the invocation path that work was most of the server's cost.
            self._token_login(TOKEN_USER, self.authority.owner())
            return
        token = bearer_token(self.request.headers)
        principal = self.authority.from_token(token) if token and token.startswith(TOKEN_PREFIX) else None
        if principal is not None:  # a service principal's token: valid on serving routes only
            self._token_login(User(username=principal.name or principal.key), principal)
            return
        await super().prepare()
        if self.current_user is not None:  # the Jupyter user (cookie, or a custom identity provider)
            username = None if self._stock_provider() else self.current_user.username
            self.principal = self.authority.owner(username)

    def _token_login(self, user: User, principal: Principal) -> None:
        self.current_user = self._jupyter_current_user = user
        self._token_authenticated = True
        self.principal = principal

    def _stock_provider(self) -> bool:
        provider = type(self.identity_provider)
        methods = ("get_user", "get_token", "get_user_token")
        return all(getattr(provider, m) is getattr(IdentityProvider, m) for m in methods)

    def _oauth_user(self) -> User | None:
        """An `all-apis` token from /oidc/v1/token (OAuth M2M) authenticates its client id."""
        auth = self.request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer " or not auth[7:].lstrip().startswith(OAUTH_PREFIX):
            return None
        claims = self.ingress.signer.verify(auth[7:].strip(), ALL_APIS)
        return User(username=claims["sub"], name=claims["sub"]) if claims else None

    def _bearer_token_matches(self) -> bool:
        provider = self.identity_provider
        if not self._stock_provider() or not provider.token:
            return False
        match = provider.auth_header_pat.match(self.request.headers.get("Authorization", ""))
        return match is not None and hmac.compare_digest(match.group(2).encode(), provider.token.encode())

    @web.authenticated  # typed as returning Awaitable | None, where APIHandler.options says None
    def options(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """CORS preflight answers only an authenticated caller: unauthenticated, it is a 401."""
        super().options(*args, **kwargs)

    # ----------------------------------------------------------------- permissions
    @property
    def caller(self) -> Principal:
        assert self.principal is not None, "handler method not marked @web.authenticated"
        return self.principal

    def require_admin(self) -> None:
        if not self.caller.admin:
            raise PermissionDenied(
                f"Principal '{self.caller.name}' is not an admin: only the server owner may do this."
            )

    def endpoint(self, name: str, needed: str) -> Endpoint:
        """The endpoint `name`, if the caller holds at least `needed` on it (else 403)."""
        endpoint = self.manager.get(name)
        self.authority.permissions.require(self.caller, endpoint.record.id, name, needed)
        return endpoint

    def endpoint_by_id(self, endpoint_id: str, needed: str) -> Endpoint:
        for endpoint in self.manager.list():
            if endpoint.record.id == endpoint_id:
                return self.endpoint(endpoint.name, needed)
        raise ResourceDoesNotExist(f"Serving endpoint with id '{endpoint_id}' does not exist.")

    # ----------------------------------------------------------------- Unity Catalog grants
    def serves_as_caller(self) -> Authorize:
        """A create's check: the caller becomes the creator, so its grants must cover the config."""
        caller = self.caller

        async def check(config: EndpointConfig) -> None:
            await check_serving(
                self.authority.grants, self.manager.registry, caller, list(config.served_entities)
            )

        return check

    def serves_as_creator(self, endpoint: Endpoint) -> Callable[[EndpointConfig | None], Awaitable[None]]:
        """An update's check: the recorded creator (never the caller) must still be a member and
        hold the grants the resulting config needs (None: the endpoint's own configs), whoever calls."""

        async def check(config: EndpointConfig | None) -> None:
            record = endpoint.record
            creator = self.authority.grants.creator(record.name, record.creator, record.creator_key)
            if creator is None:
                return
            configs = [config] if config is not None else [c for c in (record.config, record.pending) if c]
            entities = [e for c in configs for e in c.served_entities]
            await check_serving(
                self.authority.grants, self.manager.registry, creator, entities, creator_of=record.name
            )

        return check

    async def endpoint_to_update(self, name: str) -> Endpoint:
        """An endpoint-mutating update's checks: the caller's CAN_MANAGE, then the recorded creator."""
        endpoint = self.endpoint(name, CAN_MANAGE)
        await self.serves_as_creator(endpoint)(None)
        return endpoint

    def detail(self, endpoint: Endpoint) -> dict[str, Any]:
        url = self.ingress.endpoint_url(endpoint.name)
        out = endpoint_detail(endpoint, self.manager.describe_capture, url)
        out["permission_level"] = self.authority.permissions.level(self.caller, endpoint.record.id)
        return out

    # ----------------------------------------------------------------- bodies and errors
    def json_body(self) -> Any:
        if not self.request.body:
            raise InvalidParameterValue("The request body is empty; expected a JSON object.")
        return parse_json(self.request.body)

    def write_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.status_code == 403 and self.current_user is None:
            exc = Unauthenticated(
                "Credential was not sent or was of an unsupported type for this API: "
                "send 'Authorization: Bearer <token>'."
            )
        if isinstance(exc, ServingError):
            error, status = exc, exc.http_status
        elif isinstance(exc, web.HTTPError):
            status = exc.status_code
            message = (
                exc.log_message % exc.args if exc.log_message and exc.args else exc.log_message
            ) or self._reason
            error = ServingError(message)
            error.error_code = _STATUS_CODES.get(status, "INTERNAL_ERROR")  # type: ignore[misc]
        else:
            error, status = InternalError(f"The server failed to handle the request: {exc!r}"), 500
        if status == 405:  # RFC 9110: a 405 lists what the route does support
            self.set_header("Allow", ", ".join(self._allowed_methods()))
        send_error(self, error, self.request_id, status)

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, ServingError) and value.http_status < 500:
            self.log.info(
                "%s %s -> %s %s", self.request.method, self.request.path, value.http_status, value.message
            )
            return
        super().log_exception(typ, value, tb)

    def _allowed_methods(self) -> list[str]:
        base = ServingHandler
        own = [
            m
            for m in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if getattr(type(self), m.lower()) is not getattr(base, m.lower())
        ]
        return [*own, "OPTIONS"]


def parse_json(body: bytes) -> Any:
    """A JSON request body; malformed, too deep or not UTF-8 is the client's 400, never our 500."""
    try:
        return json.loads(body)
    except RecursionError:
        raise InvalidParameterValue("The request body nests JSON too deeply to parse.") from None
    except ValueError as exc:
        raise InvalidParameterValue(f"The request body is not valid JSON: {str(exc)[:200]}.") from None


def _no_form_parsing() -> None:
    return None


def _accept_basic_token(headers: Any) -> None:
    """Databricks documents `curl -u token:<pat>`; Jupyter reads only `token`/`bearer` headers."""
    if headers.get("Authorization", "")[:6].lower() == "basic ":
        token = bearer_token(headers)
        if token is not None:
            headers["Authorization"] = f"token {token}"


class WellKnownConfigHandler(ServingHandler):
    """Databricks SDK clients fetch this, without credentials, each time they are constructed."""

    @allow_unauthenticated
    def get(self) -> None:
        # oidc_endpoint points OAuth (M2M) clients at our /oidc discovery document and token route.
        base = f"{self.request.protocol}://{self.request.host}{self.base_url.rstrip('/')}"
        self.write_json({"oidc_endpoint": f"{base}/oidc"})


class EndpointsHandler(ServingHandler):
    @web.authenticated
    def get(self) -> None:
        permissions = self.authority.permissions
        visible = [e for e in self.manager.list() if permissions.level(self.caller, e.record.id)]
        self.write_json({"endpoints": [endpoint_summary(e) for e in visible]})

    @web.authenticated
    async def post(self) -> None:
        body = self.json_body()
        self._check_secret_refs(body)
        endpoint = await self.manager.create(
            body, creator=self.caller.name, creator_key=self.caller.key, authorize=self.serves_as_caller()
        )
        self.authority.permissions.grant_creator(self.caller, endpoint.record.id)
        self.write_json(self.detail(endpoint))

    def _check_secret_refs(self, body: Any) -> None:
        config = body.get("config") if isinstance(body, dict) else None
        check_secret_refs(config, self.caller, self.manager.settings.state_path)


def check_secret_refs(config: Any, caller: Principal, state_path: Any) -> None:
    """Only the admin may put secrets into a model's environment, and only secrets that exist."""
    refs = secret_refs(config)
    if refs and not caller.admin:
        raise PermissionDenied("Only the server owner may reference {{secrets/...}} in environment_vars.")
    SecretStore(state_path).require(refs)


class EndpointHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        self.write_json(self.detail(self.endpoint(name, CAN_VIEW)))

    @web.authenticated
    async def delete(self, name: str) -> None:
        endpoint_id = self.endpoint(name, CAN_MANAGE).record.id
        await self.manager.delete(name)
        self.authority.store.drop_acl(endpoint_id)
        self.write_json({})


class ConfigHandler(ServingHandler):
    @web.authenticated
    async def put(self, name: str) -> None:
        endpoint = await self.endpoint_to_update(name)
        body = self.json_body()
        check_secret_refs(body, self.caller, self.manager.settings.state_path)
        endpoint = await self.manager.update_config(name, body, authorize=self.serves_as_creator(endpoint))
        self.write_json(self.detail(endpoint))


class CancelUpdateHandler(ServingHandler):
    @web.authenticated
    async def post(self, name: str) -> None:
        self.endpoint(name, CAN_MANAGE)
        endpoint = await self.manager.cancel_update(name)
        self.write_json(self.detail(endpoint))


class LogsHandler(ServingHandler):
    @web.authenticated
    async def get(self, name: str, served: str) -> None:
        self.endpoint(name, CAN_VIEW)
        self.write_json({"logs": await self.manager.logs(name, served)})


class BuildLogsHandler(ServingHandler):
    @web.authenticated
    async def get(self, name: str, served: str) -> None:
        self.endpoint(name, CAN_VIEW)
        self.write_json({"logs": await self.manager.build_logs(name, served)})


class MetricsHandler(ServingHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        endpoint = self.endpoint(name, CAN_VIEW)
        self.finish(endpoint.metrics.render(), set_content_type=METRICS_CONTENT_TYPE)


class ObserverHandler(ServingHandler):
    """Base of the Model Serving page's routes: what the observer sampled (same auth as metrics)."""

    @property
    def observer(self) -> Observer:
        observer: Observer = self.settings[OBSERVER_KEY]
        observer.start()  # a host that never ran the extension's start hook (see prepare)
        return observer

    def since_ms(self) -> int:
        raw = self.get_query_argument("since_ms", "0")
        try:
            return int(raw)
        except ValueError:
            raise InvalidParameterValue(
                f"since_ms must be an integer (epoch milliseconds), got '{raw}'."
            ) from None


class HistoryHandler(ObserverHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        self.manager.get(name)
        self.write_json(self.observer.history(name, self.since_ms()))


class EventsHandler(ObserverHandler):
    @web.authenticated
    def get(self, name: str) -> None:
        self.manager.get(name)
        self.write_json({"events": self.observer.events.get(name, self.since_ms())})


class InferenceTableHandler(ObserverHandler):
    @web.authenticated
    async def get(self, name: str) -> None:
        endpoint = self.manager.get(name)
        raw = self.get_query_argument("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise InvalidParameterValue(f"limit must be an integer from 1 to 1000, got '{raw}'.")
        config = endpoint.record.config
        control = self.get_query_argument("control", None) or None
        served = {e.name for e in config.served_entities} if config else set()
        if control is not None and control not in served:
            raise InvalidParameterValue(f"control must name a served entity of '{name}', got '{control}'.")
        capture = config.auto_capture_config if config else None
        self.write_json(await self.observer.table(self.manager.table_path(capture), int(raw), control))


class HealthHandler(ServingHandler):
    @web.authenticated
    def get(self) -> None:
        self.write_json({"status": "ok", "version": __version__})


class RegisteredModelsHandler(ServingHandler):
    @web.authenticated
    async def get(self) -> None:
        self.require_admin()  # the registry is the owner's: service principals see only endpoints
        models = await self.manager.registered_models()
        self.write_json({"registered_models": models, **await self.manager.registry_uris()})


class InvocationsHandler(ServingHandler):
    """The data plane: one request in, the worker's answer out, never parsed on the way."""

    @web.authenticated
    async def post(self, name: str, served: str | None = None) -> None:
        self.request_id = uuid.uuid4().hex
        if not self.caller.admin:  # the admin's fast path skips the ACL lookup
            self.endpoint(name, CAN_QUERY)
        body = self.request.body
        limit = self.manager.settings.max_request_bytes
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is {len(body)} bytes; the limit is {limit} bytes.")
        await self.answer(name, served, body)

    async def answer(self, name: str, served: str | None, body: bytes) -> None:
        """Score `body` on endpoint `name` and write the answer: plain, or a Server-Sent Events
        stream when the request says `"stream": true`."""
        headers = self.request.headers
        request = (name, served, headers.get("Content-Type"), body, headers.get(ROUTING_KEY_HEADER))
        who = (self.request_id or "", self.current_user.username)
        if wants_stream(body):
            result = await self.ingress.open_stream(*request, *who)
            if isinstance(result, LiveStream):
                await self._send_stream(result)
                return
        else:
            result = await self.ingress.invoke(*request, *who)
        self.set_status(result.status)
        self.set_header("served-model-name", result.served_entity)
        self.set_header("x-request-id", self.request_id or "")
        self.finish(result.body)

    async def _send_stream(self, live: LiveStream) -> None:
        """Each chunk is flushed as it arrives; a client that leaves stops the model's generator."""
        self._live = live
        self.set_status(200)
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("served-model-name", live.served_entity)
        self.set_header("x-request-id", self.request_id or "")
        try:
            async for part in live:
                self.write(part)
                await self.flush()
        except StreamClosedError:
            await live.aclose()
            return
        self.finish()

    def on_connection_close(self) -> None:
        live: LiveStream | None = getattr(self, "_live", None)
        if live is not None:
            live.stream.close()  # wakes the stream's pending read; the loop above records it
        super().on_connection_close()


class NotFoundHandler(ServingHandler):
    """Unknown routes under our prefixes answer in Databricks' format, not Jupyter's HTML 404."""

    def _missing(self) -> None:
        raise EndpointNotFound(f"No API found for '{self.request.method} {self.request.path}'")

    @web.authenticated
    def get(self) -> None:
        self._missing()

    @web.authenticated
    def post(self) -> None:
        self._missing()

    @web.authenticated
    def put(self) -> None:
        self._missing()

    @web.authenticated
    def delete(self) -> None:
        self._missing()

    @web.authenticated
    def patch(self) -> None:
        self._missing()


NAME = r"(?P<name>[^/]+)"
SERVED = r"(?P<served>[^/]+)"
API = r"/api/2\.0/serving-endpoints"

from jupyter_serving.api import (  # noqa: E402 (they subclass ServingHandler)
    endpoint_settings_handlers,
    oauth_handlers,
    openai_handlers,
    rollout_handlers,
    shadow_handlers,
    unavailable_handlers,
    verdict_handlers,
)
from jupyter_serving.api.identity_handlers import identity_handlers  # noqa: E402 (they subclass ours)

default_handlers: list[tuple[str, type[web.RequestHandler]]] = [
    *unavailable_handlers.routes,
    *endpoint_settings_handlers.routes,
    *oauth_handlers.routes,
    *openai_handlers.routes,
    (r"/\.well-known/databricks-config/?", WellKnownConfigHandler),
    (rf"{API}/?", EndpointsHandler),
    (rf"{API}/{NAME}/?", EndpointHandler),
    (rf"{API}/{NAME}/config/?", ConfigHandler),
    (rf"{API}/{NAME}/cancel-update/?", CancelUpdateHandler),
    (rf"{API}/{NAME}/served-models/{SERVED}/logs/?", LogsHandler),
    (rf"{API}/{NAME}/served-models/{SERVED}/build-logs/?", BuildLogsHandler),
    (rf"{API}/{NAME}/metrics/?", MetricsHandler),
    (r"/api/2\.0/jupyter-serving/health/?", HealthHandler),
    (rf"/api/2\.0/jupyter-serving/endpoints/{NAME}/history/?", HistoryHandler),
    (rf"/api/2\.0/jupyter-serving/endpoints/{NAME}/events/?", EventsHandler),
    (rf"/api/2\.0/jupyter-serving/endpoints/{NAME}/inference-table/?", InferenceTableHandler),
    (r"/api/2\.0/jupyter-serving/registered-models/?", RegisteredModelsHandler),
    *shadow_handlers.routes,
    *rollout_handlers.routes,
    *verdict_handlers.routes,
    (rf"/serving-endpoints/{NAME}/invocations/?", InvocationsHandler),
    (rf"/serving-endpoints/{NAME}/served-models/{SERVED}/invocations/?", InvocationsHandler),
    *identity_handlers,
    (rf"{API}/.*", NotFoundHandler),
    (r"/serving-endpoints/.*", NotFoundHandler),
    (r"/api/2\.0/(preview/scim|token-management|token|permissions)/.*", NotFoundHandler),
    (r"/api/2\.1/unity-catalog/.*", NotFoundHandler),
    # Jupyter's own REST API is under /api/ without a version: /api/2.0/ is ours to answer in full.
    (r"/api/2\.0/.*", NotFoundHandler),
]
