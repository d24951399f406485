"""A command or a Roll back click whose process was killed before it was marked done is done
again by another process (bot/transports/slack/inbox.py): it carries on from the request it
made and asks for nothing again, whatever became of that request meanwhile. The inbox rows a
killed process leaves are made here with SQL; the work is then done again as the start-up's
recovery does it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE, ROLLBACK
from tests.conftest import ALICE, BOB, DAVE, World


def _left_undone(db: Path, kind: str) -> list[str]:
    """Make the inbox rows of `kind` look as a killed process leaves them: not done, nobody
    holding them; their keys."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        rows = conn.execute("SELECT key, payload FROM inbox WHERE kind = ?", [kind]).fetchall()
        keys = [
            key
            for key, payload in rows
            if kind != "command" or "znyx" in json.loads(payload)["text"]
        ]
        for key in keys:
            conn.execute(
                "UPDATE inbox SET done_at = NULL, owner = NULL, lease_until = NULL WHERE key = ?",
                [key],
            )
        return keys
    finally:
        conn.close()


async def _ended(world: World, request_id: int, state: State) -> None:
    async with asyncio.timeout(10):
        while world.bot.store.get(request_id).state is not state:  # type: ignore[union-attr]  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_command_and_a_roll_back_done_again_ask_for_nothing_again(
    world: World, world_db: Path
) -> None:
    store = world.bot.store
    await world.requested("znyx guardrails staging", ALICE)
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    await _ended(world, 1, State.SUCCEEDED)
    posted = len(world.posted())
    await world.sender.click(ROLLBACK, 1, DAVE)
    await world.slack.wait_for(lambda s: len(world.posted()) == posted + 1)
    await world.answer("cancel 2 changed my mind", DAVE)
    await _ended(world, 2, State.CANCELLED)
    posted, writes = len(world.posted()), len(world.znyx.writes)
    asked = [e for e in store.history(limit=100) if e.event == "requested"]
    assert len(asked) == 2

    [command] = _left_undone(world_db, "command")
    [click] = _left_undone(world_db, ROLLBACK)
    inbox = world.bot.inbox
    for key in (command, click):
        await inbox.work_on(key)

    assert [r.id for r in store.in_states(list(State))] == [1, 2]  # nothing asked again
    assert store.get(2).state is State.CANCELLED  # type: ignore[union-attr]
    assert [e for e in store.history(limit=100) if e.event == "requested"] == asked
    assert len(world.posted()) == posted and len(world.znyx.writes) == writes
    await world.sender.command("rollback 1", DAVE)  # a new command is a new request
    await world.slack.wait_for(lambda s: len(world.posted()) == posted + 1)
    assert [r.id for r in store.in_states(list(State))] == [1, 2, 3]
