"""A streamed answer from a Ray replica, read through Serve's streaming handle.

One reader serves both places a Ray stream is read: the server's `RayDeployment` (the Jupyter
route) and the per-node ingress's `HandleDeployment` (queries through Serve's proxies). The replica
(`replica.ServedModel.stream`) yields SSE bytes as the model produces them, then one final
`(status, meta, body)`; this turns that into the backend-neutral `ScoringStream` the data plane
reads, with the same inactivity timeout and errors as a local worker's stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from jupyter_serving.backends.base import StreamEnd
from jupyter_serving.errors import DeadlineExceeded


class RayStream:
    """`ScoringStream` over a Serve `DeploymentResponseGenerator`: bytes items are SSE chunks, the
    last item is (status, meta, body); `close` cancels the generator in the replica. `done` runs
    once, when the stream ends whichever way (the server's deployment counts it as in flight)."""

    def __init__(self, name: str, generator: Any, done: Callable[[], None] | None = None) -> None:
        self.name = name
        self.generator = generator
        self.done = done
        self.end: StreamEnd | None = None

    async def next(self, timeout_s: float) -> bytes | StreamEnd:
        from ray import exceptions as ray_errors  # here, not above: this module loads without Ray
        from ray.serve import exceptions as serve_errors

        if self.end is not None:
            return self.end
        try:
            item = await asyncio.wait_for(self.generator.__anext__(), timeout_s)
        except TimeoutError:
            self.close()
            raise DeadlineExceeded(
                f"The model sent nothing for {timeout_s:g} s during a stream (inactivity timeout)."
            ) from None
        except StopAsyncIteration:
            return self._finish(
                StreamEnd(500, error_body("The stream ended without its final status."), 0.0, None)
            )
        except (ray_errors.RayError, serve_errors.RequestCancelledError) as exc:
            message = f"The Ray replica serving '{self.name}' failed: {first_line(exc)}"
            return self._finish(StreamEnd(500, error_body(message), 0.0, None))
        if isinstance(item, bytes):
            return item
        status, meta, body = item
        info = json.loads(meta) if meta else {}
        usage = info.get("usage")
        end = StreamEnd(
            status, body, info.get("ms", 0.0), info.get("crid"), info.get("first_ms"),
            usage if isinstance(usage, dict) else None, info.get("trace"),
        )  # fmt: skip
        return self._finish(end)

    def _finish(self, end: StreamEnd) -> StreamEnd:
        if self.end is None:
            self.end = end
            if self.done is not None:
                self.done()
        return self.end

    def close(self) -> None:
        if self.end is None:
            self.generator.cancel()
            self._finish(
                StreamEnd(
                    499, error_body("The client disconnected during the stream.", "CANCELLED"), 0.0, None
                )
            )


def error_body(message: str, code: str = "INTERNAL_ERROR") -> bytes:
    return json.dumps({"error_code": code, "message": message}).encode()


def first_line(exc: BaseException) -> str:
    """The line of a Ray error that says what went wrong (its last), without the traceback above it."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:500]
