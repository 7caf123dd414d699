"""The serving process's long-lived heap, moved out of the garbage collector's sight.

Why: a running server holds several hundred thousand long-lived objects (Jupyter Server, Tornado,
traitlets, MLflow's registry client and whatever else is imported on first use); nearly all live as
long as the process. CPython's full collection walks all of them: measured on the 2-core VM,
200-300 ms per full collection over ~440k objects, every 10-15 s under load, freeing 0-18 objects,
while the event loop answers nobody. That stall was the p99 of a 64-client benchmark round
(250-425 ms) and much of its round-to-round noise.

`gc.freeze()` moves what exists into the permanent generation (the call the worker fork server
makes for copy-on-write sharing), so later full collections walk only what was allocated since;
request garbage is collected as before. It is called once at start-up and again right after any
full collection that was slow (FREEZE_AFTER_MS) yet freed almost nothing (FREEZE_FREED_AT_MOST):
at that moment the survivors have just been proven reachable, and they are what the next full
collection would walk again for nothing. The price: a frozen object that later becomes part of
unreachable cycle is never freed; freezes are rare (each one makes the next collections fast).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

FREEZE_AFTER_MS = 20.0  # a full collection this slow walks a large, long-lived heap
FREEZE_FREED_AT_MOST = 100  # ...and one freeing this little found it all still alive


def freeze_startup_heap(log: logging.Logger | logging.LoggerAdapter) -> int:
    """Collect once, then freeze what survives; returns the number of objects frozen."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info(
        "jupyter-serving: %d start-up objects frozen out of garbage collection (%.0f ms)",
        frozen,
        (time.perf_counter() - started) * 1000,
    )
    return frozen


class HeapFreezer:
    """Freezes the survivors of slow, fruitless full collections (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log: logging.Logger | logging.LoggerAdapter) -> None:
        self.loop = loop
        self.log = log
        self.freezes = 0
        self._started = 0.0
        self._pending = False

    def install(self) -> None:
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def uninstall(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        took_ms = (time.perf_counter() - self._started) * 1000
        if took_ms >= FREEZE_AFTER_MS and info["collected"] <= FREEZE_FREED_AT_MOST and not self._pending:
            self._pending = True  # frozen from the loop, not inside the collector's callback
            try:
                self.loop.call_soon_threadsafe(self._freeze, took_ms)
            except RuntimeError:  # the loop has closed: nothing left to keep responsive
                self._pending = False

    def _freeze(self, took_ms: float) -> None:
        self._pending = False
        before = gc.get_freeze_count()
        gc.freeze()
        self.freezes += 1
        self.log.info(
            "jupyter-serving: a full garbage collection took %.0f ms and freed nothing; "
            "%d long-lived objects frozen out of later ones",
            took_ms,
            gc.get_freeze_count() - before,
        )
