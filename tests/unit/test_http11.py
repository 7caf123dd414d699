"""The route-optimized listener's HTTP/1.1 layer over real loopback sockets, with a handler double:
keep-alive, pipelining in order, 100-continue, chunked bodies, limits, malformed input, idle timeout."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_serving.dataplane.http11 import MAX_QUEUED, HttpServer, Request, Response

LIMIT = 1000


async def echo(request: Request) -> Response:
    """Answers what it got, so a test sees exactly what the parser produced."""
    body = {
        "method": request.method,
        "target": request.target.decode(),
        "body": request.body.decode(),
        "type": request.headers.get("content-type"),
    }
    return Response(200, json.dumps(body).encode(), [("x-seen", "1")])


def run(
    test: Callable[[int, HttpServer], Awaitable[None]],
    handler: Callable[[Request], Awaitable[Response]] = echo,
    idle_timeout_s: float = 30.0,
    linger_s: float = 30.0,
) -> None:
    async def main() -> None:
        server = HttpServer(handler, LIMIT, idle_timeout_s=idle_timeout_s, linger_s=linger_s)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        await server.serve([sock])
        try:
            await asyncio.wait_for(test(sock.getsockname()[1], server), 30)
        finally:
            server.close()

    asyncio.run(main())


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    assert status_line, "connection closed before an answer"
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def post(target: str, body: bytes, *extra: str, version: str = "1.1") -> bytes:
    lines = [f"POST {target} HTTP/{version}", "Host: x", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def closed(reader: asyncio.StreamReader) -> bool:
    return await reader.read() == b""


def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(3):
            writer.write(post(f"/a/{i}?q=1", b'{"n": %d}' % i, "Content-Type: application/json"))
            status, headers, body = await read_response(reader)
            assert status == 200 and headers["x-seen"] == "1" and "connection" not in headers
            assert headers["content-type"] == "application/json" and "date" in headers
            got = json.loads(body)
            assert got == {"method": "POST", "target": f"/a/{i}?q=1", "body": f'{{"n": {i}}}',
                           "type": "application/json"}  # fmt: skip
        writer.close()

    run(test)


def test_pipelined_requests_are_answered_in_order_even_when_an_earlier_one_is_slower() -> None:
    release = asyncio.Event()
    count = MAX_QUEUED * 3  # more than the read-ahead: reading pauses and resumes

    async def handler(request: Request) -> Response:
        if request.target == b"/0":
            await release.wait()  # the first answer waits until every later request has arrived
        return Response(200, request.target)

    async def test(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(post(f"/{i}", b"") for i in range(count)))
        await writer.drain()
        release.set()
        answers = [(await read_response(reader))[2] for _ in range(count)]
        assert answers == [f"/{i}".encode() for i in range(count)]
        writer.close()

    run(test, handler)


def test_expect_100_continue_gets_its_interim_answer_before_the_body_is_sent() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        request = post("/x", b"0123456789", "Expect: 100-continue")
        head, body = request.split(b"\r\n\r\n")
        writer.write(head + b"\r\n\r\n")
        assert await reader.readline() == b"HTTP/1.1 100 Continue\r\n"
        assert await reader.readline() == b"\r\n"
        writer.write(body)
        status, _, answer = await read_response(reader)
        assert status == 200 and json.loads(answer)["body"] == "0123456789"
        writer.close()

    run(test)


def test_chunked_bodies_are_assembled() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        status, _, body = await read_response(reader)
        assert status == 200 and json.loads(body)["body"] == "hello world"
        writer.close()

    run(test)


def test_a_declared_oversized_body_is_refused_with_413_before_it_is_sent_and_the_connection_closes() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1))
        status, headers, body = await read_response(reader)
        assert status == 413 and headers["connection"] == "close"
        error = json.loads(body)
        assert error["error_code"] == "BAD_REQUEST" and str(LIMIT) in error["message"]
        assert await closed(reader)  # after the linger time: the body never came

    run(test, linger_s=0.2)


def test_a_client_that_sends_its_oversized_body_anyway_reads_the_413_not_a_reset() -> None:
    """Like a blocking client (requests): it writes the whole body before it reads anything."""

    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/big", b"x" * (LIMIT * 200)))
        await writer.drain()  # all of it accepted: the server reads and discards after refusing
        status, _, body = await read_response(reader)
        assert status == 413 and json.loads(body)["error_code"] == "BAD_REQUEST"
        writer.close()

    run(test)


def test_an_oversized_chunked_body_is_refused_with_413() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 600
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) * 2)
        status, _, body = await read_response(reader)
        assert status == 413 and json.loads(body)["error_code"] == "BAD_REQUEST"
        assert await closed(reader)

    run(test, linger_s=0.2)


def test_malformed_requests_get_a_json_400_and_earlier_pipelined_answers_still_arrive_first() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/ok", b"") + b"NOT HTTP AT ALL\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        status, headers, body = await read_response(reader)
        assert status == 400 and headers["connection"] == "close"
        assert json.loads(body)["error_code"] == "BAD_REQUEST"
        assert await closed(reader)

    run(test, linger_s=0.2)


def test_oversized_headers_get_431() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /h HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (70 * 1024))
        status, _, body = await read_response(reader)
        assert status == 431 and json.loads(body)["error_code"] == "BAD_REQUEST"
        assert await closed(reader)

    run(test, linger_s=0.2)


def test_http_1_0_closes_after_the_answer() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/old", b"{}", version="1.0"))
        status, headers, _ = await read_response(reader)
        assert status == 200 and headers["connection"] == "close"
        assert await closed(reader)

    run(test)


def test_a_client_that_half_closes_after_its_requests_still_gets_every_answer() -> None:
    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/1", b"") + post("/2", b""))
        writer.write_eof()
        assert [(await read_response(reader))[0] for _ in range(2)] == [200, 200]
        assert await closed(reader)

    run(test)


def test_a_half_sent_request_neither_blocks_other_clients_nor_stays_open_past_the_idle_timeout() -> None:
    async def test(port: int, _: HttpServer) -> None:
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        slow_writer.write(b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Le")  # and nothing more
        await slow_writer.drain()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/fast", b""))
        assert (await read_response(reader))[0] == 200
        assert await closed(slow_reader)  # the idle timeout ends it, with no answer
        writer.close()

    run(test, idle_timeout_s=0.3)


def test_a_handler_bug_is_a_json_500_and_the_connection_stays_usable() -> None:
    async def handler(request: Request) -> Response:
        if request.target == b"/bug":
            raise RuntimeError("boom")
        return await echo(request)

    async def test(port: int, _: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/bug", b""))
        status, _, body = await read_response(reader)
        assert status == 500 and json.loads(body)["error_code"] == "INTERNAL_ERROR"
        writer.write(post("/fine", b""))
        assert (await read_response(reader))[0] == 200
        writer.close()

    run(test, handler)


def test_close_ends_open_connections() -> None:
    async def test(port: int, server: HttpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/x", b""))
        assert (await read_response(reader))[0] == 200
        server.close()
        assert await closed(reader)
        assert not server.connections

    run(test)


def test_an_answer_in_progress_finishes_when_its_client_leaves() -> None:
    """Scoring (and its inference-table row) is not cut short by a client that hung up."""
    finished: list[Any] = []
    entered, release, done = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handler(request: Request) -> Response:
        entered.set()
        await release.wait()
        finished.append(request.target)
        done.set()
        return Response(200, b"{}")

    async def test(port: int, _: HttpServer) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(post("/left", b""))
        await entered.wait()
        writer.close()
        await writer.wait_closed()
        release.set()
        await done.wait()
        assert finished == [b"/left"]

    run(test, handler)


def test_garbage_on_many_connections_never_breaks_the_listener_for_the_next_client() -> None:
    """Seeded random bytes and truncations of a valid request: each connection gets a 4xx, nothing
    or a 200 (a truncation that still parses), never a 5xx; a well-formed client is served after."""
    import random

    rng = random.Random(15)
    valid = post("/ok", b'{"inputs": [1]}', "Content-Type: application/json")
    cases = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400))) for _ in range(40)]
    cases += [valid[: rng.randrange(1, len(valid))] + bytes([rng.randrange(256)]) for _ in range(40)]

    async def test(port: int, _: HttpServer) -> None:
        for data in cases:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(data)
            writer.write_eof()
            answer = await reader.read()
            if answer:
                status = int(answer.split()[1])
                assert status == 200 or 400 <= status < 500, (data, answer[:200])
            writer.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(valid)
        assert (await read_response(reader))[0] == 200
        writer.close()

    run(test, linger_s=0.05)
