"""The capture spool: one sync per batch, durability format, recovery of torn tails, failed writes."""

from __future__ import annotations

import resource
import signal
from pathlib import Path

import pytest

from jupyter_serving.capture.row import PayloadRow, RowEncoder, request_metadata
from jupyter_serving.capture.spool import Spool, SpoolWriteError, decode_lines, encode_line, frame


def opened(path: Path) -> Spool:
    spool = Spool(path)
    spool.open()
    return spool


def test_a_batch_costs_one_write_and_one_sync(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    spool.write([encode_line({"i": i}) for i in range(500)])
    spool.write([encode_line({"i": 500})])
    assert (spool.stats.records, spool.stats.writes, spool.stats.syncs) == (501, 2, 2)
    (segment,) = spool.segments()
    assert [r["i"] for r in spool.read_segment(segment)] == list(range(501))


def test_torn_tail_is_dropped_and_everything_before_it_kept(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    spool.write([encode_line({"i": i}) for i in range(3)])
    (segment,) = spool.segments()
    whole = encode_line({"i": 3})
    with open(tmp_path / f"segment-{segment:012d}.log", "ab") as f:
        f.write(whole[: len(whole) // 2])  # what a kill -9 in the middle of write() leaves
    assert [r["i"] for r in spool.read_segment(segment)] == [0, 1, 2]


def test_line_with_bad_checksum_is_skipped() -> None:
    good, bad = encode_line({"i": 1}), bytearray(encode_line({"i": 2}))
    bad[-3] = ord("7")
    assert decode_lines(good + bytes(bad) + encode_line({"i": 3})) == [{"i": 1}, {"i": 3}]


def test_payload_newlines_and_unicode_survive_the_line_format() -> None:
    record = {"request": '{"text": "line one\\nline two"}', "response": "ünïcödé\n\u2028"}
    line = encode_line(record)
    assert line.count(b"\n") == 1 and decode_lines(line) == [record]


def test_reopened_spool_keeps_its_id_and_never_reuses_a_segment_number(tmp_path: Path) -> None:
    first = opened(tmp_path)
    first.write([encode_line({"i": 1})])
    left_over = first.segments()
    first.close()
    second = opened(tmp_path)
    assert second.spool_id == first.spool_id
    assert second.closed_segments() == left_over
    assert min(second.segments()) == left_over[0] and max(second.segments()) > max(left_over)


def test_rotate_closes_only_a_segment_that_holds_records(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    assert spool.rotate() is None
    spool.write([encode_line({"i": 1})])
    closed = spool.rotate()
    assert closed is not None and spool.closed_segments() == [closed]
    assert spool.pending_records == 0


def test_a_failed_write_is_reported_and_later_rows_go_to_a_fresh_segment(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    first_line = encode_line({"i": 0})
    spool.write([first_line])
    (first,) = spool.segments()
    size = len(first_line)
    # A real write failure: the file-size limit makes write() fail with EFBIG (SIGXFSZ ignored).
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))
    try:
        with pytest.raises(SpoolWriteError, match="capture spool write failed"):
            spool.write([encode_line({"i": i, "pad": "x" * 100}) for i in range(1, 4)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert spool.stats.records == 1  # the failed rows were never counted as written
    spool.write([encode_line({"i": 4})])
    second = max(spool.segments())
    assert second > first
    # The old segment ends with the last good line: no torn bytes are read back.
    assert [r["i"] for r in spool.read_segment(first)] == [0]
    assert [r["i"] for r in spool.read_segment(second)] == [4]


@pytest.mark.parametrize("client_request_id", [None, 'c-"7"\n'])
def test_row_encoder_json_decodes_to_the_payload_row_record(
    tmp_path: Path, client_request_id: str | None
) -> None:
    table = tmp_path / "tbl ü_payload"
    metadata = request_metadata("ep", "main.default.iris", 3, "iris-3")
    encoder = RowEncoder(table, metadata)
    midnight = 1_709_337_600_000  # 2024-03-02T00:00:00Z: the partition date changes on this row
    for timestamp_ms in (midnight - 1, midnight):
        row = PayloadRow(
            databricks_request_id="r1",
            client_request_id=client_request_id,
            timestamp_ms=timestamp_ms,
            status_code=400,
            execution_time_ms=12,
            request='{"inputs": ["line\\nbreak", "ünïcödé \u2028"]}',
            response='{"error_code": "BAD_REQUEST", "message": "no \\"x\\""}',
            request_metadata=metadata,
        )
        payload = encoder.encode("r1", client_request_id, timestamp_ms, 400, 12, row.request, row.response)
        assert b"\n" not in payload  # one line in the pipe to the capture service, one in the spool
        assert decode_lines(frame(payload)) == [{"table": str(table), **row.to_record()}]
