"""This machine's GPUs: the inventory and exclusive placement of replicas on them.

The inventory comes from NVML, or from the setting `gpus` (`JUPYTER_SERVING_GPUS=0,1`; empty means
none), which is also how the placement logic is tested on machines without a GPU. Each GPU replica
owns its devices exclusively and sees only them (`CUDA_VISIBLE_DEVICES`); CPU replicas see none.
How many a replica takes comes from `jupyter_serving.policy.placement`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("jupyter_serving")


def discover(setting: list[int] | None) -> list[int]:
    """The GPU indices replicas may use: the setting if given, else every device NVML reports."""
    if setting is not None:
        return sorted(set(setting))
    try:
        import pynvml

        pynvml.nvmlInit()
        return list(range(pynvml.nvmlDeviceGetCount()))
    except Exception:  # no driver, no library, no device: a CPU-only machine
        return []


class GpuAllocator:
    """Hands out devices exclusively; a request that cannot be met waits until devices are released."""

    def __init__(self, devices: Iterable[int]) -> None:
        self.devices = sorted(devices)
        self.owners: dict[int, str] = {}
        self._released = asyncio.Event()

    @property
    def free(self) -> list[int]:
        return [d for d in self.devices if d not in self.owners]

    def try_allocate(self, count: int, owner: str) -> list[int] | None:
        free = self.free
        if count > len(free):
            return None
        taken = free[:count]
        for device in taken:
            self.owners[device] = owner
        return taken

    async def allocate(self, count: int, owner: str, waiting: Any) -> list[int]:
        """Devices for one replica; calls `waiting(reason)` once if it has to wait for them."""
        if count > len(self.devices):
            raise ValueError(
                f"needs {count} GPU(s) per replica, but this server has {len(self.devices)} "
                f"({self._describe()}); set JUPYTER_SERVING_GPUS or choose a smaller workload_type"
            )
        told = False
        while (taken := self.try_allocate(count, owner)) is None:
            if not told:
                waiting(f"Waiting for GPUs: needs {count} per replica; free: {self._describe()}.")
                told = True
            self._released.clear()
            await self._released.wait()
        return taken

    def release(self, devices: Iterable[int]) -> None:
        for device in devices:
            self.owners.pop(device, None)
        self._released.set()

    def _describe(self) -> str:
        if not self.devices:
            return "none (no GPUs on this server)"
        free = self.free
        used = ", ".join(f"{d} by {o}" for d, o in sorted(self.owners.items()))
        return f"{free if free else 'none'} of {self.devices}" + (f"; in use: {used}" if used else "")


def device_stats(devices: Iterable[int]) -> list[tuple[int, int, int, int]]:
    """(index, memory used bytes, memory total bytes, utilisation %) per device, where NVML can tell."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    stats = []
    for index in devices:
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            utilisation = pynvml.nvmlDeviceGetUtilizationRates(handle)
        except Exception:
            continue
        stats.append((index, int(memory.used), int(memory.total), int(utilisation.gpu)))
    return stats
