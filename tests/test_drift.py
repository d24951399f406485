"""Drift without webhooks: open requests' previews read again in the background, for every
provider, at a bounded rate, over real HTTP against the fake providers; what moved shows on
the release message and answers an approval, and nothing is written."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bot.cli import scheduler_for
from bot.core.drift import TICK_SECONDS
from bot.core.model import NewRequest, Preview, State
from bot.providers.whop import WhopPromote
from tests import asc_contract
from tests.asc_train import seed_train
from tests.conftest import ALICE, CAROL, DAVE, STOREFRONT, World, block_text
from tests.test_health import samples, value

PERIOD = timedelta(seconds=300)  # PROMOTE_BOT_DRIFT_SECONDS's default, as the world runs


@pytest.fixture
async def running(world: World) -> AsyncIterator[World]:
    """The world with the bot's timed jobs running, as `serve` runs them."""
    async with scheduler_for(world.bot):
        yield world


def shown(world: World, request_id: int) -> str:
    [message] = world.slack.release_messages(request_id)
    return block_text(message["blocks"])


def one_period_on(world: World, request_id: int, periods: int = 1) -> None:
    """Move the bot's clock one drift period past the request's creation (or more)."""
    request = world.bot.store.get(request_id)
    assert request is not None
    world.clock.at = request.created_at + PERIOD * periods


async def test_a_whop_production_build_changed_elsewhere_is_caught_within_one_period(
    running: World,
) -> None:
    world = running
    builds = world.builds
    await world.requested(f"whop storefront {builds.ios_approved}", ALICE)
    assert "Out of date" not in shown(world, 1)
    elsewhere = world.whop.add_build(STOREFRONT, "ios", "approved").id
    world.whop.promote_elsewhere(elsewhere)  # someone used Whop's dashboard

    one_period_on(world, 1)
    await world.slack.wait_for(lambda s: "Out of date" in shown(world, 1), within=3)
    text = shown(world, 1)
    assert (
        f"the production ios build: {builds.ios_prod} when this was asked, {elsewhere} now" in text
    )
    assert "Approving will not promote it" in text and "Approve" in text  # cancel stays possible

    await world.sender.click("promote_approve", 1, DAVE)
    await world.slack.wait_for(lambda s: any("can't be approved" in t for t in world.told()))
    assert world.whop.promote_calls == []
    page = samples(world.bot.metrics.render().decode())
    assert value(page, "promote_bot_drift_reads_total", provider="whop", outcome="moved") >= 1
    assert value(page, "promote_bot_drift_paused", provider="whop") == 0

    # It moves back: the preview holds again, the message says so, and approving promotes.
    world.whop.promote_elsewhere(builds.ios_prod)
    one_period_on(world, 1, periods=2)
    await world.slack.wait_for(lambda s: "Out of date" not in shown(world, 1), within=3)
    events = [e.event for e in reversed(world.bot.store.history(request_id=1))]
    assert events[-3:] == ["moved since asked", "approval refused", "preview holds again"]
    await world.sender.click("promote_approve", 1, DAVE)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1, within=5)
    assert len(world.whop.promote_calls) == 1
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED


async def test_an_app_store_version_given_another_build_elsewhere_is_caught_within_one_period(
    running: World,
) -> None:
    world = running
    ids = world.asc_ids
    await world.requested("appstore ios 2.4.0 153", ALICE)
    world.asc.versions[ids.v240].build_id = ids.b155_exempt  # attached in App Store Connect

    one_period_on(world, 1)
    await world.slack.wait_for(lambda s: "Out of date" in shown(world, 1), within=3)
    text = shown(world, 1)
    assert (
        f"the build attached to ios 2.4.0: 152 ({ids.b152_attached}) when this was asked, "
        f"155 ({ids.b155_exempt}) now" in text
    )
    assert "/promote cancel 1" in text
    assert "Request #1 is cancelled" in await world.answer("cancel 1")
    assert world.asc.patches == []


async def test_reads_are_spread_over_the_period_bounded_and_paused_while_a_provider_refuses(
    world: World,
) -> None:
    """Twenty open requests asked at once: their first reads fall over the whole period, no
    run reads more than its share, and a provider answering 429 is left alone for a while."""
    store, drift, whop = world.bot.store, world.bot.workflow.drift, world.whop
    start = world.clock.at = world.bot.workflow.clock()
    for n in range(20):
        app = f"app_rate{n:02d}"
        production = whop.add_build(app, "ios", "approved", production=True).id
        candidate = whop.add_build(app, "ios", "approved").id
        action = WhopPromote(app=app, app_id=app, build_id=candidate, platform="ios")
        store.create_request(
            NewRequest(
                action,
                requester=ALICE,
                channel="CRELEASES",
                preview=Preview(expect={"production": production}),
                created_at=start,
                expires_at=start + timedelta(days=1),
            )
        )
    whop.calls.clear()
    assert await drift.tick() == 0  # none is due yet: each gets its point of the period
    firsts = sorted(d.next_at for d in store.drift_due(start + PERIOD, 100) if d.next_at)
    assert len(firsts) == 20 and len(set(firsts)) == 20
    assert firsts[0] - start < PERIOD / 10 and firsts[-1] - start > PERIOD * 9 / 10
    gaps = [b - a for a, b in itertools.pairwise(firsts)]
    assert max(gaps) < PERIOD / 5  # spread out, not bunched

    world.clock.at = start + PERIOD  # all of them due at once
    budget = round(drift.rate * TICK_SECONDS)
    assert await drift.tick() == budget  # a few a second, however many are due
    assert len(whop.calls) == 2 * budget  # the build and its platform's production build
    assert all(c.method == "GET" for c in whop.calls)

    whop.read_failures = 1000  # Whop answers 429 from now on
    await drift.tick()
    whop.read_failures = 0
    whop.calls.clear()
    assert drift.is_paused("whop", world.clock.at)
    assert await drift.tick() == 0 and whop.calls == []  # left alone while paused
    page = samples(world.bot.metrics.render().decode())
    assert value(page, "promote_bot_drift_paused", provider="whop") == 1
    assert value(page, "promote_bot_drift_reads_total", provider="whop", outcome="failed") >= 1

    world.clock.at = start + PERIOD + timedelta(minutes=1)  # the pause is over
    assert await drift.tick() == budget
    assert not drift.is_paused("whop", world.clock.at)
    read = [e for e in store.history() if e.event == "moved since asked"]
    assert read == []  # nothing moved: no message changed


async def test_a_release_train_step_whose_phased_release_was_paused_elsewhere_is_caught(
    running: World,
) -> None:
    world = running
    train = seed_train(world.asc, world.asc_ids)
    await world.requested("appstore phased ios 2.3.0 pause", CAROL)
    world.asc.train.phased[train.phased230].state = "PAUSED"  # paused in App Store Connect

    one_period_on(world, 1)
    await world.slack.wait_for(lambda s: "Out of date" in shown(world, 1), within=3)
    assert (
        "App Store Connect shows the phased release of ios 2.3.0: ACTIVE when this was asked, "
        "PAUSED now" in shown(world, 1)
    )
    assert world.asc.writes() == []
    asc_contract.check(world.asc.calls)
