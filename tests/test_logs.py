"""Logs: one INFO line per request event, JSON lines on request, no secret anywhere."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
from pathlib import Path

from bot import logs
from bot.transports.slack.blocks import APPROVE
from bot.web import listening_port
from tests.conftest import (
    ALICE,
    ASC_PEM,
    BOB,
    SIGNING_SECRET,
    WHOP_KEY,
    ZNYX_TOKEN,
    Bot,
    Fakes,
    serve_env,
    spawn_serve,
)
from tests.test_cli import SECRETS


async def test_json_logs_parse_line_by_line_name_each_event_and_hold_no_secret(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    f, urls = fakes
    env = serve_env(tmp_path, urls, LOG_FORMAT="json", LOG_LEVEL="info")
    process = await spawn_serve(env)
    assert process.stdout is not None
    async with asyncio.timeout(30):
        port = await listening_port(process.stdout)
    bot = Bot(process, port, urls["slack"])
    try:
        await bot.sender.command("znyx guardrails dev", ALICE)
        await f.slack.wait_for(lambda s: len(s.channel_posts()) == 1, within=10)
        await bot.sender.click(APPROVE, 1, BOB)
        await f.slack.wait_for(
            lambda s: any("thread_ts" in c.args for c in s.channel_posts()),
            within=15,
        )
        process.send_signal(signal.SIGTERM)
        output = (await asyncio.wait_for(process.stdout.read(), 15)).decode()
        assert await process.wait() == 0
    finally:
        await bot.stop()
    lines = [json.loads(line) for line in output.splitlines()]  # every line is one object
    events = [
        (e["event"], e["request_id"], e["target"], e["actor"], e["state"])
        for e in lines
        if e["logger"] == "bot.core.workflow" and "event" in e
    ]
    assert events == [
        ("requested", 1, "znyx:guardrails:staging", ALICE, "pending"),
        ("approved", 1, "znyx:guardrails:staging", BOB, "pending"),  # then claimed
        ("executing", 1, "znyx:guardrails:staging", BOB, "executing"),
        ("succeeded", 1, "znyx:guardrails:staging", "promote-bot", "succeeded"),
    ]
    assert all(e["level"] == "INFO" for e in lines if "event" in e)
    everything = output
    for secret in (ZNYX_TOKEN, WHOP_KEY, SIGNING_SECRET, env["SLACK_BOT_TOKEN"], "PRIVATE KEY"):
        assert secret not in everything
    assert "will be unused" not in everything  # Bolt is not handed a token it would ignore


def test_the_filter_redacts_configured_values_tokens_jwts_and_tracebacks() -> None:
    stream = io.StringIO()
    handler = logs.configure("DEBUG", "json", secrets=[SECRETS[2], ASC_PEM], stream=stream)
    log = logging.getLogger("test.redaction")
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJ4In0.c2lnbmF0dXJl"
    try:
        log.info("calling with %s", SECRETS[2])
        log.warning("header Authorization: Bearer abc.def-123 and %s", "xoxb-1-2-abc")
        log.info("app token xapp-1-A0-xyz, user token xoxp-9-8, jwt %s", jwt)
        log.info("key %s", ASC_PEM, extra={"target": f"a {SECRETS[2]} b"})
        try:
            raise RuntimeError(f"failed with token {SECRETS[2]}")
        except RuntimeError:
            log.exception("it broke")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 5
    for leaked in (SECRETS[2], "abc.def-123", "xoxb-1-2-abc", "xapp-1", "xoxp-9", jwt, "BEGIN"):
        assert leaked not in text
    assert lines[0]["message"] == "calling with [redacted]"
    assert lines[3]["target"] == "a [redacted] b"
    assert "RuntimeError: failed with token [redacted]" in lines[4]["exception"]


def test_text_is_the_default_format_and_log_level_is_checked(tmp_path: Path) -> None:
    from bot.config import Settings

    assert Settings(log_level="debug").log_level == "DEBUG"
    try:
        Settings(log_level="loud")
    except ValueError as exc:
        assert "expected one of DEBUG, INFO" in str(exc)
    else:
        raise AssertionError("LOG_LEVEL=loud was accepted")
    stream = io.StringIO()
    handler = logs.configure("INFO", "text", stream=stream)
    try:
        logging.getLogger("test.text").info("plain %s", "xoxb-secret-1")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    assert stream.getvalue().rstrip().endswith("INFO test.text: plain [redacted]")


def test_the_password_of_a_postgresql_uri_is_a_secret_too() -> None:
    environ = {"PROMOTE_BOT_DB": "postgresql://bot:pa%40ss:word@db.internal:5432/promote"}
    found = logs.secret_values([], environ)
    assert "pa%40ss:word" in found and "pa@ss:word" in found
    assert logs.secret_values([], {"PROMOTE_BOT_DB": "/var/lib/promote-bot.db"}) == []
    for given in ("postgresql://bot@db/promote?password=hunter22", "host=db password=hunter22"):
        assert "hunter22" in logs.secret_values([], {"PROMOTE_BOT_DB": given})
    record = logging.LogRecord("x", logging.ERROR, "", 0, "using pa@ss:word", None, None)
    logs.Redactor(found).filter(record)
    assert "pa@ss" not in record.getMessage()
