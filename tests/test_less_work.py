"""Less work per request: what the bot can do once, it does once (issue 31)."""

from __future__ import annotations

import logging

import pytest

from bot.store import SqliteStore
from tests.conftest import ALICE, World


async def test_answers_at_response_urls_use_one_kept_connection(world: World) -> None:
    """Bolt's `respond` opens a session, a TCP connection (and in production a TLS handshake)
    for every answer; the bot sends its answers on one session whose connections it keeps."""
    for text in ("locks", "pending", "history"):
        await world.answer(text, ALICE)
    peers = [c.peer for c in world.slack.calls_to("response_url")]
    assert len(peers) == 3 and all(peers)
    assert len(set(peers)) == 1, peers


async def test_an_audit_entry_is_logged_without_reading_the_whole_request(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """Each entry's log line tells the request's state: one column read, not the request with
    its preview, approvals and rollbacks (four entries and more per promotion)."""
    caplog.set_level(logging.INFO, logger="bot.core.workflow")
    await world.requested()
    store = world.bot.store
    assert isinstance(store, SqliteStore)
    ran: list[str] = []
    store.db.conn.set_trace_callback(ran.append)
    try:
        world.bot.workflow.audit.record(1, ALICE, "commented", "znyx:guardrails:staging")
    finally:
        store.db.conn.set_trace_callback(None)
    assert "request #1 commented: target=znyx:guardrails:staging" in caplog.text
    assert "state=pending" in caplog.records[-1].getMessage()
    reads = [s for s in ran if s.startswith("SELECT")]
    assert reads and not [s for s in reads if s.startswith("SELECT * FROM requests")], reads
