"""GET /healthz, /readyz and /metrics on PORT, in HTTP and Socket Mode, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bot.health import Health
from bot.metrics import Metrics
from bot.sandbox.slack import FakeSlack
from bot.sandbox.slack_requests import SlackSender
from bot.store import SqliteStore
from bot.transports.slack.blocks import APPROVE
from bot.web import WebServer
from tests.conftest import ALICE, BOB, CAROL, DAVE, Bot, Fakes, World, serve_env


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """The metrics page as {(sample name, labels): value}; every name starts with promote_bot_."""
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("promote_bot_"), family.name
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(page: dict[tuple[str, frozenset], float], name: str, **labels: str) -> float:
    return page.get((name, frozenset(labels.items())), 0.0)


async def wait_ready(http: httpx.AsyncClient, url: str) -> httpx.Response:
    async with asyncio.timeout(15):
        while (response := await http.get(f"{url}/readyz")).status_code != 200:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return response


async def test_http_mode_endpoints_and_metrics_as_a_promotion_runs(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    bot = await Bot.start(serve_env(tmp_path, urls), urls["slack"])
    url = bot.sender.url.removesuffix("/slack/events")
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/healthz")).text == "ok\n"
            assert (await wait_ready(http, url)).text == "ready\n"
            before = samples((await http.get(f"{url}/metrics")).text)
            assert value(before, "promote_bot_requests", state="pending") == 0
            assert value(before, "promote_bot_messages_waiting") == 0
            assert value(before, "promote_bot_store_up") == 1

            await bot.sender.command("znyx guardrails dev", ALICE)
            await f.slack.wait_for(lambda s: len(s.channel_posts()) == 1, within=10)
            page = samples((await http.get(f"{url}/metrics")).text)
            assert value(page, "promote_bot_commands_total", outcome="accepted") == 1
            assert value(page, "promote_bot_ack_seconds_count", kind="command") == 1
            assert value(page, "promote_bot_requests", state="pending") == 1
            assert value(page, "promote_bot_request_events_total", event="requested") == 1
            preview = {"provider": "znyx", "operation": "preview", "outcome": "ok"}
            assert value(page, "promote_bot_provider_calls_total", **preview) == 1

            await bot.sender.command("help", ALICE)  # answered in the ack
            await bot.sender.click(APPROVE, 1, BOB)
            await f.slack.wait_for(
                lambda s: any("thread_ts" in c.args for c in s.channel_posts()),
                within=15,
            )
            page = samples((await http.get(f"{url}/metrics")).text)
            assert value(page, "promote_bot_commands_total", outcome="answered") == 1
            assert value(page, "promote_bot_ack_seconds_count", kind="block_actions") == 1
            assert value(page, "promote_bot_requests", state="pending") == 0
            assert value(page, "promote_bot_requests", state="succeeded") == 1
            assert value(page, "promote_bot_requests_executing") == 0
            for event in ("approved", "executing", "succeeded"):
                assert value(page, "promote_bot_request_events_total", event=event) == 1
            execute = {"provider": "znyx", "operation": "execute", "outcome": "succeeded"}
            assert value(page, "promote_bot_provider_calls_total", **execute) == 1
            timed = {"provider": "znyx", "operation": "execute"}
            assert value(page, "promote_bot_provider_call_seconds_count", **timed) == 1
    finally:
        await bot.stop()


async def test_every_timed_job_of_serve_runs_and_is_in_the_metrics(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    _, urls = fakes
    bot = await Bot.start(serve_env(tmp_path, urls), urls["slack"])
    url = bot.sender.url.removesuffix("/slack/events")
    jobs = ("recover", "expire", "deliver", "inbox", "config")  # the first runs come at once
    try:
        async with httpx.AsyncClient() as http:
            await wait_ready(http, url)
            async with asyncio.timeout(15):
                while True:
                    page = samples((await http.get(f"{url}/metrics")).text)
                    ran = {
                        j
                        for j in jobs
                        if value(page, "promote_bot_job_runs_total", job=j, outcome="ok")
                    }
                    if ran == set(jobs):
                        break
                    await asyncio.sleep(0.1)
            for job in (*jobs, "leases", "groups"):  # those two run later: listed already
                assert ("promote_bot_job_running", frozenset({("job", job)})) in page
                assert value(page, "promote_bot_job_runs_total", job=job, outcome="failed") == 0
            assert value(page, "promote_bot_job_last_success_timestamp_seconds", job="deliver") > 0
    finally:
        await bot.stop()


async def test_readyz_is_503_while_shutting_down_and_healthz_still_answers(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    f.whop.promote_delay = 3.0  # a promotion in flight keeps the process draining
    env = serve_env(tmp_path, urls, PROMOTE_BOT_SHUTDOWN_SECONDS="20")
    bot = await Bot.start(env, urls["slack"])
    url = bot.sender.url.removesuffix("/slack/events")
    try:
        async with httpx.AsyncClient() as http:
            await wait_ready(http, url)
            await bot.sender.command(f"whop storefront {f.builds.ios_approved}", CAROL)
            await f.slack.wait_for(lambda s: len(s.channel_posts()) == 1, within=10)
            await bot.sender.click(APPROVE, 1, DAVE)
            async with asyncio.timeout(10):
                while not f.whop.promote_calls:  # noqa: ASYNC110 (the fake has no event)
                    await asyncio.sleep(0.02)
            page = samples((await http.get(f"{url}/metrics")).text)
            assert value(page, "promote_bot_requests_executing") == 1
            assert value(page, "promote_bot_requests", state="executing") == 1
            bot.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                while (ready := await http.get(f"{url}/readyz")).status_code == 200:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert ready.status_code == 503 and ready.text == "not ready: shutting down\n"
            assert (await http.get(f"{url}/healthz")).status_code == 200
            assert (await http.post(f"{url}/slack/events", content="x")).status_code == 503
        assert await asyncio.wait_for(bot.process.wait(), 20) == 0
    finally:
        await bot.stop()


async def test_socket_mode_serves_the_endpoints_on_port(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    env = serve_env(tmp_path, urls, SLACK_APP_TOKEN=FakeSlack.app_token)
    del env["SLACK_SIGNING_SECRET"]  # not needed in Socket Mode
    bot = await Bot.start(env, urls["slack"])
    url = bot.sender.url.removesuffix("/slack/events")
    try:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/healthz")).status_code == 200
            await wait_ready(http, url)  # once the websocket is connected
            assert len(f.slack.sockets) == 1
            assert f.slack.calls_to("apps.connections.open")[0].token == FakeSlack.app_token
            metrics = await http.get(f"{url}/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            assert value(samples(metrics.text), "promote_bot_store_up") == 1
            assert (await http.post(f"{url}/slack/events")).status_code in (404, 405)
            bot.process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(bot.process.wait(), 15) == 0
    finally:
        await bot.stop()


async def test_readyz_names_a_store_that_takes_no_write(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bot.db")
    metrics = Metrics()
    metrics.watch_store(store, "this-process")
    health = Health(store, metrics)
    async with WebServer(health.app()) as server, httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/readyz")).status_code == 200
        store.close()  # every later write fails, as on a disk that went away
        response = await http.get(f"{server.url}/readyz")
        assert response.status_code == 503
        assert re.match(r"not ready: the store does not take a write: .+", response.text)
        assert (await http.get(f"{server.url}/healthz")).status_code == 200
        page = samples((await http.get(f"{server.url}/metrics")).text)
        assert value(page, "promote_bot_store_up") == 0  # nothing to report, but it answers


def test_two_bots_in_one_process_have_their_own_registries() -> None:
    one, two = Metrics(), Metrics()
    one.commands.labels(outcome="accepted").inc()
    assert value(samples(one.render().decode()), "promote_bot_commands_total", outcome="accepted")
    page = samples(two.render().decode())
    assert value(page, "promote_bot_commands_total", outcome="accepted") == 0


def _series(page: bytes) -> set[tuple[str, frozenset]]:
    return set(samples(page.decode()))


async def test_unsigned_requests_add_no_series_and_count_once_as_rejected(world: World) -> None:
    """15,000 unsigned POSTs with made-up payload types once made /metrics 14 MB: labels came
    from the body before Bolt checked the signature. Now nothing about a request is read for
    the metrics until its signature verified; the rest count under one label."""
    metrics = world.bot.metrics
    before = _series(metrics.render())
    sender = world.sender
    signed_elsewhere = SlackSender(sender.url.removesuffix("/slack/events"), "not-the-secret", "")

    def unsigned(i: int) -> tuple[str, dict[str, str]]:
        json_headers = {"Content-Type": "application/json"}
        kinds = [
            (json.dumps({"type": f"made_up_{i}", "command": "/promote"}), json_headers),
            (json.dumps({"type": f"event_{i}", "event": {"type": "x"}}), json_headers),
            (sender.command_body(f"znyx guardrails staging {i}", ALICE), {}),
            (urlencode({"payload": json.dumps({"type": f"block_{i}"})}), {}),
        ]
        body, extra = kinds[i % len(kinds)]
        if i % 3 == 0:  # signed, but with another app's secret
            headers = signed_elsewhere.signed_headers(body)
        elif i % 3 == 1:  # signed with ours, but too long ago (a replay)
            headers = sender.signed_headers(body, timestamp=int(time.time()) - 3600)
        else:  # no signature at all
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return body, {**headers, **extra}

    n = 2000
    limit = asyncio.Semaphore(50)
    await signed_elsewhere.aclose()  # only its signatures are used

    async def post(http: aiohttp.ClientSession, i: int) -> int:
        body, headers = unsigned(i)
        async with limit, http.post(sender.url, data=body, headers=headers) as response:
            return response.status

    async with aiohttp.ClientSession() as http:  # lighter than httpx for this many requests
        statuses = await asyncio.gather(*(post(http, i) for i in range(n)))
    assert set(statuses) == {401}
    page = metrics.render()
    assert _series(page) == before  # not one series more
    found = samples(page.decode())
    assert value(found, "promote_bot_ack_seconds_count", kind="rejected") == n
    for outcome in ("accepted", "answered", "error"):
        assert value(found, "promote_bot_commands_total", outcome=outcome) == 0
    assert world.bot.store.inbox_undone() == 0 and world.posted() == []

    response = await sender.command("help", ALICE)  # a signed one is counted as before
    assert response.status_code == 200
    found = samples(metrics.render().decode())
    assert value(found, "promote_bot_commands_total", outcome="answered") == 1
    assert value(found, "promote_bot_ack_seconds_count", kind="command") == 1
    assert value(found, "promote_bot_ack_seconds_count", kind="rejected") == n
