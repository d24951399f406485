"""What a release message shows, and the lists and tabs made of them: neutral views of the
core's data that every transport renders its own way (Block Kit, a terminal). Pure.

Text in views is the core's small markup (bot/core/markup.py): what came from outside (a
provider's facts, warnings and outcome, a reason) is escaped once here, as the view is made, so
transports show views as they are; user ids stay ids, and each transport decides how to show a
person.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.core import authz
from bot.core.authz import RoleMap, WhoCanApprove
from bot.core.figures import TargetFigures
from bot.core.freezes import Freeze, fmt, fmt_in, next_freeze, running
from bot.core.markup import literal, user
from bot.core.model import AuditEntry, Fact, Lock, Outcome, Request, State
from bot.core.policy import Policy, describe
from bot.core.timing import Timing

_STATUS = {
    State.PENDING: "⏳ Waiting for approval",
    State.APPROVED: "⏳ Approved, about to run",
    State.EXECUTING: "🔄 {doing} now…",
    State.SUCCEEDED: "✅ {done}",
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
    reason: str | None = None  # why it was rejected or cancelled (people's text, in the markup)
    comments: tuple[tuple[str, str], ...] = ()  # (approver, what they said), in the markup
    # While open: what moved since its preview, as the provider shows it now (in the markup).
    drift: str | None = None
    # While open: what it waits for (its schedule, soak, window), one line each (markup).
    timing: tuple[str, ...] = ()
    runs: str | None = None  # "runs at Tue 2026-12-15 14:05 Europe/Berlin", while it waits

    @property
    def summary(self) -> str:
        """A one-line plain text, for notifications and fallbacks."""
        return f"#{self.request_id} {self.title}: {self.status}"


def request_view(
    request: Request,
    policy: Policy,
    role_map: RoleMap | None = None,
    holds: Sequence[str] = (),
    timing: Sequence[str] = (),
    runs: str | None = None,
) -> RequestView:
    """The release message of `request`. With `role_map`, an open request counts only the
    approvals that still hold under it and says who can approve; without, every approval counts.
    `holds` are the locks and freezes on its target now, `timing` what it waits for and `runs`
    when it runs (shown while it is open)."""
    state = request.state
    approvers = tuple(request.approvers)
    discounted: tuple[str, ...] = ()
    can_approve = WhoCanApprove()
    if role_map is not None and state.is_open:
        approvers = tuple(authz.counted_approvers(role_map, policy, request))
        discounted = tuple(u for u in request.approvers if u not in approvers)
        if state is State.PENDING and policy.approvals:
            can_approve = authz.who_can_approve(role_map, policy, request)
    action = request.action
    status = _STATUS[state].format(doing=action.doing, done=action.done)  # the action's words
    if state is State.APPROVED and runs:
        status = f"⏳ Approved, {runs}"
    if state is State.PENDING and policy.approvals:
        status += f" ({len(approvers)} of {policy.approvals})"
    if request.outcome is not None and state.is_final:
        status += f": {literal(request.outcome.headline)}"
    if request.rolled_back_by is not None:
        status += f" (rolled back by #{request.rolled_back_by})"
    drift = request.drift if state.is_open else None
    if drift is not None:
        moved = literal(f"{drift.what} is {drift.now} now")
        status = f"⚠️ Out of date: {moved}; approving will not promote it"
    preview = request.preview
    return RequestView(
        request_id=request.id,
        title=literal(request.action.title),
        target=literal(request.action.target),
        state=state,
        status=status,
        requester=request.requester,
        approvers=approvers,
        decided_by=request.decided_by,
        policy=describe(policy, request.expires_at if state.is_open else None),
        facts=_literal_facts(preview.facts) if preview else (),
        warnings=tuple(literal(w) for w in preview.warnings) if preview else (),
        outcome=_literal_outcome(request.outcome),
        buttons=state.is_open,
        discounted=discounted,
        can_approve=can_approve,
        rolls_back=request.rolls_back,
        rolled_back_by=request.rolled_back_by,
        can_roll_back=state is State.SUCCEEDED
        and request.rolled_back_by is None
        and request.action.reversible,
        holds=tuple(holds) if state.is_open else (),
        emergency=literal(request.emergency) if request.emergency else None,
        reason=literal(request.reason) if request.reason else None,
        comments=tuple((a.user, literal(a.comment)) for a in request.approvals if a.comment),
        drift=literal(f"{drift.provider} shows {drift.sentence}") if drift is not None else None,
        timing=tuple(timing) if state.is_open else (),
        runs=runs if state.is_open else None,
    )


def _literal_facts(facts: Sequence[Fact]) -> tuple[Fact, ...]:
    return tuple(Fact(label=literal(f.label), value=literal(f.value)) for f in facts)


def _literal_outcome(outcome: Outcome | None) -> Outcome | None:
    """The outcome with the provider's words in the markup (for the view only)."""
    if outcome is None:
        return None
    return outcome.model_copy(
        update={
            "headline": literal(outcome.headline),
            "facts": list(_literal_facts(outcome.facts)),
            "check": literal(outcome.check) if outcome.check else None,
        }
    )


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
    runs: str | None = None  # when it runs, while it waits for its time


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
        emergency=view.emergency,
        runs=view.runs,
    )


@dataclass(frozen=True)
class HoldsView:
    """Locks and freezes in force, and the next freeze to start."""

    locks: tuple[str, ...] = ()
    freezes: tuple[str, ...] = ()
    next_freeze: str | None = None


def holds_view(locks: Sequence[Lock], freezes: Sequence[Freeze], now: datetime) -> HoldsView:
    lock_lines = tuple(
        f"🔒 `{lock.pattern}` locked by {user(lock.by)} since {fmt(lock.at)}: "
        f"{literal(lock.reason)}"
        for lock in locks
    )
    freeze_lines = tuple(
        f"❄️ {literal(freeze.reason)} on {', '.join(f'`{t}`' for t in freeze.targets)}, "
        f"until {fmt(window.end, freeze)}"
        for freeze, window in running(freezes, now)
    )
    upcoming = next_freeze(freezes, now)
    next_line = None
    if upcoming is not None:
        freeze, start = upcoming
        targets = ", ".join(f"`{t}`" for t in freeze.targets)
        next_line = f"{literal(freeze.reason)} on {targets}, from {fmt(start, freeze)}"
    return HoldsView(lock_lines, freeze_lines, next_line)


@dataclass(frozen=True)
class HomeView:
    """The App Home of one person."""

    user: str
    waiting: tuple[ListedRequest, ...]  # they may approve, and haven't
    mine: tuple[ListedRequest, ...]  # they asked for, still open
    holds: HoldsView
    events: tuple[AuditEntry, ...]  # newest first
    notify: bool = True  # do they get direct messages
    # What the releases of the last `figure_days` days add up to, per target they may see
    # (None: not shown, to someone with no role).
    figures: tuple[TargetFigures, ...] | None = None
    figure_days: int = 7


@dataclass(frozen=True)
class NoticeView:
    """A direct message to one person about one request: "{emoji} {lead} by {by}", the
    request, and what was said or what came of it. In the core's markup, like every view
    (people's and providers' text escaped once, by `notice_view`); user ids stay ids."""

    key: str  # unique per request, person and event: how a lost one is found again
    user: str  # who is told
    request_id: int
    emoji: str
    lead: str  # "Your request #3 was rejected", "#3 waits for your approval"
    by: str | None  # who did it, if a person
    title: str
    target: str
    requester: str
    label: str | None = None  # "Reason", "Comment", "Outcome", "🚨 Emergency"
    detail: str | None = None
    check: str | None = None  # for an unknown outcome: what to look at
    expires: datetime | None = None  # for a request waiting for approval
    link: str | None = None  # to the release message, when the chat has links

    @property
    def summary(self) -> str:
        """One line of plain text, for notifications and fallbacks."""
        return f"{self.emoji} {self.lead}: {self.title}"


# --- what a request waits for -----------------------------------------------------------


def timing_lines(
    timing: Timing | None, *, zone: str, now: datetime, waiting: bool
) -> tuple[str, ...]:
    """What a release message shows of `timing` while the request is open, in the core's
    markup (the provider's words in it as literal text; `held` is markup already); times in
    `zone` (the config's `timezone`). `waiting`: it has its approvals."""
    if timing is None:
        return ()
    out = []
    if timing.run_at is not None:
        line = f"🕘 Scheduled for {fmt_in(timing.run_at, timing.zone or zone)}"
        out.append(line + (f" ({literal(timing.at_note)})" if timing.at_note else ""))
    if timing.restarted:
        out.append(f"↻ {literal(timing.restarted)}")
    if timing.soak_unread:
        out.append(f"🧪 Soak: {literal(timing.soak_unread)}")
    elif timing.soak_until is not None and timing.soak_since is not None:
        where, what = literal(timing.soak_place or ""), literal(timing.soak_shown or "")
        since = fmt_in(timing.soak_since, zone)
        if timing.soak_until > now:
            out.append(
                f"🧪 Soaking in {where}: {what} is live there since {since}; can run from "
                f"{fmt_in(timing.soak_until, zone)}"
            )
        else:
            out.append(f"🧪 Soaked in {where}: {what} is live there since {since}")
    if timing.never:
        out.append(f"⛔ Can't run: {timing.never}")
    elif timing.window is not None and timing.window_opens is not None:
        verb = "Waits for" if waiting else "Runs only in"
        out.append(
            f"🪟 {verb} the window {literal(timing.window)} (it opens "
            f"{fmt_in(timing.window_opens, zone)})"
        )
    if timing.held:
        out.append(f"⏸ {timing.held}")
    return tuple(out)
