"""What runs is what was approved: one open request per thing, and the provider read again right
before the write. Through real HTTP, with the fakes changed behind the bot's back."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, CAROL, DAVE, WHOP_KEY, World, block_text


async def _approved_and_finished(world: World, request_id: int, user: str) -> str:
    before = len(world.thread())
    await world.sender.click(APPROVE, request_id, user)
    await world.slack.wait_for(lambda s: len(world.thread()) == before + 1)
    return block_text(world.thread()[-1]["blocks"])


def _state(world: World, request_id: int) -> State:
    request = world.bot.store.get(request_id)
    assert request is not None
    return request.state


async def test_an_old_approval_never_puts_an_older_whop_build_back(world: World) -> None:
    b = world.builds
    await world.requested(f"whop storefront {b.ios_approved}", ALICE)
    assert f"Replaces*\n{b.ios_prod}" in block_text(world.posted()[0]["blocks"])

    told = await world.answer(f"whop storefront {b.ios_draft}", CAROL)  # same app and platform
    assert told.startswith(f"#1 storefront app build {b.ios_approved} → production is already open")
    assert f"asked by <@{ALICE}>, pending" in told and "`/promote cancel 1`" in told
    assert len(world.posted()) == 1  # nothing was posted for the second ask

    # Someone promotes the draft in Whop's own dashboard meanwhile.
    async with httpx.AsyncClient(base_url=world.bot.providers["whop"].http.client.base_url) as c:
        response = await c.post(
            f"app_builds/{b.ios_draft}/promote", headers={"Authorization": f"Bearer {WHOP_KEY}"}
        )
        assert response.status_code == 200

    reply = await _approved_and_finished(world, 1, DAVE)
    assert (
        f"the production ios build was {b.ios_prod} when this was requested; it is now "
        f"{b.ios_draft}: nothing was changed, request again"
    ) in reply
    assert _state(world, 1) is State.FAILED
    production = world.whop.production("app_storefront01", "ios")
    assert production is not None and production.id == b.ios_draft
    assert len(world.whop.promote_calls) == 1  # the dashboard's; the bot sent none
    message = block_text(world.slack.calls_to("chat.update")[-1].args["blocks"])
    assert "Failed" in message and "nothing was changed" in message


@pytest.mark.parametrize(
    ("first", "second", "user"),
    [
        ("znyx guardrails staging", "znyx guardrails staging", BOB),
        ("znyx guardrails staging", "znyx proj-guardrails staging", BOB),  # by its id
        ("whop storefront {b.ios_approved}", "whop storefront {b.ios_draft}", CAROL),
        ("appstore ios 2.4.0 153", "appstore ios 2.4.0 155", CAROL),
        ("appstore expire ios 153", "appstore expire ios 153", CAROL),
        ("appstore encryption ios 153 exempt", "appstore expire ios 153", CAROL),
    ],
)
async def test_one_open_request_per_thing(world: World, first: str, second: str, user: str) -> None:
    b = world.builds
    await world.requested(first.format(b=b), ALICE)
    told = await world.answer(second.format(b=b), user)
    assert "#1 " in told and "is already open for this" in told
    assert f"asked by <@{ALICE}>, pending" in told and "Nothing was posted" in told
    assert len(world.posted()) == 1
    assert "requested" not in [e.event for e in world.bot.store.history() if e.request_id == 2]

    await world.answer("cancel 1", ALICE)  # once it has ended, the thing is free again
    await world.requested(second.format(b=b), user)
    assert _state(world, 2) is State.PENDING


async def test_other_things_stay_independent(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    await world.requested("znyx guardrails dev", ALICE)  # staging is another environment
    await world.requested(f"whop storefront {world.builds.android_approved}", ALICE)  # android
    await world.requested(f"whop storefront {world.builds.ios_approved}", ALICE)
    assert [_state(world, n) for n in (1, 2, 3, 4)] == [State.PENDING] * 4


async def test_znyx_destination_moved_since_the_preview(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    world.znyx.publish("proj-guardrails", "prod", "sha256:" + "7" * 64)  # a hotfix went to prod
    reply = await _approved_and_finished(world, 1, BOB)
    assert (
        "prod's active bundle was v1 · sha256:000000000000 when this was requested; it is now "
        "v2 · sha256:777777777777: nothing was changed, request again"
    ) in reply
    assert _state(world, 1) is State.FAILED
    assert world.znyx.promote_calls == []


async def test_app_store_attachment_moved_since_the_preview(world: World) -> None:
    ids = world.asc_ids
    await world.requested("appstore ios 2.4.0 153", CAROL)
    world.asc.versions[ids.v240].build_id = ids.b155_exempt  # attached by hand meanwhile
    reply = await _approved_and_finished(world, 1, ALICE)
    assert (
        f"the build attached to ios 2.4.0 was 152 ({ids.b152_attached}) when this was "
        f"requested; it is now 155 ({ids.b155_exempt})"
    ) in reply
    assert _state(world, 1) is State.FAILED
    assert world.asc.patches == []


async def test_app_store_build_changed_since_the_preview(world: World) -> None:
    ids = world.asc_ids
    await world.requested("appstore ios 2.4.0 153", CAROL)
    world.asc.builds[ids.b153_undeclared].expired = True
    reply = await _approved_and_finished(world, 1, ALICE)
    assert "build 153 expired was no when this was requested; it is now yes" in reply
    assert world.asc.patches == []


async def test_a_write_that_would_change_nothing_is_not_sent(world: World) -> None:
    ids = world.asc_ids
    await world.requested("appstore expire ios 155", CAROL)
    world.asc.builds[ids.b155_exempt].expired = True  # expired in App Store Connect meanwhile
    reply = await _approved_and_finished(world, 1, ALICE)
    assert "not sent: build 155 is already expired" in reply
    assert world.asc.patches == []


async def test_expiring_an_attached_build_warns_on_the_message(world: World) -> None:
    await world.requested("appstore expire ios 152", CAROL)
    message = block_text(world.posted()[0]["blocks"])
    assert "Build 152 is attached to version 2.4.0 (PREPARE_FOR_SUBMISSION)" in message
    await world.requested("appstore expire ios 153", CAROL)
    assert "attached to version" not in block_text(world.posted()[1]["blocks"])


async def test_two_asks_at_once_post_one_release_message(world: World) -> None:
    responses = await asyncio.gather(
        world.sender.command("znyx guardrails staging", ALICE),
        world.sender.command("znyx guardrails staging", BOB),
    )
    assert [r.status_code for r in responses] == [200, 200]
    await world.slack.wait_for(lambda s: len(world.posted()) == 1 and len(world.told()) == 1)
    assert "is already open for this" in world.told()[0]
    await asyncio.sleep(0.2)  # give any second (wrong) message the chance to show itself
    assert len(world.posted()) == 1
