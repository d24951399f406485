"""Time windows from the config, and the arithmetic of weekly and dated windows. Pure.

Two kinds of table share it: `[[freeze]]` (nothing may be promoted while one runs) and
`[[window]]` (an allow window: where windows match a target, it is promoted only inside one of
them; bot/core/timing.py). Both are a `TimeWindow`. Their targets are the same patterns as
policies (`<provider>:*:prod`, `<provider>:*`), matched with fnmatch. Window arithmetic works in
the window's own time zone (zoneinfo), so a weekly "Fri 16:00 - Mon 08:00" stays at 16:00 local
time across a daylight-saving change; every comparison is made in UTC, never on wall-clock
times. A local time the clocks skip or repeat has one rule (`local_instant`), for windows and
for `--at` alike: a window lasts from the first moment its zone's clock shows its start (or a
later time, when the clocks skip it) until the first moment it shows its end.
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

    def span(self) -> str:
        """ "Tue 09:00–16:00" (within a day) or "Fri 16:00 – Mon 08:00"."""
        if self.start_day == self.end_day and self.start < self.end:
            return f"{DAYS[self.start_day].title()} {self.start:%H:%M}–{self.end:%H:%M}"
        return str(self).replace(" - ", " – ")


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
    """One occurrence of a time window, as instants (UTC)."""

    start: datetime
    end: datetime


@dataclass(frozen=True)
class TimeWindow:
    """A window from the config, a `[[freeze]]` or a `[[window]]`: dated (`start`/`until`,
    local times) or `weekly`."""

    name: str  # how people and errors refer to it: "freeze 1", "window 2"
    targets: tuple[str, ...]
    reason: str  # what people are told: why it freezes, or what the window is for
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
            when = self.span()
        return f"{self.reason} ({when})"

    def span(self) -> str:
        """ "Tue 09:00–16:00 Europe/Berlin", or a dated one's dates and times."""
        if self.weekly is not None:
            return f"{self.weekly.span()} {self.timezone}"
        assert self.start is not None and self.until is not None
        return f"{self.start:%Y-%m-%d %H:%M} – {self.until:%Y-%m-%d %H:%M} {self.timezone}"

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


def dst_note(wall: datetime, zone: ZoneInfo) -> str | None:
    """How `local_instant` read a local date and time the clocks skip or repeat, for people;
    None when it is plainly one instant."""
    first = wall.replace(tzinfo=zone, fold=0)
    if first.utcoffset() == wall.replace(tzinfo=zone, fold=1).utcoffset():
        return None
    at = local_instant(wall, zone).astimezone(zone)
    if at.replace(tzinfo=None) != wall:
        return (
            f"{wall:%H:%M} does not exist on {wall:%Y-%m-%d} in {zone.key} (the clocks jump "
            f"forward): it means {at:%H:%M %Z}, when they do"
        )
    return (
        f"{wall:%H:%M} occurs twice on {wall:%Y-%m-%d} in {zone.key} (the clocks go back): "
        f"it means the first, {at:%H:%M %Z}"
    )


Freeze = TimeWindow  # a `[[freeze]]`: nothing matching its targets is promoted while it runs


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


def fmt(at: datetime, freeze: TimeWindow | None = None) -> str:
    """A moment for people: in the window's zone when there is one, else UTC."""
    if freeze is None:
        return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return fmt_in(at, freeze.timezone)


def fmt_in(at: datetime, timezone: str) -> str:
    """A moment for people, in `timezone`: "Tue 2026-12-15 09:00 Europe/Berlin"."""
    return f"{at.astimezone(ZoneInfo(timezone)):%a %Y-%m-%d %H:%M} {timezone}"
