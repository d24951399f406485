"""User groups that Slack rate-limits, is slow about, or says do not exist: start-up and
/healthz never wait on them, a Retry-After is honoured by the groups job rather than slept out
in the call, a group that does not exist is not offered as an approver, and known group
members count towards whether a break-glass request could ever be approved. Over real HTTP
against the fake Slack's usergroups.users.list, and with a real `promote-bot serve`."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bot.core.authz import RoleMap, approvers_possible, who_can_approve
from bot.core.model import Request, State
from bot.core.policy import Policy
from bot.providers.znyx import ZnyxPromote
from tests.conftest import (
    ALICE,
    CONFIG,
    Bot,
    Fakes,
    World,
    block_text,
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


async def _has_a_role(bot: Bot, user: str, within: float) -> None:
    """Wait until `user` has a role: `/promote pending` is taken (acked with no text) rather
    than refused in the ack."""
    async with asyncio.timeout(within):
        while (await bot.sender.command("pending", user)).text:  # noqa: ASYNC110 (a process)
            await asyncio.sleep(0.2)


async def _started(tmp_path: Path, f: Fakes, urls: dict[str, str], within: float) -> Bot:
    """`promote-bot serve` with the groups in its config, listening within `within` s."""
    f.slack.usergroups = {RELEASE: [ERIN], NOSUCH: []}
    env = serve_env(tmp_path, urls)
    _with_groups(Path(env["PROMOTE_BOT_CONFIG"]))
    async with asyncio.timeout(within):
        return await Bot.start(env, urls["slack"])


@pytest.mark.parametrize(
    ("failure", "lookups"),
    [
        # Both groups at start-up, past the 10 s Web API timeout: serving does not wait for
        # them, and the groups job asks again at once.
        ({"hang": 20, "times": 2}, 4),
        # Rate-limited twice in a row: asked again a second on each time, as Slack asks, not
        # 30 s on, nor at the 300 s refresh.
        ({"status": 429, "retry_after": 1, "times": 4}, 6),
    ],
    ids=["slow", "rate-limited"],
)
async def test_groups_slack_could_not_give_at_start_up_are_asked_again_soon(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]], failure: dict, lookups: int
) -> None:
    f, urls = fakes
    f.slack.fail("usergroups.users.list", **failure)
    bot = await _started(tmp_path, f, urls, within=8)
    try:
        await _has_a_role(bot, ERIN, within=5)
        assert len(f.slack.calls_to("usergroups.users.list")) == lookups
    finally:
        await bot.stop()


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
