"""The answers only the person who acted sees: help, usage errors, a request's status, the
history, what is pending, the locks. Pure functions of the core's data, in its small markup
(bot/core/markup.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bot.core.authz import RoleMap
from bot.core.commands import USAGE, UsageError, usage
from bot.core.freezes import fmt_in
from bot.core.markup import fmt_time, literal, user, who_can_approve_text
from bot.core.model import AuditEntry, Listing, Request
from bot.core.policy import Policy
from bot.core.render import HoldsView, ListedRequest, RequestView, request_view
from bot.core.rules import CommandForm, Rules
from bot.core.timing import Scheduled

# A reply's text stays under the 4,000 characters Slack advises for a message's text (it cuts
# messages past 40,000): long lists are cut at a line, saying how many lines were left out.
TEXT_LIMIT = 3900


def fit(head: Sequence[str], items: Sequence[str], tail: Sequence[str] = (), *, more: str) -> str:
    """`head`, as many of `items` as fit in `TEXT_LIMIT` with `tail`, and a line saying how
    many were left out (`more` is formatted with `n`). Pure."""
    budget = TEXT_LIMIT - sum(len(line) + 1 for line in (*head, *tail)) - len(more) - 12
    shown: list[str] = []
    for item in items:
        budget -= len(item) + 1
        if budget < 0:
            break
        shown.append(item)
    left = len(items) - len(shown)
    lines = [*head, *shown, *([more.format(n=left)] if left else []), *tail]
    return "\n".join(lines)


def usage_error(error: UsageError) -> str:
    text = error.message
    if error.usage:
        forms = "\n".join(f"`{line}`" for line in error.usage.splitlines())
        text += f"\nUsage:\n{forms}"
    return text


AT_USAGE = "/promote <provider …> --at <when>"
AT_WHAT = (
    "run it then, in your time zone: `--at 09:00`, `--at tomorrow 09:00`, "
    "`--at 2026-12-14 09:00` (approvals are collected now)"
)
_CORE_FORMS: list[tuple[str, str]] = [
    ("status", "a request's state, approvals and timeline"),
    ("history", "the last 20 events: of a target, a pattern, a provider or a request if given"),
    ("approve", "approve a pending request, saying something if you like"),
    ("reject", "reject a pending request, saying why (the requester is told)"),
    (
        "cancel",
        "cancel a pending request (yours, or one you could approve), saying why if you like",
    ),
    ("rollback", "undo a succeeded promotion: a new request that restores what it replaced"),
    ("pending", "the open requests you may act on, oldest first"),
    ("locks", "current locks and freezes, and the next freeze"),
    ("lock", "lock targets you hold the scope for (add --emergency <why> to a request to pass)"),
    ("unlock", "lift a lock"),
    ("notify", "direct messages about your requests and what waits for you: on (default) or off"),
    (
        "stats",
        "what the releases add up to, per target: how often, lead time, failure rate, "
        "time to restore (last 30 days unless --days)",
    ),
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
    if forms:
        forms.append(CommandForm(None, AT_USAGE, AT_WHAT))
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


def status_text(
    request: Request,
    policy: Policy,
    timeline: list[AuditEntry],
    role_map: RoleMap | None = None,
    shown: RequestView | None = None,
) -> str:
    """`/promote status`: state, approvals, policy, what it waits for, timeline (oldest
    first), outcome. `shown`: its release message as it is drawn (holds, timing)."""
    view = request_view(request, policy, role_map)
    if shown is not None:
        view = replace(view, status=shown.status, timing=shown.timing)
    said = dict(view.comments)
    approvers = (
        ", ".join(user(u) + (f" (“{said[u]}”)" if u in said else "") for u in view.approvers)
        or "none yet"
    )
    if view.discounted:
        approvers += " (no longer counting: " + ", ".join(user(u) for u in view.discounted) + ")"
    lines = [
        f"*#{request.id} {view.title}* — {view.status}",
        f"Target `{view.target}` · requested by {user(request.requester)} · approvals: {approvers}",
        f"Policy: {view.policy}",
        *view.timing,
    ]
    if view.decided_by and view.state.value in ("rejected", "cancelled"):
        why = f": {view.reason}" if view.reason else " (no reason given)"
        lines.append(f"{view.state.value.capitalize()} by {user(view.decided_by)}{why}")
    if view.link:
        lines.append(view.link)
    if view.can_approve:
        lines.append(f"Can approve: {who_can_approve_text(view.can_approve)}")
    lines.append("Timeline:")
    events = []
    for entry in reversed(timeline):
        detail = f" — {literal(_cut(entry.detail))}" if entry.detail else ""
        events.append(f"• {fmt_time(entry.at)} {entry.event} by {user(entry.actor)}{detail}")
    tail = []
    if view.outcome is not None:  # the view's: in the markup already
        tail += [f"• {f.label}: `{f.value}`" for f in view.outcome.facts]
        if view.outcome.check:
            tail.append(f"What to check: {view.outcome.check}")
    return fit(lines, events, tail, more="• … and {n} more events (`/promote history` has them)")


DETAIL_SHOWN = 400  # characters of an audit entry's detail a list shows


def _cut(text: str, limit: int = DETAIL_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def event_line(e: AuditEntry) -> str:
    """One audit entry on one line."""
    ref = f"#{e.request_id} " if e.request_id is not None else ""
    where = f" `{literal(e.target)}`" if e.target else ""
    detail = f" — {literal(_cut(e.detail))}" if e.detail else ""
    return f"{fmt_time(e.at)} {ref}{e.event}{where} by {user(e.actor)}{detail}"


def history_text(entries: list[AuditEntry], target: str | None) -> str:
    """`/promote history`: the newest audit entries, newest first; `target` is what they are
    of (a target, a pattern, "#3"), if anything."""
    scope = f" of `{target}`" if target else ""
    if not entries:
        return f"No history{scope} yet."
    head = [f"*Last {len(entries)} events{scope}* (newest first):"]
    lines = [f"• {event_line(e)}" for e in entries]
    return fit(head, lines, more="• … and {n} older ones")


def unknown_target_text(pattern: str, targets: Sequence[str], guess: str | None) -> str:
    """`/promote history <pattern>` when it matches no target of this bot and has no history."""
    mean = f" Did you mean `{guess}`?" if guess else ""
    shown = ", ".join(f"`{t}`" for t in targets[:12]) + (", …" if len(targets) > 12 else "")
    return (
        f"`{pattern}` matches no target of this bot, and nothing was ever recorded for it.{mean}"
        f"\nIts targets: {shown or 'none (no provider is configured)'}."
    )


def _cell(text: str) -> str:
    """A provider's text in a table cell: one line, no backticks to end the block, short;
    still raw (escaped once it is padded)."""
    text = " ".join(text.replace("`", "'").split())
    return text[:40] + ("…" if len(text) > 40 else "")


def listing_text(listing: Listing) -> str:
    """What a provider has (`whop builds`, `znyx bundles …`): a title, an aligned table in a
    code block, and its notes. All of it is the provider's plain text: each piece enters the
    markup through `literal` once (cells after they are aligned on their shown width)."""
    lines = [f"*{literal(listing.title)}*"]
    if listing.rows:
        table = [tuple(listing.columns)] + [tuple(_cell(c) for c in row) for row in listing.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(listing.columns))]
        body = [
            "  ".join(
                literal(c) + " " * (w - len(c)) for c, w in zip(row, widths, strict=True)
            ).rstrip()
            for row in table
        ]
        lines.append("```\n" + "\n".join(body) + "\n```")
    else:
        lines.append("Nothing to show.")
    lines += [literal(note) for note in listing.notes]
    return "\n".join(lines)


def listed_line(item: ListedRequest) -> str:
    """An open request in a list (`/promote pending`, the App Home): "<link|#3> *guardrails …*
    — ⏳ Waiting (0 of 1) · `znyx:guardrails:prod` · asked by <@U1> 2026-… · 🔒 held …"."""
    ref = f"<{item.link}|#{item.request_id}>" if item.link else f"#{item.request_id}"
    line = f"{ref} *{item.title}* — {item.status} · `{item.target}`"
    line += f" · asked by {user(item.requester)} {fmt_time(item.created_at)}"
    if item.emergency:
        line += f" · 🚨 {item.emergency}"
    if item.runs:
        line += f" · 🕘 {item.runs}"
    if item.held:
        line += " · 🔒 held by a lock or a freeze"
    return line


def locks_text(view: HoldsView) -> str:
    """`/promote locks`."""
    freezes = ["*Freezes now*"] + [f"• {line}" for line in view.freezes or ("none",)]
    freezes.append(f"*Next freeze*: {view.next_freeze or 'none configured ahead'}")
    locks = [f"• {line}" for line in view.locks or ("none",)]
    if len("\n".join(freezes)) > TEXT_LIMIT // 2:  # freezes come from the config: bounded
        freezes = [*freezes[:1], *fit([], freezes[1:], more="• … and {n} more").splitlines()]
    return fit(["*Locks*"], locks, freezes, more="• … and {n} newer locks")


def pending_text(items: Sequence[ListedRequest]) -> str:
    """`/promote pending`: the open requests the caller may act on, oldest first."""
    if not items:
        return "Nothing is waiting for you: no open request you could approve, reject or cancel."
    head = [
        f"*{len(items)} open request{'s' if len(items) != 1 else ''} you may act on* "
        "(oldest first):"
    ]
    lines = [f"• {listed_line(item)}" for item in items]
    return fit(head, lines, more="• … and {n} newer ones")


def scheduled_text(request_id: int, scheduled: Scheduled, approvals: int) -> str:
    """What the requester is told of a request they scheduled (`--at`)."""
    note = f" {scheduled.note[0].upper()}{scheduled.note[1:]}." if scheduled.note else ""
    needs = f"{approvals} approval{'s' if approvals != 1 else ''}"
    when = (
        f"if it has its {needs} by then and nothing holds it"
        if approvals
        else "unless a lock or freeze holds it"
    )
    return (
        f"#{request_id} is scheduled for {fmt_in(scheduled.at, scheduled.zone)} "
        f"({literal(scheduled.whose)}).{note} It runs then {when}; until then "
        f"`/promote cancel {request_id}` cancels it."
    )
