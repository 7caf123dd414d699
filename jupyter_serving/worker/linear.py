"""scikit-learn's linear estimators scored from their fitted coefficients, without its input checks.

Why: for a one-row request, `LogisticRegression.predict` spends ~0.2 ms (more with cold caches, as
on a worker that shares its cores with the server and the clients) in scikit-learn's input
validation (namespace, dataframe and finiteness checks, feature counts) around a dot product of a
few microseconds; at one client that was ~40% of the route-optimized listener's latency.

What makes it safe: the worker's numeric fast path already hands the model a float64 array in the
signature's column order; this module adds the remaining checks scikit-learn would make (finite
values, the fitted feature count) and then performs the same NumPy operations as scikit-learn's
`LinearModel.predict` and `LinearClassifierMixin.predict` on the same public fitted attributes
(`coef_`, `intercept_`, `classes_`). It applies only where the estimator's class uses those methods
unchanged, or through scikit-learn's own `return super().predict(X)` re-declarations (a subclass
that overrides them keeps its own), with dense coefficients, and only after
the result on probe rows equals the estimator's own `predict` bit for bit; any input it refuses
raises, and the caller then takes MLflow's path for MLflow's answer or error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], np.ndarray]
PROBE_ROWS = 16
PROBE_SEED = 0


def linear_predict(raw: Any, predict_fn: Any, n_columns: int) -> Predict | None:
    """An exact, check-light replacement for `predict_fn` (the estimator's own bound `predict`),
    or None when the estimator is not one whose prediction these operations reproduce."""
    try:
        from sklearn.linear_model._base import LinearClassifierMixin, LinearModel
    except ImportError:  # scikit-learn moved its linear bases: keep its own predict
        return None
    cls = type(raw)
    bound_to, function = getattr(predict_fn, "__self__", None), getattr(predict_fn, "__func__", None)
    if bound_to is not raw or function is not getattr(cls, "predict", None):
        return None  # pyfunc calls something else (predict_proba, a wrapper): not ours to replace
    coef, intercept = getattr(raw, "coef_", None), getattr(raw, "intercept_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype.kind != "f" or coef.ndim not in (1, 2):
        return None  # sparsified coefficients, or none: scikit-learn's path
    if not isinstance(intercept, np.ndarray | float | int | np.floating):
        return None
    if coef.shape[-1] != n_columns or getattr(raw, "n_features_in_", n_columns) != n_columns:
        return None
    if _resolves_to(cls, LinearClassifierMixin.predict):
        if cls.decision_function is not LinearClassifierMixin.decision_function:
            return None
        classes = getattr(raw, "classes_", None)
        if not isinstance(classes, np.ndarray) or classes.dtype == object:
            return None  # object labels: scikit-learn's str special case; not worth copying
        fn = _classifier(coef.T, intercept, classes, n_columns)
    elif _resolves_to(cls, LinearModel.predict):
        if cls._decision_function is not LinearModel._decision_function:
            return None
        fn = _regressor(coef.T, intercept, n_columns)
    else:
        return None
    return fn if _agrees(fn, predict_fn, n_columns) else None


def _resolves_to(cls: type, base: Any) -> bool:
    """Whether `cls().predict` is `base`, directly or through scikit-learn's own pass-through overrides.

    scikit-learn 1.9 re-declares `predict` on LinearRegression, Ridge, Lasso... only to document it
    (`return super().predict(X)`); those are followed along the MRO, as `super()` follows it. Any
    other override (a user's subclass, or scikit-learn's own with more logic, such as
    RidgeClassifier's) ends the search with False.
    """
    for owner in cls.__mro__:
        function = owner.__dict__.get("predict")
        if function is None:
            continue
        if function is base:
            return True
        code = getattr(function, "__code__", None)
        if (
            code is None
            or not getattr(function, "__module__", "").startswith("sklearn.")
            or code.co_names != ("super", "predict")
            or code.co_argcount != 2
        ):
            return False
    return False


def _checked(rows: np.ndarray, n_columns: int) -> np.ndarray:
    """What scikit-learn would refuse, refused here too (the caller then takes MLflow's path)."""
    if rows.dtype != np.float64 or rows.ndim != 2 or rows.shape[1] != n_columns or rows.shape[0] == 0:
        raise ValueError("not a 2-D float64 array of the fitted width")
    if not np.isfinite(rows).all():
        raise ValueError("Input X contains NaN or infinity")
    return rows


def _classifier(weights: np.ndarray, intercept: Any, classes: np.ndarray, n_columns: int) -> Predict:
    """`weights` is `coef_.T` (the same array when coef_ is 1-D), as scikit-learn multiplies."""

    def predict(rows: np.ndarray) -> np.ndarray:
        scores = _checked(rows, n_columns) @ weights + intercept
        if scores.ndim > 1 and scores.shape[1] == 1:
            scores = scores.reshape(-1)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else np.argmax(scores, axis=1)
        return np.take(classes, indices, axis=0)

    return predict


def _regressor(weights: np.ndarray, intercept: Any, n_columns: int) -> Predict:
    def predict(rows: np.ndarray) -> np.ndarray:
        return _checked(rows, n_columns) @ weights + intercept

    return predict


def _agrees(fn: Predict, predict_fn: Any, n_columns: int) -> bool:
    """Both on seeded probe rows (one row alone, then a batch): same values, dtype and shape."""
    rows = np.random.default_rng(PROBE_SEED).normal(0.0, 3.0, size=(PROBE_ROWS, n_columns))
    try:
        for probe in (rows[:1], rows):
            ours, theirs = fn(probe), np.asarray(predict_fn(probe))
            if ours.dtype != theirs.dtype or ours.shape != theirs.shape or not np.array_equal(ours, theirs):
                return False
    except Exception:
        return False
    return True
