"""Schedules and allow windows, end to end: `--at` read in the requester's Slack time zone
(users.info), approvals collected now, and at its time everything checked again; `[[window]]`
tables hold approved requests until the next opening. Signed Slack requests in, the fake Slack
and fake Znyx over HTTP, the bot's clock moved by the test and the job `due` run as its timer
would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, CONFIG, DAVE, World, block_text
from tests.test_e2e_soak import at, clicked, message

GUARDRAILS = "proj-guardrails"
T0 = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # Monday, 08:00 in Berlin

WINDOWS = (
    'timezone = "Europe/Berlin"\n'
    + CONFIG
    + """
[[window]]
targets = ["znyx:*:prod"]
reason = "Release window"
weekly = "Tue 09:00 - Tue 16:00"
timezone = "Europe/Berlin"

[policies."znyx:*:prod"]
approvals = 1
emergency_approvals = 2
"""
)


@pytest.fixture
def config_text(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", CONFIG)


async def scheduled(world: World, when: str = "10:00", user: str = ALICE) -> str:
    """Ask for staging → prod `--at when`, as `user` in Berlin; what they were told."""
    world.slack.time_zones[user] = "Europe/Berlin"
    before = len(world.posted())
    said = await world.answer(f"znyx guardrails staging --at {when}", user)
    assert len(world.posted()) == before + 1, said
    return said


async def test_a_scheduled_request_runs_at_its_time(world: World) -> None:
    world.clock.at = T0
    said = await scheduled(world)
    assert said == (
        "#1 is scheduled for Mon 2026-06-01 10:00 Europe/Berlin (your time zone in Slack). It "
        "runs then if it has its 1 approval by then and nothing holds it; until then "
        "`/promote cancel 1` cancels it."
    )
    assert "🕘 Scheduled for Mon 2026-06-01 10:00 Europe/Berlin" in message(world)
    assert [c.args["user"] for c in world.slack.calls_to("users.info")] == [ALICE]

    world.clock.at = T0 + timedelta(minutes=30)
    assert await clicked(world, 1, BOB) == (
        "#1 has its approvals and runs at Mon 2026-06-01 10:00 Europe/Berlin."
    )
    assert "⏳ Approved, runs at Mon 2026-06-01 10:00 Europe/Berlin" in message(world)
    await at(world, T0 + timedelta(hours=1, minutes=59))
    assert world.znyx.promote_calls == []
    await at(world, T0 + timedelta(hours=2))
    assert len(world.znyx.promote_calls) == 1
    assert "Promoted" in await world.finished()
    await at(world, T0 + timedelta(hours=3))
    assert len(world.znyx.promote_calls) == 1


async def test_a_cancelled_scheduled_request_does_not_run(world: World) -> None:
    world.clock.at = T0
    await scheduled(world)
    await clicked(world, 1, BOB)
    assert await world.answer("cancel 1 not today", ALICE) == "Request #1 is cancelled."
    await at(world, T0 + timedelta(hours=2))
    assert world.znyx.promote_calls == []
    assert world.bot.store.get(1).state is State.CANCELLED  # type: ignore[union-attr]


async def test_a_locked_target_at_its_time_does_not_run_and_the_requester_is_told(
    world: World,
) -> None:
    world.clock.at = T0
    await scheduled(world)
    await clicked(world, 1, BOB)
    await world.answer("lock znyx:*:prod incident 4521", DAVE)
    await at(world, T0 + timedelta(hours=2))
    assert world.znyx.promote_calls == []
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.APPROVED and request.due_at is None
    shown = message(world)
    assert "⏸ Did not run at 2026-06-01 08:00 UTC: 🔒 `znyx:*:prod` is locked" in shown
    assert "Its approvals are kept: approve it again once nothing holds it" in shown
    [note] = [block_text(t["blocks"]) for t in world.thread()]
    assert note.startswith("⏸ #1: Did not run at 2026-06-01 08:00 UTC: 🔒 `znyx:*:prod` is locked")
    await world.bot.workflow.deliver_due()
    [dm] = [d for d in world.dms(ALICE) if "did not run" in d]
    assert "Your request #1 did not run when its time came" in dm and "incident 4521" in dm
    await at(world, T0 + timedelta(hours=3))  # it does not run by itself later
    assert world.znyx.promote_calls == []
    await world.answer("unlock znyx:*:prod", DAVE)
    await world.sender.click(APPROVE, 1, DAVE)  # a person decides it runs now
    await world.slack.wait_for(lambda s: len(world.thread()) == 2)
    assert "Promoted" in block_text(world.thread()[-1]["blocks"])


async def test_a_scheduled_request_whose_target_moved_does_not_run(world: World) -> None:
    world.clock.at = T0
    await scheduled(world)
    await clicked(world, 1, BOB)
    world.znyx.publish(GUARDRAILS, "prod", "sha256:" + "e" * 64, by="someone-else")
    await at(world, T0 + timedelta(hours=2))
    assert world.znyx.promote_calls == []
    thread = await world.finished()
    assert "prod's active bundle was v1" in thread and "nothing was changed" in thread
    assert world.bot.store.get(1).state is State.FAILED  # type: ignore[union-attr]


async def test_a_scheduled_request_not_approved_by_its_time_expires_then(world: World) -> None:
    world.clock.at = T0
    await scheduled(world, "tomorrow 11:00")  # 27 hours ahead: past the 24 h expiry
    request = world.bot.store.get(1)
    then = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)
    assert request is not None and request.expires_at == then  # approvals may come until then
    await at(world, T0 + timedelta(hours=25))
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]
    await at(world, then)
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.EXPIRED
    assert world.znyx.promote_calls == []
    [entry] = [e for e in world.bot.store.history(request_id=1) if e.event == "expired"]
    assert entry.detail == "scheduled for 2026-06-02 09:00 UTC and not approved by then"
    await world.bot.workflow.deliver_due()
    assert any("expired" in d for d in world.dms(ALICE))


async def test_one_not_approved_by_an_earlier_time_expires_at_that_time(world: World) -> None:
    world.clock.at = T0
    await scheduled(world)  # 10:00 in Berlin, in 2 hours
    await at(world, T0 + timedelta(hours=2))
    assert world.bot.store.get(1).state is State.EXPIRED  # type: ignore[union-attr]
    said = await clicked(world, 1, BOB)
    assert said == "Request #1 has expired; nothing to approve."
    assert world.znyx.promote_calls == []


@pytest.mark.parametrize(
    ("when", "says"),
    [
        ("07:00", "is Mon 2026-06-01 07:00 Europe/Berlin, which has passed"),
        ("2026-07-15 09:00", "more than 30 days ahead"),
    ],
)
async def test_a_time_in_the_past_or_too_far_ahead_is_refused_up_front(
    world: World, when: str, says: str
) -> None:
    world.clock.at = T0
    world.slack.time_zones[ALICE] = "Europe/Berlin"
    said = await world.answer(f"znyx guardrails staging --at {when}", ALICE)
    assert says in said and "Nothing was posted." in said
    assert world.posted() == [] and world.znyx.calls == []  # not even a preview read


async def test_without_a_slack_time_zone_the_config_zone_is_used_and_dst_is_stated(
    world: World,
) -> None:
    world.clock.at = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)  # UTC has no DST: use Berlin
    world.slack.missing_users.add(ALICE)  # users.info: user_not_found
    said = await world.answer("znyx guardrails staging --at tomorrow 02:30", ALICE)
    assert said.startswith(
        "#1 is scheduled for Sun 2026-03-29 02:30 UTC (the bot's time zone: the chat did not "
        "say yours)."
    )


@pytest.mark.parametrize("config_text", ['timezone = "Europe/Berlin"\n' + CONFIG], indirect=True)
async def test_a_time_in_a_dst_gap_runs_when_the_clocks_jump_and_says_so(world: World) -> None:
    world.clock.at = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    said = await world.answer("znyx guardrails staging --at tomorrow 02:30", ALICE)
    assert (
        "02:30 does not exist on 2026-03-29 in Europe/Berlin (the clocks jump forward): it "
        "means 03:00 CEST, when they do." in said
    )
    request = world.bot.store.get(1)
    assert request is not None and request.timing is not None
    assert request.timing.run_at == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)


async def test_pending_and_the_app_home_show_when_a_waiting_request_runs(world: World) -> None:
    world.clock.at = T0
    await scheduled(world)
    await clicked(world, 1, BOB)
    pending = await world.answer("pending", ALICE)
    assert "#1> *guardrails policy bundle: staging → prod*" in pending
    assert "runs at Mon 2026-06-01 10:00 Europe/Berlin" in pending
    await world.sender.home_opened(ALICE)
    await world.slack.wait_for(lambda s: len(s.calls_to("views.publish")) == 1)
    home = block_text(world.slack.calls_to("views.publish")[0].args["view"]["blocks"])
    assert "🕘 runs at Mon 2026-06-01 10:00 Europe/Berlin" in home  # among her open requests
    status = await world.answer("status 1", ALICE)
    assert "🕘 Scheduled for Mon 2026-06-01 10:00 Europe/Berlin" in status


# --- allow windows ------------------------------------------------------------------------


@pytest.mark.parametrize("config_text", [WINDOWS], indirect=True)
async def test_windows_hold_approved_requests_until_the_next_opening(world: World) -> None:
    world.clock.at = T0  # Monday: outside the Tuesday window
    await world.requested("znyx guardrails staging", ALICE)
    assert (
        "🪟 Runs only in the window Tue 09:00–16:00 Europe/Berlin (it opens Tue 2026-06-02 "
        "09:00 Europe/Berlin)" in message(world)
    )
    said = await clicked(world, 1, BOB)
    assert said == "#1 has its approvals and runs at Tue 2026-06-02 09:00 Europe/Berlin."
    assert "🪟 Waits for the window Tue 09:00–16:00 Europe/Berlin" in message(world)
    await at(world, datetime(2026, 6, 2, 6, 59, tzinfo=UTC))
    assert world.znyx.promote_calls == []
    await at(world, datetime(2026, 6, 2, 7, 0, tzinfo=UTC))  # Tuesday 09:00 CEST
    assert len(world.znyx.promote_calls) == 1
    assert "Promoted" in await world.finished()


@pytest.mark.parametrize("config_text", [WINDOWS], indirect=True)
async def test_inside_a_window_it_runs_at_once_and_break_glass_passes_windows(
    world: World,
) -> None:
    world.clock.at = datetime(2026, 6, 2, 8, 0, tzinfo=UTC)  # Tuesday 10:00: inside
    await world.requested("znyx guardrails staging", ALICE)
    await world.sender.click(APPROVE, 1, BOB)
    assert "Promoted" in await world.finished()

    world.clock.at = T0 + timedelta(days=7)  # the next Monday: outside
    world.znyx.publish(GUARDRAILS, "staging", "sha256:" + "8" * 64)
    await world.requested("znyx guardrails staging --emergency hotfix 12", ALICE)
    assert "🪟" not in message(world, 2)
    await clicked(world, 2, BOB)
    await world.sender.click(APPROVE, 2, DAVE)
    await world.slack.wait_for(lambda s: len(world.thread()) == 2)
    assert len(world.znyx.promote_calls) == 2


@pytest.mark.parametrize("config_text", [WINDOWS], indirect=True)
async def test_a_schedule_outside_every_allow_window_is_refused_up_front(world: World) -> None:
    world.clock.at = T0  # Monday
    said = await world.answer("znyx guardrails staging --at 10:00", ALICE)
    assert said == (
        "`--at 10:00` is Mon 2026-06-01 10:00 Europe/Berlin, outside the allow window of "
        "`znyx:guardrails:prod`: Tue 09:00–16:00 Europe/Berlin (the next opens Tue 2026-06-02 "
        "09:00 Europe/Berlin). Pick a time inside it; nothing was posted."
    )
    assert world.posted() == []
    said = await world.answer("znyx guardrails staging --at tomorrow 10:00", ALICE)
    assert said.startswith("#1 is scheduled for Tue 2026-06-02 10:00 Europe/Berlin")


@pytest.mark.parametrize("config_text", [WINDOWS], indirect=True)
async def test_a_rollback_does_not_wait_for_the_next_window(world: World) -> None:
    world.clock.at = datetime(2026, 6, 2, 13, 50, tzinfo=UTC)  # Tuesday 15:50: inside
    await world.requested("znyx guardrails staging", ALICE)
    await world.sender.click(APPROVE, 1, BOB)
    assert "Promoted" in await world.finished()
    world.clock.at = datetime(2026, 6, 2, 14, 30, tzinfo=UTC)  # 16:30: it went wrong
    await world.requested("rollback 1", ALICE)
    assert "🪟" not in message(world, 2)
    await world.sender.click(APPROVE, 2, BOB)
    await world.slack.wait_for(lambda s: len(world.znyx.activate_calls) == 1)


async def test_the_due_jobs_bound_never_cuts_off_a_promotion_it_started(world: World) -> None:
    """Promotions whose time came run as work in flight, each under its own deadline: the
    `due` job's bound (shortened here to 1 s) only starts them, and two slow ones both finish."""
    from bot.core.scheduler import Scheduler

    world.clock.at = T0
    world.slack.time_zones[ALICE] = "Europe/Berlin"
    await world.answer("znyx guardrails staging --at 10:00", ALICE)  # #1 staging → prod
    await world.answer("znyx guardrails dev --at 10:00", ALICE)  # #2 dev → staging
    await clicked(world, 1, BOB)
    await clicked(world, 2, BOB)
    world.znyx.promote_delay = 1.5  # each write takes longer than the job may
    scheduler = Scheduler()
    world.bot.workflow.schedule(scheduler)
    scheduler.jobs["due"].timeout = 1.0
    world.clock.at = T0 + timedelta(hours=2)
    assert await scheduler.run_once("due")
    assert await scheduler.run_once("due")  # while the first run promotes: nothing doubled
    assert await world.bot.workflow.drain(within=20)
    states = {i: world.bot.store.get(i).state for i in (1, 2)}  # type: ignore[union-attr]
    assert states == {1: State.SUCCEEDED, 2: State.SUCCEEDED}
    assert len(world.znyx.promote_calls) == 2
    assert scheduler.stats["due"].timeouts == 0
