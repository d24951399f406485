"""A recovery that carries a multi-step request on (sends the steps never sent) asks the
holds first, as `execute` does before its first write: a lock set while the bot was down (an
incident) stops it there, `failed`, naming the lock and what was done before it, audited. Real
`promote-bot serve`, killed with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.core.model import Lock, State
from bot.store import open_any
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, DAVE, Bot, serve_env
from tests.test_interruptions_release_train import CREATE, LEASE, Train, train  # noqa: F401


async def test_a_restart_sends_nothing_past_a_lock_set_while_it_was_down(
    tmp_path: Path,
    train: Train,  # noqa: F811
) -> None:
    env = serve_env(
        tmp_path, train.urls, ASC_API_URL=train.urls["asc"], PROMOTE_BOT_LEASE_SECONDS=str(LEASE)
    )
    gate = train.asc.hold[CREATE] = asyncio.Event()
    first = await Bot.start(env, train.urls["slack"])
    try:
        await first.sender.command("appstore submit ios 2.4.0", ALICE)
        await train.fakes.slack.wait_for(lambda s: len(train.posts()) == 1, within=10)
        await first.sender.click(APPROVE, 1, DAVE)
        async with asyncio.timeout(10):
            await train.asc.reached.setdefault(CREATE, asyncio.Event()).wait()
    finally:
        await first.stop(signal.SIGKILL)
    killed = time.monotonic()
    gate.set()  # the create lands; its answer was lost with the process
    del train.asc.hold[CREATE]
    store = open_any(str(tmp_path / "shared.db"))
    store.add_lock(
        Lock(
            pattern="appstore:*",
            reason="incident: App Review freeze",
            by=DAVE,
            at=datetime.now(UTC),
        )
    )
    await asyncio.sleep(max(0.0, LEASE + 0.5 - (time.monotonic() - killed)))
    second = await Bot.start(env, train.urls["slack"])
    try:
        await train.fakes.slack.wait_for(lambda s: len(train.threads()) == 1, within=30)
    finally:
        await second.stop()
    request = store.get(1)
    assert request is not None and request.outcome is not None
    assert train.writes() == [CREATE]  # neither the item nor the submit went out
    assert request.state is State.FAILED, request.outcome
    headline = request.outcome.headline
    assert "incident: App Review freeze" in headline
    [submission] = train.asc.train.submissions.values()
    assert f"review submission {submission.id} was created" in headline  # done before it
    events = [e.event for e in store.history(request_id=1, limit=100)]
    assert "held" in events and "recovered: failed" in events
    store.close()
