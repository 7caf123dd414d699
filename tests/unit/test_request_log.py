"""The server's request id travels in a frame's meta and names the worker's log lines while scoring."""

from __future__ import annotations

import logging

import pytest

from jupyter_serving.worker import protocol, request_log


@pytest.mark.parametrize(
    ("content_type", "request_id"),
    [("application/json", "0f3a"), ("text/csv; charset=utf-8", ""), ("application/json", "é%s")],
)
def test_meta_round_trips_content_type_and_request_id(content_type: str, request_id: str) -> None:
    meta = protocol.request_meta(content_type, request_id)
    assert protocol.split_request_meta(meta) == (content_type, request_id)


def test_without_an_id_the_meta_is_the_content_type_alone() -> None:
    assert protocol.request_meta("application/json", "") == b"application/json"


def _line(handler_filter: logging.Filter, msg: str, *args: object) -> str:
    record = logging.LogRecord("m", logging.WARNING, __file__, 1, msg, args, None)
    handler_filter.filter(record)
    handler_filter.filter(record)  # a second handler's filter: still one prefix
    return record.getMessage()


def test_lines_written_while_scoring_name_the_requests_and_none_after() -> None:
    id_filter = request_log.RequestIdFilter()
    before = request_log.scoring(["a1", "", "b2", "a1"])
    try:
        assert _line(id_filter, "scored %d rows", 3) == "request_id=a1,b2 scored 3 rows"
        inner = request_log.scoring("c3")
        assert _line(id_filter, "100% sure") == "request_id=c3 100% sure"  # no args: not %-formatted
        request_log.scoring(inner)
        assert request_log.current() == "a1,b2"
    finally:
        request_log.scoring(before)
    assert _line(id_filter, "idle") == "idle"


def test_on_ray_the_scorers_lines_reach_serves_replica_log_naming_the_request() -> None:
    """A Ray Serve replica writes its log through the `ray.serve` logger: the scorer's lines
    (`jupyter_serving.worker`) are handed to it, and it names the request being scored."""
    pytest.importorskip("ray.serve")
    from jupyter_serving.backends.ray import replica

    serve_log, worker_log = logging.getLogger("ray.serve"), logging.getLogger("jupyter_serving.worker")
    saved = (list(serve_log.filters), list(worker_log.handlers), worker_log.propagate)
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep()
    serve_log.addHandler(keep)
    try:
        replica._name_requests_in_the_log()
        replica._name_requests_in_the_log()  # a second replica in the process: still one prefix
        before = request_log.scoring(["r-1"])
        try:
            worker_log.warning("invocation failed (%d): %s", 400, "bad input")
        finally:
            request_log.scoring(before)
        serve_log.warning("idle")
    finally:
        serve_log.removeHandler(keep)
        serve_log.filters[:] = saved[0]
        worker_log.handlers[:] = saved[1]
        worker_log.propagate = saved[2]
    assert seen == ["request_id=r-1 invocation failed (400): bad input", "idle"]
