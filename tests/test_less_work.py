"""Less work per request: what the bot can do once, it does once (issue 31)."""

from __future__ import annotations

from tests.conftest import ALICE, World


async def test_answers_at_response_urls_use_one_kept_connection(world: World) -> None:
    """Bolt's `respond` opens a session, a TCP connection (and in production a TLS handshake)
    for every answer; the bot sends its answers on one session whose connections it keeps."""
    for text in ("locks", "pending", "history"):
        await world.answer(text, ALICE)
    peers = [c.peer for c in world.slack.calls_to("response_url")]
    assert len(peers) == 3 and all(peers)
    assert len(set(peers)) == 1, peers
