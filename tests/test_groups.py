"""Slack user groups in [members], over real HTTP against the fake Slack's usergroups.users.list:
members get the group's roles, lose them at the next refresh after a removal, and keep them
when Slack fails to answer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, CAROL, CONFIG, DAVE, MALLORY, World, block_text

RELEASE = "S0RELEASE"  # a user group holding the release-manager role
ERIN = "U0ERIN"  # a release manager only through the group
FRANK = "U0FRANK"  # likewise


@pytest.fixture
def slack_groups() -> dict[str, list[str]]:
    return {RELEASE: [ERIN, FRANK]}


@pytest.fixture
def config_text() -> str:
    return (
        CONFIG.replace("[znyx]", f'{RELEASE} = ["release-manager"]\n\n[znyx]')
        + """
[policies."znyx:*:prod"]
approvals = 2
approver_roles = ["release-manager"]

[policies."whop:*"]
approver_roles = ["mobile"]
"""
    )


async def _refresh(world: World) -> bool:
    return await world.bot.live.refresh_groups()


async def test_a_group_member_can_request_and_approve(world: World) -> None:
    lookups = world.slack.calls_to("usergroups.users.list")
    assert [c.args["usergroup"] for c in lookups] == [RELEASE]  # at start-up
    await world.requested("znyx guardrails dev", ERIN)  # → staging: 1 approval
    text = block_text(world.posted()[0]["blocks"])
    assert f"Can approve: <!subteam^{RELEASE}>" in text
    await world.sender.click(APPROVE, 1, FRANK)
    assert "Promoted" in await world.finished()
    assert len(world.znyx.promote_calls) == 1


async def test_without_a_group_granting_it_the_people_are_named(world: World) -> None:
    await world.requested("whop storefront " + world.builds.ios_approved, ALICE)
    text = block_text(world.posted()[0]["blocks"])
    assert f"Can approve: <@{CAROL}>" in text and "subteam" not in text  # mobile only
    await world.sender.command("status 1", ALICE)
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert f"Can approve: <@{CAROL}>" in world.told()[0]


async def test_removed_from_the_group_their_click_is_refused_after_a_refresh(
    world: World,
) -> None:
    await world.requested("znyx guardrails dev", ALICE)
    world.slack.usergroups[RELEASE] = [FRANK]  # ERIN leaves the group
    assert await _refresh(world)
    await world.sender.click(APPROVE, 1, ERIN)
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert world.told()[0].startswith("You can't approve or reject this")
    assert world.znyx.promote_calls == []
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]


async def test_an_earlier_approval_stops_counting_after_removal(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)  # prod: 2 release managers
    await world.sender.click(APPROVE, 1, ERIN)
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert world.told() == ["Approval recorded. #1 needs 1 more."]
    world.slack.usergroups[RELEASE] = [FRANK]
    assert await _refresh(world)
    await world.sender.command("status 1", ALICE)
    await world.slack.wait_for(lambda s: len(world.told()) == 2)
    status = world.told()[1]
    assert "(0 of 2)" in status and f"no longer counting: <@{ERIN}>" in status
    await world.sender.click(APPROVE, 1, DAVE)  # one that counts: still one short
    await world.slack.wait_for(lambda s: len(world.told()) == 3)
    assert world.told()[2] == "Approval recorded. #1 needs 1 more."
    message = block_text(world.slack.calls_to("chat.update")[-1].args["blocks"])
    assert "(1 of 2)" in message and f"no longer counting: <@{ERIN}>" in message
    assert world.znyx.promote_calls == []
    await world.sender.click(APPROVE, 1, FRANK)
    assert "Promoted" in await world.finished()


async def test_slack_failing_the_refresh_keeps_the_last_good_members(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.slack.usergroups[RELEASE] = [FRANK]  # not seen: Slack fails from now on
    world.slack.usergroups_error = "ratelimited"
    with caplog.at_level(logging.WARNING, logger="promote-bot.config"):
        assert not await _refresh(world)
    [line] = [r.getMessage() for r in caplog.records if RELEASE in r.getMessage()]
    assert "rate-limiting" in line and "keeping the members it had" in line
    assert world.slack.token not in caplog.text
    await world.requested("znyx guardrails dev", ALICE)
    await world.sender.click(APPROVE, 1, ERIN)
    assert "Promoted" in await world.finished()


async def test_a_group_slack_does_not_know_gives_no_roles(world: World) -> None:
    del world.slack.usergroups[RELEASE]  # deleted in Slack: no_such_subteam
    assert await _refresh(world)
    response = await world.sender.command("znyx guardrails dev", ERIN)
    assert "You can't request this" in response.json()["text"]
    await asyncio.sleep(0.1)
    assert world.posted() == []
    assert world.bot.workflow.roles_of(MALLORY) == ()
