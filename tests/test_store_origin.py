"""A request is made at most once per origin (the acknowledged work that asks for it, a
Slack command's inbox key), on both backends: decided by the INSERT itself, so a command done
again after its process was killed, or by two processes at once, never asks twice."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.model import NewRequest, Preview, State
from bot.core.ports import AskedBefore
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore
from tests.conftest import together

Factory = Callable[[], AnyStore]

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ACTION = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")


def _new(origin: str | None, at: datetime = NOW) -> NewRequest:
    return NewRequest(
        ACTION,
        requester="UALICE",
        channel="C1",
        preview=Preview(),
        created_at=at,
        expires_at=at + timedelta(hours=24),
        notices=(("UBOB", "waiting"),),
        origin=origin,
    )


def test_work_done_again_gets_the_request_it_made_even_once_it_ended(
    store_factory: Factory,
) -> None:
    store = store_factory()
    first = store.create_request(_new("trigger.1")).id
    assert store.made_by("trigger.1").id == first  # type: ignore[union-attr]
    assert store.made_by("trigger.2") is None
    other = store_factory()  # another process, doing the same command again
    with pytest.raises(AskedBefore) as caught:  # still open: not "another request is open"
        other.create_request(_new("trigger.1", NOW + timedelta(minutes=1)))
    assert caught.value.request_id == first
    assert store.transition(first, [State.PENDING], State.REJECTED, at=NOW, by="UBOB")
    with pytest.raises(AskedBefore) as caught:  # rejected: the thing is free, still not again
        other.create_request(_new("trigger.1", NOW + timedelta(minutes=2)))
    assert caught.value.request_id == first
    assert [r.id for r in other.in_states(list(State))] == [first]
    # Another command for the same thing is a new request; requests of no origin (the shell,
    # the bot's own) are never taken for one another.
    second = other.create_request(_new("trigger.2")).id
    assert second == first + 1
    assert other.transition(second, [State.PENDING], State.CANCELLED, at=NOW)
    third = other.create_request(_new(None)).id
    assert other.transition(third, [State.PENDING], State.CANCELLED, at=NOW)
    assert other.create_request(_new(None)).id == third + 1
    assert other.made_by("trigger.2").id == second  # type: ignore[union-attr]


def test_two_processes_doing_the_same_command_at_once_make_one_request(
    store_factory: Factory,
) -> None:
    count = 4

    def ask(barrier: threading.Barrier, _: int) -> tuple[str, int]:
        store = store_factory()  # each process its own connection, in its own thread
        barrier.wait()
        try:
            return "made", store.create_request(_new("trigger.race")).id
        except AskedBefore as exc:
            return "asked before", exc.request_id

    answers, problems = together(count, ask)
    made = [request_id for kind, request_id in answers if kind == "made"]
    asked_before = [request_id for kind, request_id in answers if kind == "asked before"]
    assert problems == []
    assert len(made) == 1 and asked_before == made * (count - 1)
    store = store_factory()
    assert [r.id for r in store.in_states(list(State))] == made
    # What is owed with the request was recorded once: the others recorded nothing.
    assert len(store.notices_due(NOW + timedelta(hours=1), 10)) == 1
