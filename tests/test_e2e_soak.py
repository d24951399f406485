"""Stages in order, end to end: a soak holds a promotion until what it promotes has been live
long enough in its source stage, and a stage with `auto = true` promotes itself after its
source changes and soaks. Signed Slack requests in, the fake Slack and fake Znyx over HTTP, the
bot's clock moved by the test; the job `due` is run as its timer would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.model import BOT_ACTOR, State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, CONFIG, DAVE, World, block_text

GUARDRAILS = "proj-guardrails"
NEW_HASH = "sha256:" + "7" * 64
T0 = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)  # a Monday, 09:00 in Berlin


@pytest.fixture
def config_text(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", SOAK)


SOAK = (
    'timezone = "Europe/Berlin"\n'
    + CONFIG
    + """
[policies."znyx:guardrails:prod"]
soak = "2h"
"""
)

AUTO = (
    'timezone = "Europe/Berlin"\n'
    + CONFIG
    + """
[policies."znyx:guardrails:prod"]
approvals = 0
auto = true
soak = "2h"
channel = "C0AUTO"
"""
)


async def clicked(world: World, request_id: int, user: str) -> str:
    before = len(world.told())
    await world.sender.click(APPROVE, request_id, user)
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    return world.told()[-1]


def message(world: World, request_id: int = 1) -> str:
    """What the release message of `request_id` shows now."""
    request = world.bot.store.get(request_id)
    assert request is not None and request.message_ts is not None
    [shown] = [
        m for m in world.slack.messages.get(request.channel, []) if m["ts"] == request.message_ts
    ]
    return block_text(shown["blocks"])


async def until(condition: Callable[[], object], within: float = 5.0) -> None:
    """Wait for work after an ack (what follows a promotion) to be done."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (the store has no event to wait on)
            await asyncio.sleep(0.01)


def planned(world: World) -> list[str]:
    return [e.event for e in world.bot.store.history(target="znyx:guardrails:prod")]


async def staging_promoted_by_people(world: World) -> None:
    """At T0, dev → staging asked for by Alice and approved by Bob: prod is planned to
    follow it."""
    world.clock.at = T0
    await world.requested("znyx guardrails dev", ALICE)
    await world.sender.click(APPROVE, 1, BOB)
    assert "Promoted" in await world.finished()
    await until(lambda: planned(world) == ["auto-promotion planned"])


async def at(world: World, when: datetime) -> None:
    """Move the clock to `when` and run the job `due` once, as its timer would."""
    world.clock.at = when
    await world.bot.workflow.waits.run_due()
    await world.bot.workflow.stages.run_due()


async def test_a_soak_holds_a_prod_promotion_until_its_time_then_runs_it_once(
    world: World,
) -> None:
    world.clock.at = T0
    staging = world.znyx.publish(GUARDRAILS, "staging", NEW_HASH)  # live in staging from 09:00
    world.clock.at = T0 + timedelta(minutes=30)
    await world.requested("znyx guardrails staging", ALICE)
    shown = message(world)
    assert (
        f"🧪 Soaking in staging: v{staging.version} · sha256:777777777777 is live there since "
        "Mon 2026-06-01 09:00 Europe/Berlin; can run from Mon 2026-06-01 11:00 Europe/Berlin"
    ) in shown
    assert "Approve" in shown  # approvals are collected meanwhile

    said = await clicked(world, 1, BOB)
    assert said == "#1 has its approvals and runs at Mon 2026-06-01 11:00 Europe/Berlin."
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.APPROVED
    assert "⏳ Approved, runs at Mon 2026-06-01 11:00 Europe/Berlin" in message(world)

    await at(world, T0 + timedelta(hours=1, minutes=59))
    assert world.znyx.promote_calls == []
    await at(world, T0 + timedelta(hours=2))
    assert len(world.znyx.promote_calls) == 1
    assert "Promoted" in await world.finished()
    prod = world.znyx.active(GUARDRAILS, "prod")
    assert prod is not None and prod.policy_hash == NEW_HASH
    await at(world, T0 + timedelta(hours=3))  # once
    assert len(world.znyx.promote_calls) == 1
    events = [e.event for e in world.bot.store.history(request_id=1)]
    assert events.count("executing") == 1 and "waits" in events


async def test_approved_after_the_soak_it_runs_at_once(world: World) -> None:
    world.clock.at = T0
    world.znyx.publish(GUARDRAILS, "staging", NEW_HASH)
    world.clock.at = T0 + timedelta(hours=1)
    await world.requested("znyx guardrails staging", ALICE)
    world.clock.at = T0 + timedelta(hours=2, minutes=5)
    await world.sender.click(APPROVE, 1, BOB)
    assert "Promoted" in await world.finished()
    assert "🧪 Soaked in staging" not in message(world)  # ended: what it waited for is gone


async def test_when_the_source_changes_the_soak_clock_restarts_and_the_message_says_so(
    world: World,
) -> None:
    world.clock.at = T0
    world.znyx.publish(GUARDRAILS, "staging", NEW_HASH)
    world.clock.at = T0 + timedelta(minutes=30)
    await world.requested("znyx guardrails staging", ALICE)
    await clicked(world, 1, BOB)
    world.clock.at = T0 + timedelta(hours=1)
    again = world.znyx.publish(GUARDRAILS, "staging", NEW_HASH, by="ci")  # same policies, anew

    await at(world, T0 + timedelta(hours=2))  # its first time: staging is not the same bundle
    assert world.znyx.promote_calls == []
    shown = message(world)
    assert (
        f"↻ staging changed (v2 · sha256:777777777777 → v{again.version} · sha256:777777777777),"
        " so the soak clock restarted"
    ) in shown
    assert "⏳ Approved, runs at Mon 2026-06-01 12:00 Europe/Berlin" in shown
    assert "soak restarted" in [e.event for e in world.bot.store.history(request_id=1)]
    await at(world, T0 + timedelta(hours=3))
    assert len(world.znyx.promote_calls) == 1


async def test_a_source_that_can_not_be_read_never_lets_it_run_unsoaked(world: World) -> None:
    world.clock.at = T0
    world.znyx.publish(GUARDRAILS, "staging", NEW_HASH)
    await world.requested("znyx guardrails staging", ALICE)
    await clicked(world, 1, BOB)
    world.znyx.tokens.clear()  # every read is 401 from now on
    await at(world, T0 + timedelta(hours=2))
    assert world.znyx.promote_calls == []
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.APPROVED
    assert request.timing is not None and request.timing.soak_unread is not None
    assert "staging could not be read" in message(world)


@pytest.mark.parametrize("config_text", [AUTO], indirect=True)
async def test_an_auto_stage_promotes_itself_after_its_source_changes_and_soaks(
    world: World,
) -> None:
    await staging_promoted_by_people(world)
    staging = world.znyx.active(GUARDRAILS, "staging")
    assert staging is not None
    [plan] = world.bot.store.history(target="znyx:guardrails:prod")
    assert "from Mon 2026-06-01 11:00 Europe/Berlin" in plan.detail

    await at(world, T0 + timedelta(hours=1))
    assert len(world.posted()) == 1 and len(world.znyx.promote_calls) == 1
    await at(world, T0 + timedelta(hours=2))
    assert len(world.znyx.promote_calls) == 2  # staging → prod, asked for by the bot
    [auto] = [p for p in world.posted() if p["channel"] == "C0AUTO"]
    posted = block_text(auto["blocks"])
    assert "Requested by the bot" in posted
    assert "🤖 The bot asked for this itself: staging changed and this stage follows it" in posted
    request = world.bot.store.get(2)
    assert request is not None and request.requester == BOT_ACTOR
    assert request.channel == "C0AUTO" and request.state is State.SUCCEEDED
    prod = world.znyx.active(GUARDRAILS, "prod")
    assert prod is not None and prod.policy_hash == staging.policy_hash
    events = [(e.event, e.actor) for e in world.bot.store.history(request_id=2)]
    assert ("requested", BOT_ACTOR) in events and ("succeeded", BOT_ACTOR) in events

    await at(world, T0 + timedelta(hours=3))  # once: staging did not change again
    assert len(world.znyx.promote_calls) == 2
    # Rollback works, and the stage stays rolled back: staging runs what it ran.
    await world.sender.command("rollback 2", ALICE)
    await world.slack.wait_for(lambda s: len(world.znyx.activate_calls) == 1)
    await at(world, T0 + timedelta(hours=6))
    assert len(world.znyx.promote_calls) == 2
    assert world.bot.store.get(3).state is State.SUCCEEDED  # type: ignore[union-attr]


@pytest.mark.parametrize("config_text", [AUTO], indirect=True)
async def test_a_lock_holds_an_auto_promotion_until_it_is_lifted(world: World) -> None:
    await staging_promoted_by_people(world)
    await world.answer("lock znyx:*:prod incident 4521", DAVE)
    await at(world, T0 + timedelta(hours=2))
    assert len(world.znyx.promote_calls) == 1 and len(world.posted()) == 1
    held = [e for e in world.bot.store.history(target="znyx:guardrails:prod")]
    assert held[0].event == "auto-promotion held" and "incident 4521" in held[0].detail
    await at(world, T0 + timedelta(hours=2, minutes=30))  # still locked: asked again, held
    assert len(world.posted()) == 1
    await world.answer("unlock znyx:*:prod", DAVE)
    await at(world, T0 + timedelta(hours=2, minutes=31))
    assert len(world.znyx.promote_calls) == 2 and len(world.posted()) == 2


@pytest.mark.parametrize("config_text", [AUTO], indirect=True)
async def test_an_open_request_for_the_stage_is_not_doubled(world: World) -> None:
    await staging_promoted_by_people(world)
    world.clock.at = T0 + timedelta(hours=1)
    # Someone schedules prod themselves meanwhile: it is open (waiting) when the plan is due.
    said = await world.answer("znyx guardrails staging --at 15:00", ALICE)
    assert said.startswith("#2 is scheduled for Mon 2026-06-01 15:00 Europe/Berlin")
    await at(world, T0 + timedelta(hours=2))
    assert len(world.posted()) == 2 and world.bot.store.get(3) is None
    assert len(world.znyx.promote_calls) == 1
    await at(world, T0 + timedelta(hours=6))  # 15:00 in Berlin: the scheduled one runs
    assert len(world.znyx.promote_calls) == 2 and world.bot.store.get(3) is None


@pytest.mark.parametrize("config_text", [AUTO], indirect=True)
async def test_a_change_whose_read_failed_is_read_again_and_still_followed(world: World) -> None:
    world.clock.at = T0
    tokens = dict(world.znyx.tokens)
    world.znyx.publish(GUARDRAILS, "staging", NEW_HASH)  # the bot is told staging changed…
    world.znyx.tokens.clear()  # …but Znyx refuses every read just then
    stages = world.bot.workflow.stages
    await stages.changed(["znyx:proj-guardrails:staging"], known_at=T0)
    assert planned(world) == []
    world.znyx.tokens.update(tokens)
    await at(world, T0 + timedelta(minutes=1))  # read again: planned for when it has soaked
    assert planned(world) == ["auto-promotion planned"] and world.posted() == []
    await at(world, T0 + timedelta(hours=2))
    assert len(world.znyx.promote_calls) == 1
    prod = world.znyx.active(GUARDRAILS, "prod")
    assert prod is not None and prod.policy_hash == NEW_HASH


async def _held_at_its_time(world: World) -> None:
    """#1 staging → prod, approved while soaking, then held by a lock when its time came."""
    world.clock.at = T0
    world.znyx.publish(GUARDRAILS, "staging", NEW_HASH)
    world.clock.at = T0 + timedelta(minutes=30)
    await world.requested("znyx guardrails staging", ALICE)
    await clicked(world, 1, BOB)
    await world.answer("lock znyx:*:prod incident 4521", DAVE)
    await at(world, T0 + timedelta(hours=2))
    request = world.bot.store.get(1)
    assert request is not None and request.due_at is None
    assert "Did not run" in message(world)


@pytest.mark.parametrize("config_text", [SOAK], indirect=True)
async def test_a_held_request_does_not_run_by_itself_when_its_source_changes(world: World) -> None:
    await _held_at_its_time(world)
    await world.answer("unlock znyx:*:prod", DAVE)
    world.clock.at = T0 + timedelta(hours=2, minutes=10)
    world.znyx.publish(GUARDRAILS, "staging", NEW_HASH, by="ci")  # staging changes again
    request = world.bot.store.get(1)
    assert request is not None and request.timing is not None
    await world.bot.workflow.waits.retime(request.timing.soak_thing or "")
    await at(world, T0 + timedelta(hours=5))
    assert world.znyx.promote_calls == []  # it was told it waits for people: nobody approved
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.APPROVED and request.due_at is None


@pytest.mark.parametrize("config_text", [SOAK], indirect=True)
async def test_a_held_request_that_expires_is_not_said_to_lack_its_approvals(world: World) -> None:
    from bot.core import cdevents

    await _held_at_its_time(world)
    request = world.bot.store.get(1)
    assert request is not None
    world.clock.at = request.expires_at + timedelta(seconds=1)
    await world.bot.workflow.sweep()
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.EXPIRED
    event = cdevents.cdevent("expired", request, world.clock.at, source="promote-bot/test")
    assert event["subject"]["content"]["errors"] == "expired before it could run"
    await world.bot.workflow.deliver_due()
    told = [m for m in world.dms(ALICE) if "expired" in m]
    assert told and all("expired before it could run" in m for m in told)
