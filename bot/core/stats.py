"""What the releases add up to, per target: the DORA measures from the requests that ended in
a window (`/promote stats`, the App Home's last 7 days). The database counts (bot/store/
figures.py); this module is the arithmetic on top and the words. Pure.

The definitions, written once (the README's "What the releases add up to" says the same):

- A *promotion* is a request that is not a rollback. Each number counts the requests that
  *ended* (reached their final state) in the window.
- Deployment frequency: promotions that succeeded, and per week (× 7 / days).
- Lead time: from the request to its success, of the succeeded promotions (p50, p90).
- Approval wait: from the request to its first approval, of the promotions approved (p50).
- Change failure rate: succeeded promotions undone by a rollback since, plus promotions that
  failed or whose outcome is unknown, over all the promotions that ran (succeeded, failed or
  unknown). Rejected, cancelled and expired ones never ran.
- Time to restore: from a promotion's success to its rollback's success, of the rollbacks that
  succeeded (p50). Rollbacks: how many succeeded. Emergencies: break-glass requests.
- Changes outside the bot: what a provider showed had changed at a target without a request
  of the bot's (a Znyx webhook, say); previews that moved: requests whose provider moved
  before they were decided (drift), each once. Both from the audit log, by when recorded.
- p50 and p90 are by nearest rank: half (nine in ten) of them took at most that long.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.figures import TargetFigures
from bot.core.markup import fmt_time, literal
from bot.core.texts import fit

DEFAULT_DAYS = 30
MAX_DAYS = 366
HOME_DAYS = 7
# Buckets of the duration histograms in /metrics: a minute to a week.
BOUNDS: tuple[float, ...] = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
    172800.0,
    604800.0,
)
HOME_SHOWN = 10


@dataclass(frozen=True)
class Window:
    """[since, until): the last `days` days up to `until`, from the start of that minute (asks
    within a minute count the same requests, and may be answered with the same count)."""

    since: datetime
    until: datetime
    days: int


def window(now: datetime, days: int) -> Window:
    since = (now - timedelta(days=days)).replace(second=0, microsecond=0)
    return Window(since, now, days)


def ran(f: TargetFigures) -> int:
    """Promotions that ran: the provider was called."""
    return f.succeeded + f.failed + f.unknown


def failures(f: TargetFigures) -> int:
    """Promotions that went wrong: undone since, failed, or unknown."""
    return f.rolled_back + f.failed + f.unknown


def per_week(f: TargetFigures, days: int) -> float:
    return f.succeeded * 7 / days


def failure_rate(f: TargetFigures) -> float | None:
    """The change failure rate (0 to 1); None when no promotion ran."""
    return failures(f) / ran(f) if ran(f) else None


def duration(seconds: float | None) -> str:
    """ "45 s", "12 min", "3 h 5 min", "2 d 4 h"; "–" for nothing measured."""
    if seconds is None:
        return "–"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    days, hours = divmod(hours, 24)
    return f"{days} d" + (f" {hours} h" if hours else "")


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def _rate(f: TargetFigures) -> str:
    rate = failure_rate(f)
    if rate is None:
        return "–"
    return f"{round(rate * 100)}% ({failures(f)} of {ran(f)})"


def _week(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".") if value else "0"


def _beside(f: TargetFigures) -> str:
    """What happened beside the bot's promotions: "2 changes outside the bot · 1 preview
    moved before a decision"; "" for none."""
    said = []
    if f.outside:
        said.append(_count(f.outside, "change") + " outside the bot")
    if f.drifted:
        said.append(_count(f.drifted, "preview") + " moved before a decision")
    return " · ".join(said)


def _requests(f: TargetFigures) -> bool:
    """Whether any of the target's requests are counted (not only what the audit log says)."""
    return bool(ran(f) or f.stopped or f.rollbacks or f.emergencies)


def target_lines(f: TargetFigures, days: int) -> list[str]:
    """One target's numbers: its name, then three lines (and one for what happened beside
    the bot, if anything did); only that line for a target where nothing else happened."""
    name = f"*`{literal(f.target)}`*"
    beside = _beside(f)
    if beside and not _requests(f):
        return [name, beside]
    never = f", {f.stopped} never ran" if f.stopped else ""
    return [
        name,
        f"Promotions: {f.succeeded} succeeded ({_week(per_week(f, days))} a week), "
        f"{f.failed} failed, {f.unknown} unknown{never}",
        f"Lead time p50 {duration(f.lead_p50)}, p90 {duration(f.lead_p90)} · "
        f"approval wait p50 {duration(f.wait_p50)}",
        f"Change failure rate {_rate(f)} · time to restore p50 {duration(f.restore_p50)} · "
        f"{_count(f.rollbacks, 'rollback')} · {_count(f.emergencies, 'emergency', 'emergencies')}",
    ] + ([beside] if beside else [])


def _scope(pattern: str | None) -> str:
    return f" for `{literal(pattern)}`" if pattern else ""


def stats_text(figures: Sequence[TargetFigures], w: Window, pattern: str | None = None) -> str:
    """`/promote stats`: each target's numbers over the window (as many as a message holds)."""
    days = _count(w.days, "day")
    span = f"{fmt_time(w.since)} – {fmt_time(w.until)}"
    if not figures:
        return (
            f"No request{_scope(pattern)} you may see ended in the last {days} ({span}). "
            "Try more days: `/promote stats --days 90`."
        )
    head = [f"*What the releases add up to{_scope(pattern)}, last {days}* ({span}):"]
    blocks = ["\n".join(target_lines(f, w.days)) for f in figures]
    audited = (
        " and the audit log's changes outside the bot and previews that moved"
        if any(f.outside or f.drifted for f in figures)
        else ""
    )
    tail = [
        "Counted from the requests that ended in the window (a promotion is a request that is "
        f"not a rollback; p50 and p90 by nearest rank){audited}; every definition is in the "
        "README, under “What the releases add up to”."
    ]
    more = "… and {n} more targets: narrow it with a pattern, e.g. `/promote stats znyx:*`."
    return fit(head, blocks, tail, more=more)


def home_line(f: TargetFigures, days: int) -> str:
    """One target on one line, for the App Home."""
    beside = _beside(f)
    if beside and not _requests(f):
        return f"`{literal(f.target)}` · {beside}"
    return (
        f"`{literal(f.target)}` · {f.succeeded} succeeded ({_week(per_week(f, days))}/week) · "
        f"lead p50 {duration(f.lead_p50)} · failure rate {_rate(f)} · "
        f"restore p50 {duration(f.restore_p50)} · {_count(f.rollbacks, 'rollback')}"
        + (f" · 🚨 {f.emergencies}" if f.emergencies else "")
        + (f" · {beside}" if beside else "")
    )


def home_lines(figures: Sequence[TargetFigures], days: int = HOME_DAYS) -> list[str]:
    lines = [home_line(f, days) for f in figures[:HOME_SHOWN]]
    if len(figures) > HOME_SHOWN:
        lines.append(f"… and {len(figures) - HOME_SHOWN} more: `/promote stats --days {days}`")
    return lines
