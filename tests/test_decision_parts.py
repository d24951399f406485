"""The pure parts of decisions with reasons and of telling people: parsing, making what people
type safe, who is told what, the direct message and the forms as Slack gets them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bot.config import parse_config
from bot.core import authz
from bot.core.commands import (
    REASON_LIMIT,
    Approve,
    Cancel,
    Notify,
    Reject,
    UsageError,
    parse,
    said_text,
)
from bot.core.markup import literal
from bot.core.model import Approval, NoticeRecord, Outcome, State
from bot.core.notify import notice_view, requester_told
from bot.core.policy import Policy
from bot.core.render import request_view
from bot.transports.shell import notice_text, release_text
from bot.transports.slack.blocks import notice, release_message, thread_reply
from bot.transports.slack.modals import APPROVE_FORM, REJECT_FORM, SAID, form, submission
from tests.test_render import NOW, _request

RULES = parse_config(
    {
        "roles": {"rm": ["bundle:publish"], "viewer": []},
        "members": {"UALICE": ["rm"], "UBOB": ["rm"], "UVIC": ["viewer"], "SREL": ["rm"]},
        "znyx": {"org": "org-1", "projects": {"guardrails": "proj-g"}},
    }
)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("approve 3", Approve(3)),
        ("approve #3 looks   good", Approve(3, "looks good")),
        ("reject 3 wait for the fix", Reject(3, "wait for the fix")),
        ("cancel 3", Cancel(3)),
        ("cancel 3 superseded", Cancel(3, "superseded")),
        ("notify", Notify(None)),
        ("notify OFF", Notify(False)),
        ("notify on", Notify(True)),
    ],
)
def test_decisions_and_notify_parse(text: str, command: object) -> None:
    assert parse(text, RULES) == command


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("reject 3", "`reject` needs a reason after the number"),
        ("reject", "`reject` takes a request number"),
        ("approve three ok", "`three` is not a request number"),
        ("cancel", "`cancel` takes a request number"),
        ("notify later", "`notify` takes `on` or `off`"),
        ("notify on off", "`notify` takes `on` or `off`"),
    ],
)
def test_bad_decisions_say_what_was_wrong(text: str, said: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse(text, RULES)
    assert said in caught.value.message and caught.value.usage


def test_what_people_say_is_plain_text_on_one_line_and_cut() -> None:
    assert said_text(None) is None and said_text(" \n\t ") is None
    assert said_text("two\nlines\r\n\tand  tabs") == "two lines and tabs"
    hostile = "<!channel> <@U1> <https://x.example|y>"
    assert said_text(hostile) == hostile  # as typed: escaped where it is shown
    assert literal(hostile) == "&lt;!channel&gt; &lt;@U1&gt; &lt;https://x.example|y&gt;"
    long = said_text("x" * 1000)
    assert long is not None and len(long) == REASON_LIMIT + 1 and long.endswith("…")


def test_approvers_told_are_the_policy_s_people_and_known_group_members() -> None:
    role_map = RULES.role_map.with_group_members({"SREL": frozenset({"UCARL", "UBOB"})})
    scope = "bundle:publish"
    told = authz.approvers_to_tell(role_map, Policy(), scope, "UALICE")
    assert told == ["UBOB", "UCARL"]  # not the requester, nor the viewer; BOB once
    self_ok = Policy(allow_self_approval=True)
    assert "UALICE" not in authz.approvers_to_tell(role_map, self_ok, scope, "UALICE")
    assert authz.approvers_to_tell(role_map, Policy(), scope, "UALICE", ("UBOB",)) == ["UCARL"]
    only = Policy(approver_roles=("nobody",))
    assert authz.approvers_to_tell(role_map, only, scope, "UALICE") == []
    unresolved = RULES.role_map  # the group's members not known yet: its people only
    assert authz.approvers_to_tell(unresolved, Policy(), scope, "UALICE") == ["UBOB"]


def test_the_requester_is_told_of_others_doings_only() -> None:
    request = _request()
    assert requester_told(request, "approved:UBOB", "UBOB") == (("UALICE", "approved:UBOB"),)
    assert requester_told(request, "cancelled", "UALICE") == ()  # her own cancel
    assert requester_told(request, "succeeded", None) == (("UALICE", "succeeded"),)


def _record(event: str) -> NoticeRecord:
    return NoticeRecord(
        key=f"7:UALICE:{event}", request_id=7, user="UALICE", event=event, created_at=NOW
    )


def test_direct_messages_say_what_happened_and_make_text_safe() -> None:
    rejected = _request(State.REJECTED, decided_by="UBOB", reason="‹!here› & <b>")
    view = notice_view(_record("rejected"), rejected, "https://t.slack.com/archives/C/p1")
    assert (view.lead, view.by, view.label) == ("Your request #7 was rejected", "UBOB", "Reason")
    text, blocks = notice(view)
    body = blocks[0]["text"]["text"]
    assert text == "🚫 Your request #7 was rejected: guardrails policy bundle: staging → prod"
    assert "🚫 *Your request #7 was rejected* by <@UBOB>" in body
    assert "*Reason:* ‹!here› &amp; &lt;b&gt;" in body
    assert "<https://t.slack.com/archives/C/p1|Open the release message>" in body
    assert "`/promote notify off`" in blocks[1]["elements"][0]["text"]
    unknown = _request(
        State.UNKNOWN,
        outcome=Outcome(state="unknown", headline="Znyx did not answer", check="Look at prod."),
    )
    view = notice_view(_record("unknown"), unknown, None)
    assert view.lead == "Your request #7 ended with its outcome unknown" and view.link is None
    assert "What to check: Look at prod." in notice(view)[1][0]["text"]["text"]
    approved = _request(approvals=[Approval(user="UBOB", at=NOW, comment="go")])
    view = notice_view(_record("approved:UBOB"), approved, None)
    assert (view.by, view.detail) == ("UBOB", "go")
    waiting = notice_view(_record("waiting"), _request(emergency="incident 9"), None)
    assert waiting.lead == "#7 waits for your approval" and waiting.detail == "incident 9"
    to_bob = notice(dataclasses.replace(waiting, user="UBOB"))[1][0]["text"]["text"]
    assert "asked by <@UALICE>" in to_bob and "expires 2026-11-23 12:00 UTC" in to_bob
    assert (
        notice_text(view) == "  ✉ to @UALICE: 👍 Your request #7 was approved by @UBOB — "
        "guardrails policy bundle: staging → prod\n    Comment: go"
    )


def test_reasons_and_comments_show_on_the_message_and_in_the_thread() -> None:
    request = _request(
        State.REJECTED,
        decided_by="UBOB",
        reason="not <now>",
        approvals=[Approval(user="UDAVE", at=NOW, comment="fine by me")],
    )
    view = request_view(request, Policy())
    shown = json.dumps(release_message(view), ensure_ascii=False)
    assert "💬 <@UDAVE>: fine by me" in shown and "*Reason:* not &lt;now&gt;" in shown
    reply = thread_reply(view)[1][0]["text"]["text"]
    assert reply == "*🚫 Rejected* by <@UBOB>\n💬 <@UDAVE>: fine by me\n*Reason:* not &lt;now&gt;"
    assert "│ Reason: not <now>" in release_text(view)


def test_the_forms_as_slack_gets_them() -> None:
    view = request_view(_request(), Policy())
    origin = {"request_id": 7, "channel": "C", "message_ts": "1.000100", "message_bot": "B1"}
    reject = form(REJECT_FORM, view, {**origin, "message_thread": None})
    assert reject["callback_id"] == REJECT_FORM and len(reject["title"]["text"]) <= 24
    [said] = [b for b in reject["blocks"] if b["type"] == "input"]
    assert said["block_id"] == SAID and said["optional"] is False
    assert said["element"]["max_length"] == REASON_LIMIT
    assert f"up to {REASON_LIMIT} characters" in said["hint"]["text"]
    approve = form(APPROVE_FORM, view, origin)
    assert next(b for b in approve["blocks"] if b["type"] == "input")["optional"] is True
    body = {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": "UBOB", "team_id": "T1"},
        "api_app_id": "A1",
        "view": {
            **reject,
            "state": {"values": {SAID: {SAID: {"type": "plain_text_input", "value": "no"}}}},
        },
    }
    assert submission(body) == {
        "user": "UBOB",
        "request_id": 7,
        "text": "no",
        "team": "T1",
        "app": "A1",
        "channel": "C",
        "message_ts": "1.000100",
        "message_bot": "B1",
        "message_thread": None,
    }
    broken = {"view": {"private_metadata": "not json", "state": "x"}, "user": "U"}
    assert submission(broken)["request_id"] is None and submission(broken)["text"] == ""
