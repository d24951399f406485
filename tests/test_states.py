"""The request state machine: every state × every event, table-driven. Pure."""

from __future__ import annotations

import pytest

from bot.core.model import State
from bot.core.states import Event, destination, next_state, sources

P, A, X = State.PENDING, State.APPROVED, State.EXECUTING
S, F, U = State.SUCCEEDED, State.FAILED, State.UNKNOWN
R, C, E = State.REJECTED, State.CANCELLED, State.EXPIRED

# rows: state; columns: claim, reject, cancel, expire, succeed, fail, lose, correct, wait,
# reopen. `approved`: it has its approvals and waits for its time (a schedule, a soak, a window).
EXPECTED = {
    P: (X, R, C, E, None, None, None, None, A, None),
    A: (X, R, C, E, None, None, None, None, A, P),
    X: (None, None, None, None, S, F, U, None, None, None),
    S: (None,) * 10,
    F: (None,) * 7 + (S, None, None),  # the provider's late "done" overrules a recovery
    U: (None,) * 7 + (S, None, None),
    R: (None,) * 10,
    C: (None,) * 10,
    E: (None,) * 10,
}
EVENTS = (
    Event.CLAIM,
    Event.REJECT,
    Event.CANCEL,
    Event.EXPIRE,
    Event.SUCCEED,
    Event.FAIL,
    Event.LOSE,
    Event.CORRECT,
    Event.WAIT,
    Event.REOPEN,
)
CASES = [
    (state, event, row[i]) for state, row in EXPECTED.items() for i, event in enumerate(EVENTS)
]


def test_the_table_covers_every_state_and_event() -> None:
    assert set(EXPECTED) == set(State) and set(EVENTS) == set(Event)


@pytest.mark.parametrize(
    ("state", "event", "expected"), CASES, ids=[f"{s}-{e}" for s, e, _ in CASES]
)
def test_transition(state: State, event: Event, expected: State | None) -> None:
    assert next_state(state, event) == expected


def test_final_states_are_final_and_only_open_states_show_buttons() -> None:
    for state in State:
        # A correction fixes the record of an ended request; it is not a step of its life.
        leaves = [e for e in Event if e is not Event.CORRECT and next_state(state, e)]
        assert state.is_final == (not leaves)
        assert state.is_open == (state in (P, A))


@pytest.mark.parametrize("event", list(Event))
def test_each_compare_and_set_is_derived_from_the_table(event: Event) -> None:
    assert sources(event) == tuple(s for s in State if next_state(s, event) is not None)
    assert all(next_state(s, event) == destination(event) for s in sources(event))
