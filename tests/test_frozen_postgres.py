"""A PostgreSQL that stops answering (every process of the real server stopped with SIGSTOP,
as a hung host or a network that silently drops packets would leave it) does not stall
`promote-bot serve`: /healthz answers, /readyz says 503 with the reason, acks of work that
needs the database answer within Slack's 3 s saying so plainly, and once the server runs again
the bot recovers by itself. Real processes, real HTTP, the real server."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from bot.transports.slack.blocks import APPROVE
from tests.conftest import ALICE, BOB, Bot, Fakes, fresh_postgres_database, serve_env
from tests.test_health import samples, value, wait_ready

SLACK_ACK_SECONDS = 3.0


def _server_processes(socket_dir: str) -> list[int]:
    """The postmaster (its pid heads postmaster.pid in the data folder, which pgserver also
    uses for the socket) and every process it started."""
    postmaster = int((Path(socket_dir) / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = (Path("/proc") / entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(entry))
    return [postmaster, *children]


@contextlib.contextmanager
def frozen(socket_dir: str) -> Iterator[None]:
    """Every process of the server stopped (SIGSTOP): connections stay open, the kernel still
    takes what is sent, and nothing answers. SIGCONT on the way out, whatever happened."""
    pids = _server_processes(socket_dir)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


async def _timed(call):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    response = await call
    return response, time.monotonic() - started


async def test_a_frozen_postgresql_stalls_nothing_and_the_bot_recovers(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]], postgres: str
) -> None:
    f, urls = fakes
    env = serve_env(tmp_path, urls, PROMOTE_BOT_DB=fresh_postgres_database(postgres))
    bot = await Bot.start(env, urls["slack"])
    url = bot.sender.url.removesuffix("/slack/events")
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            await wait_ready(http, url)
            await bot.sender.command("znyx guardrails dev", ALICE)
            await f.slack.wait_for(lambda s: len(s.calls_to("chat.postMessage")) == 1, within=10)

            with frozen(postgres):
                # The first ack to need the database waits for it, within Slack's 3 s.
                response, took = await _timed(bot.sender.command("znyx guardrails staging", ALICE))
                assert response.status_code == 200 and took < SLACK_ACK_SECONDS, took
                answer = response.json()
                assert answer["response_type"] == "ephemeral"
                assert "can't use its database" in answer["text"]
                assert "is not answering" in answer["text"]

                # From then on nothing waits on it: liveness, readiness, metrics, acks.
                for _ in range(3):
                    healthz, took = await _timed(http.get(f"{url}/healthz"))
                    assert healthz.status_code == 200 and took < 0.5, took
                readyz, took = await _timed(http.get(f"{url}/readyz"))
                assert readyz.status_code == 503 and took < 0.5, took
                assert readyz.text.startswith("not ready: the store does not take a write: ")
                assert "is not answering" in readyz.text
                metrics, took = await _timed(http.get(f"{url}/metrics"))
                assert metrics.status_code == 200 and took < 0.5, took
                assert value(samples(metrics.text), "promote_bot_store_up") == 0
                response, took = await _timed(bot.sender.command("znyx guardrails dev", BOB))
                assert took < 0.5 and "is not answering" in response.json()["text"], took
                told = len(f.slack.calls_to("response_url"))
                response, took = await _timed(bot.sender.click(APPROVE, 1, BOB))
                assert response.status_code == 200 and took < SLACK_ACK_SECONDS, took
                await f.slack.wait_for(lambda s: len(s.calls_to("response_url")) > told)
                click_told = f.slack.calls_to("response_url")[-1].args["text"]
                assert "is not answering" in click_told

            # Running again: ready within a few seconds, and work goes on.
            started = time.monotonic()
            await wait_ready(http, url)
            assert time.monotonic() - started < 5
            response = await bot.sender.command("znyx guardrails staging", ALICE)
            assert response.status_code == 200 and response.text == ""
            await f.slack.wait_for(lambda s: len(s.calls_to("chat.postMessage")) == 2, within=10)
    finally:
        await bot.stop()
