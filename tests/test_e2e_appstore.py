"""`/promote appstore` end to end: signed Slack requests in, fake Slack and a fake App Store
Connect that verifies every ES256 token, over HTTP."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.core.model import State
from bot.providers.appstore import AppStoreAttach
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, CAROL, World, block_text, buttons


async def test_attach_happy_path_with_preview(world: World) -> None:
    ids = world.asc_ids
    await world.requested("appstore ios 2.4.0 153", CAROL)
    message = world.posted()[0]
    text = block_text(message["blocks"])
    assert "ios 2.4.0: attach build 153" in text
    assert "Version*\n2.4.0 (PREPARE_FOR_SUBMISSION)" in text
    assert f"Attached now*\n152 ({ids.b152_attached})" in text
    assert f"Build*\n153 ({ids.b153_undeclared})" in text
    assert (
        "Processing*\nVALID" in text and "Expired*\nno" in text and "Uploaded*\n2026-11-01" in text
    )
    assert "Encryption*\nnot declared" in text
    assert "encryption is not declared yet" in text  # a warning, not a refusal
    assert buttons(message["blocks"])
    assert world.asc.patches == []
    request = world.bot.store.get(1)
    assert request is not None and isinstance(request.action, AppStoreAttach)
    assert (request.action.version_id, request.action.build_id) == (ids.v240, ids.b153_undeclared)

    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    [patch] = world.asc.patches
    assert patch.path == f"/v1/appStoreVersions/{ids.v240}/relationships/build"
    assert patch.body == {"data": {"type": "builds", "id": ids.b153_undeclared}}
    assert world.asc.versions[ids.v240].build_id == ids.b153_undeclared
    assert "build 153 is attached to ios 2.4.0" in reply
    assert f"Attached now: `153 ({ids.b153_undeclared})`" in reply
    assert f"Replaced: `152 ({ids.b152_attached})`" in reply
    assert world.bot.store.get(1).state is State.SUCCEEDED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("appstore ios 2.4.0 154", "is PROCESSING, not VALID"),
        ("appstore ios 2.4.0 150", "is expired: it can't be attached"),
        ("appstore ios 2.4.0 152", "is already attached to 2.4.0"),
        ("appstore ios 2.4.0 999", "ios has no build numbered 999"),
        ("appstore ios 9.9.9 153", "ios has no App Store version 9.9.9"),
        ("appstore expire ios 150", "is already expired"),
        ("appstore encryption ios 155 exempt", "is already declared exempt"),
    ],
)
async def test_refusals_up_front(world: World, text: str, reason: str) -> None:
    response = await world.sender.command(text, CAROL)
    assert response.text == ""
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert reason in world.told()[0]
    assert world.posted() == [] and world.asc.patches == []


async def test_expire(world: World) -> None:
    ids = world.asc_ids
    await world.requested("appstore expire ios 155", CAROL)
    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    [patch] = world.asc.patches
    assert patch.path == f"/v1/builds/{ids.b155_exempt}"
    assert patch.body == {
        "data": {"type": "builds", "id": ids.b155_exempt, "attributes": {"expired": True}}
    }
    assert world.asc.builds[ids.b155_exempt].expired
    assert "build 155 of ios is expired" in reply and "Expired: `yes`" in reply
    # the status says what was done: an expiry is not a promotion
    assert "✅ Expired: build 155 of ios is expired" in reply and "Promoted" not in reply
    final = world.slack.calls_to("chat.update")[-1].args
    assert "✅ Expired" in final["text"] and "Promoted" not in final["text"]


@pytest.mark.parametrize(("word", "value"), [("exempt", False), ("non-exempt", True)])
async def test_encryption(world: World, word: str, value: bool) -> None:
    ids = world.asc_ids
    await world.requested(f"appstore encryption ios 153 {word}", CAROL)
    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    [patch] = world.asc.patches
    assert patch.body["data"]["attributes"] == {"usesNonExemptEncryption": value}  # type: ignore[index]
    assert world.asc.builds[ids.b153_undeclared].uses_non_exempt_encryption is value
    assert f"✅ Encryption declared: build 153 of ios is declared {word}" in reply
    assert "Promoted" not in reply


async def test_409_for_a_version_no_longer_editable_is_told_plainly(world: World) -> None:
    await world.requested("appstore ios 2.3.0 155", CAROL)
    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    assert "not in a state that allows this change (HTTP 409" in reply
    assert "The App Store version is READY_FOR_DISTRIBUTION and can no longer be edited." in reply
    assert world.bot.store.get(1).state is State.FAILED  # type: ignore[union-attr]


async def test_429_is_retried_after_retry_after(world: World) -> None:
    await world.requested("appstore ios 2.4.0 153", CAROL)
    world.asc.fail_next(
        429, "Rate limit exceeded", "Try again shortly.", method="PATCH", **{"Retry-After": "1"}
    )
    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    assert len(world.asc.patches) == 2  # refused unprocessed, then sent again
    assert "build 153 is attached" in reply


async def test_a_401_is_followed_by_one_re_signed_retry(world: World) -> None:
    await world.requested("appstore ios 2.4.0 153", CAROL)
    provider = world.bot.providers["appstore"]
    assert provider.token.signed == 1  # type: ignore[attr-defined]
    world.asc.revoked |= world.asc.tokens_seen  # e.g. the key's clock was off, or it rotated
    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    assert "build 153 is attached" in reply
    assert provider.token.signed == 2  # type: ignore[attr-defined]
    assert len(world.asc.tokens_seen) == 2


async def test_errors_show_title_and_detail(world: World) -> None:
    await world.requested("appstore expire ios 155", CAROL)
    world.asc.fail_next(
        422, "The request entity is not valid", "That build is in review.", method="PATCH"
    )
    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    assert (
        "rejected the change as invalid (HTTP 422: The request entity is not valid: "
        "That build is in review.)" in reply
    )


async def test_recovery_reads_the_app_store_version(world: World) -> None:
    await world.requested("appstore ios 2.4.0 153", CAROL)
    long_ago = world.bot.workflow.clock() - timedelta(hours=1)
    assert world.bot.store.transition(1, (State.PENDING,), State.EXECUTING, at=long_ago)
    world.asc.versions[world.asc_ids.v240].build_id = world.asc_ids.b153_undeclared
    assert await world.bot.workflow.recover() == 1
    assert "build 153 attached to ios 2.4.0" in await world.finished()
    assert world.bot.store.get(1).state is State.SUCCEEDED  # type: ignore[union-attr]
    assert world.asc.patches == []


async def test_an_attach_read_back_after_a_restart_can_still_be_rolled_back(world: World) -> None:
    await world.requested("appstore ios 2.4.0 153", CAROL)
    shown_before = world.bot.store.get(1).preview.expect["attached_shown"]  # type: ignore[union-attr]
    long_ago = world.bot.workflow.clock() - timedelta(hours=1)
    assert world.bot.store.transition(1, (State.PENDING,), State.EXECUTING, at=long_ago)
    world.asc.versions[world.asc_ids.v240].build_id = world.asc_ids.b153_undeclared
    assert await world.bot.workflow.recover() == 1
    await world.finished()
    outcome = world.bot.store.get(1).outcome  # type: ignore[union-attr]
    assert outcome is not None and outcome.installed["attached"] == world.asc_ids.b153_undeclared
    assert outcome.before["shown"] == shown_before  # what the preview showed, not a guess
    assert outcome.before["number"]
    await world.requested("rollback 1", CAROL)
    message = block_text(world.posted()[-1]["blocks"])
    assert "Rolls back #1" in message and outcome.before["number"] in message
