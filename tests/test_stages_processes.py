"""Waiting and auto-promotion across real `promote-bot serve` processes: two replicas on one
database (a SQLite file, and a real PostgreSQL database) open an auto-promotion once, whether
the bot promoted the source or a Znyx webhook told both of a change made outside it, and a
request waiting for its soak survives a kill -9 and runs once, at its time, after the restart.
Real time here: soaks of a few seconds."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

from bot.core.model import BOT_ACTOR, State
from bot.store import open_any
from bot.transports.slack.blocks import APPROVE
from tests.conftest import (
    ALICE,
    APPROVERS,
    CONFIG,
    DAVE,
    ZNYX_WEBHOOK_SECRET,
    Bot,
    Fakes,
    serve_env,
)

GUARDRAILS = "proj-guardrails"


def _config(tmp_path: Path, policies: str) -> None:
    """The config `serve_env` wrote, with `policies` added."""
    members = "\n".join(f'{u} = ["policy-engineer"]' for u in APPROVERS)
    (tmp_path / "promote-bot.toml").write_text(
        CONFIG.replace("[znyx]", members + "\n\n[znyx]") + policies
    )


def _posts(f: Fakes, channel: str | None = None) -> list[dict]:
    return [
        c.args
        for c in f.slack.channel_posts()
        if "thread_ts" not in c.args and channel in (None, c.args.get("channel"))
    ]


def _threads(f: Fakes) -> list[dict]:
    return [c.args for c in f.slack.channel_posts() if "thread_ts" in c.args]


async def _until(condition: Callable[[], object], within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 (a store and a fake: nothing to wait on)
            await asyncio.sleep(0.05)


def _asked_once(f: Fakes, db: str, request_id: int, sources: list[str]) -> None:
    """The bot asked for staging → prod once (request `request_id`, the last), posted it in
    its channel once, and it made prod run what staging runs; Znyx was asked to promote from
    `sources`, in order."""
    assert len(_posts(f, "C0AUTO")) == 1
    assert [c.path.rsplit("/", 2)[-2] for c in f.znyx.promote_calls] == sources
    store = open_any(db)
    auto = store.get(request_id)
    assert auto is not None and auto.requester == BOT_ACTOR and auto.state is State.SUCCEEDED
    assert store.get(request_id + 1) is None
    prod, staging = f.znyx.active(GUARDRAILS, "prod"), f.znyx.active(GUARDRAILS, "staging")
    assert prod is not None and staging is not None and prod.policy_hash == staging.policy_hash
    assert [e.event for e in store.history(target="znyx:guardrails:prod")].count("requested") == 1


async def test_two_replicas_open_an_auto_promotion_once(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]], shared_db: str
) -> None:
    f, urls = fakes
    env = serve_env(tmp_path, urls, PROMOTE_BOT_DB=shared_db)
    _config(
        tmp_path,
        '[policies."znyx:guardrails:prod"]\napprovals = 0\nauto = true\nsoak = "3s"\n'
        'channel = "C0AUTO"\n',
    )
    one, two = await Bot.start(env, urls["slack"]), await Bot.start(env, urls["slack"])
    try:
        await one.sender.command("znyx guardrails dev", ALICE)  # dev → staging, by people
        await f.slack.wait_for(lambda s: len(_posts(f)) == 1, within=10)
        await two.sender.click(APPROVE, 1, DAVE)
        await f.slack.wait_for(lambda s: len(_threads(f)) == 1, within=15)
        promoted = time.monotonic()
        # Both replicas' `due` jobs find the plan due 3 s later: one of them asks, once.
        await f.slack.wait_for(lambda s: len(_threads(f)) == 2, within=20)
        assert time.monotonic() - promoted >= 2.0  # it soaked first (Znyx stamps in seconds)
        await asyncio.sleep(2.0)  # time for a second one to appear, if it ever would
    finally:
        await one.stop()
        await two.stop()
    _asked_once(f, shared_db, 2, ["dev", "staging"])


async def test_two_replicas_told_of_a_change_outside_the_bot_open_its_follower_once(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]], shared_db: str
) -> None:
    f, urls = fakes
    env = serve_env(
        tmp_path, urls, PROMOTE_BOT_DB=shared_db, ZNYX_WEBHOOK_SECRET=ZNYX_WEBHOOK_SECRET
    )
    _config(
        tmp_path,
        '[policies."znyx:guardrails:prod"]\napprovals = 0\nauto = true\nsoak = "3s"\n'
        'channel = "C0AUTO"\n',
    )
    one, two = await Bot.start(env, urls["slack"]), await Bot.start(env, urls["slack"])
    # Znyx tells both (two registrations, as two bots on one database would have).
    f.znyx.webhooks += [(f"{b.url}/webhooks/znyx", ZNYX_WEBHOOK_SECRET) for b in (one, two)]
    try:
        new = f.znyx.ui_promote(GUARDRAILS, "dev", by="ui:carol")  # staging, outside the bot
        assert not isinstance(new, str)
        changed = time.monotonic()
        await f.znyx.delivered()
        assert sorted(f.znyx.deliveries) == [200, 202]  # one takes it; one has seen it before
        # Both replicas' `due` jobs find the plan due 3 s later: one of them asks, once.
        await _until(lambda: len(f.znyx.promote_calls) == 1, within=20)
        assert time.monotonic() - changed >= 2.0  # it soaked first (Znyx stamps in seconds)
        await asyncio.sleep(2.0)  # time for a second one to appear, if it ever would
    finally:
        await one.stop()
        await two.stop()
    _asked_once(f, shared_db, 1, ["staging"])


async def test_kill_9_while_a_request_waits_then_restart_it_runs_once_at_its_time(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    env = serve_env(tmp_path, urls)
    _config(tmp_path, '[policies."znyx:guardrails:prod"]\nsoak = "5s"\n')
    f.znyx.publish(GUARDRAILS, "staging", "sha256:" + "7" * 64)  # live in staging from now
    published = time.time()
    first = await Bot.start(env, urls["slack"])
    store = open_any(str(tmp_path / "shared.db"))
    try:
        await first.sender.command("znyx guardrails staging", ALICE)
        await f.slack.wait_for(lambda s: len(_posts(f)) == 1, within=10)
        await first.sender.click(APPROVE, 1, DAVE)
        await _until(lambda: store.get(1).state is State.APPROVED, within=10)  # type: ignore[union-attr]
    finally:
        await first.stop(signal.SIGKILL)  # while it waits for its soak
    assert f.znyx.promote_calls == []
    request = store.get(1)
    assert request is not None and request.due_at is not None

    second = await Bot.start(env, urls["slack"])
    try:
        await f.slack.wait_for(lambda s: len(_threads(f)) == 1, within=30)
        await asyncio.sleep(1.5)  # once: nothing runs it again
    finally:
        await second.stop()
    [call] = f.znyx.promote_calls
    assert call.at - published >= 4.0  # at its time (Znyx stamps published_at in seconds)
    request = store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert [e.event for e in store.history(request_id=1)].count("executing") == 1
    assert "Promoted" in str(_threads(f)[0]["blocks"])
