"""A recovery takes only its own write for its own. When what it installed was superseded
before it could read (CI published a hotfix meanwhile), it says so and records what it
installed, not what it found, so a rollback of it is refused rather than undoing the hotfix.
End to end with a real `promote-bot serve` killed mid-write, and each provider's `observe`
against its fake over HTTP."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from bot.core.steps import Steps
from bot.providers.appstore import AppStoreAttach
from bot.providers.whop import WhopPromote
from bot.providers.znyx import ZnyxPromote
from bot.store import SqliteStore
from bot.transports.slack.blocks import APPROVE, ROLLBACK
from tests.conftest import (
    ALICE,
    BOB,
    DAVE,
    IOS_APP,
    STOREFRONT,
    Bot,
    Fakes,
    World,
    block_text,
    serve_env,
)

PROJECT = "proj-guardrails"
HOTFIX = "sha256:" + "7" * 64
STAGING = ZnyxPromote(
    org_id="org-test", project="guardrails", project_id=PROJECT, source_env="staging"
)


def _threads(f: Fakes) -> list[dict]:
    return [c.args for c in f.slack.channel_posts() if "thread_ts" in c.args]


def _told(f: Fakes) -> list[str]:
    return [c.args.get("text", "") for c in f.slack.calls_to("response_url")]


async def test_a_recovery_after_ci_published_says_superseded_and_its_rollback_is_refused(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    f.znyx.promote_gate = gate = asyncio.Event()
    env = serve_env(tmp_path, urls, PROMOTE_BOT_LEASE_SECONDS="1")
    first = await Bot.start(env, urls["slack"])
    try:
        await first.sender.command("znyx guardrails staging", ALICE)
        await f.slack.wait_for(lambda s: len(s.channel_posts()) == 1, within=10)
        await first.sender.click(APPROVE, 1, BOB)
        async with asyncio.timeout(10):
            await f.znyx.promote_started.wait()
    finally:
        await first.stop(signal.SIGKILL)  # during the write
    gate.set()  # the write lands: v2 in prod, published as #1's
    async with asyncio.timeout(5):
        while len(f.znyx.projects[PROJECT]["prod"]) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    hotfix = f.znyx.publish(PROJECT, "prod", HOTFIX)  # CI, before the bot is back: v3

    second = await Bot.start(env, urls["slack"])
    try:
        await f.slack.wait_for(lambda s: len(_threads(f)) == 1, within=30)
        reply = block_text(_threads(f)[0]["blocks"])
        assert (
            "guardrails bundle v2 was made active in prod, and has been superseded since: "
            "v3 · sha256:777777777777 is active now"
        ) in reply
        request = SqliteStore(tmp_path / "shared.db").get(1)
        assert request is not None and request.outcome is not None
        assert request.state.value == "succeeded"  # it did land
        assert request.outcome.installed["version"] == "2"  # what #1 installed, not CI's v3

        await second.sender.click(ROLLBACK, 1, DAVE)
        refusal = "Something else was made active since"
        await f.slack.wait_for(lambda s: any(refusal in t for t in _told(f)), within=10)
        assert [t for t in _told(f) if refusal in t] == [
            "Something else was made active since: prod's active bundle is v3 · "
            "sha256:777777777777 now, not v2, so there is nothing to roll back. Nothing was posted."
        ]
        assert len(f.slack.channel_posts()) == 2  # the release message and its reply: no rollback
    finally:
        await second.stop()
    assert f.znyx.activate_calls == []  # CI's hotfix stays
    assert f.znyx.active(PROJECT, "prod") is hotfix
    assert len(f.znyx.promote_calls) == 1  # never sent again


# --- each provider's observe, over HTTP against its fake ---------------------------------


async def test_znyx_two_new_bundles_and_no_publisher_named_is_unknown(world: World) -> None:
    """Znyx's list does not say who published: one new bundle with the source's policies is
    the promotion's, but with CI's as well (the same policies, promoted again) it can't tell
    which one is: `unknown`, never CI's taken for its own."""
    znyx = world.bot.providers["znyx"]
    world.znyx.list_echoes_published_by = False
    preview = await znyx.preview(STAGING)
    source_hash = preview.expect["source_hash"]
    ours = "slack:U0ALICE via promote-bot #1 (test)"
    world.znyx.publish(PROJECT, "prod", source_hash, by=ours)  # the write that landed: v2

    alone = await znyx.observe(STAGING, promoted_by=ours, expect=preview.expect, steps=_no_steps())
    assert alone is not None and alone.state == "succeeded"
    assert alone.installed["version"] == "2"

    world.znyx.publish(PROJECT, "prod", source_hash, by="ci")  # v3, the same policies
    both = await znyx.observe(STAGING, promoted_by=ours, expect=preview.expect, steps=_no_steps())
    assert both is not None and both.state == "unknown" and both.installed == {}
    assert "prod's active bundle is v3 · sha256:555555555555" in both.headline


async def test_znyx_superseded_bundle_named_by_its_publisher(world: World) -> None:
    znyx = world.bot.providers["znyx"]
    preview = await znyx.preview(STAGING)
    ours = "slack:U0ALICE via promote-bot #1 (test)"
    world.znyx.publish(PROJECT, "prod", preview.expect["source_hash"], by=ours)
    world.znyx.publish(PROJECT, "prod", HOTFIX)
    seen = await znyx.observe(STAGING, promoted_by=ours, expect=preview.expect, steps=_no_steps())
    assert seen is not None and seen.state == "succeeded"
    assert seen.installed == {"env": "prod", "version": "2", "shown": "v2 · sha256:555555555555"}
    assert seen.before["version"] == "1"
    rules = world.bot.workflow.rules.providers["znyx"]
    undo = rules.rollback(STAGING, seen)
    assert not isinstance(undo, str) and undo.undoing == "2"  # refused while v3 is active:
    refused = await znyx.preview(undo)
    assert refused.refusal is not None and "not v2" in refused.refusal


async def test_whop_superseded_build_is_unknown_and_not_undoable(world: World) -> None:
    """Whop only says which build is production now: a recovery that finds another build
    there can't tell whether its own ever was, so it says `unknown` and records nothing."""
    whop = world.bot.providers["whop"]
    b = world.builds
    ours = WhopPromote(app="storefront", app_id=STOREFRONT, build_id=b.ios_approved)
    preview = await whop.preview(ours)
    ours = preview.action or ours
    await whop.execute(ours, promoted_by="#1", expect=preview.expect, steps=_no_steps())
    seen = await whop.observe(ours, promoted_by="#1", expect=preview.expect, steps=_no_steps())
    assert seen.state == "succeeded" and seen.installed["production"] == b.ios_approved

    theirs = WhopPromote(app="storefront", app_id=STOREFRONT, build_id=b.ios_draft)
    other = await whop.preview(theirs)
    await whop.execute(other.action, promoted_by="ci", expect=other.expect, steps=_no_steps())
    seen = await whop.observe(ours, promoted_by="#1", expect=preview.expect, steps=_no_steps())
    assert seen.state == "unknown" and seen.installed == {}
    assert f"the production ios build of storefront is {b.ios_draft}" in seen.headline
    rules = world.bot.workflow.rules.providers["whop"]
    assert isinstance(rules.rollback(ours, seen), str)


async def test_app_store_superseded_attach_is_unknown_and_not_undoable(world: World) -> None:
    asc = world.bot.providers["appstore"]
    ids = world.asc_ids
    ours = AppStoreAttach(app="ios", app_id=IOS_APP, version="2.4.0", build="153")
    preview = await asc.preview(ours)
    ours = preview.action or ours
    await asc.execute(ours, promoted_by="#1", expect=preview.expect, steps=_no_steps())
    seen = await asc.observe(ours, promoted_by="#1", expect=preview.expect, steps=_no_steps())
    assert seen is not None and seen.state == "succeeded"
    assert seen.installed["attached"] == ids.b153_undeclared

    world.asc.versions[ids.v240].build_id = ids.b155_exempt  # attached by hand since
    seen = await asc.observe(ours, promoted_by="#1", expect=preview.expect, steps=_no_steps())
    assert seen is not None and seen.state == "unknown" and seen.installed == {}
    rules = world.bot.workflow.rules.providers["appstore"]
    assert isinstance(rules.rollback(ours, seen), str)


def _no_steps() -> Steps:
    return Steps.in_memory()
