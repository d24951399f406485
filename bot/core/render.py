"""From requests and outcomes to neutral views and texts that every transport can show.

Text uses a small markup both Slack and a terminal read well: `code`, *bold*. User ids stay
ids in views; each transport decides how to show a person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.core import authz
from bot.core.authz import RoleMap, WhoCanApprove
from bot.core.commands import USAGE, UsageError, usage
from bot.core.model import BOT_ACTOR, AuditEntry, Fact, Outcome, Request, State
from bot.core.policy import Policy, describe
from bot.core.rules import CommandForm, Rules

_STATUS = {
    State.PENDING: "⏳ Waiting for approval",
    State.APPROVED: "⏳ Approved, about to run",
    State.EXECUTING: "🔄 Promoting now…",
    State.SUCCEEDED: "✅ Promoted",
    State.FAILED: "❌ Failed",
    State.UNKNOWN: "⚠️ Outcome unknown",
    State.REJECTED: "🚫 Rejected",
    State.CANCELLED: "🚫 Cancelled",
    State.EXPIRED: "⌛ Expired",
}


@dataclass(frozen=True)
class RequestView:
    """Everything a release message shows, in the order it shows it."""

    request_id: int
    title: str
    target: str
    state: State
    status: str
    requester: str
    approvers: tuple[str, ...]  # approvals that count (while open: under the rules as they are now)
    decided_by: str | None
    policy: str
    facts: tuple[Fact, ...]
    warnings: tuple[str, ...]
    outcome: Outcome | None
    buttons: bool
    discounted: tuple[str, ...] = ()  # approved, but no longer hold a role that lets them
    can_approve: WhoCanApprove = field(default_factory=WhoCanApprove)  # while it waits
    rolls_back: int | None = None  # the request this rollback undoes
    rolled_back_by: int | None = None  # the rollback that undid this request
    can_roll_back: bool = False  # succeeded, not undone yet, and not a one-way change

    @property
    def link(self) -> str | None:
        """ "Rolls back #3" or "Rolled back by #5": how it relates to another request."""
        if self.rolled_back_by is not None:
            return f"↩️ Rolled back by #{self.rolled_back_by}"
        if self.rolls_back is not None:
            return f"↩️ Rolls back #{self.rolls_back}"
        return None

    @property
    def summary(self) -> str:
        """A one-line plain text, for notifications and fallbacks."""
        return f"#{self.request_id} {self.title}: {self.status}"


def request_view(request: Request, policy: Policy, role_map: RoleMap | None = None) -> RequestView:
    """The release message of `request`. With `role_map`, an open request counts only the
    approvals that still hold under it and says who can approve; without, every approval counts."""
    state = request.state
    approvers = tuple(request.approvers)
    discounted: tuple[str, ...] = ()
    can_approve = WhoCanApprove()
    if role_map is not None and state.is_open:
        approvers = tuple(authz.counted_approvers(role_map, policy, request))
        discounted = tuple(u for u in request.approvers if u not in approvers)
        if state is State.PENDING and policy.approvals:
            can_approve = authz.who_can_approve(role_map, policy, request)
    status = _STATUS[state]
    if state is State.PENDING and policy.approvals:
        status += f" ({len(approvers)} of {policy.approvals})"
    if request.outcome is not None and state.is_final:
        status += f": {request.outcome.headline}"
    if request.rolled_back_by is not None:
        status += f" (rolled back by #{request.rolled_back_by})"
    preview = request.preview
    return RequestView(
        request_id=request.id,
        title=request.action.title,
        target=request.action.target,
        state=state,
        status=status,
        requester=request.requester,
        approvers=approvers,
        decided_by=request.decided_by,
        policy=describe(policy, request.expires_at if state.is_open else None),
        facts=tuple(preview.facts) if preview else (),
        warnings=tuple(preview.warnings) if preview else (),
        outcome=request.outcome,
        buttons=state.is_open,
        discounted=discounted,
        can_approve=can_approve,
        rolls_back=request.rolls_back,
        rolled_back_by=request.rolled_back_by,
        can_roll_back=state is State.SUCCEEDED
        and request.rolled_back_by is None
        and request.action.reversible,
    )


def usage_error(error: UsageError) -> str:
    text = error.message
    if error.usage:
        forms = "\n".join(f"`{line}`" for line in error.usage.splitlines())
        text += f"\nUsage:\n{forms}"
    return text


_CORE_FORMS: list[tuple[str, str]] = [
    ("status", "a request's state, approvals and timeline"),
    ("history", "the last 20 events, for one target if given"),
    ("cancel", "cancel a pending request (yours, or one you could approve)"),
    ("rollback", "undo a succeeded promotion: a new request that restores what it replaced"),
]


def help_text(rules: Rules, user: str) -> str:
    """What `user` may do, as the role map stands now."""
    role_map = rules.role_map
    scopes = role_map.scopes_of(user)
    lines = ["*promote-bot* — promote releases, with approvals and an audit trail."]
    forms: list[CommandForm] = []
    notes: list[str] = []
    for provider in rules.providers.values():
        mine = [f for f in provider.forms if f.scope in scopes]
        forms += mine
        note = provider.help_line() if mine else None
        if note:
            notes.append(note)
    if scopes:
        forms += [CommandForm(None, usage(key, rules), what) for key, what in _CORE_FORMS]
    forms.append(CommandForm(None, USAGE["help"], "this help"))
    lines += [f"• `{form.usage}` — {form.what}" for form in forms]
    lines += notes
    roles = ", ".join(role_map.roles_of(user)) or "none"
    if not scopes:
        lines.append("You have no role that lets you request or approve promotions.")
    lines.append(f"Your roles: {roles}.")
    return "\n".join(lines)


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


def status_text(
    request: Request,
    policy: Policy,
    timeline: list[AuditEntry],
    role_map: RoleMap | None = None,
) -> str:
    """`/promote status`: state, approvals, policy, timeline (oldest first), outcome."""
    view = request_view(request, policy, role_map)
    approvers = ", ".join(user(u) for u in view.approvers) or "none yet"
    if view.discounted:
        approvers += " (no longer counting: " + ", ".join(user(u) for u in view.discounted) + ")"
    lines = [
        f"*#{request.id} {view.title}* — {view.status}",
        f"Target `{view.target}` · requested by {user(request.requester)} · approvals: {approvers}",
        f"Policy: {view.policy}",
    ]
    if view.link:
        lines.append(view.link)
    if view.can_approve:
        lines.append(f"Can approve: {who_can_approve_text(view.can_approve)}")
    lines.append("Timeline:")
    for entry in reversed(timeline):
        detail = f" — {entry.detail}" if entry.detail else ""
        lines.append(f"• {fmt_time(entry.at)} {entry.event} by {user(entry.actor)}{detail}")
    if request.outcome is not None:
        lines += [f"• {f.label}: `{f.value}`" for f in request.outcome.facts]
        if request.outcome.check:
            lines.append(f"What to check: {request.outcome.check}")
    return "\n".join(lines)


def history_text(entries: list[AuditEntry], target: str | None) -> str:
    """`/promote history`: the newest audit entries, newest first."""
    scope = f" for `{target}`" if target else ""
    if not entries:
        return f"No history{scope} yet."
    lines = [f"*Last {len(entries)} events{scope}* (newest first):"]
    for e in entries:
        ref = f"#{e.request_id} " if e.request_id is not None else ""
        where = f" `{e.target}`" if e.target else ""
        detail = f" — {e.detail}" if e.detail else ""
        lines.append(f"• {fmt_time(e.at)} {ref}{e.event}{where} by {user(e.actor)}{detail}")
    return "\n".join(lines)
