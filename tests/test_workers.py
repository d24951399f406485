"""Work after an ack runs in a bounded pool: a burst gets every ack at once, and its release
messages as workers free up; at most PROMOTE_BOT_WORKERS pieces of work run at once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable

import pytest

from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, DAVE, World

# Distinct things, so each command opens its own request and posts its own release message.
COMMANDS = [
    "znyx guardrails dev",
    "znyx guardrails staging",
    "znyx twostage staging",
    "appstore ios 2.4.0 153",
    "appstore expire ios 155",
]


@pytest.fixture
def two_workers(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("PROMOTE_BOT_WORKERS", "2")
    return 2


def _list_calls(world: World) -> int:
    return sum(1 for c in world.znyx.calls if c.method == "GET")


async def test_a_burst_gets_every_ack_then_every_release_message(world: World) -> None:
    responses = await asyncio.gather(*(world.sender.command(t, DAVE) for t in COMMANDS))
    assert [r.status_code for r in responses] == [200] * len(COMMANDS)
    assert all(r.text == "" for r in responses)  # acked empty: the work comes after
    await world.slack.wait_for(lambda s: len(world.posted()) == len(COMMANDS), within=30)
    async with asyncio.timeout(5):  # each item is marked done just after its message
        while _undone(world):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def _undone(world: World) -> int:
    with sqlite3.connect(world.bot.settings.promote_bot_db) as db:
        return db.execute("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL").fetchone()[0]


async def _znyx_listed(world: World, calls: int) -> None:
    """Wait for `calls` bundle-list calls at the fake Znyx (no Slack call happens meanwhile,
    so the fake Slack's wait_for would never look again)."""
    async with asyncio.timeout(10):
        while _list_calls(world) < calls:  # noqa: ASYNC110 (the fake has no event for it)
            await asyncio.sleep(0.01)


async def test_no_more_than_the_configured_workers_run_at_once(
    two_workers: int, world: World
) -> None:
    assert world.bot.pool.limit == two_workers
    world.znyx.list_gate = gate = asyncio.Event()  # every Znyx preview waits here
    texts = ["znyx guardrails dev", "znyx guardrails staging", "znyx twostage staging"] * 2
    responses = await asyncio.gather(*(world.sender.command(t, ALICE) for t in texts))
    # Every ack came back while the work after them is stuck on the provider.
    assert [r.status_code for r in responses] == [200] * len(texts)
    reads = 2 * two_workers  # each preview reads both environments at once
    await _znyx_listed(world, reads)
    await asyncio.sleep(0.3)  # room for a wrongly admitted third piece of work to show itself
    assert _list_calls(world) == reads
    assert world.bot.workflow.busy == two_workers
    assert world.bot.pool.queued == len(texts) - two_workers

    gate.set()
    # Three distinct things: three release messages; the repeats are told #N is open.
    await world.slack.wait_for(lambda s: len(world.posted()) == 3, within=30)
    await world.slack.wait_for(lambda s: len(world.told()) == 3, within=30)
    assert all("already open" in t for t in world.told())
    assert world.bot.pool.peak == two_workers
    async with asyncio.timeout(15):
        while world.bot.workflow.busy:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_redelivered_click_is_handled_once(world: World) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    [message] = world.slack.release_messages(1)
    body = world.sender.click_body(APPROVE, "1", BOB, ts=message["ts"])
    first, again = await asyncio.gather(world.sender.post(body), world.sender.post(body))
    assert first.status_code == again.status_code == 200  # Slack's retry is acked too
    await world.slack.wait_for(lambda s: len(world.thread()) == 1, within=10)
    await asyncio.sleep(0.2)  # room for a second (wrong) promotion to show itself
    assert len(world.znyx.promote_calls) == 1
    assert len(world.thread()) == 1


async def test_a_graceful_stop_waits_for_queued_work(two_workers: int, world: World) -> None:
    world.znyx.list_gate = gate = asyncio.Event()
    texts = ["znyx guardrails dev", "znyx guardrails staging", "znyx twostage staging"]
    for text in texts:
        assert (await world.sender.command(text, ALICE)).status_code == 200
    await _znyx_listed(world, 2 * two_workers)  # both environments each
    assert world.bot.pool.queued == 1
    drained = asyncio.create_task(world.bot.workflow.drain(10))
    await asyncio.sleep(0.1)
    assert not drained.done()  # two under way, one waiting its turn
    gate.set()
    assert await drained
    assert len(world.posted()) == 3 and world.bot.pool.queued == 0


async def test_no_work_starts_while_a_payload_is_being_answered(world: World) -> None:
    """Acks first: while another payload is being answered (held open in a Bolt middleware
    here, as a slow one would be), an acked command's work waits; it starts once that payload
    has been answered."""
    held, release = asyncio.Event(), asyncio.Event()

    async def hold(body: dict, next: Callable[[], Awaitable[None]]) -> None:
        if body.get("text") == "help":
            held.set()
            await release.wait()
        await next()

    world.bot.app.use(hold)
    slow = asyncio.create_task(world.sender.command("help", DAVE))
    await held.wait()
    pool = world.bot.pool
    response = await world.sender.command("znyx guardrails staging", ALICE)
    assert response.status_code == 200 and response.text == ""
    await asyncio.sleep(0.3)
    assert _list_calls(world) == 0 and world.posted() == []  # not even the preview read
    assert pool.queued == 1 and pool.deferred >= 1
    release.set()
    assert (await slow).status_code == 200
    await world.slack.wait_for(lambda s: len(world.posted()) == 1, within=10)


async def test_a_steady_stream_of_payloads_delays_work_but_never_starves_it(
    world: World,
) -> None:
    """Work that has waited `patience` seconds for a quiet moment starts anyway."""
    pool = world.bot.pool
    pool.patience = 0.5
    with pool.answering():  # never quiet while the command's work waits
        sent = asyncio.get_running_loop().time()
        assert (await world.sender.command("znyx guardrails staging", ALICE)).status_code == 200
        await world.slack.wait_for(lambda s: len(world.posted()) == 1, within=10)
        waited = asyncio.get_running_loop().time() - sent
    assert waited >= pool.patience
