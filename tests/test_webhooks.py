"""Znyx's webhooks end to end: the fake Znyx signs and sends them to the bot over real HTTP,
the bot reads Znyx, and the fake Slack shows what it posted and updated."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import signal
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from bot.cli import scheduler_for
from bot.core.model import State
from bot.sandbox.slack import FakeSlack
from bot.transports.slack.blocks import APPROVE
from tests.conftest import (
    ALICE,
    BOB,
    CONFIG,
    ZNYX_WEBHOOK_SECRET,
    Bot,
    Fakes,
    Output,
    World,
    block_text,
    serve_env,
    spawn_serve,
)
from tests.test_health import samples, value

FEED = "CZNYXFEED"
PATH = "/webhooks/znyx"


@pytest.fixture
def config_text() -> str:
    return CONFIG.replace('org = "org-test"', f'org = "org-test"\nchannel = "{FEED}"')


@pytest.fixture
async def running(world: World) -> AsyncIterator[World]:
    """The world with the bot's timed jobs running (as `serve` runs them), and the fake Znyx
    sending its webhooks to the bot."""
    world.znyx.webhooks.append((world.bot_url + PATH, ZNYX_WEBHOOK_SECRET))
    async with scheduler_for(world.bot):
        yield world


def sign(body: bytes, secret: str = ZNYX_WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def deliver(url: str, body: bytes, signature: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Webhook-Signature"] = signature
    async with httpx.AsyncClient() as http:
        return await http.post(url + PATH, content=body, headers=headers)


def feed(slack: FakeSlack) -> list[str]:
    """What the bot posted in the Znyx channel."""
    return [block_text(m["blocks"]) for m in slack.messages.get(FEED, [])]


def shown(world: World, request_id: int) -> str:
    [message] = world.slack.release_messages(request_id)
    return block_text(message["blocks"])


def replies(world: World, request_id: int) -> list[str]:
    """What the bot posted in a request's thread."""
    request = world.bot.store.get(request_id)
    assert request is not None
    return [
        block_text(m["blocks"])
        for m in world.slack.messages.get(request.channel, [])
        if m.get("thread_ts") == request.message_ts
    ]


def promoted(version: int, policy_hash: str, to: str = "prod", **extra: object) -> bytes:
    data = {"from_environment": "staging", "to_environment": to, "policy_hash": policy_hash}
    return json.dumps({"event": "bundle.promoted", "data": {**data, **extra}}).encode()


async def test_a_change_made_outside_the_bot_updates_every_affected_message_within_2_s(
    running: World,
) -> None:
    world = running
    await world.requested("znyx guardrails staging", ALICE)  # #1 staging → prod: reads staging
    await world.requested("znyx guardrails dev", ALICE)  # #2 dev → staging: replaces staging's
    await world.requested("whop storefront " + world.builds.ios_approved, ALICE)  # #3: not Znyx
    assert "Out of date" not in shown(world, 1) + shown(world, 2)

    new = world.znyx.ui_promote("proj-guardrails", "dev", by="ui:carol")  # staging v2, via its UI
    assert not isinstance(new, str)
    await world.slack.wait_for(
        lambda s: (
            "Out of date" in shown(world, 1)
            and "Out of date" in shown(world, 2)
            and len(feed(s)) == 1
        ),
        within=2,  # the bound: from Znyx's change to every affected message
    )
    assert world.znyx.deliveries == [202]

    # What is live now, from Znyx, and that approving will not promote it.
    one, two = shown(world, 1), shown(world, 2)
    assert "staging's active bundle: v1 · sha256:555555555555 when this was asked" in one
    assert "v2 · sha256:dddddddddddd now (published by ui:carol)" in one
    assert "Approving will not promote it" in one and "/promote cancel 1" in one
    assert "staging's active bundle: v1 · sha256:555555555555 when this was asked" in two
    assert "Out of date" not in shown(world, 3)

    [notice] = feed(world.slack)
    assert "guardrails staging changed outside promote-bot" in notice
    assert "v1 · sha256:555555555555 (the version before it) → v2 · sha256:dddddddddddd" in notice
    assert "published by ui:carol" in notice and "did not go through promote-bot" in notice
    assert "#1, #2" in notice  # the open requests it affects

    # It is in the audit log and in /promote history; the requests' own timelines say so too.
    history = await world.answer("history znyx:guardrails:staging")
    assert "changed outside the bot" in history and "Znyx: ui:carol" in history
    events = [e.event for e in world.bot.store.history(request_id=1)]
    assert "moved since asked" in events

    # The same delivery again, and other deliveries of the same change: nothing twice.
    body = promoted(2, new.policy_hash, to="staging", project_id="proj-guardrails")
    assert (await deliver(world.bot_url, body, sign(body))).status_code == 202
    again = await deliver(world.bot_url, body, sign(body))
    assert again.status_code == 200 and "seen before" in again.text
    updates = len(world.slack.calls_to("chat.update"))
    await world.bot.webhooks.work()  # type: ignore[union-attr]
    assert len(feed(world.slack)) == 1
    assert len(world.slack.calls_to("chat.update")) == updates
    outside = [e for e in world.bot.store.history() if e.event == "changed outside the bot"]
    assert len(outside) == 1

    # Approving is answered with the reason, and nothing reaches Znyx; cancelling still works.
    promotes = len(world.znyx.promote_calls)
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: any("can't be approved" in t for t in world.told()))
    told = next(t for t in world.told() if "can't be approved" in t)
    assert "v2 · sha256:dddddddddddd now" in told and "/promote cancel 1" in told
    assert len(world.znyx.promote_calls) == promotes
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.PENDING and request.approvals == []
    assert "Request #2 is cancelled" in await world.answer("cancel 2")


async def test_a_prod_change_outside_the_bot_is_told_once_and_a_replay_says_nothing(
    running: World,
) -> None:
    world = running
    await world.requested("znyx guardrails staging", ALICE)
    world.znyx.ui_promote("proj-guardrails", "staging", by="ui:dave")  # prod v2, not the bot
    await world.slack.wait_for(lambda s: len(feed(s)) == 1 and "Out of date" in shown(world, 1))
    [notice] = feed(world.slack)
    assert "guardrails prod changed outside promote-bot" in notice
    assert "v1 · sha256:000000000000 (the version before it) → v2 · sha256:555555555555" in notice
    # A correctly signed body that claims prod moved again, to policies Znyx does not show:
    # the bot reads Znyx, which shows what the bot saw last, so it says nothing.
    forged = promoted(9, "sha256:" + "e" * 64, project_id="proj-guardrails", delivery="x")
    assert (await deliver(world.bot_url, forged, sign(forged))).status_code == 202
    updates = len(world.slack.calls_to("chat.update"))
    await world.bot.webhooks.work()  # type: ignore[union-attr]
    assert len(feed(world.slack)) == 1
    assert len(world.slack.calls_to("chat.update")) == updates
    assert "e" * 12 not in shown(world, 1)


async def test_an_unknown_promotion_is_resolved_by_its_webhook(running: World) -> None:
    world = running
    await world.requested("znyx guardrails staging", ALICE)
    world.znyx.fail_next(502, "Bad Gateway", after_doing=True)  # it landed; the answer did not
    await world.sender.click(APPROVE, 1, BOB)
    store = world.bot.store
    # Unknown first (a 5xx after sending); then Znyx's webhook for that promotion is read.
    await world.slack.wait_for(lambda s: any("confirms" in t for t in replies(world, 1)), within=8)
    request = store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert request.outcome is not None and "it was unknown" in request.outcome.headline
    thread = replies(world, 1)
    assert "Outcome unknown" in thread[0]
    [confirm] = [t for t in thread if "confirms" in t]
    assert "Znyx confirms* #1" in confirm and "succeeded now" in confirm
    assert "Promoted" in shown(world, 1)
    events = [e.event for e in reversed(store.history(request_id=1))]
    assert events[-2:] == ["unknown", "resolved: succeeded"]
    assert feed(world.slack) == []  # the bot's own change: nothing in the channel
    assert len(world.znyx.promote_calls) == 1  # read, never sent again
    # The requester was told it was unknown, and is told it succeeded after all.
    await world.slack.wait_for(lambda s: len(s.dms(ALICE)) == 3, within=5)
    approved, unknown, succeeded = (block_text(m["blocks"]) for m in world.slack.dms(ALICE))
    assert "approved" in approved and "unknown" in unknown.lower()
    assert "Your request #1 succeeded" in succeeded and "it was unknown" in succeeded


async def test_the_bots_own_promotion_is_confirmed_once_in_its_thread(running: World) -> None:
    world = running
    await world.requested("znyx guardrails staging", ALICE)
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(replies(world, 1)) == 2, within=8)
    outcome, confirm = replies(world, 1)
    assert "Promoted" in outcome
    assert "Znyx confirms* #1: guardrails prod runs v2 · sha256:555555555555" in confirm
    assert feed(world.slack) == []
    # Znyx sends it again: nothing twice.
    body = promoted(2, "sha256:" + "5" * 64, project_id="proj-guardrails")
    assert (await deliver(world.bot_url, body, sign(body))).status_code == 202
    await world.bot.webhooks.work()  # type: ignore[union-attr]
    assert len(replies(world, 1)) == 2 and feed(world.slack) == []


async def test_bad_signatures_oversize_and_malformed_bodies_change_nothing(
    running: World,
) -> None:
    world = running
    await world.requested("znyx guardrails staging", ALICE)
    world.znyx.calls.clear()
    url = world.bot_url
    good = promoted(2, "sha256:" + "5" * 64)
    big = json.dumps({"event": "bundle.promoted", "pad": "x" * 70_000}).encode()
    cases = [
        (good, None, 401),  # no signature
        (good, "sha256=" + "0" * 64, 401),
        (good, sign(good, "another-secret"), 401),
        (good, sign(good).upper(), 401),
        (good, sign(good)[7:], 401),  # without "sha256="
        (good + b" ", sign(good), 401),  # the body changed after it was signed
        (big, sign(big), 413),
        (b"{not json", sign(b"{not json"), 400),
        (b"[1, 2]", sign(b"[1, 2]"), 400),
        (b"\xff\xfe", sign(b"\xff\xfe"), 400),
    ]
    for body, signature, status in cases:
        response = await deliver(url, body, signature)
        assert response.status_code == status, (body[:30], signature, response.text)
    # Over 64 KiB without a Content-Length (chunked): refused as it streams in.

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"x" * 1024

    async with httpx.AsyncClient() as http:
        streamed = await http.post(
            url + PATH, content=chunks(), headers={"X-Webhook-Signature": "x"}
        )
    assert streamed.status_code == 413
    other = json.dumps({"event": "policy.updated", "data": {"policy_hash": "x"}}).encode()
    ignored = await deliver(url, other, sign(other))
    assert ignored.status_code == 200 and "ignored" in ignored.text

    await world.bot.webhooks.work()  # type: ignore[union-attr]
    await asyncio.sleep(0.1)
    assert world.znyx.calls == []  # nothing was read, let alone written
    assert world.bot.store.webhooks_waiting(world.bot.workflow.clock()) == []
    assert feed(world.slack) == [] and "Out of date" not in shown(world, 1)
    page = samples(world.bot.metrics.render().decode())
    counted = {
        o: value(page, "promote_bot_webhook_deliveries_total", outcome=o)
        for o in ("bad_signature", "too_large", "malformed", "ignored", "accepted", "duplicate")
    }
    assert counted == {
        "bad_signature": 6,
        "too_large": 2,
        "malformed": 3,
        "ignored": 1,
        "accepted": 0,
        "duplicate": 0,
    }


async def test_without_a_secret_there_is_no_endpoint(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    _, urls = fakes
    bot = await Bot.start(serve_env(tmp_path, urls), urls["slack"])
    url = bot.sender.url.removesuffix("/slack/events")
    try:
        body = promoted(2, "sha256:" + "5" * 64)
        assert (await deliver(url, body, sign(body))).status_code == 404
    finally:
        await bot.stop()


async def test_socket_mode_takes_webhooks_on_port(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    env = serve_env(
        tmp_path, urls, SLACK_APP_TOKEN=FakeSlack.app_token, ZNYX_WEBHOOK_SECRET="s3cret-for-znyx"
    )
    del env["SLACK_SIGNING_SECRET"]
    bot = await Bot.start(env, urls["slack"])
    url = bot.sender.url.removesuffix("/slack/events")
    try:
        f.znyx.webhooks.append((url + PATH, "s3cret-for-znyx"))
        f.znyx.ui_promote("proj-guardrails", "staging", by="ui:carol")
        await f.znyx.delivered()
        assert f.znyx.deliveries == [202]
        async with asyncio.timeout(10):  # the bot reads prod from Znyx after it answered
            while not any(c.path.endswith("/prod/bundles") for c in f.znyx.calls):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        forged = promoted(3, "sha256:" + "e" * 64)
        assert (await deliver(url, forged, sign(forged))).status_code == 401
        async with httpx.AsyncClient() as http:
            page = samples((await http.get(url + "/metrics")).text)
        assert value(page, "promote_bot_webhook_deliveries_total", outcome="accepted") == 1
        assert value(page, "promote_bot_webhook_deliveries_total", outcome="bad_signature") == 1
        bot.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bot.process.wait(), 15) == 0
    finally:
        await bot.stop()


async def test_an_old_delivery_replayed_to_a_bot_that_never_read_the_thing_says_nothing(
    running: World,
) -> None:
    world = running
    prod = world.znyx.active("proj-guardrails", "prod")
    assert prod is not None
    prod.published_at = "2026-01-01T00:00:00Z"  # long ago: the delivery for it is old news
    old = promoted(1, prod.policy_hash, project_id="proj-guardrails")
    assert (await deliver(world.bot_url, old, sign(old))).status_code == 202
    await world.bot.webhooks.work()  # type: ignore[union-attr]
    assert feed(world.slack) == []
    assert [e.event for e in world.bot.store.history()] == []
    # From now on the bot knows what prod shows: a change made after it is told.
    world.znyx.ui_promote("proj-guardrails", "staging", by="ui:carol")
    await world.slack.wait_for(lambda s: len(feed(s)) == 1)
    assert "v1 · sha256:000000000000 → v2 · sha256:555555555555" in feed(world.slack)[0]


async def test_a_notice_slack_did_not_take_is_posted_later_once(running: World) -> None:
    world = running
    await world.requested("znyx guardrails staging", ALICE)
    world.slack.fail("chat.postMessage", error="not_in_channel", times=1)
    start = world.clock.at = world.bot.workflow.clock()
    world.znyx.ui_promote("proj-guardrails", "staging", by="ui:carol")

    def tries(slack: FakeSlack) -> list:
        return [c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == FEED]

    await world.slack.wait_for(lambda s: len(tries(s)) == 1)
    assert feed(world.slack) == []  # Slack refused it: recorded, and tried again shortly
    world.clock.at = start + timedelta(seconds=3)  # its backoff is over
    await world.slack.wait_for(lambda s: len(feed(s)) == 1)  # by the `deliver` job
    await world.bot.workflow.deliver_due()
    assert len(feed(world.slack)) == 1 and len(tries(world.slack)) == 2


async def test_the_channel_follows_the_config_as_it_reloads(running: World) -> None:
    world = running
    path = world.bot.settings.promote_bot_config
    path.write_text(path.read_text().replace(FEED, "CNEWFEED"))
    assert world.bot.live.reload("a test")
    world.znyx.ui_promote("proj-guardrails", "staging", by="ui:carol")
    await world.slack.wait_for(lambda s: len(s.messages.get("CNEWFEED", [])) == 1)
    assert feed(world.slack) == []


async def test_deliveries_are_taken_while_the_bot_waits_for_slack_and_read_once_it_answered(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    failing = f.slack.fail("auth.test", times=None, status=500, body="upstream reset")
    env = serve_env(tmp_path, urls, ZNYX_WEBHOOK_SECRET="s3cret-for-znyx")
    process = await spawn_serve(env)
    output = Output(process)
    try:
        port = re.search(r"on port (\d+)", await output.line("meanwhile"))
        assert port is not None
        url = f"http://127.0.0.1:{port[1]}"
        f.znyx.webhooks.append((url + PATH, "s3cret-for-znyx"))
        f.znyx.ui_promote("proj-guardrails", "staging", by="ui:carol")
        await f.znyx.delivered()
        assert f.znyx.deliveries == [202]  # recorded, though the bot can't act yet
        assert not any(c.path.endswith("/bundles") for c in f.znyx.calls)
        failing.times = 0  # Slack is back: the bot starts, and reads what Znyx named
        await output.line("listening on http://0.0.0.0:")
        async with asyncio.timeout(10):
            while not any(c.path.endswith("/prod/bundles") for c in f.znyx.calls):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert await output.ended() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
