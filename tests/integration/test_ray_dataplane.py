"""The data plane on Ray (issue 31): queries through Serve's HTTP proxy on every node, without the server.

A two-node Ray cluster of this module's own (one CPU each, stopped at the end whatever happens)
with Serve's proxy on both nodes (two ports on one machine), and one `--backend ray` server on it.
One route-optimized endpoint with an 80/20 split and an inference table is queried through each
node's proxy with data-plane tokens; the last test kills the server with SIGKILL, queries on, and
restarts it, which adopts the running applications without restarting a replica.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from agent_models import QUESTION, leave_mid_stream, register_agents, sse_events, stream, table_row
from ray_cluster import RAY_ENV, RAY_MISSING, RayCluster
from scenarios import AB, CAPTURE, FAST_TIMERS, wait_local, wait_rows
from serving_support import MlflowEnv, ServingServer, entity, eventually, iris_split

from jupyter_serving.backends.ray.ingress import signing_key_name
from jupyter_serving.backends.ray.options import server_prefix
from jupyter_serving.identity.tokens import TokenSigner, endpoint_scope

pytestmark = [
    pytest.mark.skipif(bool(RAY_MISSING), reason=RAY_MISSING or "Ray is installed"),
    pytest.mark.timeout(600),
]

EP = "rdp"
AGENT_EP = "agent-dp"  # not named rdp-...: replicas() tells the two endpoints apart by name
SOLO_EP = "solo-dp"
ZERO_EP = "zero-dp"
RAY_FLAGS = (
    "--backend", "ray",
    "--env-manager", "local",
    "--ray-replica-cpus", "0.2",
    "--capture-flush-s", "0.2",
)  # fmt: skip


@dataclass
class Plane:
    cluster: RayCluster
    server: ServingServer
    args: list[str]
    key: bytes = b""
    proxies: list[str] = field(default_factory=list)

    def token(self, subject: str = "ci-robot", endpoint: str = EP, ttl_s: int = 600, age_s: float = 0) -> str:
        """A data-plane token signed with the cluster's key, as /oidc/v1/token signs them."""
        return TokenSigner(self.key, clock=lambda: time.time() - age_s).mint(
            subject, endpoint_scope(endpoint), ttl_s
        )

    def query(self, proxy: str, token: str, payload: object = None, served: str | None = None,
              **headers: str) -> requests.Response:  # fmt: skip
        path = f"/serving-endpoints/{EP}" + (f"/served-models/{served}" if served else "") + "/invocations"
        return requests.post(
            proxy + path, json=payload if payload is not None else iris_split(),
            headers={"Authorization": f"Bearer {token}", **headers}, timeout=60,
        )  # fmt: skip

    def replicas(self, of: str = "") -> list[str]:
        """Names (with Serve's replica ids) of the live replica actors of endpoint EP's applications,
        or of application `of`."""
        code = (
            "names = [a.get('Name') or '' for a in ray._private.state.actors(actor_state_name='ALIVE').values()]\n"
            "print(json.dumps(sorted(n for n in names if n.startswith('SERVE_REPLICA::jsrv'))))"
        )
        names = json.loads(self.cluster.driver(code))
        if of:
            return [n for n in names if n.startswith(f"SERVE_REPLICA::{of}#")]
        return [n for n in names if f"-{EP}-" in n or f"-{EP}#" in n]

    def routes(self) -> dict[str, str | None]:
        """Each Serve application's route prefix, as the controller hands it to the proxies."""
        code = (
            "details = serve.context._get_global_client().get_serve_details()\n"
            "print(json.dumps({n: a.get('route_prefix') for n, a in details['applications'].items()}))"
        )
        return dict(json.loads(self.cluster.driver(code)))


@pytest.fixture(scope="module")
def plane(
    ray_cluster: RayCluster, mlflow_env: MlflowEnv, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plane]:
    """This module's server on the session's two-node cluster (tests/conftest.py), which it shares
    with test_ray_backend.py: the two modules run one after the other on one xdist worker."""
    cluster = ray_cluster
    server: ServingServer | None = None
    plane: Plane | None = None
    try:
        args = [*RAY_FLAGS, "--ray-address", cluster.address, *cluster.proxy_flags, *FAST_TIMERS]
        state = tmp_path_factory.mktemp("raydp") / "state"
        server = ServingServer(state, {**mlflow_env.env, **RAY_ENV}, args, startup_timeout=180).start()
        plane = Plane(cluster, server, args)
        plane.proxies = [f"http://127.0.0.1:{port}" for port in cluster.proxy_ports]
        response = server.create(EP, {**AB, "auto_capture_config": CAPTURE}, route_optimized=True)
        assert response.status_code == 200, response.text
        endpoint = server.wait_settled(EP)
        assert endpoint["state"]["ready"] == "READY", endpoint
        # The token key, read from Ray's internal KV where the server put it (as the proxies read it).
        name = signing_key_name(server_prefix(str(state.resolve())))
        key = cluster.driver(
            "from ray.experimental import internal_kv as kv\n"
            f"print(kv._internal_kv_get({name!r}, namespace='jupyter_serving').hex())"
        )
        plane.key = bytes.fromhex(key)
        yield plane
    finally:
        if plane is not None:  # the last server: a test may have restarted it
            server = plane.server
        if server is not None:
            server.stop()


def _ready_on_both_proxies(plane: Plane, token: str) -> None:
    """The ingress application comes up after the endpoint (the next poll publishes it)."""
    for proxy in plane.proxies:
        eventually(lambda p=proxy: plane.query(p, token), 180, 0.5, f"the ingress answering on {proxy}",
                   until=lambda r: r.status_code == 200)  # fmt: skip


def _ingress_on_every_node(plane: Plane) -> list[str]:
    """Wait until the ingress has its replica on each of the two nodes (a killed one is replaced by
    Serve after a back-off; either proxy answers meanwhile, through the other node's replica)."""

    def ingresses() -> list[str]:
        return [n for n in plane.replicas() if f"-{EP}#Ingress#" in n]  # this endpoint's only

    return eventually(ingresses, 180, 0.5, "an ingress replica on each node", until=lambda r: len(r) == 2)


def test_queries_through_each_nodes_proxy_follow_the_split_and_are_captured(plane: Plane) -> None:
    server = plane.server
    detail = server.get(EP)
    # Where clients go: GET points at the head node's Ray proxy, for the SDK and plain HTTP alike.
    url = detail["endpoint_url"]
    assert url == f"{plane.proxies[0]}/serving-endpoints/{EP}/invocations"
    assert detail["data_plane_info"]["query_info"]["endpoint_url"] == url
    grant = {
        "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "assertion": server.token,
        "authorization_details": detail["data_plane_info"]["query_info"]["authorization_details"],
    }
    token = requests.post(server.url + "oidc/v1/token", data=grant, timeout=30).json()["access_token"]
    _ready_on_both_proxies(plane, token)

    # The same answer bytes and error as the server's route.
    local = server.invoke(EP, iris_split(), served="current")
    remote = plane.query(plane.proxies[1], token, iris_split(), served="current")
    assert (remote.status_code, remote.content) == (local.status_code, local.content)
    assert remote.headers["served-model-name"] == "current" and remote.headers["x-request-id"]
    assert remote.headers["content-type"] == "application/json"
    bad_local = server.invoke(EP, {"dataframe_records": [{"x": 1}]}, served="current")
    bad_remote = plane.query(plane.proxies[0], token, {"dataframe_records": [{"x": 1}]}, served="current")
    assert (bad_remote.status_code, bad_remote.json()) == (bad_local.status_code, bad_local.json())
    assert (
        plane.query(plane.proxies[0], token, served="nope").json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    )

    # 80/20 across both proxies: 300 unkeyed requests, each routed by the replica's own draw.
    def send(i: int) -> requests.Response:
        return plane.query(plane.proxies[i % 2], token, {**iris_split(), "client_request_id": f"s{i}"})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(300)))
    assert [r.status_code for r in answers] == [200] * 300
    by_proxy = [Counter(r.headers["served-model-name"] for r in answers[i::2]) for i in range(2)]
    total = by_proxy[0] + by_proxy[1]
    # Binomial(300, 0.2): mean 60, sd 6.9; 5 sd either side never fails by chance (p < 1e-6).
    assert 25 <= total["challenger"] <= 95, total
    assert all(c["current"] > 0 and c["challenger"] > 0 for c in by_proxy), by_proxy
    # Sticky: one routing key, one entity, on either proxy.
    sticky = {
        plane.query(plane.proxies[i % 2], token, **{"X-Serving-Routing-Key": "user-42"}).headers[
            "served-model-name"
        ]
        for i in range(6)
    }
    assert len(sticky) == 1

    # Capture: every answered request is a row of the endpoint's Delta table, none lost or doubled.
    path = server.get(EP)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    ids = [r.headers["x-request-id"] for r in answers]
    frame = eventually(lambda: wait_rows(path, 1), 120, 0.5, "every answered row in the table",
                       until=lambda f: set(ids) <= set(f["databricks_request_id"]))  # fmt: skip
    rows = frame[frame["client_request_id"].fillna("").str.match(r"s\d+$")]
    assert sorted(rows["databricks_request_id"]) == sorted(ids)
    served = {r.headers["x-request-id"]: r.headers["served-model-name"] for r in answers}
    logged = {
        rid: dict(meta)["served_entity_name"]  # a Delta map: (key, value) pairs
        for rid, meta in zip(rows["databricks_request_id"], rows["request_metadata"], strict=True)
    }
    assert logged == served


def test_tokens_are_checked_without_the_server_and_rate_limits_hold_across_proxies(plane: Plane) -> None:
    proxy = plane.proxies[1]
    _ready_on_both_proxies(plane, plane.token())
    for token, status, code in (
        (plane.token(endpoint="another-endpoint"), 403, "PERMISSION_DENIED"),
        (plane.token(ttl_s=60, age_s=3600), 401, "UNAUTHENTICATED"),  # expired an hour ago
        (plane.server.token, 401, "UNAUTHENTICATED"),  # the server's own token is no data-plane token
        ("jsv1.forged.sig", 401, "UNAUTHENTICATED"),
    ):
        refused = plane.query(proxy, token)
        assert (refused.status_code, refused.json()["error_code"]) == (status, code), refused.text
    no_auth = requests.post(f"{proxy}/serving-endpoints/{EP}/invocations", json=iris_split(), timeout=30)
    assert no_auth.status_code == 401
    wrong_type = plane.query(proxy, plane.token(), None, **{"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415

    # Rate limits: 4 calls per user per window, counted once for both proxies.
    gateway = {"rate_limits": [{"calls": 4, "key": "user", "renewal_period": "minute"}]}
    response = plane.server.api("PUT", f"api/2.0/serving-endpoints/{EP}/ai-gateway", json=gateway)
    assert response.status_code == 200, response.text
    probe = plane.token("probe")  # until one is refused, the new limits have reached the ingress
    eventually(lambda: plane.query(proxy, probe), 120, 0.2, "the rate limit applied on the proxy",
               until=lambda r: r.status_code == 429)  # fmt: skip
    fresh = plane.token("alice")
    answers = [plane.query(plane.proxies[i % 2], fresh) for i in range(6)]
    assert [r.status_code for r in answers] == [200] * 4 + [429] * 2
    refused = answers[-1]
    assert (
        refused.json()["error_code"] == "REQUEST_LIMIT_EXCEEDED" and int(refused.headers["Retry-After"]) >= 1
    )
    assert plane.query(proxy, plane.token("bob")).status_code == 200  # per user
    response = plane.server.api("PUT", f"api/2.0/serving-endpoints/{EP}/ai-gateway", json={})
    assert response.status_code == 200, response.text
    # Until the ingress has the limits lifted: 5 calls of one new user all answered.
    users = iter(range(1000))

    def five_pass() -> bool:
        token = plane.token(f"after-{next(users)}")
        return all(plane.query(plane.proxies[i % 2], token).status_code == 200 for i in range(5))

    eventually(five_pass, 120, 0.2, "the rate limits lifted on the proxies", until=bool)


def test_an_agent_streams_through_each_proxy_as_through_the_server(plane: Plane, tmp_path: Path) -> None:
    """`"stream": true` through Serve's proxies: the same Server-Sent Events as the server's route,
    chunk by chunk, the assembled answer in the endpoint's table, and a client that hangs up
    stopping the model's generator (GeneratorExit in the agent, a 499 row)."""
    server = plane.server
    register_agents()
    capture = {"catalog_name": "main", "schema_name": "default", "enabled": True}
    created = server.create(
        AGENT_EP, {"served_entities": [entity("agent-echo", 1)], "auto_capture_config": capture},
        route_optimized=True,
    )  # fmt: skip
    assert created.status_code == 200, created.text
    try:
        _stream_through_each_proxy(plane, tmp_path)
    finally:  # the next tests count this server's replicas: leave none of this endpoint's
        server.delete(AGENT_EP)


def _stream_through_each_proxy(plane: Plane, tmp_path: Path) -> None:
    server = plane.server
    assert server.wait_settled(AGENT_EP)["state"]["ready"] == "READY"
    expected = stream(server, AGENT_EP, QUESTION)  # the server's own route
    assert expected[-1] == (None, "[DONE]") and len(expected) > 2
    token = plane.token(endpoint=AGENT_EP)
    auth = {"Authorization": f"Bearer {token}"}
    path = f"/serving-endpoints/{AGENT_EP}/invocations"
    # One entity of a route-optimized endpoint: its replica fronts the route (the one-hop path), so
    # the stream, its row and the hang-up below all go through the ingress code in that replica.
    eventually(lambda: server.get(AGENT_EP)["config"]["served_entities"][0]["local"]["ray"]["route"], 180, 0.5,
               "the agent's replica fronting its route", until=lambda r: r == path)  # fmt: skip
    for proxy in plane.proxies:
        eventually(lambda p=proxy: requests.post(p + path, json=QUESTION, headers=auth, timeout=60), 180, 0.5,
                   f"the agent answering on {proxy}", until=lambda r: r.status_code == 200)  # fmt: skip
        with requests.post(proxy + path, json={**QUESTION, "stream": True}, headers=auth, stream=True,
                           timeout=60) as response:  # fmt: skip
            assert response.status_code == 200, response.text
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["served-model-name"] == "agent-echo-1"
            request_id = response.headers["x-request-id"]
            events = list(sse_events(response.iter_lines()))
        assert events == expected, proxy
        logged = json.loads(table_row(server, AGENT_EP, request_id)["response"])
        assert logged["output"][0]["content"][0]["text"] == "echo: hello big wide world"

    marker = tmp_path / "closed"
    leaving = {
        "input": [{"role": "user", "content": " ".join(f"w{i}" for i in range(50))}],
        "custom_inputs": {"pause": 0.2, "closed_marker": str(marker)},
    }
    left = leave_mid_stream(server, AGENT_EP, leaving, base_url=plane.proxies[1], token=token)
    eventually(marker.exists, 60, 0.05, "GeneratorExit reaching the agent")
    assert int(marker.read_text()) < 45  # stopped early, not run to its end
    assert table_row(server, AGENT_EP, left)["status_code"] == 499


def test_a_one_entity_endpoint_is_answered_by_its_own_replica_while_its_route_moves(plane: Plane) -> None:
    """One actor hop: an endpoint whose traffic all goes to one entity (on the nodes' own
    environment) is served at its invocations route by that entity's application itself, with the
    same answers, errors and token checks. An update moves the route to the new entity while every
    query through both proxies is answered, and a split gives it back to the endpoint's ingress."""
    with _endpoint(plane, SOLO_EP, entity("iris-lr", 1, name="one")):
        _solo_route_moves(plane)


@contextlib.contextmanager
def _endpoint(plane: Plane, name: str, served: dict[str, object]) -> Iterator[None]:
    """A route-optimized one-entity endpoint for one test, deleted after it whatever happens: the
    next tests count this server's replicas and must find none of it."""
    created = plane.server.create(name, {"served_entities": [served]}, route_optimized=True)
    assert created.status_code == 200, created.text
    try:
        yield
    finally:
        plane.server.delete(name)


def _solo_route_moves(plane: Plane) -> None:
    server = plane.server
    route = f"/serving-endpoints/{SOLO_EP}/invocations"
    token = plane.token(endpoint=SOLO_EP)

    def query(
        proxy: str, payload: object = None, served: str | None = None, tok: str = token
    ) -> requests.Response:
        path = (
            f"/serving-endpoints/{SOLO_EP}" + (f"/served-models/{served}" if served else "") + "/invocations"
        )
        return requests.post(proxy + path, json=payload if payload is not None else iris_split(),
                             headers={"Authorization": f"Bearer {tok}"}, timeout=60)  # fmt: skip

    def app_of(name: str) -> str:
        entities = server.get(SOLO_EP)["config"]["served_entities"]
        return str(next(e for e in entities if e["name"] == name)["local"]["ray"]["application"])

    assert server.wait_settled(SOLO_EP)["state"]["ready"] == "READY"
    one = app_of("one")
    eventually(plane.routes, 180, 0.5, "the entity's application holding the route",
               until=lambda r: r.get(one) == route)  # fmt: skip
    local, bad_local = (
        server.invoke(SOLO_EP, iris_split()),
        server.invoke(SOLO_EP, {"dataframe_records": [{"x": 1}]}),
    )
    for proxy in plane.proxies:
        answer = query(proxy)
        assert (answer.status_code, answer.content) == (local.status_code, local.content)
        assert answer.headers["served-model-name"] == "one" and answer.headers["x-request-id"]
        bad = query(proxy, {"dataframe_records": [{"x": 1}]})
        assert (bad.status_code, bad.json()) == (bad_local.status_code, bad_local.json())
        refused = query(proxy, tok=plane.token(endpoint=EP))  # another endpoint's token
        assert (refused.status_code, refused.json()["error_code"]) == (403, "PERMISSION_DENIED")
        assert query(proxy, served="one").content == local.content  # direct: through the ingress app

    # An update under load through both proxies: the new entity's application takes the route.
    stop = threading.Event()
    seen: list[tuple[int, str]] = []

    def load(n: int) -> None:
        while not stop.is_set():
            answer = query(plane.proxies[n % 2])
            seen.append((answer.status_code, answer.headers.get("served-model-name", answer.text)))

    update = {"served_entities": [entity("iris-lr", 1, name="two")]}
    with ThreadPoolExecutor(2) as pool:
        clients = [pool.submit(load, n) for n in range(2)]
        try:
            response = server.api("PUT", f"api/2.0/serving-endpoints/{SOLO_EP}/config", json=update)
            assert response.status_code == 200, response.text
            assert server.wait_settled(SOLO_EP)["state"]["ready"] == "READY"
            two = app_of("two")
            eventually(plane.routes, 180, 0.5, "the route moved to the new entity and the old app deleted",
                       until=lambda r: r.get(two) == route and one not in r)  # fmt: skip
            count = len(seen)
            eventually(
                lambda: len(seen), 60, 0.05, "queries answered after the move", until=lambda n: n > count + 4
            )
        finally:
            stop.set()
            for client in clients:
                client.result()
    assert {status for status, _ in seen} == {200}, Counter(seen)
    assert {name for _, name in seen} == {"one", "two"} and seen[-1][1] == "two", Counter(seen)

    # A split: no single entity takes all traffic, so the route goes back to the endpoint's ingress,
    # and "two" (unchanged) keeps its replica: giving the route back restarts nothing.
    kept = plane.replicas(of=two)
    assert kept
    split = {
        "served_entities": [entity("iris-lr", 1, name="two"), entity("iris-lr", 1, name="three")],
        "traffic_config": {"routes": [{"served_model_name": "two", "traffic_percentage": 50},
                                      {"served_model_name": "three", "traffic_percentage": 50}]},
    }  # fmt: skip
    response = server.api("PUT", f"api/2.0/serving-endpoints/{SOLO_EP}/config", json=split)
    assert response.status_code == 200, response.text
    assert server.wait_settled(SOLO_EP)["state"]["ready"] == "READY"
    eventually(plane.routes, 180, 0.5, "the route given back", until=lambda r: route not in r.values())
    assert plane.replicas(of=two) == kept
    names = {query(plane.proxies[i % 2]).headers["served-model-name"] for i in range(30)}
    assert names == {"two", "three"}  # 2^-29 that 30 draws of a 50/50 split all land on one side


def test_scale_from_zero_through_a_proxy_is_answered_by_a_warm_host(plane: Plane) -> None:
    """A request that finds an entity at zero replicas on a Ray proxy claims the warm,
    pre-imported host the server publishes for it (backends/ray/warm.py): answered while Serve
    starts its replica, which then takes over; the host that bridged is killed, a fresh one waits
    for the next cold start. How fast: benchmarks/ray_zero_bench.py --proxy."""
    with _endpoint(plane, ZERO_EP, entity("iris-lr", 1, name="z", scale_to_zero_enabled=True)):
        _cold_start_through_a_proxy(plane)


def _cold_start_through_a_proxy(plane: Plane) -> None:
    server = plane.server
    token = plane.token(endpoint=ZERO_EP)
    path = f"/serving-endpoints/{ZERO_EP}/invocations"

    def query(proxy: str) -> requests.Response:
        return requests.post(proxy + path, json=iris_split(), headers={"Authorization": f"Bearer {token}"},
                             timeout=120)  # fmt: skip

    def warm_hosts() -> list[str]:
        """This server's live warm hosts (warm.py names them after its Ray prefix)."""
        mine = server_prefix(str(Path(server.state_dir).resolve())) + "warm-"
        code = (
            "actors = ray._private.state.actors(actor_state_name='ALIVE').values()\n"
            f"print(json.dumps(sorted(a.get('Name') or '' for a in actors if (a.get('Name') or '').startswith({mine!r}))))"
        )
        return list(json.loads(plane.cluster.driver(code)))

    assert server.wait_settled(ZERO_EP)["state"]["ready"] == "READY"
    cold = wait_local(server, ZERO_EP, "z", lambda i: i["replicas"] == 0 and i["ray"]["warm_on_proxies"], 180)
    assert cold["ray"]["warm_starts"] == 0 and cold["cold_starts"] == 0
    answer = query(plane.proxies[1])
    assert (answer.status_code, answer.json()) == (200, {"predictions": [0, 2, 1]})
    assert answer.headers["served-model-name"] == "z"
    info = wait_local(server, ZERO_EP, "z", lambda i: i["ray"]["warm_starts"] == 1, 60)
    bridge = info["ray"]["warm_start"]
    assert bridge["by"].startswith("proxy@") and bridge["preimported"] is True, bridge
    assert info["cold_starts"] == 0  # the server's route saw none of it
    # Serve's replica starts meanwhile and takes over; the bridge is killed, one warm host is left.
    wait_local(server, ZERO_EP, "z", lambda i: i["replicas"] == 1, 180)
    eventually(
        warm_hosts, 120, 0.2, "only the next cold start's warm host alive", until=lambda h: len(h) == 1
    )
    for proxy in plane.proxies:
        again = query(proxy)
        assert (again.status_code, again.content) == (answer.status_code, answer.content)


def test_a_killed_ingress_replica_loses_no_answered_row(plane: Plane) -> None:
    token = plane.token()
    _ready_on_both_proxies(plane, token)
    path = plane.server.get(EP)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    code = (
        "actors = ray._private.state.actors(actor_state_name='ALIVE').values()\n"
        "print(json.dumps([[a['Pid'], a['Name']] for a in actors if '#Ingress#' in (a.get('Name') or '')]))"
    )
    victim, victim_name = json.loads(plane.cluster.driver(code))[0]
    answers: list[requests.Response] = []

    def client(n: int) -> None:
        for i in range(40):
            payload = {**iris_split(), "client_request_id": f"x{n}-{i}"}
            # One in flight on the killed replica may get no answer: it is then owed no row.
            with contextlib.suppress(requests.RequestException):
                answers.append(plane.query(plane.proxies[(n + i) % 2], token, payload))

    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(client, n) for n in range(4)]
        eventually(lambda: len(answers) >= 20, 120, 0.05, "load flowing before the kill")
        os.kill(victim, signal.SIGKILL)
        for future in running:
            future.result()
    answered = {r.headers["x-request-id"] for r in answers if r.status_code == 200}
    assert len(answered) >= 80, Counter(r.status_code for r in answers)
    # Every answered request is a row: the killed replica's capture service commits what it held.
    eventually(lambda: answered <= set(wait_rows(path, 1)["databricks_request_id"]), 120, 0.5,
               "every answered row in the table")  # fmt: skip
    _ready_on_both_proxies(plane, token)
    assert victim_name not in _ingress_on_every_node(plane)  # Serve replaced the killed replica


def test_queries_go_on_through_kill_9_and_a_restart_adopts_without_replica_restarts(plane: Plane) -> None:
    token = plane.token()
    _ready_on_both_proxies(plane, token)
    _ingress_on_every_node(plane)
    before = plane.replicas()
    apps = plane.cluster.applications()
    server = plane.server
    path = server.get(EP)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=60)

    # The control plane is gone: both proxies answer, and every answer is captured.
    answers = [plane.query(plane.proxies[i % 2], token, {**iris_split(), "client_request_id": f"k{i}"})
               for i in range(40)]  # fmt: skip
    assert [r.status_code for r in answers] == [200] * 40
    ids = {r.headers["x-request-id"] for r in answers}
    eventually(lambda: ids <= set(wait_rows(path, 1)["databricks_request_id"]), 120, 0.5,
               "the rows answered without the server in the table")  # fmt: skip

    # Restart on the same state dir: the server adopts what runs; no replica restarts, no cold start.
    restarted = ServingServer(server.state_dir, server.env, plane.args, startup_timeout=180).start()
    plane.server = restarted
    endpoint = eventually(lambda: restarted.get(EP), 180, 0.2, "the restarted server READY",
                          until=lambda e: e["state"]["ready"] == "READY")  # fmt: skip
    apps_by = {e["name"]: e["local"]["ray"]["application"] for e in endpoint["config"]["served_entities"]}
    assert set(apps_by.values()) <= set(apps)  # the same applications, adopted
    assert restarted.invoke(EP, iris_split()).status_code == 200
    assert plane.query(plane.proxies[0], token).status_code == 200  # the old token: the key is the cluster's
    after = plane.replicas()
    assert after == before, f"zero replica restarts expected:\nbefore {before}\nafter  {after}"
    assert sorted(plane.cluster.applications()) == sorted(apps)

    # An update after the restart is still zero-downtime through the proxies: the challenger becomes
    # another model version (a new application); the old one goes only once no ingress names it.
    stop = threading.Event()
    seen: list[int] = []

    def load(n: int) -> None:
        while not stop.is_set():
            seen.append(plane.query(plane.proxies[n % 2], token).status_code)

    update = {
        "served_entities": [entity("iris-lr", 1, name="current"), entity("iris-lr", 1, name="challenger")],
        "traffic_config": AB["traffic_config"],
        "auto_capture_config": CAPTURE,
    }
    with ThreadPoolExecutor(2) as pool:
        clients = [pool.submit(load, n) for n in range(2)]
        response = restarted.api("PUT", f"api/2.0/serving-endpoints/{EP}/config", json=update)
        assert response.status_code == 200, response.text
        settled = restarted.wait_settled(EP)
        old_app = apps_by["challenger"]
        eventually(lambda: old_app not in plane.cluster.applications(), 120, 0.5, "the old app deleted")
        stop.set()
        for client in clients:
            client.result()
    assert settled["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, settled
    assert seen and set(seen) == {200}, Counter(seen)
