"""The small markup every text the core shows is written in, and how it names people, groups
and moments. Both Slack and a terminal read it: `code`, *bold*, `<@U1>` for a person (each
transport shows a person its own way), `<url|label>` for a link. Pure.

One escaping rule: text from outside (a provider's words, a reason someone typed, the config's
freeze reasons, an audit entry's detail) enters the markup through `literal` exactly once, where
a text is composed, so it can't ping, link or format anything; it is stored raw, and nothing
escapes it a second time. Slack reads the markup as it is; the shell shows it plain (`unescape`
after it has turned people and links into words)."""

from __future__ import annotations

import re
from datetime import datetime

from bot.core.authz import WhoCanApprove
from bot.core.controls import replaced
from bot.core.model import BOT_ACTOR, State

_NOW = {
    State.PENDING: "is waiting for approval",
    State.APPROVED: "is approved and about to run",
    State.EXECUTING: "is running now",
    State.SUCCEEDED: "has ended: it succeeded",
    State.FAILED: "has ended: it failed",
    State.UNKNOWN: "has ended with an unknown outcome",
    State.REJECTED: "was rejected",
    State.CANCELLED: "was cancelled",
    State.EXPIRED: "has expired",
}


def where_it_is(state: State) -> str:
    """A request's state as the rest of a sentence: "Request #3 has ended: it succeeded"."""
    return _NOW[state]


_PERSON = re.compile(r"^[UW][A-Z0-9_]{2,}$")  # a Slack user id (the shell's too)


def literal(text: str) -> str:
    """Outside text as literal text of the markup: `&`, `<` and `>` (Slack's three control
    characters) as entities, and any real control character (an ANSI escape, U+202E) as `�`."""
    return replaced(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(text: str) -> str:
    """The text `literal` made (or Slack sent: it escapes the same three in what people type)
    as it was."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def fmt_time(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def user(user_id: str) -> str:
    """A reference to a person in reply texts; transports show it their own way. An actor
    that is no Slack user (a provider's own name for who changed something outside the bot)
    is shown as the words it is."""
    if user_id == BOT_ACTOR:
        return "the bot"
    return f"<@{user_id}>" if _PERSON.match(user_id) else literal(user_id)


def group(group_id: str) -> str:
    """A reference to a Slack user group in reply texts."""
    return f"<!subteam^{group_id}>"


def who_can_approve_text(who: WhoCanApprove) -> str:
    """ "<!subteam^S1>" or "<@U1>, <@U2> and 3 more", in the small markup of reply texts."""
    if who.groups:
        return " or ".join(group(g) for g in who.groups)
    text = ", ".join(user(u) for u in who.people)
    return text + (f" and {who.more} more" if who.more else "")
