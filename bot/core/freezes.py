"""Time windows from the config, and the arithmetic of weekly and dated windows. Pure.

Two kinds of table share it: `[[freeze]]` (nothing may be promoted while one runs) and
`[[window]]` (an allow window: where windows match a target, it is promoted only inside one of
them; bot/core/timing.py). Both are a `TimeWindow`. Their targets are the same patterns as
policies (`<provider>:*:prod`, `<provider>:*`), matched with fnmatch. Window arithmetic works in
the window's own time zone (zoneinfo), so a weekly "Fri 16:00 - Mon 08:00" stays at 16:00 local
time across a daylight-saving change; every comparison is made in UTC, never on wall-clock
times. A local time in a daylight-saving gap (02:30 on the night clocks jump from 02:00 to
03:00) is read as the same time after the jump (03:30); one that occurs twice (clocks go back),
as the first of the two (`local_instant`).
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


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The instant (UTC) of a local date and time. In a daylight-saving gap it is the same
    time after the jump (02:30 when clocks go from 02:00 to 03:00 is 03:30 local); a time that
    occurs twice is the first of the two (zoneinfo's `fold=0`, read either way)."""
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def dst_note(day: date, at: time, zone: ZoneInfo) -> str | None:
    """Why a local date and time is not plainly one instant (a gap, or twice), or None."""
    first = datetime.combine(day, at, tzinfo=zone)
    second = first.replace(fold=1)
    if first.utcoffset() == second.utcoffset():
        return None
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != first.replace(tzinfo=None):
        shown = instant.astimezone(zone)
        return (
            f"{at:%H:%M} does not exist on {day:%Y-%m-%d} in {zone.key} (the clocks jump "
            f"forward): it means {shown:%H:%M %Z}, the same time after the jump"
        )
    return (
        f"{at:%H:%M} occurs twice on {day:%Y-%m-%d} in {zone.key} (the clocks go back): it "
        f"means the first, {first:%H:%M %Z}"
    )


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
        start = self._last_weekly_start(now)
        end = self._weekly_end(start)
        return Window(start, end) if now < end else None

    def next_start(self, now: datetime) -> datetime | None:
        """When this freeze next starts after `now` (UTC); None if it never will."""
        now = now.astimezone(UTC)
        if self.weekly is None:
            window = self.dated_window()
            return window.start if window.start > now else None
        return self._weekly_at(self._last_weekly_start(now), 7)

    def next_window(self, now: datetime) -> Window | None:
        """The occurrence `now` falls in, else the next one to start; None if none will."""
        current = self.window_at(now)
        if current is not None:
            return current
        start = self.next_start(now)
        if start is None:
            return None
        if self.weekly is None:
            return self.dated_window()
        return Window(start, self._weekly_end(start))

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

    def _local(self, day: date, at: time) -> datetime:
        return local_instant(day, at, self.zone)

    def dated_window(self) -> Window:
        """The window of a dated freeze, as instants."""
        assert self.start is not None and self.until is not None
        zone = self.zone
        start = self.start.replace(tzinfo=zone).astimezone(UTC)
        return Window(start, self.until.replace(tzinfo=zone).astimezone(UTC))

    def _last_weekly_start(self, now: datetime) -> datetime:
        """The latest weekly start at or before `now` (UTC)."""
        assert self.weekly is not None
        today = now.astimezone(self.zone).date()
        back = (today.weekday() - self.weekly.start_day) % 7
        start = self._local(today - timedelta(days=back), self.weekly.start)
        return start if start <= now else self._weekly_at(start, -7)

    def _weekly_at(self, start: datetime, days: int) -> datetime:
        """The weekly start `days` days (local calendar days) from the start `start`."""
        assert self.weekly is not None
        day = start.astimezone(self.zone).date() + timedelta(days=days)
        return self._local(day, self.weekly.start)

    def _weekly_end(self, start: datetime) -> datetime:
        """The first weekly end after `start`."""
        assert self.weekly is not None
        first = start.astimezone(self.zone).date()
        for ahead in range(8):
            day = first + timedelta(days=ahead)
            if day.weekday() == self.weekly.end_day:
                end = self._local(day, self.weekly.end)
                if end > start:
                    return end
        raise AssertionError("a weekly window always ends within 8 days")  # pragma: no cover


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
