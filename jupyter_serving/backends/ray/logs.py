"""Replica logs from every node of the cluster, not only the one this server runs on.

Serve writes each replica's log to `serve/replica_<app>_<deployment>_<replica id>.log` under the
Ray log folder *of the node that runs it*. This server's machine holds only its own nodes' files; on
a multi-machine cluster the rest are elsewhere. Ray's state API (`ray.util.state.get_log`) would
fetch them, but it goes through the dashboard, which a private cluster here does not run and many
users' clusters do not expose. So: the GCS actor table (no dashboard needed) says which node ran
each replica of an application (alive or dead: a replica scaled away keeps its log), and a
zero-CPU Ray task pinned to that node (`NodeAffinitySchedulingStrategy`, hard) reads the tails of
exactly those replicas' files there. A node that is gone, or does not answer in time, is named in
the result instead of failing the request.

Imported only by the Ray backend, after Ray is (the task runs this module's `read_tails` on the node).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPLICA_PREFIX = "SERVE_REPLICA::"
READ_TIMEOUT_S = 30.0  # a node that takes longer (a worker process to start on a loaded box) is named


@dataclass(frozen=True)
class ReplicaLog:
    """One replica's log file and the node it lives on."""

    node_id: str
    node_ip: str
    file_name: str  # below the node's Ray log folder, in serve/
    alive: bool


def replica_logs(actors: dict[str, Any], apps: set[str], deployment: str) -> list[ReplicaLog]:
    """The log files of every replica (alive or not) of `apps`, from the GCS actor table
    (`ray._private.state.actors()`): actors named SERVE_REPLICA::<app>#<deployment>#<replica id>."""
    out = []
    for actor in actors.values():
        name = actor.get("Name") or ""
        if not name.startswith(REPLICA_PREFIX) or name.count("#") != 2:
            continue
        app, dep, replica_id = name.removeprefix(REPLICA_PREFIX).split("#")
        if app not in apps or dep != deployment:
            continue
        address = actor.get("Address") or {}
        out.append(
            ReplicaLog(
                address.get("NodeID", ""),
                address.get("IPAddress", ""),
                f"replica_{app}_{dep}_{replica_id}.log",
                actor.get("State") == "ALIVE",
            )
        )
    return sorted(out, key=lambda r: (r.node_id, r.file_name))


def read_tails(file_names: list[str], tail_bytes: int) -> dict[str, Any]:
    """Runs on a node: the tails of these Serve replica logs in this node's own log folder."""
    import ray

    node: Any = ray._private.worker.global_worker.node
    folder = Path(node.get_logs_dir_path()) / "serve"
    tails = {}
    for name in file_names:
        path = folder / os.path.basename(name)  # names come from actor names; never a path
        if path.is_file():
            with open(path, "rb") as f:
                f.seek(max(0, path.stat().st_size - tail_bytes))
                tails[name] = f.read().decode("utf-8", errors="replace")
    return {"node_id": ray.get_runtime_context().get_node_id(), "tails": tails}


def collect(ray: Any, files: list[ReplicaLog], tail_bytes: int, timeout_s: float = READ_TIMEOUT_S) -> str:
    """Read `files` on their nodes (one pinned task per node, in parallel) and join them, each
    headed by its node. Blocking: call it off the event loop."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    by_node: dict[str, list[ReplicaLog]] = {}
    for entry in files:
        by_node.setdefault(entry.node_id, []).append(entry)
    reader = ray.remote(num_cpus=0, max_retries=0)(read_tails)
    pending = {}
    notes = []
    for node_id, entries in by_node.items():
        if node_id not in alive:
            notes.append(f"==> node {node_id[:12]}: gone, with the logs of its {len(entries)} replica(s) <==")
            continue
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        names = [e.file_name for e in entries]
        pending[node_id] = reader.options(scheduling_strategy=strategy).remote(names, tail_bytes)
    ready, not_ready = (
        ray.wait(list(pending.values()), num_returns=len(pending), timeout=timeout_s) if pending else ([], [])
    )
    results = {}
    for ref in ready:
        try:
            answer = ray.get(ref)
        except Exception as exc:  # the node died meanwhile: say so, keep the others
            notes.append(f"==> a node could not read its replica logs: {exc!r} <==")
            continue
        results[answer["node_id"]] = answer["tails"]
    for ref in not_ready:
        ray.cancel(ref, force=True)
        node_id = next(n for n, r in pending.items() if r == ref)
        notes.append(f"==> node {node_id[:12]}: no answer within {timeout_s:g} s <==")
    parts = []
    for node_id, entries in by_node.items():
        tails = results.get(node_id, {})
        for entry in entries:
            if entry.file_name in tails:
                where = f"node {node_id[:12]} ({entry.node_ip})" if entry.node_ip else f"node {node_id[:12]}"
                parts.append(f"==> {where}: {entry.file_name} <==\n{tails[entry.file_name]}")
    return "\n".join(parts + notes)


__all__ = ["ReplicaLog", "collect", "read_tails", "replica_logs"]
