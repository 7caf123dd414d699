"""GPU inventory and exclusive placement, with a declared inventory (no GPU needed)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from jupyter_serving.backends.local.gpus import GpuAllocator, discover
from jupyter_serving.policy.placement import gpus_per_replica


def test_workload_types_map_to_gpus_per_replica() -> None:
    assert [
        gpus_per_replica(t)
        for t in ("CPU", "GPU_SMALL", "GPU_MEDIUM", "GPU_LARGE_2", "GPU_LARGE_4", "GPU_XLARGE_8")
    ] == [0, 1, 1, 2, 4, 8]


def nvidia_smi_devices() -> int:
    """The driver's own count, independent of NVML's Python binding: 0 where there is no driver."""
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def test_declared_inventory_wins_and_nvml_absence_means_no_gpus() -> None:
    assert discover([1, 0, 1]) == [0, 1]
    assert discover([]) == []
    assert discover(None) == list(range(nvidia_smi_devices()))  # [] on a machine without a driver


async def test_devices_are_exclusive_and_a_waiter_gets_released_ones() -> None:
    allocator = GpuAllocator([0, 1])
    first = await allocator.allocate(1, "a/x", lambda reason: None)
    second = await allocator.allocate(1, "b/y", lambda reason: None)
    assert {first[0], second[0]} == {0, 1}
    reasons: list[str] = []
    third = asyncio.ensure_future(allocator.allocate(1, "c/z", reasons.append))
    await asyncio.sleep(0)
    assert not third.done()
    assert reasons == [
        "Waiting for GPUs: needs 1 per replica; free: none of [0, 1]; in use: 0 by a/x, 1 by b/y."
    ]
    allocator.release(first)
    assert await asyncio.wait_for(third, 1) == first


async def test_a_request_larger_than_the_machine_fails_instead_of_waiting_forever() -> None:
    with pytest.raises(ValueError, match="needs 4 GPU"):
        await GpuAllocator([0, 1]).allocate(4, "a/x", lambda reason: None)
