"""The store's part for the truth between promotions, on both backends (each test runs on a
SQLite file and on a real PostgreSQL): reads of previews taken once, what moved kept while a
request is open, webhook deliveries recorded once, what was last seen swapped once, notices
claimed once, however many processes ask at the same moment."""

from __future__ import annotations

import threading
from datetime import timedelta

from bot.core.model import Drift, State
from tests.conftest import together
from tests.test_store import NOW, Factory, _create

DRIFT = Drift(provider="Znyx", what="prod's active bundle", then="v1", now="v2", by="ci")


def test_a_preview_read_is_taken_once_and_what_moved_is_kept_while_open(
    store_factory: Factory,
) -> None:
    first = store_factory()
    request_id = _create(first)
    [due] = first.drift_due(NOW, 10)
    assert (due.request_id, due.provider, due.next_at) == (request_id, "znyx", None)
    assert due.created_at == NOW

    def take(barrier: threading.Barrier, i: int) -> bool:
        store = store_factory()  # a process of its own
        barrier.wait()
        return store.drift_schedule(request_id, None, NOW + timedelta(minutes=5))

    taken, problems = together(4, take)
    assert problems == [] and sorted(taken) == [False, False, False, True]
    assert first.drift_due(NOW, 10) == []  # not due before its time
    [due] = first.drift_due(NOW + timedelta(minutes=5), 10)
    assert due.next_at == NOW + timedelta(minutes=5)
    assert first.drift_schedule(request_id, due.next_at, NOW + timedelta(minutes=10))
    assert not first.drift_schedule(request_id, due.next_at, NOW + timedelta(minutes=15))

    version = first.get(request_id).msg_version  # type: ignore[union-attr]
    assert first.set_drift(request_id, DRIFT)
    assert not first.set_drift(request_id, DRIFT)  # the same finding: nothing to redraw
    request = first.get(request_id)
    assert request is not None and request.drift == DRIFT
    assert request.msg_version == version + 1  # its message must show it
    assert first.set_drift(request_id, None) and first.get(request_id).drift is None  # type: ignore[union-attr]
    first.transition(request_id, [State.PENDING], State.CANCELLED, at=NOW)
    assert not first.set_drift(request_id, DRIFT)  # an ended request keeps what it showed
    assert first.drift_due(NOW + timedelta(days=1), 10) == []
    assert [r.id for r in first.on_thing(request.action.thing, [State.CANCELLED])] == [request_id]
    assert first.on_thing(request.action.thing, [State.UNKNOWN]) == []


def test_a_delivery_is_recorded_once_worked_on_once_and_forgotten(store_factory: Factory) -> None:
    store = store_factory()
    hint = {"event": "bundle.promoted", "envs": ["prod"], "changed": ["prod"], "project": None}
    assert store.webhook_put("d1", "znyx", hint, NOW)
    assert not store_factory().webhook_put("d1", "znyx", hint, NOW)  # the same body again
    assert store.webhooks_waiting(NOW) == ["d1"]

    def claim(barrier: threading.Barrier, i: int) -> bool:
        other = store_factory()
        barrier.wait()
        return other.webhook_claim("d1", f"p{i}", NOW, NOW + timedelta(seconds=90)) is not None

    claimed, problems = together(4, claim)
    assert problems == [] and sorted(claimed) == [False, False, False, True]
    assert store.webhooks_waiting(NOW) == []  # held
    holder = next(f"p{i}" for i in range(4) if store.webhook_renew("d1", f"p{i}", NOW))
    assert store.webhooks_waiting(NOW + timedelta(seconds=1)) == ["d1"]  # left for a retry
    item = store.webhook_claim("d1", holder, NOW + timedelta(seconds=1), NOW + timedelta(minutes=2))
    assert item is not None and item["hint"] == hint and item["attempts"] == 2
    store.webhook_done("d1", NOW + timedelta(seconds=2))
    assert store.webhooks_waiting(NOW + timedelta(hours=1)) == []
    assert store.forget_webhooks(NOW) == 0  # done after then: still remembered
    assert store.forget_webhooks(NOW + timedelta(days=2)) == 1
    assert store.webhook_put("d1", "znyx", hint, NOW + timedelta(days=2))  # new again


def test_what_was_last_seen_is_swapped_once_and_notes_are_posted_once(
    store_factory: Factory,
) -> None:
    store = store_factory()
    assert store.sighting("znyx:p:prod") is None

    def first_look(barrier: threading.Barrier, i: int) -> bool:
        other = store_factory()
        barrier.wait()
        return other.sighting_swap("znyx:p:prod", None, "b1", "v1", NOW)

    looked, problems = together(4, first_look)
    assert problems == [] and sorted(looked) == [False, False, False, True]
    seen = store.sighting("znyx:p:prod")
    assert seen is not None and (seen.key, seen.shown, seen.at) == ("b1", "v1", NOW)
    assert not store.sighting_swap("znyx:p:prod", "b0", "b2", "v2", NOW)  # not what is there
    assert store.sighting_swap("znyx:p:prod", "b1", "b2", "v2", NOW + timedelta(seconds=1))
    assert store.sighting("znyx:p:prod").key == "b2"  # type: ignore[union-attr]

    key = "outside:znyx:p:prod:b1:b2"
    assert store.note_put(key, "CFEED", None, "prod changed", NOW)
    assert not store_factory().note_put(key, "CFEED", None, "prod changed", NOW)  # told once
    assert store.notes_due(NOW, 10) == [key]

    def take(barrier: threading.Barrier, i: int) -> bool:
        other = store_factory()
        barrier.wait()
        return other.note_take(key, NOW, NOW + timedelta(minutes=1)) is not None

    taken, problems = together(4, take)
    assert problems == [] and sorted(taken) == [False, False, False, True]
    assert store.notes_due(NOW, 10) == []  # being posted
    store.note_later(key, NOW + timedelta(seconds=2))  # Slack failed: again in a moment
    assert store.notes_due(NOW + timedelta(seconds=1), 10) == []
    note = store.note_take(key, NOW + timedelta(seconds=2), NOW + timedelta(minutes=1))
    assert note is not None and note["attempts"] == 2
    assert (note["channel"], note["thread_ts"], note["text"]) == (
        "CFEED",
        None,
        "prod changed",
    )
    store.note_done(key, NOW + timedelta(seconds=3))
    assert store.notes_due(NOW + timedelta(days=1), 10) == []
    assert store.note_take(key, NOW + timedelta(days=1), NOW + timedelta(days=2)) is None
    assert store.forget_notes(NOW + timedelta(days=31)) == 1
