"""The flavors users serve, end to end: transformers pipelines, sentence-transformers, XGBoost, LightGBM.

Tiny models built here (tests/flavor_models.py) are registered in this module's own registry and
served by this module's own server; each answer must equal MLflow's in-process
``pyfunc.load_model(...).predict`` for the same input. Text endpoints wait 50 ms for a batch of at
most 4 requests, so concurrency shows up in the `batch_size` metric.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from serving_support import ServingServer, entity

from jupyter_serving.promotion.models import environ

for _module in ("transformers", "tokenizers", "sentence_transformers", "xgboost", "lightgbm"):
    pytest.importorskip(_module, reason="the flavors extra is not installed (pip install -e '.[flavors]')")

import flavor_models as fm  # noqa: E402  (imports transformers lazily, after the skip check)

# The module fixture builds, logs and loads eight models: allow it time on a busy 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TEXT_MODELS = ("hf-classifier", "hf-features", "hf-generator", "st-embedder")
BOOSTED_MODELS = ("xgb", "xgb-booster", "lgbm", "lgbm-booster")
MAX_BATCH = 4
BATCHING = {"JUPYTER_SERVING_BATCH_WAIT_MS": "50", "JUPYTER_SERVING_MAX_BATCH_SIZE": str(MAX_BATCH)}
TWO = fm.SENTENCES[2:4]
FLOAT_TOL = 1e-5


@pytest.fixture(scope="module")
def flavor_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A registry holding every flavor fixture; MLflow's global URIs are restored afterwards."""
    import mlflow

    root = tmp_path_factory.mktemp("flavors")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with environ({"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}):
        experiment = mlflow.create_experiment("flavors", artifact_location=(root / "artifacts").as_uri())
        fm.register_all(root, experiment)
        yield {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri, "HF_HUB_OFFLINE": "1"}
    mlflow.set_tracking_uri(saved[0])
    mlflow.set_registry_uri(saved[1])


@pytest.fixture(scope="module")
def flavor_server(
    flavor_registry: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServingServer]:
    """One server with an endpoint per model, all created at once so their workers load together."""
    server = ServingServer(tmp_path_factory.mktemp("flavor-serving") / "state", flavor_registry).start()
    try:
        for name in (*TEXT_MODELS, *BOOSTED_MODELS):
            extra = {"environment_vars": BATCHING} if name in TEXT_MODELS else {}
            created = server.create(name, {"served_entities": [entity(name, 1, **extra)]})
            assert created.status_code == 200, created.text
        for name in (*TEXT_MODELS, *BOOSTED_MODELS):
            endpoint = server.wait_settled(name, timeout=400)
            assert endpoint["state"] == {"ready": "READY", "config_update": "NOT_UPDATING"}, endpoint
        yield server
    finally:
        server.stop()


_loaded: dict[str, Any] = {}


def local_model(name: str) -> Any:
    import mlflow.pyfunc

    if name not in _loaded:
        _loaded[name] = mlflow.pyfunc.load_model(f"models:/{name}/1")
    return _loaded[name]


def expected(name: str, data: Any, params: dict[str, Any] | None = None) -> Any:
    """The oracle: MLflow's in-process prediction, as the JSON a scoring server would send."""
    from mlflow.pyfunc.scoring_server import NumpyEncoder
    from mlflow.utils.proto_json_utils import _get_jsonable_obj

    preds = local_model(name).predict(data, params=params)
    return json.loads(json.dumps(_get_jsonable_obj(preds, pandas_orient="records"), cls=NumpyEncoder))


def assert_close(actual: Any, wanted: Any, path: str = "") -> None:
    """Equal structure and strings, floats within FLOAT_TOL."""
    if isinstance(wanted, float) or isinstance(actual, float):
        assert actual == pytest.approx(wanted, abs=FLOAT_TOL), path
    elif isinstance(wanted, list):
        assert isinstance(actual, list) and len(actual) == len(wanted), path
        for i, (a, w) in enumerate(zip(actual, wanted, strict=True)):
            assert_close(a, w, f"{path}[{i}]")
    elif isinstance(wanted, dict):
        assert isinstance(actual, dict) and actual.keys() == wanted.keys(), path
        for key in wanted:
            assert_close(actual[key], wanted[key], f"{path}.{key}")
    else:
        assert actual == wanted, path


def predictions(server: ServingServer, name: str, payload: dict[str, Any]) -> Any:
    response = server.invoke(name, payload)
    assert response.status_code == 200, response.text
    assert response.headers["served-model-name"] == f"{name}-1"
    return response.json()["predictions"]


# Every way Databricks takes strings for a one-string-column signature, and the texts they carry.
STRING_FORMATS = {
    "inputs-string": ({"inputs": TWO[0]}, TWO[:1]),
    "inputs-list": ({"inputs": TWO}, TWO),
    "instances": ({"instances": TWO}, TWO),
    "dataframe_split": ({"dataframe_split": {"columns": ["text"], "data": [[t] for t in TWO]}}, TWO),
    "dataframe_records": ({"dataframe_records": [{"text": t} for t in TWO]}, TWO),
}


@pytest.mark.parametrize("fmt", STRING_FORMATS)
@pytest.mark.parametrize("name", ["hf-classifier", "hf-generator", "st-embedder"])
def test_text_models_answer_every_string_format_like_mlflow(
    flavor_server: ServingServer, name: str, fmt: str
) -> None:
    payload, texts = STRING_FORMATS[fmt]
    answer = predictions(flavor_server, name, payload)
    assert_close(answer, expected(name, texts))
    assert len(answer) == len(texts)  # one row per string
    if name == "hf-classifier":
        assert all(row.keys() == {"label", "score"} and row["label"] in fm.LABELS.values() for row in answer)
    elif name == "hf-generator":
        assert all(
            out.startswith(text) and len(out) > len(text) for out, text in zip(answer, texts, strict=True)
        )
    else:
        assert all(len(vector) == fm.HIDDEN for vector in answer)


def test_text_generation_takes_max_new_tokens(flavor_server: ServingServer) -> None:
    short = predictions(flavor_server, "hf-generator", {"inputs": TWO, "params": {"max_new_tokens": 2}})
    default = predictions(flavor_server, "hf-generator", {"inputs": TWO})
    assert short == expected("hf-generator", TWO, {"max_new_tokens": 2})
    assert all(len(s) < len(d) for s, d in zip(short, default, strict=True))
    bad = flavor_server.invoke("hf-generator", {"inputs": TWO, "params": {"max_new_tokens": "many"}})
    assert bad.status_code == 400 and bad.json()["error_code"] == "INVALID_PARAMETER_VALUE", bad.text


@pytest.mark.parametrize("fmt", ["inputs-string", "instances", "dataframe_split"])
def test_feature_extraction_answers_token_vectors_like_mlflow(flavor_server: ServingServer, fmt: str) -> None:
    payload, texts = STRING_FORMATS[fmt]
    answer = predictions(flavor_server, "hf-features", payload)
    assert_close(answer, expected("hf-features", texts))
    tokens = len(local_model("hf-features")._model_impl.pipeline.tokenizer(texts[0])["input_ids"])
    assert [len(answer), len(answer[0])] == [tokens, fm.HIDDEN]  # MLflow: the first string's tokens


def _batch_counts(server: ServingServer, name: str) -> dict[str, float]:
    """The `batch_size` histogram of one endpoint: total count and the le="1" / le=MAX_BATCH buckets."""
    text = server.api("GET", f"api/2.0/serving-endpoints/{name}/metrics").text
    counts = {"count": 0.0, "1": 0.0, str(MAX_BATCH): 0.0}
    for line in text.splitlines():
        if line.startswith("batch_size_count"):
            counts["count"] = float(line.split()[-1])
        for le in ("1", str(MAX_BATCH)):
            if line.startswith("batch_size_bucket") and f'le="{le}.0"' in line:
                counts[le] = float(line.split()[-1])
    return counts


@pytest.mark.parametrize(
    ("name", "params"),
    [("hf-classifier", None), ("hf-generator", {"max_new_tokens": 3}), ("st-embedder", None)],
)
def test_concurrent_string_requests_are_one_pipeline_call(
    flavor_server: ServingServer, name: str, params: dict[str, Any] | None
) -> None:
    texts = [f"{s} {i}" for i, s in enumerate(fm.SENTENCES * 2)]  # 16 distinct one-string requests
    before = _batch_counts(flavor_server, name)

    def call(text: str) -> Any:
        return predictions(flavor_server, name, {"inputs": text, **({"params": params} if params else {})})

    with ThreadPoolExecutor(len(texts)) as pool:
        answers = list(pool.map(call, texts))
    for text, answer in zip(texts, answers, strict=True):  # each client gets its own string's answer
        assert_close(answer, expected(name, [text], params))
    after = _batch_counts(flavor_server, name)
    delta = {k: after[k] - before[k] for k in after}
    assert delta["count"] == len(texts)
    assert delta["1"] < len(texts)  # some pipeline calls served several requests...
    assert delta[str(MAX_BATCH)] == len(texts)  # ...and none more than the entity's max batch size


@pytest.mark.parametrize("name", BOOSTED_MODELS)
def test_boosted_models_answer_like_mlflow(flavor_server: ServingServer, name: str) -> None:
    X, _ = fm.tabular_frame()
    rows = X.iloc[:5]
    split = {"columns": list(rows.columns), "data": rows.to_numpy().tolist()}
    wanted = expected(name, rows)
    for payload in (
        {"dataframe_split": split},
        {"dataframe_records": rows.to_dict(orient="records")},
        {"dataframe_split": {"columns": split["columns"][::-1], "data": [r[::-1] for r in split["data"]]}},
        {"inputs": {c: rows[c].tolist() for c in rows.columns}},
    ):
        assert_close(predictions(flavor_server, name, payload), wanted)
    missing = flavor_server.invoke(name, {"dataframe_split": {"columns": ["f0"], "data": [[1.0]]}})
    assert missing.status_code == 400 and missing.json()["error_code"] == "INVALID_PARAMETER_VALUE", (
        missing.text
    )
    assert "f1" in missing.json()["message"]  # MLflow's own schema error, naming what is missing


@pytest.mark.parametrize("name", BOOSTED_MODELS)
def test_boosted_models_take_the_numpy_fast_path(flavor_registry: dict[str, str], name: str) -> None:
    """In process: the worker's Scorer picks the fast path and answers exactly as MLflow's path does."""
    from jupyter_serving.worker.scoring import Scorer

    X, _ = fm.tabular_frame()
    body = json.dumps(
        {"dataframe_split": {"columns": list(X.columns), "data": X.iloc[:20].to_numpy().tolist()}}
    ).encode()
    fast, slow = Scorer(local_model(name)), Scorer(local_model(name), fast_path=False)
    assert fast.fast is not None and slow.fast is None
    prepared = fast._prepare("application/json", body)
    assert prepared.rows is not None  # this request takes the fast path
    [fast_answer], [slow_answer] = (
        fast.score([("application/json", body)]),
        slow.score([("application/json", body)]),
    )
    assert fast_answer.status == slow_answer.status == 200
    assert_close(json.loads(fast_answer.body), json.loads(slow_answer.body))


def test_boosted_models_with_other_signatures_keep_mlflows_path(
    flavor_registry: dict[str, str], tmp_path: Path
) -> None:
    """Integer columns or feature names in another order than the model's: no fast path."""
    import lightgbm as lgb
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature

    from jupyter_serving.worker.scoring import Scorer

    X, y = fm.tabular_frame(50)
    ints = X.round().astype("int64")
    cases = {
        "xgb-int": (xgb.XGBClassifier(n_estimators=2, max_depth=2).fit(ints, y), ints, mlflow.xgboost),
        "xgb-reordered": (
            xgb.XGBClassifier(n_estimators=2, max_depth=2).fit(X, y),
            X[X.columns[::-1]],
            mlflow.xgboost,
        ),
        "lgbm-reordered": (
            lgb.LGBMClassifier(n_estimators=2, verbose=-1).fit(X, y),
            X[X.columns[::-1]],
            mlflow.lightgbm,
        ),
    }
    for case, (model, frame, flavor) in cases.items():
        flavor.save_model(
            model,
            tmp_path / case,
            signature=infer_signature(frame, model.predict(X)),
            pip_requirements=["pandas"],
        )
        assert Scorer(mlflow.pyfunc.load_model(str(tmp_path / case))).fast is None, case
