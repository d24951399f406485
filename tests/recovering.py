"""What the recovery tests of the release train share: a real `promote-bot serve` killed with
SIGKILL while App Store Connect holds one of its writes, and the restart once its lease lapsed."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, DAVE, Bot, serve_env
from tests.test_interruptions_release_train import LEASE, Train


def train_env(tmp_path: Path, train: Train) -> dict[str, str]:
    """`serve`'s environment on the train's fakes, with a lease that lapses in a second."""
    return serve_env(
        tmp_path, train.urls, ASC_API_URL=train.urls["asc"], PROMOTE_BOT_LEASE_SECONDS=str(LEASE)
    )


async def killed_while_held(
    train: Train, env: dict[str, str], command: str, held: str, *, lands: bool
) -> float:
    """Start the bot, ask for `command` and approve it, and kill it with SIGKILL while App
    Store Connect holds its write `held` (e.g. "POST /v1/reviewSubmissions"); then that write
    `lands`, or never does. When it was killed (`time.monotonic`)."""
    gate = train.asc.hold[held] = asyncio.Event()
    bot = await Bot.start(env, train.urls["slack"])
    try:
        await request_held(bot, train, command, held)
    finally:
        await bot.stop(signal.SIGKILL)
    killed = time.monotonic()
    if lands:
        gate.set()
    del train.asc.hold[held]
    return killed


async def request_held(
    bot: Bot, train: Train, command: str | None, held: str, *, request: int = 1
) -> None:
    """On a running bot: ask for `command` (None: request `request` was asked for another
    way, a Roll back click), approve it, and wait until the write `held` reached App Store
    Connect."""
    if command is not None:
        await bot.sender.command(command, ALICE)
    await train.fakes.slack.wait_for(lambda s: len(train.posts()) == request, within=10)
    await bot.sender.click(APPROVE, request, DAVE)
    async with asyncio.timeout(10):
        await train.asc.reached.setdefault(held, asyncio.Event()).wait()


async def after_the_lease(killed: float) -> None:
    """Wait until the lease of a process killed at `killed` has lapsed."""
    await asyncio.sleep(max(0.0, LEASE + 0.5 - (time.monotonic() - killed)))


async def restarted(train: Train, env: dict[str, str], killed: float, *, threads: int = 1) -> None:
    """Once the killed process's lease lapsed: start the bot again and stop it once the
    recovery replied in the thread (`threads` thread replies in all)."""
    await after_the_lease(killed)
    bot = await Bot.start(env, train.urls["slack"])
    try:
        await train.fakes.slack.wait_for(lambda s: len(train.threads()) == threads, within=30)
    finally:
        await bot.stop()
