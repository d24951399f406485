"""The database failing in the middle of a promotion (the provider's answer can't be recorded)
is the database's trouble, not a bug of the bot: one ERROR line naming the database, no
traceback; the request stays executing, and once its lease lapses a recovery reads what
happened from the provider, with a headline as true for this as for a stopped process."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, World


async def test_a_database_failing_mid_promotion_is_one_line_and_read_again(
    world: World, world_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    world.znyx.promote_gate = gate = asyncio.Event()
    await world.requested("znyx guardrails dev", ALICE)
    await world.sender.click(APPROVE, 1, BOB)
    async with asyncio.timeout(10):
        await world.znyx.promote_started.wait()  # the step is marked sent; Znyx is working
    # Another process holds the database's write lock: what Znyx answers can't be recorded.
    blocker = sqlite3.connect(world_db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        gate.set()
        async with asyncio.timeout(30):
            while not any("cut off" in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        blocker.execute("COMMIT")
        blocker.close()

    [line] = [r for r in caplog.records if "was cut off" in r.getMessage()]
    assert line.levelno == logging.ERROR and line.exc_info is None
    assert "promotion #1 was cut off: the database failed (" in line.getMessage()
    assert str(world_db) in line.getMessage()  # which database, as the store names it
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("bot.core")]
    store = world.bot.store
    assert store.get(1).state is State.EXECUTING  # type: ignore[union-attr]  # nothing guessed
    await world.slack.wait_for(lambda s: any("database" in t for t in world.told()))

    workflow = world.bot.workflow
    real = workflow.clock
    workflow.clock = lambda: real() + timedelta(hours=1)  # its lease has lapsed
    assert await workflow.recover() == 1
    request = store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert request.outcome is not None
    assert request.outcome.headline.endswith("(read again after the promotion was cut off)")
    assert len(world.znyx.promote_calls) == 1  # read, never sent again
