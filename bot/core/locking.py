"""Setting and lifting locks (`/promote lock`, `/promote unlock`: who may, for which targets),
and keeping what open release messages show of locks and freezes true as windows open and
close."""

from __future__ import annotations

from datetime import datetime
from fnmatch import fnmatchcase

from bot.core import authz, render, texts
from bot.core.audit import Audit
from bot.core.commands import Lock as LockCommand
from bot.core.commands import Unlock
from bot.core.context import Context
from bot.core.delivery import Delivery
from bot.core.freezes import fmt
from bot.core.holds import (
    Hold,
    held_text,
    hold_texts,
    holds_now,
    holds_on,
    summary,
    unconfigured,
)
from bot.core.markup import literal
from bot.core.model import Lock, Reply, Request, Scope, State


def _on_messages(shown: int) -> str:
    if not shown:
        return ""
    return (
        f" {shown} open request{'s' if shown != 1 else ''} now show{'s' if shown == 1 else ''} it."
    )


class Holds:
    def __init__(self, ctx: Context, audit: Audit, delivery: Delivery) -> None:
        self.ctx = ctx
        self.audit = audit
        self.delivery = delivery
        self._shown: dict[int, tuple[str, ...]] = {}  # what the last look saw, per request

    def on(self, target: str, at: datetime | None = None) -> list[Hold]:
        """The locks on `target`, and the freezes running on it now (or at `at`)."""
        if at is None:
            return holds_now(self.ctx, target)
        return holds_on(target, self.ctx.store.locks(), self.ctx.rules.freezes, at)

    def stopping(self, request: Request, doing: str) -> Reply | None:
        """The refusal when a lock or a freeze stops `request` now (never for an emergency),
        or its provider is no longer configured (for an emergency too)."""
        gone = unconfigured(self.ctx, request)
        if gone:
            return Reply(
                f"#{request.id} can't be {doing} now: {gone}. It can be once it is configured "
                "again; until then it may be rejected or cancelled."
            )
        if request.emergency:
            return None
        on_hold = self.on(request.action.target)
        if not on_hold:
            return None
        return Reply(held_text(f"#{request.id} can't be {doing} now", on_hold))

    def held_words(self, request: Request) -> str:
        """What `stopping` refused for, in plain words, for the audit log."""
        return unconfigured(self.ctx, request) or summary(self.on(request.action.target))

    def lock_scopes(self, pattern: str) -> tuple[list[str], frozenset[Scope]]:
        """The targets of this config `pattern` matches, and the scopes that lock them."""
        head = pattern.split(":", 1)[0]
        providers = [p for p in self.ctx.rules.providers.values() if fnmatchcase(p.name, head)]
        targets = [t for p in providers for t in p.targets() if fnmatchcase(t, pattern)]
        matched = [p for p in providers if any(fnmatchcase(t, pattern) for t in p.targets())]
        scopes = frozenset(f.scope for p in matched or providers for f in p.forms if f.scope)
        if not scopes:  # a lock of a provider the config no longer has: its own scopes
            known = self.ctx.rules.provider_scopes
            scopes = frozenset(s for n, ss in known.items() if fnmatchcase(n, head) for s in ss)
        if not scopes:  # nothing known matches at all: only whoever holds every scope
            scopes = frozenset(s for ss in self.ctx.rules.role_map.roles.values() for s in ss)
        return targets, scopes

    def may_lock(self, user: str, command: LockCommand | Unlock) -> Reply | None:
        """Whoever holds the scopes of the targets a pattern covers may lock and unlock it."""
        rules = self.ctx.rules
        targets, scopes = self.lock_scopes(command.pattern)
        if isinstance(command, LockCommand) and not targets:
            every = [t for p in rules.providers.values() for t in p.targets()]
            shown = ", ".join(every[:6]) + (", …" if len(every) > 6 else "")
            return Reply(
                f"`{command.pattern}` matches no target of this bot (its targets: "
                f"{shown or 'none'}), so there is nothing to lock."
            )
        verb = "lock" if isinstance(command, LockCommand) else "unlock"
        for scope in sorted(scopes):
            decision = authz.can_request(rules.role_map, user, scope)
            if not decision:
                return Reply(decision.reason.replace("request this", f"{verb} this"))
        return None

    async def lock(self, user: str, pattern: str, reason: str) -> Reply:
        """Lock every target `pattern` matches, for every process, until someone unlocks it."""
        lock = Lock(pattern=pattern, reason=reason, by=user, at=self.ctx.clock())
        existing = self.ctx.store.add_lock(lock)
        if existing is not None:
            return Reply(
                f"`{pattern}` is already locked by {texts.user(existing.by)} since "
                f"{fmt(existing.at)}: {literal(existing.reason)}"
            )
        self.audit.record(None, user, "locked", pattern, reason)
        shown = await self.delivery.redraw(lambda r: fnmatchcase(r.action.target, pattern))
        return Reply(f"🔒 Locked `{pattern}`: {literal(reason)}.{_on_messages(shown)}")

    async def unlock(self, user: str, pattern: str) -> Reply:
        lifted = self.ctx.store.remove_lock(pattern)
        if lifted is None:
            current = ", ".join(f"`{lock.pattern}`" for lock in self.ctx.store.locks()) or "none"
            return Reply(f"There is no lock on `{pattern}` (locks now: {current}).")
        self.audit.record(
            None, user, "unlocked", pattern, f"locked by {lifted.by}: {lifted.reason}"
        )
        shown = await self.delivery.redraw(lambda r: fnmatchcase(r.action.target, pattern))
        return Reply(f"🔓 Unlocked `{pattern}`.{_on_messages(shown)}")

    def view(self) -> render.HoldsView:
        """Locks and freezes in force, and the next freeze (`/promote locks`, the App Home)."""
        return render.holds_view(self.ctx.store.locks(), self.ctx.rules.freezes, self.ctx.clock())

    async def redraw_changed(self) -> None:
        """A freeze window that began or ended changes what open release messages must show
        (nothing in the store changed, so no version was bumped): redraw those."""
        open_ids = set()
        for request in self.ctx.store.in_states([State.PENDING, State.APPROVED]):
            open_ids.add(request.id)
            now = hold_texts(self.ctx, request)
            if self._shown.get(request.id, now) != now:
                self.ctx.store.touch_message(request.id)
                await self.delivery.converge(request.id)
            self._shown[request.id] = now
        for gone in set(self._shown) - open_ids:
            del self._shown[gone]
