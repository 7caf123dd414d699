"""Pre-deployment validation: predict with a model in the very environment an endpoint would give it.

`validate()` resolves the model's files, builds (or reuses, from the same cache the server uses)
its Python environment, and scores one request there in a fresh process, as `mlflow.models.predict`
does, so a user sees a missing or conflicting requirement before creating the endpoint.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_serving.environments.cache import (
    UV,
    Environment,
    EnvironmentBuildFailed,
    EnvironmentCache,
    worker_env,
    worker_path,
)
from jupyter_serving.notebook.client import frame_to_split, payload_index, predictions_to_frame
from jupyter_serving.settings import ServingSettings

PREDICT_TIMEOUT_S = 600.0


@dataclass
class ValidationResult:
    """What `validate` saw: the answer (status + body), the predictions as a frame, the build log."""

    ok: bool
    status: int
    body: Any
    build_log: str
    environment: dict[str, Any] = field(default_factory=dict)
    predictions: Any = None
    stderr: str = ""

    def __repr__(self) -> str:
        head = f"validate: {'OK' if self.ok else 'FAILED'} (status {self.status}) in {self.environment}"
        return f"{head}\n--- build log\n{self.build_log}\n--- output\n{json.dumps(self.body)[:4000]}"

    def _repr_html_(self) -> str:
        tone = "#1a7f37" if self.ok else "#cf222e"
        output = (
            self.predictions._repr_html_() if self.predictions is not None else html.escape(str(self.body))
        )
        return (
            f"<div><b style='color:{tone}'>{'OK' if self.ok else 'FAILED'}</b> "
            f"(status {self.status}) in <code>{html.escape(str(self.environment))}</code>"
            f"<details><summary>build log</summary><pre>{html.escape(self.build_log)}</pre></details>"
            f"<div>{output}</div></div>"
        )


def validate(
    model_uri: str,
    input_data: Any,
    pip_requirements_override: list[str] | None = None,
    *,
    env_manager: str = UV,
    settings: ServingSettings | None = None,
) -> ValidationResult:
    """Build the environment an endpoint would run `model_uri` in (same cache as the server; `uv`
    by default, `auto` or `local` as the server setting allows), predict `input_data` (a DataFrame or
    a REST payload dict) there, and return the answer with the build log."""
    import mlflow.artifacts

    settings = settings or ServingSettings()
    model_dir = Path(mlflow.artifacts.download_artifacts(model_uri))
    payload, index = _payload(input_data)
    cache_root = settings.env_cache_path
    cache = EnvironmentCache(cache_root, settings.env_cache_max_bytes, settings.deploy_timeout_s)
    try:
        env = _in_thread(
            cache.resolve(model_dir, env_manager, overrides=tuple(pip_requirements_override or ()))
        )
    except EnvironmentBuildFailed as exc:
        log = exc.log_path.read_text(errors="replace") if exc.log_path else ""
        return ValidationResult(False, 0, {"message": str(exc)}, f"{exc}\n\n{log}")
    try:
        return _predict(env, cache, model_dir, payload, index, worker_path(cache_root))
    finally:
        cache.close()


def _predict(
    env: Environment,
    cache: EnvironmentCache,
    model_dir: Path,
    payload: dict[str, Any],
    index: Any,
    wdir: Path,
) -> ValidationResult:
    child_env = {**os.environ, **worker_env(env, wdir)}
    if env.name == "server":
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(wdir), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [env.python, "-m", "jupyter_serving.worker.validate", str(model_dir)],
        input=json.dumps(payload).encode(),
        capture_output=True,
        env=child_env,
        timeout=PREDICT_TIMEOUT_S,
    )
    build_log = env.decision + ("\n\n" + cache.build_log(env.name) if env.name != "server" else "")
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0 or not proc.stdout.strip():
        message = {"message": f"The model failed in its environment (exit code {proc.returncode})."}
        return ValidationResult(False, 0, message, build_log, env.describe(), stderr=stderr)
    answer = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    body = json.loads(answer["body"])
    result = ValidationResult(answer["status"] == 200, answer["status"], body, build_log, env.describe())
    result.stderr = stderr
    if result.ok:
        result.predictions = predictions_to_frame(body, index)
    return result


def _payload(data: Any) -> tuple[dict[str, Any], Any]:
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return {"dataframe_split": frame_to_split(data)}, data.index
    if isinstance(data, Mapping):
        return dict(data), payload_index(data)
    raise TypeError(f"validate() takes a pandas DataFrame or a payload dict, not {type(data).__name__}.")


def _in_thread(coro: Any) -> Any:
    """Run a coroutine to completion from a notebook, whose kernel already runs an event loop."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="jupyter-serving-validate")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
