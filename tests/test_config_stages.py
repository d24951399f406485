"""Stages, soak, auto-promotion, allow windows and the time zone in the config file: refused
at start-up in one line when they can't work, and shown by `check-config` per target."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import ConfigError, parse_config
from bot.core.rules import Rules
from tests.conftest import CONFIG


def _rules(extra: str, head: str = "") -> Rules:
    return parse_config(tomllib.loads(head + CONFIG + extra), source="promote-bot.toml")


@pytest.mark.parametrize(
    ("head", "extra", "error"),
    [
        (
            "",
            '[policies."znyx:*:prod"]\nauto = true\nchannel = "C0AUTO"\n',
            "policies.znyx:*:prod: auto = true needs approvals = 0 (it has 1): the bot asks for "
            "the promotion itself, so nobody would be asked to approve it",
        ),
        (
            "",
            '[policies."znyx:*:prod"]\napprovals = 0\nauto = true\n',
            "policies.znyx:*:prod: auto = true needs a channel for the bot's own requests: set "
            "`channel` here",
        ),
        (
            "",
            '[policies."whop:*"]\nsoak = "2h"\n',
            "policies.whop:*: soak needs a stage to promote from, and none of its targets "
            "(whop:storefront, whop:backoffice) has one",
        ),
        (
            "",
            '[policies."znyx:*:dev"]\napprovals = 0\nauto = true\nchannel = "C0AUTO"\n',
            "policies.znyx:*:dev: auto = true needs a stage to promote from",
        ),
        (
            "",
            '[policies."znyx:*:prod"]\nsoak = "a while"\n',
            "policies.znyx:*:prod.soak: 'a while' is not a duration like '30m', '24h' or '2d'",
        ),
        (
            "",
            '[policies."znyx:*:prod"]\napprovals = 0\nauto = true\nchannel = "#releases"\n',
            "policies.znyx:*:prod: channel: '#releases' is not a Slack channel id",
        ),
        (
            'timezone = "Europe/Atlantis"\n',
            "",
            "timezone: 'Europe/Atlantis' is not a time zone like 'Europe/Berlin' or 'UTC'",
        ),
        (
            "",
            '[[window]]\ntargets = ["znyx:*:prod"]\nweekly = "Tue 09:00"\ntimezone = "UTC"\n',
            "[[window]] window 1: 'Tue 09:00' is not a weekly window like 'Fri 16:00 - Mon 08:00'",
        ),
        (
            "",
            '[[window]]\ntargets = ["znyx:*:qa"]\nweekly = "Tue 09:00 - Tue 16:00"\n'
            'timezone = "UTC"\n',
            "[[window]] window 1: targets: 'znyx:*:qa' matches no target of this config",
        ),
        (
            "",
            '[[window]]\ntargets = ["znyx:*:prod"]\nweekly = "Tue 09:00 - Tue 16:00"\n',
            "[[window]] window 1: timezone: this key is required",
        ),
    ],
)
def test_stage_settings_that_cant_work_stop_start_up_in_one_line(
    head: str, extra: str, error: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _rules(extra, head)
    text = str(caught.value)
    assert error in text and "\n" not in text and text.startswith("promote-bot.toml: ")


def test_a_broad_pattern_soaks_where_there_is_a_stage_before() -> None:
    rules = _rules('[policies."znyx:*"]\nsoak = "1h"\n')  # dev has none before it: no soak there
    assert rules.stage_promotion("znyx:guardrails:dev") is None
    staged = rules.stage_promotion("znyx:guardrails:prod")
    assert staged is not None and staged.source_name == "staging"


def test_the_bots_own_requests_go_to_the_policys_channel_else_the_providers() -> None:
    text = CONFIG.replace('org = "org-test"', 'org = "org-test"\nchannel = "C0ZNYX"')
    rules = parse_config(
        tomllib.loads(
            text + '[policies."znyx:guardrails:prod"]\napprovals = 0\nauto = true\n'
            '[policies."znyx:twostage:staging"]\napprovals = 0\nauto = true\nchannel = "C0TWO"\n'
        )
    )
    autos = {a.target: rules.channel_for(a.target, p) for a, p in rules.auto_stages()}
    assert autos == {"znyx:guardrails:prod": "C0ZNYX", "znyx:twostage:staging": "C0TWO"}


def test_check_config_prints_soak_auto_and_windows_per_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "promote-bot.toml"
    config.write_text(
        'timezone = "Europe/Berlin"\n'
        + CONFIG
        + '[policies."znyx:*:staging"]\napprovals = 0\nauto = true\nchannel = "C0AUTO"\n'
        + '[policies."znyx:*:prod"]\nsoak = "2h"\n'
        + '[[window]]\ntargets = ["znyx:*:prod"]\nreason = "Release window"\n'
        + 'weekly = "Tue 09:00 - Thu 16:00"\ntimezone = "Europe/Berlin"\n'
    )
    assert main(["check-config", str(config)]) == 0
    out = capsys.readouterr().out
    assert (
        "  znyx:guardrails:staging: runs without approval; a rollback runs without approval; "
        "--emergency needs 1 approval; auto: promotes itself when dev changes (posted in "
        'C0AUTO) ([policies."znyx:*:staging"])'
    ) in out
    assert (
        "  znyx:guardrails:prod: needs 1 approval, not by the requester; expires after 24h; "
        "a rollback needs 1 approval; --emergency needs 2 approvals; soak: 2h in staging; runs "
        'only in the window Tue 09:00 – Thu 16:00 Europe/Berlin ([policies."znyx:*:prod"])'
    ) in out
    assert (
        "  znyx:guardrails:dev: needs 1 approval, not by the requester; expires after 24h; "
        "a rollback needs 1 approval; --emergency needs 2 approvals (the default)"
    ) in out
    assert (
        "Allow windows (1):\n  znyx:*:prod: Release window (every Tue 09:00 - Thu 16:00 "
        "Europe/Berlin)"
    ) in out
    assert "Times are shown in Europe/Berlin (`timezone`)" in out
