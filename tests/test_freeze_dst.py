"""Freeze windows at the two daylight-saving edges, pure (bot/core/freezes.py): a window is
frozen from the first moment its zone's clock shows its start (the gap's end, when the clocks
skip it) to the first moment it shows its end (a repeated time counts once, at its first
occurrence), and it is never longer than its wall-clock length plus one hour. Checked at
every change of several zones over several years."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.core.freezes import Freeze, Weekly, local_instant, parse_weekly

NY = "America/New_York"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def weekly(text: str, zone: str = NY) -> Freeze:
    return Freeze("freeze 1", ("*",), "Maintenance", zone, weekly=parse_weekly(text))


def test_a_window_wholly_in_the_skipped_hour_is_empty_that_week_not_a_week_long() -> None:
    # Sun 2026-03-08: New York's clocks go from 02:00 EST (07:00 UTC) straight to 03:00 EDT.
    freeze = weekly("Sun 02:00 - Sun 03:00")
    for at in (utc(2026, 3, 8, 6, 59), utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 30)):
        assert freeze.window_at(at) is None
    for later in (utc(2026, 3, 9, 12, 0), utc(2026, 3, 14, 12, 0)):  # the rest of that week
        assert freeze.window_at(later) is None
    # The week before and the week after, an ordinary hour.
    before = freeze.window_at(utc(2026, 3, 1, 7, 30))
    assert before is not None and (before.start, before.end) == (
        utc(2026, 3, 1, 7, 0),
        utc(2026, 3, 1, 8, 0),
    )
    after = freeze.window_at(utc(2026, 3, 15, 6, 30))
    assert after is not None and (after.start, after.end) == (
        utc(2026, 3, 15, 6, 0),
        utc(2026, 3, 15, 7, 0),
    )
    # The next one to start, seen from before the skipped hour, is the one that happens.
    assert freeze.next_start(utc(2026, 3, 8, 5, 0)) == utc(2026, 3, 15, 6, 0)


def test_a_start_in_the_gap_begins_at_the_gaps_end() -> None:
    freeze = weekly("Sun 02:30 - Sun 05:00")
    window = freeze.window_at(utc(2026, 3, 8, 7, 0))
    assert window is not None
    assert window.start == utc(2026, 3, 8, 7, 0)  # 03:00 EDT, the first moment after 02:30
    assert window.end == utc(2026, 3, 8, 9, 0)  # 05:00 EDT
    assert freeze.window_at(utc(2026, 3, 8, 6, 59, 59)) is None  # 01:59:59 EST


def test_an_end_in_the_gap_ends_at_the_gaps_end() -> None:
    freeze = weekly("Sat 22:00 - Sun 02:30")
    window = freeze.window_at(utc(2026, 3, 8, 6, 0))
    assert window is not None
    assert (window.start, window.end) == (utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 7, 0))


def test_a_repeated_time_counts_at_its_first_occurrence() -> None:
    # Sun 2026-11-01: New York's clocks go back from 02:00 EDT to 01:00 EST; 01:00-02:00 twice.
    short = weekly("Sun 01:30 - Sun 01:45").window_at(utc(2026, 11, 1, 5, 40))
    assert short is not None
    assert (short.start, short.end) == (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 5, 45))  # EDT
    across = weekly("Sun 01:30 - Sun 03:00").window_at(utc(2026, 11, 1, 6, 30))
    assert across is not None
    assert (across.start, across.end) == (utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 8, 0))
    assert across.end - across.start == timedelta(hours=2, minutes=30)  # 1:30 on the clock, +1


def test_dated_windows_follow_the_same_rule() -> None:
    zone = ZoneInfo(NY)
    skipped = local_instant(datetime(2026, 3, 8, 2, 30), zone)
    assert skipped == utc(2026, 3, 8, 7, 0)
    assert local_instant(datetime(2026, 11, 1, 1, 30), zone) == utc(2026, 11, 1, 5, 30)
    dated = Freeze(
        "f", ("*",), "r", NY, start=datetime(2026, 3, 8, 2, 15), until=datetime(2026, 3, 8, 4, 0)
    )
    window = dated.dated_window()
    assert (window.start, window.end) == (utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 8, 0))


# --- every transition of several zones, several years ----------------------------------

ZONES = [
    NY,
    "Europe/Berlin",
    "Europe/Dublin",  # its "daylight saving" is negative, in winter
    "Australia/Sydney",  # southern hemisphere: forward in October, back in April
    "Australia/Lord_Howe",  # a change of half an hour
    "America/Santiago",  # changes at midnight, so the skipped hour is the day's first
    "America/Havana",
    "Pacific/Chatham",  # UTC+12:45 / +13:45
    "Asia/Tehran",  # had daylight saving until 2022
]
YEARS = range(2021, 2028)


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """The instants (UTC, whole seconds) at which `zone`'s offset changes during `year`: a day
    at a time (no zone changes twice in a day), then to the second."""
    found = []
    day = datetime(year, 1, 1, tzinfo=UTC)
    while day.year == year:
        nxt = day + timedelta(days=1)
        offset = day.astimezone(zone).utcoffset()
        if offset != nxt.astimezone(zone).utcoffset():
            lo, hi = int(day.timestamp()), int(nxt.timestamp())
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (
                    (mid, hi)
                    if datetime.fromtimestamp(mid, zone).utcoffset() == offset
                    else (lo, mid)
                )
            found.append(datetime.fromtimestamp(hi, UTC))
        day = nxt
    return found


def wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def around(change: datetime, zone: ZoneInfo) -> list[datetime]:
    """Wall-clock times (to the minute) on both sides of a change and inside what it skips or
    repeats."""
    before, after = wall(change - timedelta(seconds=1), zone), wall(change, zone)
    low, high = sorted((before.replace(second=0) + timedelta(minutes=1), after))
    middle = low + (high - low) / 2
    times = [
        low - timedelta(hours=1),
        low,
        middle.replace(second=0),
        high,
        high + timedelta(hours=1),
    ]
    return sorted(set(times))


def windows_around(change: datetime, zone_name: str) -> list[tuple[Freeze, datetime, datetime]]:
    """Weekly windows starting or ending at the times `around` a change (the same day, or a
    day apart): each freeze with its nominal start and end, as wall-clock times."""
    zone = ZoneInfo(zone_name)
    times = around(change, zone)
    out = []
    for start in times:
        for end in [*times, *(t + timedelta(days=1) for t in times)]:
            if not timedelta(0) < end - start < timedelta(days=7):
                continue
            rule = Weekly(start.weekday(), start.time(), end.weekday(), end.time())
            out.append((Freeze("f", ("*",), "r", zone_name, weekly=rule), start, end))
    for start in times:  # from the change's day to the next day, at the same time
        rule = Weekly(start.weekday(), time(12), (start + timedelta(days=1)).weekday(), time(12))
        noon = datetime.combine(start.date(), time(12))
        out.append((Freeze("f", ("*",), "r", zone_name, weekly=rule), noon, noon + timedelta(1)))
    return out


@pytest.mark.parametrize("zone_name", ZONES)
def test_every_window_at_every_change_keeps_the_rule(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    checked = 0
    for year in YEARS:
        for change in transitions(zone, year):
            for freeze, nominal_start, nominal_end in windows_around(change, zone_name):
                window = freeze.starting_on(nominal_start.date())
                length, nominal = window.end - window.start, nominal_end - nominal_start
                where = f"{freeze.weekly} in {zone_name} from {nominal_start}"
                assert window.end >= window.start, where
                assert length <= nominal + timedelta(hours=1), where
                if length:
                    assert length >= nominal - timedelta(hours=1), where
                # From the first moment the clock shows the start (or a later time)...
                assert wall(window.start, zone) >= nominal_start, where
                assert wall(window.start - timedelta(minutes=1), zone) < nominal_start, where
                # ...to the first moment it shows the end.
                assert wall(window.end, zone) >= nominal_end, where
                assert wall(window.end - timedelta(minutes=1), zone) < nominal_end, where
                if length:
                    assert freeze.window_at(window.start) == window, where
                    assert freeze.window_at(window.end - timedelta(seconds=1)) == window, where
                    assert freeze.window_at(window.end) != window, where
                else:
                    assert freeze.window_at(window.start) is None, where
                checked += 1
    if zone_name != "Asia/Tehran":
        assert checked > 100  # every year of these zones has its changes


def test_the_scan_finds_the_changes_it_is_meant_to() -> None:
    ny = transitions(ZoneInfo(NY), 2026)
    assert ny == [utc(2026, 3, 8, 7, 0), utc(2026, 11, 1, 6, 0)]
    assert transitions(ZoneInfo("Asia/Tehran"), 2023) == []  # no daylight saving since 2022
    assert len(transitions(ZoneInfo("Australia/Lord_Howe"), 2026)) == 2
    sydney = ZoneInfo("Australia/Sydney")  # back on the first Sunday of April
    assert wall(transitions(sydney, 2026)[0], sydney).date() == date(2026, 4, 5)
