"""Release message views and Block Kit: pure functions of a request."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from bot.core.markup import literal, unescape
from bot.core.model import Approval, Fact, Outcome, Preview, Request, State
from bot.core.policy import Policy
from bot.core.render import request_view
from bot.providers.znyx import ZnyxPromote
from bot.transports.slack.blocks import (
    APPROVE,
    APPROVE_COMMENT,
    REJECT,
    ROLLBACK,
    release_message,
    release_message_of,
    thread_reply,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _request(state: State = State.PENDING, **changes: object) -> Request:
    base = Request(
        id=7,
        action=ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging"),
        requester="UALICE",
        channel="C",
        state=state,
        preview=Preview(
            facts=[Fact(label="Active in prod now", value="v3 · sha256:abc")],
            warnings=["prod already runs this <policy> hash"],
        ),
        created_at=NOW,
        updated_at=NOW,
        expires_at=NOW + timedelta(hours=24),
    )
    return base.model_copy(update=changes)


def test_pending_message_has_everything_and_buttons() -> None:
    view = request_view(_request(), Policy(approvals=2))
    assert view.status == "⏳ Waiting for approval (0 of 2)"
    blocks = release_message(view)
    assert blocks[0]["text"]["text"] == "Promote guardrails policy bundle: staging → prod"
    dumped = json.dumps(blocks, ensure_ascii=False)
    assert "Requested by <@UALICE>" in dumped
    assert "needs 2 approvals, not by the requester, expires 2026-11-23 12:00 UTC" in dumped
    assert "v3 · sha256:abc" in dumped
    assert "&lt;policy&gt;" in dumped  # provider text is escaped
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        (APPROVE, "7"),
        (APPROVE_COMMENT, "7"),
        (REJECT, "7"),
    ]


def test_final_states_have_no_buttons_and_say_who() -> None:
    approved = [Approval(user="UBOB", at=NOW)]
    outcome = Outcome(
        state="succeeded",
        headline="guardrails bundle v4 is active in prod",
        facts=[Fact(label="Bundle", value="b-1"), Fact(label="Policy hash", value="sha256:abc")],
    )
    request = _request(State.SUCCEEDED, approvals=approved, outcome=outcome)
    view = request_view(request, Policy())
    blocks = release_message(view)
    [actions] = [b for b in blocks if b["type"] == "actions"]  # only Roll back is left
    assert [e["action_id"] for e in actions["elements"]] == [ROLLBACK]
    dumped = json.dumps(blocks, ensure_ascii=False)
    assert "✅ Promoted: guardrails bundle v4 is active in prod" in dumped
    assert "approved by <@UBOB>" in dumped
    assert "expires" not in dumped
    text, reply = thread_reply(view)
    assert text.startswith("#7 guardrails policy bundle: staging → prod: ✅ Promoted: ")
    assert "• Bundle: `b-1`" in reply[0]["text"]["text"]


def test_rejected_and_unknown_thread_replies() -> None:
    view = request_view(_request(State.REJECTED, decided_by="UBOB"), Policy())
    assert "rejected by <@UBOB>" in json.dumps(release_message(view))
    assert thread_reply(view)[1][0]["text"]["text"] == "*🚫 Rejected* by <@UBOB>"
    unknown = Outcome(
        state="unknown", headline="Znyx did not answer within 20 s", check="Look at prod."
    )
    view = request_view(_request(State.UNKNOWN, outcome=unknown), Policy())
    assert "What to check: Look at prod." in thread_reply(view)[1][0]["text"]["text"]


def test_long_provider_text_is_cut_to_slack_limits() -> None:
    facts = [Fact(label=f"f{i}", value="x" * 5000) for i in range(12)]
    view = request_view(_request(preview=Preview(facts=facts)), Policy())
    [fields] = [b["fields"] for b in release_message(view) if "fields" in b]
    assert len(fields) == 10 and all(len(f["text"]) <= 2000 for f in fields)


def test_literal_escapes_slacks_three_characters_and_unescape_undoes_it() -> None:
    assert literal("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    for text in ("<!channel> & <@U1>", "&amp; stays &amp;", "R&D <https://x|y>"):
        assert unescape(literal(text)) == text


def test_a_release_message_is_recognized_by_its_own_blocks_only() -> None:
    pending = release_message(request_view(_request(), Policy(approvals=1)))
    assert release_message_of(pending) == 7
    succeeded = _request(State.SUCCEEDED, outcome=Outcome(state="succeeded", headline="v4"))
    assert release_message_of(release_message(request_view(succeeded, Policy()))) == 7
    _, reply = thread_reply(request_view(succeeded, Policy()))
    assert release_message_of(reply) is None  # an outcome reply is no release message
    forged = json.loads(json.dumps(pending).replace('"value": "7"', '"value": "8"', 1))
    assert release_message_of(forged) is None  # a button naming another request
    moved = json.loads(json.dumps(pending).replace("request_7", "request_8"))
    assert release_message_of(moved) is None
    for other in (None, [], "blocks", [{"type": "section"}] * 3, pending[1:], pending[:-1]):
        assert release_message_of(other) is None
