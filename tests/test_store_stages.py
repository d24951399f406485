"""What stages and time keep in the store, on both backends (a SQLite file and a real
PostgreSQL database): what a request waits for and when it is due, claimed by one process at a
time; the bot's record of each stage; the promotions it plans to ask for itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.core.model import NewRequest, State, notice_key
from bot.core.states import Event, destination, sources
from bot.core.timing import StageSeen, Timing
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore

Factory = Callable[[], AnyStore]
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ACTION = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")
SOAKING = Timing(
    soak_place="staging",
    soak_thing="znyx:p:staging",
    soak_key="b1",
    soak_shown="v1",
    soak_since=NOW,
    soak_until=NOW + timedelta(hours=2),
    runs_at=NOW + timedelta(hours=2),
)


def _create(
    store: AnyStore, timing: Timing | None = None, due: datetime | None = None, project: str = "p"
) -> int:
    new = NewRequest(
        ACTION.model_copy(update={"project_id": project}),
        requester="UALICE",
        channel="C1",
        preview=None,
        created_at=NOW,
        expires_at=NOW + timedelta(hours=24),
        timing=timing,
        due_at=due,
    )
    return store.create_request(new).id


def test_what_a_request_waits_for_is_kept_with_it(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _create(store, SOAKING, NOW + timedelta(hours=2))
    request = store_factory().get(request_id)
    assert request is not None and request.timing == SOAKING
    assert request.due_at == NOW + timedelta(hours=2)
    version = request.msg_version
    held = SOAKING.model_copy(update={"held": "locked"})
    told = [("UALICE", "held:1")]
    assert store.set_timing(request_id, held, None, at=NOW, notices=told)
    again = store.get(request_id)
    assert again is not None and again.timing == held and again.due_at is None
    assert again.msg_version == version + 1  # its message must show it
    assert [n.key for n in store.notices_due(NOW, 10)] == [
        notice_key(request_id, "UALICE", "held:1")
    ]
    assert store.transition(request_id, [State.PENDING], State.CANCELLED, at=NOW)
    assert not store.set_timing(request_id, SOAKING, NOW, at=NOW)  # no longer open


def test_waiting_moves_to_approved_with_its_time_in_one_compare_and_set(
    store_factory: Factory,
) -> None:
    store = store_factory()
    request_id = _create(store)
    due, expires = NOW + timedelta(hours=2), NOW + timedelta(hours=26)
    kwargs = {"timing": SOAKING, "due_at": due, "expires_at": expires, "at": NOW}
    assert store.wait(request_id, sources(Event.WAIT), destination(Event.WAIT), **kwargs)
    request = store_factory().get(request_id)
    assert request is not None and request.state is State.APPROVED
    assert (request.due_at, request.expires_at, request.timing) == (due, expires, SOAKING)
    assert store.transition(request_id, [State.APPROVED], State.CANCELLED, at=NOW)
    assert not store.wait(request_id, sources(Event.WAIT), State.APPROVED, **kwargs)


def test_due_requests_are_claimed_by_one_process(store_factory: Factory) -> None:
    one, two = store_factory(), store_factory()
    early = _create(one, SOAKING, NOW + timedelta(hours=1), "p1")
    later = _create(one, SOAKING, NOW + timedelta(hours=2), "p2")
    _create(one, project="p3")  # waits for nothing
    assert one.due(NOW, 10) == []
    assert [r.id for r in two.due(NOW + timedelta(hours=3), 10)] == [early, later]
    [first] = two.due(NOW + timedelta(hours=1), 10)
    assert first.id == early and first.due_at is not None
    until = NOW + timedelta(hours=1, minutes=1)
    assert one.claim_due(early, first.due_at, until)
    assert not two.claim_due(early, first.due_at, until)  # the other process lost the race
    assert two.due(NOW + timedelta(hours=1), 10) == []  # held while it is looked at
    assert [r.id for r in two.due(until, 10)] == [early]  # due again once the claim lapses


def test_the_record_of_a_stage_is_a_compare_and_set(store_factory: Factory) -> None:
    one, two = store_factory(), store_factory()
    first = StageSeen("b1", NOW, NOW)
    assert one.stage_seen("znyx:p:staging") is None
    assert one.stage_see("znyx:p:staging", None, first)
    assert not two.stage_see("znyx:p:staging", None, StageSeen("b9", NOW, NOW))
    later = StageSeen("b2", NOW + timedelta(hours=1), NOW + timedelta(hours=1))
    assert two.stage_see("znyx:p:staging", "b1", later)
    assert not one.stage_see("znyx:p:staging", "b1", first)  # it moved on meanwhile
    assert one.stage_seen("znyx:p:staging") == later


def test_a_promotion_is_planned_once_per_thing_and_claimed_once(store_factory: Factory) -> None:
    one, two = store_factory(), store_factory()
    due = NOW + timedelta(hours=2)
    assert one.auto_plan("znyx:guardrails:prod", "b1", due)
    assert not two.auto_plan("znyx:guardrails:prod", "b1", due + timedelta(hours=1))
    assert one.auto_due(NOW, 10) == []
    [plan] = two.auto_due(due, 10)
    assert (plan.target, plan.key, plan.due_at) == ("znyx:guardrails:prod", "b1", due)
    retry = due + timedelta(minutes=1)
    assert one.auto_claim(plan.target, plan.key, plan.due_at, retry)
    assert not two.auto_claim(plan.target, plan.key, plan.due_at, retry)
    assert two.auto_due(due, 10) == []
    assert [p.key for p in two.auto_due(retry, 10)] == ["b1"]  # a claim that lapsed: again
    one.auto_done(plan.target, plan.key)
    assert two.auto_due(retry + timedelta(days=1), 10) == []
    assert not one.auto_plan("znyx:guardrails:prod", "b1", due)  # done for b1: never again
    assert one.auto_plan("znyx:guardrails:prod", "b2", retry)  # the source runs another one
    assert [p.key for p in two.auto_due(retry, 10)] == ["b2"]
