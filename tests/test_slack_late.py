"""Slack calls that land after the bot stopped waiting for them (its timeout) must not leave
a message wrong for good: the message is looked at again once the late call can no longer
land, and brought back to the stored version; a post the bot gave up on is found then and
shows how its request ended. The fake Slack carries such a call out, and answers, only after
the bot's timeout (`late`); real HTTP throughout, the bot's clock moved past the settle time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.delivery import MESSAGE_SETTLE
from bot.core.model import NewRequest, Preview, State
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore
from bot.transports.slack.blocks import APPROVE, REJECT
from tests.conftest import ALICE, BOB, World, block_text, buttons

Factory = Callable[[], AnyStore]
LATE = 1.0  # seconds before the fake Slack carries the call out: after the bot's timeout


@pytest.fixture
def slack_timeout() -> float:
    return 0.3


def _shown(world: World, request_id: int) -> dict:
    [message] = world.slack.release_messages(request_id)
    return message


async def _settled(world: World) -> None:
    """Past the settle time, the deliver job's run (`serve` runs it every 2 s)."""
    world.clock.at = world.clock() + MESSAGE_SETTLE + timedelta(seconds=1)
    await world.bot.workflow.deliver_due()


async def test_a_late_promoting_now_update_is_brought_back_to_the_outcome(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    world.slack.fail("chat.update", late=LATE, times=1)  # the "Promoting now…" update
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    await world.slack.wait_for(lambda s: bool(s.calls_to("late chat.update")))
    # The late update landed after the final one: Slack shows the promotion as still running.
    assert "Promoting now" in block_text(_shown(world, 1)["blocks"])
    assert world.bot.store.get(1).state is State.SUCCEEDED  # type: ignore[union-attr]

    await _settled(world)
    text = block_text(_shown(world, 1)["blocks"])
    assert "Promoted" in text and "Promoting now" not in text
    updates = len(world.slack.calls_to("chat.update"))
    await _settled(world)  # looked at once: nothing more is owed
    assert len(world.slack.calls_to("chat.update")) == updates
    assert len(world.thread()) == 1


async def test_a_release_message_posted_after_the_bot_gave_up_shows_that_it_ended(
    world: World,
) -> None:
    world.slack.fail("chat.postMessage", late=LATE, times=1)
    response = await world.sender.command("znyx guardrails staging", ALICE)
    assert response.status_code == 200
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert world.told()[0].startswith("I couldn't post the release message here (Slack did not")
    await world.slack.wait_for(lambda s: bool(s.calls_to("late chat.postMessage")))
    # Slack made the post after all: a message with live buttons for a cancelled request.
    assert {APPROVE, REJECT} <= {a for a, _ in buttons(_shown(world, 1)["blocks"])}
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.CANCELLED
    assert request.message_ts is None

    await _settled(world)
    message = _shown(world, 1)
    assert [a for a, _ in buttons(message["blocks"])] == []
    text = block_text(message["blocks"])
    assert "Cancelled" in text and "the release message could not be posted" in text
    assert world.bot.store.get(1).message_ts == message["ts"]  # type: ignore[union-attr]
    assert len(world.posted()) == 1  # found, never posted again
    assert world.znyx.promote_calls == []


async def test_a_timed_out_post_that_never_landed_is_looked_for_once(world: World) -> None:
    world.slack.fail("chat.postMessage", hang=LATE, status=500, times=1)  # never carried out
    await world.sender.command("znyx guardrails staging", ALICE)
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    looked = len(world.slack.calls_to("conversations.history"))
    await _settled(world)
    assert len(world.slack.calls_to("conversations.history")) == looked + 1
    await _settled(world)
    assert len(world.slack.calls_to("conversations.history")) == looked + 1  # once
    assert world.slack.release_messages(1) == []


async def _promoted(world: World) -> None:
    """#1 asked for, approved and promoted, and every message due now delivered."""
    await world.requested("znyx guardrails staging", ALICE)
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    await world.bot.workflow.deliver_due()
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED


async def test_writes_slack_answered_owe_no_second_look(world: World) -> None:
    """Each write to a release message is recorded before it goes out (a process killed
    meanwhile leaves the look owed: tests/test_chaos_findings.py); one Slack answered clears
    it: past the settle time, no update more than the promotion's own."""
    await _promoted(world)
    assert world.bot.store.get(1).msg_recheck_at is None  # type: ignore[union-attr]
    updates = len(world.slack.calls_to("chat.update"))
    await _settled(world)
    assert len(world.slack.calls_to("chat.update")) == updates


async def test_a_message_slack_refuses_for_good_owes_no_second_look(world: World) -> None:
    """A write Slack refused was not carried out: no look is owed for it either (a deleted
    message is not looked at again and again)."""
    world.slack.fail("chat.update", error="message_not_found", times=None)
    await _promoted(world)
    assert world.bot.store.get(1).msg_recheck_at is None  # type: ignore[union-attr]
    updates = len(world.slack.calls_to("chat.update"))
    await _settled(world)
    assert len(world.slack.calls_to("chat.update")) == updates


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
second = timedelta(seconds=1)


def _requested(store: AnyStore, now: datetime = NOW) -> int:
    return store.create_request(
        NewRequest(
            ZnyxPromote(org_id="o", project="g", project_id="p", source_env="staging"),
            requester="UALICE",
            channel="C1",
            preview=Preview(),
            created_at=now,
            expires_at=now + timedelta(hours=1),
        )
    ).id


def test_the_store_keeps_when_a_message_is_to_be_looked_at_again(store_factory: Factory) -> None:
    """On both backends: the latest look is kept, it is due with or without a message, and
    only writes sent once it was due settle it."""
    store = store_factory()
    request_id = _requested(store)
    now = NOW
    store.message_unsettled(request_id, now + 30 * second)  # a post that may still appear
    store.message_unsettled(request_id, now + 10 * second)  # an earlier one: the later stays
    assert store.get(request_id).msg_recheck_at == now + 30 * second  # type: ignore[union-attr]
    assert store.messages_due(now + 29 * second) == []
    assert store.messages_due(now + 30 * second) == [request_id]  # even with no message yet
    store.message_settled(request_id, now + 29 * second)  # sent before it was due: not enough
    assert store.messages_due(now + 31 * second) == [request_id]
    store.message_settled(request_id, now + 31 * second)
    assert store.get(request_id).msg_recheck_at is None  # type: ignore[union-attr]
    assert store.messages_due(now + 60 * second) == []


def test_a_write_answered_with_nothing_else_in_flight_owes_no_look(
    store_factory: Factory,
) -> None:
    """On both backends: a write recorded before it goes out is due at its time until Slack
    answers it; once answered, nothing is owed."""
    store = store_factory()
    request_id = _requested(store)
    until = NOW + 40 * second
    store.message_writing(request_id, NOW, until)
    assert store.get(request_id).msg_recheck_at == until  # type: ignore[union-attr]
    assert store.messages_due(until - second) == []
    assert store.messages_due(until) == [request_id]  # its process was killed, say: looked at
    store.message_written(request_id, until)
    assert store.get(request_id).msg_recheck_at is None  # type: ignore[union-attr]
    assert store.messages_due(NOW + 3600 * second) == []

    # A look owed for a write that can no longer land (due, not done yet) is no reason to
    # keep this one's: sent after it, this write is that look.
    store.message_unsettled(request_id, NOW + 30 * second)
    later = NOW + 31 * second
    store.message_writing(request_id, later, later + 40 * second)
    store.message_written(request_id, later + 40 * second)
    assert store.get(request_id).msg_recheck_at is None  # type: ignore[union-attr]


def test_a_write_answered_never_hides_another_that_may_still_land(
    store_factory: Factory,
) -> None:
    """On both backends, two processes (their own connections): a write answered while
    another is in flight (or while a timed-out one may still land) leaves the look owed,
    after the later of the two, whichever answers first and whatever their clocks say."""
    one, two = store_factory(), store_factory()
    request_id = _requested(one)

    def owed() -> datetime | None:
        return one.get(request_id).msg_recheck_at  # type: ignore[union-attr]

    # One's write goes out; two's follows while one's is in flight; both are answered.
    first, then = NOW + 40 * second, NOW + 41 * second
    one.message_writing(request_id, NOW, first)
    two.message_writing(request_id, NOW + second, then)
    two.message_written(request_id, then)
    one.message_written(request_id, first)
    due = owed()
    assert due is not None and then < due <= then + second
    assert one.messages_due(then) == [] and one.messages_due(due) == [request_id]
    one.message_settled(request_id, due)  # the look, once nothing more can land
    assert owed() is None

    # Two's clock is behind: its write may land until before one's would.
    one.message_writing(request_id, NOW, first)
    two.message_writing(request_id, NOW - 5 * second, first - 5 * second)
    one.message_written(request_id, first)  # answered: two's may still land
    two.message_written(request_id, first - 5 * second)
    due = owed()
    assert due is not None and first < due <= first + second
    one.message_settled(request_id, due)

    # A write whose answer was lost may land until `first`: an answered write sent meanwhile
    # leaves that look owed.
    one.message_unsettled(request_id, first)
    two.message_writing(request_id, NOW + second, then)
    two.message_written(request_id, then)
    due = owed()
    assert due is not None and then < due <= then + second
