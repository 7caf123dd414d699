"""Which replica log files the Ray backend reads on which node (backends/ray/logs.py), and which warm
host fits a replica (backends/ray/warm.py): pure functions over the GCS actor table's shape, no Ray."""

from __future__ import annotations

from jupyter_serving.backends.ray.logs import ReplicaLog, replica_logs
from jupyter_serving.backends.ray.warm import environment_key


def actor(name: str, node: str, state: str = "ALIVE") -> dict:
    return {"Name": name, "State": state, "Address": {"NodeID": node, "IPAddress": "10.0.0.2"}}


def test_replica_logs_are_found_per_node_alive_or_not() -> None:
    actors = {
        "a": actor("SERVE_REPLICA::app1#ServedModel#r1", "node-b"),
        "b": actor("SERVE_REPLICA::app1#ServedModel#r0", "node-a", "DEAD"),  # scaled away: its log stays
        "c": actor("SERVE_REPLICA::app2#ServedModel#r2", "node-a"),  # another entity's
        "d": actor("SERVE_REPLICA::app1#Ingress#r3", "node-a"),  # another deployment of the app
        "e": actor("SERVE_CONTROLLER_ACTOR", "node-a"),
        "f": {"Name": "", "State": "ALIVE"},
    }
    assert replica_logs(actors, {"app1"}, "ServedModel") == [
        ReplicaLog("node-a", "10.0.0.2", "replica_app1_ServedModel_r0.log", False),
        ReplicaLog("node-b", "10.0.0.2", "replica_app1_ServedModel_r1.log", True),
    ]
    assert replica_logs(actors, {"app3"}, "ServedModel") == []


def test_one_warm_host_per_python_environment() -> None:
    node_env = {"env_vars": {"MLFLOW_TRACKING_URI": "sqlite:///x.db"}}
    same = {"env_vars": {"MLFLOW_TRACKING_URI": "sqlite:///x.db"}}
    uv = {**node_env, "uv": {"packages": ["scikit-learn==1.5.0"]}}
    assert environment_key(node_env) == environment_key(same) != environment_key(uv)
