"""Approval policies under pressure, through signed Slack requests over real HTTP."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.core.execution import promoted_by
from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, CAROL, CONFIG, DAVE, World, block_text, buttons

ERIN = "U0ERIN"  # another mobile developer: builds scope, not a release manager
APPROVERS = [f"U0APPROVER{i:02d}" for i in range(50)]


@pytest.fixture
def config_text() -> str:
    members = "\n".join(f'{u} = ["policy-engineer"]' for u in APPROVERS)
    members += f'\n{ERIN} = ["mobile"]'
    return (
        CONFIG.replace("[znyx]", members + "\n\n[znyx]")
        + """
[policies."znyx:*:prod"]
approvals = 2
expires_after = "2h"

[policies."znyx:*:staging"]
approvals = 1
expires_after = "1h"

[policies."whop:*"]
approver_roles = ["release-manager"]

[policies."appstore:*"]
approvals = 0
"""
    )


async def test_fifty_concurrent_approvals_make_one_provider_call(world: World) -> None:
    await world.requested("znyx guardrails dev", ALICE)
    clicks = [world.sender.click(APPROVE, 1, user) for user in APPROVERS]
    responses = await asyncio.gather(*clicks)
    assert {r.status_code for r in responses} == {200}
    await world.slack.wait_for(lambda s: len(world.thread()) == 1, within=15)
    await world.slack.wait_for(lambda s: len(world.told()) >= 49, within=15)
    await asyncio.sleep(0.2)
    assert len(world.znyx.promote_calls) == 1
    assert len(world.thread()) == 1
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert [e.event for e in world.bot.store.history(request_id=1)].count("executing") == 1


async def test_a_redelivered_click_or_command_is_handled_once(world: World) -> None:
    body = world.sender.command_body("znyx guardrails staging", ALICE)
    for retry in ("", "1"):
        headers = world.sender.signed_headers(body)
        if retry:
            headers |= {"X-Slack-Retry-Num": retry, "X-Slack-Retry-Reason": "http_timeout"}
        assert (await world.sender.post(body, headers)).status_code == 200
    await world.slack.wait_for(lambda s: len(world.posted()) == 1)
    [message] = world.slack.release_messages(1)  # the click comes from it, as Slack sends it
    click = world.sender.click_body(APPROVE, "1", BOB, ts=message["ts"], blocks=message["blocks"])
    for retry in ("", "1", "2"):
        headers = world.sender.signed_headers(click) | (
            {"X-Slack-Retry-Num": retry} if retry else {}
        )
        assert (await world.sender.post(click, headers)).status_code == 200
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    await asyncio.sleep(0.2)
    assert len(world.posted()) == 1 and world.bot.store.get(2) is None
    request = world.bot.store.get(1)
    assert request is not None and request.approvers == [BOB] and request.state is State.PENDING
    assert world.told() == ["Approval recorded. #1 needs 1 more."]


async def test_two_approvals_need_two_different_people(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    text = block_text(world.posted()[0]["blocks"])
    assert "needs 2 approvals, not by the requester, expires" in text and "(0 of 2)" in text
    for user in (BOB, BOB, ALICE):  # their work may run at once: the answers in any order
        await world.sender.click(APPROVE, 1, user)
    await world.slack.wait_for(lambda s: len(world.told()) == 3)
    assert sorted(world.told()) == [
        "Approval recorded. #1 needs 1 more.",
        "You asked for this promotion, so your approval doesn't count: ask someone else.",
        "You have already approved #1.",
    ]
    assert [a.user for a in world.bot.store.get(1).approvals] == [BOB]  # type: ignore[union-attr]
    assert "(1 of 2)" in block_text(world.slack.calls_to("chat.update")[-1].args["blocks"])
    assert world.znyx.promote_calls == []
    await world.sender.click(APPROVE, 1, DAVE)
    reply = await world.finished()
    assert "Promoted" in reply and f"<@{BOB}>, <@{DAVE}>" in reply
    assert len(world.znyx.promote_calls) == 1


async def test_approver_roles_narrow_who_may_approve(world: World) -> None:
    await world.requested(f"whop storefront {world.builds.ios_approved}", CAROL)
    assert "approvers: release-manager" in block_text(world.posted()[0]["blocks"])
    await world.sender.click(APPROVE, 1, ERIN)  # holds the scope, but not an approver role
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert "only release-manager may, under this target's policy" in world.told()[0]
    await world.sender.click(APPROVE, 1, DAVE)
    assert "Promoted" in await world.finished()


async def test_zero_approvals_runs_at_once(world: World) -> None:
    await world.sender.command("appstore expire ios 155", CAROL)
    reply = await world.finished()
    assert "build 155 of ios is expired" in reply
    assert "runs without approval" in block_text(world.posted()[0]["blocks"])


async def test_expiry_with_an_injected_clock(world: World) -> None:
    workflow = world.bot.workflow
    await world.requested("znyx guardrails dev", ALICE)  # expires after 1 h
    real = workflow.clock
    assert await workflow.sweep() == 0
    workflow.clock = lambda: real() + timedelta(minutes=61)
    assert await workflow.sweep() == 1
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    final = world.slack.calls_to("chat.update")[-1].args
    assert buttons(final["blocks"]) == [] and "Expired" in block_text(final["blocks"])
    await world.sender.click(APPROVE, 1, BOB)  # an old button is answered, not acted on
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert world.told() == ["Request #1 has expired; nothing to approve."]
    assert world.znyx.promote_calls == []
    assert await workflow.sweep() == 0


async def test_a_click_after_expiry_but_before_the_sweep_expires_it(world: World) -> None:
    workflow = world.bot.workflow
    await world.requested("znyx guardrails dev", ALICE)
    real = workflow.clock
    workflow.clock = lambda: real() + timedelta(hours=2)
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1 and len(world.told()) == 1)
    assert world.told()[0].startswith("Request #1 expired at ")
    assert world.bot.store.get(1).state is State.EXPIRED  # type: ignore[union-attr]
    assert world.znyx.promote_calls == []


async def _stuck(world: World, text: str, user: str = ALICE) -> int:
    """A request left `executing` as if the bot had died during the provider call."""
    await world.requested(text, user)
    store = world.bot.store
    long_ago = world.bot.workflow.clock() - timedelta(hours=1)
    assert store.transition(1, (State.PENDING,), State.EXECUTING, at=long_ago)
    return 1


async def test_recovery_reads_znyx_and_finds_the_promotion(world: World) -> None:
    await _stuck(world, "znyx guardrails dev")
    request = world.bot.store.get(1)
    assert request is not None
    mine = promoted_by(request, world.bot.store.installation)
    world.znyx.publish("proj-guardrails", "staging", "sha256:x", by=mine)
    assert await world.bot.workflow.recover() == 1
    reply = await world.finished()
    assert "is active in staging (read again after the promotion was cut off)" in reply
    assert world.bot.store.get(1).state is State.SUCCEEDED  # type: ignore[union-attr]
    assert world.znyx.promote_calls == []


async def test_recovery_never_takes_another_bots_bundle_for_its_own(world: World) -> None:
    await _stuck(world, "znyx guardrails dev")
    request = world.bot.store.get(1)
    assert request is not None
    # A second promote-bot (its own database) on the same Znyx org, its own request #1 by the
    # same person, published a bundle of another hash; this bot's write never landed.
    theirs = promoted_by(request, "0ther")
    assert theirs != promoted_by(request, world.bot.store.installation)
    world.znyx.publish("proj-guardrails", "staging", "sha256:" + "e" * 64, by=theirs)
    assert await world.bot.workflow.recover() == 1
    reply = await world.finished()
    assert "Outcome unknown" in reply
    assert world.bot.store.get(1).state is State.UNKNOWN  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("published", "state", "told"),
    [
        ("sha256:" + "d" * 64, State.SUCCEEDED, "bundle v2 is active in staging"),
        (
            None,
            State.FAILED,
            "not done: staging's active bundle is v1 · sha256:555555555555, as "
            "before; request again",
        ),
        (
            "sha256:" + "9" * 64,
            State.UNKNOWN,
            "Znyx shows staging's active bundle is v2 · sha256:999999999999",
        ),
    ],
)
async def test_znyx_recovery_decides_by_comparing_without_promoted_by(
    world: World, published: str | None, state: State, told: str
) -> None:
    """Znyx's list need not echo `promoted_by`: the destination is compared with what it showed
    before the write (a newer version with the source's hash: done; unchanged: not done)."""
    world.znyx.list_echoes_published_by = False
    await _stuck(world, "znyx guardrails dev")
    if published:
        world.znyx.publish("proj-guardrails", "staging", published, by="someone")
    assert await world.bot.workflow.recover() == 1
    reply = await world.finished()
    assert told in reply
    assert world.bot.store.get(1).state is state  # type: ignore[union-attr]
    assert world.znyx.promote_calls == []


async def test_recovery_reads_whop_and_finds_nothing_happened(world: World) -> None:
    await _stuck(world, f"whop storefront {world.builds.ios_approved}", CAROL)
    await world.bot.workflow.recover()
    reply = await world.finished()
    assert (
        f"not done: the production ios build of storefront is {world.builds.ios_prod}, as before"
    ) in reply
    assert world.bot.store.get(1).state is State.FAILED  # type: ignore[union-attr]
    assert world.whop.promote_calls == []


async def test_a_failed_read_makes_it_unknown_and_a_young_one_is_left_alone(world: World) -> None:
    await _stuck(world, f"whop storefront {world.builds.ios_approved}", CAROL)
    world.whop.keys.clear()  # the read is refused
    await world.requested("znyx guardrails dev", ALICE)
    world.bot.store.transition(2, (State.PENDING,), State.EXECUTING, at=world.bot.workflow.clock())
    assert await world.bot.workflow.recover() == 1
    reply = await world.finished()
    assert "Outcome unknown" in reply and "reading whop failed" in reply
    assert "What to check" in reply
    assert world.bot.store.get(2).state is State.EXECUTING  # type: ignore[union-attr]


async def test_a_promotion_read_back_after_a_restart_can_still_be_rolled_back(
    world: World,
) -> None:
    world.znyx.list_echoes_published_by = False
    await _stuck(world, "znyx guardrails dev")
    world.znyx.publish("proj-guardrails", "staging", "sha256:" + "d" * 64, by="someone")
    assert await world.bot.workflow.recover() == 1
    await world.finished()
    request = world.bot.store.get(1)
    assert request is not None and request.outcome is not None
    assert request.outcome.before["version"] == "1"  # what it replaced, from before the write
    await world.requested("rollback 1", ALICE)
    message = block_text(world.posted()[-1]["blocks"])
    assert "Rolls back #1" in message and "v1" in message
