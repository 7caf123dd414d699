"""The fork server: one warm interpreter per Python environment that forks replicas on request.

Every spawned worker imports MLflow, pandas and scikit-learn on its own and holds ~190 MB of them
(PSS). This process imports them once, freezes its objects out of the garbage collector's reach
(`gc.freeze()`: a collection would otherwise write to every object's header and un-share its page)
and forks each replica from that state, so the imported modules' pages stay shared copy-on-write and
a replica pays only for its model and its own heap.

Protocol, over the SOCK_SEQPACKET socket that is this process's stdin (one JSON object a packet):

    server -> here: {"fork": id} + three fds (SCM_RIGHTS): the child's stdin, stdout and stderr
    here -> server: {"event": "warm", "pid": N}           once, when the imports are done
                    {"forked": id, "pid": N}              (or {"forked": id, "error": "..."})
                    {"exited": pid, "code": c}            when a child exits (we are its parent)

A child is an ordinary worker (`__main__.main`) from then on: the server assigns it a model on its
own stdin and reads its events on its own stdout, and its stdin is its lifeline to the server. The
socket is this process's lifeline: end-of-file means the server is gone, and we exit (children exit
on their own lifelines). Nothing here touches CUDA: torch is not imported, so a child's
CUDA_VISIBLE_DEVICES (set from its assignment before the model loads) is the first CUDA sees.
"""

from __future__ import annotations

import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import traceback
from typing import Any

from jupyter_serving.worker.__main__ import FORK_PRELOAD, prepare
from jupyter_serving.worker.__main__ import main as worker_main

MAX_PACKET = 64 * 1024


def main() -> int:
    control = socket.socket(fileno=os.dup(0))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # children get their own stdin; ours is the socket, read only through `control`
    os.close(devnull)
    prepare(FORK_PRELOAD)
    if threading.active_count() > 1:  # forking copies only the calling thread
        print(f"fork server: threads after the imports: {threading.enumerate()}", file=sys.stderr)
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake select via wake_w
    _send(control, event="warm", pid=os.getpid())
    watched: list[socket.socket | int] = [control, wake_r]
    while True:
        ready, _, _ = select.select(watched, [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            _reap(control)
        if control in ready:
            message, fds, _, _ = socket.recv_fds(control, MAX_PACKET, 3)
            if not message:  # the server is gone
                os._exit(0)
            _fork(control, json.loads(message), fds, (wake_r, wake_w))


def _fork(control: socket.socket, request: dict[str, Any], fds: list[int], own: tuple[int, int]) -> None:
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        _send(control, forked=request.get("fork"), error=f"expected 3 file descriptors, got {len(fds)}")
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _child(control, fds, own)
        except BaseException:
            traceback.print_exc()  # into the child's stderr: the replica's log
        finally:
            os._exit(code)
    for fd in fds:
        os.close(fd)
    _send(control, forked=request.get("fork"), pid=pid)


def _child(control: socket.socket, fds: list[int], own: tuple[int, int]) -> int:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()  # a signal to the server's (or the fork server's) group must not hit replicas
    control.close()
    for fd in own:
        os.close(fd)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    numpy = sys.modules.get("numpy")
    if numpy is not None:  # siblings must not draw the same "random" numbers (Python's own reseeds)
        numpy.random.seed()
    code = worker_main()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


def _reap(control: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(control, exited=pid, code=os.waitstatus_to_exitcode(status))


def _send(control: socket.socket, **message: Any) -> None:
    try:
        control.send(json.dumps(message).encode())
    except OSError:  # the server is gone
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
