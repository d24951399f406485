"""People told, through real signed HTTP and the fake Slack's direct messages: the requester
when their request is decided or ends, the approvers the policy names when one waits for them;
each once, whatever Slack or a restart does, and never for people who said `notify off`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core import notify
from bot.core.model import State, notice_key
from bot.sandbox.slack import dm_channel
from tests.conftest import ALICE, BOB, CAROL, CONFIG, DAVE, World


async def _deliver(world: World, times: int = 3) -> None:
    """Run the `deliver` job's work a few times, as its timer would."""
    for _ in range(times):
        await world.bot.workflow.deliver_due()


def _later(world: World, seconds: float) -> None:
    world.clock.at = world.clock() + timedelta(seconds=seconds)


async def test_the_requester_and_the_approvers_are_told_once_each(world: World) -> None:
    await world.requested()  # ALICE asks; BOB and DAVE may approve (bundle:publish)
    await _deliver(world)
    assert world.dms(ALICE) == [] and world.dms(CAROL) == []  # not her own; no scope
    for approver in (BOB, DAVE):
        [waiting] = world.dms(approver)
        assert "⏳ *#1 waits for your approval*" in waiting
        assert "guardrails policy bundle: staging → prod" in waiting
        assert f"asked by <@{ALICE}>" in waiting and "expires " in waiting
        ts = world.slack.release_messages(1)[-1]["ts"].replace(".", "")
        assert f"<https://test.slack.com/archives/CRELEASES/p{ts}|Open the release message>" in (
            waiting
        )
        assert "`/promote notify off`" in waiting
    opened = world.slack.calls_to("conversations.open")
    assert sorted(c.args["users"] for c in opened) == [BOB, DAVE]

    view = await world.opened_form("promote_approve_comment", 1, BOB)
    await world.sender.submit(view, BOB, "dashboards are green")
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    await _deliver(world)
    approved, succeeded = world.dms(ALICE)
    assert f"👍 *Your request #1 was approved* by <@{BOB}>" in approved
    assert "*Comment:* dashboards are green" in approved
    assert "✅ *Your request #1 succeeded*" in succeeded and "*Outcome:*" in succeeded
    assert len(world.dms(BOB)) == len(world.dms(DAVE)) == 1  # nothing more for them
    posted = [c for c in world.slack.calls_to("chat.postMessage") if c.args["channel"][0] == "D"]
    assert len(posted) == 4  # two waiting, approved, succeeded: once each
    metadata = [c.args["metadata"] for c in posted]
    assert metadata[-1] == {
        "event_type": "promote_bot_notice",
        "event_payload": {"request_id": 1, "key": notice_key(1, ALICE, "succeeded")},
    }


async def test_a_request_no_longer_waiting_tells_no_approver(world: World) -> None:
    await world.requested()
    await world.sender.command("reject 1 wrong bundle", DAVE)  # before the job's turn
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    await _deliver(world)
    assert world.dms(BOB) == [] and world.dms(DAVE) == []
    [rejected] = world.dms(ALICE)
    assert f"🚫 *Your request #1 was rejected* by <@{DAVE}>" in rejected
    assert "*Reason:* wrong bundle" in rejected
    assert world.bot.store.notice_counts() == {"sent": 1, "dropped": 2}


async def test_people_who_said_off_get_none(world: World) -> None:
    told = await world.answer("notify off", DAVE)
    assert "You get no direct messages from promote-bot" in told
    assert "You get no direct messages" in await world.answer("notify", DAVE)
    bad = (await world.sender.command("notify maybe", DAVE)).json()["text"]
    assert "`notify` takes `on` or `off`" in bad
    await world.requested()
    await world.answer("notify off", ALICE)  # after it was asked for: nothing more for her
    await world.answer("cancel 1 not now", BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    await _deliver(world)
    assert world.dms(DAVE) == [] and world.dms(ALICE) == []
    assert world.slack.calls_to("conversations.open") == []  # BOB cancelled it: waits no more
    assert "You get direct messages" in await world.answer("notify on", DAVE)
    await world.requested("znyx guardrails dev")  # 2, asked by ALICE
    await _deliver(world)
    assert len(world.dms(DAVE)) == 1 and len(world.dms(BOB)) == 1


async def test_expiry_and_a_cancel_by_someone_else_are_told(world: World) -> None:
    await world.requested()
    await world.requested("znyx guardrails dev")
    await world.sender.command("cancel 2 clashes with #1", BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    _later(world, 25 * 3600)
    await world.bot.workflow.sweep()
    await _deliver(world)
    cancelled, expired = world.dms(ALICE)
    assert f"🚫 *Your request #2 was cancelled* by <@{BOB}>" in cancelled
    assert "*Reason:* clashes with #1" in cancelled
    assert "⌛ *Your request #1 expired before it had its approvals*" in expired


async def test_a_send_whose_answer_was_lost_is_looked_for_not_doubled(world: World) -> None:
    await world.answer("notify off", DAVE)
    await world.requested()
    world.slack.fail("chat.postMessage", reset=True)  # posted, then the connection drops
    await _deliver(world, 1)
    assert len(world.dms(BOB)) == 1  # Slack has it; the bot does not know
    await _deliver(world)  # within the settle time: not looked for, not sent
    _later(world, notify.SETTLE.total_seconds() + 1)
    await _deliver(world)
    assert len(world.dms(BOB)) == 1  # found by its metadata, not sent again
    histories = world.slack.calls_to("conversations.history")
    assert [c.args["channel"] for c in histories] == [dm_channel(BOB)]
    assert world.bot.store.notice_counts() == {"sent": 1}


async def test_a_send_a_stopped_process_left_is_sent_once(world: World) -> None:
    await world.answer("notify off", DAVE)
    await world.requested()
    key = notice_key(1, BOB, notify.WAITING)
    now = world.clock()
    # Another process claimed it and stopped before posting (or before it knew).
    assert world.bot.store.claim_notice(key, now, now + notify.CLAIM) == "post"
    await _deliver(world)
    assert world.dms(BOB) == []  # its claim still holds
    _later(world, notify.CLAIM.total_seconds() + 1)
    await _deliver(world)
    assert len(world.dms(BOB)) == 1  # looked for, not there: sent
    await _deliver(world)
    assert len(world.dms(BOB)) == 1


async def test_a_failing_slack_is_tried_again_with_backoff(world: World) -> None:
    await world.answer("notify off", DAVE)
    await world.requested()
    world.slack.fail("conversations.open", error="ratelimited", retry_after=20, times=2)
    await _deliver(world)
    assert world.dms(BOB) == []
    _later(world, 5)
    await _deliver(world)
    assert world.dms(BOB) == []  # Slack asked for 20 s
    assert len(world.slack.calls_to("conversations.open")) == 1
    _later(world, 20)
    await _deliver(world)  # it fails once more; then waits again
    assert world.dms(BOB) == [] and len(world.slack.calls_to("conversations.open")) == 2
    _later(world, 21)
    await _deliver(world)
    assert len(world.dms(BOB)) == 1
    await _deliver(world)
    assert len(world.dms(BOB)) == 1


async def test_someone_slack_cannot_reach_is_skipped(world: World) -> None:
    world.slack.disabled_users.add(DAVE)
    await world.requested()
    await _deliver(world)
    assert len(world.dms(BOB)) == 1 and world.dms(DAVE) == []
    assert world.bot.store.notice_counts() == {"sent": 1, "dropped": 1}
    await _deliver(world)
    assert len(world.slack.calls_to("conversations.open")) == 2  # DAVE's was not tried again


async def test_the_deliver_job_sends_them(world: World) -> None:
    from bot.cli import scheduler_for

    scheduler = scheduler_for(world.bot)
    async with scheduler:
        await world.requested()
        await world.slack.wait_for(lambda s: len(world.dms(BOB)) == len(world.dms(DAVE)) == 1)
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]


GROUP_CONFIG = CONFIG.replace(
    "[members]\n", '[members]\nS0RELEASE = ["policy-engineer"]\n'
).replace(f'{DAVE} = ["release-manager"]\n', "")


@pytest.mark.parametrize("config_text", [GROUP_CONFIG])
@pytest.mark.parametrize("slack_groups", [{"S0RELEASE": ["U0ERIN", ALICE, BOB]}])
async def test_members_of_a_user_group_are_told(world: World) -> None:
    await world.requested()
    await _deliver(world)
    assert len(world.dms("U0ERIN")) == 1 and len(world.dms(BOB)) == 1  # BOB: once
    assert world.dms(ALICE) == [] and world.dms(DAVE) == []  # hers; DAVE has no role now
