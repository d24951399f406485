"""Forms (Slack modals) for decisions that say something: Reject asks why (required), "Approve
with comment…" asks what to add (optional).

A click on either is acked at once; the form opens right after, as a Bolt lazy listener
(`views.open` with the click's trigger_id, which Slack accepts for 3 seconds only), after a
check that reads the store and nothing else: the click is from this installation and from the
request's release message, and the person may decide it now. The request and the message it
was opened from travel in the form's `private_metadata`. A submission is checked like a click
(this workspace, this app, the request's own message, against the store), recorded in the inbox
before its ack and done after it, exactly once; an empty reason is answered in the form
(`response_action: errors`). Closing the form changes nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.core.commands import REASON_LIMIT, USAGE
from bot.core.controls import describe, first_control
from bot.core.markup import literal
from bot.core.model import Reply
from bot.core.ports import StoreError
from bot.core.render import RequestView
from bot.core.workflow import Workflow
from bot.transports.slack.blocks import APPROVE_COMMENT, REJECT, said_lines
from bot.transports.slack.inbox import Inbox, click_payload, store_trouble, tell

log = logging.getLogger(__name__)

REJECT_FORM = "promote_reject_form"  # callback_id of the form a Reject click opens
APPROVE_FORM = "promote_approve_form"  # ... and of "Approve with comment…"
SAID = "said"  # block_id and action_id of the form's one text input
_TITLE_LIMIT = 24  # Slack's limit for a modal's title, submit and close texts

Record = Callable[[str | None, str, dict[str, Any]], Awaitable[None]]

# The words of each form: verb, the core's name for it, title, submit, label, placeholder, hint.
_FORMS: dict[str, dict[str, str]] = {
    REJECT_FORM: {
        "verb": "reject",
        "title": "Reject #{n}",
        "submit": "Reject",
        "label": "Why reject it?",
        "placeholder": "e.g. the staging soak found a regression",
        "hint": "Required. The requester is told; it shows on the release message, in its "
        f"thread, in status and history. Plain text, up to {REASON_LIMIT} characters.",
    },
    APPROVE_FORM: {
        "verb": "approve",
        "title": "Approve #{n}",
        "submit": "Approve",
        "label": "Comment",
        "placeholder": "e.g. checked the dashboards, go",
        "hint": "Optional. The requester is told; it shows on the release message, in its "
        f"thread, in status and history. Plain text, up to {REASON_LIMIT} characters.",
    },
}
_OPENED_BY = {REJECT: REJECT_FORM, APPROVE_COMMENT: APPROVE_FORM}


def form(callback_id: str, view: RequestView, origin: dict[str, Any]) -> dict[str, Any]:
    """The modal for `views.open`: the request it decides, one text input, and `origin` (the
    request and the message it was opened from) as its private_metadata."""
    words = _FORMS[callback_id]
    n = view.request_id
    summary = [f"*#{n} {view.title}*", f"`{view.target}` · {view.status}"]  # the core's markup
    summary += said_lines(view)
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": json.dumps(origin, separators=(",", ":")),
        "title": {"type": "plain_text", "text": words["title"].format(n=n)[:_TITLE_LIMIT]},
        "submit": {"type": "plain_text", "text": words["submit"]},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(summary)[:3000]}},
            {
                "type": "input",
                "block_id": SAID,
                "optional": callback_id == APPROVE_FORM,
                "label": {"type": "plain_text", "text": words["label"]},
                "hint": {"type": "plain_text", "text": words["hint"]},
                "element": {
                    "type": "plain_text_input",
                    "action_id": SAID,
                    "multiline": True,
                    "max_length": REASON_LIMIT,
                    "placeholder": {"type": "plain_text", "text": words["placeholder"]},
                },
            },
        ],
    }


def origin(click: dict[str, Any]) -> dict[str, Any]:
    """What a form carries of the click that opened it: the request, and its message."""
    keys = ("request_id", "channel", "message_ts", "message_bot", "message_thread")
    return {key: click.get(key) for key in keys}


def submission(body: dict[str, Any]) -> dict[str, Any]:
    """What the work after a form's ack needs, read defensively from any view_submission:
    who, from which workspace and app, what they typed, and the form's origin."""

    def part(value: object) -> dict[str, Any]:
        return value if isinstance(value, dict) else {}

    view = part(body.get("view"))
    try:
        meta = part(json.loads(str(view.get("private_metadata") or "{}")))
    except ValueError:
        meta = {}
    values = part(part(view.get("state")).get("values"))
    text = part(part(values.get(SAID)).get(SAID)).get("value")
    request_id = meta.get("request_id")
    user = part(body.get("user"))
    return {
        "user": user.get("id"),
        "request_id": request_id if isinstance(request_id, int) else None,
        "text": text if isinstance(text, str) else "",
        "team": part(body.get("team")).get("id") or user.get("team_id"),
        "app": body.get("api_app_id") or view.get("app_id"),
        **{k: meta.get(k) for k in ("channel", "message_ts", "message_bot", "message_thread")},
    }


def register_forms(app: AsyncApp, workflow: Workflow, inbox: Inbox, record: Record) -> None:
    """The Reject and "Approve with comment…" buttons open their forms; submitting one
    rejects or approves (through the inbox, like a click)."""
    inbox.on_submit(REJECT_FORM, workflow.reject)
    inbox.on_submit(APPROVE_FORM, workflow.approve)

    async def ack_only(ack: AsyncAck) -> None:
        await ack()

    async def open_form(
        body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        click = click_payload(body)
        action_id = str(((body.get("actions") or [{}])[0] or {}).get("action_id", ""))
        callback_id = _OPENED_BY.get(action_id)
        user, request_id = click.get("user"), click.get("request_id")
        if callback_id is None or not isinstance(user, str):
            return
        words = _FORMS[callback_id]
        if request_id is None:
            await tell(respond, Reply("That button carries no request number."))
            return
        try:
            refusal = await inbox.foreign(click, request_id, copies="let through")
            if refusal is not None:
                workflow.refuse_click(user, request_id, refusal)
                said = f"That button does nothing: it came from {literal(refusal)}."
                await tell(respond, Reply(said))
                return
            checked = workflow.may_decide(user, request_id, words["verb"])
        except StoreError as exc:
            inbox.store_failed(exc)
            await tell(respond, Reply(store_trouble(exc)))
            return
        if isinstance(checked, Reply):
            await tell(respond, checked)
            return
        try:
            await client.views_open(
                trigger_id=str(body.get("trigger_id") or ""),
                view=form(callback_id, checked, origin(click)),
            )
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.warning("views.open for #%s failed: %s", request_id, error)
            await tell(respond, Reply(_not_opened(words["verb"], request_id, str(error))))
            return
        except Exception as exc:  # a dropped connection: the person may click again
            log.warning("views.open for #%s failed: %r", request_id, exc)
            await tell(respond, Reply(_not_opened(words["verb"], request_id, type(exc).__name__)))
            return
        # Opened from a copy of the release message (a retried post): adopted now, kept in
        # step from now on, and known when the form comes back.
        try:
            await inbox.foreign(click, request_id)
        except StoreError as exc:
            inbox.store_failed(exc)

    async def ack_form(ack: AsyncAck, body: dict[str, Any]) -> None:
        view = body.get("view") if isinstance(body.get("view"), dict) else {}
        callback_id = str(view.get("callback_id", ""))  # type: ignore[union-attr]
        payload = submission(body)
        if callback_id == REJECT_FORM and not payload["text"].strip():
            await ack(
                response_action="errors",
                errors={SAID: "Say why you reject it: the requester is told."},
            )
            return
        control = first_control(payload["text"])  # what a form says is a free text too
        if control is not None:
            await ack(
                response_action="errors",
                errors={SAID: f"It holds a control character, {describe(control)}: remove it."},
            )
            return
        key = body.get("trigger_id") or f"view.{view.get('id')}.{view.get('hash')}"  # type: ignore[union-attr]
        try:
            await record(str(key), callback_id, payload)
        except StoreError as exc:
            inbox.store_failed(exc)
            await ack(response_action="errors", errors={SAID: store_trouble(exc)[:150]})
            return
        await ack()  # closes the form; the release message shows the decision

    for action_id in _OPENED_BY:
        # Acked at once; the form opens as a lazy listener, within the trigger's 3 seconds.
        app.action(action_id)(ack=ack_only, lazy=[open_form])
    for callback_id in _FORMS:
        app.view(callback_id)(ack_form)
        app.view_closed(callback_id)(ack_only)  # closing it changes nothing


def _not_opened(verb: str, request_id: int, why: str) -> str:
    usage = USAGE[verb].split("   ")[0].replace("<request>", str(request_id))
    return (
        f"Slack did not open the form ({why}); nothing was changed. Click again, or type `{usage}`."
    )
