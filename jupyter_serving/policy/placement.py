"""How many GPUs a replica of each workload type takes: a pure table, shared by every backend.

Databricks' GPU workload types map onto GPUs per replica as follows (local devices are whatever this
machine has; the type only says how many a replica takes):

| workload_type   | GPUs per replica | Databricks hardware |
|-----------------|------------------|---------------------|
| GPU_SMALL       | 1                | 1x T4               |
| GPU_MEDIUM      | 1                | 1x A10G             |
| GPU_LARGE       | 1                | 1x A100             |
| GPU_LARGE_2     | 2                | 2x A100             |
| GPU_XLARGE      | 2                | 2x A100 (AWS)       |
| MULTIGPU_MEDIUM | 4                | 4x A10G             |
| GPU_LARGE_4     | 4                | 4x A100             |
| GPU_XLARGE_8    | 8                | 8x A100             |
| CPU, CPU_*      | 0                |                     |
"""

from __future__ import annotations

GPUS_PER_REPLICA = {
    "GPU_SMALL": 1,
    "GPU_MEDIUM": 1,
    "GPU_LARGE": 1,
    "GPU_LARGE_2": 2,
    "GPU_XLARGE": 2,
    "MULTIGPU_MEDIUM": 4,
    "GPU_LARGE_4": 4,
    "GPU_XLARGE_8": 8,
}


def gpus_per_replica(workload_type: str) -> int:
    return GPUS_PER_REPLICA.get(workload_type, 0)
