"""A recovery holds the lease it took over, renewed while it reads and carries on (as
`execute` does), so a second replica never takes the request over from a recovery that is
merely slow (real `promote-bot serve`, two replicas on one database, the first killed with
SIGKILL); a recovery cut off by a shutdown leaves its lease until a write it sent can no longer
land; and one whose read ends after the request was decided corrects it to the provider's
success."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.execution import WRITE_SETTLES, promoted_by
from bot.core.model import Outcome, State
from bot.core.workflow import RECOVER_SECONDS
from bot.store import open_any
from tests.conftest import Bot, World
from tests.recovering import after_the_lease, killed_while_held, train_env
from tests.test_interruptions_release_train import (  # noqa: F401
    CREATE,
    ITEM,
    SUBMIT,
    Train,
    train,
)


async def test_a_slow_recovery_keeps_its_lease_and_is_decided_once(
    tmp_path: Path,
    train: Train,  # noqa: F811
) -> None:
    env = train_env(tmp_path, train)
    killed = await killed_while_held(train, env, "appstore submit ios 2.4.0", CREATE, lands=True)
    slow = train.asc.hold[ITEM] = asyncio.Event()  # App Store Connect is slow on the item
    await after_the_lease(killed)
    a = await Bot.start(env, train.urls["slack"])
    b = await Bot.start(env, train.urls["slack"])
    store = open_any(str(tmp_path / "shared.db"))
    try:
        async with asyncio.timeout(15):  # one recovery sends the item
            await train.asc.reached.setdefault(ITEM, asyncio.Event()).wait()
        # Many leases long, and past the other replica's next recover job.
        await asyncio.sleep(RECOVER_SECONDS + 1)
        request = store.get(1)
        assert request is not None
        assert request.state is State.EXECUTING  # nobody decided it from under the recovery
        assert train.threads() == []
        slow.set()  # the slow write lands (well within the 20 s HTTP timeout)
        await train.fakes.slack.wait_for(lambda s: len(train.threads()) == 1, within=10)
        await asyncio.sleep(1)
    finally:
        await a.stop()
        await b.stop()
    request = store.get(1)
    assert request is not None and request.outcome is not None
    assert request.state is State.SUCCEEDED, request.outcome
    assert train.writes() == [CREATE, ITEM, SUBMIT]  # each once
    assert len(train.threads()) == 1
    events = [e.event for e in store.history(request_id=1, limit=100)]
    assert events.count("recovered: succeeded") == 1
    assert not any("late outcome" in e or "lease lost" in e for e in events)
    store.close()


async def test_a_recovery_whose_read_ends_after_another_decided_corrects_to_its_success(
    world: World,
) -> None:
    """The provider's own answer is the truth: a recovery that reads the change after the
    request was decided meanwhile (a replica that took it over, a timeout's `unknown`)
    corrects it to `succeeded`, as a late `execute` does, audited; never drops it."""
    store = world.bot.store
    await world.requested("znyx guardrails dev")
    long_ago = world.bot.workflow.clock() - timedelta(hours=1)
    assert store.transition(1, (State.PENDING,), State.EXECUTING, at=long_ago)  # a dead process
    request = store.get(1)
    assert request is not None
    world.znyx.publish(
        "proj-guardrails", "staging", "sha256:x", by=promoted_by(request, store.installation)
    )
    world.znyx.list_gate = asyncio.Event()  # the recovery's read is slow
    recovering = asyncio.create_task(world.bot.workflow.recover())
    async with asyncio.timeout(5):
        await world.znyx.list_waiting.wait()
    lost = Outcome(state="unknown", headline="decided elsewhere meanwhile")
    assert store.transition(1, (State.EXECUTING,), State.UNKNOWN, at=long_ago, outcome=lost)
    world.znyx.list_gate.set()
    assert await recovering == 1
    decided = store.get(1)
    assert decided is not None and decided.outcome is not None
    assert decided.state is State.SUCCEEDED
    assert "is active in staging" in decided.outcome.headline
    events = [e.event for e in store.history(request_id=1, limit=100)]
    assert "recovered: corrected: succeeded" in events


async def test_a_recovery_cut_off_by_a_shutdown_leaves_its_lease_until_its_write_settles(
    world: World,
) -> None:
    """A recovery cancelled (a shutdown past its deadline) may have a step on its way: its
    lease is extended by WRITE_SETTLES, so no other process reads the request meanwhile and
    takes that write for "not done"."""
    store = world.bot.store
    start = world.bot.workflow.clock()
    world.clock.at = start
    await world.requested("znyx guardrails dev")
    assert store.transition(1, (State.PENDING,), State.EXECUTING, at=start - timedelta(hours=1))
    world.znyx.list_gate = asyncio.Event()  # the recovery waits on Znyx
    recovering = asyncio.create_task(world.bot.workflow.recover())
    async with asyncio.timeout(5):
        await world.znyx.list_waiting.wait()
    world.clock.at = start + timedelta(seconds=20)  # it took over at `start`, 20 s ago
    recovering.cancel()
    with pytest.raises(asyncio.CancelledError):
        await recovering
    world.znyx.list_gate.set()
    cut_off = world.clock.at
    lease = world.bot.workflow.ctx.lease
    assert store.lapsed(cut_off + WRITE_SETTLES - timedelta(seconds=1), unleased_before=start) == []
    assert store.lapsed(start + lease + timedelta(seconds=1), unleased_before=start) == []
    [lapsed] = store.lapsed(cut_off + WRITE_SETTLES, unleased_before=start)
    assert lapsed.id == 1 and lapsed.state is State.EXECUTING
