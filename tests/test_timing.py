"""When a request may run: `--at` read in a time zone, the soak clock, allow windows. Pure."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from bot.core.commands import Promote, UsageError, parse, split_at
from bot.core.freezes import TimeWindow, parse_weekly
from bot.core.render import timing_lines
from bot.core.timing import (
    At,
    AtError,
    Live,
    StageSeen,
    Timing,
    changed_at,
    gate,
    parse_at,
    resolve_at,
    runs_text,
    seen_after,
    worked_out,
)
from tests.test_commands import CONFIG as RULES  # the rules of a small config


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- `--at` --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "day", "at"),
    [
        (["09:00"], 0, time(9, 0)),
        (["9:05"], 0, time(9, 5)),
        (["today", "23:59"], 0, time(23, 59)),
        (["tomorrow", "09:00"], 1, time(9, 0)),
        (["Tomorrow", "00:00"], 1, time(0, 0)),
        (["2026-12-14", "09:00"], date(2026, 12, 14), time(9, 0)),
    ],
)
def test_at_reads_a_time_a_day_and_a_time_or_a_date_and_a_time(
    words: list[str], day: int | date, at: time
) -> None:
    assert parse_at(words) == At(day, at, " ".join(words))


@pytest.mark.parametrize(
    ("words", "says"),
    [
        ([], "`--at` needs a time"),
        (["25:00"], "`--at 25:00` is not a time the bot reads"),
        (["9am"], "is not a time the bot reads: `--at 09:00`, `--at tomorrow 09:00`"),
        (["monday", "09:00"], "say the day as today, tomorrow or 2026-12-14"),
        (["2026-02-30", "09:00"], "the date is not one on the calendar"),
        (["a`b"], "`--at a'b`"),  # what was typed is echoed safely
    ],
)
def test_at_says_what_it_takes(words: list[str], says: str) -> None:
    with pytest.raises(AtError) as caught:
        parse_at(words)
    assert says in str(caught.value)


def test_at_may_come_anywhere_in_a_promote_command_even_after_emergency() -> None:
    command = parse("znyx guardrails staging --at tomorrow 09:00", RULES)
    assert isinstance(command, Promote) and command.at == At(1, time(9, 0), "tomorrow 09:00")
    command = parse("znyx guardrails staging --emergency hotfix 12 --at 18:30", RULES)
    assert isinstance(command, Promote)
    assert command.emergency == "hotfix 12" and command.at == At(0, time(18, 30), "18:30")
    assert split_at(["g", "--at", "2026-12-14", "09:00", "staging"])[0] == ["g", "staging"]


def test_at_comes_with_the_flag_first_and_in_a_dashed_spelling() -> None:
    command = parse("--emergency hotfix 12 znyx guardrails staging --at 18:30", RULES)
    assert isinstance(command, Promote) and command.emergency == "hotfix 12"
    assert command.at == At(0, time(18, 30), "18:30")
    command = parse("znyx guardrails staging —at tomorrow 09:00", RULES)  # an em dash
    assert isinstance(command, Promote) and command.at == At(1, time(9, 0), "tomorrow 09:00")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("znyx guardrails staging --at", "`--at` needs a time"),
        ("znyx guardrails staging --at 09:00 --at 10:00", "`--at` comes once"),
        ("znyx guardrails staging --at noon", "`--at noon` is not a time"),
        ("znyx bundles guardrails --at 10:00", "`--at` is for requests; looking needs none."),
    ],
)
def test_a_bad_at_is_a_usage_error(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text, RULES)
    assert says in caught.value.message


def test_at_is_read_in_the_given_zone_today_or_tomorrow() -> None:
    now = utc(2026, 6, 1, 6, 0)  # 08:00 in Berlin, 02:00 in New York
    berlin = resolve_at(At(0, time(10, 0), "10:00"), "Europe/Berlin", now)
    assert not isinstance(berlin, str) and berlin.at == utc(2026, 6, 1, 8, 0)
    assert berlin.zone == "Europe/Berlin" and berlin.note is None
    york = resolve_at(At(1, time(10, 0), "tomorrow 10:00"), "America/New_York", now)
    assert not isinstance(york, str) and york.at == utc(2026, 6, 2, 14, 0)


def test_a_time_past_or_more_than_30_days_ahead_is_refused() -> None:
    now = utc(2026, 6, 1, 6, 0)
    past = resolve_at(At(0, time(7, 0), "07:00"), "Europe/Berlin", now)
    assert isinstance(past, str)
    assert "Mon 2026-06-01 07:00 Europe/Berlin, which has passed" in past
    assert "(it is 08:00 there now) (say `tomorrow` for tomorrow)" in past
    far = resolve_at(At(date(2026, 7, 2), time(9, 0), "2026-07-02 09:00"), "UTC", now)
    assert isinstance(far, str) and "more than 30 days ahead" in far
    edge = resolve_at(At(date(2026, 7, 1), time(6, 0), "2026-07-01 06:00"), "UTC", now)
    assert not isinstance(edge, str)  # exactly 30 days: allowed


def test_a_local_time_in_a_dst_gap_is_the_moment_the_clocks_jump() -> None:
    now = utc(2026, 3, 28, 12, 0)  # Berlin's clocks go from 02:00 to 03:00 on the 29th
    gap = resolve_at(At(1, time(2, 30), "tomorrow 02:30"), "Europe/Berlin", now)
    assert not isinstance(gap, str)
    assert gap.at == utc(2026, 3, 29, 1, 0)  # 03:00 CEST: the freeze windows' rule too
    assert gap.note is not None and "02:30 does not exist on 2026-03-29" in gap.note
    assert "it means 03:00 CEST, when they do" in gap.note


def test_a_local_time_that_occurs_twice_is_the_first_of_the_two() -> None:
    now = utc(2026, 10, 24, 12, 0)  # Berlin's clocks go back from 03:00 to 02:00 on the 25th
    twice = resolve_at(At(1, time(2, 30), "tomorrow 02:30"), "Europe/Berlin", now)
    assert not isinstance(twice, str)
    assert twice.at == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, not 02:30 CET an hour later
    assert twice.note is not None and "occurs twice" in twice.note and "02:30 CEST" in twice.note


# --- soak: when what a stage runs went live there --------------------------------------


T0 = utc(2026, 6, 1, 9, 0)


def test_a_stage_first_seen_is_timed_by_the_provider_or_from_now() -> None:
    assert seen_after(None, "b1", T0, T0 + timedelta(hours=1)) == StageSeen(
        "b1", T0, T0 + timedelta(hours=1)
    )
    assert seen_after(None, "b1", None, T0).since == T0  # no word from the provider: from now


def test_the_same_bundle_keeps_its_clock_and_the_later_timestamp_wins() -> None:
    seen = StageSeen("b1", T0 + timedelta(minutes=30), T0 + timedelta(hours=1))
    later = seen_after(seen, "b1", T0, T0 + timedelta(hours=2))  # Znyx says 09:00, the bot 09:30
    assert later.since == T0 + timedelta(minutes=30) and later.seen_at == T0 + timedelta(hours=2)


def test_a_bundle_the_bot_was_not_told_of_is_timed_from_when_it_last_saw_the_old_one() -> None:
    # A version made active again keeps its old published_at: the bot's record is later.
    seen = StageSeen("b1", T0, T0 + timedelta(hours=3))
    after = seen_after(seen, "b0", T0 - timedelta(days=5), T0 + timedelta(hours=4))
    assert after == StageSeen("b0", T0 + timedelta(hours=3), T0 + timedelta(hours=4))


def test_a_change_the_bot_knows_of_times_what_a_read_then_shows() -> None:
    known = changed_at(T0 + timedelta(hours=1))  # the bot promoted into it then
    assert known.key == ""
    after = seen_after(known, "b2", T0 + timedelta(minutes=59), T0 + timedelta(hours=2))
    assert after.since == T0 + timedelta(hours=1)


# --- allow windows -----------------------------------------------------------------------

TUESDAYS = TimeWindow(
    "window 1",
    ("znyx:*:prod",),
    "Release window",
    "Europe/Berlin",
    weekly=parse_weekly("Tue 09:00 - Tue 16:00"),
)


def test_a_window_shows_its_span() -> None:
    assert TUESDAYS.span() == "Tue 09:00–16:00 Europe/Berlin"
    weekend = TimeWindow("f", ("*",), "x", "UTC", weekly=parse_weekly("Fri 16:00 - Mon 08:00"))
    assert weekend.span() == "Fri 16:00 – Mon 08:00 UTC"


def test_the_gate_waits_for_the_next_opening_of_a_window() -> None:
    monday = utc(2026, 6, 1, 10, 0)  # Monday 12:00 in Berlin
    at, window = gate(monday, run_at=None, soak_until=None, windows=[TUESDAYS])
    assert at == utc(2026, 6, 2, 7, 0) and window is TUESDAYS  # Tuesday 09:00 CEST
    inside = utc(2026, 6, 2, 8, 0)
    assert gate(inside, run_at=None, soak_until=None, windows=[TUESDAYS]) == (inside, None)
    # soaked only after the window closed: the next Tuesday
    late = utc(2026, 6, 2, 15, 0)  # 17:00 in Berlin
    at, _ = gate(inside, run_at=None, soak_until=late, windows=[TUESDAYS])
    assert at == utc(2026, 6, 9, 7, 0)


def test_a_window_opening_across_a_dst_change_keeps_its_local_time() -> None:
    friday = utc(2026, 3, 27, 12, 0)  # the next Tuesday is in summer time
    at, _ = gate(friday, run_at=None, soak_until=None, windows=[TUESDAYS])
    assert at == utc(2026, 3, 31, 7, 0)  # 09:00 CEST (UTC+2), not 08:00 UTC


def test_the_gate_takes_the_latest_of_schedule_and_soak() -> None:
    now = utc(2026, 6, 1, 6, 0)
    at, window = gate(
        now, run_at=now + timedelta(hours=1), soak_until=now + timedelta(hours=2), windows=[]
    )
    assert at == now + timedelta(hours=2) and window is None


def test_no_window_ahead_is_never() -> None:
    past = TimeWindow(
        "w", ("*",), "x", "UTC", start=datetime(2026, 1, 1), until=datetime(2026, 1, 2)
    )
    assert gate(utc(2026, 6, 1), run_at=None, soak_until=None, windows=[past]) == (None, None)


# --- what a message shows --------------------------------------------------------------


def _live(key: str, shown: str) -> Live:
    return Live(thing="znyx:p:staging", place="staging", key=key, shown=shown)


def test_a_soaking_request_shows_when_it_can_run_and_that_its_clock_restarted() -> None:
    now = T0 + timedelta(minutes=30)
    first = worked_out(
        Timing(),
        now,
        soak=timedelta(hours=2),
        live=_live("b1", "v1 · sha256:aa"),
        seen=StageSeen("b1", T0, now),
        windows=[],
    )
    assert first.soak_until == T0 + timedelta(hours=2) and first.runs_at == first.soak_until
    shown = timing_lines(first, zone="Europe/Berlin", now=now, waiting=False)
    assert shown == (
        "🧪 Soaking in staging: v1 · sha256:aa is live there since Mon 2026-06-01 11:00 "
        "Europe/Berlin; can run from Mon 2026-06-01 13:00 Europe/Berlin",
    )
    later = now + timedelta(hours=1)
    again = worked_out(
        first,
        later,
        soak=timedelta(hours=2),
        live=_live("b2", "v2 · sha256:aa"),
        seen=StageSeen("b2", later, later),
        windows=[],
    )
    assert again.restarted == (
        "staging changed (v1 · sha256:aa → v2 · sha256:aa), so the soak clock restarted"
    )
    assert again.runs_at == later + timedelta(hours=2)
    assert runs_text(again, "UTC") == "runs at Mon 2026-06-01 12:30 UTC"


def test_a_waiting_request_shows_its_schedule_and_window() -> None:
    now = utc(2026, 6, 1, 10, 0)
    timing = worked_out(
        Timing(run_at=now + timedelta(hours=1), zone="America/New_York"),
        now,
        soak=None,
        live=None,
        seen=None,
        windows=[TUESDAYS],
    )
    assert timing_lines(timing, zone="Europe/Berlin", now=now, waiting=True) == (
        "🕘 Scheduled for Mon 2026-06-01 07:00 America/New_York",
        "🪟 Waits for the window Tue 09:00–16:00 Europe/Berlin "
        "(it opens Tue 2026-06-02 09:00 Europe/Berlin)",
    )
