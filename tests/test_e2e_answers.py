"""Answers that help (issue 25), end to end: signed Slack requests in, the fake Slack and the
fake providers over HTTP. A misspelt command, `history` of patterns, providers and requests,
the emergency flag as phones type it, what each provider has, and Whop statuses a policy
refuses."""

from __future__ import annotations

import asyncio
import tomllib
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.config import parse_config
from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import (
    ALICE,
    BACKOFFICE,
    BOB,
    CAROL,
    CONFIG,
    DAVE,
    IOS_APP,
    MALLORY,
    World,
    block_text,
)

# backoffice promotes approved builds only; storefront anything Whop promotes
POLICY = """
[policies."whop:backoffice"]
approvals = 1
whop_statuses = ["approved"]
"""


@pytest.fixture
def config_text() -> str:
    return CONFIG + POLICY


async def at_ack(world: World, text: str, user: str = ALICE) -> str:
    """A command answered in its ack; what only the caller was told."""
    response = await world.sender.command(text, user)
    assert response.status_code == 200 and response.json()["response_type"] == "ephemeral"
    return response.json()["text"]


async def test_a_misspelt_provider_gets_a_guess_and_only_its_usage(world: World) -> None:
    said = await at_ack(world, "wohp storefront apbu_1")
    assert said.splitlines() == [
        "Unknown command `wohp`. Did you mean `whop`?",
        "Usage:",
        "`/promote whop [<app>] <build_id>   e.g. /promote whop storefront apbu_8f2k`",
        "`/promote whop builds [<app>]   e.g. /promote whop builds storefront`",
    ]
    said = await at_ack(world, "appstore expier ios 155")
    assert "Did you mean `appstore expire`?" in said
    assert "`/promote appstore expire <app> <build>`" in said and "attach" not in said
    assert "Did you mean `storefront`?" in await at_ack(world, "whop storfront apbu_1")
    await asyncio.sleep(0.1)
    assert world.whop.calls == [] and world.asc.calls == [] and world.posted() == []


async def test_history_of_a_pattern_a_provider_a_request_and_an_unknown_target(
    world: World,
) -> None:
    await world.requested("znyx guardrails staging", ALICE)  # 1
    await world.requested(f"whop storefront {world.builds.ios_approved}", CAROL)  # 2
    await world.requested("appstore expire ios 155", CAROL)  # 3
    await world.sender.click(APPROVE, 3, ALICE)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)

    appstore = await world.answer("history appstore:*", BOB)
    assert appstore.startswith("*Last 4 events of `appstore:*`*")  # asked, approved, ran, done
    assert "#3 succeeded `appstore:ios`" in appstore and "znyx" not in appstore
    whop = await world.answer("history whop", BOB)
    assert "#2 requested `whop:storefront`" in whop and "appstore" not in whop
    one = await world.answer("history 1", BOB)
    assert one.startswith("*Last 1 events of `#1`*") and "#1 requested" in one
    assert "#2" not in one
    assert await world.answer("history 9", BOB) == "There is no request #9."

    nothing = await world.answer("history whop:backoffice", BOB)  # a target, with no events
    assert nothing == "No history of `whop:backoffice` yet."
    unknown = await world.answer("history znyx:guardrail:prod", BOB)
    assert unknown.startswith(
        "`znyx:guardrail:prod` matches no target of this bot, and nothing was ever recorded "
        "for it. Did you mean `znyx:guardrails:prod`?"
    )
    assert "Its targets: `znyx:guardrails:dev`, `znyx:guardrails:staging`" in unknown


async def test_history_of_a_target_no_longer_configured_is_still_shown(world: World) -> None:
    await world.requested(f"whop backoffice {world.builds.other_app_ios}", CAROL)
    world.bot.workflow.reload(  # backoffice leaves the config; its history stays
        parse_config(tomllib.loads(CONFIG.replace(f'backoffice = "{BACKOFFICE}"', "")))
    )
    assert "#1 requested `whop:backoffice`" in await world.answer("history whop:backoffice")


async def test_an_em_dash_emergency_passes_a_lock(world: World) -> None:
    await world.answer("lock znyx:*:prod incident 4521", DAVE)
    await world.requested("znyx guardrails staging —emergency prod is down", ALICE)
    request = world.bot.store.get(1)
    assert request is not None and request.emergency == "prod is down"
    message = block_text(world.posted()[-1]["blocks"])
    assert "🚨 *Emergency*" in message and "(0 of 2)" in message
    # the flag before the command's last words: unambiguous, taken the same way
    await world.answer("cancel 1", ALICE)
    await world.requested("znyx --emergency prod is down guardrails staging", ALICE)
    request = world.bot.store.get(2)
    assert request is not None and request.emergency == "prod is down"


async def test_appstore_builds_answers_only_the_caller(world: World) -> None:
    said = await world.answer("appstore builds ios", CAROL)
    lines = said.splitlines()
    assert lines[0] == "*App Store builds of ios*"
    header = lines[2].split()
    assert header[:5] == ["build", "version", "processing", "expired", "encryption"]
    rows = {line.split()[0]: line for line in lines[3:] if line[:1].isdigit()}
    assert list(rows) == ["155", "154", "153", "152", "150"]  # newest first
    assert rows["150"].split()[:5] == ["150", "2.4.0", "VALID", "yes", "exempt"]
    assert header[5:] == ["internal", "beta", "external", "beta", "uploaded"]
    assert rows["150"].split()[5:] == ["EXPIRED", "EXPIRED", "2026-11-01"]
    assert "PROCESSING" in rows["154"] and "not declared" in rows["153"]
    assert "MISSING_EXPORT_COMPLIANCE" in rows["153"]
    assert rows["155"].split()[5:7] == ["READY_FOR_BETA_TESTING", "READY_FOR_BETA_SUBMISSION"]
    assert "Attach one with `/promote appstore &lt;app&gt; &lt;version&gt; &lt;build&gt;`." in said
    [call] = world.asc.calls
    query = parse_qs(urlsplit(call.path).query)
    assert query["filter[app]"] == [IOS_APP] and query["sort"] == ["-uploadedDate"]
    assert query["include"] == ["preReleaseVersion,buildBetaDetail"]
    assert world.posted() == [] and world.asc.patches == []  # a look changes nothing

    refused = await at_ack(world, "appstore builds ios", MALLORY)
    assert "You can't see this: it needs the `developer:manage_builds` scope" in refused
    assert len(world.asc.calls) == 1


async def test_whop_builds_and_znyx_bundles(world: World) -> None:
    b = world.builds
    said = await world.answer("whop builds storefront", CAROL)
    assert said.splitlines()[0] == "*Whop builds of storefront*"
    assert said.splitlines()[2].split() == ["build", "platform", "status", "production", "created"]
    rows = {line.split()[0]: line.split() for line in said.splitlines() if line.startswith("apbu")}
    assert rows[b.ios_prod][1:4] == ["ios", "approved", "yes"]
    assert rows[b.ios_draft][1:4] == ["ios", "draft", "no"]
    assert rows[b.android_prod][1:4] == ["android", "approved", "yes"]
    assert b.other_app_ios not in said  # another app's
    every = await world.answer("whop builds", CAROL)
    assert every.splitlines()[2].split()[0] == "app" and b.other_app_ios in every

    bundles = await world.answer("znyx bundles guardrails", BOB)
    assert bundles.splitlines()[0] == "*Znyx bundles of guardrails*"
    table = [line.split() for line in bundles.splitlines() if line.startswith(("dev", "prod"))]
    prod = world.znyx.active("proj-guardrails", "prod")
    assert prod is not None
    assert ["prod", "v1", "sha256:" + "0" * 12, "active"] == table[-1][:4]
    only_prod = await world.answer("znyx bundles guardrails prod", BOB)
    assert "staging" not in only_prod and "v1" in only_prod
    two = await world.answer("znyx bundles twostage", BOB)
    assert "twostage has no prod environment." in two
    assert "You can't see this" in await at_ack(world, "whop builds", BOB)  # no build scope


async def test_no_such_version_lists_the_versions_there_are(world: World) -> None:
    said = await world.answer("appstore ios 2.4 153", CAROL)
    assert said == (
        "ios has no App Store version 2.4 (its versions: 2.4.0 (PREPARE_FOR_SUBMISSION), "
        "2.3.0 (READY_FOR_DISTRIBUTION))."
    )
    said = await world.answer("appstore expire ios 151", CAROL)
    assert said == (
        "ios has no build numbered 151 (its newest builds: 155, 154, 153, 152, 150; "
        "`/promote appstore builds ios` shows more)."
    )
    assert world.posted() == []


async def test_a_draft_says_it_skips_whop_review_and_a_policy_can_refuse_it(
    world: World,
) -> None:
    b = world.builds
    await world.requested(f"whop storefront {b.ios_draft}", CAROL)  # no policy key here
    message = block_text(world.posted()[0]["blocks"])
    assert (
        "This build is a draft: Whop has not reviewed it. Promoting it does not send it to "
        "review first; it becomes the ios version served to users at once"
    ) in message

    draft = world.whop.add_build(BACKOFFICE, "ios", "draft").id
    refused = await world.answer(f"whop backoffice {draft}", CAROL)
    assert refused == (
        f"Build {draft} is draft; the policy for `whop:backoffice` allows only approved "
        "(its `whop_statuses`). Nothing was posted."
    )
    assert len(world.posted()) == 1 and world.whop.promote_calls == []
    await world.requested(f"whop backoffice {b.other_app_ios}", CAROL)  # approved: it goes
    assert "whop_statuses: approved" in block_text(world.posted()[-1]["blocks"])


async def test_a_policy_tightened_after_the_request_refuses_its_approval(world: World) -> None:
    await world.requested(f"whop storefront {world.builds.ios_draft}", CAROL)
    strict = POLICY.replace("whop:backoffice", "whop:storefront")
    world.bot.workflow.reload(parse_config(tomllib.loads(CONFIG + strict)))
    await world.sender.click(APPROVE, 1, DAVE)
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert world.told()[0].startswith(
        f"Build {world.builds.ios_draft} is draft; the policy for `whop:storefront` allows only "
        "approved"
    )
    assert world.whop.promote_calls == []
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]


async def test_help_lists_the_looks(world: World) -> None:
    said = await at_ack(world, "help", CAROL)
    assert "`/promote appstore builds <app>" in said and "`/promote whop builds [<app>]" in said
    assert "znyx bundles" not in said  # Carol has no bundle:publish
    assert "`/promote znyx bundles <project> [<env>]" in await at_ack(world, "help", BOB)


async def test_a_build_whose_status_changed_since_the_message_is_not_promoted(
    world: World,
) -> None:
    draft = world.builds.ios_draft
    await world.requested(f"whop storefront {draft}", CAROL)
    world.whop.builds[draft].status = "rejected"  # Whop's review got to it meanwhile
    await world.sender.click(APPROVE, 1, DAVE)
    reply = await world.finished()
    assert (
        f"build {draft}'s status was draft when this was requested; it is now rejected: "
        "nothing was changed, request again"
    ) in reply
    assert world.whop.promote_calls == []
