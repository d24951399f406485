"""Settings and the config file: every problem is one line naming the key."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_config, load_settings, parse_config
from bot.core.policy import format_duration, parse_duration
from bot.providers.registry import PROVIDERS
from bot.providers.spec import SettingError

ROOT = Path(__file__).resolve().parents[1]


def test_the_example_config_is_valid() -> None:
    config = load_config(ROOT / "promote-bot.example.toml")
    assert "znyx:guardrails:prod" in config.providers["znyx"].targets()
    assert config.role_map.scopes_of("U01ALICE")


TEAM = {
    "roles": {"rm": ["bundle:publish"], "lead": []},
    "members": {"U1ALICE": ["rm"], "U1BOB": ["rm"]},
    "znyx": {"org": "o", "projects": {"guardrails": "p"}},
}


def test_policies_that_can_be_met_pass() -> None:
    ok = {**TEAM, "policies": {"znyx:*:prod": {"approvals": 1}, "*": {"approvals": 1}}}
    assert parse_config(ok).policies["znyx:*:prod"].approvals == 1
    self_ok = {**TEAM, "policies": {"znyx:*": {"approvals": 2, "allow_self_approval": True}}}
    assert parse_config(self_ok).policies["znyx:*"].approvals == 2
    same = {**TEAM, "policies": {"znyx:*": {"approvals": 1, "emergency_approvals": 1}}}
    assert parse_config(same).policies["znyx:*"].emergency_approvals == 1  # not below: fine
    group = {**TEAM, "members": {**TEAM["members"], "S0LEADS": ["lead", "rm"]}}
    leads = {**group, "policies": {"znyx:*": {"approvals": 3, "approver_roles": ["lead"]}}}
    assert parse_config(leads).policies["znyx:*"].approvals == 3  # the group's size is unknown


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "roles: this key is required"),
        ({"roles": {"rm": ["deploy:all"]}}, "role 'rm' has unknown scope 'deploy:all'"),
        (
            {"roles": {"rm": []}, "members": {"U1ALICE": ["admin"]}},
            "U1ALICE has unknown role 'admin'",
        ),
        ({"roles": {"rm": []}, "members": {"alice": ["rm"]}}, "'alice' is not a Slack user id"),
        ({"roles": {}, "znyx": {"projects": {}}}, "znyx.org: this key is required"),
        (
            {"roles": {}, "znyx": {"org": "o", "projects": {"a b": "p"}}},
            "'a b' is not a valid alias",
        ),
        (
            {"roles": {}, "znyx": {"org": "o", "projects": {"g": "../p"}}},
            "is not a Znyx project id",
        ),
        ({"roles": {}, "policies": {"nope": {}}}, "'nope' is not a target pattern"),
        ({"roles": {}, "policies": {"znyx:*": {"approvals": -1}}}, "policies.znyx:*.approvals"),
        (
            {"roles": {}, "policies": {"znyx:*": {"aprovals": 2}}},
            "policies.znyx:*.aprovals: unknown key; allowed keys here: approvals, "
            "allow_self_approval, approver_roles, expires_after",
        ),
        (
            {"roles": {}, "policies": {"znyx:*": {"approver_roles": ["x"]}}},
            "unknown approver role 'x'",
        ),
        (
            {"roles": {}, "slack": {}},
            "slack: unknown key; allowed keys here: roles, members, policies, timezone, znyx, "
            "whop, appstore, freeze, window",
        ),
        ({"roles": {}, "znyx": {"org": "o", "projekts": {}}}, "allowed keys here: org, projects"),
        ({"roles": {"rm": "bundle:publish"}}, "roles.rm: expected a list, like"),
        ({"roles": {"rm": []}, "members": {"U1ALICE": "rm"}}, "members.U1ALICE: expected a list"),
        ({"roles": {}, "policies": {"znyx:*": {"approvals": "two"}}}, "expected a whole number"),
        ({"roles": {}, "policies": {"znyx:*": {"approvals": 11}}}, "approvals: must be at most 10"),
        ({"roles": {}, "znyx": "o"}, "znyx: expected a table"),
        (
            {"roles": {}, "policies": {"whop:*": {}}},
            "policies.whop:*: Whop is not configured (no [whop] in this file), so it never applies",
        ),
        (
            {**TEAM, "policies": {"znyx:guardrail:prod": {}}},
            "policies.znyx:guardrail:prod: matches no target of this config (its targets: "
            "znyx:guardrails:dev, znyx:guardrails:staging, znyx:guardrails:prod)",
        ),
        (
            {**TEAM, "policies": {"znyx:*:qa": {}}},
            "policies.znyx:*:qa: matches no target",
        ),
        (
            {**TEAM, "policies": {"znyx:*:prod": {"rollback_approvals": 2}}},
            "policies.znyx:*:prod: rollback_approvals = 2 can never be met: only 1 configured",
        ),
        (
            {**TEAM, "policies": {"znyx:*:prod": {"emergency_approvals": 2}}},
            "policies.znyx:*:prod: emergency_approvals = 2 can never be met: only 1 configured",
        ),
        (
            {**TEAM, "policies": {"znyx:*:prod": {"approvals": 2, "emergency_approvals": 1}}},
            "policies.znyx:*:prod: emergency_approvals = 1 is below approvals = 2: break-glass "
            "must never need fewer approvals than the normal path",
        ),
        (
            {"roles": {}, "policies": {"znyx:*": {"rollback_approvals": -1}}},
            "rollback_approvals: must be at least 0",
        ),
        (
            {**TEAM, "policies": {"znyx:*:prod": {"approvals": 2}}},
            "policies.znyx:*:prod: approvals = 2 can never be met: only 1 configured people could "
            "approve (members with `bundle:publish`, less the requester)",
        ),
        (
            {**TEAM, "policies": {"znyx:*": {"approvals": 1, "approver_roles": ["lead"]}}},
            "approvals = 1 can never be met: only 0 configured people could approve "
            "(members with `bundle:publish` in lead, less the requester)",
        ),
        ({"roles": {}, "whop": {"apps": {"s": "store"}}}, "s = 'store' is not a Whop app id"),
    ],
)
def test_config_errors_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="promote-bot.toml")
    text = str(caught.value)
    assert message in text and "\n" not in text and text.startswith("promote-bot.toml: ")


def test_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"PROMOTE_BOT_CONFIG: .* does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[roles\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("ZNYX_TOKEN", "secret-znyx")
    settings = load_settings()
    assert settings.port == 8080 and not settings.socket_mode
    znyx = PROVIDERS["znyx"].load_settings()
    assert znyx.znyx_token.get_secret_value() == "secret-znyx"
    assert "secret-znyx" not in repr(znyx)  # secrets never print
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert load_settings().socket_mode


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", "PORT: expected a whole number from 0 to 65535, not 'eighty'"),
        ("PORT", "70000", "PORT: expected a whole number from 0 to 65535, not '70000'"),
        ("SLACK_BOT_TOKEN", "xoxp-user", "SLACK_BOT_TOKEN: a bot token starts with 'xoxb-'"),
        ("SLACK_APP_TOKEN", "xoxb-1", "SLACK_APP_TOKEN: an app-level token starts with 'xapp-'"),
        ("PORT", "abc", "PORT: expected a whole number from 0 to 65535, not 'abc'"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: expected 'text' or 'json', not 'xml'"),
        (
            "PROMOTE_BOT_SHUTDOWN_SECONDS",
            "soon",
            "PROMOTE_BOT_SHUTDOWN_SECONDS: expected a number from 0 to 3600, not 'soon'",
        ),
        ("SLACK_API_URL", "slack", "SLACK_API_URL: expected a URL like https://slack.com/api/"),
        (  # shorter than Slack takes to deliver a payload again
            "PROMOTE_BOT_INBOX_RETENTION",
            "60",
            "PROMOTE_BOT_INBOX_RETENTION: expected a whole number from 600 to 2592000, not '60'",
        ),
        (
            "PROMOTE_BOT_DB",
            "mysql://bot:db-very-secret@db/promote",
            "PROMOTE_BOT_DB: a mysql:// URI is not a database promote-bot can use: expected the "
            "path of a SQLite file (like ./promote-bot.db, created if missing) or a "
            "postgresql://user:password@host:5432/database URI",
        ),
        ("PROMOTE_BOT_DB", "sqlite:///bot.db", "PROMOTE_BOT_DB: a sqlite:// URI is not a database"),
    ],
)
def test_invalid_settings(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value) and "db-very-secret" not in str(caught.value)
    assert "Input should" not in str(caught.value)  # pydantic's words are not the bot's


def test_a_database_uri_of_postgresql_or_a_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    for value in ("postgresql://bot@db/promote", "postgres://bot@db/promote"):
        monkeypatch.setenv("PROMOTE_BOT_DB", value)
        assert load_settings().promote_bot_db == value
    monkeypatch.setenv("PROMOTE_BOT_DB", "data/promote-bot.db")
    assert load_settings().promote_bot_db == Path("data/promote-bot.db")


def test_a_config_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "promote-bot.toml"
    path.write_bytes(codecs.BOM_UTF8 + (ROOT / "promote-bot.example.toml").read_bytes())
    assert "znyx:guardrails:prod" in load_config(path).providers["znyx"].targets()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[roles]\n".encode("utf-16"), "is UTF-16 text, not UTF-8: a config file must be UTF-8"),
        ("[roles]\n".encode("utf-16-le"), "is UTF-16 text, not UTF-8"),  # no byte-order mark
        (b"[roles]\n# caf\xe9\n", "is not UTF-8 text (line 2 has the byte 0xe9)"),
    ],
    ids=["utf-16", "utf-16-no-bom", "latin-1"],
)
def test_a_config_file_not_in_utf8_is_one_line_naming_the_setting(
    tmp_path: Path, raw: bytes, message: str
) -> None:
    path = tmp_path / "promote-bot.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert text.startswith(f"PROMOTE_BOT_CONFIG: {path} {message}") and "\n" not in text


def test_durations_are_written_back_as_the_config_writes_them() -> None:
    for text in ("24h", "2d", "90m", "45s", "36h", "1m"):
        assert format_duration(parse_duration(text)) == text


def test_invalid_provider_settings_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZNYX_API_URL", "not a url")
    with pytest.raises(SettingError) as caught:
        PROVIDERS["znyx"].load_settings()
    assert str(caught.value) == "ZNYX_API_URL: expected a URL like https://api.znyx.ai/"


def test_defaults() -> None:
    settings = Settings()
    assert settings.promote_bot_inbox_retention == 3600
    assert str(PROVIDERS["znyx"].load_settings().znyx_api_url) == "https://api.znyx.ai/"
    assert settings.promote_bot_config == Path("promote-bot.toml")
    assert settings.promote_bot_db == Path("promote-bot.db")
