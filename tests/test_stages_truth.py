"""What follows a stage hears of its changes from the truth between promotions too: a Znyx
webhook (signed, over real HTTP) saying a stage changed outside the bot, and a background
read of an open request's preview (drift) finding one moved, start the soak clock there and
have the stage after it promote itself once it has soaked; a soaking request is timed again
at once. The bot's timed jobs run as `serve` runs them; the clock is the test's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.cli import scheduler_for
from bot.core.model import BOT_ACTOR, State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, CONFIG, ZNYX_WEBHOOK_SECRET, World, block_text

GUARDRAILS = "proj-guardrails"
T0 = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
FEED = "CZNYXFEED"
AUTO_PROD = """
[policies."znyx:guardrails:prod"]
approvals = 0
auto = true
soak = "2h"
"""


@pytest.fixture
def config_text() -> str:
    return (
        'timezone = "Europe/Berlin"\n'
        + CONFIG.replace('org = "org-test"', f'org = "org-test"\nchannel = "{FEED}"')
        + AUTO_PROD
    )


@pytest.fixture
async def running(world: World) -> AsyncIterator[World]:
    """The world at T0 with the bot's timed jobs running, as `serve` runs them."""
    world.clock.at = T0
    async with scheduler_for(world.bot):
        yield world


async def until(condition: Callable[[], object], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (the store has no event to wait on)
            await asyncio.sleep(0.02)


def events(world: World, target: str = "znyx:guardrails:prod") -> list[str]:
    return [e.event for e in world.bot.store.history(target=target)]


def auto_posts(world: World) -> list[str]:
    """What the bot posted in the Znyx channel (the feed and its own requests)."""
    return [block_text(m["blocks"]) for m in world.slack.messages.get(FEED, [])]


async def test_a_webhook_of_a_change_outside_the_bot_is_followed_after_its_soak(
    running: World,
) -> None:
    world = running
    world.znyx.webhooks.append((world.bot_url + "/webhooks/znyx", ZNYX_WEBHOOK_SECRET))
    new = world.znyx.ui_promote(GUARDRAILS, "dev", by="ui:carol")  # staging, via Znyx's UI
    assert not isinstance(new, str)
    await until(lambda: "auto-promotion planned" in events(world))
    assert any("changed outside promote-bot" in p for p in auto_posts(world))
    [plan] = [e for e in world.bot.store.history(target="znyx:guardrails:prod")]
    assert "from Mon 2026-06-01 11:00 Europe/Berlin" in plan.detail  # the soak, from the change

    world.clock.at = T0 + timedelta(hours=1)
    await asyncio.sleep(1.5)  # the job `due` runs: not yet
    assert world.znyx.promote_calls == []
    world.clock.at = T0 + timedelta(hours=2)
    await until(lambda: len(world.znyx.promote_calls) == 1)  # within the job's second
    request = world.bot.store.get(1)
    assert request is not None and request.requester == BOT_ACTOR
    await until(lambda: world.bot.store.get(1).state is State.SUCCEEDED)  # type: ignore[union-attr]
    prod = world.znyx.active(GUARDRAILS, "prod")
    assert prod is not None and prod.policy_hash == new.policy_hash
    posted = [block_text(p["blocks"]) for p in world.posted() if p["channel"] == FEED]
    line = "🤖 The bot asked for this itself: staging changed and this stage follows it"
    assert any(line in p for p in posted)


async def test_a_drift_read_that_finds_a_stage_moved_is_followed_after_its_soak(
    running: World,
) -> None:
    world = running  # no webhooks: only the background reads see Znyx change
    await world.requested("znyx guardrails dev", ALICE)  # #1 dev → staging, left open
    new = world.znyx.ui_promote(GUARDRAILS, "dev", by="ui:carol")  # staging moves outside
    assert not isinstance(new, str)
    world.clock.at = T0 + timedelta(minutes=5)  # one drift period on: #1 is read again
    await until(lambda: "auto-promotion planned" in events(world))
    assert "moved since asked" in [e.event for e in world.bot.store.history(request_id=1)]
    world.clock.at = T0 + timedelta(minutes=5, hours=2)  # soaked since the bot saw it move
    await until(lambda: world.bot.store.get(2) is not None)
    auto = world.bot.store.get(2)
    assert auto is not None and auto.requester == BOT_ACTOR and auto.channel == FEED
    await until(lambda: world.bot.store.get(2).state is State.SUCCEEDED)  # type: ignore[union-attr]
    prod = world.znyx.active(GUARDRAILS, "prod")
    assert prod is not None and prod.policy_hash == new.policy_hash


async def test_a_soaking_request_is_timed_again_when_a_webhook_says_its_source_moved(
    world: World,
) -> None:
    world.znyx.webhooks.append((world.bot_url + "/webhooks/znyx", ZNYX_WEBHOOK_SECRET))
    async with scheduler_for(world.bot):
        world.clock.at = T0
        # #1, staging → prod (no approvals needed): it waits for its time and its soak
        await world.requested("znyx guardrails staging --at 10:00", ALICE)
        await until(lambda: "waits" in [e.event for e in world.bot.store.history(request_id=1)])
        assert world.bot.store.get(1).state is State.APPROVED  # type: ignore[union-attr]
        world.clock.at = T0 + timedelta(minutes=30)
        world.znyx.ui_publish(GUARDRAILS, "staging", "sha256:" + "7" * 64, by="ci")
        await until(
            lambda: "soak restarted" in [e.event for e in world.bot.store.history(request_id=1)]
        )
    request = world.bot.store.get(1)
    assert request is not None and request.timing is not None
    assert request.timing.soak_until == T0 + timedelta(minutes=30, hours=2)
    [shown] = world.slack.release_messages(1)
    assert "the soak clock restarted" in block_text(shown["blocks"])


async def test_an_unknown_promotion_into_the_source_confirmed_by_znyx_is_followed(
    running: World,
) -> None:
    world = running
    world.znyx.webhooks.append((world.bot_url + "/webhooks/znyx", ZNYX_WEBHOOK_SECRET))
    await world.requested("znyx guardrails dev", ALICE)  # #1 dev → staging
    world.znyx.fail_next(502, "Bad Gateway", after_doing=True)  # it landed; the answer did not
    await world.sender.click(APPROVE, 1, BOB)
    await until(lambda: "resolved: succeeded" in [e.event for e in world.bot.store.history()])
    await until(lambda: "auto-promotion planned" in events(world))  # told once it is known
    staging = world.znyx.active(GUARDRAILS, "staging")
    assert staging is not None
    world.clock.at = T0 + timedelta(hours=2)
    await until(lambda: world.bot.store.get(2) is not None)
    await until(lambda: world.bot.store.get(2).state is State.SUCCEEDED)  # type: ignore[union-attr]
    prod = world.znyx.active(GUARDRAILS, "prod")
    assert prod is not None and prod.policy_hash == staging.policy_hash
    assert len(world.znyx.promote_calls) == 2  # #1 once (read, never sent again), then #2
