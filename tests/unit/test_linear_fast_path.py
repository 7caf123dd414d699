"""The worker's scoring of scikit-learn linear models from their coefficients (worker/linear.py):
chosen only where it reproduces the estimator's own predict, and answering as MLflow's path does."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")
sklearn_linear = pytest.importorskip("sklearn.linear_model")

from mlflow.models import infer_signature  # noqa: E402

from jupyter_serving.worker.scoring import Scorer  # noqa: E402

RNG_SEED = 7
N_ROWS, N_COLS = 80, 4


def frame(integer: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(RNG_SEED)
    values = rng.normal(0.0, 2.0, size=(N_ROWS, N_COLS))
    if integer:
        return pd.DataFrame(np.rint(values).astype("int64"), columns=[f"c{i}" for i in range(N_COLS)])
    return pd.DataFrame(values, columns=[f"c{i}" for i in range(N_COLS)])


def targets(kind: str, X: pd.DataFrame) -> Any:
    s = X.to_numpy(dtype=float) @ np.arange(1.0, N_COLS + 1.0)
    if kind == "binary":
        return (s > 0).astype(int)
    if kind == "multiclass":
        return np.digitize(s, np.quantile(s, [1 / 3, 2 / 3]))
    if kind == "strings":
        return np.array(["low", "mid", "high"])[np.digitize(s, np.quantile(s, [1 / 3, 2 / 3]))]
    if kind == "objects":  # labels from a pandas column: an object array, scikit-learn's str special case
        return pd.Series(np.where(s > 0, "yes", "no"), dtype=object)
    if kind == "multioutput":
        return np.column_stack([s, -2.0 * s + 1.0])
    return s + 0.5


class ShiftedRegression(sklearn_linear.LinearRegression):
    """A subclass whose own predict differs: the coefficients alone do not give its answer."""

    def predict(self, X: Any) -> Any:
        return super().predict(X) + 1.0


CASES: dict[str, tuple[Any, str]] = {
    "logistic-multiclass": (lambda: sklearn_linear.LogisticRegression(max_iter=500), "multiclass"),
    "logistic-binary": (lambda: sklearn_linear.LogisticRegression(max_iter=500), "binary"),
    "logistic-strings": (lambda: sklearn_linear.LogisticRegression(max_iter=500), "strings"),
    "sgd-classifier": (lambda: sklearn_linear.SGDClassifier(random_state=0), "multiclass"),
    "linear": (lambda: sklearn_linear.LinearRegression(), "continuous"),
    "linear-multioutput": (lambda: sklearn_linear.LinearRegression(), "multioutput"),
    "ridge": (lambda: sklearn_linear.Ridge(alpha=0.5), "continuous"),  # predict: super().predict(X)
    "huber": (lambda: sklearn_linear.HuberRegressor(), "continuous"),
}


def saved(
    tmp_path: Path, name: str, estimator: Any, X: pd.DataFrame, y: Any, **kwargs: Any
) -> tuple[Any, Any]:
    estimator.fit(X, y)
    path = tmp_path / name
    mlflow.sklearn.save_model(
        estimator,
        str(path),
        serialization_format="cloudpickle",
        signature=infer_signature(X, estimator.predict(X)),
        pip_requirements=["scikit-learn"],  # not inferred: that runs a subprocess per model
        **kwargs,
    )
    return mlflow.pyfunc.load_model(str(path)), estimator


def uses_linear_path(scorer: Scorer) -> bool:
    return scorer.fast is not None and scorer.fast.predict.__module__ == "jupyter_serving.worker.linear"


def body(X: pd.DataFrame, fmt: str = "dataframe_split") -> bytes:
    if fmt == "dataframe_split":
        return json.dumps({fmt: {"columns": list(X.columns), "data": X.to_numpy().tolist()}}).encode()
    return json.dumps({fmt: X.to_dict(orient="records")}).encode()


def close(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-9)
    return a == b


@pytest.mark.parametrize("integer", [False, True], ids=["double", "long"])
@pytest.mark.parametrize("case", list(CASES))
def test_linear_models_are_scored_from_coefficients_as_mlflow_scores_them(
    tmp_path: Path, case: str, integer: bool
) -> None:
    make, kind = CASES[case]
    X = frame(integer)
    model, estimator = saved(tmp_path, case, make(), X, targets(kind, X))
    fast, slow = Scorer(model), Scorer(model, fast_path=False)
    assert uses_linear_path(fast), case
    rows = X.to_numpy(dtype=np.float64)
    for n in (1, 50):  # the exact values, dtype and shape of the estimator's own predict
        ours, theirs = fast.fast.predict(rows[:n]), estimator.predict(rows[:n])  # type: ignore[union-attr]
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and np.array_equal(ours, theirs)
        for fmt in ("dataframe_split", "dataframe_records"):
            request = ("application/json", body(X.iloc[:n], fmt))
            assert fast._prepare(*request).rows is not None  # this request takes the fast path
            [a], [b] = fast.score([request]), slow.score([request])
            assert a.status == b.status == 200, (a.body, b.body)
            # MLflow's frame reaches the estimator column-major, ours row-major: BLAS may round the last bit
            # differently, as for every model on the fast path; labels are equal exactly
            assert close(json.loads(a.body)["predictions"], json.loads(b.body)["predictions"]), (case, n, fmt)


def test_concurrent_requests_scored_together_split_back_per_request(tmp_path: Path) -> None:
    X = frame()
    model, estimator = saved(
        tmp_path, "multi", sklearn_linear.LogisticRegression(max_iter=500), X, targets("multiclass", X)
    )
    scorer = Scorer(model)
    assert uses_linear_path(scorer)
    requests = [("application/json", body(X.iloc[i : i + 3])) for i in range(0, 30, 3)]
    results = scorer.score(requests)
    for i, result in zip(range(0, 30, 3), results, strict=True):
        assert result.status == 200 and result.batch == len(requests)
        assert json.loads(result.body)["predictions"] == estimator.predict(X.iloc[i : i + 3]).tolist()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_values_get_mlflows_own_error(tmp_path: Path, bad: float) -> None:
    X = frame()
    model, _ = saved(tmp_path, "lr", sklearn_linear.LogisticRegression(max_iter=500), X, targets("binary", X))
    fast, slow = Scorer(model), Scorer(model, fast_path=False)
    assert uses_linear_path(fast)
    data = X.iloc[:3].to_numpy().tolist()
    data[1][2] = bad
    request = (
        "application/json",
        json.dumps({"dataframe_split": {"columns": list(X.columns), "data": data}}).encode(),
    )
    [a], [b] = fast.score([request]), slow.score([request])
    assert a.status == b.status and a.status >= 400
    assert a.body == b.body  # the same MLflow error text, whichever path was tried first
    assert "NaN" in json.loads(a.body)["message"] or "infinity" in json.loads(a.body)["message"]


def test_estimators_the_coefficients_do_not_describe_keep_their_own_predict(tmp_path: Path) -> None:
    X = frame()
    y = targets("continuous", X)
    shifted, shifted_est = saved(tmp_path, "shifted", ShiftedRegression(), X, y)
    sparse_est = sklearn_linear.LogisticRegression(max_iter=500).fit(X, targets("binary", X))
    sparse_est.sparsify()
    sparse_path = tmp_path / "sparse"
    mlflow.sklearn.save_model(
        sparse_est,
        str(sparse_path),
        serialization_format="cloudpickle",
        signature=infer_signature(X, sparse_est.predict(X)),
        pip_requirements=["scikit-learn"],
    )
    proba, proba_est = saved(
        tmp_path,
        "proba",
        sklearn_linear.LogisticRegression(max_iter=500),
        X,
        targets("binary", X),
        pyfunc_predict_fn="predict_proba",
    )
    objects, _ = saved(
        tmp_path, "objects", sklearn_linear.LogisticRegression(max_iter=500), X, targets("objects", X)
    )
    lasso, _ = saved(tmp_path, "lasso", sklearn_linear.Lasso(alpha=0.1), X, y)  # own _decision_function
    ridge_classifier, _ = saved(
        tmp_path, "ridge-c", sklearn_linear.RidgeClassifier(), X, targets("binary", X)
    )
    for name, model in {
        "lasso": lasso,
        "ridge classifier": ridge_classifier,
        "subclass": shifted,
        "sparse": mlflow.pyfunc.load_model(str(sparse_path)),
        "predict_proba": proba,
        "object labels": objects,
    }.items():
        scorer = Scorer(model)
        assert scorer.fast is not None and not uses_linear_path(scorer), name
        assert getattr(scorer.fast.predict, "__self__", None) is model.get_raw_model(), name
    request = ("application/json", body(X.iloc[:4]))
    [answer] = Scorer(shifted).score([request])
    assert json.loads(answer.body)["predictions"] == pytest.approx(
        shifted_est.predict(X.iloc[:4]).tolist(), abs=1e-9
    )
    [answer] = Scorer(proba).score([request])
    assert np.allclose(
        json.loads(answer.body)["predictions"], proba_est.predict_proba(X.iloc[:4]), atol=1e-12
    )
