"""The two state machines: every allowed transition works, every other one raises."""

from __future__ import annotations

import pytest

from jupyter_serving.model.states import (
    ABORTED,
    CREATING,
    DEPLOYMENT_TRANSITIONS,
    FAILED,
    IN_PROGRESS,
    NOT_UPDATING,
    READY,
    RECOVERING,
    UPDATE_CANCELED,
    UPDATE_FAILED,
    UPDATE_TRANSITIONS,
    ConfigUpdate,
    DeploymentState,
    IllegalTransition,
)


@pytest.mark.parametrize(
    ("machine", "table"), [(ConfigUpdate, UPDATE_TRANSITIONS), (DeploymentState, DEPLOYMENT_TRANSITIONS)]
)
def test_exactly_the_listed_transitions_are_allowed(machine, table) -> None:
    for start, allowed in table.items():
        for target in table:
            m = machine(start)
            if target in allowed:
                m.to(target, "why")
                assert (m.state, m.message) == (target, "why")
            else:
                with pytest.raises(IllegalTransition):
                    m.to(target)
                assert m.state == start


def test_an_update_ends_once() -> None:
    update = ConfigUpdate()
    update.begin()
    with pytest.raises(IllegalTransition):
        update.begin()  # a second update on top of a running one
    update.fail("model broken")
    assert (update.state, update.message) == (UPDATE_FAILED, "model broken")
    with pytest.raises(IllegalTransition):
        update.cancel()  # a failed update cannot also be cancelled
    update.begin()
    update.cancel()
    assert update.state == UPDATE_CANCELED
    update.begin()
    update.succeed()
    assert (update.state, update.in_progress) == (NOT_UPDATING, False)
    assert ConfigUpdate(IN_PROGRESS).in_progress


def test_a_failed_deployment_never_comes_back() -> None:
    state = DeploymentState()
    assert state.state == CREATING
    state.to(READY)
    state.to(RECOVERING, "replacing a replica")
    state.to(FAILED, "crashed 5 times")
    assert state.final
    for target in (READY, RECOVERING, ABORTED, CREATING):
        with pytest.raises(IllegalTransition):
            state.to(target)
    state.note("cold start")  # a final state keeps its reason
    assert state.message == "crashed 5 times"


def test_unknown_states_are_refused() -> None:
    with pytest.raises(IllegalTransition):
        ConfigUpdate("SOMETHING")
