"""User groups that Slack rate-limits, is slow about, or says do not exist: start-up and
/healthz never wait on them, a Retry-After is honoured by the groups job rather than slept out
in the call, a group that does not exist is not offered as an approver, and known group
members count towards whether a break-glass request could ever be approved. Over real HTTP
against the fake Slack's usergroups.users.list, and with a real `promote-bot serve`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bot.cli import SlackBot, scheduler_for, start_slack_bot
from bot.config import Settings
from bot.core.authz import RoleMap, approvers_possible, who_can_approve
from bot.core.model import Request, State
from bot.core.policy import Policy
from bot.providers.znyx import ZnyxPromote
from bot.sandbox.slack import FakeSlack
from bot.sandbox.znyx import FakeZnyx
from bot.web import WebServer
from tests.conftest import (
    ALICE,
    CONFIG,
    SIGNING_SECRET,
    ZNYX_TOKEN,
    Bot,
    Fakes,
    World,
    block_text,
    seed_znyx,
    serve_env,
)

RELEASE = "S0RELEASE"  # release managers, in Slack: only ALICE
NOSUCH = "S0NOSUCH"  # mobile developers, a group Slack does not know (deleted)
ERIN = "U0ERIN"
GROUPS = f'{RELEASE} = ["release-manager"]\n{NOSUCH} = ["mobile"]\n\n'
NOW = datetime(2026, 12, 1, tzinfo=UTC)
ACTION = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")


@pytest.fixture
def slack_groups() -> dict[str, list[str]]:
    return {RELEASE: [ALICE]}


@pytest.fixture
def config_text() -> str:
    return (
        CONFIG.replace("[znyx]", GROUPS + "[znyx]")
        + """
[policies."znyx:*:prod"]
approver_roles = ["release-manager"]

[policies."whop:*"]
approver_roles = ["mobile"]
"""
    )


# --- start-up and /healthz --------------------------------------------------------------


async def test_a_rate_limited_lookup_holds_neither_start_up_nor_healthz(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    f.slack.fail("usergroups.users.list", status=429, retry_after=45, times=None)
    env = serve_env(tmp_path, urls)
    _with_groups(Path(env["PROMOTE_BOT_CONFIG"]))
    async with asyncio.timeout(15):  # Slack asks for 45 s: start-up does not sleep them out
        bot = await Bot.start(env, urls["slack"])
    try:
        async with httpx.AsyncClient() as http:
            health = await http.get(bot.sender.url.replace("/slack/events", "/healthz"))
        assert health.status_code == 200
        asked = f.slack.calls_to("usergroups.users.list")
        assert len(asked) == 2  # once per group, not again after a 45 s sleep
    finally:
        await bot.stop()


def _with_groups(config: Path) -> None:
    config.write_text(config.read_text().replace("[znyx]", GROUPS + "[znyx]"))


@contextlib.asynccontextmanager
async def _started(slack: FakeSlack, tmp_path: Path, within: float) -> AsyncIterator[SlackBot]:
    """The bot as `serve` builds it, against `slack` and a fake Znyx, started within
    `within` seconds."""
    znyx = FakeZnyx()
    seed_znyx(znyx)
    config = tmp_path / "promote-bot.toml"
    config.write_text(
        CONFIG[: CONFIG.index("[appstore.apps]")].replace("[znyx]", GROUPS + "[znyx]")
    )
    async with WebServer(slack.app()) as slack_server, WebServer(znyx.app()) as znyx_server:
        settings = Settings(
            slack_bot_token=slack.token,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=f"{slack_server.url}/api/",
            promote_bot_config=config,
            promote_bot_db=tmp_path / "bot.db",
            promote_bot_groups_refresh=300,
        )
        async with asyncio.timeout(within):
            bot = await start_slack_bot(
                settings, {"znyx_api_url": znyx_server.url, "znyx_token": ZNYX_TOKEN}
            )
        try:
            yield bot
        finally:
            await bot.aclose()


async def test_a_slow_lookup_is_waited_for_a_moment_then_asked_again_in_the_background(
    tmp_path: Path,
) -> None:
    slack = FakeSlack(usergroups={RELEASE: [ERIN], NOSUCH: []})
    slack.fail("usergroups.users.list", hang=20, times=2)  # longer than the 10 s timeout
    async with _started(slack, tmp_path, within=6) as bot:
        assert bot.workflow.roles_of(ERIN) == ()  # not known yet
        assert bot.live.groups_due_in == 0  # the groups job asks as soon as it starts
        async with scheduler_for(bot):
            async with asyncio.timeout(5):
                while bot.workflow.roles_of(ERIN) == ():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        assert bot.workflow.roles_of(ERIN) == ("release-manager",)


async def test_slack_s_retry_after_is_honoured_by_the_groups_job(tmp_path: Path) -> None:
    slack = FakeSlack(usergroups={RELEASE: [ERIN], NOSUCH: []})
    slack.fail("usergroups.users.list", status=429, retry_after=1, times=2)
    async with _started(slack, tmp_path, within=6) as bot:
        assert bot.workflow.roles_of(ERIN) == ()
        assert bot.live.groups_due_in == 1  # as Slack asked, not 30 s, nor the 300 s refresh
        async with scheduler_for(bot):
            async with asyncio.timeout(5):
                while bot.workflow.roles_of(ERIN) == ():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        assert len(slack.calls_to("usergroups.users.list")) == 4  # 2 refused, 2 answered


# --- groups Slack does not know, and known members ----------------------------------------


async def test_a_group_slack_does_not_know_is_not_offered_as_approver(world: World) -> None:
    await world.requested(f"whop storefront {world.builds.ios_approved}", ALICE)
    text = block_text(world.posted()[0]["blocks"])
    assert "Can approve: <@U0CAROL>" in text  # the mobile developer configured by name
    assert NOSUCH not in text


async def test_known_group_members_count_for_break_glass(world: World) -> None:
    """prod needs a release manager: DAVE, and the group's members (only ALICE, who asks).
    Break-glass needs two: it could never run, so nothing is posted."""
    response = await world.sender.command("znyx guardrails staging --emergency prod is down", ALICE)
    told = response.json()["text"] if response.text else await _told(world)
    assert told.startswith(
        "A break-glass request for `znyx:guardrails:prod` needs 2 approvals, and only 1 "
        "configured person other than you could give them"
    )
    assert world.posted() == []
    # A request that two could approve is posted, with the group among who can approve.
    await world.requested("znyx guardrails staging", ALICE)
    assert f"Can approve: <!subteam^{RELEASE}>" in block_text(world.posted()[0]["blocks"])


def test_who_can_approve_and_how_many_from_what_slack_said() -> None:
    """Pure: a group looked up and empty (or gone) is no approver; one not looked up yet
    makes the count unknown; known members count, the requester not."""
    roles = {"rm": frozenset({"bundle:publish"})}
    role_map = RoleMap(roles=roles, members={"U1": ("rm",)}, groups={"S1": ("rm",), "S2": ("rm",)})
    request = Request(
        id=1,
        action=ACTION,
        requester="U1",
        channel="C1",
        state=State.PENDING,
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW,
    )
    assert approvers_possible(role_map, Policy(), "bundle:publish", "U1") is None  # unknown yet
    known = role_map.with_group_members({"S1": frozenset({"U1", "U2", "U3"}), "S2": frozenset()})
    assert approvers_possible(known, Policy(), "bundle:publish", "U1") == 2  # U2, U3
    assert who_can_approve(known, Policy(), request).groups == ("S1",)  # not the empty S2
    nobody = role_map.with_group_members({"S1": frozenset(), "S2": frozenset()})
    assert who_can_approve(nobody, Policy(), request).groups == ()
    assert approvers_possible(nobody, Policy(), "bundle:publish", "U1") == 0


async def _told(world: World) -> str:
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    return world.told()[0]
