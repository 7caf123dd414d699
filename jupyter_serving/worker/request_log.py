"""Which requests a worker thread is scoring, so that every log line written meanwhile names them.

The server gives each request an id (x-request-id, the inference table's databricks_request_id) and
sends it with the request. While a thread scores requests it records their ids here (one attribute
set per batch, nothing built); a log filter reads them only when a line is actually written and puts
``request_id=<id>`` (ids joined by commas for a coalesced batch) at the head of the message, so a user
goes from a row or an error to the replica's log lines, the model's own `logging` calls included
(not its bare `print`s, which bypass logging).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

_scoring = threading.local()


def scoring(ids: str | Sequence[str] | None) -> str | Sequence[str] | None:
    """Record the ids this thread now scores (None: none); returns the ones recorded before."""
    before = getattr(_scoring, "ids", None)
    _scoring.ids = ids
    return before


def current() -> str:
    """The ids this thread scores, as written in a log line ("" when none)."""
    ids = getattr(_scoring, "ids", None)
    if not ids:
        return ""
    if isinstance(ids, str):
        return ids
    return ",".join(dict.fromkeys(i for i in ids if i))


class RequestIdFilter(logging.Filter):
    """Prefixes a record's message with ``request_id=...`` while its thread scores requests.

    A filter rather than a format field, so it works under any formatter (Ray Serve's replica log
    has its own); attached once per handler or logger a record passes, it prefixes a record once."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = current()
        if ids and not getattr(record, "request_id", None):
            record.request_id = ids
            text = ids.replace("%", "%%") if record.args else ids  # the message is %-formatted then
            record.msg = f"request_id={text} {record.msg}"
        return True
