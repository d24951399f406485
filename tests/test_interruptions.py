"""Interrupted work ends honestly: real `promote-bot serve` processes stopped by SIGTERM or
killed by SIGKILL in the middle of their work, then started again; and a database that can't
be used, told in one line."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from bot.cli import main
from bot.core.model import State
from bot.store import SqliteStore
from bot.transports.slack.blocks import APPROVE, ROLLBACK
from tests.conftest import ALICE, BOB, DAVE, Bot, Fakes, World, buttons, serve_env


def _threads(f: Fakes) -> list[dict]:
    return [c.args for c in f.slack.channel_posts() if "thread_ts" in c.args]


def _posts(f: Fakes) -> list[dict]:
    return [c.args for c in f.slack.channel_posts() if "thread_ts" not in c.args]


async def test_sigterm_lets_a_promotion_in_flight_finish(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    f.znyx.promote_gate = gate = asyncio.Event()
    bot = await Bot.start(serve_env(tmp_path, urls), urls["slack"])
    await bot.sender.command("znyx guardrails staging", ALICE)
    await f.slack.wait_for(lambda s: len(_posts(f)) == 1, within=10)
    await bot.sender.click(APPROVE, 1, BOB)
    async with asyncio.timeout(10):
        await f.znyx.promote_started.wait()

    bot.process.send_signal(signal.SIGTERM)  # while Znyx is still working on it
    await asyncio.sleep(0.5)
    refused = await bot.sender.command("znyx guardrails dev", ALICE)
    assert refused.status_code == 503  # new work goes to another replica meanwhile
    assert bot.process.returncode is None  # still finishing the promotion
    stopped_at = time.monotonic()
    gate.set()
    async with asyncio.timeout(25):
        assert await bot.process.wait() == 0
    assert time.monotonic() - stopped_at < 5

    store = SqliteStore(tmp_path / "shared.db")
    request = store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert len(f.znyx.promote_calls) == 1
    assert len(_threads(f)) == 1 and "Promoted" in str(_threads(f)[0]["blocks"])
    final = f.slack.calls_to("chat.update")[-1].args
    assert "Promoted" in final["text"]
    assert [a for a, _ in buttons(final["blocks"])] == [ROLLBACK]  # no Approve / Reject left
    await bot.sender.aclose()


async def test_past_the_shutdown_deadline_the_rest_is_left_for_recovery(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    f.znyx.promote_gate = asyncio.Event()  # Znyx never answers while this process lives
    bot = await Bot.start(
        serve_env(tmp_path, urls, PROMOTE_BOT_SHUTDOWN_SECONDS="1"), urls["slack"]
    )
    await bot.sender.command("znyx guardrails staging", ALICE)
    await f.slack.wait_for(lambda s: len(_posts(f)) == 1, within=10)
    await bot.sender.click(APPROVE, 1, BOB)
    async with asyncio.timeout(10):
        await f.znyx.promote_started.wait()
    started = time.monotonic()
    bot.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        assert await bot.process.wait() == 0
    assert time.monotonic() - started < 5
    request = SqliteStore(tmp_path / "shared.db").get(1)
    assert request is not None and request.state is State.EXECUTING  # for a recovery to read
    assert _threads(f) == []  # nothing claimed that isn't known
    await bot.sender.aclose()


async def test_kill_9_mid_promotion_is_resolved_by_reading_within_a_minute(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    """Default settings; Znyx's list does not echo `promoted_by`: the bot compares prod with
    what it showed before the write, and finds the new version with the source's hash."""
    f, urls = fakes
    f.znyx.promote_gate = gate = asyncio.Event()
    f.znyx.list_echoes_published_by = False
    env = serve_env(tmp_path, urls)
    first = await Bot.start(env, urls["slack"])
    try:
        await first.sender.command("znyx guardrails staging", ALICE)
        await f.slack.wait_for(lambda s: len(_posts(f)) == 1, within=10)
        await first.sender.click(APPROVE, 1, BOB)
        async with asyncio.timeout(10):
            await f.znyx.promote_started.wait()
    finally:
        await first.stop(signal.SIGKILL)
    gate.set()  # Znyx finishes the promotion the dead process had asked for
    await asyncio.sleep(0.2)
    prod = f.znyx.active("proj-guardrails", "prod")
    assert prod is not None and prod.version == 2

    restarted = time.monotonic()
    second = await Bot.start(env, urls["slack"])
    try:
        await f.slack.wait_for(lambda s: len(_threads(f)) == 1, within=60)
    finally:
        await second.stop()
    assert time.monotonic() - restarted < 60
    request = SqliteStore(tmp_path / "shared.db").get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert "read again after the promotion was cut off" in request.outcome.headline  # type: ignore[union-attr]
    assert len(f.znyx.promote_calls) == 1  # never sent again


async def test_kill_9_right_after_the_ack_still_posts_the_message(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    f.znyx.list_gate = gate = asyncio.Event()  # the preview read hangs
    env = serve_env(tmp_path, urls, PROMOTE_BOT_LEASE_SECONDS="2")
    first = await Bot.start(env, urls["slack"])
    try:
        response = await first.sender.command("znyx guardrails staging", ALICE)
        assert response.status_code == 200  # acknowledged: Slack told the person it is in hand
        async with asyncio.timeout(10):
            while not f.znyx.calls:  # noqa: ASYNC110 (the preview read has begun)
                await asyncio.sleep(0.02)
    finally:
        await first.stop(signal.SIGKILL)
    gate.set()
    assert _posts(f) == []

    second = await Bot.start(env, urls["slack"])
    try:
        await f.slack.wait_for(lambda s: len(_posts(f)) == 1, within=30)
        await asyncio.sleep(0.5)
        assert len(_posts(f)) == 1  # posted once
        await second.sender.click(APPROVE, 1, DAVE)
        await f.slack.wait_for(lambda s: len(_threads(f)) == 1, within=15)
    finally:
        await second.stop()
    request = SqliteStore(tmp_path / "shared.db").get(1)
    assert request is not None and request.requester == ALICE
    assert request.state is State.SUCCEEDED


@pytest.mark.parametrize(
    ("where", "line"),
    [
        ("missing/bot.db", "PROMOTE_BOT_DB: the folder {tmp}/missing does not exist"),
        ("", "PROMOTE_BOT_DB: {tmp} is not a file"),
        ("notes.txt", "PROMOTE_BOT_DB: {tmp}/notes.txt is not a SQLite database"),
        ("/proc/promote-bot.db", "PROMOTE_BOT_DB: cannot open or create /proc/promote-bot.db"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_and_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
    line: str,
) -> None:
    (tmp_path / "notes.txt").write_text("release notes, not a database\n" * 100)
    _serveserve_env(tmp_path, monkeypatch, str(tmp_path / where) if where else str(tmp_path))
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("promote-bot: " + line.format(tmp=tmp_path))
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_read_only_database_file_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "bot.db"
    SqliteStore(db).close()
    for extra in tmp_path.glob("bot.db-*"):
        extra.unlink()
    if os.geteuid() == 0:  # root writes through permissions: make the file immutable instead
        if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available on this file system")
    else:
        db.chmod(0o444)
    try:
        _serveserve_env(tmp_path, monkeypatch, str(db))
        assert main(["serve"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"promote-bot: PROMOTE_BOT_DB: {db} is read-only")
        assert err.count("\n") == 1
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)


def _serveserve_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "ZNYX_", "WHOP_", "ASC_", "PROMOTE_BOT")):
            monkeypatch.delenv(name)
    config = tmp_path / "promote-bot.toml"
    config.write_text('[roles]\nrm = ["bundle:publish"]\n')
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "secret")
    monkeypatch.setenv("SLACK_API_URL", "http://127.0.0.1:9/api/")
    monkeypatch.setenv("PROMOTE_BOT_CONFIG", str(config))
    monkeypatch.setenv("PROMOTE_BOT_DB", db)


async def test_a_full_disk_is_told_plainly_and_logged_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    await world.requested("znyx guardrails staging", ALICE)
    db = world.bot.store.db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page
    failures = 0
    while failures < 50:  # fill what room is left in its pages, keys spread over them all
        try:
            with db.conn:
                db.execute(
                    "INSERT INTO inbox (key, kind, payload, received_at) VALUES (?, '', '', '')",
                    [str(random.random())],
                )
        except sqlite3.OperationalError:
            failures += 1
    answers = [await world.sender.command("znyx guardrails dev", ALICE) for _ in range(3)]
    for response in answers:
        assert response.status_code == 200
        text = response.json()["text"]
        assert "can't use its database right now" in text and "Try again" in text
        assert "is full" in text and "Traceback" not in text
    await world.sender.click(APPROVE, 1, BOB)  # a click's ack carries no text: told apart
    await world.slack.wait_for(lambda s: any("can't use its database" in t for t in world.told()))
    failing = [r for r in caplog.records if "the database is failing" in r.getMessage()]
    assert len(failing) == 1  # once, not once per command or click
    assert world.posted()[1:] == []
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]
