"""A lock set while a promotion is already executing (during the provider reads before its
write) still stops it right before the write: the journal's guard (bot/core/steps.py) finds
the hold, nothing is sent, and the request ends `failed` saying which hold. Through real HTTP
with the fakes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from bot.core.model import State
from bot.core.steps import Held, Steps
from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, DAVE, World

PROJECT = "proj-guardrails"


async def _approve_and_hold_the_reads(world: World, text: str, *approvers: str) -> asyncio.Event:
    """Ask, approve, and hold Znyx's reads open from the last approval on: the promotion is
    executing, reading before its write."""
    await world.requested(text, ALICE)
    for n, user in enumerate(approvers[:-1], start=1):
        await world.sender.click(APPROVE, 1, user)
        await world.slack.wait_for(lambda s, n=n: len(world.told()) == n)  # "needs 1 more"
    world.znyx.list_gate = gate = asyncio.Event()
    reads = len(world.znyx.calls)
    await world.sender.click(APPROVE, 1, approvers[-1])
    async with asyncio.timeout(5):
        while len(world.znyx.calls) == reads:  # noqa: ASYNC110 (the read before the write)
            await asyncio.sleep(0.01)
    assert world.bot.store.get(1).state is State.EXECUTING  # type: ignore[union-attr]
    return gate


async def test_a_lock_set_during_the_reads_before_the_write_stops_it(world: World) -> None:
    gate = await _approve_and_hold_the_reads(world, "znyx guardrails staging", BOB)
    told = await world.answer("lock znyx:*:prod incident 4521", DAVE)
    assert told.startswith("🔒 Locked `znyx:*:prod`: incident 4521.")
    gate.set()

    reply = await world.finished()
    assert f"Failed: not sent: 🔒 `znyx:*:prod` is locked by {DAVE} since " in reply
    assert (
        ": incident 4521, while it was starting; request it again once nothing holds it"
    ) in reply
    assert world.znyx.promote_calls == []  # the pre-write reads were made; the write was not
    assert world.bot.store.get(1).state is State.FAILED  # type: ignore[union-attr]
    assert world.bot.store.steps(1) == []  # nothing was marked sent either


async def test_an_emergency_passes_a_lock_set_during_its_reads(world: World) -> None:
    gate = await _approve_and_hold_the_reads(
        world, "znyx guardrails staging --emergency pager 4521", BOB, DAVE
    )
    told = await world.answer("lock znyx:*:prod incident 4521", DAVE)
    assert told.startswith("🔒 Locked")
    gate.set()
    reply = await world.finished()
    assert "guardrails bundle v2 is active in prod" in reply
    assert len(world.znyx.promote_calls) == 1


async def test_the_guard_runs_only_before_the_first_write() -> None:
    """A multi-step action already under way is not cut in two by a hold (pure)."""
    holds: list[str] = []
    steps = Steps.in_memory(lambda: datetime(2026, 12, 1, tzinfo=UTC))
    steps.guard = lambda: holds[0] if holds else None
    sent: list[str] = []

    def send(name: str) -> Callable[[], Awaitable[dict[str, str]]]:
        async def write() -> dict[str, str]:
            sent.append(name)
            return {"id": name}

        return write

    await steps.write("create", send("create"), provider="App Store Connect")
    holds.append("🔒 locked")
    await steps.write("add", send("add"), provider="App Store Connect")
    assert sent == ["create", "add"]

    fresh = Steps.in_memory()
    fresh.guard = lambda: "🔒 locked"
    with pytest.raises(Held, match="not sent: 🔒 locked"):
        await fresh.write("create", send("create"), provider="Znyx")
    assert sent == ["create", "add"] and not fresh.started
