"""The capture spool: group commit, durability format, and recovery of torn tails."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jupyter_serving.capture.spool import Spool, decode_lines, encode_line


async def _append_all(spool: Spool, records: list[dict]) -> None:
    await asyncio.gather(*(spool.append(r) for r in records))


def test_concurrent_appends_share_one_write_and_sync(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()

    async def scenario() -> None:
        await _append_all(spool, [{"i": i} for i in range(500)])
        await spool.close()

    asyncio.run(scenario())
    # 500 requests acknowledged at once cost one disk flush, not 500.
    assert spool.stats.records == 500
    assert spool.stats.syncs <= 2
    (segment,) = spool.segments()
    assert [r["i"] for r in spool.read_segment(segment)] == list(range(500))


def test_sequential_appends_each_wait_for_their_own_sync(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()

    async def scenario() -> None:
        for i in range(20):
            await spool.append({"i": i})
        await spool.close()

    asyncio.run(scenario())
    assert spool.stats.syncs == 20


def test_appends_arriving_during_a_sync_go_out_together_in_the_next(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()

    async def scenario() -> None:
        first = asyncio.ensure_future(spool.append({"i": 0}))
        await asyncio.sleep(0)  # let the first batch start its sync in the spool thread
        await _append_all(spool, [{"i": i} for i in range(1, 101)])
        await first
        await spool.close()

    asyncio.run(scenario())
    assert spool.stats.records == 101
    assert spool.stats.syncs <= 3


def test_torn_tail_is_dropped_and_everything_before_it_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    asyncio.run(_append_all(spool, [{"i": i} for i in range(3)]))
    (segment,) = spool.segments()
    path = tmp_path / f"segment-{segment:012d}.log"
    whole = encode_line({"i": 3})
    with open(path, "ab") as f:
        f.write(whole[: len(whole) // 2])  # what a kill -9 in the middle of write() leaves
    assert [r["i"] for r in spool.read_segment(segment)] == [0, 1, 2]


def test_line_with_bad_checksum_is_skipped() -> None:
    good, bad = encode_line({"i": 1}), bytearray(encode_line({"i": 2}))
    bad[-3] = ord("7")
    assert decode_lines(good + bytes(bad) + encode_line({"i": 3})) == [{"i": 1}, {"i": 3}]


def test_payload_newlines_and_unicode_survive_the_line_format() -> None:
    record = {"request": '{"text": "line one\\nline two"}', "response": "ünïcödé\n\u2028"}
    assert decode_lines(encode_line(record)) == [record]


def test_reopened_spool_keeps_its_id_and_never_reuses_a_segment_number(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.open()
    asyncio.run(_append_all(first, [{"i": 1}]))
    left_over = first.segments()
    second = Spool(tmp_path)
    second.open()
    assert second.spool_id == first.spool_id
    assert second.closed_segments() == left_over
    assert min(second.segments()) == left_over[0] and max(second.segments()) > max(left_over)


def test_rotate_closes_only_a_segment_that_holds_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()

    async def scenario() -> tuple[int | None, int | None]:
        empty = await spool.rotate()
        await spool.append({"i": 1})
        closed = await spool.rotate()
        await spool.close()
        return empty, closed

    empty, closed = asyncio.run(scenario())
    assert empty is None
    assert spool.closed_segments() == [closed]
