"""`/promote whop` end to end: signed Slack requests in, fake Slack and fake Whop over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    STOREFRONT,
    World,
    block_text,
    buttons,
    open_buttons,
)


async def test_happy_path_with_preview(world: World) -> None:
    b = world.builds
    await world.requested(f"whop storefront {b.ios_approved}", CAROL)
    message = world.posted()[0]
    text = block_text(message["blocks"])
    approved = world.whop.builds[b.ios_approved]
    assert f"storefront app build {b.ios_approved} → production" in text
    assert "Platform*\nios" in text and "Status*\napproved" in text
    assert "Created*\n2026-11-01 " in text
    assert f"Checksum*\n{approved.checksum[:12]}" in text
    assert f"Replaces*\n{b.ios_prod} (created 2026-11-01 10:00 UTC)" in text
    assert buttons(message["blocks"]) == open_buttons(1)
    assert world.whop.promote_calls == []

    await world.sender.click(APPROVE, 1, DAVE)
    reply = await world.finished()
    [call] = world.whop.promote_calls
    assert call.path == f"/app_builds/{b.ios_approved}/promote"
    assert world.whop.production(STOREFRONT, "ios") is approved
    assert world.whop.production(STOREFRONT, "android").id == b.android_prod  # type: ignore[union-attr]
    for expected in (
        f"Production build: `{b.ios_approved}`",
        "Platform: `ios`",
        f"Replaced: `{b.ios_prod}`",
    ):
        assert expected in reply
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED


async def test_the_app_may_be_left_out_or_given_by_id(world: World) -> None:
    b = world.builds
    response = await world.sender.command(f"whop {b.ios_approved}", CAROL)
    assert (
        "Which Whop app is this build of? Apps: backoffice, storefront." in response.json()["text"]
    )
    await world.requested(f"whop {STOREFRONT} {b.android_approved}", CAROL)
    assert "storefront app build" in block_text(world.posted()[0]["blocks"])


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        ("ios_pending", "is pending: only approved or draft builds can be promoted"),
        ("ios_rejected", "is rejected: only approved or draft builds can be promoted."),
        ("ios_rejected", "Review: “App crashes on launch.”"),
        ("ios_prod", "is already the production ios build"),
        ("other_app_ios", "is not a ios build of storefront"),
    ],
)
async def test_builds_that_cannot_be_promoted_are_refused_up_front(
    world: World, build: str, reason: str
) -> None:
    build_id = getattr(world.builds, build)
    response = await world.sender.command(f"whop storefront {build_id}", CAROL)
    assert response.text == ""
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert reason in world.told()[0] and build_id in world.told()[0]
    assert world.posted() == [] and world.whop.promote_calls == []
    assert world.bot.store.get(1) is None
    assert world.bot.store.history()[0].event == "refused"


async def test_a_draft_is_promotable_with_a_warning(world: World) -> None:
    await world.requested(f"whop storefront {world.builds.ios_draft}", CAROL)
    assert "is a draft" in block_text(world.posted()[0]["blocks"])


async def test_an_unknown_build_is_refused(world: World) -> None:
    await world.sender.command("whop storefront apbu_doesnotexist", CAROL)
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert (
        "Whop has no app build apbu_doesnotexist (HTTP 404: Resource not found)" in world.told()[0]
    )
    assert world.posted() == []


@pytest.mark.parametrize(
    ("status", "kind", "message", "expected", "state"),
    [
        (
            400,
            "invalid_request_error",
            "Build not promotable",
            "Whop refused to promote",
            State.FAILED,
        ),
        (
            401,
            "unauthorized",
            "Invalid or missing API key",
            "rejected the bot's credentials (WHOP_API_KEY)",
            State.FAILED,
        ),
        (
            403,
            "forbidden",
            "You do not have permission",
            "lack the `developer:manage_builds` scope",
            State.FAILED,
        ),
        (404, "not_found", "Resource not found", "Whop has no app build", State.FAILED),
        (409, "conflict", "Another promotion is running", "Whop reported a conflict", State.FAILED),
        (
            422,
            "verification_required",
            "Verification is required",
            "Whop requires verification",
            State.FAILED,
        ),
        (
            500,
            "internal_server_error",
            "An unexpected error occurred",
            "Whop had a server error",
            State.UNKNOWN,
        ),
    ],
)
async def test_each_error_is_told_in_the_thread(
    world: World, status: int, kind: str, message: str, expected: str, state: State
) -> None:
    b = world.builds
    await world.requested(f"whop storefront {b.ios_approved}", CAROL)
    world.whop.fail_next(status, kind, message)
    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    assert expected in reply and f"HTTP {status}: {message}" in reply
    if state is State.UNKNOWN:
        assert "What to check" in reply
    request = world.bot.store.get(1)
    assert request is not None and request.state is state
    assert len(world.whop.promote_calls) == 1  # never retried
    assert world.whop.production(STOREFRONT, "ios").id == b.ios_prod  # type: ignore[union-attr]


async def test_a_promote_that_does_not_make_it_production_is_unknown(world: World) -> None:
    b = world.builds
    await world.requested(f"whop storefront {b.ios_approved}", CAROL)
    world.whop.promote_is_noop = True
    await world.sender.click(APPROVE, 1, ALICE)
    reply = await world.finished()
    assert "Outcome unknown" in reply and "is not marked as production" in reply
    assert "What to check: Check the production ios build of storefront in Whop." in reply
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.UNKNOWN


@pytest.mark.parametrize(
    "build_id", ["../apbu_1", "apbu%2F1", "apbu_1/promote", "apbu-1", "apbu_1?x=1"]
)
async def test_build_ids_with_path_tricks_never_reach_whop(world: World, build_id: str) -> None:
    response = await world.sender.command(f"whop storefront {build_id}", CAROL)
    body = response.json()
    assert "is not a Whop build id (letters, digits and _ only)" in body["text"]
    await asyncio.sleep(0.05)
    assert world.whop.calls == []


async def test_spaces_in_an_id_are_not_an_id(world: World) -> None:
    response = await world.sender.command("whop storefront apbu 1", CAROL)
    assert "takes a build id" in response.json()["text"]
    assert world.whop.calls == []


async def test_whop_needs_the_builds_scope(world: World) -> None:
    response = await world.sender.command(f"whop storefront {world.builds.ios_approved}", BOB)
    assert "needs the `developer:manage_builds` scope" in response.json()["text"]
