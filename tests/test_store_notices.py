"""What decisions and direct messages keep in the store, on both backends (a SQLite file and a
real PostgreSQL database): reasons and comments; notices owed in the same transaction as the
change they tell of, and only if it happened; each claimed by one process at a time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.core.model import NewRequest, State, notice_key
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore

Factory = Callable[[], AnyStore]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ACTION = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")
OPEN = (State.PENDING, State.APPROVED)


def _create(store: AnyStore, *notices: tuple[str, str]) -> int:
    new = NewRequest(
        ACTION,
        requester="UALICE",
        channel="C1",
        preview=None,
        created_at=NOW,
        expires_at=NOW + timedelta(hours=24),
        notices=notices,
    )
    return store.create_request(new).id


def test_reasons_and_comments_are_kept(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _create(store)
    assert store.add_approval(request_id, "UBOB", NOW, comment="looks good")
    assert store.add_approval(request_id, "UDAVE", NOW + timedelta(seconds=1))
    by = "UCAROL"
    assert store.transition(request_id, OPEN, State.REJECTED, at=NOW, by=by, reason="no <x>")
    request = store_factory().get(request_id)  # as another process reads it
    assert request is not None and request.reason == "no <x>" and request.decided_by == by
    assert [(a.user, a.comment) for a in request.approvals] == [
        ("UBOB", "looks good"),
        ("UDAVE", None),
    ]


def test_notices_are_owed_only_with_the_change_they_tell_of(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _create(store, ("UBOB", "waiting"), ("UDAVE", "waiting"))
    assert [n.key for n in store.notices_due(NOW, 10)] == [
        notice_key(request_id, "UBOB", "waiting"),
        notice_key(request_id, "UDAVE", "waiting"),
    ]
    told = [("UALICE", "approved:UBOB")]
    assert store.add_approval(request_id, "UBOB", NOW, notices=told)
    assert not store.add_approval(request_id, "UBOB", NOW, notices=[("UALICE", "again")])
    rejected = [("UALICE", "rejected")]
    assert store.transition(request_id, OPEN, State.REJECTED, at=NOW, notices=rejected)
    assert not store.transition(request_id, OPEN, State.CANCELLED, at=NOW, notices=[("UA", "x")])
    events = [n.event for n in store_factory().notices_due(NOW, 10)]
    assert events == ["waiting", "waiting", "approved:UBOB", "rejected"]
    assert store.notice_counts() == {"owed": 4}
    assert len(store.notices_due(NOW, 2)) == 2  # a bounded batch


def test_a_notice_is_claimed_by_one_process_and_looked_for_when_unclear(
    store_factory: Factory,
) -> None:
    one, two = store_factory(), store_factory()
    request_id = _create(one, ("UBOB", "waiting"), ("UDAVE", "waiting"), ("UERIN", "waiting"))
    bob, dave, erin = (notice_key(request_id, u, "waiting") for u in ("UBOB", "UDAVE", "UERIN"))
    held = NOW + timedelta(minutes=2)
    assert one.claim_notice(bob, NOW, held) == "post"
    assert two.claim_notice(bob, NOW, held) is None  # one process at a time
    assert [n.key for n in two.notices_due(NOW, 10)] == [dave, erin]
    later = held + timedelta(seconds=1)  # `one` stopped while sending: it may have gone out
    assert [n.key for n in two.notices_due(later, 10)] == [bob, dave, erin]
    assert two.claim_notice(bob, later, later + timedelta(minutes=2)) == "check"
    two.notice_sent(bob, later)
    assert two.claim_notice(bob, later + timedelta(hours=1), later) is None

    assert one.claim_notice(dave, NOW, held) == "post"
    look = NOW + timedelta(seconds=30)
    one.notice_uncertain(dave, held, look)  # the answer was lost
    assert dave not in [n.key for n in one.notices_due(NOW, 10)]
    assert one.claim_notice(dave, look, look + timedelta(minutes=2)) == "check"

    assert one.claim_notice(erin, NOW, held) == "post"
    assert one.notice_retry(erin, held, lambda attempts: NOW + timedelta(seconds=attempts * 10))
    assert two.notice_retry(erin, held, lambda a: NOW) == 0  # no longer anyone's claim
    assert erin not in [n.key for n in one.notices_due(NOW + timedelta(seconds=5), 10)]
    [due] = [n for n in one.notices_due(NOW + timedelta(seconds=10), 10) if n.key == erin]
    assert due.attempts == 1
    one.notice_dropped(erin, NOW, "they turned direct messages off")
    assert one.claim_notice(erin, NOW + timedelta(hours=1), held) is None
    assert one.notice_counts() == {"sent": 1, "owed": 1, "dropped": 1}


def test_who_wants_no_direct_messages_is_kept(store_factory: Factory) -> None:
    store = store_factory()
    assert store.notify_enabled("UBOB")  # on by default
    store.set_notify("UBOB", False, NOW)
    assert not store_factory().notify_enabled("UBOB")
    store.set_notify("UBOB", True, NOW + timedelta(seconds=1))
    assert store.notify_enabled("UBOB") and store.notify_enabled("UDAVE")
