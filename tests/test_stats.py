"""What the releases add up to, from a known history (tests/history.py): every number of
`stats` and of the metrics, on SQLite and on PostgreSQL; the words; `/promote stats` and the
App Home through Slack."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

import pytest

from bot.core import stats
from bot.core.figures import Durations, TargetFigures
from bot.core.model import kinds_for
from bot.core.stats import BOUNDS
from bot.core.texts import TEXT_LIMIT
from bot.metrics import FIGURES_SECONDS, Metrics
from bot.store import AnyStore
from tests.conftest import ALICE, CAROL, MALLORY, World, block_text
from tests.history import (
    DAY,
    HOUR,
    MINUTE,
    NOW,
    PROMOTE,
    STAGING,
    WHOP,
    ZNYX,
    run,
    seed,
    seed_beside,
)
from tests.test_health import samples, value

Factory = Callable[[], AnyStore]

ZNYX_30 = TargetFigures(
    target=ZNYX,
    succeeded=4,  # P1, P2, P6, and P7 (asked before the window, ended in it)
    failed=1,
    unknown=1,
    rolled_back=1,  # P2, by R1
    stopped=1,  # P5, rejected
    rollbacks=1,  # R1 (R2 failed)
    emergencies=1,  # P6
    lead_p50=3600.0,  # of 600, 3600, 7200, 172800: the 2nd
    lead_p90=172800.0,  # the 4th
    wait_p50=600.0,  # of 120, 300, 600, 1200, 1800, 86400: the 3rd
    restore_p50=1800.0,
)
WHOP_30 = TargetFigures(
    target=WHOP, succeeded=1, stopped=1, lead_p50=5400.0, lead_p90=5400.0, wait_p50=3600.0
)
ZNYX_7 = TargetFigures(
    target=ZNYX,
    succeeded=1,  # P6
    unknown=1,  # P4, ended an hour into the window
    stopped=1,
    emergencies=1,
    lead_p50=600.0,
    lead_p90=600.0,
    wait_p50=120.0,  # of 120 (P6) and 300 (P4): the 1st
)


def test_every_number_of_the_last_30_and_7_days(store_factory: Factory) -> None:
    store = store_factory()
    seed(store)
    assert store.target_figures(NOW - 30 * DAY, NOW) == [WHOP_30, ZNYX_30]
    assert store.target_figures(NOW - 7 * DAY, NOW) == [
        TargetFigures(target=WHOP, succeeded=1, stopped=1, lead_p50=5400.0, lead_p90=5400.0,
                      wait_p50=3600.0),
        ZNYX_7,
    ]  # fmt: skip
    # Another process reads the same numbers.
    assert store_factory().target_figures(NOW - 30 * DAY, NOW) == [WHOP_30, ZNYX_30]


def test_a_pattern_and_the_kinds_someone_may_see(store_factory: Factory) -> None:
    store = store_factory()
    seed(store)
    since = NOW - 30 * DAY
    assert store.target_figures(since, NOW, pattern="znyx:*:prod") == [ZNYX_30]
    assert store.target_figures(since, NOW, pattern="znyx:*") == [ZNYX_30]
    assert store.target_figures(since, NOW, pattern="whop:store?ront") == [WHOP_30]
    assert store.target_figures(since, NOW, pattern="znyx:guardrails:dev") == []
    assert store.target_figures(since, NOW, pattern="znyx_guardrails%") == []  # no LIKE magic
    builds = kinds_for({"developer:manage_builds"})
    assert "whop.promote" in builds and "znyx.promote" not in builds
    assert store.target_figures(since, NOW, kinds=builds) == [WHOP_30]
    assert store.target_figures(since, NOW, kinds=()) == []
    both = kinds_for({"developer:manage_builds", "bundle:publish"})
    assert store.target_figures(since, NOW, kinds=both) == [WHOP_30, ZNYX_30]


def test_a_request_counts_where_it_ended_and_a_late_success_counts_once(
    store_factory: Factory,
) -> None:
    """An `unknown` promotion that a later reading found succeeded (a recovery's correction,
    or a webhook's) is a success, ended when it was corrected: counted by its state, whatever
    the event was called."""
    from bot.core.model import Outcome, State

    store = store_factory()
    ids = seed(store)
    fixed = Outcome(state="succeeded", headline="Znyx shows it now")
    assert store.transition(
        ids["P4"], [State.UNKNOWN], State.SUCCEEDED, at=NOW - DAY, outcome=fixed
    )
    [_, znyx] = store.target_figures(NOW - 30 * DAY, NOW)
    assert (znyx.succeeded, znyx.unknown, znyx.failed) == (5, 0, 1)
    assert stats.failure_rate(znyx) == pytest.approx(2 / 6)


def test_changes_outside_the_bot_and_previews_that_moved(store_factory: Factory) -> None:
    """Issue 26's milestones, which only the audit log records, counted by when they were
    recorded: a target with only those is listed too; a preview that moved twice is one
    request; whoever may see a provider's requests sees its changes outside the bot."""
    store = store_factory()
    seed_beside(store, seed(store))
    since = NOW - 30 * DAY
    whop = dataclasses.replace(WHOP_30, drifted=1)  # Q1
    znyx = dataclasses.replace(ZNYX_30, outside=2, drifted=1)  # 20 and 3 days ago; P5
    staging = TargetFigures(target=STAGING, outside=1)
    assert store.target_figures(since, NOW) == [whop, znyx, staging]
    [_, week, _] = store.target_figures(NOW - 7 * DAY, NOW)
    assert (week.outside, week.drifted) == (1, 1)
    assert store.target_figures(since, NOW, pattern="znyx:*:prod") == [znyx]
    builds = kinds_for({"developer:manage_builds"})
    assert store.target_figures(since, NOW, kinds=builds, providers=("whop",)) == [whop]
    bundles = kinds_for({"bundle:publish"})
    assert store.target_figures(since, NOW, kinds=bundles, providers=("znyx",)) == [
        znyx,
        staging,
    ]
    # Requests of kinds one may not see hide their previews; providers name whose changes.
    assert store.target_figures(since, NOW, kinds=bundles) == [dataclasses.replace(znyx, outside=0)]
    totals = store.delivery_totals(BOUNDS)
    assert dict(totals.outside) == {ZNYX: 3, STAGING: 1}
    assert dict(totals.drifted) == {ZNYX: 1, WHOP: 1}
    # In words: a line of its own, and a target with only that is only that.
    lines = stats.stats_text([whop, znyx, staging], stats.window(NOW, 30)).splitlines()
    assert lines[5] == "1 preview moved before a decision"
    assert lines[10:] == [
        "2 changes outside the bot · 1 preview moved before a decision",
        "*`znyx:guardrails:staging`*",
        "1 change outside the bot",
        "Counted from the requests that ended in the window (a promotion is a request that is "
        "not a rollback; p50 and p90 by nearest rank) and the audit log's changes outside the "
        "bot and previews that moved; every definition is in the README, under “What the "
        "releases add up to”.",
    ]
    assert stats.home_line(staging, 7) == "`znyx:guardrails:staging` · 1 change outside the bot"
    assert stats.home_line(znyx, 30).endswith(
        "· 🚨 1 · 2 changes outside the bot · 1 preview moved before a decision"
    )


def test_the_totals_since_the_database_began(store_factory: Factory) -> None:
    store = store_factory()
    seed(store)
    totals = store.delivery_totals(BOUNDS)
    assert dict(totals.outcomes) == {
        (ZNYX, "succeeded"): 5,  # P0 too
        (ZNYX, "failed"): 1,
        (ZNYX, "unknown"): 1,
        (ZNYX, "rejected"): 1,
        (WHOP, "succeeded"): 1,
        (WHOP, "cancelled"): 1,
    }
    assert dict(totals.rollbacks) == {ZNYX: 1}
    # Bounds: 1 min, 5 min, 15 min, 30 min, 1 h, 2 h, 4 h, 8 h, 1 d, 2 d, 1 week.
    assert dict(totals.lead) == {
        ZNYX: Durations((0, 0, 1, 1, 3, 4, 4, 4, 4, 5, 5), 5, 187800.0),
        WHOP: Durations((0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1), 1, 5400.0),
    }
    assert dict(totals.wait) == {
        ZNYX: Durations((0, 2, 3, 5, 5, 5, 5, 5, 6, 6, 6), 6, 90420.0),
        WHOP: Durations((0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2), 2, 5400.0),  # Q3's approval too
    }
    assert dict(totals.restore) == {ZNYX: Durations((0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), 1, 1800.0)}


async def test_every_metric_from_the_database(store_factory: Factory) -> None:
    store = store_factory()
    metrics = Metrics()
    metrics.watch_store(store, "this-process")
    seed(store)
    assert "promote_bot_promotions_total" not in (await metrics.scrape()).decode()  # not yet
    await metrics.refresh(wait=True)  # computed meanwhile, in a worker thread
    page = samples((await metrics.scrape()).decode())

    def promotions(target: str, outcome: str) -> float:
        provider = target.split(":")[0]
        labels = {"target": target, "provider": provider, "outcome": outcome}
        return value(page, "promote_bot_promotions_total", **labels)

    assert promotions(ZNYX, "succeeded") == 5
    assert promotions(ZNYX, "failed") == promotions(ZNYX, "unknown") == 1
    assert promotions(ZNYX, "rejected") == 1
    assert promotions(WHOP, "succeeded") == promotions(WHOP, "cancelled") == 1
    assert value(page, "promote_bot_rollbacks_total", provider="znyx") == 1
    assert ("promote_bot_rollbacks_total", frozenset({("provider", "whop")})) not in page
    lead = {"provider": "znyx"}
    assert value(page, "promote_bot_lead_time_seconds_count", **lead) == 5
    assert value(page, "promote_bot_lead_time_seconds_sum", **lead) == 187800
    assert value(page, "promote_bot_lead_time_seconds_bucket", le="3600.0", **lead) == 3
    assert value(page, "promote_bot_lead_time_seconds_bucket", le="172800.0", **lead) == 5
    assert value(page, "promote_bot_lead_time_seconds_bucket", le="+Inf", **lead) == 5
    assert value(page, "promote_bot_approval_wait_seconds_count", provider="whop") == 2
    assert (
        value(page, "promote_bot_approval_wait_seconds_bucket", le="1800.0", provider="whop") == 1
    )
    assert value(page, "promote_bot_approval_wait_seconds_sum", provider="znyx") == 90420
    assert value(page, "promote_bot_time_to_restore_seconds_count", provider="znyx") == 1
    assert value(page, "promote_bot_time_to_restore_seconds_sum", provider="znyx") == 1800
    assert "promote_bot_outside_changes_total" not in {k[0] for k in page}  # none yet
    # A new process (a restart, another replica) reports the same from the same database.
    again = Metrics()
    again.watch_store(store_factory(), "another-process")
    await again.refresh(wait=True)
    mine = ("promotions", "rollbacks", "lead_time", "approval_wait", "time_to_restore")
    mine += ("outside_changes", "previews_moved")

    def derived(page: dict) -> dict:
        return {
            k: v
            for k, v in page.items()
            if k[0].startswith(tuple(f"promote_bot_{m}" for m in mine))
        }

    assert derived(samples((await again.scrape()).decode())) == derived(page)


async def test_the_metrics_of_changes_outside_the_bot(store_factory: Factory) -> None:
    store = store_factory()
    seed_beside(store, seed(store))
    metrics = Metrics()
    metrics.watch_store(store, "this-process")
    await metrics.refresh(wait=True)
    page = samples((await metrics.scrape()).decode())
    outside = "promote_bot_outside_changes_total"
    assert value(page, outside, target=ZNYX, provider="znyx") == 3
    assert value(page, outside, target=STAGING, provider="znyx") == 1
    assert value(page, "promote_bot_previews_moved_total", provider="znyx") == 1
    assert value(page, "promote_bot_previews_moved_total", provider="whop") == 1


def test_a_window_is_counted_again_once_anything_it_is_made_of_changed(
    store_factory: Factory,
) -> None:
    """The last count of a window is handed out again only while the audit log and the
    requests are as they were: a request that ends, or a change outside the bot recorded in
    the audit log, is in the very next answer (on this store and on another process's)."""
    from bot.core.model import AuditEntry
    from bot.core.truth import OUTSIDE

    store, other = store_factory(), store_factory()
    seed(store)
    week = NOW - 7 * DAY
    assert store.target_figures(week, NOW) == other.target_figures(week, NOW)
    [_, znyx] = store.target_figures(week, NOW)
    assert (znyx.succeeded, znyx.outside) == (1, 0)
    later = NOW + 2 * HOUR
    run(store, PROMOTE, NOW + HOUR, ended=NOW + HOUR + 5 * MINUTE)  # ended after the last count
    for reader in (store, other):
        [_, znyx] = reader.target_figures(week, later)
        assert znyx.succeeded == 2
    store.audit(
        AuditEntry(
            at=NOW + HOUR,
            request_id=None,
            actor="Znyx: ui:carol",
            event=OUTSIDE,
            target=ZNYX,
            detail="v2 → v3",
        )
    )
    for reader in (store, other):
        [_, znyx] = reader.target_figures(week, later)
        assert (znyx.succeeded, znyx.outside) == (2, 1)
    # An earlier end than the one counted is a window of its own, counted as such.
    [_, znyx] = store.target_figures(week, NOW)
    assert (znyx.succeeded, znyx.outside) == (1, 0)


def test_a_window_brought_up_to_date_adds_up_as_one_counted_whole(
    store_factory: Factory,
) -> None:
    """A window counted before is brought up to date with what ended since: after each change
    (a promotion, a late success, a rollback that undoes one counted before, the window moving
    on past a request) it adds up exactly as a count of the whole window by another process."""
    from bot.core.model import Outcome, State
    from tests.history import undo

    store = store_factory()
    ids = seed(store)

    def both(since: datetime, until: datetime) -> list[TargetFigures]:
        mine = store.target_figures(since, until)
        assert mine == store_factory().target_figures(since, until)
        return mine

    week = NOW - 7 * DAY
    before = both(week, NOW)
    done = run(store, PROMOTE, NOW + HOUR, approvals=[NOW + HOUR + MINUTE], ended=NOW + 2 * HOUR)
    after = both(week, NOW + 3 * HOUR)
    assert after[1].succeeded == before[1].succeeded + 1
    fixed = Outcome(state="succeeded", headline="Znyx shows it now")
    assert store.transition(
        ids["P4"], [State.UNKNOWN], State.SUCCEEDED, at=NOW + 3 * HOUR, outcome=fixed
    )
    after = both(week, NOW + 4 * HOUR)
    assert (after[1].unknown, after[1].succeeded) == (0, before[1].succeeded + 2)
    undoing = run(store, undo(2, str(done)), NOW + 4 * HOUR, ended=NOW + 5 * HOUR, rolls_back=done)
    after = both(week, NOW + 6 * HOUR)
    assert (after[1].rolled_back, after[1].rollbacks) == (1, 1)
    # A rollback of that rollback: a rollback undone is no promotion undone.
    run(store, undo(3, str(undoing)), NOW + 6 * HOUR, ended=NOW + 6 * HOUR, rolls_back=undoing)
    after = both(week, NOW + 7 * HOUR)
    assert (after[1].rolled_back, after[1].rollbacks) == (1, 2)
    # A request that changed after the last count's end (its clock ahead of the asker's, or
    # ended a moment after the ask took its time): not in that count, in the next.
    ahead = NOW + 8 * HOUR
    run(store, PROMOTE, NOW + 7 * HOUR, ended=ahead)
    assert both(week, ahead - MINUTE)[1].succeeded == after[1].succeeded
    assert both(week, ahead + MINUTE)[1].succeeded == after[1].succeeded + 1
    for days in (1, 3, 6):  # the window moves on: what ended before it is left out
        both(week + days * DAY, NOW + days * DAY + 6 * HOUR)
    assert both(NOW + DAY, NOW + 2 * DAY) == []


def test_a_window_of_many_requests_keeps_its_figures_not_its_rows(
    store_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.store import figures

    monkeypatch.setattr(figures, "ROWS_KEPT", 1)
    store = store_factory()
    seed(store)
    month = NOW - 30 * DAY
    assert store.target_figures(month, NOW) == [WHOP_30, ZNYX_30]
    [kept] = store.reader.counted._counted.values()
    assert kept.rows is None and kept.figures == [WHOP_30, ZNYX_30]
    run(store, PROMOTE, NOW + HOUR, ended=NOW + 2 * HOUR)
    assert store.target_figures(month, NOW + 3 * HOUR) == store_factory().target_figures(
        month, NOW + 3 * HOUR
    )


def test_a_count_brought_up_to_date_is_still_counted_whole_now_and_then() -> None:
    from datetime import timedelta

    from bot.store.figures import RECOUNT_SECONDS, FiguresCache, _Counted

    now = [0.0]
    cache = FiguresCache(clock=lambda: now[0], size=2)
    counted = _Counted({}, NOW, NOW + HOUR, (1, "t"), 0.0, [])
    cache.put(("week",), counted)
    assert cache.get(("week",), NOW, NOW + HOUR) is counted
    assert cache.get(("week",), NOW + MINUTE, NOW + 2 * HOUR) is counted  # later: brought on
    assert cache.get(("week",), NOW - MINUTE, NOW + HOUR) is None  # starts earlier: whole
    assert cache.get(("week",), NOW, NOW + HOUR - timedelta(seconds=1)) is None  # ends earlier
    assert cache.get(("month",), NOW, NOW + HOUR) is None
    now[0] += RECOUNT_SECONDS + 1
    assert cache.get(("week",), NOW, NOW + HOUR) is None  # counted whole again now and then
    for key in ("a", "b", "c"):  # at most `size`: the oldest goes
        cache.put((key,), counted)
    now[0] = 0.0
    assert cache.get(("a",), NOW, NOW + HOUR) is None
    assert cache.get(("c",), NOW, NOW + HOUR) is counted


def test_percentiles_by_nearest_rank() -> None:
    from bot.store.tally import nearest_rank

    assert nearest_rank([], 5) is None
    assert nearest_rank([7.0], 5) == nearest_rank([7.0], 9) == 7.0
    values = [1.0, 2.0, 3.0, 4.0]
    assert (nearest_rank(values, 5), nearest_rank(values, 9)) == (2.0, 4.0)
    assert nearest_rank([float(n) for n in range(1, 11)], 9) == 9.0  # ⌈9·10/10⌉ = 9th


def test_a_window_starts_at_a_whole_minute() -> None:
    from datetime import timedelta

    w = stats.window(NOW + timedelta(seconds=42.5), 7)
    assert w.since == (NOW - 7 * DAY).replace(second=0, microsecond=0)
    assert w.until == NOW + timedelta(seconds=42.5)


async def test_figures_are_computed_again_only_after_a_while(store_factory: Factory) -> None:
    """A scrape is served the last figures, never waiting for them; one that finds them older
    than FIGURES_SECONDS has them computed again meanwhile (in a worker thread), for the
    scrapes after it."""
    store = store_factory()
    metrics = Metrics()
    metrics.watch_store(store, "this-process")
    now = [1000.0]
    seed(store)
    name, znyx = "promote_bot_promotions_total", {"target": ZNYX, "provider": "znyx"}

    async def succeeded() -> float:
        page = samples((await metrics.scrape(lambda: now[0])).decode())
        return value(page, name, outcome="succeeded", **znyx)

    assert await succeeded() == 0  # the first scrape waits for nothing: none yet
    await metrics.refresh(lambda: now[0], wait=True)
    assert await succeeded() == 5
    run(store, PROMOTE, NOW, ended=NOW + HOUR)  # one more success
    now[0] += FIGURES_SECONDS - 1
    assert await succeeded() == 5  # the last answer
    now[0] += 1
    assert await succeeded() == 5  # still the last answer, while they are computed again
    await metrics.refresh(lambda: now[0], wait=True)
    assert await succeeded() == 6


def test_the_words() -> None:
    w = stats.window(NOW, 30)
    text = stats.stats_text([WHOP_30, ZNYX_30], w)
    assert text.splitlines() == [
        "*What the releases add up to, last 30 days* "
        "(2026-10-23 12:00 UTC – 2026-11-22 12:00 UTC):",
        "*`whop:storefront`*",
        "Promotions: 1 succeeded (0.2 a week), 0 failed, 0 unknown, 1 never ran",
        "Lead time p50 1 h 30 min, p90 1 h 30 min · approval wait p50 1 h",
        "Change failure rate 0% (0 of 1) · time to restore p50 – · 0 rollbacks · 0 emergencies",
        "*`znyx:guardrails:prod`*",
        "Promotions: 4 succeeded (0.9 a week), 1 failed, 1 unknown, 1 never ran",
        "Lead time p50 1 h, p90 2 d · approval wait p50 10 min",
        "Change failure rate 50% (3 of 6) · time to restore p50 30 min · 1 rollback · 1 emergency",
        "Counted from the requests that ended in the window (a promotion is a request that is "
        "not a rollback; p50 and p90 by nearest rank); every definition is in the README, under "
        "“What the releases add up to”.",
    ]  # fmt: skip
    many = [dataclasses.replace(ZNYX_30, target=f"znyx:p{i}:prod") for i in range(40)]
    long = stats.stats_text(many, w)
    assert len(long) <= TEXT_LIMIT and long.count("*`znyx:p") < 40
    assert f"… and {40 - long.count('*`znyx:p')} more targets: narrow it with a pattern" in long
    assert long.endswith("under “What the releases add up to”.")
    assert stats.stats_text([], stats.window(NOW, 7), "appstore:*").startswith(
        "No request for `appstore:*` you may see ended in the last 7 days"
    )
    assert [stats.duration(s) for s in (None, 0, 44.6, 90, 3599, 3600, 5400, 86400, 93600)] == [
        "–", "0 s", "45 s", "2 min", "1 h", "1 h", "1 h 30 min", "1 d", "1 d 2 h",
    ]  # fmt: skip
    assert stats.home_line(ZNYX_30, 30) == (
        "`znyx:guardrails:prod` · 4 succeeded (0.9/week) · lead p50 1 h · failure rate 50% "
        "(3 of 6) · restore p50 30 min · 1 rollback · 🚨 1"
    )


async def test_stats_in_slack_for_each_person(world: World) -> None:
    seed(world.bot.store)
    world.clock.at = NOW
    everything = await world.answer("stats", ALICE)
    assert "*`whop:storefront`*" in everything and "*`znyx:guardrails:prod`*" in everything
    assert "Change failure rate 50% (3 of 6)" in everything
    # Carol may request builds only: she sees Whop's numbers, not Znyx's.
    builds = await world.answer("stats", CAROL)
    assert "whop:storefront" in builds and "znyx" not in builds
    week = await world.answer("stats znyx:*:prod --days 7", ALICE)
    assert "last 7 days" in week and "whop" not in week
    assert "Promotions: 1 succeeded (1 a week), 0 failed, 1 unknown, 1 never ran" in week
    told = await world.sender.command("stats", MALLORY)
    assert "no role" in told.text  # answered in the ack: nothing is read
    bad = await world.sender.command("stats --days 0", ALICE)
    assert "`--days` takes a number of days from 1 to 366" in bad.text


async def test_the_app_home_shows_the_last_7_days(world: World) -> None:
    seed(world.bot.store)
    world.clock.at = NOW
    await world.sender.home_opened(ALICE)
    await world.slack.wait_for(lambda s: len(s.calls_to("views.publish")) == 1)
    home = block_text(world.slack.calls_to("views.publish")[0].args["view"]["blocks"])
    assert "What the last 7 days add up to" in home
    assert (
        "`znyx:guardrails:prod` · 1 succeeded (1/week) · lead p50 10 min · failure rate 50% "
        "(1 of 2) · restore p50 – · 0 rollbacks · 🚨 1"
    ) in home
    await world.sender.home_opened(MALLORY)  # no role: no numbers
    await world.slack.wait_for(lambda s: len(s.calls_to("views.publish")) == 2)
    home = block_text(world.slack.calls_to("views.publish")[1].args["view"]["blocks"])
    assert "add up to" not in home


def test_the_release_train_counts_like_any_other_target(store_factory: Factory) -> None:
    """A TestFlight step (issue 28) is a request like every other: its target is counted by
    state and kind, its rollback (taking the build out again) as a rollback, with no list of
    event names to extend."""
    from bot.providers.appstore_train import AppStoreTestFlight, AppStoreTestFlightRemove

    store = store_factory()
    group = {"app": "ios", "app_id": "1234567890", "build": "155", "build_id": "b155"}
    group |= {"group": "External Testers", "group_id": "g1", "external": True}
    added = run(store, AppStoreTestFlight(**group), NOW - 2 * DAY, ended=NOW - 2 * DAY + HOUR)
    run(
        store,
        AppStoreTestFlightRemove(**group, undoing="in the group"),
        NOW - DAY,
        ended=NOW - DAY + HOUR,
        rolls_back=added,
    )
    [train] = store.target_figures(NOW - 7 * DAY, NOW, kinds=kinds_for({"developer:manage_builds"}))
    assert train == TargetFigures(
        target="appstore:ios:testflight",
        succeeded=1,
        rolled_back=1,
        rollbacks=1,
        lead_p50=3600.0,
        lead_p90=3600.0,
        restore_p50=DAY.total_seconds(),
    )
    assert store.target_figures(NOW - 7 * DAY, NOW, kinds=kinds_for({"bundle:publish"})) == []


async def test_a_change_outside_the_bot_is_in_stats_and_the_metrics(world: World) -> None:
    """Znyx's webhook says staging changed through its own UI: the bot audits it, and
    `/promote stats` and the metrics count it (issue 26's milestone, from the audit log)."""
    from tests.conftest import ZNYX_WEBHOOK_SECRET

    world.znyx.webhooks.append((world.bot_url + "/webhooks/znyx", ZNYX_WEBHOOK_SECRET))
    assert not isinstance(world.znyx.ui_promote("proj-guardrails", "dev", by="ui:c"), str)
    await world.znyx.delivered()
    assert world.znyx.deliveries == [202]
    await world.bot.webhooks.work()  # type: ignore[union-attr]  # what the `webhooks` job does
    told = await world.answer("stats znyx:*", ALICE)
    assert "*`znyx:guardrails:staging`*\n1 change outside the bot" in told
    assert "znyx:guardrails:staging" not in await world.answer("stats", CAROL)  # builds only
    await world.bot.metrics.refresh(wait=True)
    page = samples((await world.bot.metrics.scrape()).decode())
    labels = {"target": "znyx:guardrails:staging", "provider": "znyx"}
    assert value(page, "promote_bot_outside_changes_total", **labels) == 1
