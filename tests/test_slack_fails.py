"""Slack fails too: every message converges to the stored truth, every answer reaches its
person, and only clicks from this installation's own messages act. Fake Slack failing on a
schedule; real HTTP throughout."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest

from bot.core.model import State
from bot.store import SqliteStore
from bot.transports.slack.blocks import APPROVE, REJECT, ROLLBACK
from tests.conftest import (
    ALICE,
    BOB,
    DAVE,
    WHOP_KEY,
    Bot,
    Fakes,
    World,
    block_text,
    buttons,
    open_buttons,
    serve_env,
)


def _live_buttons(world_slack, request_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Approve/Reject buttons left on any copy of the request's release message."""
    return [
        action
        for m in world_slack.release_messages(request_id)
        for action, _ in buttons(m.get("blocks") or [])
        if action in (APPROVE, REJECT)
    ]


async def _until(predicate, within: float) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (several fakes and the store change here)
            await asyncio.sleep(0.05)


async def test_failing_updates_still_end_in_the_final_state(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    world.slack.fail("chat.update", status=500, times=None)  # Slack keeps failing updates
    world.slack.fail("chat.postMessage", error="internal_error", times=2)  # and the thread post
    await world.sender.click(APPROVE, 1, BOB)
    await _until(lambda: world.bot.store.get(1).state is State.SUCCEEDED, 10)  # type: ignore[union-attr]
    assert _live_buttons(world.slack, 1) == [APPROVE, REJECT]  # what Slack still shows

    del world.slack.failures["chat.update"]  # Slack recovers
    recovered = time.monotonic()
    workflow = world.bot.workflow
    while _live_buttons(world.slack, 1) or not world.thread():
        await asyncio.sleep(0.5)
        await workflow.deliver_due()  # what `serve` runs every 2 s
        assert time.monotonic() - recovered < 30
    [message] = world.slack.release_messages(1)
    assert "Promoted" in message["text"]
    assert len(world.thread()) == 1  # the outcome, once
    await workflow.deliver_due()
    assert len(world.thread()) == 1


async def test_a_rate_limited_update_waits_as_slack_asks(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    world.slack.fail("chat.update", status=429, retry_after=1, times=1)
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1, within=10)
    await _until(lambda: not _live_buttons(world.slack, 1), 10)


async def test_a_post_reset_after_slack_made_it_is_adopted_not_posted_twice(
    world: World,
) -> None:
    world.slack.fail("chat.postMessage", reset=True, times=1)  # posted, but the answer is lost
    response = await world.sender.command("znyx guardrails staging", ALICE)
    assert response.status_code == 200
    await world.slack.wait_for(lambda s: len(s.calls_to("conversations.history")) == 1)
    await _until(lambda: world.bot.store.get(1).message_ts is not None, 5)  # type: ignore[union-attr]
    assert len(world.slack.release_messages(1)) == 1  # found, not posted again
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    await _until(lambda: not _live_buttons(world.slack, 1), 5)
    assert world.bot.store.get(1).state is State.SUCCEEDED  # type: ignore[union-attr]


async def test_a_lost_post_under_many_later_messages_is_found_not_posted_twice(
    world: World,
) -> None:
    """A process posted a release message and stopped before storing its ts; by the time a
    recovery looks, 250 other messages came after it (more than one page of history)."""
    await world.requested("znyx guardrails staging", ALICE)
    [posted] = world.slack.release_messages(1)
    with sqlite3.connect(world.bot.settings.promote_bot_db) as db:  # as the stopped process left it
        db.execute("UPDATE requests SET message_ts = NULL WHERE id = 1")
    for i in range(250):
        world.slack._post_or_update("chat.postMessage", "CRELEASES", {"text": f"chatter {i}"})
    world.clock.at = world.clock() + timedelta(minutes=1)  # past the grace of a live post
    await world.bot.workflow.deliver_due()
    assert world.bot.store.get(1).message_ts == posted["ts"]  # type: ignore[union-attr]
    assert len(world.slack.release_messages(1)) == 1  # found, not posted again
    assert len(world.slack.calls_to("conversations.history")) == 2  # on the second page


async def test_an_unposted_request_slack_fails_to_show_is_looked_for_again_a_minute_on(
    world: World,
) -> None:
    """Not every 2 s: while Slack can't say whether it shows the message, the bot neither
    posts it (it may be there) nor asks again at once."""
    await world.requested("znyx guardrails staging", ALICE)
    with sqlite3.connect(world.bot.settings.promote_bot_db) as db:  # as a stopped process left it
        db.execute("UPDATE requests SET message_ts = NULL WHERE id = 1")
    world.slack.fail("conversations.history", error="internal_error", times=None)
    world.clock.at = world.clock() + timedelta(minutes=1)
    for _ in range(3):
        await world.bot.workflow.deliver_due()
    assert len(world.slack.calls_to("conversations.history")) == 1
    assert len(world.slack.release_messages(1)) == 1  # not posted again meanwhile
    world.slack.failures.clear()
    world.clock.at += timedelta(minutes=1)
    await world.bot.workflow.deliver_due()
    assert len(world.slack.calls_to("conversations.history")) == 2
    assert world.bot.store.get(1).message_ts is not None  # type: ignore[union-attr]
    assert len(world.slack.release_messages(1)) == 1


async def test_a_copy_a_click_reveals_is_adopted_and_kept_in_step(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    # A second copy of the release message (a post Slack made twice), by the bot itself.
    copy = world.slack._post_or_update(
        "chat.postMessage",
        "CRELEASES",
        {
            "text": "copy",
            "blocks": world.posted()[0]["blocks"],
            "metadata": {"event_type": "promote_bot_request", "event_payload": {"request_id": 1}},
        },
    )
    # Reject… on the copy: the form opens, and its submission adopts the copy.
    await world.reject_by_form(1, BOB, "not this one", channel="CRELEASES", ts=copy["ts"])
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    assert world.bot.store.get(1).state is State.REJECTED  # type: ignore[union-attr]
    await _until(lambda: not _live_buttons(world.slack, 1), 5)  # both copies show the end
    assert len(world.slack.release_messages(1)) == 2


async def test_a_click_naming_one_request_from_anothers_message_adopts_nothing(
    world: World,
) -> None:
    """A click whose value names #2, sent from #1's release message, once made #1's message a
    copy of #2's and overwrote it. A message is adopted only when its own blocks (as the
    click's payload carries them) are #2's release message."""
    await world.requested("znyx guardrails staging", ALICE)
    await world.requested("znyx guardrails dev", ALICE)
    [one] = world.slack.release_messages(1)
    shown_before = json.dumps(one["blocks"])
    before = len(world.told())
    await world.sender.click(APPROVE, 2, BOB, channel="CRELEASES", ts=one["ts"])
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    assert "That button does nothing" in world.told()[-1]
    assert "not #2's release message" in world.told()[-1]
    second, first = world.bot.store.get(2), world.bot.store.get(1)
    assert second is not None and second.copies == [] and second.approvals == []
    assert first is not None and first.approvals == [] and first.copies == []
    await world.bot.workflow.deliver_due()
    shown = world.slack.shown("CRELEASES", one["ts"])
    assert shown is not None and json.dumps(shown["blocks"]) == shown_before  # still #1's
    assert world.znyx.promote_calls == []

    before = len(world.told())  # Reject… naming #2 from #1's message opens no form either
    await world.sender.click(REJECT, 2, BOB, channel="CRELEASES", ts=one["ts"])
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    assert "not #2's release message" in world.told()[-1] and world.slack.views == []


@pytest.mark.parametrize(
    ("where", "why"),
    [
        ({"team": "T0OTHER"}, "another workspace (T0OTHER)"),
        ({"app": "A0OTHER"}, "another app (A0OTHER)"),
        ({"team": None}, "another workspace (none named)"),
        ({"app": None}, "another app (none named)"),
        ({"channel": "CELSEWHERE"}, "a channel that is not #1's"),
        ({"channel": "CRELEASES", "ts": "1699999999.000001", "bot_id": "BSOMEONE"}, "not #1's"),
    ],
)
async def test_a_click_from_elsewhere_has_no_effect(
    world: World, where: dict[str, str], why: str
) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    before = len(world.told())
    response = await world.sender.click(APPROVE, 1, BOB, **where)
    assert response.status_code == 200
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    assert "That button does nothing" in world.told()[-1] and why in world.told()[-1]
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.PENDING and request.approvals == []
    refused = [e for e in world.bot.store.history(request_id=1) if e.event == "click refused"]
    assert len(refused) == 1 and why in refused[0].detail
    assert world.znyx.promote_calls == []


async def test_a_failed_response_url_answer_arrives_by_post_ephemeral(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    world.slack.fail("response_url", status=500, times=1)
    await world.sender.click(APPROVE, 1, ALICE)  # her own approval doesn't count: she's told
    await world.slack.wait_for(lambda s: len(s.calls_to("chat.postEphemeral")) == 1)
    [ephemeral] = world.slack.calls_to("chat.postEphemeral")
    assert ephemeral.args["user"] == ALICE and ephemeral.args["channel"] == "CRELEASES"
    assert "your approval doesn't count" in ephemeral.args["text"]


async def test_a_provider_echoing_the_token_leaves_it_nowhere(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world.whop.fail_next(
        400,
        "invalid_request_error",
        f"Bad request. Headers: Authorization: Bearer {WHOP_KEY}; x-api-key={WHOP_KEY}",
    )
    await world.requested(f"whop storefront {world.builds.ios_approved}", ALICE)
    await world.sender.click(APPROVE, 1, DAVE)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    reply = block_text(world.thread()[0]["blocks"])
    assert "Bad request" in reply and "[redacted]" in reply
    everywhere = [
        str([c.args for c in world.slack.calls]),
        str(world.bot.store.history(limit=100)),
        str(world.bot.store.get(1)),
        caplog.text,
    ]
    assert not any(WHOP_KEY in text for text in everywhere)


@pytest.mark.parametrize(
    "payload",
    [
        '{"type": "block_actions", "actions": [], "user": {"id": "U0BOB"}}',
        '{"type": "block_actions", "actions": [{}], "user": {"id": "U0BOB"}, "trigger_id": "x"}',
        '{"type": "block_actions", "actions": [{"action_id": "promote_approve"}]}',
        '{"type": "block_actions", "actions": "nope", "user": "U0BOB"}',
        '{"type": "view_submission"}',
        "[]",
        "not json",
    ],
)
async def test_every_signed_request_gets_an_answer_below_500(world: World, payload: str) -> None:
    body = urlencode({"payload": payload})
    response = await world.sender.post(body)
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    for text in ("", "text=help&user_id=U0BOB", "command=%2Fpromote"):
        response = await world.sender.post(text)
        assert response.status_code < 500, response.text


async def test_messages_converge_across_a_restart(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    env = serve_env(tmp_path, urls)
    first = await Bot.start(env, urls["slack"])
    await first.sender.command("znyx guardrails staging", ALICE)
    await f.slack.wait_for(lambda s: len(s.release_messages(1)) == 1, within=10)
    f.slack.fail("chat.update", status=500, times=None)
    f.slack.fail("chat.postMessage", status=500, times=None)
    await first.sender.click(APPROVE, 1, BOB)
    await _until(lambda: SqliteStore(tmp_path / "shared.db").get(1).state is State.SUCCEEDED, 15)  # type: ignore[union-attr]
    await first.stop(signal.SIGTERM)
    f.slack.failures.clear()  # Slack recovers while the bot is down

    second = await Bot.start(env, urls["slack"])
    try:
        await _until(lambda: not _live_buttons(f.slack, 1), 30)
        await _until(
            lambda: (
                len([m for ms in f.slack.messages.values() for m in ms if "thread_ts" in m]) == 1
            ),
            30,
        )
    finally:
        await second.stop()
    [message] = f.slack.release_messages(1)
    assert "Promoted" in message["text"]


async def test_roll_back_from_the_outcome_reply_leaves_the_reply_alone(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    [release] = world.slack.release_messages(1)
    replies = [m for m in world.slack.messages["CRELEASES"] if m.get("thread_ts")]
    [reply] = replies
    outcome_text = reply["text"]
    await world.sender.click(
        ROLLBACK, 1, DAVE, channel="CRELEASES", ts=reply["ts"], thread_ts=release["ts"]
    )
    await world.slack.wait_for(lambda s: len(world.posted()) == 2)  # the rollback's message
    assert "Rolls back #1" in block_text(world.posted()[-1]["blocks"])
    assert reply["text"] == outcome_text  # the thread keeps its outcome
    assert world.bot.store.get(1).copies == []  # type: ignore[union-attr]


async def test_a_request_whose_process_died_before_posting_is_posted_later(world: World) -> None:
    """Recorded, then the process died before the post: the thing would stay blocked unseen."""
    from datetime import timedelta

    from bot.core.commands import Promote, parse
    from bot.core.model import NewRequest, Preview

    command = parse("znyx guardrails staging", world.bot.workflow.rules)
    assert isinstance(command, Promote)
    long_ago = world.bot.workflow.clock() - timedelta(minutes=2)
    world.bot.store.create_request(
        NewRequest(
            command.action,
            requester=ALICE,
            channel="CRELEASES",
            preview=Preview(expect={"source": "x"}),
            created_at=long_ago,
            expires_at=long_ago + timedelta(hours=24),
        )
    )
    await world.bot.workflow.deliver_due()
    [message] = world.slack.release_messages(1)
    assert buttons(message["blocks"]) == open_buttons(1)
    await world.bot.workflow.deliver_due()
    assert len(world.slack.release_messages(1)) == 1  # once


async def test_a_deleted_release_message_is_not_retried_forever(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    [message] = world.slack.release_messages(1)
    shown = world.slack.messages[message["channel"]]
    shown.remove(world.slack.shown(message["channel"], message["ts"]))  # deleted in Slack
    assert "cancelled" in (await world.answer("cancel 1", ALICE)).lower()
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)  # the outcome still posted
    store = world.bot.store
    later = world.bot.workflow.clock() + timedelta(hours=1)
    await _until(lambda: store.messages_due(later) == [], 5)  # owed nothing, not even later
    updates = len(world.slack.calls_to("chat.update"))
    for _ in range(3):  # what `serve` runs every 2 s: nothing left to do
        await world.bot.workflow.deliver_due()
    assert len(world.slack.calls_to("chat.update")) == updates
    assert "can't be brought up to date" in caplog.text
    assert store.get(1).state is State.CANCELLED  # type: ignore[union-attr]


async def test_an_outcome_reply_whose_answer_was_lost_is_looked_for_not_posted_again(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    [message] = world.slack.release_messages(1)
    for n in range(250):  # a busy thread: the reply is looked for past its first page
        world.slack.messages[message["channel"]].append(
            {"type": "message", "ts": f"1800000000.{n:06d}", "thread_ts": message["ts"]}
        )
    world.slack.fail("chat.postMessage", reset=True, times=1)  # the reply lands, its answer not
    await world.sender.click(APPROVE, 1, BOB)
    store, workflow = world.bot.store, world.bot.workflow
    await _until(lambda: store.get(1).state is State.SUCCEEDED, 10)  # type: ignore[union-attr]
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    soon, later = (workflow.clock() + timedelta(seconds=s) for s in (5, 31))
    # Once the bot has taken the lost answer in (what it then records has no await between):
    # before, the message itself is due too, and the clock below would be the bot's for it.
    await _until(lambda: "may not have reached its thread" in caplog.text, 5)
    assert store.messages_due(later) == [1]  # owed a look, not a post
    workflow.clock = lambda: soon  # type: ignore[method-assign]
    await workflow.deliver_due()  # the message is redrawn; the reply not yet looked for
    assert world.slack.calls_to("conversations.replies") == [] and len(world.thread()) == 1
    workflow.clock = lambda: later  # type: ignore[method-assign]  # a late post has landed
    assert await workflow.deliver_due() == 1
    looked = world.slack.calls_to("conversations.replies")
    assert [c.args["ts"] for c in looked] == [message["ts"]] * 2  # two pages of 200
    assert len(world.thread()) == 1  # found there: not posted again
    assert store.messages_due(later + timedelta(hours=1)) == []


async def test_an_outcome_reply_a_stopped_process_claimed_is_posted_once_its_claim_lapses(
    world: World,
) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    store, workflow = world.bot.store, world.bot.workflow
    now = workflow.clock()
    # Another process claimed the reply and stopped before posting it: the request is over.
    assert store.transition(1, (State.PENDING,), State.CANCELLED, at=now, by=ALICE)
    assert store.claim_thread(1, now, now + timedelta(seconds=60)) == "post"
    store.touch_message(1)
    assert await workflow.deliver_due() == 1  # the message is redrawn; the reply is held
    assert world.thread() == []
    later = now + timedelta(seconds=61)
    workflow.clock = lambda: later  # type: ignore[method-assign]
    assert await workflow.deliver_due() == 1
    assert len(world.slack.calls_to("conversations.replies")) == 1  # looked: not there
    assert len(world.thread()) == 1  # so posted, once
    assert await workflow.deliver_due() == 0 and len(world.thread()) == 1
