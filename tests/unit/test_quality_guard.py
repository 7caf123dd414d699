"""The rollout's quality guard (labels joined on client_request_id): its config, its always-valid
sequences for accuracy and for a clipped mean absolute error, the join as a pure function of two
frames, and seeded simulations: equal arms looked at continuously are rolled back at most alpha of
the time, and a worse challenger is caught."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

from jupyter_serving.control.quality import score_rows
from jupyter_serving.policy.guard import (
    ArmStats,
    GuardConfig,
    QualityConfig,
    evaluate,
    mean_sequence,
)

ACCURACY = {"labels_table": "main.default.labels", "metric": "accuracy"}
MAE = {"labels_path": "/data/labels", "metric": "mae", "max_error": 10.0, "max_increase": 0.5}


def quality_only(body: dict, alpha: float = 0.05) -> GuardConfig:
    return GuardConfig.from_json(
        {"alpha": alpha, "error_rate": {"enabled": False}, "latency": {"enabled": False}, "quality": body}
    )


# --- config ------------------------------------------------------------------------------------


def test_config_parses_round_trips_and_defaults_off() -> None:
    assert GuardConfig.from_json({}).quality is None
    assert GuardConfig.from_json({"quality": {"enabled": False, "labels_table": "a.b.c"}}).quality is None
    accuracy = GuardConfig.from_json({"quality": {**ACCURACY, "max_decrease": 0.02, "min_labels": 50}})
    assert accuracy.quality == QualityConfig(
        labels_table="main.default.labels", metric="accuracy", tolerance=0.02, min_labels=50
    )
    mae = GuardConfig.from_json({"quality": MAE})
    assert mae.quality is not None and mae.quality.max_error == 10.0 and mae.quality.tolerance == 0.5
    for config in (accuracy, mae, GuardConfig()):
        assert GuardConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"metric": "accuracy"}, "exactly one of 'labels_table'"),
        ({**ACCURACY, "labels_path": "/x"}, "exactly one of"),
        ({"labels_table": "labels"}, "<catalog>.<schema>.<table>"),
        ({"labels_table": "/etc.passwd.x"}, "<catalog>.<schema>.<table>"),
        ({"labels_path": "relative/dir"}, "absolute path"),
        ({**ACCURACY, "metric": "f1"}, "accuracy, mae"),
        ({**ACCURACY, "max_increase": 0.1}, "use max_decrease"),
        ({**ACCURACY, "max_error": 3}, "'mae' only"),
        ({"labels_path": "/x", "metric": "mae"}, "max_error is required"),
        ({**MAE, "max_error": 0}, "positive"),
        ({**MAE, "max_decrease": 0.1}, "use max_increase"),
        ({**ACCURACY, "min_labels": -1}, "min_labels"),
        ({**ACCURACY, "min_labels": 1.5}, "min_labels"),
        ({**ACCURACY, "poll_interval_s": 0}, "poll_interval_s"),
        ({**ACCURACY, "label_column": ""}, "column name"),
        ({**ACCURACY, "enabled": "yes"}, "true or false"),
        ({**ACCURACY, "labels": "x"}, "Unknown guard.quality field"),
    ],
)
def test_config_rejects_bad_input_with_a_message(body: dict, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        GuardConfig.from_json({"quality": body})
    assert words in str(caught.value)


def test_quality_must_be_an_object() -> None:
    with pytest.raises(ValueError, match=r"guard\.quality must be an object"):
        GuardConfig.from_json({"quality": "main.default.labels"})


# --- sequences and verdicts --------------------------------------------------------------------


def test_mean_sequence_covers_narrows_and_stays_in_bounds() -> None:
    assert mean_sequence(0.0, 0, 10.0, 0.05) == (0.0, 10.0)
    lo, hi = mean_sequence(300.0, 100, 10.0, 0.05)  # mean 3 of values in [0, 10]
    assert 0.0 <= lo < 3.0 < hi <= 10.0
    lo2, hi2 = mean_sequence(3000.0, 1000, 10.0, 0.05)
    assert lo < lo2 < 3.0 < hi2 < hi
    lo3, hi3 = mean_sequence(3000.0, 1000, 10.0, 0.001)
    assert lo3 < lo2 and hi3 > hi2
    assert mean_sequence(0.0, 5, 1.0, 0.05)[0] == 0.0 and mean_sequence(5.0, 5, 1.0, 0.05)[1] == 1.0


def test_accuracy_drop_and_mae_increase_reasons() -> None:
    config = quality_only(ACCURACY)
    worse = evaluate(config, ArmStats(labeled=1000, quality_sum=700), ArmStats(labeled=1000, quality_sum=900))
    assert worse.breached and worse.reason is not None
    assert worse.reason.startswith("Quality: the challenger's accuracy is below the control's by at least")
    (interval,) = worse.intervals
    assert interval.name == "quality_accuracy_decrease" and interval.lower > 0.1
    assert interval.estimate == pytest.approx(0.2)
    better = evaluate(
        config, ArmStats(labeled=1000, quality_sum=950), ArmStats(labeled=1000, quality_sum=900)
    )
    assert not better.breached
    tolerant = quality_only({**ACCURACY, "max_decrease": 0.3})
    assert not evaluate(
        tolerant, ArmStats(labeled=1000, quality_sum=700), ArmStats(labeled=1000, quality_sum=900)
    ).breached

    mae = evaluate(
        quality_only(MAE), ArmStats(labeled=800, quality_sum=4000), ArmStats(labeled=800, quality_sum=800)
    )
    assert mae.breached and mae.reason is not None
    assert mae.reason.startswith("Quality: the challenger's mean absolute error exceeds")
    assert mae.intervals[0].name == "quality_mae_increase" and mae.intervals[0].estimate == pytest.approx(4.0)
    nothing = evaluate(quality_only(MAE), ArmStats(), ArmStats())  # no labels yet: no verdict either way
    assert not nothing.breached and nothing.intervals[0].estimate is None


def test_quality_takes_its_share_of_alpha() -> None:
    """Adding the quality guard splits alpha over more sequences, so the other intervals widen."""
    arms = (ArmStats(1000, 30), ArmStats(1000, 10))
    plain = evaluate(GuardConfig(latency=False), *arms).intervals[0]
    with_quality = evaluate(GuardConfig(latency=False, quality=QualityConfig(labels_path="/x")), *arms)
    assert with_quality.intervals[0].lower < plain.lower
    assert [i.name for i in with_quality.intervals] == ["error_rate_increase", "quality_accuracy_decrease"]


# --- simulations: looked at continuously --------------------------------------------------------

RUNS, LABELS, LOOK_EVERY, SHARE, ALPHA = 200, 1500, 25, 0.3, 0.05


def _margin(p: float, runs: int) -> float:
    return 3 * math.sqrt(p * (1 - p) / runs)


def _accuracy_stream(seed: int, challenger: float, control: float, labels: int = LABELS):
    """Cumulative (challenger, control) accuracy evidence every LOOK_EVERY labelled answers."""
    rng = random.Random(seed)
    n, correct = [0, 0], [0, 0]
    for i in range(1, labels + 1):
        arm = 0 if rng.random() < SHARE else 1
        n[arm] += 1
        correct[arm] += rng.random() < (challenger if arm == 0 else control)
        if i % LOOK_EVERY == 0:
            yield (
                ArmStats(labeled=n[0], quality_sum=correct[0]),
                ArmStats(labeled=n[1], quality_sum=correct[1]),
            )


def _mae_stream(seed: int, challenger_scale: float, control_scale: float, bound: float, labels: int = LABELS):
    """Absolute errors of a regression (|normal| noise, clipped at `bound`) per arm."""
    rng = random.Random(seed)
    n, total = [0, 0], [0.0, 0.0]
    for i in range(1, labels + 1):
        arm = 0 if rng.random() < SHARE else 1
        n[arm] += 1
        total[arm] += min(abs(rng.gauss(0, challenger_scale if arm == 0 else control_scale)), bound)
        if i % LOOK_EVERY == 0:
            yield ArmStats(labeled=n[0], quality_sum=total[0]), ArmStats(labeled=n[1], quality_sum=total[1])


def test_equal_arms_are_rolled_back_at_most_alpha_of_the_time() -> None:
    """Both arms 80 % accurate (or the same error distribution), the guard looked at 60 times per
    run: the share of runs ever breached stays within alpha, for either metric."""
    accuracy = quality_only(ACCURACY, ALPHA)
    mae = quality_only({**MAE, "max_increase": 0.0}, ALPHA)
    false_accuracy = false_mae = 0
    for seed in range(RUNS):
        false_accuracy += any(evaluate(accuracy, c, b).breached for c, b in _accuracy_stream(seed, 0.8, 0.8))
        false_mae += any(evaluate(mae, c, b).breached for c, b in _mae_stream(seed, 2.0, 2.0, 10.0))
    assert false_accuracy / RUNS <= ALPHA + _margin(ALPHA, RUNS)
    assert false_mae / RUNS <= ALPHA + _margin(ALPHA, RUNS)


def test_a_worse_challenger_is_caught() -> None:
    """70 % against 90 % accurate, or errors twice as large: every seeded run breaches, most
    within a few hundred labelled answers of the challenger's."""
    accuracy, mae = quality_only(ACCURACY, ALPHA), quality_only({**MAE, "max_increase": 0.0}, ALPHA)
    caught_at: list[int] = []
    for seed in range(20):
        for c, b in _accuracy_stream(seed, 0.7, 0.9, labels=4000):
            if evaluate(accuracy, c, b).breached:
                caught_at.append(c.labeled)
                break
        assert any(evaluate(mae, c, b).breached for c, b in _mae_stream(seed, 4.0, 2.0, 10.0, labels=4000))
    assert len(caught_at) == 20 and sorted(caught_at)[10] < 300


# --- the join ----------------------------------------------------------------------------------


def _rows(*rows: tuple) -> pd.DataFrame:
    """Inference-table rows as `inference_table` unpacks them."""
    columns = [
        "databricks_request_id",
        "client_request_id",
        "status_code",
        "served_entity_name",
        "row_index",
        "prediction",
        "shadow",
    ]
    return pd.DataFrame.from_records(rows, columns=columns)


def test_the_join_scores_live_successful_labelled_rows_per_arm() -> None:
    rows = _rows(
        ("r1", "c1", 200, "challenger", 0, 1, False),
        ("r2", "c2", 200, "challenger", 0, 0, False),
        ("r2", "c2", 200, "current", 0, 1, True),  # the shadow copy of r2: not a live answer
        ("r3", "c3", 200, "current", 0, 1, False),
        ("r4", "c4", 500, "current", 0, None, False),  # an error: the error-rate guard's business
        ("r5", None, 200, "current", 0, 1, False),  # no client_request_id: nothing to join
        ("r6", "c6", 200, "current", 0, 2, False),  # a batched request: two rows, one label
        ("r6", "c6", 200, "current", 1, 2, False),
        ("r7", "c7", 200, "other", 0, 1, False),  # an entity outside the rollout
    )
    labels = pd.DataFrame(
        {
            "client_request_id": ["c1", "c2", "c3", "c3", "c4", "c6", "c7"],
            "label": ["1", 1, 0, 1.0, 1, 2, 1],  # c3's second label replaces its first
        }
    )
    config = QualityConfig(labels_path="/x")
    found = score_rows(rows, labels, config, "challenger", ["current"])
    assert (found.challenger.labeled, found.challenger.total) == (2, 1.0)  # c1 right ("1" == 1), c2 wrong
    assert (found.control.labeled, found.control.total) == (1, 1.0)  # c3 right with its last label
    assert found.message is None

    # With row_index, each row of a batched request gets its own label.
    by_row = labels.iloc[[5]].assign(row_index=[1])
    found = score_rows(rows, by_row, config, "challenger", ["current"])
    assert (found.control.labeled, found.control.total) == (1, 1.0)


def test_the_join_clips_absolute_errors_and_says_what_is_missing() -> None:
    rows = _rows(
        ("r1", "c1", 200, "challenger", 0, 3.0, False),
        ("r2", "c2", 200, "challenger", 0, 100.0, False),
        ("r3", "c3", 200, "current", 0, "n/a", False),
        ("r4", "c4", 200, "current", 0, 1.0, False),
    )
    labels = pd.DataFrame({"client_request_id": ["c1", "c2", "c3", "c4"], "y": [1.0, 0.0, 5.0, "x"]})
    config = QualityConfig(labels_path="/x", label_column="y", metric="mae", max_error=10.0)
    found = score_rows(rows, labels, config, "challenger", ["current"])
    assert (found.challenger.labeled, found.challenger.total) == (2, 12.0)  # 2 + min(100, 10)
    assert (found.control.labeled, found.control.total) == (1, 10.0)  # "n/a" scored as the bound; "x" skipped
    missing = score_rows(
        rows, labels, QualityConfig(labels_path="/x", prediction_column="p"), "challenger", []
    )
    assert missing.message is not None and "'p'" in missing.message and "prediction" in missing.message
