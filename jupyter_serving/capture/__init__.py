"""Inference-table capture, the server side: durable payload rows, spooled and committed to Delta.

It uses only the standard library at import time, because the server imports this package on
start-up. Reading and analysing the tables lives in `jupyter_serving.tables`.
"""

from __future__ import annotations

from jupyter_serving.capture.row import (
    AI_GATEWAY,
    LEGACY,
    GatewayRowEncoder,
    PayloadRow,
    RowEncoder,
    payload_table_path,
    request_metadata,
)
from jupyter_serving.capture.spool import SpoolWriteError
from jupyter_serving.capture.writer import InferenceCapture

__all__ = [
    "AI_GATEWAY",
    "LEGACY",
    "GatewayRowEncoder",
    "InferenceCapture",
    "PayloadRow",
    "RowEncoder",
    "SpoolWriteError",
    "payload_table_path",
    "request_metadata",
]
