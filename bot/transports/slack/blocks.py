"""Block Kit for release messages and their thread replies. Pure functions of a view.

Views are in the core's markup, which is Slack's mrkdwn: outside text in them is escaped
already (bot/core/markup.py), so it goes into mrkdwn as it is and is never escaped again here;
only `plain_text` objects, which Slack shows verbatim, get it unescaped."""

from __future__ import annotations

from bot.core.holds import few
from bot.core.markup import fmt_time, unescape, user, who_can_approve_text
from bot.core.model import State
from bot.core.render import HomeView, NoticeView, RequestView
from bot.core.stats import home_lines
from bot.core.texts import event_line, listed_line

APPROVE = "promote_approve"
APPROVE_COMMENT = "promote_approve_comment"  # opens a form for a comment, then approves
REJECT = "promote_reject"  # opens a form for the reason, then rejects
ROLLBACK = "promote_rollback"

_SECTION_LIMIT = 3000
_FIELD_LIMIT = 2000
_HEADER_LIMIT = 150


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn(text: str, limit: int = _SECTION_LIMIT) -> dict:
    return {"type": "mrkdwn", "text": _cut(text, limit)}


def rollback_button(view: RequestView) -> dict:
    """Roll back: opens a new request that restores what this promotion replaced."""
    return {
        "type": "actions",
        "block_id": f"rollback_{view.request_id}",
        "elements": [
            {
                "type": "button",
                "action_id": ROLLBACK,
                "text": {"type": "plain_text", "text": "Roll back"},
                "value": str(view.request_id),
                "confirm": {
                    "title": {"type": "plain_text", "text": "Ask to roll this back?"},
                    "text": _mrkdwn(
                        _cut(f"A new request will undo #{view.request_id}: {view.title}", 250)
                    ),
                    "confirm": {"type": "plain_text", "text": "Ask"},
                    "deny": {"type": "plain_text", "text": "Not now"},
                },
            }
        ],
    }


def said_lines(view: RequestView) -> list[str]:
    """What people said: each approver's comment, and why it was rejected or cancelled."""
    lines = [f"💬 {user(who)}: {text}" for who, text in view.comments]
    if view.reason and view.state in (State.REJECTED, State.CANCELLED):
        lines.append(f"*Reason:* {view.reason}")
    return lines


def release_message(view: RequestView) -> list[dict]:
    """The release message: what, who, the policy, what changes, and the buttons while open."""
    people = [f"Requested by {user(view.requester)}"]
    if view.approvers:
        people.append("approved by " + ", ".join(user(u) for u in view.approvers))
    if view.discounted:
        people.append("no longer counting: " + ", ".join(user(u) for u in view.discounted))
    if view.decided_by and view.state in (State.REJECTED, State.CANCELLED):
        people.append(f"{view.state.value} by {user(view.decided_by)}")
    who = f"\nCan approve: {who_can_approve_text(view.can_approve)}" if view.can_approve else ""
    if view.link:
        who += f"\n{view.link}"
    blocks: list[dict] = [
        {
            "type": "header",
            "text": {
                "type": "plain_text",
                "text": _cut(f"Promote {unescape(view.title)}", _HEADER_LIMIT),
            },
        },
        {
            "type": "section",
            "text": _mrkdwn(f"*{view.status}*\n" + "; ".join(people) + who),
        },
    ]
    if view.facts:
        blocks.append(
            {
                "type": "section",
                "fields": [
                    _mrkdwn(f"*{f.label}*\n{f.value}", _FIELD_LIMIT) for f in view.facts[:10]
                ],
            }
        )
    for warning in view.warnings:
        blocks.append({"type": "context", "elements": [_mrkdwn(f"⚠️ {warning}")]})
    if view.emergency:
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(
                    f"🚨 *Emergency* (passes locks and freezes, needs one approval more): "
                    f"{view.emergency}"
                ),
            }
        )
    for hold in view.holds:
        blocks.append({"type": "section", "text": _mrkdwn(hold)})
    if view.timing:  # the core's markup, like the holds: what it waits for
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(view.timing))})
    said = said_lines(view)
    if said:
        blocks.append({"type": "section", "text": _mrkdwn("\n".join(said))})
    if view.drift:
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(
                    f"⚠️ *Out of date:* {view.drift}.\nApproving will not promote it "
                    f"(nothing would be sent): cancel it with `/promote cancel "
                    f"{view.request_id}` and ask again."
                ),
            }
        )
    if view.buttons:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"request_{view.request_id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE,
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": str(view.request_id),
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Approve this promotion?"},
                            "text": _mrkdwn(_cut(view.title, 250)),
                            "confirm": {"type": "plain_text", "text": "Approve"},
                            "deny": {"type": "plain_text", "text": "Not yet"},
                        },
                    },
                    {
                        "type": "button",
                        "action_id": APPROVE_COMMENT,
                        "text": {"type": "plain_text", "text": "Approve with comment…"},
                        "value": str(view.request_id),
                    },
                    {
                        "type": "button",
                        "action_id": REJECT,
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Reject…"},
                        "value": str(view.request_id),
                    },
                ],
            }
        )
    if view.can_roll_back:
        blocks.append(rollback_button(view))
    blocks.append(
        {
            "type": "context",
            "elements": [_mrkdwn(f"Request #{view.request_id} · `{view.target}` · {view.policy}")],
        }
    )
    return blocks


def release_message_of(message_blocks: object) -> int | None:
    """The request whose release message these blocks are (as `release_message` lays it out:
    a "Promote …" header first, "Request #N · …" last, every button carrying N in the block of
    that request), or None for any other message. What a click's payload carries as
    `message.blocks` is what Slack shows, so a click can't pass one message off as another."""
    if not isinstance(message_blocks, list) or len(message_blocks) < 3:
        return None
    if not all(isinstance(b, dict) for b in message_blocks):
        return None
    first, last = message_blocks[0], message_blocks[-1]
    title = (first.get("text") or {}).get("text") if first.get("type") == "header" else None
    if not isinstance(title, str) or not title.startswith("Promote "):
        return None
    elements = last.get("elements") if last.get("type") == "context" else None
    footer = elements[0].get("text") if isinstance(elements, list) and elements else None
    if not isinstance(footer, str) or not footer.startswith("Request #"):
        return None
    number = footer.removeprefix("Request #").split(" ", 1)[0]
    if not number.isdecimal():
        return None
    request_id = int(number)
    block_ids = {
        APPROVE: "request",
        APPROVE_COMMENT: "request",
        REJECT: "request",
        ROLLBACK: "rollback",
    }
    for block in message_blocks:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            action = element.get("action_id") if isinstance(element, dict) else None
            kind = block_ids.get(action)  # type: ignore[arg-type]
            if kind is None or element.get("value") != number:
                return None
            if block.get("block_id") != f"{kind}_{request_id}":
                return None
    return request_id


def thread_reply(view: RequestView) -> tuple[str, list[dict]]:
    """The outcome under the release message, with the provider's own identifiers."""
    if view.outcome is not None:
        outcome = view.outcome
        lines = [f"*{view.status}*"]
        lines += [f"• {f.label}: `{f.value}`" for f in outcome.facts]
        if view.approvers:
            lines.append(
                f"Requested by {user(view.requester)}, approved by "
                + ", ".join(user(u) for u in view.approvers)
            )
        if outcome.check:
            lines.append(f"What to check: {outcome.check}")
        lines += said_lines(view)
    else:
        who = f" by {user(view.decided_by)}" if view.decided_by else ""
        lines = [f"*{view.status}*{who}", *said_lines(view)]
    if view.rolls_back is not None:
        lines.append(f"↩️ Rolls back #{view.rolls_back}")
    text = "\n".join(lines)
    reply = [{"type": "section", "text": _mrkdwn(text)}]
    if view.can_roll_back:
        reply.append(rollback_button(view))
    return view.summary, reply


def note(text: str) -> list[dict]:
    """A message of the bot's own (a change made outside it, a provider confirming one), its
    text in the core's markup."""
    return [{"type": "section", "text": _mrkdwn(text)}]


def notice(view: NoticeView) -> tuple[str, list[dict]]:
    """A direct message to one person: what happened, by whom, to which request, what was
    said or what came of it, and a link to the release message."""
    lines = [f"{view.emoji} *{view.lead}*" + (f" by {user(view.by)}" if view.by else "")]
    about = f"{view.title} · `{view.target}`"
    if view.requester != view.user:
        about += f" · asked by {user(view.requester)}"
    if view.expires is not None:
        about += f" · expires {fmt_time(view.expires)}"
    lines.append(about)
    if view.detail:
        lines.append(f"*{view.label or 'Detail'}:* {view.detail}")
    if view.check:
        lines.append(f"What to check: {view.check}")
    if view.link:
        lines.append(f"<{view.link}|Open the release message>")
    footer = "promote-bot tells you this directly. `/promote notify off` stops these messages."
    return view.summary, [
        {"type": "section", "text": _mrkdwn("\n".join(lines))},
        {"type": "context", "elements": [_mrkdwn(footer)]},
    ]


# --- the App Home ------------------------------------------------------------------------

_HOME_BLOCKS = 100  # Slack's limit for a home tab
_HOME_HOLDS = 10  # locks and freezes the home tab lists; the rest are counted


def home_tab(view: HomeView) -> dict:
    """The App Home of one person, as a `home` view for views.publish."""
    blocks: list[dict] = []

    def header(text: str) -> None:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": text}})

    def lines(items: list[str], empty: str) -> None:
        for item in items or [empty]:
            blocks.append({"type": "section", "text": _mrkdwn(item)})

    header("Waiting for your approval")
    lines([listed_line(i) for i in view.waiting[:20]], "_Nothing is waiting for you._")
    blocks.append({"type": "divider"})
    header("Your open requests")
    lines([listed_line(i) for i in view.mine[:20]], "_You have no open request._")
    blocks.append({"type": "divider"})
    header("Locks and freezes")
    holds = view.holds
    lines(
        list(few([*holds.locks, *holds.freezes], _HOME_HOLDS)), "_Nothing is locked or frozen now._"
    )
    if holds.next_freeze:
        blocks.append(
            {"type": "context", "elements": [_mrkdwn(f"Next freeze: {holds.next_freeze}")]}
        )
    blocks.append({"type": "divider"})
    header(f"Last {len(view.events)} events" if view.events else "Events")
    events = "\n".join(f"• {event_line(e)}" for e in view.events)  # the core's markup
    lines([events] if events else [], "_Nothing has happened yet._")
    if view.figures is not None:
        blocks.append({"type": "divider"})
        header(f"What the last {view.figure_days} days add up to")
        figures = "\n".join(f"• {line}" for line in home_lines(view.figures, view.figure_days))
        lines(
            [figures] if figures else [],
            f"_No request you may see ended in the last {view.figure_days} days._",
        )
        blocks.append(
            {"type": "context", "elements": [_mrkdwn("Per target: `/promote stats` for more.")]}
        )
    dms = (
        "Direct messages: on (your requests' decisions and outcomes, and what waits for you)."
        " `/promote notify off` stops them."
        if view.notify
        else "Direct messages: off. `/promote notify on` sends them again."
    )
    blocks.append({"type": "context", "elements": [_mrkdwn(dms)]})
    return {"type": "home", "blocks": blocks[:_HOME_BLOCKS]}
