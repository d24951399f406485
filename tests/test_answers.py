"""Answers that help (issue 25): a misspelt word gets its likely meaning and only the usage
that goes with it, `history` takes patterns, providers and request numbers, the emergency
flag is read as phones type it and wherever it is unambiguous, statuses and sentences say
what happened, and policies can refuse Whop builds by status. Pure: parsing, texts, views,
the policy and config checks."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, timedelta

import pytest

from bot.config import ConfigError, parse_config
from bot.core.commands import History, Promote, Show, UsageError, parse
from bot.core.flags import closest
from bot.core.markup import where_it_is
from bot.core.model import Gate, Listing, Outcome, Preview, Request, State
from bot.core.policy import Policy, describe, gate_refusal
from bot.core.render import request_view
from bot.core.texts import history_text, listing_text, unknown_target_text, usage_error
from bot.providers.appstore import AppStoreEncryption, AppStoreExpire
from bot.providers.appstore_list import AppStoreBuilds
from bot.providers.whop import WhopBuilds, WhopPromote
from bot.providers.znyx import ZnyxBundles, ZnyxPromote
from tests.conftest import CONFIG

RULES = parse_config(tomllib.loads(CONFIG))
ONE_APP = parse_config(
    {"roles": {}, "whop": {"apps": {"storefront": "app_store1"}}, "znyx": {"org": "o"}}
)
NO_APPSTORE = parse_config({"roles": {}, "whop": {"apps": {"storefront": "app_store1"}}})
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _error(text: str, rules=RULES) -> UsageError:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError) as caught:
        parse(text, rules)
    return caught.value


# --- a misspelt word ---------------------------------------------------------------------


def test_a_misspelt_provider_is_suggested_with_only_its_usage() -> None:
    error = _error("wohp storefront apbu_1")
    assert error.message == "Unknown command `wohp`. Did you mean `whop`?"
    assert error.usage is not None
    assert error.usage.splitlines() == [
        "/promote whop [<app>] <build_id>   e.g. /promote whop storefront apbu_8f2k",
        "/promote whop builds [<app>]   e.g. /promote whop builds storefront",
    ]
    assert len(usage_error(error).splitlines()) == 4  # the line, "Usage:" and its two forms


@pytest.mark.parametrize(
    ("text", "meant", "usage"),
    [
        ("histroy znyx:guardrails:prod", "history", "/promote history ["),
        ("stauts 3", "status", "/promote status <request>"),
        ("lcok znyx:*:prod why", "lock", "/promote lock <target-pattern>"),
        ("apstore ios 2.4.0 153", "appstore", "/promote appstore <app> <version> <build>"),
        ("zynx guardrails staging", "znyx", "/promote znyx <project> <source_env>"),
    ],
)
def test_a_misspelt_command_is_suggested(text: str, meant: str, usage: str) -> None:
    error = _error(text)
    assert f"Did you mean `{meant}`?" in error.message
    assert error.usage is not None and error.usage.startswith(usage)
    assert "/promote pending" not in error.usage  # not every form: only the one meant


def test_a_provider_that_is_not_configured_is_said_so() -> None:
    error = _error("appstor ios 2.4.0 153", NO_APPSTORE)
    assert error.message == (
        "Unknown command `appstor`. Did you mean `appstore`? "
        "App Store Connect is not configured on this bot."
    )


def test_a_word_like_no_command_lists_them_all() -> None:
    error = _error("deploy everything")
    assert error.message == "Unknown command `deploy`."
    assert error.usage is not None and "/promote znyx" in error.usage
    assert "/promote whop" in error.usage and "/promote pending" in error.usage


@pytest.mark.parametrize(
    ("text", "message", "usage"),
    [
        (
            "appstore expier ios 153",
            "Unknown App Store app or command `expier`. Did you mean `appstore expire`?",
            "/promote appstore expire <app> <build>",
        ),
        (
            "appstore encyption ios 153 exempt",
            "Did you mean `appstore encryption`?",
            "/promote appstore encryption <app> <build> exempt|non-exempt",
        ),
        (
            "znyx guardrails activte prod 7",
            "Unknown Znyx command `activte`. Did you mean `activate`?",
            "/promote znyx <project> activate <env> <version>",
        ),
        (
            "znyx bundels guardrails",
            "Did you mean `znyx bundles`?",
            "/promote znyx bundles <project> [<env>]",
        ),
        ("whop bulds storefront", "Did you mean `whop builds`?", "/promote whop builds [<app>]"),
    ],
)
def test_a_misspelt_sub_command_is_suggested(text: str, message: str, usage: str) -> None:
    error = _error(text)
    assert message in error.message
    assert error.usage is not None and error.usage.startswith(usage)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "whop storfront apbu_1",
            "Unknown Whop app `storfront`. Did you mean `storefront`? "
            "Known: backoffice, storefront.",
        ),
        ("appstore iso 2.4.0 153", "Unknown App Store app `iso`. Did you mean `ios`? Known: ios."),
        (
            "znyx guardrials staging",
            "Unknown Znyx project `guardrials`. Did you mean `guardrails`?",
        ),
        ("znyx guardrails stagin", "Unknown environment `stagin`. Did you mean `staging`?"),
        ("znyx guardrails activate prdo 7", "Unknown environment `prdo`. Did you mean `prod`?"),
    ],
)
def test_an_unknown_alias_suggests_the_closest_configured_one(text: str, message: str) -> None:
    assert message in _error(text).message


def test_an_alias_nothing_like_a_configured_one_gets_no_guess() -> None:
    assert _error("whop nowhere apbu_1").message == (
        "Unknown Whop app `nowhere`. Known: backoffice, storefront."
    )


@pytest.mark.parametrize(
    ("word", "options", "expected"),
    [
        ("iso", ["ios", "android"], "ios"),  # two letters swapped: too short for a ratio
        ("dve", ["dev", "staging", "prod"], "dev"),
        ("wohp", ["whop", "znyx"], "whop"),
        ("WHPO", ["whop"], "whop"),
        ("xac", ["abc"], None),  # two letters differ, not swapped
        ("deploy", ["help", "lock", "locks", "pending"], None),
    ],
)
def test_closest(word: str, options: list[str], expected: str | None) -> None:
    assert closest(word, options) == expected


# --- history -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("history", History()),
        ("history *", History()),
        ("history appstore:*", History(target="appstore:*")),
        ("history znyx:*:prod", History(target="znyx:*:prod")),
        ("history znyx:guardrails:prod", History(target="znyx:guardrails:prod")),
        ("history whop", History(target="whop:*")),
        ("history WHOP", History(target="whop:*")),
        ("history 1", History(request_id=1)),
        ("history #12", History(request_id=12)),
    ],
)
def test_history_takes_a_pattern_a_provider_or_a_request(text: str, expected: History) -> None:
    assert parse(text, RULES) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("history guardrails", "Did you mean `znyx:guardrails:*`?"),
        ("history storefront", "Did you mean `whop:storefront`?"),
        ("history whpo", "Did you mean `whop`?"),
        ("history ../etc", "is not a target, a pattern like `<provider>:*`"),
        ("history whop:* 3", "takes at most one target, pattern, provider or request number"),
    ],
)
def test_history_usage_errors(text: str, message: str) -> None:
    error = _error(text)
    assert message in error.message
    assert error.usage is not None and "/promote history" in error.usage


def test_history_of_a_provider_that_is_not_configured() -> None:
    assert "App Store Connect is not configured" in _error("history appstore", NO_APPSTORE).message


def test_history_texts() -> None:
    assert history_text([], "whop:*") == "No history of `whop:*` yet."
    text = unknown_target_text("znyx:guardrail:prod", ["znyx:guardrails:prod"], "x")
    assert text.startswith("`znyx:guardrail:prod` matches no target of this bot")
    assert "Did you mean `x`?" in text and "Its targets: `znyx:guardrails:prod`." in text


# --- the emergency flag ------------------------------------------------------------------

ZNYX = ZnyxPromote(
    org_id="org-test", project="guardrails", project_id="proj-guardrails", source_env="staging"
)


@pytest.mark.parametrize(
    "text",
    [
        "znyx guardrails staging --emergency prod is down",
        "znyx guardrails staging —emergency prod is down",  # an em dash, as macOS types `--`
        "znyx guardrails staging –emergency prod is down",  # an en dash
        "znyx guardrails staging -emergency prod is down",
        "znyx guardrails staging --EMERGENCY prod is down",
        "znyx --emergency prod is down guardrails staging",  # the flag before the words
        "znyx guardrails --emergency prod is down staging",
        "—emergency prod is down znyx guardrails staging",  # before the provider
    ],
)
def test_the_emergency_flag_as_people_type_it(text: str) -> None:
    assert parse(text, RULES) == Promote(ZNYX, "prod is down")


def test_the_emergency_flag_among_whop_words() -> None:
    expected = WhopPromote(app="storefront", app_id="app_storefront01", build_id="apbu_1")
    for text in (
        "whop storefront apbu_1 —emergency hotfix now",
        "whop storefront —emergency hotfix now apbu_1",
        "whop —emergency hotfix now storefront apbu_1",
    ):
        assert parse(text, RULES) == Promote(expected, "hotfix now"), text
    # one app: `storefront` could be the reason's or the app; it is the same request either way
    one = WhopPromote(app="storefront", app_id="app_store1", build_id="apbu_1")
    assert parse("whop --emergency hotfix storefront apbu_1", ONE_APP) == Promote(one, "hotfix")


@pytest.mark.parametrize(
    ("text", "rules", "message"),
    [
        ("znyx guardrails staging --emergency", RULES, "must be followed by why"),
        ("znyx guardrails staging —emergency", RULES, "must be followed by why"),
        ("znyx guardrails staging --emergency a --emergency b", RULES, "more than once"),
        # the reason may end at `app_x1` (a Whop app id) or before it: two different requests
        ("whop --emergency fix app_x1 apbu_2", ONE_APP, "Which words after `--emergency`"),
        ("--emergency prod is down", RULES, "comes after the command it is for"),
        ("znyx guardrails uat --emergency why", RULES, "Unknown environment `uat`"),
        ("whop builds --emergency why", RULES, "is for requests"),
    ],
)
def test_the_emergency_flag_where_it_is_ambiguous(text: str, rules, message: str) -> None:  # type: ignore[no-untyped-def]
    assert message in _error(text, rules).message


# --- saying what happened ------------------------------------------------------------------


def _request(action, state: State, outcome: Outcome | None = None) -> Request:  # type: ignore[no-untyped-def]
    return Request(
        id=1,
        action=action,
        requester="U1",
        channel="C1",
        state=state,
        outcome=outcome,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(hours=1),
    )


def test_states_as_sentences() -> None:
    said = {state: f"Request #1 {where_it_is(state)}" for state in State}
    assert said[State.SUCCEEDED] == "Request #1 has ended: it succeeded"
    assert said[State.FAILED] == "Request #1 has ended: it failed"
    assert said[State.REJECTED] == "Request #1 was rejected"
    assert said[State.EXPIRED] == "Request #1 has expired"
    assert said[State.PENDING] == "Request #1 is waiting for approval"
    assert not any(" is succeeded" in s or " is expired" in s for s in said.values())


def test_the_status_word_follows_the_action() -> None:
    expire = AppStoreExpire(app="ios", app_id="1", build="153", build_id="b")
    done = Outcome(state="succeeded", headline="build 153 of ios is expired")
    view = request_view(_request(expire, State.SUCCEEDED, done), Policy())
    assert view.status == "✅ Expired: build 153 of ios is expired"
    assert request_view(_request(expire, State.EXECUTING), Policy()).status == "🔄 Expiring now…"
    declare = AppStoreEncryption(
        app="ios", app_id="1", build="153", build_id="b", uses_non_exempt_encryption=False
    )
    view = request_view(_request(declare, State.SUCCEEDED, done), Policy())
    assert view.status.startswith("✅ Encryption declared: ")
    promoted = request_view(_request(ZNYX, State.SUCCEEDED, done), Policy())
    assert promoted.status.startswith("✅ Promoted: ")


# --- seeing what exists ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("appstore builds ios", AppStoreBuilds(app="ios", app_id="1234567890")),
        ("whop builds storefront", WhopBuilds(apps=(("storefront", "app_storefront01"),))),
        (
            "whop builds",
            WhopBuilds(
                apps=(("backoffice", "app_backoffice01"), ("storefront", "app_storefront01"))
            ),
        ),
        (
            "znyx bundles guardrails prod",
            ZnyxBundles(
                org_id="org-test",
                project="guardrails",
                project_id="proj-guardrails",
                envs=("prod",),
            ),
        ),
        (
            "znyx bundles guardrails",
            ZnyxBundles(
                org_id="org-test",
                project="guardrails",
                project_id="proj-guardrails",
                envs=("dev", "staging", "prod"),
            ),
        ),
    ],
)
def test_looking_at_what_a_provider_has(text: str, expected: object) -> None:
    assert parse(text, RULES) == Show(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("appstore builds", "`appstore builds` takes 1 word after it."),
        ("appstore builds android", "Unknown App Store app `android`"),
        ("whop builds storefront more", "`whop builds` takes at most an app."),
        ("znyx bundles guardrails qa", "Unknown environment `qa`"),
        ("znyx bundles", "`znyx bundles` takes a project"),
    ],
)
def test_looking_usage_errors(text: str, message: str) -> None:
    error = _error(text)
    assert message in error.message
    assert error.usage is not None and error.usage.count("\n") == 0  # only the form meant


def test_a_listing_is_an_aligned_table_with_its_notes() -> None:
    listing = Listing(
        "Whop builds of storefront",
        ("build", "status", "production"),
        (("apbu_ios150", "approved", "yes"), ("apbu_1`x", "draft", "no")),
        ("Promote one with `/promote whop [<app>] <build_id>`.",),
    )
    assert listing_text(listing).splitlines() == [
        "*Whop builds of storefront*",
        "```",
        "build        status    production",
        "apbu_ios150  approved  yes",
        "apbu_1'x     draft     no",  # a backtick can't end the block
        "```",
        "Promote one with `/promote whop [&lt;app&gt;] &lt;build_id&gt;`.",  # plain text, escaped
    ]
    assert listing_text(Listing("Nothing", ("a",), ())).splitlines()[1] == "Nothing to show."


def test_a_listing_shows_the_providers_words_as_text_aligned_as_shown() -> None:
    listing = Listing(
        "Builds of <!here>",
        ("build", "status"),
        (("<!channel>", "a&b"), ("apbu_ios150", "<https://evil.example/|ok>")),
        ("see <https://evil.example/|the docs>",),
    )
    assert listing_text(listing).splitlines() == [
        "*Builds of &lt;!here&gt;*",
        "```",
        "build        status",
        "&lt;!channel&gt;   a&amp;b",  # padded on what Slack shows: 10 characters, not 16
        "apbu_ios150  &lt;https://evil.example/|ok&gt;",
        "```",
        "see &lt;https://evil.example/|the docs&gt;",
    ]


# --- Whop: which statuses a policy lets through ----------------------------------------------


def _whop_config(policy: dict) -> dict:
    return {
        "roles": {"rm": ["developer:manage_builds"]},
        "members": {"U0ALICE": ["rm"], "U0BOB": ["rm"]},
        "whop": {"apps": {"storefront": "app_store1"}},
        "znyx": {"org": "o", "projects": {"guardrails": "p"}},
        "policies": policy,
    }


def test_whop_statuses_is_a_policy_key() -> None:
    rules = parse_config(_whop_config({"whop:*": {"whop_statuses": ["approved"]}}))
    policy = rules.policies["whop:*"]
    assert policy.allow == {"whop_statuses": ("approved",)}
    assert "whop_statuses: approved" in describe(policy)
    gates = {"whop_statuses": Gate(value="draft", found="Build apbu_1 is draft")}
    assert gate_refusal(policy, gates, "whop:storefront") == (
        "Build apbu_1 is draft; the policy for `whop:storefront` allows only approved "
        "(its `whop_statuses`)."
    )
    approved = {"whop_statuses": Gate(value="approved", found="Build apbu_2 is approved")}
    assert gate_refusal(policy, approved, "whop:storefront") is None
    assert gate_refusal(Policy(), gates, "whop:storefront") is None  # no key: anything goes


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (
            {"whop:*": {"whop_statuses": ["aproved"]}},
            "policies.whop:*.whop_statuses: 'aproved' is not a Whop build status "
            "(known: draft, pending, approved, rejected)",
        ),
        (
            {"whop:*": {"whop_statuses": "approved"}},
            "policies.whop:*.whop_statuses: expected a list, like "
            '["approved"], each a Whop build status (known: draft, pending, approved, rejected)',
        ),
        (
            {"znyx:*:prod": {"whop_statuses": ["approved"]}},
            "policies.znyx:*:prod.whop_statuses: it is about whop targets",
        ),
        ({"whop:*": {"allow": {}}}, "policies.whop:*.allow: unknown key"),
        ({"whop:*": {"whop_status": []}}, "allowed keys here: approvals"),
    ],
)
def test_whop_statuses_is_validated(policy: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_whop_config(policy))
    assert message in str(caught.value)
    if "allowed keys" in message or "allow: unknown" in message:
        assert "whop_statuses" in str(caught.value) and ", allow," not in str(caught.value)


def test_a_preview_records_what_a_policy_checks() -> None:
    preview = Preview(gates={"whop_statuses": Gate(value="draft", found="Build x is draft")})
    assert Preview.model_validate_json(preview.model_dump_json()) == preview
    assert Preview.model_validate_json("{}").gates == {}  # a preview stored before gates
