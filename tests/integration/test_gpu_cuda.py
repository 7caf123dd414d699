"""On a machine with a CUDA GPU (the device tool): a PyTorch model really serves from its GPU.

Skipped, saying so, everywhere else: CI and the developers' machines have no GPU. Placement logic is
covered on CPU by test_gpu_placement.py with a declared inventory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from serving_support import ServingServer, entity

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


def test_pytorch_model_serves_from_its_gpu(start_server: Callable[..., ServingServer]) -> None:
    import mlflow.pyfunc

    server = start_server()
    endpoint = server.create_ready(
        "cuda-mlp", {"served_entities": [entity("torch-mlp", 1, workload_type="GPU_SMALL")]}
    )
    assert endpoint["config"]["served_entities"][0]["local"]["gpus"] == [0]
    rows = np.random.default_rng(3).normal(size=(4, 4)).astype(np.float32)
    answer = server.invoke("cuda-mlp", {"inputs": rows.tolist()})
    assert answer.status_code == 200, answer.text
    expected = mlflow.pyfunc.load_model("models:/torch-mlp/1").predict(rows)
    np.testing.assert_allclose(np.array(answer.json()["predictions"]), expected, rtol=1e-4, atol=1e-5)
    metrics = server.api("GET", "api/2.0/serving-endpoints/cuda-mlp/metrics").text
    used = [
        float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("gpu_memory_used_bytes")
    ]
    assert used and used[0] > 0  # the replica holds memory on its device
