"""Unpacking logged requests and responses into one row per input, for every scoring format."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from jupyter_serving.tables.fastunpack import unpack_fast
from jupyter_serving.tables.reader import _safe_name, unpack, unpack_frame, unpack_rows

COLS = ["sepal length (cm)", "sepal width (cm)"]


def _unpack(request: dict, response: dict | str) -> list[dict]:
    return unpack(json.dumps(request), response if isinstance(response, str) else json.dumps(response))


def test_dataframe_split_gives_one_row_per_input_with_its_prediction() -> None:
    rows = _unpack(
        {"dataframe_split": {"columns": COLS, "data": [[5.1, 3.5], [6.2, 2.9]]}}, {"predictions": [0, 1]}
    )
    assert [(r["row_index"], r["sepal length (cm)"], r["prediction"]) for r in rows] == [
        (0, 5.1, 0),
        (1, 6.2, 1),
    ]
    assert all(r["error"] is None for r in rows)


def test_dataframe_records_keep_feature_names() -> None:
    rows = _unpack(
        {"dataframe_records": [dict(zip(COLS, [5.1, 3.5], strict=True))]}, {"predictions": ["setosa"]}
    )
    assert rows == [{"row_index": 0, COLS[0]: 5.1, COLS[1]: 3.5, "prediction": "setosa", "error": None}]


def test_instances_without_names_get_positional_columns() -> None:
    rows = _unpack({"instances": [[1, 2], [3, 4]]}, {"predictions": [10, 20]})
    assert [(r["input_0"], r["input_1"], r["prediction"]) for r in rows] == [(1, 2, 10), (3, 4, 20)]


def test_columnar_inputs_are_turned_into_rows() -> None:
    rows = _unpack({"inputs": {"x": [1, 2, 3], "y": [4, 5, 6]}}, {"predictions": [5, 7, 9]})
    assert [(r["x"], r["y"], r["prediction"]) for r in rows] == [(1, 4, 5), (2, 5, 7), (3, 6, 9)]


def test_dict_predictions_become_prediction_columns() -> None:
    rows = _unpack(
        {"instances": [[1], [2]]},
        {"predictions": [{"label": "a", "score": 0.9}, {"label": "b", "score": 0.6}]},
    )
    assert [(r["prediction_label"], r["prediction_score"]) for r in rows] == [("a", 0.9), ("b", 0.6)]


def test_failed_request_keeps_its_inputs_and_carries_the_error_message() -> None:
    error = {
        "error_code": "BAD_REQUEST",
        "message": "Encountered an unexpected error while evaluating the model.",
    }
    rows = _unpack({"dataframe_split": {"columns": COLS, "data": [[1.0, 2.0]]}}, error)
    assert rows[0]["prediction"] is None
    assert rows[0]["error"].startswith("Encountered an unexpected error")
    assert rows[0][COLS[0]] == 1.0


def test_unknown_body_still_yields_one_row_so_error_rates_stay_right() -> None:
    rows = unpack("not json", "<html>502 Bad Gateway</html>")
    assert rows == [{"row_index": 0, "error": "<html>502 Bad Gateway</html>", "prediction": None}]


def test_feature_named_like_a_table_column_is_renamed_not_lost() -> None:
    rows = _unpack({"dataframe_records": [{"status_code": 3, "x": 1}]}, {"predictions": [1]})
    assert rows[0]["input_status_code"] == 3 and rows[0]["x"] == 1


def test_prediction_count_mismatch_leaves_prediction_empty_rather_than_misaligned() -> None:
    rows = _unpack({"instances": [[1], [2], [3]]}, {"predictions": [1, 2]})
    assert [r["prediction"] for r in rows] == [None, None, None]


def _raw(requests: list[dict | str], responses: list[dict | str]) -> pd.DataFrame:
    n = len(requests)
    return pd.DataFrame(
        {
            "databricks_request_id": [f"r{i}" for i in range(n)],
            "status_code": [400 if isinstance(r, dict) and "error_code" in r else 200 for r in responses],
            "served_entity_name": ["e-1"] * n,
            "request": [r if isinstance(r, str) else json.dumps(r) for r in requests],
            "response": [r if isinstance(r, str) else json.dumps(r) for r in responses],
        }
    )


ERROR = {"error_code": "BAD_REQUEST", "message": "bad input"}
UNIFORM_TRAFFIC = {
    "split": (
        [{"dataframe_split": {"columns": COLS, "data": [[i, 2.5]] * (1 + i % 3)}} for i in range(30)],
        [{"predictions": [i % 3] * (1 + i % 3)} if i % 7 else ERROR for i in range(30)],
    ),
    "records": (
        [
            {"client_request_id": f"c{i}", "dataframe_records": [{"x": i * 0.5, "c": "red"}]}
            for i in range(30)
        ],
        [{"predictions": [float(i)]} for i in range(30)],
    ),
    "instances-with-dict-outputs": (
        [{"instances": [[i, 2], [3, 4]]} for i in range(30)],
        [{"predictions": [{"label": "a", "score": 0.5}] * 2} if i % 4 else ERROR for i in range(30)],
    ),
}


@pytest.mark.parametrize("case", sorted(UNIFORM_TRAFFIC))
def test_vectorised_reader_agrees_with_the_row_by_row_reference(case: str) -> None:
    raw = _raw(*UNIFORM_TRAFFIC[case])
    fast = unpack_fast(raw, _safe_name)
    assert fast is not None, "uniform traffic should take the fast path"
    slow = unpack_rows(raw)
    assert sorted(fast.columns) == sorted(slow.columns)
    pd.testing.assert_frame_equal(fast[slow.columns], slow, check_dtype=False)


def test_mixed_or_pretty_printed_traffic_falls_back_to_the_reference_reader() -> None:
    mixed = _raw(
        [{"instances": [[1, 2]]}, {"dataframe_records": [{"a": 1}]}, '{\n  "instances": [[3, 4]]\n}'],
        [{"predictions": [1]}, {"predictions": [2]}, {"predictions": [3]}],
    )
    assert unpack_fast(mixed, _safe_name) is None
    frame = unpack_frame(mixed)
    assert frame["prediction"].tolist() == [1, 2, 3] and frame["input_1"].tolist()[::2] == [2, 4]
