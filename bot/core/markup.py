"""The small markup every text the core shows is written in, and how it names people, groups
and moments. Both Slack and a terminal read it: `code`, *bold*, `<@U1>` for a person (each
transport shows a person its own way), `<url|label>` for a link. Pure.

One escaping rule: text from outside (a provider's words, a reason someone typed, the config's
freeze reasons, an audit entry's detail) enters the markup through `literal` exactly once, where
a text is composed, so it can't ping, link or format anything; it is stored raw, and nothing
escapes it a second time. Slack reads the markup as it is; the shell shows it plain (`unescape`
after it has turned people and links into words)."""

from __future__ import annotations

from datetime import datetime

from bot.core.authz import WhoCanApprove
from bot.core.controls import replaced
from bot.core.model import BOT_ACTOR


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
    """A reference to a person in reply texts; transports show it their own way."""
    return "the bot" if user_id == BOT_ACTOR else f"<@{user_id}>"


def group(group_id: str) -> str:
    """A reference to a Slack user group in reply texts."""
    return f"<!subteam^{group_id}>"


def who_can_approve_text(who: WhoCanApprove) -> str:
    """ "<!subteam^S1>" or "<@U1>, <@U2> and 3 more", in the small markup of reply texts."""
    if who.groups:
        return " or ".join(group(g) for g in who.groups)
    text = ", ".join(user(u) for u in who.people)
    return text + (f" and {who.more} more" if who.more else "")
