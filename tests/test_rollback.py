"""Rollback, end to end: promote, roll back by button or by command, and the provider is back
in its earlier state after exactly one more write. Through real HTTP with the fakes."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE, ROLLBACK
from tests.conftest import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    IOS_APP,
    STOREFRONT,
    World,
    block_text,
    buttons,
    open_buttons,
)

PROJECT = "proj-guardrails"


def _state(world: World, request_id: int) -> State:
    request = world.bot.store.get(request_id)
    assert request is not None
    return request.state


async def _approved(world: World, request_id: int, user: str) -> str:
    """Approve; wait for the thread reply that says how it ended and return its text."""
    before = len(world.thread())
    await world.sender.click(APPROVE, request_id, user)
    await world.slack.wait_for(lambda s: len(world.thread()) == before + 1)
    return block_text(world.thread()[-1]["blocks"])


async def _posted_and_stored(world: World, before: int) -> str:
    """Wait for a new release message (and its ts in the store); return its text."""
    await world.slack.wait_for(lambda s: len(world.posted()) == before + 1)
    async with asyncio.timeout(5):
        while any(r.message_ts is None for r in world.bot.store.in_states([State.PENDING])):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return block_text(world.posted()[-1]["blocks"])


async def _roll_back(world: World, how: str, request_id: int, user: str) -> str:
    """Ask to roll `request_id` back with its button or the command; return the new message."""
    before = len(world.posted())
    if how == "button":
        response = await world.sender.click(ROLLBACK, request_id, user)
    else:
        response = await world.sender.command(f"rollback {request_id}", user)
    assert response.status_code == 200
    return await _posted_and_stored(world, before)


async def _refused(world: World, request_id: int, user: str = DAVE) -> str:
    posted = len(world.posted())
    told = await world.answer(f"rollback {request_id}", user)
    assert len(world.posted()) == posted  # nothing was posted
    return told


def _message_of(world: World, request_id: int) -> str:
    """The latest text of request `request_id`'s release message."""
    ts = world.bot.store.get(request_id).message_ts  # type: ignore[union-attr]
    updates = [c.args for c in world.slack.calls_to("chat.update") if c.args["ts"] == ts]
    return block_text(updates[-1]["blocks"])


async def _message_says(world: World, request_id: int, text: str) -> str:
    """Wait until request `request_id`'s release message says `text`; return it."""
    await world.slack.wait_for(lambda s: text in _message_of(world, request_id))
    return _message_of(world, request_id)


@pytest.mark.parametrize("how", ["button", "command"])
async def test_znyx_promotion_rolled_back(world: World, how: str) -> None:
    before = world.znyx.active(PROJECT, "prod")
    assert before is not None
    await world.requested("znyx guardrails staging", ALICE)
    reply = await _approved(world, 1, BOB)
    assert "guardrails bundle v2 is active in prod" in reply
    assert buttons(world.thread()[-1]["blocks"]) == [(ROLLBACK, "1")]  # on the outcome
    assert (ROLLBACK, "1") in buttons(world.slack.calls_to("chat.update")[-1].args["blocks"])
    writes = len(world.znyx.writes)

    message = await _roll_back(world, how, 1, DAVE)
    assert "Promote guardrails policy bundle: activate v1 in prod" in message
    assert "Rolls back #1" in message
    assert "Active in prod now*\nv2 · sha256:555555555555" in message
    assert "Activating*\nv1 · sha256:000000000000" in message
    assert buttons(world.posted()[-1]["blocks"]) == open_buttons(2)
    assert len(world.znyx.writes) == writes  # nothing sent before approval

    reply = await _approved(world, 2, ALICE)
    assert "guardrails bundle v1 is active in prod" in reply and "Rolls back #1" in reply
    assert world.znyx.active(PROJECT, "prod") is before  # the very bundle, active again
    [activate] = world.znyx.writes[writes:]  # exactly one write
    assert activate.path == f"/v1/orgs/org-test/projects/{PROJECT}/envs/prod/bundles/1/activate"
    await _message_says(world, 1, "rolled back by #2")
    assert (ROLLBACK, "1") not in buttons(world.slack.calls_to("chat.update")[-1].args["blocks"])

    status = await world.answer("status 1", ALICE)
    assert "Rolled back by #2" in status and "rolled back by the bot — by #2" in status
    assert "Rolls back #1" in await world.answer("status 2", ALICE)
    history = await world.answer("history znyx:guardrails:prod", ALICE)
    assert "#2 requested `znyx:guardrails:prod`" in history and "rollback of #1" in history
    assert "#1 rolled back" in history

    told = await _refused(world, 1)
    assert told == "#1 was already rolled back by #2."


@pytest.mark.parametrize("how", ["button", "command"])
async def test_whop_promotion_rolled_back(world: World, how: str) -> None:
    b = world.builds
    await world.requested(f"whop storefront {b.ios_approved}", CAROL)
    await _approved(world, 1, ALICE)
    assert world.whop.production(STOREFRONT, "ios").id == b.ios_approved  # type: ignore[union-attr]

    message = await _roll_back(world, how, 1, DAVE)
    assert f"storefront app build {b.ios_prod} → production" in message
    assert f"Replaces*\n{b.ios_approved}" in message and "Rolls back #1" in message
    reply = await _approved(world, 2, ALICE)
    assert f"{b.ios_prod} is the production ios build of storefront" in reply
    assert world.whop.production(STOREFRONT, "ios").id == b.ios_prod  # type: ignore[union-attr]
    assert [c.path for c in world.whop.promote_calls] == [
        f"/app_builds/{b.ios_approved}/promote",
        f"/app_builds/{b.ios_prod}/promote",  # the rollback: one write
    ]
    await _message_says(world, 1, "rolled back by #2")


@pytest.mark.parametrize("how", ["button", "command"])
async def test_app_store_attach_rolled_back(world: World, how: str) -> None:
    ids = world.asc_ids
    await world.requested("appstore ios 2.4.0 153", CAROL)
    await _approved(world, 1, ALICE)
    assert world.asc.versions[ids.v240].build_id == ids.b153_undeclared

    message = await _roll_back(world, how, 1, DAVE)
    assert "ios 2.4.0: attach build 152" in message and "Rolls back #1" in message
    assert f"Attached now*\n153 ({ids.b153_undeclared})" in message
    await _approved(world, 2, ALICE)
    assert _state(world, 2) is State.SUCCEEDED
    assert world.asc.versions[ids.v240].build_id == ids.b152_attached
    [_, rollback] = world.asc.patches
    assert rollback.body == {"data": {"type": "builds", "id": ids.b152_attached}}


@pytest.mark.parametrize("how", ["button", "command"])
async def test_app_store_attach_to_an_empty_version_rolled_back_by_detaching(
    world: World, how: str
) -> None:
    ids = world.asc_ids
    v250 = world.asc.add_version(IOS_APP, "2.5.0")  # no build attached yet
    await world.requested("appstore ios 2.5.0 155", CAROL)
    assert "Attached now*\nno build" in block_text(world.posted()[0]["blocks"])
    await _approved(world, 1, ALICE)
    assert v250.build_id == ids.b155_exempt

    message = await _roll_back(world, how, 1, DAVE)
    assert "ios 2.5.0: detach build 155" in message
    assert "Detaching*\nbuild 155: the version will have no build" in message
    reply = await _approved(world, 2, ALICE)
    assert "no build is attached to ios 2.5.0" in reply
    assert v250.build_id is None
    [_, detach] = world.asc.patches
    assert detach.path == f"/v1/appStoreVersions/{v250.id}/relationships/build"
    assert detach.body == {"data": None}

    # and the detach can itself be rolled back: the build goes back on
    await _roll_back(world, how, 2, CAROL)
    await _approved(world, 3, ALICE)
    assert v250.build_id == ids.b155_exempt


@pytest.mark.parametrize("how", ["button", "command"])
async def test_app_store_encryption_rolled_back(world: World, how: str) -> None:
    ids = world.asc_ids
    await world.requested("appstore encryption ios 155 non-exempt", CAROL)
    await _approved(world, 1, ALICE)
    assert world.asc.builds[ids.b155_exempt].uses_non_exempt_encryption is True

    message = await _roll_back(world, how, 1, DAVE)
    assert "ios build 155: declare encryption exempt" in message
    await _approved(world, 2, ALICE)
    assert world.asc.builds[ids.b155_exempt].uses_non_exempt_encryption is False
    [_, rollback] = world.asc.patches
    assert rollback.body == {
        "data": {
            "type": "builds",
            "id": ids.b155_exempt,
            "attributes": {"usesNonExemptEncryption": False},
        }
    }


async def test_an_undeclared_encryption_cannot_be_undeclared(world: World) -> None:
    await world.requested("appstore encryption ios 153 exempt", CAROL)
    await _approved(world, 1, ALICE)
    told = await _refused(world, 1)
    assert told == (
        "#1 can't be rolled back: build 153's encryption was not declared before it, and "
        "App Store Connect can't take a declaration back"
    )
    assert len(world.asc.patches) == 1


async def test_an_expire_cannot_be_rolled_back(world: World) -> None:
    await world.requested("appstore expire ios 155", CAROL)
    await _approved(world, 1, ALICE)
    assert buttons(world.thread()[-1]["blocks"]) == []  # no Roll back: there is no way back
    told = await _refused(world, 1)
    assert told == (
        "#1 can't be rolled back: an expired build can't be made unexpired: "
        "App Store Connect has no way back"
    )
    # A stale button (or a typed click) is answered the same way.
    before = len(world.told())
    await world.sender.click(ROLLBACK, 1, DAVE)
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    assert "an expired build can't be made unexpired" in world.told()[-1]
    assert world.asc.builds[world.asc_ids.b155_exempt].expired is True


async def test_refused_after_a_later_promotion_naming_what_is_there_now(world: World) -> None:
    b = world.builds
    await world.requested(f"whop storefront {b.ios_approved}", CAROL)
    await _approved(world, 1, ALICE)
    await world.requested(f"whop storefront {b.ios_draft}", CAROL)
    await _approved(world, 2, ALICE)

    told = await _refused(world, 1)
    assert told == (
        "Something else was promoted since: the production ios build of storefront is "
        f"{b.ios_draft} now, not {b.ios_approved}, so there is nothing to roll back. "
        "Nothing was posted."
    )
    assert len(world.whop.promote_calls) == 2
    # The latest one can be rolled back, and after that the first one again.
    await _roll_back(world, "command", 2, DAVE)
    await _approved(world, 3, ALICE)
    assert world.whop.production(STOREFRONT, "ios").id == b.ios_approved  # type: ignore[union-attr]
    await _roll_back(world, "button", 1, DAVE)
    await _approved(world, 4, ALICE)
    assert world.whop.production(STOREFRONT, "ios").id == b.ios_prod  # type: ignore[union-attr]


async def test_znyx_rollback_refused_after_a_later_publish(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    await _approved(world, 1, BOB)
    world.znyx.publish(PROJECT, "prod", "sha256:" + "7" * 64)  # a hotfix straight to prod
    told = await _refused(world, 1)
    assert told == (
        "Something else was made active since: prod's active bundle is v3 · "
        "sha256:777777777777 now, not v2, so there is nothing to roll back. Nothing was posted."
    )
    assert world.znyx.activate_calls == []


async def test_a_rollback_checks_again_at_execution(world: World) -> None:
    ids = world.asc_ids
    await world.requested("appstore ios 2.4.0 153", CAROL)
    await _approved(world, 1, ALICE)
    await _roll_back(world, "command", 1, DAVE)
    world.asc.versions[ids.v240].build_id = ids.b155_exempt  # attached by hand meanwhile
    reply = await _approved(world, 2, ALICE)
    assert (
        f"the build attached to ios 2.4.0 was 153 ({ids.b153_undeclared}) when this was "
        f"requested; it is now 155 ({ids.b155_exempt}): nothing was changed"
    ) in reply
    assert _state(world, 2) is State.FAILED
    assert len(world.asc.patches) == 1  # the rollback sent nothing
    assert "rolled back by" not in _message_of(world, 1)
    # a failed rollback leaves #1 undoable once the world is back
    world.asc.versions[ids.v240].build_id = ids.b153_undeclared
    await _roll_back(world, "command", 1, DAVE)


async def test_a_rollback_is_a_request_like_any_other(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    await _approved(world, 1, BOB)
    told = await world.answer("rollback 1", CAROL)  # no bundle:publish
    assert told.startswith("You can't request this: it needs the `bundle:publish` scope")

    await _roll_back(world, "command", 1, DAVE)
    told = await world.answer("rollback 1", BOB)  # one open request per thing
    assert told.startswith("#2 guardrails policy bundle: activate v1 in prod is already open")
    told = await world.answer("znyx guardrails staging", BOB)
    assert "#2 " in told and "is already open for this" in told
    before = len(world.told())
    await world.sender.click(APPROVE, 2, DAVE)  # the requester's own approval doesn't count
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    assert _state(world, 2) is State.PENDING

    for request_id, answer in [
        (2, "#2 is waiting for approval: only a succeeded promotion can be rolled back."),
        (9, "There is no request #9."),
    ]:
        assert await world.answer(f"rollback {request_id}", ALICE) == answer


async def test_znyx_activate_an_explicit_version(world: World) -> None:
    world.znyx.publish(PROJECT, "prod", "sha256:" + "7" * 64)  # v2 is active in prod
    await world.requested("znyx guardrails activate prod v1", BOB)
    message = block_text(world.posted()[0]["blocks"])
    assert "Promote guardrails policy bundle: activate v1 in prod" in message
    assert "Active in prod now*\nv2 · sha256:777777777777" in message
    assert "Activating*\nv1 · sha256:000000000000 (published " in message
    assert world.znyx.writes == []

    reply = await _approved(world, 1, ALICE)
    assert "guardrails bundle v1 is active in prod" in reply
    assert "Replaced: `v2 · sha256:777777777777`" in reply
    assert world.znyx.active(PROJECT, "prod").version == 1  # type: ignore[union-attr]
    [call] = world.znyx.writes
    assert call.path == f"/v1/orgs/org-test/projects/{PROJECT}/envs/prod/bundles/1/activate"

    # an explicit activation rolls back like a promotion
    await _roll_back(world, "button", 1, DAVE)
    await _approved(world, 2, ALICE)
    assert world.znyx.active(PROJECT, "prod").version == 2  # type: ignore[union-attr]
    assert len(world.znyx.writes) == 2


@pytest.mark.parametrize(
    ("text", "user", "answer"),
    [
        (
            "znyx guardrails activate prod 9",
            BOB,
            "guardrails has no bundle v9 in prod (its versions: v1).",
        ),
        ("znyx guardrails activate prod 1", BOB, "v1 is already the active bundle of prod"),
        ("znyx guardrails activate staging 1", CAROL, "You can't request this"),
    ],
)
async def test_znyx_activate_refusals(world: World, text: str, user: str, answer: str) -> None:
    response = await world.sender.command(text, user)
    told = response.json()["text"] if response.text else None
    if told is None:
        await world.slack.wait_for(lambda s: len(world.told()) == 1)
        told = world.told()[0]
    assert answer in told
    assert world.posted() == [] and world.znyx.writes == []
