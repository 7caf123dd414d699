"""server/openapi.yaml against the code: the same routes as `default_handlers`, and real answers that match.

The route check derives the implemented (method, path) pairs from the handler classes and the route
regexes, so a route added without documenting it (or documented and then removed) fails here. The
other tests drive a real server through every state an endpoint goes through and validate each answer
(status, content type, headers, JSON body) against the response the spec documents for it.

A deployment is held in progress deterministically with the `slow-load` fixture model told to take ten
minutes to load (`stalled_entity`): the deployment stays IN_PROGRESS until the test cancels it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012
from serving_support import IRIS_COLUMNS, IRIS_ROWS, ServingServer, entity, eventually, iris_split

from jupyter_serving import errors
from jupyter_serving.api import handlers

SPEC_FILE = Path(__file__).resolve().parents[2] / "server" / "openapi.yaml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_FILE.read_text())
SPEC_URI = "urn:jupyter-serving:openapi"
REGISTRY: Registry = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(SPEC))
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
SETTLE_TIMEOUT_S = 90.0

API = "/api/2.0/serving-endpoints"
ENDPOINT = API + "/{name}"
CONFIG = ENDPOINT + "/config"
CANCEL = ENDPOINT + "/cancel-update"
LOGS = ENDPOINT + "/served-models/{served}/logs"
BUILD_LOGS = ENDPOINT + "/served-models/{served}/build-logs"
METRICS = ENDPOINT + "/metrics"
INVOKE = "/serving-endpoints/{name}/invocations"
INVOKE_SERVED = "/serving-endpoints/{name}/served-models/{served}/invocations"


# --------------------------------------------------------------------------- spec helpers
def escape(token: str) -> str:
    """One JSON-pointer reference token."""
    return token.replace("~", "~0").replace("/", "~1")


def lookup(pointer: str) -> Any:
    node: Any = SPEC
    for token in pointer.removeprefix("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def resolve(obj: dict[str, Any], pointer: str) -> tuple[dict[str, Any], str]:
    """Follow the local `$ref`s of a response, header, parameter or request body object."""
    while "$ref" in obj:
        ref = obj["$ref"]
        assert ref.startswith("#/"), f"only local references are used: {ref}"
        pointer = ref[1:]
        obj = lookup(pointer)
    return obj, pointer


def assert_valid(instance: Any, pointer: str, what: str) -> None:
    validator = Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=REGISTRY)
    found = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    assert not found, (
        f"{what} does not match {pointer}:\n"
        + "\n".join(f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message[:500]}" for e in found[:8])
        + f"\n  instance: {str(instance)[:2000]}"
    )


def operation_pointer(method: str, template: str) -> str:
    pointer = f"/paths/{escape(template)}/{method.lower()}"
    lookup(pointer)  # KeyError: the operation is not in the spec
    return pointer


def check_request(body: Any, method: str, template: str, media: str = "application/json") -> None:
    op = operation_pointer(method, template)
    _, pointer = resolve(lookup(op)["requestBody"], op + "/requestBody")
    assert_valid(body, f"{pointer}/content/{escape(media)}/schema", f"request body of {method} {template}")


def check_response(response: requests.Response, method: str, template: str) -> Any:
    """Validate status, headers, content type and body against the spec; return the parsed body."""
    op = operation_pointer(method, template)
    status = str(response.status_code)
    documented = lookup(op)["responses"]
    assert status in documented, (
        f"{method} {template} answered {status}, which the spec does not document: {response.text[:500]}"
    )
    spec_response, pointer = resolve(documented[status], f"{op}/responses/{status}")
    what = f"{method} {template} -> {status}"
    for name, header in spec_response.get("headers", {}).items():
        header, header_pointer = resolve(header, f"{pointer}/headers/{escape(name)}")
        value = response.headers.get(name)
        if header.get("required"):
            assert value is not None, f"{what}: header {name} is required by the spec but missing"
        if value is not None:
            assert_valid(value, f"{header_pointer}/schema", f"{what}: header {name}")
    content = spec_response.get("content", {})
    content_type = response.headers.get("Content-Type", "")
    assert content_type in content, f"{what}: Content-Type {content_type!r} is not one of {list(content)}"
    schema_pointer = f"{pointer}/content/{escape(content_type)}/schema"
    body = response.json() if content_type == "application/json" else response.text
    assert_valid(body, schema_pointer, f"{what}: body")
    return body


def call(
    server: ServingServer,
    method: str,
    template: str,
    expect: int,
    *,
    anonymous: bool = False,
    valid_request: bool = True,
    **kwargs: Any,
) -> tuple[requests.Response, Any]:
    """One request on a documented route, checked against the spec; `name`/`served` fill the template."""
    params = {key: kwargs.pop(key) for key in re.findall(r"{(\w+)}", template)}
    path = template.format(**params)
    if "json" in kwargs and valid_request:
        check_request(kwargs["json"], method, template)
    if anonymous:
        response = requests.request(method, server.url + path.lstrip("/"), timeout=120, **kwargs)
    else:
        response = server.api(method, path, **kwargs)
    assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text[:1000]}"
    return response, check_response(response, method, template)


def settle(server: ServingServer, name: str) -> dict[str, Any]:
    """Poll GET like the SDK waiter until the update is no longer in progress, validating every answer."""
    return eventually(
        lambda: call(server, "GET", ENDPOINT, 200, name=name)[1],
        SETTLE_TIMEOUT_S,
        0.1,
        f"{name} finishing its update",
        until=lambda endpoint: endpoint["state"]["config_update"] != "IN_PROGRESS",
    )


def stalled_entity() -> dict[str, Any]:
    """A served entity whose model takes ten minutes to load: its deployment stays in progress until
    the test cancels it (cancelling stops the loading worker)."""
    return {**entity("slow-load", 1), "name": "stalled", "environment_vars": {"SLOW_LOAD_S": "600"}}


@pytest.fixture
def endpoint_name(serving_server: ServingServer) -> Iterator[Callable[[str], str]]:
    """Unique `oas-` endpoint names, each deleted at the end of the test."""
    names: list[str] = []

    def make(label: str) -> str:
        names.append(f"oas-{label}-{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    for name in names:
        serving_server.delete(name)  # 404 when the test deleted it already


# --------------------------------------------------------------------------- (a) routes
def template_of(pattern: str) -> str:
    """`/api/2\\.0/serving-endpoints/(?P<name>[^/]+)/?` -> `/api/2.0/serving-endpoints/{name}`."""
    template = re.sub(r"\(\?P<(\w+)>\[\^/\]\+\)", r"{\1}", pattern.removesuffix("/?")).replace(r"\.", ".")
    assert not re.search(r"[\\()\[\]?*+^$|]", template), f"route {pattern!r} is not a plain path template"
    return template


def implemented_methods(handler: type) -> set[str]:
    base = handlers.ServingHandler
    return {m for m in HTTP_METHODS if getattr(handler, m, None) is not getattr(base, m, None)}


def implemented_routes() -> set[tuple[str, str]]:
    routes = set()
    for pattern, handler in handlers.default_handlers:
        if handler is handlers.NotFoundHandler:
            continue
        methods = implemented_methods(handler)
        assert methods, f"{handler.__name__} is routed but implements no HTTP method"
        routes |= {(method, template_of(pattern)) for method in methods}
    return routes


def documented_routes() -> set[tuple[str, str]]:
    return {(m, path) for path, item in SPEC["paths"].items() for m in item if m in HTTP_METHODS}


def test_spec_documents_exactly_the_implemented_routes() -> None:
    implemented, documented = implemented_routes(), documented_routes()
    assert implemented - documented == set(), "implemented but not in server/openapi.yaml"
    assert documented - implemented == set(), "in server/openapi.yaml but not implemented"


def test_documented_paths_reach_their_handlers_not_the_catch_alls() -> None:
    """Tornado takes the first matching route: fill each template and see which handler answers."""
    for method, template in documented_routes():
        for suffix in ("", "/"):
            path = template.replace("{name}", "ep-1").replace("{served}", "served_1") + suffix
            handler = next(h for p, h in handlers.default_handlers if re.fullmatch(p, path))
            assert handler is not handlers.NotFoundHandler, f"{method.upper()} {path} falls to the catch-all"
            assert method in implemented_methods(handler), f"{handler.__name__} lacks {method} for {path}"


# --------------------------------------------------------------------------- the spec itself
def _refs(node: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield pointer, value
            else:
                yield from _refs(value, f"{pointer}/{escape(str(key))}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _refs(value, f"{pointer}/{i}")


def test_spec_is_consistent() -> None:
    assert SPEC["openapi"].startswith("3.1")
    for where, ref in _refs(SPEC):
        assert ref.startswith("#/"), f"{where}: external reference {ref}"
        lookup(ref[1:])  # KeyError names a dangling $ref
    for schema in SPEC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    operation_ids = []
    for path, item in SPEC["paths"].items():
        declared_at_path = {resolve(p, "")[0]["name"] for p in item.get("parameters", [])}
        for method, operation in ((m, o) for m, o in item.items() if m in HTTP_METHODS):
            operation_ids.append(operation["operationId"])
            declared = declared_at_path | {
                resolve(p, "")[0]["name"] for p in operation.get("parameters", []) if "$ref" in p or "in" in p
            }
            assert set(re.findall(r"{(\w+)}", path)) <= declared, (
                f"{method} {path}: undeclared path parameter"
            )
            for status, response in operation["responses"].items():
                assert "description" in resolve(response, "")[0], f"{method} {path} {status}"
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"
    assert SPEC["paths"]["/.well-known/databricks-config"]["get"]["security"] == []
    assert set(SPEC["components"]["securitySchemes"]) == {"bearerAuth", "basicToken", "jupyterToken"}


def test_every_error_code_the_server_raises_is_documented() -> None:
    codes = {
        cls.error_code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, Exception)
    }
    codes |= set(handlers._STATUS_CODES.values())
    documented = set(SPEC["components"]["schemas"]["Error"]["properties"]["error_code"]["examples"])
    assert codes <= documented, f"undocumented error codes: {codes - documented}"


def test_decisions_are_recorded() -> None:
    decisions = SPEC["x-decisions"]
    for key in (
        "duplicate-endpoint-name",
        "update-while-in-progress",
        "traffic-not-summing-to-100",
        "multiple-entities-without-traffic-config",
        "invocation-while-first-config-deploys",
        "payload-too-large",
        "model-exception",
        "timeout",
        "uc-default-served-name",
        "request-id",
        "csv-input",
        "sticky-routing",
        "cancel-update",
        "extension-routes",
    ):
        assert decisions[key]["decision"], key


# --------------------------------------------------------------------------- (b) real answers
def test_unauthenticated_extension_and_error_answers(serving_server: ServingServer) -> None:
    _, metadata = call(serving_server, "GET", "/.well-known/databricks-config", 200, anonymous=True)
    assert metadata == {"oidc_endpoint": serving_server.url + "oidc"}
    _, error = call(serving_server, "GET", API, 401, anonymous=True)
    assert error["error_code"] == "UNAUTHENTICATED"
    _, health = call(serving_server, "GET", "/api/2.0/jupyter-serving/health", 200)
    assert health["status"] == "ok"
    _, models = call(serving_server, "GET", "/api/2.0/jupyter-serving/registered-models", 200)
    assert {"iris-lr", "main.default.iris", "boom"} <= {m["name"] for m in models["registered_models"]}
    _, missing = call(serving_server, "GET", ENDPOINT, 404, name="oas-missing")
    assert missing["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    call(serving_server, "DELETE", ENDPOINT, 404, name="oas-missing")
    call(serving_server, "GET", METRICS, 404, name="oas-missing")
    call(serving_server, "POST", INVOKE, 404, name="oas-missing", json=iris_split())
    # validation errors: no endpoint is created by any of these
    two = [entity("iris-lr", 1), entity("iris-lr", 2)]
    _, unsplit = call(
        serving_server, "POST", API, 400, json={"name": "oas-bad", "config": {"served_entities": two}}
    )
    assert unsplit["error_code"] == "INVALID_PARAMETER_VALUE"
    routes = [
        {"served_model_name": "iris-lr-1", "traffic_percentage": 50},
        {"served_model_name": "iris-lr-2", "traffic_percentage": 40},
    ]
    body = {"name": "oas-bad", "config": {"served_entities": two, "traffic_config": {"routes": routes}}}
    _, bad_sum = call(serving_server, "POST", API, 400, json=body)
    assert bad_sum["error_code"] == "INVALID_PARAMETER_VALUE"
    body = {"name": "oas-bad", "config": {"served_entities": [entity("iris-lr", 99)]}}
    _, no_version = call(serving_server, "POST", API, 404, json=body)
    assert no_version["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    call(serving_server, "POST", API, 400, data=b"not json", headers={"Content-Type": "application/json"})


def test_endpoint_lifecycle_answers_match_the_spec(
    serving_server: ServingServer, endpoint_name: Callable[[str], str]
) -> None:
    name = endpoint_name("life")
    config = {
        "served_entities": [entity("iris-lr", 1), entity("main.default.iris", 1)],
        "traffic_config": {
            "routes": [
                {"served_model_name": "iris-lr-1", "traffic_percentage": 80},
                {"served_model_name": "iris-1", "traffic_percentage": "20"},
            ]
        },
    }
    _, created = call(serving_server, "POST", API, 200, json={"name": name, "config": config})
    assert created["state"] == {"ready": "NOT_READY", "config_update": "IN_PROGRESS"}
    assert "config" not in created and created["pending_config"]["config_version"] == 1
    _, duplicate = call(serving_server, "POST", API, 409, json={"name": name, "config": config})
    assert duplicate["error_code"] == "RESOURCE_ALREADY_EXISTS"

    ready = settle(serving_server, name)
    assert ready["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert "pending_config" not in ready
    served = {e["name"]: e for e in ready["config"]["served_entities"]}
    assert set(served) == {"iris-lr-1", "iris-1"}  # the UC default: last dotted segment + version
    assert all(e["local"]["ready_replicas"] >= 1 for e in served.values())

    _, listed = call(serving_server, "GET", API, 200)
    summary = next(e for e in listed["endpoints"] if e["name"] == name)
    assert {e["name"] for e in summary["config"]["served_entities"]} == {"iris-lr-1", "iris-1"}

    response, answer = call(serving_server, "POST", INVOKE, 200, name=name, json=iris_split())
    assert len(answer["predictions"]) == len(IRIS_ROWS)
    assert response.headers["served-model-name"] in served
    sticky = {
        call(
            serving_server,
            "POST",
            INVOKE,
            200,
            name=name,
            json=iris_split(),
            headers={"X-Serving-Routing-Key": "user-42"},
        )[0].headers["served-model-name"]
        for _ in range(4)
    }
    assert len(sticky) == 1
    csv = ",".join(IRIS_COLUMNS) + "\n" + "\n".join(",".join(map(str, row)) for row in IRIS_ROWS) + "\n"
    check_request(csv, "POST", INVOKE, "text/csv")
    _, csv_answer = call(
        serving_server, "POST", INVOKE, 200, name=name, data=csv, headers={"Content-Type": "text/csv"}
    )
    assert len(csv_answer["predictions"]) == len(IRIS_ROWS)
    response, _ = call(
        serving_server, "POST", INVOKE_SERVED, 200, name=name, served="iris-1", json=iris_split()
    )
    assert response.headers["served-model-name"] == "iris-1"
    call(serving_server, "POST", INVOKE_SERVED, 404, name=name, served="nope", json=iris_split())
    response, bad = call(
        serving_server, "POST", INVOKE, 400, name=name, json={"rows": [[1.0]]}, valid_request=False
    )
    assert bad["error_code"] == "BAD_REQUEST" and "x-request-id" in response.headers
    _, unsupported = call(
        serving_server, "POST", INVOKE, 415, name=name, data="x", headers={"Content-Type": "text/plain"}
    )
    assert unsupported["error_code"] == "BAD_REQUEST"

    _, logs = call(serving_server, "GET", LOGS, 200, name=name, served="iris-lr-1")
    assert "loading model" in logs["logs"]
    call(serving_server, "GET", LOGS, 404, name=name, served="nope")
    _, build = call(serving_server, "GET", BUILD_LOGS, 200, name=name, served="iris-lr-1")
    assert "server's environment already satisfies" in build["logs"]
    call(serving_server, "GET", BUILD_LOGS, 404, name=name, served="nope")
    _, metrics = call(serving_server, "GET", METRICS, 200, name=name)
    assert "requests_total" in metrics

    bad_update = {**config, "traffic_config": {"routes": config["traffic_config"]["routes"][:1]}}
    _, error = call(serving_server, "PUT", CONFIG, 400, name=name, json=bad_update)
    assert error["error_code"] == "INVALID_PARAMETER_VALUE"
    _, nothing = call(serving_server, "POST", CANCEL, 400, name=name)
    assert nothing["error_code"] == "INVALID_STATE"

    _, deleted = call(serving_server, "DELETE", ENDPOINT, 200, name=name)
    assert deleted == {}
    call(serving_server, "GET", ENDPOINT, 404, name=name)


def test_model_errors_and_an_update_in_progress(
    serving_server: ServingServer, endpoint_name: Callable[[str], str]
) -> None:
    name = endpoint_name("update")
    call(
        serving_server,
        "POST",
        API,
        200,
        json={"name": name, "config": {"served_entities": [entity("boom", 1)]}},
    )
    settle(serving_server, name)
    response, failed = call(
        serving_server, "POST", INVOKE, 400, name=name, json={"dataframe_records": [{"x": -1.0}]}
    )
    assert failed["error_code"] == "BAD_REQUEST"
    assert response.headers["served-model-name"] == "boom-1"
    _, ok = call(serving_server, "POST", INVOKE, 200, name=name, json={"dataframe_records": [{"x": 2.0}]})
    assert ok == {"predictions": [4.0]}

    update = {"served_entities": [stalled_entity()]}
    _, updating = call(serving_server, "PUT", CONFIG, 200, name=name, json=update)
    assert updating["state"] == {"ready": "READY", "config_update": "IN_PROGRESS"}
    assert (updating["config"]["config_version"], updating["pending_config"]["config_version"]) == (1, 2)
    _, polled = call(serving_server, "GET", ENDPOINT, 200, name=name)
    assert polled["state"]["config_update"] == "IN_PROGRESS"
    assert polled["pending_config"]["served_entities"][0]["state"]["deployment"] == "DEPLOYMENT_CREATING"
    _, conflict = call(serving_server, "PUT", CONFIG, 409, name=name, json=update)
    assert conflict["error_code"] == "RESOURCE_CONFLICT"
    response, _ = call(
        serving_server, "POST", INVOKE, 200, name=name, json={"dataframe_records": [{"x": 1.0}]}
    )
    assert response.headers["served-model-name"] == "boom-1"
    _, canceled = call(serving_server, "POST", CANCEL, 200, name=name)
    assert canceled["state"] == {"ready": "READY", "config_update": "UPDATE_CANCELED"}
    assert "pending_config" not in canceled and canceled["config"]["config_version"] == 1
    _, again = call(serving_server, "POST", CANCEL, 400, name=name)
    assert again["error_code"] == "INVALID_STATE"
    call(serving_server, "DELETE", ENDPOINT, 200, name=name)


def test_first_deployment_in_progress_canceled_and_failed(
    serving_server: ServingServer, endpoint_name: Callable[[str], str]
) -> None:
    stalled, broken = endpoint_name("stalled"), endpoint_name("failed")
    config = {"served_entities": [stalled_entity()]}
    call(serving_server, "POST", API, 200, json={"name": stalled, "config": config})
    body = {"name": broken, "config": {"served_entities": [entity("fail-load", 1)]}}
    call(serving_server, "POST", API, 200, json=body)
    _, deploying = call(serving_server, "GET", ENDPOINT, 200, name=stalled)
    assert deploying["state"] == {"ready": "NOT_READY", "config_update": "IN_PROGRESS"}
    assert "config" not in deploying
    _, listed = call(serving_server, "GET", API, 200)
    summary = next(e for e in listed["endpoints"] if e["name"] == stalled)
    assert summary["config"]["served_entities"][0]["name"] == "stalled"  # from the pending config
    _, canceled = call(serving_server, "POST", CANCEL, 200, name=stalled)
    assert canceled["state"] == {"ready": "NOT_READY", "config_update": "UPDATE_CANCELED"}
    assert "config" not in canceled and "pending_config" not in canceled
    _, not_ready = call(serving_server, "POST", INVOKE, 400, name=stalled, json=iris_split())
    assert not_ready["error_code"] == "INVALID_STATE"

    failed = settle(serving_server, broken)
    assert failed["state"] == {"ready": "NOT_READY", "config_update": "UPDATE_FAILED"}
    entity_state = failed["pending_config"]["served_entities"][0]["state"]
    assert entity_state["deployment"] == "DEPLOYMENT_FAILED" and entity_state["deployment_state_message"]
    _, invalid = call(
        serving_server, "POST", INVOKE, 400, name=broken, json={"dataframe_records": [{"a": 1.0}]}
    )
    assert invalid["error_code"] == "INVALID_STATE"
    _, logs = call(serving_server, "GET", LOGS, 200, name=broken, served="fail-load-1")
    assert "corrupt" in logs["logs"]
    for name in (stalled, broken):
        call(serving_server, "DELETE", ENDPOINT, 200, name=name)


def test_limits_answer_as_documented(start_server: Callable[..., ServingServer]) -> None:
    """A server with a 2 s request timeout and a 4 KiB body limit: 413, 503 + Retry-After, 504."""
    server = start_server("--request-timeout-s", "2", "--max-request-bytes", "4096")
    _, too_large = call(server, "POST", INVOKE, 413, name="oas-any", data=b"x" * 5000, valid_request=False)
    assert too_large["error_code"] == "BAD_REQUEST"

    config = {"served_entities": [stalled_entity()]}
    call(server, "POST", API, 200, json={"name": "oas-held", "config": config})
    response, unavailable = call(server, "POST", INVOKE, 503, name="oas-held", json=iris_split())
    assert unavailable["error_code"] == "TEMPORARILY_UNAVAILABLE"
    assert response.headers["Retry-After"] == "1"
    call(server, "POST", CANCEL, 200, name="oas-held")

    call(
        server,
        "POST",
        API,
        200,
        json={"name": "oas-slow", "config": {"served_entities": [entity("slow", 1)]}},
    )
    settle(server, "oas-slow")
    _, late = call(server, "POST", INVOKE, 504, name="oas-slow", json={"dataframe_records": [{"delay": 4.0}]})
    assert late["error_code"] == "DEADLINE_EXCEEDED"
    for name in ("oas-held", "oas-slow"):
        call(server, "DELETE", ENDPOINT, 200, name=name)


# --------------------------------------------------------------------------- (d) the Model Serving page's routes
HISTORY = "/api/2.0/jupyter-serving/endpoints/{name}/history"
EVENTS = "/api/2.0/jupyter-serving/endpoints/{name}/events"
TABLE = "/api/2.0/jupyter-serving/endpoints/{name}/inference-table"


def event_types(server: ServingServer, name: str) -> list[str]:
    return [e["type"] for e in call(server, "GET", EVENTS, 200, name=name)[1]["events"]]


def test_history_events_and_inference_table_over_http(start_server: Callable[..., ServingServer]) -> None:
    """Charts' data fills in while requests run; a failed update becomes events that survive a restart;
    the inference-table route answers rows and compare_entities' verdict."""
    server = start_server("--history-interval-s", "0.25", "--capture-flush-s", "0.2")
    name = "hist"
    capture = {"catalog_name": "main", "schema_name": "default", "enabled": True}
    assert server.create(name, {"served_entities": [entity("iris-lr", 1)], "auto_capture_config": capture}).ok
    server.wait_settled(name)
    for i in range(30):
        call(server, "POST", INVOKE, 200, name=name, json={**iris_split(), "client_request_id": f"r{i}"})

    def busy(history: dict[str, Any]) -> bool:
        entities = {e["name"]: e["samples"] for e in history["served_entities"]}
        samples = entities.get("iris-lr-1", {})
        return any(r and r > 0 for r in samples.get("requests_2xx_per_s", []))

    def history_under_traffic() -> dict[str, Any]:
        # A request per look: the 30 above can all finish before the sampler's first sample of the
        # entity (its baseline), and a rate needs requests between two samples.
        call(server, "POST", INVOKE, 200, name=name, json=iris_split())
        return call(server, "GET", HISTORY, 200, name=name)[1]

    history = eventually(history_under_traffic, 60, 0.2, "a request rate", until=busy)
    samples = history["served_entities"][0]["samples"]
    assert history["interval_s"] == 0.25 and history["retention_s"] == 3600.0
    assert history["sampler"]["ticks"] > 0 and history["sampler"]["busy_s"] > 0
    assert len({len(column) for column in samples.values()}) == 1  # aligned columns
    assert max(samples["ready_replicas"]) >= 1 and any(p for p in samples["latency_p99_ms"] if p)
    assert any(m for m in samples["memory_bytes"] if m)  # psutil on the worker process
    assert history["traffic"]["iris-lr-1"][-1] == 100
    last = history["traffic"]["timestamp_ms"][-1]
    newer = call(server, "GET", HISTORY, 200, name=name, params={"since_ms": last})[1]
    assert all(t > last for t in newer["traffic"]["timestamp_ms"])

    table = eventually(
        lambda: call(server, "GET", TABLE, 200, name=name, params={"limit": 5})[1],
        60,
        0.2,
        "the inference table filling",
        until=lambda t: t["requests"] >= 30,
    )
    assert len(table["rows"]) == 5 and table["rows"][0]["served_entity_name"] == "iris-lr-1"
    assert table["comparison"]["control"] == "iris-lr-1" and table["comparison"]["verdict"]

    failing = {"served_entities": [entity("iris-lr", 1), entity("fail-load", 1)]}
    failing["traffic_config"] = {
        "routes": [
            {"served_model_name": "iris-lr-1", "traffic_percentage": 50},
            {"served_model_name": "fail-load-1", "traffic_percentage": 50},
        ]
    }
    assert server.api("PUT", f"api/2.0/serving-endpoints/{name}/config", json=failing).ok
    assert server.wait_settled(name)["state"]["config_update"] == "UPDATE_FAILED"
    eventually(
        lambda: event_types(server, name),
        60,
        0.2,
        "an UPDATE_FAILED event",
        until=lambda t: "UPDATE_FAILED" in t,
    )
    events = call(server, "GET", EVENTS, 200, name=name)[1]["events"]
    types = [e["type"] for e in events]
    assert types[0] == "ENDPOINT_CREATED" and "UPDATE_STARTED" in types
    failed = next(e for e in events if e["type"] == "UPDATE_FAILED")
    assert failed["severity"] == "ERROR" and failed["message"].startswith("Config update failed:")
    assert [e["timestamp_ms"] for e in events] == sorted(e["timestamp_ms"] for e in events)

    _, bad = call(server, "GET", EVENTS, 400, name=name, params={"since_ms": "yesterday"})
    assert bad["error_code"] == "INVALID_PARAMETER_VALUE"
    call(server, "GET", TABLE, 400, name=name, params={"limit": "0"})
    call(server, "GET", HISTORY, 404, name="nope")
    call(server, "GET", EVENTS, 401, name=name, anonymous=True)
    events_file = server.state_dir / "events" / f"{name}.jsonl"
    assert events_file.stat().st_mode & 0o777 == 0o600

    server.stop()
    again = start_server("--history-interval-s", "0.25", state_dir=server.state_dir)
    kept = event_types(again, name)
    assert kept[: len(types)] == types  # the events survived the restart
    assert again.api("DELETE", f"api/2.0/serving-endpoints/{name}").ok
    eventually(lambda: not events_file.exists(), 60, 0.2, "the events of a deleted endpoint going")
