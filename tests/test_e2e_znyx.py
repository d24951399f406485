"""`/promote znyx` end to end: signed Slack requests in, fake Slack and fake Znyx over HTTP."""

from __future__ import annotations

import asyncio
import time

from bot.core.model import State
from bot.transports.slack.blocks import APPROVE
from tests.conftest import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    MALLORY,
    World,
    block_text,
    buttons,
    open_buttons,
)


async def test_happy_path(world: World) -> None:
    response = await world.sender.command("znyx guardrails staging", ALICE)
    assert response.status_code == 200
    assert response.text == ""  # a valid command is acked silently; the release message follows

    await world.slack.wait_for(lambda s: len(s.calls_to("chat.postMessage")) == 1)
    message = world.posted()[0]
    assert message["channel"] == "CRELEASES"
    text = block_text(message["blocks"])
    assert "guardrails policy bundle: staging → prod" in text
    assert f"<@{ALICE}>" in text
    assert "Active in prod now" in text and "v1 · sha256:000000000000" in text
    assert (
        "staging v1 · sha256:555555555555 → becomes the active bundle of prod (a new version)"
        in text
    )
    assert "needs 1 approval, not by the requester" in text
    assert buttons(message["blocks"]) == open_buttons(1)
    assert world.znyx.promote_calls == []

    response = await world.sender.click(APPROVE, 1, BOB)
    assert response.status_code == 200
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)

    [call] = world.znyx.promote_calls
    assert call.path == "/v1/orgs/org-test/projects/proj-guardrails/envs/staging/promote"
    installation = world.bot.store.installation
    assert call.body == {"promoted_by": f"slack:{ALICE} via promote-bot #1 ({installation})"}
    new = world.znyx.active("proj-guardrails", "prod")
    assert new is not None and new.version == 2 and new.policy_hash == "sha256:" + "5" * 64

    final = world.slack.calls_to("chat.update")[-1].args
    assert buttons(final["blocks"]) == [("promote_rollback", "1")]  # no Approve/Reject left
    final_text = block_text(final["blocks"])
    assert "Promoted" in final_text and f"approved by <@{BOB}>" in final_text

    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    reply = world.thread()[0]
    assert reply["thread_ts"] == request.message_ts == final["ts"]
    reply_text = block_text(reply["blocks"])
    for expected in (new.id, "Version: `2`", new.policy_hash, "staging → prod", f"<@{BOB}>"):
        assert expected in reply_text

    events = [e.event for e in reversed(world.bot.store.history())]
    assert events == ["requested", "approved", "executing", "succeeded"]


async def test_requester_without_scope_is_refused_at_ack(world: World) -> None:
    for user in (MALLORY, CAROL):
        response = await world.sender.command("znyx guardrails staging", user)
        assert response.status_code == 200
        body = response.json()
        assert body["response_type"] == "ephemeral"
        assert "needs the `bundle:publish` scope" in body["text"]
    await asyncio.sleep(0.1)  # give any (wrong) lazy work a chance to show itself
    assert world.slack.calls_to("chat.postMessage") == []
    assert world.znyx.calls == []
    assert world.bot.store.get(1) is None


async def test_bad_input_is_answered_and_reaches_nothing(world: World) -> None:
    cases = {
        "znyx guardrails prod": "`prod` is the last stage",
        "znyx nowhere staging": "Unknown Znyx project `nowhere`",
        "znyx guardrails qa": "Unknown environment `qa`",
        "znyx guardrails": "takes a project and a source environment",
        "znyx ../../x staging": "is not a project name",
        "deploy everything": "Unknown command `deploy`",
    }
    for text, expected in cases.items():
        response = await world.sender.command(text, ALICE)
        body = response.json()
        assert body["response_type"] == "ephemeral"
        assert expected in body["text"], (text, body["text"])
        assert "/promote znyx <project> <source_env>" in body["text"]
    await asyncio.sleep(0.1)
    assert [c.method for c in world.slack.calls] == ["auth.test"]  # at start-up, nothing since
    assert world.znyx.calls == []


async def test_help_lists_what_the_caller_may_do(world: World) -> None:
    body = (await world.sender.command("help", ALICE)).json()
    assert "/promote znyx" in body["text"] and "guardrails" in body["text"]
    body = (await world.sender.command("", MALLORY)).json()
    assert "/promote znyx" not in body["text"]
    assert "no role" in body["text"]


async def test_approver_without_scope_is_refused(world: World) -> None:
    await world.requested()
    for user in (CAROL, MALLORY):
        response = await world.sender.click(APPROVE, 1, user)
        assert response.status_code == 200
    await world.slack.wait_for(lambda s: len(world.told()) == 2)
    assert all("needs the `bundle:publish` scope" in t for t in world.told())
    assert world.znyx.promote_calls == []
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.PENDING and request.approvals == []


async def test_self_approval_is_refused(world: World) -> None:
    await world.requested()
    await world.sender.click(APPROVE, 1, ALICE)
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert "your approval doesn't count" in world.told()[0]
    assert world.znyx.promote_calls == []
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.PENDING


async def test_reject_ends_the_request(world: World) -> None:
    await world.requested()
    response = await world.reject_by_form(1, BOB, "the soak found a regression")
    assert response.status_code == 200 and response.text == ""  # the form closes
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    final = world.slack.calls_to("chat.update")[-1].args
    assert buttons(final["blocks"]) == []
    assert "Rejected" in block_text(final["blocks"]) and f"rejected by <@{BOB}>" in block_text(
        final["blocks"]
    )
    assert "*Reason:* the soak found a regression" in block_text(final["blocks"])
    assert "Rejected*" in block_text(world.thread()[0]["blocks"])

    await world.sender.click(APPROVE, 1, DAVE)  # an old button grants nothing
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert "was rejected" in world.told()[0]
    assert world.znyx.promote_calls == []
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.REJECTED and request.decided_by == BOB


async def test_a_source_that_moved_since_the_preview_is_not_promoted(world: World) -> None:
    await world.requested()
    for bundle in world.znyx.projects["proj-guardrails"]["staging"]:
        bundle.is_active = False  # someone deactivated staging between request and approval
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    reply = block_text(world.thread()[0]["blocks"])
    assert "Failed" in reply
    assert (
        "staging's active bundle was v1 · sha256:555555555555 when this was requested; "
        "it is now none: nothing was changed, request again"
    ) in reply
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.FAILED
    assert world.znyx.promote_calls == []  # nothing was sent


async def test_znyx_400_is_told_in_the_thread(world: World) -> None:
    await world.requested("znyx twostage staging")
    message = block_text(world.posted()[0]["blocks"])
    assert "Couldn't read prod" in message  # the preview says so; approvers decide
    await world.sender.click(APPROVE, 1, BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    reply = block_text(world.thread()[0]["blocks"])
    assert "no stage after staging" in reply and "HTTP 400" in reply
    assert "No promotion target for environment 'staging'" in reply
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.FAILED


async def test_nothing_to_promote_is_refused_before_posting(world: World) -> None:
    world.znyx.projects["proj-guardrails"]["dev"].clear()
    response = await world.sender.command("znyx guardrails dev", ALICE)
    assert response.text == ""  # the preview needs Znyx, so it is read after the ack
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert "no active bundle in dev" in world.told()[0]
    assert world.posted() == [] and world.znyx.promote_calls == []


async def test_unsigned_wrongly_signed_and_stale_requests_are_401(world: World) -> None:
    body = world.sender.command_body("znyx guardrails staging", ALICE)
    plain = {"Content-Type": "application/x-www-form-urlencoded"}
    wrong = dict(world.sender.signed_headers(body), **{"X-Slack-Signature": "v0=" + "0" * 64})
    stale = world.sender.signed_headers(body, timestamp=int(time.time()) - 6 * 60)
    tampered = world.sender.signed_headers(body)
    for headers, sent in ((plain, body), (wrong, body), (stale, body), (tampered, body + "x")):
        response = await world.sender.post(sent, headers=headers)
        assert response.status_code == 401
    click = world.sender.click_body(APPROVE, "1", BOB)
    assert (await world.sender.post(click, headers=plain)).status_code == 401
    await asyncio.sleep(0.1)
    assert [c.method for c in world.slack.calls] == ["auth.test"]  # at start-up, nothing since
    assert world.znyx.calls == []
    assert world.bot.store.get(1) is None and world.bot.store.history() == []


async def test_two_approvals_at_once_call_znyx_once(world: World) -> None:
    await world.requested()
    responses = await asyncio.gather(
        world.sender.click(APPROVE, 1, BOB),
        world.sender.click(APPROVE, 1, DAVE),
        world.sender.click(APPROVE, 1, BOB),
    )
    assert [r.status_code for r in responses] == [200, 200, 200]
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    await asyncio.sleep(0.2)
    assert len(world.znyx.promote_calls) == 1
    assert len(world.thread()) == 1
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED


async def test_ack_is_fast_while_znyx_is_slow(world: World) -> None:
    world.znyx.promote_gate = gate = asyncio.Event()  # Znyx holds the promote call open
    await world.requested()
    started = time.perf_counter()
    response = await world.sender.click(APPROVE, 1, BOB)
    click_ack = time.perf_counter() - started
    assert response.status_code == 200
    async with asyncio.timeout(5):  # the provider, not Slack, is what changes here
        await world.znyx.promote_started.wait()

    started = time.perf_counter()  # other people are not held up by the slow call either
    response = await world.sender.command("znyx guardrails dev", ALICE)
    command_ack = time.perf_counter() - started
    assert response.status_code == 200
    assert click_ack < 1.0 and command_ack < 1.0, (click_ack, command_ack)
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.EXECUTING

    gate.set()
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED


async def test_a_channel_the_bot_is_not_in_is_explained(world: World) -> None:
    world.slack.not_in_channels.add("CSECRET")
    await world.sender.command("znyx guardrails staging", ALICE, channel="CSECRET")
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert "/invite @promote-bot" in world.told()[0]
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.CANCELLED
    assert world.znyx.promote_calls == []


async def _answer(world: World, text: str, user: str) -> str:
    """Send a command answered after the ack; return what only the caller sees."""
    before = len(world.told())
    response = await world.sender.command(text, user)
    assert response.status_code == 200 and response.text == ""
    await world.slack.wait_for(lambda s: len(world.told()) == before + 1)
    return world.told()[-1]


async def test_status_history_and_cancel(world: World) -> None:
    await world.requested()
    status = await _answer(world, "status 1", BOB)
    assert (
        "*#1 guardrails policy bundle: staging → prod* — ⏳ Waiting for approval (0 of 1)" in status
    )
    assert f"requested by <@{ALICE}>" in status and "Timeline:" in status

    cancelled = await _answer(world, "cancel 1", ALICE)
    assert cancelled == "Request #1 is cancelled."
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    final = world.slack.calls_to("chat.update")[-1].args
    assert buttons(final["blocks"]) == [] and f"cancelled by <@{ALICE}>" in block_text(
        final["blocks"]
    )

    again = await _answer(world, "cancel 1", ALICE)
    assert again == "Request #1 was cancelled; nothing to cancel."
    history = await _answer(world, "history znyx:guardrails:prod", DAVE)
    assert "#1 cancelled `znyx:guardrails:prod`" in history and "#1 requested" in history
    assert await _answer(world, "status 99", BOB) == "There is no request #99."


async def test_only_the_requester_or_a_scope_holder_may_cancel(world: World) -> None:
    await world.requested()
    assert "Only the requester or someone holding `bundle:publish`" in await _answer(
        world, "cancel 1", CAROL
    )
    response = await world.sender.command("history", MALLORY)
    assert "You have no role in promote-bot" in response.json()["text"]
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.PENDING


async def test_a_forged_button_value_is_answered(world: World) -> None:
    await world.requested()
    for value in ("²", "1; DROP TABLE requests", "", "9" * 40):
        await world.sender.click(APPROVE, value, BOB)
    await world.slack.wait_for(lambda s: len(world.told()) == 4)
    assert world.told() == ["That button carries no request number."] * 4
    assert world.znyx.promote_calls == []
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]
