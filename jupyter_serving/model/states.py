"""The two state machines of serving: an endpoint's config update and a served entity's deployment.

Each is one small object that changes only along its allowed transitions and raises
`IllegalTransition` otherwise, so a code path that would, say, bring a crash-looped entity back
to READY or start a second update on top of a running one fails loudly in tests instead of
showing users a state that means nothing. States and names are Databricks' own.
"""

from __future__ import annotations

import time

# An endpoint's config update (state.config_update on the wire).
NOT_UPDATING = "NOT_UPDATING"
IN_PROGRESS = "IN_PROGRESS"
UPDATE_FAILED = "UPDATE_FAILED"
UPDATE_CANCELED = "UPDATE_CANCELED"

# A served entity's deployment (served_entities[].state.deployment on the wire).
CREATING = "DEPLOYMENT_CREATING"
READY = "DEPLOYMENT_READY"
RECOVERING = "DEPLOYMENT_RECOVERING"
FAILED = "DEPLOYMENT_FAILED"
ABORTED = "DEPLOYMENT_ABORTED"

UPDATE_TRANSITIONS: dict[str, frozenset[str]] = {
    NOT_UPDATING: frozenset({IN_PROGRESS}),
    IN_PROGRESS: frozenset({NOT_UPDATING, UPDATE_FAILED, UPDATE_CANCELED}),
    UPDATE_FAILED: frozenset({IN_PROGRESS}),
    UPDATE_CANCELED: frozenset({IN_PROGRESS}),
}

# FAILED and ABORTED are final: only a new config (a new deployment) serves that entity again.
DEPLOYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    CREATING: frozenset({READY, FAILED, ABORTED}),
    READY: frozenset({READY, RECOVERING, FAILED, ABORTED}),
    RECOVERING: frozenset({READY, RECOVERING, FAILED, ABORTED}),
    FAILED: frozenset(),
    ABORTED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A state change its machine does not allow: a bug in the caller, never a user error."""


class _Machine:
    transitions: dict[str, frozenset[str]]

    def __init__(self, state: str, message: str = "") -> None:
        if state not in self.transitions:
            raise IllegalTransition(f"{type(self).__name__} has no state {state!r}")
        self.state = state
        self.message = message
        # When the last transition happened (epoch ms): events carry this, not the moment the
        # observer sampled the state a few seconds later. None until a transition is made here.
        self.changed_ms: int | None = None

    def to(self, state: str, message: str = "") -> None:
        if state not in self.transitions[self.state]:
            raise IllegalTransition(f"{type(self).__name__}: {self.state} -> {state} is not allowed")
        self.state, self.message = state, message
        self.changed_ms = _now_ms()

    def can(self, state: str) -> bool:
        return state in self.transitions[self.state]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.state!r}, {self.message!r})"


class ConfigUpdate(_Machine):
    """An endpoint's config-update state: one update at a time, each ending exactly once."""

    transitions = UPDATE_TRANSITIONS

    def __init__(self, state: str = NOT_UPDATING, message: str = "") -> None:
        super().__init__(state, message)
        self.started_ms: int | None = None  # when the latest update began (its UPDATE_STARTED time)

    @property
    def in_progress(self) -> bool:
        return self.state == IN_PROGRESS

    def begin(self) -> None:
        self.to(IN_PROGRESS)
        self.started_ms = self.changed_ms

    def succeed(self) -> None:
        self.to(NOT_UPDATING)

    def fail(self, message: str) -> None:
        self.to(UPDATE_FAILED, message)

    def cancel(self, message: str = "The config update was canceled.") -> None:
        self.to(UPDATE_CANCELED, message)


class DeploymentState(_Machine):
    """A served entity's deployment state and the message shown with it."""

    transitions = DEPLOYMENT_TRANSITIONS

    def __init__(self, state: str = CREATING, message: str = "Creating the served entity.") -> None:
        super().__init__(state, message)

    @property
    def final(self) -> bool:
        return not self.transitions[self.state]

    def note(self, message: str) -> None:
        """Change the message alone (cold start, capacity caps); a final state keeps its reason."""
        if not self.final:
            self.message = message


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
