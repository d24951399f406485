"""Parsing `/promote` text: pure, table-driven."""

from __future__ import annotations

import pytest

from bot.config import parse_config
from bot.core.commands import Help, Promote, Rollback, UsageError, parse, parse_request_id
from bot.core.rules import Rules
from bot.providers.appstore import AppStoreAttach, AppStoreEncryption, AppStoreExpire
from bot.providers.whop import WhopPromote
from bot.providers.znyx import ZnyxActivate, ZnyxPromote

CONFIG = parse_config(
    {
        "roles": {"rm": ["bundle:publish"]},
        "znyx": {"org": "org-1", "projects": {"guardrails": "proj-g", "edge": "proj-e"}},
        "whop": {"apps": {"storefront": "app_store1", "backoffice": "app_back1"}},
        "appstore": {"apps": {"ios": "1234567890"}},
    }
)
ONE_APP = parse_config({"roles": {}, "whop": {"apps": {"storefront": "app_store1"}}})


@pytest.mark.parametrize("text", ["", "   ", "help", "HELP", "--help", "?"])
def test_help(text: str) -> None:
    assert parse(text, CONFIG) == Help()


@pytest.mark.parametrize(
    ("text", "project", "source", "target"),
    [
        ("znyx guardrails staging", "guardrails", "staging", "prod"),
        ("znyx guardrails dev", "guardrails", "dev", "staging"),
        ("ZNYX  guardrails   STAGING", "guardrails", "staging", "prod"),
        ("znyx proj-e dev", "edge", "dev", "staging"),  # the opaque id works too
        ("znyx\u00a0guardrails\u00a0dev", "guardrails", "dev", "staging"),  # Slack's nbsp
    ],
)
def test_znyx(text: str, project: str, source: str, target: str) -> None:
    command = parse(text, CONFIG)
    assert isinstance(command, Promote)
    action = command.action
    assert isinstance(action, ZnyxPromote)
    assert (action.project, action.source_env, action.target_env) == (project, source, target)
    assert (
        action.org_id == "org-1"
        and action.project_id == {"guardrails": "proj-g", "edge": "proj-e"}[project]
    )
    assert action.target == f"znyx:{project}:{target}"
    assert action.title == f"{project} policy bundle: {source} → {target}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("znyx guardrails prod", "`prod` is the last stage"),
        ("znyx guardrails", "takes a project and a source environment"),
        ("znyx guardrails staging extra", "takes a project and a source environment"),
        ("znyx", "takes a project and a source environment"),
        ("znyx unknown dev", "Unknown Znyx project `unknown`. Known: edge, guardrails."),
        ("znyx guardrails uat", "Unknown environment `uat`"),
        ("znyx ../etc dev", "`../etc` is not a project name"),
        ("znyx <@U123> dev", "is not a project name"),
        ("deploy guardrails", "Unknown command `deploy`"),
        ("x" * 500, "…"),
    ],
)
def test_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text, CONFIG)
    assert message in caught.value.message
    assert caught.value.usage and "/promote" in caught.value.usage


def test_backticks_in_echoed_input_cannot_break_formatting() -> None:
    with pytest.raises(UsageError) as caught:
        parse("znyx a`b dev", CONFIG)
    assert "`a'b`" in caught.value.message


def test_znyx_not_configured() -> None:
    bare = parse_config({"roles": {"rm": ["bundle:publish"]}})
    with pytest.raises(UsageError, match="Znyx is not configured"):
        parse("znyx guardrails dev", bare)


@pytest.mark.parametrize(("word", "expected"), [("12", 12), ("#7", 7)])
def test_request_ids(word: str, expected: int) -> None:
    assert parse_request_id(word, "usage") == expected


@pytest.mark.parametrize("word", ["", "abc", "-1", "1.5", "#", "9" * 20])
def test_bad_request_ids(word: str) -> None:
    with pytest.raises(UsageError):
        parse_request_id(word, "usage")


@pytest.mark.parametrize(
    ("config", "text", "app", "app_id", "build"),
    [
        (CONFIG, "whop storefront apbu_1", "storefront", "app_store1", "apbu_1"),
        (CONFIG, "whop app_back1 abld_2", "backoffice", "app_back1", "abld_2"),  # id → alias
        (CONFIG, "whop app_unlisted9 apbu_3", "app_unlisted9", "app_unlisted9", "apbu_3"),
        (ONE_APP, "whop apbu_4", "storefront", "app_store1", "apbu_4"),
    ],
)
def test_whop(config: Rules, text: str, app: str, app_id: str, build: str) -> None:
    command = parse(text, config)
    assert isinstance(command, Promote)
    assert command.action == WhopPromote(app=app, app_id=app_id, build_id=build)
    assert command.action.target == f"whop:{app}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("whop apbu_1", "Which Whop app is this build of? Apps: backoffice, storefront."),
        ("whop", "takes a build id"),
        ("whop storefront apbu 1", "takes a build id"),
        ("whop nowhere apbu_1", "Unknown Whop app `nowhere`"),
        ("whop storefront ../apbu_1", "is not a Whop build id (letters, digits and _ only)"),
        ("whop storefront apbu%2F1", "is not a Whop build id"),
        ("whop storefront apbu-1", "is not a Whop build id"),
    ],
)
def test_whop_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text, CONFIG)
    assert message in caught.value.message
    assert caught.value.usage and "/promote whop" in caught.value.usage


UUID = "932eff64-a144-4350-8d10-9e54d5834aee"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "appstore ios 2.4.0 153",
            AppStoreAttach(app="ios", app_id="1234567890", version="2.4.0", build="153"),
        ),
        (
            "appstore 1234567890 2.4 1.2.3",
            AppStoreAttach(app="ios", app_id="1234567890", version="2.4", build="1.2.3"),
        ),
        (
            f"appstore ios {UUID} {UUID}",
            AppStoreAttach(app="ios", app_id="1234567890", version=UUID, build=UUID),
        ),
        ("appstore expire ios 153", AppStoreExpire(app="ios", app_id="1234567890", build="153")),
        ("appstore EXPIRE ios 153", AppStoreExpire(app="ios", app_id="1234567890", build="153")),
        (
            "appstore encryption ios 153 non-exempt",
            AppStoreEncryption(
                app="ios", app_id="1234567890", build="153", uses_non_exempt_encryption=True
            ),
        ),
    ],
)
def test_appstore(text: str, expected: object) -> None:
    command = parse(text, CONFIG)
    assert isinstance(command, Promote) and command.action == expected
    assert command.action.target == "appstore:ios"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("appstore ios 2.4.0", "`appstore` takes 3 words"),
        ("appstore expire ios", "`appstore expire` takes 2 words"),
        ("appstore android 2.4.0 153", "Unknown App Store app `android`"),
        ("appstore ios v2.4 153", "`v2.4` is not a version string"),
        ("appstore ios 2.4.0 ../153", "is not a build number"),
        ("appstore encryption ios 153 maybe", "Say `exempt` or `non-exempt`, not `maybe`"),
    ],
)
def test_appstore_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text, CONFIG)
    assert message in caught.value.message
    assert caught.value.usage and "/promote appstore" in caught.value.usage


@pytest.mark.parametrize(("text", "expected"), [("rollback 12", 12), ("ROLLBACK #7", 7)])
def test_rollback(text: str, expected: int) -> None:
    assert parse(text, CONFIG) == Rollback(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rollback", "`rollback` takes one request number."),
        ("rollback 1 2", "`rollback` takes one request number."),
        ("rollback last", "`last` is not a request number."),
    ],
)
def test_rollback_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text, CONFIG)
    assert caught.value.message == message
    assert caught.value.usage and caught.value.usage.startswith("/promote rollback <request>")


@pytest.mark.parametrize(
    ("text", "env", "version"),
    [
        ("znyx guardrails activate prod 7", "prod", 7),
        ("znyx proj-g ACTIVATE Dev v3", "dev", 3),  # the id, any case, a `v`
        ("znyx guardrails activate staging V12", "staging", 12),
    ],
)
def test_znyx_activate(text: str, env: str, version: int) -> None:
    command = parse(text, CONFIG)
    assert isinstance(command, Promote)
    assert command.action == ZnyxActivate(
        org_id="org-1", project="guardrails", project_id="proj-g", env=env, version=version
    )
    assert command.action.target == f"znyx:guardrails:{env}"
    assert command.action.thing == f"znyx:proj-g:{env}"  # the same thing a promotion changes
    assert command.action.undoing is None  # not a rollback: the policy's `approvals` apply


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("znyx guardrails activate prod", "takes an environment and a version"),
        ("znyx guardrails activate prod 7 now", "takes an environment and a version"),
        ("znyx guardrails activate qa 7", "Unknown environment `qa`"),
        ("znyx guardrails activate prod seven", "`seven` is not a bundle version"),
        ("znyx guardrails activate prod 0", "`0` is not a bundle version"),
        ("znyx guardrails activate prod -1", "`-1` is not a bundle version"),
        ("znyx nowhere activate prod 1", "Unknown Znyx project `nowhere`"),
    ],
)
def test_znyx_activate_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text, CONFIG)
    assert message in caught.value.message
    assert caught.value.usage and "activate <env> <version>" in caught.value.usage
