"""From requests and outcomes to neutral views and texts that every transport can show.

Text uses a small markup both Slack and a terminal read well: `code`, *bold*. User ids stay
ids in views; each transport decides how to show a person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.core import authz
from bot.core.authz import RoleMap, WhoCanApprove
from bot.core.commands import USAGE, UsageError, usage
from bot.core.holds import Freeze, Lock, fmt, next_freeze, running
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

    holds: tuple[str, ...] = ()  # locks and freezes on its target, while it is open
    emergency: str | None = None  # break-glass: the reason it was asked for anyway

    @property
    def summary(self) -> str:
        """A one-line plain text, for notifications and fallbacks."""
        return f"#{self.request_id} {self.title}: {self.status}"


def request_view(
    request: Request,
    policy: Policy,
    role_map: RoleMap | None = None,
    holds: Sequence[str] = (),
) -> RequestView:
    """The release message of `request`. With `role_map`, an open request counts only the
    approvals that still hold under it and says who can approve; without, every approval counts.
    `holds` are the locks and freezes on its target now (shown while it is open)."""
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
        holds=tuple(holds) if state.is_open else (),
        emergency=request.emergency,
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
    ("pending", "the open requests you may act on, oldest first"),
    ("locks", "current locks and freezes, and the next freeze"),
    ("lock", "lock targets you hold the scope for (add --emergency <why> to a request to pass)"),
    ("unlock", "lift a lock"),
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


def event_line(e: AuditEntry) -> str:
    """One audit entry on one line."""
    ref = f"#{e.request_id} " if e.request_id is not None else ""
    where = f" `{e.target}`" if e.target else ""
    detail = f" — {e.detail}" if e.detail else ""
    return f"{fmt_time(e.at)} {ref}{e.event}{where} by {user(e.actor)}{detail}"


def history_text(entries: list[AuditEntry], target: str | None) -> str:
    """`/promote history`: the newest audit entries, newest first."""
    scope = f" for `{target}`" if target else ""
    if not entries:
        return f"No history{scope} yet."
    lines = [f"*Last {len(entries)} events{scope}* (newest first):"]
    lines += [f"• {event_line(e)}" for e in entries]
    return "\n".join(lines)


# --- what is pending, what holds, the home tab ------------------------------------------------


@dataclass(frozen=True)
class ListedRequest:
    """An open request in a list (`/promote pending`, the App Home)."""

    request_id: int
    title: str
    target: str
    status: str
    requester: str
    created_at: datetime
    link: str | None  # to its release message, when the chat has links
    held: bool  # a lock or a freeze stops it now
    emergency: str | None


def listed(request: Request, view: RequestView, link: str | None) -> ListedRequest:
    return ListedRequest(
        request_id=request.id,
        title=view.title,
        target=view.target,
        status=view.status,
        requester=request.requester,
        created_at=request.created_at,
        link=link,
        held=bool(view.holds) and not request.emergency,
        emergency=request.emergency,
    )


def listed_line(item: ListedRequest) -> str:
    """ "#3 guardrails … — ⏳ Waiting (0 of 1) · asked by <@U1> 2026-… · <link|open>"."""
    ref = f"<{item.link}|#{item.request_id}>" if item.link else f"#{item.request_id}"
    line = f"{ref} {item.title} — {item.status} · asked by {user(item.requester)}"
    line += f" {fmt_time(item.created_at)}"
    if item.emergency:
        line += f" · 🚨 {item.emergency}"
    if item.held:
        line += " · 🔒 held"
    return line


@dataclass(frozen=True)
class HoldsView:
    """Locks and freezes in force, and the next freeze to start."""

    locks: tuple[str, ...] = ()
    freezes: tuple[str, ...] = ()
    next_freeze: str | None = None


def holds_view(locks: Sequence[Lock], freezes: Sequence[Freeze], now: datetime) -> HoldsView:
    lock_lines = tuple(
        f"🔒 `{lock.pattern}` locked by {user(lock.by)} since {fmt(lock.at)}: {lock.reason}"
        for lock in locks
    )
    freeze_lines = tuple(
        f"❄️ {freeze.reason} on {', '.join(f'`{t}`' for t in freeze.targets)}, "
        f"until {fmt(window.end, freeze)}"
        for freeze, window in running(freezes, now)
    )
    upcoming = next_freeze(freezes, now)
    next_line = None
    if upcoming is not None:
        freeze, start = upcoming
        targets = ", ".join(f"`{t}`" for t in freeze.targets)
        next_line = f"{freeze.reason} on {targets}, from {fmt(start, freeze)}"
    return HoldsView(lock_lines, freeze_lines, next_line)


def locks_text(view: HoldsView) -> str:
    """`/promote locks`."""
    lines = ["*Locks*"] + [f"• {line}" for line in view.locks or ("none",)]
    lines += ["*Freezes now*"] + [f"• {line}" for line in view.freezes or ("none",)]
    lines.append(f"*Next freeze*: {view.next_freeze or 'none configured ahead'}")
    return "\n".join(lines)


def pending_text(items: Sequence[ListedRequest]) -> str:
    """`/promote pending`: the open requests the caller may act on, oldest first."""
    if not items:
        return "Nothing is waiting for you: no open request you could approve, reject or cancel."
    lines = [
        f"*{len(items)} open request{'s' if len(items) != 1 else ''} you may act on* "
        "(oldest first):"
    ]
    lines += [f"• {listed_line(item)}" for item in items]
    return "\n".join(lines)


@dataclass(frozen=True)
class HomeView:
    """The App Home of one person."""

    user: str
    waiting: tuple[ListedRequest, ...]  # they may approve, and haven't
    mine: tuple[ListedRequest, ...]  # they asked for, still open
    holds: HoldsView
    events: tuple[AuditEntry, ...]  # newest first
