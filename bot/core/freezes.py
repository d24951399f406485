"""Freeze windows from the config, and the arithmetic of weekly and dated windows. Pure.

A freeze's targets are the same patterns as policies (`<provider>:*:prod`, `<provider>:*`),
matched with fnmatch. Window arithmetic works in the freeze's own time zone (zoneinfo), so a weekly
"Fri 16:00 - Mon 08:00" stays at 16:00 local time across a daylight-saving change; every
comparison is made in UTC, never on wall-clock times. A local time the clocks skip or repeat
has one rule (`local_instant`): a window is frozen from the first moment its zone's clock shows
its start (or a later time, when the clocks skip it) until the first moment it shows its end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fnmatch import fnmatchcase
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WEEKLY = re.compile(
    r"^\s*([A-Za-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})\s*-\s*([A-Za-z]{3})[a-z]*\s+(\d{1,2}):(\d{2})\s*$"
)


@dataclass(frozen=True)
class Weekly:
    """A window every week, from (weekday, time) to (weekday, time), local to its zone."""

    start_day: int  # 0 = Monday
    start: time
    end_day: int
    end: time

    def __str__(self) -> str:
        return (
            f"{DAYS[self.start_day].title()} {self.start:%H:%M} - "
            f"{DAYS[self.end_day].title()} {self.end:%H:%M}"
        )


def parse_weekly(text: str) -> Weekly:
    """`"Fri 16:00 - Mon 08:00"` → `Weekly`, or ValueError saying what is wrong."""
    match = _WEEKLY.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a weekly window like 'Fri 16:00 - Mon 08:00'")
    d1, h1, m1, d2, h2, m2 = match.groups()
    days = []
    for day in (d1, d2):
        if day.lower() not in DAYS:
            raise ValueError(f"{day!r} is not a day (use {', '.join(d.title() for d in DAYS)})")
        days.append(DAYS.index(day.lower()))
    try:
        start, end = time(int(h1), int(m1)), time(int(h2), int(m2))
    except ValueError:
        raise ValueError(f"{text!r} has a time that is not HH:MM (00:00 to 23:59)") from None
    if days[0] == days[1] and start == end:
        raise ValueError(f"{text!r} starts and ends at the same moment")
    return Weekly(days[0], start, days[1], end)


@dataclass(frozen=True)
class Window:
    """One occurrence of a freeze, as instants (UTC)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class Freeze:
    """A freeze window from the config: dated (`start`/`until`, local times) or `weekly`."""

    name: str  # how people and errors refer to it: "freeze 1 (Year-end freeze)"
    targets: tuple[str, ...]
    reason: str
    timezone: str
    start: datetime | None = None  # naive, local to `timezone`
    until: datetime | None = None
    weekly: Weekly | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def applies_to(self, target: str) -> bool:
        return any(fnmatchcase(target, p) for p in self.targets)

    def window_at(self, now: datetime) -> Window | None:
        """The occurrence of this freeze that `now` falls in, if any."""
        now = now.astimezone(UTC)
        if self.weekly is None:
            window = self.dated_window()
            return window if window.start <= now < window.end else None
        day = self._start_day_of(now)
        for window in (self.starting_on(day), self.starting_on(day - WEEK)):
            if window.start <= now < window.end:
                return window
        return None

    def next_start(self, now: datetime) -> datetime | None:
        """When this freeze next starts after `now` (UTC); None if it never will."""
        now = now.astimezone(UTC)
        if self.weekly is None:
            window = self.dated_window()
            return window.start if window.start > now else None
        day = self._start_day_of(now)
        for ahead in range(3):  # this week's, or the next one not wholly in a skipped hour
            window = self.starting_on(day + ahead * WEEK)
            if window.start > now and window.end > window.start:
                return window.start
        return None  # pragma: no cover (a weekly window is at most a day or so of a gap)

    def describe(self) -> str:
        """ "Year-end freeze (2026-12-20 00:00 – 2027-01-04 08:00 Europe/Berlin)"."""
        if self.weekly is not None:
            when = f"every {self.weekly} {self.timezone}"
        else:
            assert self.start is not None and self.until is not None
            when = f"{self.start:%Y-%m-%d %H:%M} – {self.until:%Y-%m-%d %H:%M} {self.timezone}"
        return f"{self.reason} ({when})"

    # --- arithmetic --------------------------------------------------------------------

    def dated_window(self) -> Window:
        """The window of a dated freeze, as instants."""
        assert self.start is not None and self.until is not None
        zone = self.zone
        return Window(local_instant(self.start, zone), local_instant(self.until, zone))

    def _start_day_of(self, now: datetime) -> date:
        """The local date of the latest weekly start day on or before `now`'s local date."""
        assert self.weekly is not None
        today = now.astimezone(self.zone).date()
        return today - timedelta(days=(today.weekday() - self.weekly.start_day) % 7)

    def starting_on(self, day: date) -> Window:
        """The weekly window that starts on the local date `day` (one of its start days).
        Its end is the end day and time after it, as the wall clock counts: "Wed 22:00 - Wed
        06:00" lasts from one Wednesday to the next. Empty when it lies wholly in a gap."""
        weekly = self.weekly
        assert weekly is not None
        days = (weekly.end_day - weekly.start_day) % 7
        if days == 0 and weekly.end <= weekly.start:
            days = 7
        zone = self.zone
        start = local_instant(datetime.combine(day, weekly.start), zone)
        until = datetime.combine(day + timedelta(days=days), weekly.end)
        return Window(start, max(start, local_instant(until, zone)))


WEEK = timedelta(days=7)


def local_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of a local date and time (naive) in `zone`: the first moment its clock
    shows that time, or a later one if it skips it. So a time the clocks skip (spring forward)
    is the end of the gap (02:30 on the day New York skips 02:00-03:00 is 03:00 EDT), and a time
    they repeat (fall back) is its first occurrence. A window lasts from the first moment the
    clock shows its start to the first moment it shows its end: never longer than its
    wall-clock length plus the hour a fall back adds, and empty if it lies wholly in a gap."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first
    earlier, later = sorted((first, second))
    if earlier.astimezone(zone).replace(tzinfo=None) == wall:  # repeated: the first one
        return earlier
    return _gap_end(earlier, later, zone)


def _gap_end(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant the zone's offset changes between `before` and `after` (whole seconds, as
    time zone transitions are)."""
    offset = before.astimezone(zone).utcoffset()
    lo, hi = int(before.timestamp()), int(after.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == offset:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def running(freezes: Sequence[Freeze], now: datetime) -> list[tuple[Freeze, Window]]:
    """The freezes in force at `now`, with the window each is in."""
    out = []
    for freeze in freezes:
        window = freeze.window_at(now)
        if window is not None:
            out.append((freeze, window))
    return out


def next_freeze(freezes: Sequence[Freeze], now: datetime) -> tuple[Freeze, datetime] | None:
    """The freeze that starts next after `now`, and when."""
    upcoming = [(f, at) for f in freezes if (at := f.next_start(now)) is not None]
    return min(upcoming, key=lambda pair: pair[1]) if upcoming else None


def fmt(at: datetime, freeze: Freeze | None = None) -> str:
    """A moment for people: in the freeze's zone when there is one, else UTC."""
    if freeze is None:
        return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"{at.astimezone(freeze.zone):%a %Y-%m-%d %H:%M} {freeze.timezone}"
