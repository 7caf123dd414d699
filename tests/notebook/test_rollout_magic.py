"""`%serve rollout` and the Client's rollout methods against the real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from jupyter_serving.notebook.client import BadRequestError, Client, NotFoundError
from jupyter_serving.notebook.magics import parse_rollout_options, rollout_summary

pytestmark = pytest.mark.slow


def line(shell: Any, text: str) -> Any:
    with capture_output():
        return shell.run_cell(text)


def test_rollout_options_are_read_into_the_request() -> None:
    assert parse_rollout_options(["steps=10,50,100", "step=30", "alpha=0.01", "p50=2", "errors=off"]) == {
        "steps": [10, 50, 100],
        "step_duration_s": 30.0,
        "guard": {"alpha": 0.01, "latency": {"p50_ratio": 2.0}, "error_rate": {"enabled": False}},
    }
    assert parse_rollout_options([]) == {}
    quality = [
        "labels=main.default.labels",
        "metric=mae",
        "max_mae_increase=0.5",
        "max_error=10",
        "min_labels=50",
    ]
    assert parse_rollout_options(quality)["guard"] == {
        "quality": {
            "labels_table": "main.default.labels",
            "metric": "mae",
            "max_increase": 0.5,
            "max_error": 10.0,
            "min_labels": 50,
        }
    }
    assert parse_rollout_options(["labels=/data/labels"])["guard"] == {
        "quality": {"labels_path": "/data/labels"}
    }
    for bad in (["steps=a,b"], ["step"], ["colour=red"], ["latency=maybe"], ["min_labels=x"], ["labels="]):
        with pytest.raises(UsageError):
            parse_rollout_options(bad)
    assert rollout_summary("ep", None) == "ep: no rollout"


def test_rollout_magic_starts_shows_pauses_resumes_and_cancels(
    shell: Any, client: Client, new_name: Callable[[], str], iris_config: Callable[..., dict[str, Any]]
) -> None:
    name = new_name()
    client.create_and_wait(name, iris_config("1", "2", split=[100, 0]))
    assert client.rollout(name) is None
    assert line(shell, f"%serve rollout {name}").result == f"{name}: no rollout"

    started = line(shell, f"%serve rollout {name} iris-lr-2 steps=50,100 step=600 p99=4")
    assert started.success, started.error_in_exec
    assert started.result.startswith(f"{name}: rollout to iris-lr-2 RUNNING at 50% (step 1 of 2)")
    state = client.rollout(name)
    assert state is not None and state["guard"]["latency"]["p99_ratio"] == 4.0
    assert state["steps"] == [50, 100] and state["step_duration_s"] == 600.0

    assert " PAUSED at 50%" in line(shell, f"%serve rollout {name} pause").result
    assert " RUNNING at 50%" in line(shell, f"%serve rollout {name} resume").result
    shown = line(shell, f"%serve rollout {name} status").result
    assert shown.startswith(f"{name}: rollout to iris-lr-2 RUNNING")

    canceled = line(shell, f"%serve rollout {name} cancel").result
    assert " CANCELED " in canceled and "reason: Canceled by a user." in canceled
    refused = line(shell, f"%serve rollout {name} pause")  # nothing running any more
    assert isinstance(refused.error_in_exec, UsageError) and "INVALID_STATE" in str(refused.error_in_exec)
    assert isinstance(line(shell, f"%serve rollout {name} nobody").error_in_exec, UsageError)

    with pytest.raises(BadRequestError):
        client.start_rollout(name, "iris-lr-2", steps=[50, 25, 100])
    with pytest.raises(NotFoundError):
        client.rollout("no-such-endpoint")
