"""The request state machine: ask, approve, reject, execute exactly once, record everything.

Transports call these methods; the workflow reads and writes the store, calls providers and
keeps the release message current through the `Chat` port. Methods return a `Reply` for the
person who acted (shown only to them) or None when the release message says it all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from typing import Literal

from bot.core import authz, holds, render
from bot.core.commands import (
    Cancel,
    Command,
    Help,
    History,
    Lock,
    Locks,
    Pending,
    Promote,
    Rollback,
    Status,
    Unlock,
    UsageError,
    parse,
)
from bot.core.errors import ProviderError
from bot.core.model import BOT_ACTOR, Action, AuditEntry, Outcome, Preview, Request, Scope, State
from bot.core.policy import Policy
from bot.core.ports import Chat, ChatError, OpenRequestExists, Provider, Store, StoreError
from bot.core.rules import Rules
from bot.core.states import OUTCOME_EVENT, Event, destination, sources

log = logging.getLogger(__name__)

HISTORY_LIMIT = 20
HOME_EVENTS = 10
# A process executing a request holds a lease on it and renews it every third of its length;
# another process (or a restart) takes over only a lease that lapsed: the holder is gone.
DEFAULT_LEASE = timedelta(seconds=30)
# One execution (reads, the write, the read back) ends within this, whatever the provider does:
# past it the bot stops waiting and decides by reading the provider, as a recovery would.
DEFAULT_DEADLINE = timedelta(seconds=60)
READ_DEADLINE = timedelta(seconds=30)  # for that read
# How long a process holds the duty of posting an outcome's thread reply: well past the longest
# post (10 s timeout, a rate-limited wait, 10 s again), so a live post is never doubled; one a
# stopped process left is looked for after it.
THREAD_CLAIM = timedelta(minutes=5)
# How long after a post whose answer was lost it is looked for: long enough for it to land.
THREAD_SETTLE = timedelta(seconds=30)
MESSAGE_BACKOFF_CAP = 15  # seconds between tries to bring a message up to date, at most
# How long a provider write cut off by a shutdown may still land: longer than its HTTP timeout.
WRITE_SETTLES = timedelta(seconds=30)
UNPOSTED_GRACE = timedelta(seconds=30)  # a live process posts well within this (10 s timeout)
UNPOSTED_RETRY = timedelta(minutes=1)  # after Slack failed to show or take one, try it again


@dataclass(frozen=True)
class Reply:
    """A short answer shown only to the person who acted."""

    text: str


def utc_now() -> datetime:
    return datetime.now(UTC)


class Workflow:
    def __init__(
        self,
        rules: Rules,
        store: Store,
        providers: Mapping[str, Provider],
        chat: Chat,
        *,
        clock: Callable[[], datetime] = utc_now,
        lease: timedelta = DEFAULT_LEASE,
        deadline: timedelta = DEFAULT_DEADLINE,
        owner: str | None = None,
    ) -> None:
        self.rules = rules
        self.store = store
        self.providers = providers
        self.chat = chat
        self.clock = clock
        self.lease = lease
        self.deadline = deadline
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._working: set[asyncio.Task[object]] = set()
        self._message_locks: dict[int, asyncio.Lock] = {}
        self._unposted_retry: dict[int, datetime] = {}  # request → when to look for it again
        self._holds_shown: dict[int, tuple[str, ...]] = {}  # what the sweep last saw, per request
        self._idle = asyncio.Event()
        self._idle.set()
        # Called with each audit entry once it is recorded (metrics); must not raise or block.
        self.observers: list[Callable[[AuditEntry], None]] = []

    # --- work in flight ----------------------------------------------------------------

    @asynccontextmanager
    async def working(self) -> AsyncIterator[None]:
        """Around work after an ack: a graceful shutdown waits for it (`drain`)."""
        task = asyncio.current_task()
        assert task is not None
        self._working.add(task)
        self._idle.clear()
        try:
            yield
        finally:
            self._working.discard(task)
            if not self._working:
                self._idle.set()

    @property
    def busy(self) -> int:
        return len(self._working)

    async def abandon(self) -> None:
        """Past the shutdown deadline: stop the work still in flight without recording any
        outcome (a guess); its leases are given up so a recovery reads the providers at once."""
        tasks = list(self._working)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def drain(self, within: float) -> bool:
        """Wait until no work is in flight, for at most `within` seconds; True if none is."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    @asynccontextmanager
    async def renewing(self, renew: Callable[[datetime], bool]) -> AsyncIterator[None]:
        """Renew a lease (`renew(until)`) every third of its length while the body runs."""

        async def keep() -> None:
            while True:
                await asyncio.sleep(self.lease.total_seconds() / 3)
                try:
                    renewed = renew(self.clock() + self.lease)
                except Exception as exc:  # a busy or failing disk: try again, don't stop
                    log.warning("could not renew a lease (trying again): %s", exc)
                    continue
                if not renewed:
                    log.warning("a lease was lost while working (taken over after a stall?)")
                    return

        task = asyncio.create_task(keep())
        try:
            yield
        finally:
            task.cancel()

    def reload(self, rules: Rules) -> bool:
        """Decide by `rules` from now on (a new config, or new members of its user groups).

        The object is replaced, never changed in place: work already under way finishes with
        the rules it started with. True when the role map or the policies changed."""
        old, self.rules = self.rules, rules
        return (
            old.role_map != rules.role_map
            or dict(old.policies) != dict(rules.policies)
            or old.freezes != rules.freezes
        )

    async def refresh_open(self) -> int:
        """Redraw the release messages of open requests (after the rules changed: their counts
        and who can approve may have too); how many."""
        shown = 0
        for request in self.store.in_states([State.PENDING, State.APPROVED]):
            self.store.touch_message(request.id)
            shown += await self.converge(request.id)
        return shown

    # --- asking ------------------------------------------------------------------------

    def check(self, user: str, text: str) -> Reply | Command:
        """Parse, resolve and authorize, with no I/O: safe to run before the ack.

        Returns the final answer (help, a usage error, a refusal) or the command to `run`.
        """
        try:
            command = parse(text, self.rules)
        except UsageError as exc:
            return Reply(render.usage_error(exc))
        if isinstance(command, Help):
            return Reply(render.help_text(self.rules, user))
        role_map = self.rules.role_map
        if isinstance(command, Promote):
            decision = authz.can_request(role_map, user, command.action.scope)
            if not decision:
                return Reply(decision.reason)
        elif not role_map.scopes_of(user):
            return Reply("You have no role in promote-bot, so you can't see or change requests.")
        elif isinstance(command, Lock | Unlock):
            refusal = self._may_lock(user, command)
            if refusal:
                return refusal
        return command

    async def run(self, user: str, command: Command, channel: str) -> Reply | None:
        """Carry out a command that `check` let through (the part after the ack)."""
        if isinstance(command, Promote):
            return await self.open_request(user, command.action, channel, command.emergency)
        if isinstance(command, Status):
            request = self.store.get(command.request_id)
            if request is None:
                return Reply(f"There is no request #{command.request_id}.")
            timeline = self.store.history(request_id=request.id, limit=100)
            rules = self.rules
            policy = self.policy_of(request, rules)
            return Reply(render.status_text(request, policy, timeline, rules.role_map))
        if isinstance(command, Pending):
            return Reply(render.pending_text(self.pending(user)))
        if isinstance(command, Locks):
            return Reply(render.locks_text(self.holds_view()))
        if isinstance(command, Lock):
            return await self.lock(user, command.pattern, command.reason)
        if isinstance(command, Unlock):
            return await self.unlock(user, command.pattern)
        if isinstance(command, History):
            entries = self.store.history(target=command.target, limit=HISTORY_LIMIT)
            return Reply(render.history_text(entries, command.target))
        if isinstance(command, Cancel):
            return await self.cancel(user, command.request_id)
        if isinstance(command, Rollback):
            return await self.rollback(user, command.request_id, channel)
        return Reply(render.help_text(self.rules, user))

    async def cancel(self, user: str, request_id: int) -> Reply | None:
        """The requester, or anyone holding the action's scope, may cancel while it is open."""
        request = self._open_or_reply(request_id, "cancel")
        if isinstance(request, Reply):
            await self._expire_if_due(request_id)
            return request
        if user != request.requester and not self.rules.role_map.has_scope(
            user, request.action.scope
        ):
            return Reply(
                f"Only the requester or someone holding `{request.action.scope}` may cancel "
                f"#{request.id}."
            )
        if not self._move(request.id, Event.CANCEL, by=user):
            return Reply(f"Request #{request.id} was decided a moment ago; nothing to cancel.")
        self._audit(request.id, user, "cancelled", request.action.target)
        await self.converge(request.id)
        return Reply(f"Request #{request.id} is cancelled.")

    async def rollback(
        self, user: str, request_id: int, channel: str | None = None
    ) -> Reply | None:
        """Open a request that restores what succeeded request `request_id` replaced: its
        provider turns it into the action that undoes it. Posted in `channel`, by default
        beside the request it undoes; a request like any other from there on."""
        undone = self.store.get(request_id)
        if undone is None:
            return Reply(f"There is no request #{request_id}.")
        if undone.state is not State.SUCCEEDED or undone.outcome is None:
            return Reply(
                f"#{undone.id} is {undone.state.value}: only a succeeded promotion can be "
                "rolled back."
            )
        if undone.rolled_back_by is not None:
            return Reply(f"#{undone.id} was already rolled back by #{undone.rolled_back_by}.")
        rules = self.rules
        provider = rules.provider(undone.action.provider)
        if provider is None:
            return Reply(f"{undone.action.provider} is not configured on this bot.")
        undo = provider.rollback(undone.action, undone.outcome)
        if isinstance(undo, str):
            return Reply(f"#{undone.id} can't be rolled back: {undo}")
        decision = authz.can_request(rules.role_map, user, undo.scope)
        if not decision:
            return Reply(decision.reason)
        return await self.open_request(user, undo, channel or undone.channel, rolls_back=undone.id)

    async def open_request(
        self,
        user: str,
        action: Action,
        channel: str,
        emergency: str | None = None,
        *,
        rolls_back: int | None = None,
    ) -> Reply | None:
        """Read the preview, record the request and post its release message. A lock or a
        freeze on the target refuses it before anything is read, unless it is an `emergency`."""
        provider = self.providers.get(action.provider)
        if provider is None:
            return Reply(f"{action.provider} is not configured on this bot.")
        on_hold = self.holds_on(action.target)
        if on_hold and not emergency:
            detail = "; ".join(h.text for h in on_hold)
            self._audit(None, user, "refused", action.target, detail)
            return Reply(_held_text(f"`{action.target}` can't be promoted now", on_hold))
        busy = self._already_open(action)  # before reading the provider, when it can tell
        if busy:
            return busy
        if emergency:
            short = self._emergency_unreachable(user, action)
            if short:
                self._audit(None, user, "refused", action.target, short)
                return Reply(short)
        try:
            preview = await provider.preview(action)
        except ProviderError as exc:
            # Without the provider's state the bot can't tell whether this may be promoted.
            log.warning("preview of %s failed: %s", action.target, exc.message)
            preview = Preview(refusal=f"{exc.message}. Nothing was posted.")
        now = self.clock()
        if preview.refusal:
            self._audit(None, user, "refused", action.target, preview.refusal)
            return Reply(preview.refusal)
        action = preview.action or action  # what is approved is exactly what will run
        preview = preview.model_copy(update={"action": None})
        policy = self.policy(action)
        if emergency:
            policy = policy.for_emergency()
        try:
            request = self.store.create_request(
                action,
                requester=user,
                channel=channel,
                preview=preview,
                created_at=now,
                expires_at=now + policy.expires_after,
                rolls_back=rolls_back,
                emergency=emergency,
            )
        except OpenRequestExists as exc:
            return self._already_open(action, exc.request_id) or Reply(
                f"Request #{exc.request_id} is already open for this; nothing was posted."
            )
        what = action.title if rolls_back is None else f"rollback of #{rolls_back}: {action.title}"
        self._audit(request.id, user, "requested", action.target, what)
        if emergency:
            passes = "; ".join(h.text for h in on_hold) or "nothing holds it now"
            self._audit(
                request.id, user, "🚨 emergency", action.target, f"{emergency} (passes: {passes})"
            )
        try:
            view = render.request_view(
                request, policy, self.rules.role_map, self._hold_texts(request)
            )
            ts = await self.chat.post_request(channel, view, request_id=request.id)
        except ChatError as exc:
            ts = await self._posted_after_all(request, exc)
            if ts is None:
                self._move(request.id, Event.CANCEL, by=user)
                self._audit(request.id, user, "cancelled", action.target, f"could not post: {exc}")
                return Reply(
                    f"I couldn't post the release message here ({exc}), so nothing was done."
                )
        self.store.set_message(request.id, ts, shown=request.msg_version)
        await self.converge(request.id)  # it may have changed while the post was on its way
        if policy.approvals == 0:
            return await self._execute(request.id, user)
        return None

    def _already_open(self, action: Action, request_id: int | None = None) -> Reply | None:
        """The answer when a request for the same thing is open: one at a time per thing."""
        if request_id is not None:
            open_request = self.store.get(request_id)
        elif action.thing is not None:
            open_request = self.store.open_for(action.thing)
        else:
            return None
        if open_request is None:
            return None
        how = (
            f"cancel it with `/promote cancel {open_request.id}`"
            if open_request.state.is_open
            else "wait for it to end"
        )
        return Reply(
            f"#{open_request.id} {open_request.action.title} is already open for this "
            f"(asked by {render.user(open_request.requester)}, {open_request.state.value}): "
            f"{how}, or decide it, before asking again. Nothing was posted."
        )

    # --- deciding ----------------------------------------------------------------------

    def policy(self, action: Action) -> Policy:
        return self.rules.policy(action)

    def policy_of(self, request: Request, rules: Rules | None = None) -> Policy:
        """The policy `request` is held to: its target's, with one approval more for an
        emergency."""
        policy = (rules or self.rules).policy(request.action)
        return policy.for_emergency() if request.emergency else policy

    # --- locks and freezes -------------------------------------------------------------

    def holds_on(self, target: str) -> list[holds.Hold]:
        """The locks (shared by every process, through the store) and running freezes on
        `target` now."""
        return holds.holds_on(target, self.store.locks(), self.rules.freezes, self.clock())

    def _hold_texts(self, request: Request) -> tuple[str, ...]:
        if not request.state.is_open:
            return ()
        return tuple(h.text for h in self.holds_on(request.action.target))

    def _held(self, request: Request, doing: str) -> Reply | None:
        """The refusal when a lock or a freeze stops `request` now (never for an emergency)."""
        if request.emergency:
            return None
        on_hold = self.holds_on(request.action.target)
        if not on_hold:
            return None
        return Reply(_held_text(f"#{request.id} can't be {doing} now", on_hold))

    def lock_scopes(self, pattern: str) -> tuple[list[str], frozenset[Scope]]:
        """The targets of this config `pattern` matches, and the scopes that lock them."""
        head = pattern.split(":", 1)[0]
        providers = [p for p in self.rules.providers.values() if fnmatchcase(p.name, head)]
        targets = [t for p in providers for t in p.targets() if fnmatchcase(t, pattern)]
        matched = [p for p in providers if any(fnmatchcase(t, pattern) for t in p.targets())]
        return targets, frozenset(f.scope for p in matched or providers for f in p.forms if f.scope)

    def _may_lock(self, user: str, command: Lock | Unlock) -> Reply | None:
        """Whoever holds the scopes of the targets a pattern covers may lock and unlock it."""
        targets, scopes = self.lock_scopes(command.pattern)
        if isinstance(command, Lock) and not targets:
            every = [t for p in self.rules.providers.values() for t in p.targets()]
            shown = ", ".join(every[:6]) + (", …" if len(every) > 6 else "")
            return Reply(
                f"`{command.pattern}` matches no target of this bot (its targets: "
                f"{shown or 'none'}), so there is nothing to lock."
            )
        verb = "lock" if isinstance(command, Lock) else "unlock"
        for scope in sorted(scopes):
            decision = authz.can_request(self.rules.role_map, user, scope)
            if not decision:
                return Reply(decision.reason.replace("request this", f"{verb} this"))
        return None

    async def lock(self, user: str, pattern: str, reason: str) -> Reply | None:
        """Lock every target `pattern` matches, for every process, until someone unlocks it."""
        lock = holds.Lock(pattern=pattern, reason=reason, by=user, at=self.clock())
        existing = self.store.add_lock(lock)
        if existing is not None:
            return Reply(
                f"`{pattern}` is already locked by {render.user(existing.by)} since "
                f"{holds.fmt(existing.at)}: {existing.reason}"
            )
        self._audit(None, user, "locked", pattern, reason)
        shown = await self._refresh_matching(pattern)
        return Reply(f"🔒 Locked `{pattern}`: {reason}.{_on_messages(shown)}")

    async def unlock(self, user: str, pattern: str) -> Reply | None:
        lifted = self.store.remove_lock(pattern)
        if lifted is None:
            current = ", ".join(f"`{lock.pattern}`" for lock in self.store.locks()) or "none"
            return Reply(f"There is no lock on `{pattern}` (locks now: {current}).")
        self._audit(None, user, "unlocked", pattern, f"locked by {lifted.by}: {lifted.reason}")
        shown = await self._refresh_matching(pattern)
        return Reply(f"🔓 Unlocked `{pattern}`.{_on_messages(shown)}")

    async def _refresh_matching(self, pattern: str) -> int:
        """Redraw the release messages of open requests whose target `pattern` matches."""
        shown = 0
        for request in self.store.in_states([State.PENDING, State.APPROVED]):
            if fnmatchcase(request.action.target, pattern):
                self.store.touch_message(request.id)  # it shows the lock now, or no more
                shown += await self.converge(request.id)
        return shown

    def holds_view(self) -> render.HoldsView:
        return render.holds_view(self.store.locks(), self.rules.freezes, self.clock())

    # --- what is waiting ---------------------------------------------------------------

    def _listed(self, request: Request, rules: Rules) -> render.ListedRequest:
        policy = self.policy_of(request, rules)
        view = render.request_view(request, policy, rules.role_map, self._hold_texts(request))
        ts = request.message_ts
        return render.listed(request, view, self.chat.link(request.channel, ts) if ts else None)

    def pending(self, user: str) -> list[render.ListedRequest]:
        """The open requests `user` may act on (approve, reject or cancel), oldest first."""
        rules = self.rules
        mine = []
        for request in self.store.in_states([State.PENDING, State.APPROVED]):
            if self.clock() >= request.expires_at:
                continue
            policy = self.policy_of(request, rules)
            if request.requester == user or authz.can_decide(rules.role_map, policy, request, user):
                mine.append(self._listed(request, rules))
        return mine

    def home(self, user: str) -> render.HomeView:
        """What `user`'s App Home shows: requests waiting for their approval, their own open
        requests, the locks and freezes, and the last events."""
        rules = self.rules
        waiting, mine = [], []
        for request in self.store.in_states([State.PENDING]):
            if self.clock() >= request.expires_at:
                continue
            policy = self.policy_of(request, rules)
            if request.requester == user:
                mine.append(self._listed(request, rules))
            if user not in request.approvers and authz.can_approve(
                rules.role_map, policy, request, user
            ):
                waiting.append(self._listed(request, rules))
        # Events and holds are what `history` and `locks` show: only to people with a role.
        insider = bool(rules.role_map.scopes_of(user))
        return render.HomeView(
            user=user,
            waiting=tuple(waiting),
            mine=tuple(mine),
            holds=self.holds_view() if insider else render.holds_view([], (), self.clock()),
            events=tuple(self.store.history(limit=HOME_EVENTS)) if insider else (),
        )

    def roles_of(self, user: str) -> tuple[str, ...]:
        return self.rules.role_map.roles_of(user)

    def _open_or_reply(self, request_id: int, verb: str) -> Request | Reply:
        request = self.store.get(request_id)
        if request is None:
            return Reply(f"There is no request #{request_id}.")
        if request.state.is_open and self.clock() >= request.expires_at:
            return Reply(f"Request #{request_id} expired at {render.fmt_time(request.expires_at)}.")
        if not request.state.is_open:
            return Reply(f"Request #{request_id} is {request.state.value}; nothing to {verb}.")
        return request

    async def approve(self, user: str, request_id: int) -> Reply | None:
        request = self._open_or_reply(request_id, "approve")
        if isinstance(request, Reply):
            await self._expire_if_due(request_id)
            return request
        rules = self.rules  # one click, one config, even if a reload lands meanwhile
        policy = self.policy_of(request, rules)
        decision = authz.can_approve(rules.role_map, policy, request, user)
        if not decision:
            self._audit(
                request.id, user, "approval refused", request.action.target, decision.reason
            )
            return Reply(decision.reason)
        held = self._held(request, "approved")
        if held:
            self._audit(request.id, user, "approval refused", request.action.target, held.text)
            return held
        if not self.store.add_approval(request.id, user, self.clock()):
            current = self.store.get(request.id)
            if current is not None and not current.state.is_open:
                return Reply(f"Request #{request.id} is {current.state.value}; nothing to approve.")
            if current is not None and len(
                authz.counted_approvers(rules.role_map, policy, current)
            ) >= max(policy.approvals, 1):
                return await self._execute(request.id, user)  # held when last approved; free now
            return Reply(f"You have already approved #{request.id}.")
        self._audit(request.id, user, "approved", request.action.target)
        request = self.store.get(request.id)
        assert request is not None
        counted = len(authz.counted_approvers(rules.role_map, policy, request))
        if counted >= policy.approvals:
            return await self._execute(request.id, user)
        await self.converge(request.id)
        missing = policy.approvals - counted
        return Reply(f"Approval recorded. #{request.id} needs {missing} more.")

    async def reject(self, user: str, request_id: int) -> Reply | None:
        request = self._open_or_reply(request_id, "reject")
        if isinstance(request, Reply):
            await self._expire_if_due(request_id)
            return request
        rules = self.rules
        policy = rules.policy(request.action)
        decision = authz.can_decide(rules.role_map, policy, request, user)
        if not decision:
            self._audit(
                request.id, user, "rejection refused", request.action.target, decision.reason
            )
            return Reply(decision.reason)
        if not self._move(request.id, Event.REJECT, by=user):
            return Reply(f"Request #{request.id} was decided a moment ago; nothing to reject.")
        self._audit(request.id, user, "rejected", request.action.target)
        await self.converge(request.id)
        return None

    async def _expire_if_due(self, request_id: int) -> bool:
        """Expire the request if it is open and past its expiry; True if this call did."""
        request = self.store.get(request_id)
        if request is None or not request.state.is_open or self.clock() < request.expires_at:
            return False
        if not self._move(request_id, Event.EXPIRE):
            return False
        self._audit(request_id, BOT_ACTOR, "expired", request.action.target)
        await self.converge(request_id)
        return True

    # --- housekeeping ------------------------------------------------------------------

    async def sweep(self) -> int:
        """Expire open requests past their expiry and update their messages; how many.
        Also forgets delivery keys too old for Slack to redeliver."""
        self.store.forget_deliveries(self.clock())
        expired = 0
        for request in self.store.in_states(sources(Event.EXPIRE), expired_by=self.clock()):
            expired += await self._expire_if_due(request.id)
        await self._redraw_changed_holds()
        return expired

    async def _redraw_changed_holds(self) -> None:
        """A freeze window that began or ended changes what open release messages must show
        (nothing in the store changed, so no version was bumped): redraw those."""
        open_ids = set()
        for request in self.store.in_states([State.PENDING, State.APPROVED]):
            open_ids.add(request.id)
            holds = self._hold_texts(request)
            if self._holds_shown.get(request.id, holds) != holds:
                self.store.touch_message(request.id)
                await self.converge(request.id)
            self._holds_shown[request.id] = holds
        for gone in set(self._holds_shown) - open_ids:
            del self._holds_shown[gone]

    async def recover(self) -> int:
        """Resolve requests whose executing process is gone (its lease lapsed), by reading
        the provider and comparing with what the request recorded before the write. A
        promotion is never sent again; what can't be told apart becomes `unknown`."""
        now = self.clock()
        resolved = 0
        for request in self.store.lapsed(now, unleased_before=now - self.lease):
            until = now + self.lease
            if not self.store.take_over(
                request.id, self.owner, now, until, unleased_before=now - self.lease
            ):
                continue  # another process took it first
            outcome = await self._read_outcome(request, "the bot stopped while promoting")
            resolved += await self._conclude(request, outcome, "recovered: ")
        return resolved

    async def _read_outcome(self, request: Request, why: str) -> Outcome:
        """Decide a request's outcome by reading the provider, never by writing again:
        `succeeded` when it shows the change, `failed` when it shows exactly the state from
        before the write, `unknown` otherwise or when the read fails."""
        action = request.action
        provider = self.providers.get(action.provider)
        reason = f"{action.provider} is not configured"
        outcome: Outcome | None = None
        if provider is not None:
            expect = request.preview.expect if request.preview else {}
            try:
                async with asyncio.timeout(READ_DEADLINE.total_seconds()):
                    outcome = await provider.observe(
                        action,
                        promoted_by=promoted_by(request, self.store.installation),
                        expect=expect,
                    )
                reason = f"{action.provider} has no way to read whether it happened"
            except ProviderError as exc:
                reason = f"reading {action.provider} failed: {exc.message}"
            except TimeoutError:
                reason = f"reading {action.provider} took longer than {READ_DEADLINE.seconds} s"
        if outcome is None:
            return Outcome(
                state="unknown",
                headline=f"{why}, and {reason}",
                check=f"Check in {action.provider} whether {action.title} happened "
                "before asking again.",
            )
        return outcome.model_copy(update={"headline": f"{outcome.headline} (read after {why})"})

    async def _conclude(self, request: Request, outcome: Outcome, prefix: str = "") -> int:
        """Record the outcome of an executing request and show it; 1 if this call did."""
        if not self._move(request.id, OUTCOME_EVENT[outcome.state], outcome=outcome):
            return 0
        self._audit(
            request.id, BOT_ACTOR, prefix + outcome.state, request.action.target, outcome.headline
        )
        await self.converge(request.id)
        await self._rolled_back(request.id)
        return 1

    # --- executing ---------------------------------------------------------------------

    async def _execute(self, request_id: int, user: str) -> Reply | None:
        """Claim the request (compare-and-set to `executing`) and call the provider once.

        A lock or a freeze that came after the last approval still stops it (it stays open
        with its approvals: an approval after the lock is lifted runs it)."""
        before = self.store.get(request_id)
        if before is not None and before.state.is_open:
            held = self._held(before, "run")
            if held:
                self._audit(request_id, BOT_ACTOR, "held", before.action.target, held.text)
                self.store.touch_message(request_id)
                await self.converge(request_id)
                return Reply(
                    held.text + "\nIts approvals are kept: approve it again once nothing holds it."
                )
            if before.emergency:
                passes = "; ".join(h.text for h in self.holds_on(before.action.target))
                if passes:
                    self._audit(
                        request_id,
                        BOT_ACTOR,
                        "🚨 emergency passes",
                        before.action.target,
                        f"{before.emergency} (passes: {passes})",
                    )
        if not self._move(request_id, Event.CLAIM):
            current = self.store.get(request_id)
            state = current.state.value if current else "gone"
            return Reply(f"Request #{request_id} is already {state}; it runs only once.")
        request = self.store.get(request_id)
        assert request is not None
        action = request.action
        self._audit(request_id, user, "executing", action.target)
        # Show "promoting now" while the provider works, not before it starts.
        showing = asyncio.create_task(self.converge(request_id))

        def renew(until: datetime) -> bool:
            return self.store.renew(request_id, self.owner, until)

        try:
            async with self.renewing(renew), asyncio.timeout(self.deadline.total_seconds()):
                provider = self.providers[action.provider]
                expect = request.preview.expect if request.preview else {}
                if not expect:  # asked before the bot recorded what it would replace
                    raise ProviderError(
                        action.provider,
                        "not sent: this request was made before the bot recorded what it would "
                        "replace, so it can't check that nothing moved since; request again",
                    )
                outcome = await provider.execute(
                    action, promoted_by=promoted_by(request, self.store.installation), expect=expect
                )
        except ProviderError as exc:
            outcome = _outcome_of_error(exc)
        except asyncio.CancelledError:  # shutting down past its deadline: nothing is known
            # A write cut off now may still land at the provider: a recovery reads only once
            # that can no longer happen, so it never takes an in-flight write for "not done".
            with contextlib.suppress(Exception):
                renew(self.clock() + WRITE_SETTLES)
            showing.cancel()
            raise
        except TimeoutError:  # the provider kept the bot waiting: decide by reading, once
            seconds = int(self.deadline.total_seconds())
            async with self.renewing(renew):
                outcome = await self._read_outcome(request, f"the promotion took over {seconds} s")
            if outcome.state == "failed":  # the write may still be on its way: don't say no
                outcome = outcome.model_copy(
                    update={
                        "state": "unknown",
                        "check": f"The call was cut off after {seconds} s and may still take "
                        f"effect: check {action.provider} before asking again.",
                    }
                )
        except Exception:  # a bug after the call may have been sent: never guess
            log.exception("promotion #%s ended in an unexpected error", request_id)
            outcome = Outcome(
                state="unknown",
                headline="the bot hit an internal error while promoting",
                check=f"Check {action.provider} to see whether {action.title} happened.",
            )
        if self._move(request_id, OUTCOME_EVENT[outcome.state], outcome=outcome):
            event = outcome.state
        elif outcome.state == "succeeded" and self._move(
            request_id, Event.CORRECT, outcome=outcome
        ):
            # Resolved by a recovery while this process still waited (it had stalled past its
            # lease): the provider's own answer is the truth, and the message shows it.
            log.warning("promotion #%s succeeded after a recovery had decided it", request_id)
            event = "corrected: succeeded"
        else:  # held past the lease and resolved by a recovery meanwhile: keep the truth too
            log.warning("promotion #%s ended after it had been recovered", request_id)
            event = f"late outcome: {outcome.state}"
        self._audit(request_id, BOT_ACTOR, event, action.target, outcome.headline)
        await showing  # the final update must come after the "promoting now" one
        await self.converge(request_id)
        await self._rolled_back(request_id)
        return None

    def _move(
        self,
        request_id: int,
        event: Event,
        *,
        by: str | None = None,
        outcome: Outcome | None = None,
    ) -> bool:
        """The compare-and-set for `event`, as the state table defines it; a claim takes the
        lease on the request for this process."""
        now = self.clock()
        lease = (self.owner, now + self.lease) if event is Event.CLAIM else None
        return self.store.transition(
            request_id,
            sources(event),
            destination(event),
            at=now,
            by=by,
            outcome=outcome,
            lease=lease,
        )

    # --- messages and audit ------------------------------------------------------------

    async def converge(self, request_id: int) -> bool:
        """Make Slack show what the store holds: the release message (and any copy of it) at
        the stored version and, once the request has ended, its outcome in the thread, once.
        A failure is recorded and tried again by `deliver_due` with backoff; True if Slack
        shows the latest now."""
        async with self._message_locks.setdefault(request_id, asyncio.Lock()):
            for _ in range(3):  # again if it changed while Slack was being told
                request = self.store.get(request_id)
                if request is None or request.message_ts is None:
                    return True
                version = request.msg_version
                view = render.request_view(
                    request, self.policy_of(request), self.rules.role_map, self._hold_texts(request)
                )
                claim: Literal["post", "check"] | None = None
                try:
                    for ts in (request.message_ts, *request.copies):
                        try:
                            await self.chat.update_request(request.channel, ts, view)
                        except ChatError as exc:
                            self._unless_gone(request_id, exc, f"the message {ts}")
                    if request.state.is_final:
                        now = self.clock()
                        held_until = now + THREAD_CLAIM
                        claim = self.store.claim_thread(request_id, now, held_until)
                    if claim == "check" and await self.chat.find_outcome(
                        request.channel, request.message_ts, request_id
                    ):
                        log.info("the outcome of #%s did reach its thread", request_id)
                    elif claim is not None:
                        try:
                            await self.chat.post_in_thread(
                                request.channel, request.message_ts, view
                            )
                        except ChatError as exc:
                            self._unless_gone(request_id, exc, "the thread")
                except ChatError as exc:
                    if claim is not None and (exc.maybe_done or claim == "check"):
                        # Never posted twice, never guessed: looked for at the next try.
                        log.warning(
                            "the outcome of #%s may not have reached its thread (%s);"
                            " looking for it again",
                            request_id,
                            exc,
                        )
                        look_at = self.clock() + THREAD_SETTLE
                        self.store.thread_uncertain(request_id, held_until, look_at)
                    elif claim is not None:
                        self.store.release_thread(request_id, held_until)
                    self._message_failed(request_id, exc)
                    return False
                self.store.message_shown(request_id, version, thread=claim is not None)
                current = self.store.get(request_id)
                if current is None or current.msg_version == version:
                    return True
            return False

    @staticmethod
    def _unless_gone(request_id: int, exc: ChatError, what: str) -> None:
        """Raise `exc` unless what it failed on is gone for good (deleted, archived): that is
        logged and skipped, since trying again forever could never make it show anything."""
        if not exc.gone:
            raise exc
        log.warning("%s of #%s can't be brought up to date: %s; skipped", what, request_id, exc)

    def _message_failed(self, request_id: int, exc: ChatError) -> None:
        now = self.clock()

        def next_try(attempts: int) -> datetime:
            delay = min(2.0**attempts, MESSAGE_BACKOFF_CAP)
            return now + timedelta(seconds=max(delay, exc.retry_after or 0.0))

        attempts = self.store.message_failed(request_id, next_try)
        if attempts == 1:
            log.warning("Slack did not take the message of #%s (%s); trying again", request_id, exc)

    async def deliver_due(self) -> int:
        """Bring every message that lags behind the store up to date (after Slack failed,
        or a restart); how many are now current."""
        done = 0
        for request_id in self.store.messages_due(self.clock()):
            try:
                done += await self.converge(request_id)
            except StoreError:
                raise  # the store is down: said once by housekeeping
            except Exception:  # one message's bug must not hold up every other message
                log.exception("bringing the message of #%s up to date failed", request_id)
                self._message_failed(request_id, ChatError("an internal error"))
        await self._post_unposted()
        return done

    async def _post_unposted(self) -> None:
        """A request recorded but whose release message was never posted (its process died
        in between) would block its thing unseen: post it now, unless Slack shows it."""
        now = self.clock()
        cutoff = now - UNPOSTED_GRACE
        self._unposted_retry = {r: at for r, at in self._unposted_retry.items() if at > now}
        for request in self.store.in_states([State.PENDING, State.APPROVED]):
            if request.message_ts is not None or request.created_at > cutoff:
                continue
            if request.id in self._unposted_retry:
                continue  # Slack failed for it a moment ago (or it is unsure): not every 2 s
            try:
                ts = await self.chat.find_request(request.channel, request.id, request.created_at)
                if ts is None:
                    view = render.request_view(
                        request,
                        self.policy_of(request),
                        self.rules.role_map,
                        self._hold_texts(request),
                    )
                    ts = await self.chat.post_request(request.channel, view, request_id=request.id)
            except ChatError as exc:
                log.warning("could not post the release message of #%s: %s", request.id, exc)
                self._unposted_retry[request.id] = now + UNPOSTED_RETRY
                continue
            self._unposted_retry.pop(request.id, None)
            log.warning(
                "posted the release message of #%s, which a stopped process left", request.id
            )
            self.store.set_message(request.id, ts)
            await self.converge(request.id)

    def _emergency_unreachable(self, user: str, action: Action) -> str | None:
        """Why a break-glass request could never get its approvals, or None: it would only
        sit there until it expires."""
        policy = self.policy(action).for_emergency()
        possible = authz.approvers_possible(self.rules.role_map, policy, action.scope, user)
        if possible is None or possible >= policy.approvals:
            return None
        return (
            f"A break-glass request for `{action.target}` needs {policy.approvals} approvals, "
            f"and only {possible} configured {'person' if possible == 1 else 'people'}"
            f"{'' if policy.allow_self_approval else ' other than you'} could give them, so it"
            " could never run: nothing was posted. Ask for "
            "it without --emergency once the hold is lifted, or have `emergency_approvals` "
            "set for this target in the config."
        )

    async def _posted_after_all(self, request: Request, exc: ChatError) -> str | None:
        """A post whose fate is unclear (reset after sending, a timeout) is not sent blindly
        again: if Slack shows it, it is adopted."""
        if not exc.maybe_done:
            return None
        try:
            return await self.chat.find_request(request.channel, request.id, request.created_at)
        except ChatError as again:
            log.warning("could not look for the release message of #%s: %s", request.id, again)
            return None

    def refuse_click(self, user: str, request_id: int, why: str) -> None:
        """A click that is not for this request from this installation: no effect, but
        logged and audited."""
        log.warning("refused a click by %s on #%s: it came from %s", user, request_id, why)
        request = self.store.get(request_id)
        target = request.action.target if request else None
        self._audit(request_id if request else None, user, "click refused", target, why)

    async def adopt(self, request_id: int, channel: str, ts: str) -> bool:
        """A click revealed a copy of the release message (a post retried after its answer was
        lost): keep it in step with the request from now on."""
        request = self.store.get(request_id)
        if request is None or channel != request.channel:
            return False
        if request.message_ts is None:
            self.store.set_message(request_id, ts)
        elif not self.store.add_copy(request_id, ts):
            return False
        log.info("adopted a copy of the release message of #%s (%s)", request_id, ts)
        await self.converge(request_id)
        return True

    async def _rolled_back(self, request_id: int) -> None:
        """When a rollback succeeded: record it against the request it undid, and show
        "rolled back by #M" on that request's message."""
        request = self.store.get(request_id)
        if request is None or request.rolls_back is None or request.state is not State.SUCCEEDED:
            return
        undone = self.store.get(request.rolls_back)
        if undone is None:
            return
        self._audit(undone.id, BOT_ACTOR, "rolled back", undone.action.target, f"by #{request.id}")
        self.store.touch_message(undone.id)
        await self.converge(undone.id)

    def _audit(
        self, request_id: int | None, actor: str, event: str, target: str | None, detail: str = ""
    ) -> None:
        entry = AuditEntry(
            at=self.clock(),
            request_id=request_id,
            actor=actor,
            event=event,
            target=target,
            detail=detail,
        )
        self.store.audit(entry)
        self._log_event(entry)
        for observe in self.observers:
            observe(entry)

    def _log_event(self, entry: AuditEntry) -> None:
        """One INFO line per request event: request id, target, actor, state (and the event)."""
        if not log.isEnabledFor(logging.INFO):
            return
        request = self.store.get(entry.request_id) if entry.request_id is not None else None
        state = request.state.value if request is not None else "none"
        number = f"#{entry.request_id}" if entry.request_id is not None else "-"
        fields = {
            "request_id": entry.request_id,
            "event": entry.event,
            "target": entry.target,
            "actor": entry.actor,
            "state": state,
        }
        log.info(
            "request %s %s: target=%s actor=%s state=%s%s",
            number,
            entry.event,
            entry.target,
            entry.actor,
            state,
            f" ({entry.detail})" if entry.detail else "",
            extra=fields,
        )


def _held_text(what: str, on_hold: list[holds.Hold]) -> str:
    lines = [f"{what}:", *(f"• {h.text}" for h in on_hold)]
    lines.append(
        "In an emergency, ask with `--emergency <why>` at the end: it needs one more approval."
    )
    return "\n".join(lines)


def _on_messages(shown: int) -> str:
    if not shown:
        return ""
    return (
        f" {shown} open request{'s' if shown != 1 else ''} now show{'s' if shown == 1 else ''} it."
    )


def promoted_by(request: Request, installation: str) -> str:
    """Who the provider is told did it; unique per request and bot database (two bots may share
    a provider), so a read after a restart can find it and never takes another's for it."""
    return f"slack:{request.requester} via promote-bot #{request.id} ({installation})"


def _outcome_of_error(exc: ProviderError) -> Outcome:
    if exc.fate == "unknown":
        return Outcome(
            state="unknown",
            headline=exc.message,
            check=f"Check in {exc.provider} whether the promotion happened before asking again.",
        )
    return Outcome(state="failed", headline=exc.message)
