"""Decisions with reasons, through real signed HTTP: Reject… and Approve with comment… open a
form (views.open on the fake Slack, trigger checked), its view_submission decides; the same by
command; what was said shows on the message, in the thread, status, history, the App Home and
the audit log; a form submitted for another request or from another workspace does nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl

from bot.core.markup import literal
from bot.core.model import State
from bot.sandbox.slack import FakeSlack
from bot.transports.slack.blocks import APPROVE_COMMENT, REJECT
from bot.transports.slack.modals import APPROVE_FORM, REJECT_FORM, SAID
from tests.conftest import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    Bot,
    Fakes,
    World,
    block_text,
    buttons,
    serve_env,
)

HOSTILE = "nope <!channel> <@U0DAVE> <https://evil.example|click me> &amp; done"


def _release(world: World, request_id: int = 1) -> str:
    """The release message of a request as the channel shows it now."""
    return block_text(world.slack.release_messages(request_id)[-1]["blocks"])


async def _until(predicate, within: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 (the store and the fakes change here)
            await asyncio.sleep(0.02)


async def _command(world: World, text: str, user: str) -> None:
    """A command whose answer is the release message (nothing told to the caller)."""
    response = await world.sender.command(text, user)
    assert response.status_code == 200 and response.text == ""


def _ephemeral(world: World) -> list[str]:
    """What was told to one person by chat.postEphemeral (a form has no response_url)."""
    return [c.args.get("text", "") for c in world.slack.calls_to("chat.postEphemeral")]


async def test_reject_opens_a_form_and_its_reason_is_shown_everywhere(world: World) -> None:
    await world.requested()
    view = await world.opened_form(REJECT, 1, BOB)
    assert view["callback_id"] == REJECT_FORM and view["title"]["text"] == "Reject #1"
    [said] = [b for b in view["blocks"] if b["type"] == "input"]
    assert said["optional"] is False and said["element"]["max_length"] == 300
    assert "up to 300 characters" in said["hint"]["text"]
    origin = json.loads(view["private_metadata"])
    message = world.slack.release_messages(1)[-1]
    assert origin["request_id"] == 1 and origin["message_ts"] == message["ts"]
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]

    started = time.perf_counter()
    empty = await world.sender.submit(view, BOB, "   ")  # a required reason left empty
    assert time.perf_counter() - started < 3.0
    assert empty.status_code == 200
    assert empty.json() == {
        "response_action": "errors",
        "errors": {SAID: "Say why you reject it: the requester is told."},
    }
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]

    started = time.perf_counter()
    response = await world.sender.submit(view, BOB, HOSTILE)
    assert time.perf_counter() - started < 3.0
    assert response.status_code == 200 and response.text == ""  # the form closes
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.REJECTED and request.decided_by == BOB
    assert request.reason == HOSTILE  # stored as typed; escaped once wherever it is shown
    safe = literal(HOSTILE)

    shown = world.slack.release_messages(1)[-1]["blocks"]
    assert f"*Reason:* {safe}" in block_text(shown)
    assert "<!channel>" not in json.dumps(shown) and "<https://evil" not in json.dumps(shown)
    assert buttons(shown) == []
    assert "*Reason:* nope &lt;!channel&gt;" in block_text(world.thread()[0]["blocks"])
    status = await world.answer("status 1", DAVE)
    assert f"Rejected by <@{BOB}>: {safe}" in status
    assert f"rejected by <@{BOB}> — {safe}" in status  # the timeline
    history = await world.answer("history znyx:guardrails:prod", DAVE)
    assert f"#1 rejected `znyx:guardrails:prod` by <@{BOB}> — {safe}" in history
    await world.sender.home_opened(DAVE)
    await world.slack.wait_for(lambda s: len(s.calls_to("views.publish")) == 1)
    home = block_text(world.slack.calls_to("views.publish")[0].args["view"]["blocks"])
    assert f"#1 rejected `znyx:guardrails:prod` by <@{BOB}> — {safe}" in home
    [entry] = [e for e in world.bot.store.history() if e.event == "rejected"]
    assert entry.actor == BOB and entry.detail == HOSTILE

    again = await world.sender.submit(view, BOB, "twice")  # the same form, submitted again
    assert again.status_code == 200
    await world.slack.wait_for(lambda s: len(_ephemeral(world)) == 1)
    assert _ephemeral(world) == ["Request #1 was rejected; nothing to reject."]
    assert world.bot.store.get(1).reason == HOSTILE  # type: ignore[union-attr]


async def test_reject_by_command_needs_a_reason_and_checks_like_the_button(world: World) -> None:
    await world.requested()
    response = await world.sender.command("reject 1", BOB)
    body = response.json()
    assert body["response_type"] == "ephemeral"
    assert "`reject` needs a reason after the number" in body["text"]
    assert "/promote reject <request> <reason…>" in body["text"]
    told = await world.answer("reject 1 not today", CAROL)  # no bundle:publish
    assert "needs the `bundle:publish` scope" in told
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]

    await _command(world, "reject #1   wait   for the\tfix", BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.REJECTED
    assert request.reason == "wait for the fix"
    assert "*Reason:* wait for the fix" in _release(world)
    assert (
        await world.answer("reject 1 again", DAVE) == "Request #1 was rejected; nothing to reject."
    )


async def test_approve_with_comment_by_form(world: World) -> None:
    await world.requested()
    view = await world.opened_form(APPROVE_COMMENT, 1, BOB)
    assert view["callback_id"] == APPROVE_FORM and view["submit"]["text"] == "Approve"
    [said] = [b for b in view["blocks"] if b["type"] == "input"]
    assert said["optional"] is True
    response = await world.sender.submit(view, BOB, "checked the dashboards <!here>")
    assert response.status_code == 200 and response.text == ""
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert request.approvals[0].comment == "checked the dashboards <!here>"  # as typed
    assert len(world.znyx.promote_calls) == 1
    said_line = f"💬 <@{BOB}>: checked the dashboards &lt;!here&gt;"  # escaped where shown
    assert said_line in _release(world)
    assert said_line in block_text(world.thread()[0]["blocks"])
    status = await world.answer("status 1", DAVE)
    assert f"approvals: <@{BOB}> (“checked the dashboards &lt;!here&gt;”)" in status
    [entry] = [e for e in world.bot.store.history() if e.event == "approved"]
    assert entry.detail == "checked the dashboards <!here>"


async def test_approve_by_command_with_comment_keeps_four_eyes(world: World) -> None:
    await world.requested()
    own = await world.answer("approve 1 ship it", ALICE)
    assert "your approval doesn't count" in own
    assert world.bot.store.get(1).approvals == []  # type: ignore[union-attr]
    await _command(world, "approve 1 ship it", BOB)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.SUCCEEDED
    assert [(a.user, a.comment) for a in request.approvals] == [(BOB, "ship it")]
    assert len(world.znyx.promote_calls) == 1  # exactly once
    again = await world.answer("approve 1", DAVE)
    assert again == "Request #1 has ended: it succeeded; nothing to approve."
    assert len(world.znyx.promote_calls) == 1


async def test_approve_by_command_is_held_by_a_lock(world: World) -> None:
    await world.requested()
    await world.answer("lock znyx:*:prod incident 4521", DAVE)
    held = await world.answer("approve 1 go", BOB)
    assert "#1 can't be approved now" in held and "incident 4521" in held
    assert world.bot.store.get(1).approvals == []  # type: ignore[union-attr]
    assert world.znyx.promote_calls == []


async def test_cancel_says_why(world: World) -> None:
    await world.requested()
    assert await world.answer("cancel 1 superseded by a newer bundle", ALICE) == (
        "Request #1 is cancelled."
    )
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    request = world.bot.store.get(1)
    assert request is not None and request.reason == "superseded by a newer bundle"
    assert "*Reason:* superseded by a newer bundle" in _release(world)
    assert f"Cancelled by <@{ALICE}>: superseded" in await world.answer("status 1", BOB)


async def test_a_form_for_another_request_or_workspace_does_nothing(world: World) -> None:
    await world.requested()  # 1
    await world.requested(f"whop storefront {world.builds.ios_approved}")  # 2
    view = await world.opened_form(REJECT, 1, BOB)
    origin = json.loads(view["private_metadata"])
    for how, why in (
        ({"private_metadata": json.dumps({**origin, "request_id": 2})}, "not #2's release"),
        ({"team": "T0OTHER"}, "another workspace (T0OTHER)"),
        ({"app": "A0OTHER"}, "another app (A0OTHER)"),
        ({"private_metadata": json.dumps({**origin, "channel": "COTHER"})}, "a channel that"),
    ):
        before = len(_ephemeral(world))
        response = await world.sender.submit(view, BOB, "forged", **how)
        assert response.status_code == 200 and response.text == ""
        await world.slack.wait_for(lambda s, n=before: len(_ephemeral(world)) == n + 1)
        assert "That form does nothing: it came from" in _ephemeral(world)[-1]
        assert why in _ephemeral(world)[-1]
    for request_id in (1, 2):
        request = world.bot.store.get(request_id)
        assert request is not None and request.state is State.PENDING and request.reason is None
    refused = [e for e in world.bot.store.history() if e.event == "form refused"]
    assert len(refused) == 4
    assert world.thread() == []

    body = world.sender.submission_body(view, BOB, "the real one")
    first, redelivered = await asyncio.gather(world.sender.post(body), world.sender.post(body))
    assert first.status_code == redelivered.status_code == 200
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)
    assert world.bot.store.get(1).reason == "the real one"  # type: ignore[union-attr]
    assert world.bot.store.get(2).state is State.PENDING  # type: ignore[union-attr]
    assert [e.event for e in world.bot.store.history(request_id=1)].count("rejected") == 1


async def test_closing_the_form_changes_nothing(world: World) -> None:
    await world.requested()
    view = await world.opened_form(REJECT, 1, BOB)
    calls = len(world.slack.calls)
    response = await world.sender.close(view, BOB)
    assert response.status_code == 200
    await asyncio.sleep(0.1)  # give any (wrong) work a chance to show itself
    assert len(world.slack.calls) == calls
    request = world.bot.store.get(1)
    assert request is not None and request.state is State.PENDING and request.reason is None
    assert [e.event for e in world.bot.store.history()] == ["requested"]


async def test_no_form_opens_for_someone_who_may_not_decide(world: World) -> None:
    await world.requested()
    await world.sender.click(REJECT, 1, CAROL)  # no bundle:publish
    await world.sender.click(APPROVE_COMMENT, 1, ALICE)  # her own request
    await world.slack.wait_for(lambda s: len(world.told()) == 2)
    assert "needs the `bundle:publish` scope" in world.told()[0]
    assert "your approval doesn't count" in world.told()[1]
    await world.sender.click(REJECT, 1, BOB, team="T0OTHER")
    await world.slack.wait_for(lambda s: len(world.told()) == 3)
    assert world.told()[2] == "That button does nothing: it came from another workspace (T0OTHER)."
    assert world.slack.calls_to("views.open") == []


async def test_a_late_trigger_is_told_with_the_command_that_does_the_same(world: World) -> None:
    await world.requested()
    await world.sender.click(REJECT, 1, BOB, issued=time.time() - 4)  # Slack's 3 s are over
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    [call] = world.slack.calls_to("views.open")
    assert world.slack.views == []
    assert "expired_trigger_id" in world.told()[0] and "nothing was changed" in world.told()[0]
    assert "`/promote reject 1 <reason…>`" in world.told()[0]
    assert world.bot.store.get(1).state is State.PENDING  # type: ignore[union-attr]
    assert call.args["trigger_id"]


async def test_the_form_opens_at_once_while_a_promotion_hangs(world: World) -> None:
    await world.requested()  # 1: its promotion will take 3 s
    await world.requested(f"whop storefront {world.builds.ios_approved}")  # 2
    world.znyx.promote_delay = 3.0
    await world.sender.click("promote_approve", 1, BOB)
    await _until(lambda: world.bot.store.get(1).state is State.EXECUTING)  # type: ignore[union-attr]
    started = time.perf_counter()
    await world.opened_form(REJECT, 2, DAVE)
    assert time.perf_counter() - started < 1.0  # well inside the trigger's 3 s
    assert world.bot.store.get(1).state is State.EXECUTING  # type: ignore[union-attr]


async def test_socket_mode_forms_are_acked_and_checked_alike(
    tmp_path: Path, fakes: tuple[Fakes, dict[str, str]]
) -> None:
    """`promote-bot serve` in Socket Mode: the command, the click and the form's submissions
    come over the websocket in envelopes; an empty reason is answered in the ack."""
    f, urls = fakes
    env = serve_env(tmp_path, urls, SLACK_APP_TOKEN=FakeSlack.app_token)
    del env["SLACK_SIGNING_SECRET"]
    bot = await Bot.start(env, urls["slack"])
    sender = bot.sender
    try:
        await f.slack.wait_for(lambda s: len(s.sockets) == 1, within=10)
        command = dict(parse_qsl(sender.command_body("znyx guardrails staging", ALICE)))
        assert (await f.slack.send_socket(command, "slash_commands")).get("payload") is None
        await f.slack.wait_for(lambda s: len(s.release_messages(1)) == 1, within=10)
        message = f.slack.release_messages(1)[0]
        click = sender.click_body(REJECT, "1", BOB, message["channel"], message["ts"])
        await f.slack.send_socket(json.loads(parse_qs(click)["payload"][0]))
        await f.slack.wait_for(lambda s: len(s.views) == 1, within=3)

        empty = sender.submission_body(f.slack.views[0], BOB, "")
        ack = await f.slack.send_socket(json.loads(parse_qs(empty)["payload"][0]))
        assert ack["payload"]["response_action"] == "errors" and SAID in ack["payload"]["errors"]
        forged = sender.submission_body(f.slack.views[0], BOB, "forged", team="T0OTHER")
        await f.slack.send_socket(json.loads(parse_qs(forged)["payload"][0]))
        real = sender.submission_body(f.slack.views[0], BOB, "tests are red")
        assert (await f.slack.send_socket(json.loads(parse_qs(real)["payload"][0]))).get(
            "payload"
        ) in (None, {})
        await f.slack.wait_for(
            lambda s: "*Reason:* tests are red" in block_text(s.release_messages(1)[0]["blocks"]),
            within=10,
        )
        ephemeral = f.slack.calls_to("chat.postEphemeral")
        assert [c.args["text"] for c in ephemeral] == [
            "That form does nothing: it came from another workspace (T0OTHER)."
        ]
    finally:
        await bot.stop()
