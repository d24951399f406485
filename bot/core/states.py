"""The request state machine as one table. Pure: the workflow derives every compare-and-set
(which states an event may leave from, and where it goes) from it."""

from __future__ import annotations

from enum import StrEnum

from bot.core.model import State


class Event(StrEnum):
    CLAIM = "claim"  # enough approvals (or none needed): take it for execution, once
    REJECT = "reject"
    CANCEL = "cancel"
    EXPIRE = "expire"
    SUCCEED = "succeed"
    FAIL = "fail"
    LOSE = "lose"  # the provider may or may not have acted: `unknown`
    CORRECT = "correct"  # the provider's own late answer overrules a recovery's reading
    # It has its approvals and waits for its time (a schedule, a soak, a window): `approved`,
    # with when it runs next recorded in the same compare-and-set (bot/core/waits.py).
    WAIT = "wait"
    REOPEN = "reopen"  # when its time came its approvals no longer met the policy: pending again


_OPEN = (State.PENDING, State.APPROVED)

TABLE: dict[tuple[State, Event], State] = {
    **{(s, Event.CLAIM): State.EXECUTING for s in _OPEN},
    **{(s, Event.REJECT): State.REJECTED for s in _OPEN},
    **{(s, Event.CANCEL): State.CANCELLED for s in _OPEN},
    **{(s, Event.EXPIRE): State.EXPIRED for s in _OPEN},
    **{(s, Event.WAIT): State.APPROVED for s in _OPEN},
    (State.APPROVED, Event.REOPEN): State.PENDING,
    (State.EXECUTING, Event.SUCCEED): State.SUCCEEDED,
    (State.EXECUTING, Event.FAIL): State.FAILED,
    (State.EXECUTING, Event.LOSE): State.UNKNOWN,
    (State.FAILED, Event.CORRECT): State.SUCCEEDED,
    (State.UNKNOWN, Event.CORRECT): State.SUCCEEDED,
}

OUTCOME_EVENT = {"succeeded": Event.SUCCEED, "failed": Event.FAIL, "unknown": Event.LOSE}


def next_state(state: State, event: Event) -> State | None:
    """Where `event` takes a request in `state`, or None if it does not apply there."""
    return TABLE.get((state, event))


def sources(event: Event) -> tuple[State, ...]:
    """The states `event` may leave from: the `from_states` of its compare-and-set."""
    return tuple(s for s in State if (s, event) in TABLE)


def destination(event: Event) -> State:
    return next(to for (_, e), to in TABLE.items() if e is event)
