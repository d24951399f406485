"""Locks, freeze windows, break-glass, `pending`, `locks` and the App Home, end to end: signed
Slack requests in, the fake Slack and fake providers over HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot.cli import SLACK_PATH, start_slack_bot
from bot.core.model import Lock, State
from bot.sandbox.slack_requests import SlackSender
from bot.transports.slack.blocks import APPROVE
from bot.web import WebServer
from tests.conftest import (
    ALICE,
    BOB,
    CAROL,
    CONFIG,
    DAVE,
    MALLORY,
    SIGNING_SECRET,
    World,
    block_text,
)

FREEZES = """
[[freeze]]
targets = ["znyx:*:prod"]
reason = "Year-end freeze"
from = "2026-12-20T00:00"
until = "2027-01-04T08:00"
timezone = "Europe/Berlin"

[[freeze]]
targets = ["whop:*"]
reason = "Weekend"
weekly = "Fri 16:00 - Mon 08:00"
timezone = "America/New_York"

[policies."whop:*"]
expires_after = "4d"  # long enough to wait out a weekend
"""


@pytest.fixture
def config_text() -> str:
    return CONFIG + FREEZES


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def refused_at_ack(world: World, text: str, user: str) -> str:
    response = await world.sender.command(text, user)
    assert response.status_code == 200 and response.json()["response_type"] == "ephemeral"
    return response.json()["text"]


async def clicked(world: World, request_id: int, user: str) -> str:
    """Click Approve as `user`; what only they were told."""
    before = len(world.told())
    await world.sender.click(APPROVE, request_id, user)
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    return world.told()[-1]


def last_update_text(world: World) -> str:
    return block_text(world.slack.calls_to("chat.update")[-1].args["blocks"])


async def test_a_lock_refuses_new_requests_and_approvals_until_unlocked(world: World) -> None:
    world.clock.at = utc(2026, 6, 10, 9, 0)  # a Wednesday, outside every freeze
    await world.requested("znyx guardrails staging", ALICE)  # #1, target znyx:guardrails:prod
    updates = len(world.slack.calls_to("chat.update"))

    said = await world.answer("lock znyx:*:prod incident 4521", DAVE)
    assert "Locked `znyx:*:prod`: incident 4521" in said and "1 open request now shows it" in said
    await world.slack.wait_for(lambda s: len(s.calls_to("chat.update")) == updates + 1)
    shown = last_update_text(world)
    assert f"locked by <@{DAVE}> since 2026-06-10 09:00 UTC: incident 4521" in shown

    refusal = await clicked(world, 1, BOB)
    assert "#1 can't be approved now" in refusal
    assert f"<@{DAVE}>" in refusal and "2026-06-10 09:00 UTC" in refusal
    assert "incident 4521" in refusal and "--emergency" in refusal
    assert world.bot.store.get(1).approvals == []  # type: ignore[union-attr]

    posts = len(world.posted())
    refusal = await world.answer("znyx guardrails staging", DAVE)
    assert "`znyx:guardrails:prod` can't be promoted now" in refusal and "incident 4521" in refusal
    assert len(world.posted()) == posts and world.znyx.promote_calls == []
    # Staging is not locked: the pattern is matched like a policy's.
    await world.requested("znyx guardrails dev", DAVE)

    # Only holders of the targets' scope may lock or unlock.
    assert "needs the `bundle:publish` scope" in await refused_at_ack(
        world, "unlock znyx:*:prod", CAROL
    )
    assert "You have no role" in await refused_at_ack(world, "lock whop:* no", MALLORY)
    assert "matches no target" in await refused_at_ack(world, "lock znyx:nowhere:prod x", DAVE)
    assert "already locked by" in await world.answer("lock znyx:*:prod again", BOB)

    said = await world.answer("unlock znyx:*:prod", BOB)
    assert "Unlocked `znyx:*:prod`" in said
    assert "locked by" not in last_update_text(world)
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    assert world.bot.store.get(1).state is State.SUCCEEDED  # type: ignore[union-attr]

    events = [(e.event, e.actor, e.target) for e in reversed(world.bot.store.history(limit=50))]
    assert ("locked", DAVE, "znyx:*:prod") in events
    assert ("approval refused", BOB, "znyx:guardrails:prod") in events
    assert ("refused", DAVE, "znyx:guardrails:prod") in events
    assert ("unlocked", BOB, "znyx:*:prod") in events


async def test_dated_freeze_in_berlin(world: World) -> None:
    # 2026-12-20 00:00 in Berlin is 2026-12-19 23:00 UTC.
    world.clock.at = utc(2026, 12, 19, 22, 30)
    await world.requested("znyx guardrails staging", ALICE)
    world.clock.at = utc(2026, 12, 19, 23, 0)
    refusal = await clicked(world, 1, BOB)
    assert "#1 can't be approved now" in refusal
    assert "Year-end freeze: frozen until Mon 2027-01-04 08:00 Europe/Berlin" in refusal
    refusal = await world.answer("znyx guardrails staging", DAVE)
    assert "Year-end freeze" in refusal and "2027-01-04 08:00" in refusal
    assert "Year-end freeze" in await world.answer("locks", BOB)
    # Other targets are not frozen.
    await world.requested("znyx guardrails dev", DAVE)
    world.clock.at = utc(2027, 1, 4, 6, 59)  # 07:59 in Berlin: still frozen
    assert "expired" in await clicked(world, 1, BOB)  # #1 lived 24 hours
    assert "Year-end freeze" in await world.answer("znyx guardrails staging", ALICE)
    world.clock.at = utc(2027, 1, 4, 7, 0)  # 08:00 in Berlin: over
    await world.requested("znyx guardrails staging", ALICE)
    await world.sender.click(APPROVE, 3, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 2)
    assert world.bot.store.get(3).state is State.SUCCEEDED  # type: ignore[union-attr]


async def test_weekly_freeze_in_new_york_across_the_dst_change(world: World) -> None:
    build = world.builds.ios_approved
    # Fri 2026-03-06 16:00 EST = 21:00 UTC; DST starts on Sunday; Mon 08:00 EDT = 12:00 UTC.
    world.clock.at = utc(2026, 3, 6, 20, 59)
    await world.requested(f"whop storefront {build}", ALICE)
    said = await world.answer("locks", ALICE)
    assert "Next freeze*: Weekend on `whop:*`, from Fri 2026-03-06 16:00 America/New_York" in said

    world.clock.at = utc(2026, 3, 6, 21, 0)
    refusal = await clicked(world, 1, DAVE)
    assert "Weekend: frozen until Mon 2026-03-09 08:00 America/New_York" in refusal
    world.clock.at = utc(2026, 3, 9, 11, 59)  # 07:59 EDT: still frozen
    assert "Weekend" in await clicked(world, 1, DAVE)
    said = await world.answer("locks", ALICE)
    assert "Weekend on `whop:*`, until Mon 2026-03-09 08:00 America/New_York" in said
    # 12:00 UTC is 08:00 EDT: over (in EST it would be 07:00, still frozen).
    world.clock.at = utc(2026, 3, 9, 12, 0)
    await world.sender.click(APPROVE, 1, DAVE)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    assert world.bot.store.get(1).state is State.SUCCEEDED  # type: ignore[union-attr]


async def test_break_glass_passes_a_lock_with_one_approval_more(world: World) -> None:
    world.clock.at = utc(2026, 6, 10, 9, 0)
    await world.answer("lock znyx:*:prod incident 4521", DAVE)
    await world.requested("znyx guardrails staging --emergency prod is down, hotfix", ALICE)
    message = block_text(world.posted()[-1]["blocks"])
    assert "🚨 *Emergency*" in message and "prod is down, hotfix" in message
    assert "(0 of 2)" in message and "needs 2 approvals" in message
    assert "incident 4521" in message  # the lock it passes is shown too

    assert "needs 1 more" in await clicked(world, 1, BOB)
    assert world.znyx.promote_calls == []
    await world.sender.click(APPROVE, 1, DAVE)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    assert world.znyx.promote_calls
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert request.emergency == "prod is down, hotfix"
    final = last_update_text(world)
    assert "🚨" in final and "prod is down, hotfix" in final
    events = {e.event: e.detail for e in world.bot.store.history(limit=50)}
    assert "🚨 emergency" in events and "prod is down, hotfix" in events["🚨 emergency"]
    assert "incident 4521" in events["🚨 emergency passes"]


async def test_pending_and_locks_per_person(world: World) -> None:
    world.clock.at = utc(2026, 6, 10, 9, 0)
    await world.requested("znyx guardrails staging", ALICE)  # 1: bundle:publish
    await world.requested(f"whop storefront {world.builds.ios_approved}", CAROL)  # 2: builds

    link = f"https://test.slack.com/archives/CRELEASES/p{int(world.clock().timestamp())}"
    for user, expected, absent in [
        (ALICE, ["#1>", "#2>"], []),  # her own, and one she may approve
        (BOB, ["#1>"], ["#2"]),  # no developer:manage_builds
        (CAROL, ["#2>"], ["#1"]),  # her own only
        (DAVE, ["#1>", "#2>"], []),
    ]:
        said = await world.answer("pending", user)
        for ref in expected:
            assert ref in said, (user, said)
        for ref in absent:
            assert ref not in said, (user, said)
        assert link in said
        if len(expected) == 2:
            assert said.index("#1>") < said.index("#2>")  # oldest first
    assert "You have no role" in await refused_at_ack(world, "pending", MALLORY)

    assert "Locks*\n• none" in await world.answer("locks", BOB)
    await world.answer("lock whop:storefront release train", CAROL)
    said = await world.answer("locks", BOB)
    assert f"`whop:storefront` locked by <@{CAROL}>" in said and "release train" in said
    assert "Next freeze*: Weekend on `whop:*`, from Fri 2026-06-12 16:00 America/New_York" in said
    pending = await world.answer("pending", CAROL)
    assert "🔒 held" in pending


async def test_app_home_opened_publishes_that_persons_home(world: World) -> None:
    world.clock.at = utc(2026, 6, 10, 9, 0)
    await world.requested("znyx guardrails staging", ALICE)

    response = await world.sender.home_opened(BOB)
    assert response.status_code == 200
    await world.slack.wait_for(lambda s: len(s.calls_to("views.publish")) == 1)
    [call] = world.slack.calls_to("views.publish")
    assert call.args["user_id"] == BOB and call.token == world.slack.token
    view = call.args["view"]
    assert view["type"] == "home"
    text = block_text(view["blocks"])
    waiting, rest = text.split("Your open requests")
    assert "#1>" in waiting and "guardrails policy bundle" in waiting
    assert "You have no open request" in rest
    assert "Last 1 events" in rest and "requested `znyx:guardrails:prod`" in rest

    await world.sender.home_opened(ALICE)  # opened again later: published again, for her
    await world.slack.wait_for(lambda s: len(s.calls_to("views.publish")) == 2)
    call = world.slack.calls_to("views.publish")[-1]
    assert call.args["user_id"] == ALICE
    waiting, rest = block_text(call.args["view"]["blocks"]).split("Your open requests")
    assert "Nothing is waiting for you" in waiting  # she can't approve her own
    assert "#1>" in rest and "Nothing is locked or frozen now" in rest
    assert "Next freeze: Weekend" in rest


async def test_locks_survive_a_restart_and_hold_across_processes(world: World) -> None:
    """A second bot on the same database file sets the lock and stops; the first bot refuses
    by it, and a bot started afterwards (a restart) still lists it."""
    world.clock.at = utc(2026, 6, 10, 9, 0)

    async def via_another_bot(text: str, user: str) -> str:
        bot = await start_slack_bot(world.bot.settings, world.provider_settings, clock=world.clock)
        try:
            async with WebServer(bot.app.web_app(path=SLACK_PATH)) as server:
                sender = SlackSender(server.url, SIGNING_SECRET, world.slack_url)
                before = len(world.told())
                try:
                    await sender.command(text, user)
                    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
                finally:
                    await sender.aclose()
        finally:
            await bot.aclose()
        return world.told()[-1]

    assert "Locked" in await via_another_bot("lock znyx:*:prod incident 4521", DAVE)
    refusal = await world.answer("znyx guardrails staging", ALICE)  # the first bot
    assert "can't be promoted now" in refusal and "incident 4521" in refusal
    said = await via_another_bot("locks", BOB)  # started after the lock's process ended
    assert f"`znyx:*:prod` locked by <@{DAVE}>" in said and "incident 4521" in said
    assert "Unlocked" in await via_another_bot("unlock znyx:*:prod", DAVE)
    await world.requested("znyx guardrails staging", ALICE)  # the first bot sees that too


async def test_a_freeze_that_begins_shows_on_pending_messages(world: World) -> None:
    world.clock.at = utc(2026, 12, 19, 22, 30)  # Berlin: half an hour before the freeze
    await world.requested("znyx guardrails staging", ALICE)
    await world.bot.workflow.sweep()
    assert "Year-end freeze" not in block_text(world.slack.release_messages(1)[0]["blocks"])
    world.clock.at = utc(2026, 12, 19, 23, 0)  # it begins: nothing in the store changed
    await world.bot.workflow.sweep()  # what `serve` runs every 10 s
    assert "Year-end freeze" in block_text(world.slack.release_messages(1)[0]["blocks"])


async def test_many_locks_on_one_target_keep_its_messages_within_slacks_limits(
    world: World,
) -> None:
    """One block per hold once passed Slack's 50 blocks a message (`invalid_blocks`): a pending
    message could no longer be updated, and break-glass could not even post. Past a few, holds
    are counted, and every answer stays within Slack's limits."""
    world.clock.at = utc(2026, 6, 10, 9, 0)
    await world.requested("znyx guardrails staging", ALICE)  # 1, pending on znyx:guardrails:prod
    many = 48
    for k in range(1, many):  # each pattern covers znyx:guardrails:prod
        world.bot.store.add_lock(
            Lock(
                pattern="znyx:" + "*" * k,
                reason=f"incident {k} " + "x" * 280,
                by=DAVE,
                at=world.clock(),
            )
        )
    said = await world.answer("lock znyx:*:prod the last one", DAVE)  # redraws #1's message
    assert "Locked `znyx:*:prod`" in said and "1 open request now shows it" in said
    [shown] = world.slack.release_messages(1)
    text = block_text(shown["blocks"])
    assert f"… and {many - 3} more (`/promote locks` lists them all)" in text
    assert world.slack.refused == []

    await world.answer("cancel 1", ALICE)
    refused = await world.answer("znyx guardrails staging", ALICE)
    assert "can't be promoted now" in refused and f"… and {many - 3} more" in refused
    assert len(refused) < 4000

    await world.requested("znyx guardrails staging --emergency prod is down", ALICE)  # 2
    [posted] = world.slack.release_messages(2)
    assert len(posted["blocks"]) <= 50 and "🚨" in block_text(posted["blocks"])
    assert world.slack.refused == []

    listed = await world.answer("locks", BOB)
    assert len(listed) < 4000 and "newer locks" in listed and "*Next freeze*" in listed
    history = await world.answer("history", BOB)
    assert len(history) < 4000

    await world.sender.home_opened(DAVE)
    await world.slack.wait_for(lambda s: len(s.calls_to("views.publish")) == 1)
    home = world.slack.calls_to("views.publish")[0].args["view"]["blocks"]
    assert world.slack.refused == [] and len(home) <= 100
    assert f"… and {many - 10} more" in block_text(home)
    assert re.search(r"Last \d+ events", block_text(home))  # not pushed out by the locks
