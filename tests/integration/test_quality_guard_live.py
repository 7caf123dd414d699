"""The rollout's quality guard end to end (issue 29): ground-truth labels, appended to a real Delta
table while traffic flows, are joined on client_request_id to the real inference table of a real
server, and the always-valid guard rolls back a challenger whose answers disagree with them.

The fixture model `flaky` answers 2x, except on the inputs FLAKY_WRONG_PERCENT selects, where it
answers 2x + 1 (tests/model_code/flaky.py); the truth is 2x. Inputs are seeded.
"""

from __future__ import annotations

import queue
import signal
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from deltalake import write_deltalake
from rollouts import ROLLOUT, rollout, split, traffic
from scenarios import CAPTURE
from serving_support import ServingServer, entity, eventually


def graded_config(wrong_percent: int) -> dict[str, Any]:
    """`current` always right; `challenger` wrong on `wrong_percent` % of inputs; table on."""
    return {
        "served_entities": [
            entity("flaky", 1, name="current"),
            entity(
                "flaky", 1, name="challenger", environment_vars={"FLAKY_WRONG_PERCENT": str(wrong_percent)}
            ),
        ],
        "traffic_config": {
            "routes": [
                {"served_model_name": "current", "traffic_percentage": 100},
                {"served_model_name": "challenger", "traffic_percentage": 0},
            ]
        },
        "auto_capture_config": CAPTURE,
    }


def catalog_root(server: ServingServer, name: str) -> Path:
    """The server's catalog root: the payload table lives at <root>/<catalog>/<schema>/<table>."""
    path = server.get(name)["config"]["auto_capture_config"]["state"]["payload_table"]["path"]
    return Path(path).parents[2]


def quality_guard(state: dict[str, Any]) -> dict[str, Any]:
    return next(g for g in state["estimate"]["guards"] if g["name"].startswith("quality_"))


@contextmanager
def labelled_traffic(
    server: ServingServer, name: str, labels: Path, truth: Callable[[int], int], seed: int
) -> Iterator[list[int]]:
    """Seeded traffic (rollouts.traffic) while one writer appends each answered request's label,
    `truth(x)`, to the Delta table at `labels`, in batches as a labelling job would."""
    answered: queue.Queue[tuple[str, int] | None] = queue.Queue()

    def writer() -> None:
        done = False
        while not done:
            batch = [answered.get()]  # blocks until an answer (or the end) arrives
            while True:
                try:
                    batch.append(answered.get_nowait())
                except queue.Empty:
                    break
            done = None in batch
            rows = [item for item in batch if item is not None]
            if rows:
                frame = pd.DataFrame(
                    {"client_request_id": [c for c, _ in rows], "label": [truth(x) for _, x in rows]}
                )
                write_deltalake(str(labels), frame, mode="append")

    label_writer = threading.Thread(target=writer)
    label_writer.start()
    try:
        with traffic(
            server, name, seed, span=10**6, answered=lambda crid, x: answered.put((crid, x))
        ) as statuses:
            yield statuses
    finally:
        answered.put(None)
        label_writer.join(timeout=120)


def right(x: int) -> int:
    return 2 * x


def noisy(x: int) -> int:
    """The truth is 2x, but 20 % of the labels (by a hash of x) are off by one: neither arm can be
    right on those, so both are about 80 % accurate."""
    return 2 * x + 1 if zlib.crc32(f"noise-{x}".encode()) % 100 < 20 else 2 * x


def test_the_quality_guard_rolls_back_a_disagreeing_challenger_and_not_an_equal_one(
    start_server: Callable[..., ServingServer],
) -> None:
    server = start_server("--capture-flush-s", "0.2")
    server.create_ready("graded", graded_config(30))
    root = catalog_root(server, "graded")
    route = ROLLOUT.format("graded")

    # A labels table whose columns do not fit is refused up front, as are malformed guards.
    misnamed = root / "main" / "default" / "misnamed"
    write_deltalake(str(misnamed), pd.DataFrame({"client_request_id": ["a"], "truth": [1]}))
    for quality, words in (
        ({"labels_table": "labels"}, "<catalog>.<schema>.<table>"),
        ({"labels_table": "main.default.labels", "metric": "f1"}, "accuracy, mae"),
        ({"labels_path": "relative"}, "absolute path"),
        ({"labels_path": "/x", "metric": "mae"}, "max_error is required"),
        ({"labels_table": "main.default.labels", "max_increase": 0.1}, "use max_decrease"),
        ({"labels_table": "main.default.misnamed"}, "has no column(s) label"),
        ({"labels_table": "main.default.labels", "min_labels": "10"}, "min_labels"),
        ("main.default.labels", "must be an object"),
    ):
        refused = server.api("PUT", route, json={"to": "challenger", "guard": {"quality": quality}})
        assert refused.status_code == 400, (quality, refused.text)
        error = refused.json()
        assert error["error_code"] == "INVALID_PARAMETER_VALUE" and words in error["message"], error

    guard = {"quality": {"labels_table": "main.default.graded_labels", "poll_interval_s": 0.5}}
    labels = root / "main" / "default" / "graded_labels"
    with labelled_traffic(server, "graded", labels, right, seed=5):
        body = {"to": "challenger", "steps": [25, 50, 100], "step_duration_s": 600, "guard": guard}
        started = server.api("PUT", route, json=body)
        assert started.status_code == 200, started.text
        assert started.json()["guard"]["quality"]["metric"] == "accuracy"
        done = eventually(
            lambda: rollout(server, "graded"),
            timeout=120,
            interval=0.2,
            what="the quality guard rolling the challenger back",
            until=lambda r: r["state"] != "RUNNING",
        )
    assert done["state"] == "ROLLED_BACK" and done["step"] == 25, done
    assert done["reason"].startswith("Quality: the challenger's accuracy is below the control's"), done[
        "reason"
    ]
    assessed = quality_guard(done)
    assert assessed["name"] == "quality_accuracy_decrease" and assessed["breached"] and assessed["lower"] > 0
    assert done["requests"]["challenger"]["labeled"] > 0 and done["requests"]["control"]["labeled"] > 0
    assert done["requests"]["challenger"]["errors"] == 0  # the answers were wrong, not failed
    eventually(lambda: split(server, "graded"), until=lambda s: s == {"current": 100, "challenger": 0})
    assert done["timeline"][-1]["type"] == "ROLLOUT_ROLLED_BACK"
    assert server.delete("graded").status_code == 200

    # An equal challenger (both ~80 % accurate on noisy labels) is not rolled back: the rollout
    # holds at 50 % until each arm has 60 labelled answers, then reaches 100 %. On the way it is
    # paused and the server restarted: the labels joined so far are found again.
    server.create_ready("even", graded_config(0))
    labels = root / "main" / "default" / "even_labels"
    route = ROLLOUT.format("even")
    guard = {"quality": {"labels_path": str(labels), "min_labels": 60, "poll_interval_s": 0.5}}
    body = {"to": "challenger", "steps": [50, 100], "step_duration_s": 1, "guard": guard}
    assert server.api("PUT", route, json=body).status_code == 200
    assert server.api("POST", route + "/pause").json()["state"] == "PAUSED"  # long before 60 labels

    def labeled(state: dict[str, Any]) -> int:
        return min(arm.get("labeled", 0) for arm in state["requests"].values()) if state["requests"] else 0

    with labelled_traffic(server, "even", labels, noisy, seed=6):
        before = eventually(
            lambda: rollout(server, "even"),
            timeout=120,
            interval=0.2,
            what="labels joined for both arms while paused",
            until=lambda r: labeled(r) >= 10,
        )
    assert before["state"] == "PAUSED" and before["step"] == 50
    server.stop(signal.SIGTERM)
    server = start_server("--capture-flush-s", "0.2", state_dir=server.state_dir)
    after = rollout(server, "even")
    assert after["state"] == "PAUSED" and after["step"] == 50, after
    assert labeled(after) >= labeled(before)  # the saved counts, until the join reads the tables again
    eventually(lambda: labeled(rollout(server, "even")), until=lambda n: n >= labeled(before))

    assert server.api("POST", route + "/resume").json()["state"] == "RUNNING"
    with labelled_traffic(server, "even", labels, noisy, seed=7):
        done = eventually(
            lambda: rollout(server, "even"),
            timeout=180,
            interval=0.2,
            what="the rollout of an equal challenger finishing",
            until=lambda r: r["state"] != "RUNNING",
        )
    assert done["state"] == "SUCCEEDED", (done["reason"], done["estimate"], done["requests"])
    assert labeled(done) >= 60
    assessed = quality_guard(done)
    assert not assessed["breached"] and assessed["lower"] <= 0 <= assessed["upper"], assessed
    assert split(server, "even") == {"current": 0, "challenger": 100}
