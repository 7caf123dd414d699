"""The data plane over real HTTP: every input format Databricks accepts, errors, batching, timeouts."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import pytest
from serving_support import IRIS_COLUMNS, IRIS_ROWS, MlflowEnv, ServingServer, entity, eventually, iris_split


@pytest.fixture(scope="module")
def iris_endpoint(serving_server: ServingServer) -> Iterator[str]:
    serving_server.create_ready("inv-iris", {"served_entities": [entity("iris-lr", 1)]})
    yield "inv-iris"
    serving_server.delete("inv-iris")


@pytest.fixture(scope="module")
def expected_iris(mlflow_env: MlflowEnv) -> list[int]:
    """The oracle: MLflow's own pyfunc prediction for the same rows."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/iris-lr/1")
    return model.predict(pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS)).tolist()


def _records() -> list[dict[str, float]]:
    return [dict(zip(IRIS_COLUMNS, row, strict=True)) for row in IRIS_ROWS]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda: iris_split(), id="dataframe_split"),
        pytest.param(
            lambda: {
                "dataframe_split": {"columns": IRIS_COLUMNS[::-1], "data": [r[::-1] for r in IRIS_ROWS]}
            },
            id="dataframe_split-reordered",
        ),
        pytest.param(lambda: {"dataframe_records": _records()}, id="dataframe_records"),
        pytest.param(lambda: {"instances": _records()}, id="instances"),
        pytest.param(
            lambda: {"inputs": {c: [r[i] for r in IRIS_ROWS] for i, c in enumerate(IRIS_COLUMNS)}},
            id="inputs",
        ),
        pytest.param(lambda: {**iris_split(), "client_request_id": "req-42"}, id="client_request_id"),
        pytest.param(
            lambda: {
                "dataframe_split": {
                    "columns": [*IRIS_COLUMNS, "extra"],
                    "data": [[*r, 1.0] for r in IRIS_ROWS],
                }
            },
            id="extra-column-ignored",
        ),
        pytest.param(
            lambda: {
                "dataframe_records": [
                    {c: int(v) if float(v).is_integer() else v for c, v in rec.items()} for rec in _records()
                ]
            },
            id="int-values",
        ),
    ],
)
def test_every_json_format_gives_mlflows_predictions(
    serving_server: ServingServer, iris_endpoint: str, expected_iris: list[int], payload: Callable[[], Any]
) -> None:
    response = serving_server.invoke(iris_endpoint, payload())
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected_iris}
    assert response.headers["served-model-name"] == "iris-lr-1"
    assert len(response.headers["x-request-id"]) == 32


def test_csv_body(serving_server: ServingServer, iris_endpoint: str, expected_iris: list[int]) -> None:
    buf = io.StringIO()
    pd.DataFrame(IRIS_ROWS, columns=IRIS_COLUMNS).to_csv(buf, index=False)
    response = serving_server.invoke(iris_endpoint, data=buf.getvalue(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected_iris}


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (
            {"dataframe_split": {"columns": IRIS_COLUMNS[:3], "data": [r[:3] for r in IRIS_ROWS]}},
            "missing inputs",
        ),
        ({"dataframe_records": [{**_records()[0], IRIS_COLUMNS[0]: "tall"}]}, "Failed to"),
        ({"rows": [[1, 2, 3, 4]]}, "exactly one of the input fields"),
        ([[5.1, 3.5, 1.4, 0.2]], "Received a list"),
    ],
)
def test_schema_errors_are_400_with_mlflows_message(
    serving_server: ServingServer, iris_endpoint: str, payload: Any, fragment: str
) -> None:
    response = serving_server.invoke(iris_endpoint, payload)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error_code"] in ("BAD_REQUEST", "INVALID_PARAMETER_VALUE")  # MLflow's own codes, both 400
    assert fragment in error["message"]


def test_a_failed_request_is_one_log_line_without_the_dataframe(
    serving_server: ServingServer, iris_endpoint: str
) -> None:
    """No MLflow note about `instances` after a `dataframe_records` failure, no DataFrame repr in the
    log or the answer: one line naming the status and the client's request id."""
    records = [{**_records()[0], IRIS_COLUMNS[0]: "tall"}, *_records()[1:]]
    response = serving_server.invoke(
        iris_endpoint, {"dataframe_records": records, "client_request_id": "bad-rows-7"}
    )
    assert response.status_code == 400
    missing = serving_server.invoke(iris_endpoint, {"dataframe_records": [{"petal": 1.0}] * 3})
    assert missing.status_code == 400 and "missing inputs" in missing.json()["message"]
    for answer in (response, missing):
        assert "\n" not in answer.json()["message"] and "0  " not in answer.json()["message"]
    path = f"api/2.0/serving-endpoints/{iris_endpoint}/served-models/iris-lr-1/logs"

    def failures() -> list[str]:
        logs = serving_server.api("GET", path).json()["logs"]
        return [line for line in logs.splitlines() if "invocation failed" in line]

    lines = eventually(lambda: len(failures()) >= 2 and failures(), 30, 0.1, "two failure lines")
    logs = serving_server.api("GET", path).json()["logs"]
    assert "If using `instances`" not in logs and "Failed to predict data" not in logs
    assert any("invocation failed (400, client_request_id=bad-rows-7): " in line for line in lines)
    assert any("Failed to enforce schema of the input with schema" in line for line in lines)
    # A DataFrame repr would put the bad value and the stray column on lines of their own.
    assert all("invocation failed" in line for line in logs.splitlines() if "tall" in line or "petal" in line)


def test_invalid_json_and_unsupported_content_type(serving_server: ServingServer, iris_endpoint: str) -> None:
    bad_json = serving_server.invoke(
        iris_endpoint, data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert "valid JSON" in bad_json.json()["message"]
    xml = serving_server.invoke(iris_endpoint, data=b"<a/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415  # as `mlflow models serve` answers
    assert "not supported" in xml.json()["message"]


def test_params_reach_the_model(serving_server: ServingServer) -> None:
    serving_server.create_ready("inv-echo", {"served_entities": [entity("echo", 1)]})
    frame = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 3.0], [2.0, 4.0]]}}
    plain = serving_server.invoke("inv-echo", frame)
    scaled = serving_server.invoke("inv-echo", {**frame, "params": {"scale": 10.0}})
    assert plain.json() == {"predictions": [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 4.0}]}
    assert scaled.json() == {"predictions": [{"a": 10.0, "b": 30.0}, {"a": 20.0, "b": 40.0}]}
    serving_server.delete("inv-echo")


def test_model_exception_is_an_error_with_the_models_message(serving_server: ServingServer) -> None:
    serving_server.create_ready("inv-boom", {"served_entities": [entity("boom", 1)]})
    ok = serving_server.invoke("inv-boom", {"dataframe_records": [{"x": 1.0}]})
    assert ok.json() == {"predictions": [2.0]}
    failed = serving_server.invoke("inv-boom", {"dataframe_records": [{"x": -1.0}]})
    assert failed.status_code == 400
    assert failed.json()["error_code"] == "BAD_REQUEST"
    assert "boom: negative input is not supported" in failed.json()["message"]
    assert (
        "Unexpected error" not in failed.json()["message"]
    )  # the Databricks SDK would retry it for 5 minutes
    assert serving_server.invoke("inv-boom", {"dataframe_records": [{"x": 3.0}]}).json() == {
        "predictions": [6.0]
    }
    serving_server.delete("inv-boom")


def test_pytorch_model(serving_server: ServingServer, mlflow_env: MlflowEnv) -> None:
    import mlflow.pyfunc

    rows = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    expected = mlflow.pyfunc.load_model("models:/torch-mlp/1").predict(rows)
    serving_server.create_ready("inv-torch", {"served_entities": [entity("torch-mlp", 1)]})
    response = serving_server.invoke("inv-torch", {"inputs": rows.tolist()})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(np.array(response.json()["predictions"]), expected, rtol=1e-5, atol=1e-5)
    logs = serving_server.api(
        "GET", "api/2.0/serving-endpoints/inv-torch/served-models/torch-mlp-1/logs"
    ).json()["logs"]
    assert "warm-up on the input example took" in logs  # warmed up before it reported ready
    serving_server.delete("inv-torch")


def test_concurrent_requests_are_coalesced_into_one_predict(serving_server: ServingServer) -> None:
    serving_server.create_ready("inv-batch", {"served_entities": [entity("batch-size", 1)]})

    def call(rows: int) -> list[int]:
        response = serving_server.invoke("inv-batch", {"dataframe_records": [{"delay": 0.3}] * rows})
        assert response.status_code == 200, response.text
        return response.json()["predictions"]

    sizes = [1, 2, 3, 1, 2, 3, 1, 2]
    with ThreadPoolExecutor(len(sizes)) as pool:
        answers = list(pool.map(call, sizes))
    assert [len(a) for a in answers] == sizes  # each client gets exactly its own rows back
    assert max(a[0] for a in answers) > max(sizes)  # at least one predict call scored several requests
    serving_server.delete("inv-batch")


def test_direct_query_of_a_served_entity_and_unknown_entity(
    serving_server: ServingServer, iris_endpoint: str
) -> None:
    direct = serving_server.invoke(iris_endpoint, iris_split(), served="iris-lr-1")
    assert direct.status_code == 200
    assert direct.headers["served-model-name"] == "iris-lr-1"
    missing = serving_server.invoke(iris_endpoint, iris_split(), served="nope")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


def test_timeout_is_504_and_oversized_body_is_413(start_server: Callable[..., ServingServer]) -> None:
    server = start_server("--request-timeout-s", "1.5", "--max-request-bytes", "4096")
    server.create_ready("inv-slow", {"served_entities": [entity("slow", 1)]})
    started = time.monotonic()
    late = server.invoke("inv-slow", {"dataframe_records": [{"delay": 4.0}]})
    assert late.status_code == 504
    assert late.json()["error_code"] == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 4.0  # answered at the timeout, not when the model finished
    big = server.invoke("inv-slow", {"dataframe_records": [{"delay": 0.0}] * 1000})
    assert big.status_code == 413
    assert "limit is 4096 bytes" in big.json()["message"]
    fine = eventually(  # the busy worker frees up and serves again
        lambda: server.invoke("inv-slow", {"dataframe_records": [{"delay": 0.0}]}),
        30,
        0.0,
        "the slow replica answering again",
        until=lambda r: r.status_code == 200,
    )
    assert fine.json() == {"predictions": [0.0]}


def test_tensor_requests_are_stacked_into_one_forward_pass(serving_server: ServingServer) -> None:
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model("models:/torch-mlp/1")
    wait = {"JUPYTER_SERVING_BATCH_WAIT_MS": "50", "JUPYTER_SERVING_MAX_BATCH_SIZE": "32"}
    serving_server.create_ready(
        "inv-tensor", {"served_entities": [entity("torch-mlp", 1, environment_vars=wait)]}
    )
    rng = np.random.default_rng(7)
    inputs = [rng.normal(size=(1 + i % 3, 4)).astype(np.float32) for i in range(16)]

    def call(rows: np.ndarray) -> np.ndarray:
        response = serving_server.invoke("inv-tensor", {"inputs": rows.tolist()})
        assert response.status_code == 200, response.text
        return np.array(response.json()["predictions"])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, inputs))
    for rows, answer in zip(inputs, answers, strict=True):  # each client gets its own rows' outputs back
        # Batched and single forward passes legitimately differ in the last bits: absolute tolerance too.
        np.testing.assert_allclose(answer, model.predict(rows), rtol=1e-5, atol=1e-5)
    text = serving_server.api("GET", "api/2.0/serving-endpoints/inv-tensor/metrics").text
    count = float(next(line.split()[-1] for line in text.splitlines() if line.startswith("batch_size_count")))
    singles = float(
        next(
            line.split()[-1]
            for line in text.splitlines()
            if line.startswith("batch_size_bucket") and 'le="1.0"' in line
        )
    )
    assert count == 16 and singles < count  # some forward passes served several requests
    serving_server.delete("inv-tensor")
