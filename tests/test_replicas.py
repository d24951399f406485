"""Real `promote-bot serve` processes sharing one SQLite file: exactly once across replicas,
and recovery after a kill -9 in the middle of a provider call."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.model import State
from bot.sandbox.slack import FakeSlack
from bot.sandbox.slack_requests import SlackSender
from bot.sandbox.whop import FakeWhop
from bot.sandbox.znyx import FakeZnyx
from bot.store import SqliteStore
from bot.transports.slack.blocks import APPROVE
from bot.web import WebServer, listening_port
from tests.conftest import (
    ALICE,
    ASC_ISSUER,
    ASC_KID,
    ASC_PEM,
    CAROL,
    CONFIG,
    DAVE,
    SIGNING_SECRET,
    WHOP_KEY,
    ZNYX_TOKEN,
    seed_whop,
    seed_znyx,
    spawn_serve,
)

ROOT = Path(__file__).resolve().parents[1]
APPROVERS = [f"U0APPROVER{i:02d}" for i in range(50)]


class Fakes:
    def __init__(self) -> None:
        self.slack, self.znyx, self.whop = FakeSlack(), FakeZnyx(), FakeWhop()
        seed_znyx(self.znyx)
        self.builds = seed_whop(self.whop)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[Fakes, dict[str, str]]]:
    f = Fakes()
    async with (
        WebServer(f.slack.app()) as slack,
        WebServer(f.znyx.app()) as znyx,
        WebServer(f.whop.app()) as whop,
    ):
        urls = {"slack": slack.url, "znyx": znyx.url, "whop": whop.url}
        yield f, urls


def _env(tmp_path: Path, urls: dict[str, str], **extra: str) -> dict[str, str]:
    config = tmp_path / "promote-bot.toml"
    members = "\n".join(f'{u} = ["policy-engineer"]' for u in APPROVERS)
    config.write_text(CONFIG.replace("[znyx]", members + "\n\n[znyx]"))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "ZNYX_", "WHOP_", "ASC_", "PROMOTE_BOT"))
    }
    env.update(
        PYTHONPATH=str(ROOT),
        SLACK_BOT_TOKEN=FakeSlack.token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=f"{urls['slack']}/api/",
        ZNYX_API_URL=urls["znyx"],
        ZNYX_TOKEN=ZNYX_TOKEN,
        WHOP_API_URL=urls["whop"],
        WHOP_API_KEY=WHOP_KEY,
        ASC_API_URL="http://127.0.0.1:9",  # never called in these tests
        ASC_ISSUER_ID=ASC_ISSUER,
        ASC_KEY_ID=ASC_KID,
        ASC_PRIVATE_KEY=ASC_PEM,
        PROMOTE_BOT_CONFIG=str(config),
        PROMOTE_BOT_DB=str(tmp_path / "shared.db"),
        PORT="0",
        **extra,
    )
    return env


class Bot:
    """One `promote-bot serve` process and a sender for it."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, slack_url: str) -> None:
        self.process = process
        self.sender = SlackSender(f"http://127.0.0.1:{port}", SIGNING_SECRET, slack_url)

    @classmethod
    async def start(cls, env: dict[str, str], slack_url: str) -> Bot:
        process = await spawn_serve(env)
        assert process.stdout is not None
        async with asyncio.timeout(30):
            port = await listening_port(process.stdout)
        asyncio.get_running_loop().create_task(_drain(process))
        return cls(process, port, slack_url)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        await self.sender.aclose()
        if self.process.returncode is None:
            self.process.send_signal(sig)
            await asyncio.wait_for(self.process.wait(), 15)


async def _drain(process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    while await process.stdout.readline():
        pass


async def test_two_processes_on_one_database_promote_once(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    env = _env(tmp_path, urls)
    one, two = await Bot.start(env, urls["slack"]), await Bot.start(env, urls["slack"])
    try:
        await one.sender.command("znyx guardrails dev", ALICE)
        await f.slack.wait_for(lambda s: len(s.calls_to("chat.postMessage")) == 1, within=10)
        clicks = [
            (one if i % 2 else two).sender.click(APPROVE, 1, user)
            for i, user in enumerate(APPROVERS)
        ]
        assert {r.status_code for r in await asyncio.gather(*clicks)} == {200}
        await f.slack.wait_for(
            lambda s: any("thread_ts" in c.args for c in s.calls_to("chat.postMessage")), within=15
        )
        await asyncio.sleep(0.5)
        assert len(f.znyx.promote_calls) == 1
        threads = [c for c in f.slack.calls_to("chat.postMessage") if "thread_ts" in c.args]
        assert len(threads) == 1
    finally:
        await one.stop()
        await two.stop()
    store = SqliteStore(tmp_path / "shared.db")
    request = store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert [e.event for e in store.history(request_id=1)].count("executing") == 1


async def test_kill_9_during_the_provider_call_then_restart(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    f.whop.promote_delay = 60.0  # Whop holds the promote call open
    env = _env(tmp_path, urls, PROMOTE_BOT_LEASE_SECONDS="1")
    first = await Bot.start(env, urls["slack"])
    try:
        await first.sender.command(f"whop storefront {f.builds.ios_approved}", CAROL)
        await f.slack.wait_for(lambda s: len(s.calls_to("chat.postMessage")) == 1, within=10)
        await first.sender.click(APPROVE, 1, DAVE)
        async with asyncio.timeout(10):
            while not f.whop.promote_calls:  # noqa: ASYNC110 (the fake has no event to await)
                await asyncio.sleep(0.02)
    finally:
        await first.stop(signal.SIGKILL)
    store = SqliteStore(tmp_path / "shared.db")
    assert store.get(1).state is State.EXECUTING  # type: ignore[union-attr]
    await asyncio.sleep(1.1)  # past the lease: nobody is executing it any more

    second = await Bot.start(env, urls["slack"])
    try:
        await f.slack.wait_for(
            lambda s: any("thread_ts" in c.args for c in s.calls_to("chat.postMessage")), within=15
        )
    finally:
        await second.stop()
    request = store.get(1)
    assert request is not None and request.state is State.FAILED
    assert (
        request.outcome is not None
        and "read after the bot stopped while promoting" in request.outcome.headline
    )
    assert len(f.whop.promote_calls) == 1  # never called again
    [thread] = [c.args for c in f.slack.calls_to("chat.postMessage") if "thread_ts" in c.args]
    assert "not done: the production ios build of storefront is" in str(thread["blocks"])
    final = f.slack.calls_to("chat.update")[-1].args
    assert not [b for b in final["blocks"] if b["type"] == "actions"]
