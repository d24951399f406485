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


def test_the_store_keeps_when_a_message_is_to_be_looked_at_again(store_factory: Factory) -> None:
    """On both backends: the latest look is kept, it is due with or without a message, and
    only writes sent once it was due settle it."""
    store = store_factory()
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    request_id = store.create_request(
        NewRequest(
            ZnyxPromote(org_id="o", project="g", project_id="p", source_env="staging"),
            requester="UALICE",
            channel="C1",
            preview=Preview(),
            created_at=now,
            expires_at=now + timedelta(hours=1),
        )
    ).id
    second = timedelta(seconds=1)
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
