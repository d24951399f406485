"""From requests and outcomes to neutral views and texts that every transport can show.

Text uses a small markup both Slack and a terminal read well: `code`, *bold*. User ids stay
ids in views; each transport decides how to show a person.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from bot.config import BotConfig
from bot.core.commands import USAGE, UsageError
from bot.core.model import BOT_ACTOR, AuditEntry, Fact, Outcome, Request, Scope, State
from bot.core.policy import Policy, describe

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
    approvers: tuple[str, ...]
    decided_by: str | None
    policy: str
    facts: tuple[Fact, ...]
    warnings: tuple[str, ...]
    outcome: Outcome | None
    buttons: bool

    @property
    def summary(self) -> str:
        """A one-line plain text, for notifications and fallbacks."""
        return f"#{self.request_id} {self.title}: {self.status}"


def request_view(request: Request, policy: Policy) -> RequestView:
    state = request.state
    status = _STATUS[state]
    if state is State.PENDING and policy.approvals:
        status += f" ({len(request.approvals)} of {policy.approvals})"
    if request.outcome is not None and state.is_final:
        status += f": {request.outcome.headline}"
    preview = request.preview
    return RequestView(
        request_id=request.id,
        title=request.action.title,
        target=request.action.target,
        state=state,
        status=status,
        requester=request.requester,
        approvers=tuple(request.approvers),
        decided_by=request.decided_by,
        policy=describe(policy, request.expires_at if state.is_open else None),
        facts=tuple(preview.facts) if preview else (),
        warnings=tuple(preview.warnings) if preview else (),
        outcome=request.outcome,
        buttons=state.is_open,
    )


def usage_error(error: UsageError) -> str:
    text = error.message
    if error.usage:
        forms = "\n".join(f"`{line}`" for line in error.usage.splitlines())
        text += f"\nUsage:\n{forms}"
    return text


_COMMANDS: list[tuple[Scope | None, str, str]] = [
    (Scope.PUBLISH_BUNDLE, USAGE["znyx"], "promote a Znyx policy bundle one stage"),
    (Scope.MANAGE_BUILDS, USAGE["whop"], "make a Whop app build the production build"),
    (Scope.MANAGE_BUILDS, USAGE["appstore"], "attach a build to an App Store version"),
    (Scope.MANAGE_BUILDS, USAGE["appstore expire"], "expire an App Store build"),
    (Scope.MANAGE_BUILDS, USAGE["appstore encryption"], "declare a build's encryption"),
    (None, USAGE["status"], "a request's state, approvals and timeline"),
    (None, USAGE["history"], "the last 20 events, for one target if given"),
    (None, USAGE["cancel"], "cancel a pending request (yours, or one you could approve)"),
    (None, USAGE["help"], "this help"),
]


def help_text(config: BotConfig, user: str) -> str:
    """What `user` may do, as the role map stands now."""
    role_map = config.role_map
    scopes = role_map.scopes_of(user)
    lines = ["*promote-bot* — promote releases, with approvals and an audit trail."]
    allowed = [
        (form, what)
        for scope, form, what in _COMMANDS
        if (scope in scopes) or (scope is None and (scopes or form == USAGE["help"]))
    ]
    lines += [f"• `{form}` — {what}" for form, what in allowed]
    if config.znyx and Scope.PUBLISH_BUNDLE in scopes:
        projects = ", ".join(sorted(config.znyx.projects)) or "none"
        lines.append(f"Znyx projects: {projects}. Stages: dev → staging → prod.")
    if config.whop and Scope.MANAGE_BUILDS in scopes:
        apps = ", ".join(sorted(config.whop.apps)) or "none (give the app_… id)"
        lines.append(f"Whop apps: {apps}.")
    if config.appstore and Scope.MANAGE_BUILDS in scopes:
        apps = ", ".join(sorted(config.appstore.apps)) or "none (give the app id)"
        lines.append(f"App Store apps: {apps}.")
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


def status_text(request: Request, policy: Policy, timeline: list[AuditEntry]) -> str:
    """`/promote status`: state, approvals, policy, timeline (oldest first), outcome."""
    view = request_view(request, policy)
    approvers = ", ".join(user(u) for u in view.approvers) or "none yet"
    lines = [
        f"*#{request.id} {view.title}* — {view.status}",
        f"Target `{view.target}` · requested by {user(request.requester)} · approvals: {approvers}",
        f"Policy: {view.policy}",
        "Timeline:",
    ]
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
