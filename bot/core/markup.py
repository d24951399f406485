"""The small markup every text the core shows is written in, and how it names people, groups
and moments. Both Slack and a terminal read it: `code`, *bold*, `<@U1>` for a person (each
transport shows a person its own way). Pure."""

from __future__ import annotations

import re
from datetime import datetime

from bot.core.authz import WhoCanApprove
from bot.core.model import BOT_ACTOR, plain

__all__ = ["fmt_time", "group", "plain", "user", "who_can_approve_text"]

_PERSON = re.compile(r"^[UW][A-Z0-9_]{2,}$")  # a Slack user id (the shell's too)


def fmt_time(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def user(user_id: str) -> str:
    """A reference to a person in reply texts; transports show it their own way. An actor
    that is no Slack user (a provider's own name for who changed something outside the bot)
    is shown as the words it is."""
    if user_id == BOT_ACTOR:
        return "the bot"
    return f"<@{user_id}>" if _PERSON.match(user_id) else f"`{user_id}`"


def group(group_id: str) -> str:
    """A reference to a Slack user group in reply texts."""
    return f"<!subteam^{group_id}>"


def who_can_approve_text(who: WhoCanApprove) -> str:
    """ "<!subteam^S1>" or "<@U1>, <@U2> and 3 more", in the small markup of reply texts."""
    if who.groups:
        return " or ".join(group(g) for g in who.groups)
    text = ", ".join(user(u) for u in who.people)
    return text + (f" and {who.more} more" if who.more else "")
