"""When a request may run: at the time it was scheduled for (`--at`), once what it promotes has
soaked in its source stage (a policy's `soak`), and inside the allow windows of its target
(`[[window]]`). Pure: the reads and the waiting are bot/core/waits.py and bot/core/stages.py.

- `--at` is read in the requester's time zone: "09:00" (today), "tomorrow 09:00",
  "2026-12-14 09:00". A time already past, or more than 30 days ahead, is refused. A local
  time the clocks skip means the moment they jump (02:30 on a night they go from 02:00 to
  03:00 is 03:00), one they repeat the first of the two: the rule of the freeze windows
  (bot/core/freezes.py, `local_instant`), and the requester is told so.
- Soak is timed from when the source stage got what it runs now: the provider's own timestamp
  or the bot's record of that stage, whichever is later (`seen_after`). The bot's record is
  the last change it knows of there (its own promotions, a provider's webhook, a background
  read) and, when a read shows something it has not seen there before, the last time it saw
  what was there before: a change the bot was not told of is timed from no earlier than that.
- Windows: where `[[window]]` tables match a target, it runs only inside one of them; outside
  them it waits for the next opening. A break-glass request passes them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from bot.core.freezes import TimeWindow, dst_note, fmt_in, local_instant

MAX_AHEAD = timedelta(days=30)  # a schedule further ahead is refused
AT = "--at"
AT_FORMS = "`--at 09:00`, `--at tomorrow 09:00` or `--at 2026-12-14 09:00`"
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DAYS = {"today": 0, "tomorrow": 1}


class AtError(ValueError):
    """`--at` was not followed by a time the bot reads; the message says what it takes."""


# --- `--at`: a moment in the requester's time zone ------------------------------------


@dataclass(frozen=True)
class At:
    """`--at` as typed: a day (0 today, 1 tomorrow, or a date) and a local time of it."""

    day: int | date
    at: time
    text: str  # as typed, for answers


def parse_at(words: Sequence[str]) -> At:
    """The words after `--at` (one or two: a time, or a day and a time) → `At`, or AtError."""
    if not words:
        raise AtError(f"`{AT}` needs a time: {AT_FORMS}.")
    *day_words, clock = words
    text = " ".join(words)[:40].replace("`", "'")
    match = _TIME.match(clock)
    if match is None or len(day_words) > 1:
        raise AtError(f"`{AT} {text}` is not a time the bot reads: {AT_FORMS}.")
    at = time(int(match.group(1)), int(match.group(2)))
    if not day_words:
        return At(0, at, text)
    word = day_words[0].lower()
    if word in _DAYS:
        return At(_DAYS[word], at, text)
    day = _DATE.match(word)
    if day is None:
        raise AtError(f"`{text}`: say the day as today, tomorrow or 2026-12-14.")
    try:
        return At(date(int(day.group(1)), int(day.group(2)), int(day.group(3))), at, text)
    except ValueError:
        raise AtError(f"`{text}`: the date is not one on the calendar.") from None


def at_words(args: Sequence[str], at: int) -> int:
    """How many words after `--at` (at index `at` of `args`) belong to it: a day and a time,
    or a time."""
    following = [w.lower() for w in args[at + 1 : at + 3]]
    if len(following) == 2 and (following[0] in _DAYS or _DATE.match(following[0])):
        return 2
    return 1 if following else 0


@dataclass(frozen=True)
class Scheduled:
    """A schedule resolved to an instant."""

    at: datetime  # UTC
    zone: str  # the time zone it was read in
    note: str | None = None  # how a daylight-saving gap or repeat was read
    whose: str = ""  # where the zone came from, for the requester ("your Slack time zone")


def resolve_at(spec: At, zone: str, now: datetime) -> Scheduled | str:
    """The instant `spec` names in `zone`, or why it is refused (past, over 30 days ahead)."""
    tz = ZoneInfo(zone)
    local_now = now.astimezone(tz)
    day = spec.day if isinstance(spec.day, date) else local_now.date() + timedelta(days=spec.day)
    wall = datetime.combine(day, spec.at)
    instant = local_instant(wall, tz)
    shown = fmt_in(instant, zone)
    if instant <= now:
        hint = " (say `tomorrow` for tomorrow)" if spec.day == 0 else ""
        return (
            f"`{AT} {spec.text}` is {shown}, which has passed (it is {local_now:%H:%M} there "
            f"now){hint}. Nothing was posted."
        )
    if instant - now > MAX_AHEAD:
        return (
            f"`{AT} {spec.text}` is {shown}, more than {MAX_AHEAD.days} days ahead: a "
            "schedule may be at most 30 days ahead. Nothing was posted."
        )
    return Scheduled(instant, zone, dst_note(wall, tz))


# --- soak: how long what is live in a stage has been there ----------------------------


class Live(BaseModel):
    """What is live in a source stage now, as its provider shows it."""

    thing: str  # the stage, as requests name things ("znyx:<project id>:staging")
    place: str  # for people ("staging")
    key: str  # what is live there, by the provider's own id ("" for nothing)
    shown: str  # how people know it ("v3 · sha256:…")
    since: datetime | None = None  # when it went live there, by the provider's own timestamp


@dataclass(frozen=True)
class StageSeen:
    """The bot's record of one stage: what it last saw live there (`key`, "" when a change it
    made or was told of has not been read yet), since when that has been live, and when the
    bot last saw it there."""

    key: str
    since: datetime
    seen_at: datetime


def seen_after(
    seen: StageSeen | None,
    key: str,
    provider_since: datetime | None,
    now: datetime,
    known_at: datetime | None = None,
) -> StageSeen:
    """The record of a stage after a read at `now` shows `key` live there since
    `provider_since` (the provider's word); `known_at`: the bot knows it changed then."""
    floor = [t for t in (provider_since, known_at) if t is not None]
    if seen is not None and seen.key == key:  # the same thing still: the same clock
        since = max(t for t in (seen.since, provider_since) if t is not None)
    elif seen is not None:  # it changed since the bot last saw it: not before then
        since = max([seen.seen_at, *floor])
    else:
        since = max(floor) if floor else now
    return StageSeen(key, since, max(now, seen.seen_at) if seen else now)


def changed_at(at: datetime) -> StageSeen:
    """The record of a stage the bot knows changed at `at` (what to, a read tells)."""
    return StageSeen("", at, at)


# --- what a request waits for ------------------------------------------------------------


class Timing(BaseModel):
    """What a request waits for, as it was last worked out; kept with the request."""

    run_at: datetime | None = None  # `--at`, as an instant
    zone: str | None = None  # the zone `--at` was read in
    at_note: str | None = None  # how a daylight-saving gap or repeat was read
    soak_place: str | None = None  # the source stage it soaks in ("staging")
    soak_thing: str | None = None
    soak_key: str | None = None  # what the soak clock times (the source's key then)
    soak_shown: str | None = None  # "v3 · sha256:…"
    soak_since: datetime | None = None
    soak_until: datetime | None = None
    soak_unread: str | None = None  # the source could not be read: why
    restarted: str | None = None  # "staging changed (v3 → v4) at …: the soak clock restarted"
    window: str | None = None  # the window it waits for ("Tue 09:00–16:00 Europe/Berlin")
    window_opens: datetime | None = None
    never: str | None = None  # why it can never run (no window ahead)
    runs_at: datetime | None = None  # the earliest moment every gate is open (None: now)
    held: str | None = None  # why it did not run when its time came

    @property
    def scheduled(self) -> bool:
        return self.run_at is not None


def gate(
    now: datetime,
    *,
    run_at: datetime | None,
    soak_until: datetime | None,
    windows: Sequence[TimeWindow],
) -> tuple[datetime | None, TimeWindow | None]:
    """The earliest moment at or after `now` the schedule, the soak and the windows allow,
    and the window that moment waits for (None when it is in one already, or none apply);
    (None, None) when no window will open again."""
    at = max(t for t in (now, run_at, soak_until) if t is not None)
    if not windows or any(w.window_at(at) is not None for w in windows):
        return at, None
    upcoming = [(w.next_start(at), w) for w in windows]
    ahead = [(start, w) for start, w in upcoming if start is not None]
    if not ahead:
        return None, None
    start, window = min(ahead, key=lambda pair: pair[0])
    return start, window


def windows_for(windows: Sequence[TimeWindow], target: str) -> list[TimeWindow]:
    return [w for w in windows if w.applies_to(target)]


def worked_out(
    timing: Timing,
    now: datetime,
    *,
    soak: timedelta | None,
    live: Live | None,
    seen: StageSeen | None,
    windows: Sequence[TimeWindow],
) -> Timing:
    """`timing` worked out again at `now`: the soak from what the source shows (`live`, and
    `seen`, the bot's record of it after this read), the window, when it may run."""
    update: dict[str, object] = {"held": None}
    if soak is not None and live is not None and seen is not None:
        restarted = timing.restarted
        if timing.soak_key is not None and timing.soak_key != live.key:
            restarted = (
                f"{live.place} changed ({timing.soak_shown} → {live.shown}), so the soak "
                "clock restarted"
            )
        update |= {
            "soak_place": live.place,
            "soak_thing": live.thing,
            "soak_key": live.key,
            "soak_shown": live.shown,
            "soak_since": seen.since,
            "soak_until": seen.since + soak,
            "soak_unread": None,
            "restarted": restarted,
        }
    elif soak is None:
        update |= {"soak_until": None, "soak_thing": None, "soak_key": None}
    soak_until = update.get("soak_until", timing.soak_until)
    runs_at, window = gate(
        now,
        run_at=timing.run_at,
        soak_until=soak_until if isinstance(soak_until, datetime) else None,
        windows=windows,
    )
    update |= {
        "runs_at": runs_at if runs_at is not None and runs_at > now else None,
        "window": window.span() if window is not None else None,
        "window_opens": runs_at if window is not None else None,
        "never": None
        if runs_at is not None
        else "no allow window for it opens again (every [[window]] of its target has passed)",
    }
    return timing.model_copy(update=update)


def runs_text(timing: Timing | None, zone: str) -> str | None:
    """ "runs at Tue 2026-12-15 14:05 Europe/Berlin" while it waits for a moment, else None
    (in the zone it was scheduled in, if it was; else in `zone`)."""
    if timing is None or timing.runs_at is None:
        return None
    return f"runs at {fmt_in(timing.runs_at, timing.zone or zone)}"
