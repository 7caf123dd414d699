"""A Ray ingress replica's spool that nobody commits any more is committed by the next replica.

Each ingress replica on Ray (backends/ray/ingress.py) spools inference-table rows on its node before
it answers. If the replica and its capture service both die (the node's power, an OOM kill of the
whole group), acknowledged rows are only in that spool; the next ingress replica starting on the
node drains every spool whose lock nobody holds (`drain_orphans`) into the Delta table. No Ray is
needed to show it: the same capture service and spool, killed with SIGKILL under load.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from serving_support import eventually
from test_capture_delta import ids_in, kill_9_under_load, wait_gone

from jupyter_serving.backends.ray.ingress import drain_orphans


def test_a_dead_replicas_spool_is_committed_by_the_next_and_nothing_twice(tmp_path: Path) -> None:
    root, table = tmp_path / "ray-spool" / "ep", tmp_path / "t_payload"
    dead = root / "node-a-1234"
    dead.parent.mkdir(parents=True)
    acked, service = kill_9_under_load(dead, table, service_too=True)
    wait_gone(service)
    # A killed process shows as a zombie while its other threads still exit holding its files: the
    # spool is an orphan once its lock is free, which is what drain_orphans asks.
    eventually(
        lambda: lock_free(dead / "service.lock"), 60, 0.05, "the dead service's lock released", until=bool
    )
    assert len(ids_in(table)) < len(acked), "the kill should leave acknowledged rows only in the spool"
    assert drain_orphans(root) == 1
    ids = ids_in(table)
    assert acked <= set(ids)
    assert len(ids) == len(set(ids)), "a replayed row was committed twice"
    assert not dead.exists()  # drained and removed
    assert drain_orphans(root) == 0


def lock_free(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)
