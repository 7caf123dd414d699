"""GPU placement with a declared inventory (JUPYTER_SERVING_GPUS): exclusive devices, waiting, release.

No GPU is needed: what a replica is given is observed through CUDA_VISIBLE_DEVICES inside the
worker (the env-echo fixture model answers with the variable's value).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serving_support import ServingServer, entity, eventually


def visible_devices(server: ServingServer, name: str, served: str | None = None) -> str:
    response = server.invoke(name, {"dataframe_records": [{"var": "CUDA_VISIBLE_DEVICES"}]}, served=served)
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]


def served(server: ServingServer, name: str, pending: bool = False) -> dict[str, Any]:
    return server.get(name)["pending_config" if pending else "config"]["served_entities"][0]


def wait_for(check: Callable[[], Any], timeout: float = 90) -> Any:
    return eventually(check, timeout, 0.1)


def test_gpu_replicas_get_exclusive_devices_wait_for_them_and_release_them(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server("--gpus", "0,1", "--scale-to-zero-idle-s", "2", "--autoscale-interval-s", "0.2")
    server.create_ready("gpu-a", {"served_entities": [entity("env-echo", 1, workload_type="GPU_SMALL")]})
    server.create_ready(
        "gpu-b",
        {"served_entities": [entity("env-echo", 1, workload_type="GPU_SMALL", scale_to_zero_enabled=True)]},
    )
    a, b = served(server, "gpu-a")["local"]["gpus"], served(server, "gpu-b")["local"]["gpus"]
    assert sorted(a + b) == [0, 1]
    assert visible_devices(server, "gpu-a") == str(a[0])
    # gpu-b may have scaled to zero already; its cold start takes the one free device, its own.
    assert visible_devices(server, "gpu-b") == str(b[0])

    server.create_ready("cpu-ep", {"served_entities": [entity("env-echo", 1)]})
    assert visible_devices(server, "cpu-ep") == ""  # CPU replicas see no GPU
    assert served(server, "cpu-ep")["local"]["gpus"] == []

    # Scaling to zero releases the device: the next GPU endpoint is placed on it.
    wait_for(lambda: served(server, "gpu-b")["local"]["replicas"] == 0)
    server.create_ready("gpu-c", {"served_entities": [entity("env-echo", 1, workload_type="GPU_SMALL")]})
    assert served(server, "gpu-c")["local"]["gpus"] == b
    assert visible_devices(server, "gpu-c") == str(b[0])

    # gpu-a and gpu-c never scale to zero: gpu-d waits for a device, visibly.
    assert (
        server.create(
            "gpu-d", {"served_entities": [entity("env-echo", 1, workload_type="GPU_SMALL")]}
        ).status_code
        == 200
    )
    waiting = wait_for(
        lambda: (
            # past "Waiting to be deployed." (model lookup), at the GPU wait
            "GPU" in (s := served(server, "gpu-d", pending=True))["state"]["deployment_state_message"] and s
        )
    )
    assert waiting["state"]["deployment"] == "DEPLOYMENT_CREATING"
    assert "needs 1 per replica; free: none of [0, 1]" in waiting["state"]["deployment_state_message"]
    assert server.get("gpu-d")["state"] == {"ready": "NOT_READY", "config_update": "IN_PROGRESS"}

    server.delete("gpu-a")  # deleting frees its device for the waiting endpoint
    ready = server.wait_settled("gpu-d")
    assert ready["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}
    assert served(server, "gpu-d")["local"]["gpus"] == a
    assert visible_devices(server, "gpu-d") == str(a[0])

    server.delete("gpu-c")  # and gpu-b's next cold start gets the device gpu-c held
    assert visible_devices(server, "gpu-b") == str(b[0])


def test_a_workload_larger_than_the_machine_fails_clearly(start_server: Callable[..., ServingServer]) -> None:
    server = start_server("--gpus", "0")
    assert (
        server.create(
            "gpu-big", {"served_entities": [entity("env-echo", 1, workload_type="MULTIGPU_MEDIUM")]}
        ).status_code
        == 200
    )
    failed = server.wait_settled("gpu-big")
    message = failed["pending_config"]["served_entities"][0]["state"]["deployment_state_message"]
    assert failed["state"]["config_update"] == "UPDATE_FAILED"
    assert "needs 4 GPU(s) per replica, but this server has 1" in message
