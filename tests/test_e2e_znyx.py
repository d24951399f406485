"""`/promote znyx` end to end: signed Slack requests in, fake Slack and fake Znyx over HTTP."""

from __future__ import annotations

import asyncio
import time

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE, REJECT
from tests.conftest import ALICE, BOB, World


def _text(blocks: list[dict]) -> str:
    """All the text in a list of blocks, for assertions."""
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(out)


def _buttons(blocks: list[dict]) -> list[tuple[str, str]]:
    return [
        (e["action_id"], e["value"])
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
    ]


async def test_happy_path(world: World) -> None:
    response = await world.sender.command("znyx guardrails staging", ALICE)
    assert response.status_code == 200
    assert response.text == ""  # a valid command is acked silently; the release message follows

    await world.slack.wait_for(lambda s: len(s.calls_to("chat.postMessage")) == 1)
    message = world.posted()[0]
    assert message["channel"] == "CRELEASES"
    text = _text(message["blocks"])
    assert "guardrails policy bundle: staging → prod" in text
    assert f"<@{ALICE}>" in text
    assert "Active in prod now" in text and "v1 · sha256:000000000000" in text
    assert "Will become active in prod" in text and "v1 · sha256:555555555555" in text
    assert "needs 1 approval, not by the requester" in text
    assert _buttons(message["blocks"]) == [(APPROVE, "1"), (REJECT, "1")]
    assert world.znyx.promote_calls == []

    response = await world.sender.click(APPROVE, 1, BOB)
    assert response.status_code == 200
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)

    [call] = world.znyx.promote_calls
    assert call.path == "/v1/orgs/org-test/projects/proj-guardrails/envs/staging/promote"
    assert call.body == {"promoted_by": f"slack:{ALICE} via promote-bot #1"}
    new = world.znyx.active("proj-guardrails", "prod")
    assert new is not None and new.version == 2 and new.policy_hash == "sha256:" + "5" * 64

    final = world.slack.calls_to("chat.update")[-1].args
    assert _buttons(final["blocks"]) == []
    final_text = _text(final["blocks"])
    assert "Promoted" in final_text and f"approved by <@{BOB}>" in final_text

    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    reply = world.thread()[0]
    assert reply["thread_ts"] == request.message_ts == final["ts"]
    reply_text = _text(reply["blocks"])
    for expected in (new.id, "Version: `2`", new.policy_hash, "staging → prod", f"<@{BOB}>"):
        assert expected in reply_text

    events = [e.event for e in reversed(world.bot.store.history())]
    assert events == ["requested", "approved", "executing", "succeeded"]
