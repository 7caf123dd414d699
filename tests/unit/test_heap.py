"""The server's start-up heap frozen out of full collections (heap.py), with later garbage still freed."""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Iterator

import pytest

from jupyter_serving.heap import freeze_startup_heap


@pytest.fixture
def frozen() -> Iterator[int]:
    try:
        yield freeze_startup_heap(logging.getLogger("test"))
    finally:
        gc.unfreeze()  # the test process's heap goes back to the collector


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def test_objects_alive_at_the_freeze_leave_full_collections(frozen: int) -> None:
    assert frozen > 1000 and gc.get_freeze_count() > frozen // 2
    gc.collect()
    assert len(gc.get_objects()) < frozen // 10  # what a full collection walks: not the frozen objects


def test_cycles_made_after_the_freeze_are_still_collected(frozen: int) -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle: only the collector frees it
    alive = weakref.ref(a)
    del a, b
    gc.collect()
    assert alive() is None


def cycles(n: int) -> None:
    for _ in range(n):
        a, b = Node(), Node()
        a.other, b.other = b, a


def test_a_slow_full_collection_that_frees_nothing_freezes_its_survivors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from jupyter_serving import heap

    async def scenario() -> tuple[int, int, int]:
        freezer = heap.HeapFreezer(asyncio.get_running_loop(), logging.getLogger("test"))
        freezer.install()
        try:
            monkeypatch.setattr(heap, "FREEZE_AFTER_MS", 0.0)  # every full collection counts as slow here
            cycles(heap.FREEZE_FREED_AT_MOST)  # 2x as many unreachable objects as a fruitless one frees
            gc.collect()
            await asyncio.sleep(0)  # the freeze runs on the loop, after the collection
            after_fruitful = freezer.freezes
            gc.collect()  # nothing to free now
            await asyncio.sleep(0)
            return after_fruitful, freezer.freezes, gc.get_freeze_count()
        finally:
            freezer.uninstall()
            gc.unfreeze()

    after_fruitful, freezes, frozen = asyncio.run(scenario())
    assert after_fruitful == 0  # the collection that freed cycles froze nothing
    assert freezes == 1 and frozen > 1000  # the fruitless one froze what it had walked
    assert gc.get_freeze_count() == 0  # unfrozen again for the other tests
