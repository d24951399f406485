"""Locks and freeze windows, pure: pattern matching and DST-correct window arithmetic, the
--emergency flag, and [[freeze]] config errors that name the entry."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, time, timedelta

import pytest

from bot.config import ConfigError, parse_config
from bot.core.commands import Lock as LockCommand
from bot.core.commands import Promote, Unlock, UsageError, parse
from bot.core.freezes import Freeze, Weekly, next_freeze, parse_weekly
from bot.core.holds import holds_on
from bot.core.model import Lock
from bot.core.policy import Policy
from tests.conftest import CONFIG


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


WEEKEND_NY = Freeze(
    "freeze 1",
    ("whop:*",),
    "Weekend",
    "America/New_York",
    weekly=parse_weekly("Fri 16:00 - Mon 08:00"),
)
YEAR_END = Freeze(
    "freeze 2",
    ("znyx:*:prod",),
    "Year-end freeze",
    "Europe/Berlin",
    start=datetime(2026, 12, 20, 0, 0),
    until=datetime(2027, 1, 4, 8, 0),
)


def test_parse_weekly() -> None:
    assert parse_weekly("Fri 16:00 - Mon 08:00") == Weekly(4, time(16), 0, time(8))
    assert parse_weekly("friday 9:30-friday 17:00") == Weekly(4, time(9, 30), 4, time(17))
    for bad, says in [
        ("Fri 16:00", "is not a weekly window"),
        ("Fry 16:00 - Mon 08:00", "'Fry' is not a day"),
        ("Fri 25:00 - Mon 08:00", "not HH:MM"),
        ("Fri 16:00 - Fri 16:00", "same moment"),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_weekly(bad)


def test_weekly_window_across_spring_forward_in_new_york() -> None:
    # DST starts Sun 2026-03-08 02:00 in New York: Friday 16:00 is EST (UTC-5), Monday 08:00
    # is EDT (UTC-4). The window is 64 hours of wall-clock time but 63 real hours.
    starts, ends = utc(2026, 3, 6, 21, 0), utc(2026, 3, 9, 12, 0)
    window = WEEKEND_NY.window_at(utc(2026, 3, 8, 12, 0))
    assert window is not None and (window.start, window.end) == (starts, ends)
    assert window.end - window.start == timedelta(hours=63)
    assert WEEKEND_NY.window_at(starts - timedelta(seconds=1)) is None
    assert WEEKEND_NY.window_at(starts) is not None
    assert WEEKEND_NY.window_at(ends - timedelta(seconds=1)) is not None
    assert WEEKEND_NY.window_at(ends) is None
    # 12:30 UTC on Monday is 08:30 EDT: over, though it would still be 07:30 in EST.
    assert WEEKEND_NY.window_at(utc(2026, 3, 9, 12, 30)) is None
    assert WEEKEND_NY.next_start(utc(2026, 3, 9, 12, 30)) == utc(2026, 3, 13, 20, 0)  # EDT now


def test_weekly_window_across_fall_back_in_berlin() -> None:
    weekend = Freeze(
        "f", ("*",), "Weekend", "Europe/Berlin", weekly=parse_weekly("Fri 18:00 - Mon 06:00")
    )
    # Summer time ends Sun 2026-10-25 03:00 → 02:00: Friday 18:00 CEST, Monday 06:00 CET;
    # 60 hours on the wall clock, 61 real ones.
    window = weekend.window_at(utc(2026, 10, 25, 1, 30))  # inside the repeated hour
    assert window is not None
    assert (window.start, window.end) == (utc(2026, 10, 23, 16, 0), utc(2026, 10, 26, 5, 0))
    assert window.end - window.start == timedelta(hours=61)


def test_weekly_window_that_starts_and_ends_on_the_same_weekday() -> None:
    overnight = Freeze("f", ("*",), "Nightly", "UTC", weekly=parse_weekly("Wed 22:00 - Wed 06:00"))
    # From Wednesday 22:00 to the next Wednesday 06:00: nearly a whole week.
    assert overnight.window_at(utc(2026, 6, 3, 21, 59)) is None  # a Wednesday
    window = overnight.window_at(utc(2026, 6, 3, 22, 0))
    assert window is not None and window.end == utc(2026, 6, 10, 6, 0)
    assert overnight.window_at(utc(2026, 6, 10, 6, 0)) is None


def test_dated_window_in_its_zone() -> None:
    # 2026-12-20 00:00 in Berlin (CET, UTC+1) is 2026-12-19 23:00 UTC.
    assert YEAR_END.window_at(utc(2026, 12, 19, 22, 59)) is None
    assert YEAR_END.window_at(utc(2026, 12, 19, 23, 0)) is not None
    assert YEAR_END.window_at(utc(2027, 1, 4, 7, 0)) is None  # 08:00 Berlin
    assert YEAR_END.next_start(utc(2026, 6, 1)) == utc(2026, 12, 19, 23, 0)
    assert YEAR_END.next_start(utc(2026, 12, 25)) is None


def test_holds_on_matches_patterns_like_policies() -> None:
    lock = Lock("znyx:*:prod", "incident 4521", "U0DAVE", utc(2026, 3, 1, 9, 0))
    now = utc(2026, 12, 21, 12, 0)
    held = holds_on("znyx:guardrails:prod", [lock], [YEAR_END, WEEKEND_NY], now)
    assert [h.kind for h in held] == ["lock", "freeze"]
    assert "<@U0DAVE>" in held[0].text and "incident 4521" in held[0].text
    assert "2026-03-01 09:00 UTC" in held[0].text
    assert "Year-end freeze" in held[1].text and "2027-01-04 08:00 Europe/Berlin" in held[1].text
    assert holds_on("znyx:guardrails:staging", [lock], [YEAR_END], now) == []
    assert holds_on("whop:storefront", [lock], [YEAR_END], now) == []


def test_the_next_freeze_is_the_soonest() -> None:
    upcoming = next_freeze([YEAR_END, WEEKEND_NY], utc(2026, 12, 16, 12, 0))  # a Wednesday
    assert upcoming == (WEEKEND_NY, utc(2026, 12, 18, 21, 0))


def test_emergency_needs_one_approval_more_or_as_configured() -> None:
    assert Policy(approvals=1).for_emergency().approvals == 2
    assert Policy(approvals=0).for_emergency().approvals == 1
    assert Policy(approvals=1, emergency_approvals=3).for_emergency().approvals == 3


RULES = parse_config(tomllib.loads(CONFIG))


def test_emergency_and_lock_parsing() -> None:
    command = parse("znyx guardrails staging --emergency prod is down, INC-4521", RULES)
    assert isinstance(command, Promote) and command.emergency == "prod is down, INC-4521"
    assert command.action.target == "znyx:guardrails:prod"
    plain = parse("znyx guardrails staging", RULES)
    assert isinstance(plain, Promote) and plain.emergency is None
    with pytest.raises(UsageError, match="followed by why"):
        parse("znyx guardrails staging --emergency", RULES)
    assert parse("lock znyx:*:prod incident 4521", RULES) == LockCommand(
        "znyx:*:prod", "incident 4521"
    )
    assert parse("unlock znyx:*:prod", RULES) == Unlock("znyx:*:prod")
    with pytest.raises(UsageError, match="needs a reason"):
        parse("lock znyx:*:prod", RULES)
    with pytest.raises(UsageError, match="not a target pattern"):
        parse("lock ../etc why", RULES)
    assert parse("lock whop:* <!channel> hi", RULES) == LockCommand(
        "whop:*", "<!channel> hi"
    )  # as typed: escaped where shown


FREEZE = """
[[freeze]]
targets = ["znyx:*:prod"]
reason = "Year-end freeze"
{body}
"""


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            'from = "2026-12-20T00:00"\nuntil = "2026-12-19T00:00"\ntimezone = "Europe/Berlin"',
            "`until` must be after `from`",
        ),
        (
            'from = "2026-12-20T00:00"\nuntil = "2027-01-04T08:00"\ntimezone = "Mars/Olympus"',
            "'Mars/Olympus' is not a time zone",
        ),
        (
            'weekly = "Fri 16:00 - Mon 08:00"\nfrom = "2026-12-20T00:00"\ntimezone = "UTC"',
            "not both",
        ),
        ('weekly = "Friday evening"\ntimezone = "UTC"', "is not a weekly window"),
        ('timezone = "UTC"', "needs `from` and `until`"),
        ('from = "2026-12-20"\nuntil = "soon"\ntimezone = "UTC"', "until: 'soon' is not a date"),
        (
            'from = 2026-12-20T00:00:00+01:00\nuntil = 2027-01-04T08:00:00\ntimezone = "UTC"',
            "from: write it without an offset",
        ),
        ('weekly = "Fri 16:00 - Mon 08:00"', "timezone: this key is required"),
        ('weekly = "Fri 16:00 - Mon 08:00"\ntimezone = "UTC"\nuntill = 1', "unknown key"),
    ],
)
def test_invalid_freezes_are_start_up_errors_naming_the_entry(body: str, says: str) -> None:
    text = CONFIG + FREEZE.format(body='weekly = "Sat 00:00 - Sun 00:00"\ntimezone = "UTC"')
    text += FREEZE.format(body=body)
    with pytest.raises(ConfigError) as caught:
        parse_config(tomllib.loads(text), source="bot.toml")
    message = str(caught.value)
    assert message.startswith("bot.toml: [[freeze]] freeze 2 ('Year-end freeze'): ")
    assert says in message and "\n" not in message


def test_a_freeze_on_no_target_of_the_config_is_refused() -> None:
    text = CONFIG + FREEZE.format(body='weekly = "Sat 00:00 - Sun 00:00"\ntimezone = "UTC"')
    text = text.replace('targets = ["znyx:*:prod"]', 'targets = ["znyx:nowhere:prod"]')
    with pytest.raises(ConfigError, match="'znyx:nowhere:prod' matches no target"):
        parse_config(tomllib.loads(text))


def test_valid_freezes_reach_the_rules_as_plain_data() -> None:
    text = CONFIG + FREEZE.format(
        body='from = 2026-12-20T00:00:00\nuntil = "2027-01-04T08:00"\ntimezone = "Europe/Berlin"'
    )
    [freeze] = parse_config(tomllib.loads(text)).freezes
    assert freeze.start == datetime(2026, 12, 20) and freeze.until == datetime(2027, 1, 4, 8)
    assert freeze.targets == ("znyx:*:prod",) and freeze.timezone == "Europe/Berlin"
