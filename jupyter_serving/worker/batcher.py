"""Micro-batching inside a worker: collect the frames of every connection, score what waits in one call.

Whatever arrived while a predict call ran is scored together by the next one, so batching adapts to
load with no added wait at low load (unless an entity asks for one). Fast batches score on the event
loop, slow ones on the scoring thread so the loop keeps reading frames and answering pings.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jupyter_serving.worker import protocol, request_log

# A batch that scores faster than this runs on the event loop; slower ones go to the scoring thread,
# so a slow model never keeps the loop from reading frames and answering pings.
INLINE_BUDGET_S = 0.002


class Batcher:
    """Collects frames from all connections and scores whatever is waiting in one call."""

    def __init__(self, scorer: Any, max_batch: int, wait_s: float = 0.0, streams: Any = None) -> None:
        self.scorer = scorer
        self.streams = streams  # streaming.Streams: requests answered by predict_stream
        self.max_batch = max(1, max_batch)
        self.wait_s = max(0.0, wait_s)
        self.inline = False  # score on the loop thread while batches take under INLINE_BUDGET_S
        self.queue: list[tuple[protocol.Frame, asyncio.StreamWriter]] = []
        self.wakeup = asyncio.Event()

    async def handle_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (frame := await protocol.read_frame(reader)) is not None:
            if frame.code == protocol.PING:
                writer.write(protocol.encode(frame.request_id, 200, b"", b"pong"))
                continue
            if frame.code == protocol.STREAM and self.streams is not None:
                self.streams.open(frame, writer)
                continue
            if frame.code == protocol.CANCEL:
                if self.streams is not None:
                    self.streams.cancel(frame, writer)
                continue
            self.queue.append((frame, writer))
            self.wakeup.set()
        if self.streams is not None:
            self.streams.cancel_all(writer)
        writer.close()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="scoring") as executor:
            while True:
                await self.wakeup.wait()
                if self.wait_s and len(self.queue) < self.max_batch:
                    await asyncio.sleep(self.wait_s)  # the configured max wait for a fuller batch
                batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch :]
                if not self.queue:
                    self.wakeup.clear()
                started = time.perf_counter()
                if self.inline:  # fast models: two thread handoffs would cost more than the predict
                    results = self._score(batch)
                    await asyncio.sleep(0)
                else:
                    results = await loop.run_in_executor(executor, self._score, batch)
                self.inline = time.perf_counter() - started < INLINE_BUDGET_S
                self._reply(batch, results)

    def _score(self, batch: list[tuple[protocol.Frame, asyncio.StreamWriter]]) -> list[Any]:
        requests, ids = [], []
        for frame, _ in batch:
            content_type, request_id = protocol.split_request_meta(frame.meta)
            requests.append((content_type, frame.body))
            ids.append(request_id)
        return score_batch(self.scorer, requests, ids)

    def _reply(self, batch: list[tuple[protocol.Frame, asyncio.StreamWriter]], results: list[Any]) -> None:
        for (frame, writer), result in zip(batch, results, strict=True):
            fields = {
                "ms": round(result.execution_ms, 3),
                "crid": result.client_request_id,
                "b": result.batch,
            }
            if getattr(result, "trace", None) is not None:
                fields["trace"] = result.trace
            meta = json.dumps(fields).encode()
            writer.write(protocol.encode(frame.request_id, result.status, meta, result.body))


def score_batch(scorer: Any, requests: list[tuple[str, bytes]], request_ids: list[str]) -> list[Any]:
    """One Result per (content type, body), scored together; shared with the Ray backend's replica.
    `request_ids`: the server's id of each request, named by the log lines written meanwhile."""
    before = request_log.scoring(request_ids)
    try:
        return scorer.score(requests, request_ids)
    except Exception:
        if len(requests) == 1:
            return [_score_alone(scorer, requests[0], request_ids[0])]
        # One client's request must not fail the others that happened to share its batch.
        logging.exception("a batch of %d failed as a whole; scoring each request alone", len(requests))
        return [_score_alone(scorer, r, i) for r, i in zip(requests, request_ids, strict=True)]
    finally:
        request_log.scoring(before)


def _score_alone(scorer: Any, request: tuple[str, bytes], request_id: str) -> Any:
    """One request's own outcome: RecursionError means input too deep to handle, the client's fault."""
    from jupyter_serving.worker.scoring import Result

    before = request_log.scoring(request_id)
    try:
        return scorer.score([request], [request_id])[0]
    except RecursionError:
        status, code, message = 400, "BAD_REQUEST", "The request is nested too deeply to score."
    except Exception as exc:  # a bug of ours, not of the model: answer the request anyway
        logging.exception("scoring failed")
        status, code, message = 500, "INTERNAL_ERROR", f"Worker error: {exc!r}"
    finally:
        request_log.scoring(before)
    return Result(status, json.dumps({"error_code": code, "message": message}).encode())
