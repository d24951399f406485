"""Real `promote-bot serve` processes sharing one database (a SQLite file, and a real
PostgreSQL database): exactly once across replicas, and recovery after a kill -9 in the middle
of a provider call."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from bot.core.model import State
from bot.store import open_any
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, APPROVERS, CAROL, DAVE, Bot, Fakes, serve_env


async def test_two_processes_on_one_database_promote_once(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]], shared_db: str
) -> None:
    f, urls = fakes
    env = serve_env(tmp_path, urls, PROMOTE_BOT_DB=shared_db)
    one, two = await Bot.start(env, urls["slack"]), await Bot.start(env, urls["slack"])
    try:
        await one.sender.command("znyx guardrails dev", ALICE)
        await f.slack.wait_for(lambda s: len(s.channel_posts()) == 1, within=10)
        clicks = [
            (one if i % 2 else two).sender.click(APPROVE, 1, user)
            for i, user in enumerate(APPROVERS)
        ]
        assert {r.status_code for r in await asyncio.gather(*clicks)} == {200}
        await f.slack.wait_for(
            lambda s: any("thread_ts" in c.args for c in s.channel_posts()), within=15
        )
        await asyncio.sleep(0.5)
        assert len(f.znyx.promote_calls) == 1
        threads = [c for c in f.slack.channel_posts() if "thread_ts" in c.args]
        assert len(threads) == 1
    finally:
        await one.stop()
        await two.stop()
    store = open_any(shared_db)
    request = store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert [e.event for e in store.history(request_id=1)].count("executing") == 1


async def test_kill_9_during_the_provider_call_then_restart(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]], shared_db: str
) -> None:
    f, urls = fakes
    f.whop.promote_delay = 60.0  # Whop holds the promote call open
    env = serve_env(tmp_path, urls, PROMOTE_BOT_LEASE_SECONDS="1", PROMOTE_BOT_DB=shared_db)
    first = await Bot.start(env, urls["slack"])
    try:
        await first.sender.command(f"whop storefront {f.builds.ios_approved}", CAROL)
        await f.slack.wait_for(lambda s: len(s.channel_posts()) == 1, within=10)
        await first.sender.click(APPROVE, 1, DAVE)
        async with asyncio.timeout(10):
            while not f.whop.promote_calls:  # noqa: ASYNC110 (the fake has no event to await)
                await asyncio.sleep(0.02)
    finally:
        await first.stop(signal.SIGKILL)
    store = open_any(shared_db)
    assert store.get(1).state is State.EXECUTING  # type: ignore[union-attr]
    await asyncio.sleep(1.1)  # past the lease: nobody is executing it any more

    second = await Bot.start(env, urls["slack"])
    try:
        await f.slack.wait_for(
            lambda s: any("thread_ts" in c.args for c in s.channel_posts()), within=15
        )
    finally:
        await second.stop()
    request = store.get(1)
    assert request is not None and request.state is State.FAILED
    assert (
        request.outcome is not None
        and "read again after the promotion was cut off" in request.outcome.headline
    )
    assert len(f.whop.promote_calls) == 1  # never called again
    [thread] = [c.args for c in f.slack.channel_posts() if "thread_ts" in c.args]
    assert "not done: the production ios build of storefront is" in str(thread["blocks"])
    final = f.slack.calls_to("chat.update")[-1].args
    assert not [b for b in final["blocks"] if b["type"] == "actions"]
