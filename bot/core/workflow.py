"""The core's face to the transports: what Slack and the shell call, and nothing more.

It wires the concerns together and hands each call to the one that owns it:

- lifecycle.py   a request's life with people: ask, approve, reject, cancel, expire, rollback
- execution.py   run it exactly once (a journal of steps, steps.py), recover after a crash
- delivery.py    bring release messages and thread replies up to the stored version
- holds.py       what holds a target now (locks, running freezes); locking.py sets and
                 lifts locks and keeps open messages showing them
- read_models.py status, history, pending, the App Home
- audit.py       the audit log
- notify.py      direct messages: who is owed one, and sending them exactly once
- drift.py       open requests' previews read again; truth.py what a provider says changed
- waits.py       requests that wait for their time (a schedule, a soak, a window); stages.py
                 the bot's record of each stage, and the promotions it asks for itself
- outbox.py      outgoing events (CDEvents) to the receivers of [[notify]]
- stats.py       what the releases add up to (`/promote stats`, the App Home)
- scheduler.py   the timed work of all of them (`schedule`)

Methods return a `Reply` for the person who acted (shown only to them) or None when the
release message says it all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta

from bot.core import authz, render, stats, texts
from bot.core.audit import Audit
from bot.core.commands import (
    Approve,
    Cancel,
    Command,
    Help,
    History,
    Lock,
    Locks,
    Notify,
    Pending,
    Promote,
    Reject,
    Rollback,
    Show,
    Stats,
    Status,
    Unlock,
    UsageError,
    parse,
)
from bot.core.context import (
    DEFAULT_CHAT_TIMEOUT,
    DEFAULT_DEADLINE,
    DEFAULT_LEASE,
    Context,
    process_name,
    utc_now,
)
from bot.core.delivery import Delivery
from bot.core.drift import TICK_SECONDS, DriftWatch
from bot.core.execution import Execution
from bot.core.inflight import InFlight, Leases
from bot.core.lifecycle import Lifecycle
from bot.core.locking import Holds
from bot.core.model import AuditEntry, Reply, Request, Sighting
from bot.core.notify import Notices
from bot.core.outbox import EVENTS_SECONDS, Outbox
from bot.core.ports import Chat, EventSender, Provider, Store
from bot.core.read_models import ReadModels
from bot.core.retention import DEFAULT_INBOX_RETENTION, EVERY, Retention
from bot.core.rules import Rules
from bot.core.scheduler import Scheduler
from bot.core.stages import Stages
from bot.core.truth import Truth
from bot.core.waits import Waits

__all__ = ["Reply", "Workflow", "utc_now"]

EXPIRE_SECONDS = 10.0  # how often overdue requests are expired and freezes redrawn
RECOVER_SECONDS = 10.0  # how often executions whose process is gone are looked for
DELIVER_SECONDS = 2.0  # how often messages that lag behind the store are brought up to date
DUE_SECONDS = 1.0  # how often requests waiting for their time are looked for (an indexed read)


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
        inbox_retention: timedelta = DEFAULT_INBOX_RETENTION,
        drift_every: float = 300.0,
        events: EventSender | None = None,
        chat_timeout: timedelta = DEFAULT_CHAT_TIMEOUT,
    ) -> None:
        """`drift_every`: seconds between two reads of an open request's preview;
        `chat_timeout`: the longest the chat's client waits for one call."""
        ctx = Context(
            rules,
            store,
            providers,
            chat,
            clock,
            lease,
            deadline,
            owner or process_name(),
            chat_timeout,
        )
        self.ctx = ctx
        self.store, self.providers, self.chat = store, providers, chat
        self.owner, self.lease = ctx.owner, lease
        self.inflight = InFlight()
        self.leases = Leases(ctx, lease)
        self.audit = Audit(ctx)
        self.delivery = Delivery(ctx)
        self.holds = Holds(ctx, self.audit, self.delivery)
        self.notices = Notices(ctx)
        self.execution = Execution(
            ctx, self.audit, self.holds, self.delivery, self.leases, self.notices
        )
        self.stages = Stages(ctx, self.audit)
        self.waits = Waits(
            ctx, self.audit, self.holds, self.delivery, self.execution, self.notices, self.stages
        )
        self.lifecycle = Lifecycle(
            ctx, self.audit, self.holds, self.delivery, self.execution, self.notices, self.waits
        )
        # Stages in order: the bot asks for the promotions that follow a stage itself, and
        # its own promotions are changes of the stages they promote into.
        self.stages.ask, self.stages.retime = self.lifecycle.ask, self.waits.retime

        async def landed(request: Request) -> None:
            await self.stages.changed([request.action.thing], known_at=request.updated_at)

        self.execution.landed.append(landed)
        self.reads = ReadModels(ctx, self.delivery, self.holds)
        self.retention = Retention(ctx, inbox_retention)
        self.drift = DriftWatch(ctx, self.audit, self.delivery, every=drift_every)
        self.truth = Truth(ctx, self.audit, self.delivery, self.drift, self.notices)
        self.truth.stage_changed = self.drift.stage_changed = self.stages.changed
        self.outbox = Outbox(ctx, events)  # the requests' milestones, sent as CDEvents
        # Called with each audit entry once it is recorded (metrics); must not raise or block.
        self.observers: list[Callable[[AuditEntry], None]] = self.audit.observers

    @property
    def rules(self) -> Rules:
        return self.ctx.rules

    @property
    def clock(self) -> Callable[[], datetime]:
        """What the core reads the time from (tests move it across windows and expiries)."""
        return self.ctx.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.ctx.clock = clock

    def reload(self, rules: Rules) -> bool:
        """Decide by `rules` from now on (a new config, or new members of its user groups).

        The object is replaced, never changed in place: work already under way finishes with
        the rules it started with. True when what open requests' messages show may have
        changed: the role map, the policies, the freezes, or which providers are configured."""
        old, self.ctx.rules = self.ctx.rules, rules
        return (
            old.role_map != rules.role_map
            or dict(old.policies) != dict(rules.policies)
            or old.freezes != rules.freezes
            or old.windows != rules.windows
            or old.timezone != rules.timezone
            or set(old.providers) != set(rules.providers)
        )

    # --- commands ----------------------------------------------------------------------

    def check(self, user: str, text: str) -> Reply | Command:
        """Parse, resolve and authorize, with no I/O: safe to run before the ack.

        Returns the final answer (help, a usage error, a refusal) or the command to `run`.
        """
        rules = self.ctx.rules
        try:
            command = parse(text, rules)
        except UsageError as exc:
            return Reply(texts.usage_error(exc))
        if isinstance(command, Help | Notify):  # anyone may turn direct messages off
            return Reply(texts.help_text(rules, user)) if isinstance(command, Help) else command
        role_map = rules.role_map
        if isinstance(command, Promote):
            decision = authz.can_request(role_map, user, command.action.scope)
            if not decision:
                return Reply(decision.reason)
        elif isinstance(command, Show):
            decision = authz.can_see(role_map, user, command.query.scope)
            if not decision:
                return Reply(decision.reason)
        elif not role_map.scopes_of(user):
            return Reply("You have no role in promote-bot, so you can't see or change requests.")
        elif isinstance(command, Lock | Unlock):
            refusal = self.holds.may_lock(user, command)
            if refusal:
                return refusal
        return command

    async def run(
        self, user: str, command: Command, channel: str, *, origin: str | None = None
    ) -> Reply | None:
        """Carry out a command that `check` let through (the part after the ack). `origin`:
        the acknowledged work it is (Slack's inbox key): done again, it asks for nothing
        twice (the shell has none: each line is a new command)."""
        if isinstance(command, Promote):
            return await self.lifecycle.ask(
                user, command.action, channel, command.emergency, at=command.at, origin=origin
            )
        if isinstance(command, Show):
            return await self.reads.show(command.query)
        if isinstance(command, Status):
            return self.reads.status(command.request_id)
        if isinstance(command, Pending):
            return Reply(texts.pending_text(self.reads.pending(user)))
        if isinstance(command, Locks):
            return self.reads.locks()
        if isinstance(command, Lock):
            return await self.holds.lock(user, command.pattern, command.reason)
        if isinstance(command, Unlock):
            return await self.holds.unlock(user, command.pattern)
        if isinstance(command, History):
            return self.reads.history(command)
        if isinstance(command, Approve):
            return await self.lifecycle.approve(user, command.request_id, command.comment)
        if isinstance(command, Reject):
            return await self.lifecycle.reject(user, command.request_id, command.reason)
        if isinstance(command, Cancel):
            return await self.lifecycle.cancel(user, command.request_id, command.reason)
        if isinstance(command, Notify):
            return self.notices.set(user, command.on)
        if isinstance(command, Rollback):
            return await self.lifecycle.rollback(user, command.request_id, channel, origin=origin)
        if isinstance(command, Stats):
            return await self.reads.stats(user, command.pattern, command.days)
        return Reply(texts.help_text(self.ctx.rules, user))

    # --- buttons -----------------------------------------------------------------------

    async def approve(self, user: str, request_id: int, comment: str | None = None) -> Reply | None:
        """Approve (the button, or a form with what the approver says, as typed), unless the
        preview no longer holds: then say why, and write nothing."""
        refusal = await self.drift.refusal(user, request_id)
        return refusal or await self.lifecycle.approve(user, request_id, comment)

    async def reject(self, user: str, request_id: int, reason: str | None) -> Reply | None:
        """Reject, saying why (as typed; required)."""
        return await self.lifecycle.reject(user, request_id, reason)

    def may_decide(self, user: str, request_id: int, verb: str) -> render.RequestView | Reply:
        """Before a form to approve or reject opens: the request, or why `user` can't (now)."""
        return self.lifecycle.may_decide(user, request_id, verb)

    async def rollback(
        self,
        user: str,
        request_id: int,
        channel: str | None = None,
        *,
        origin: str | None = None,
    ) -> Reply | None:
        """The Roll back button (or command): `origin` as for `run`."""
        return await self.lifecycle.rollback(user, request_id, channel, origin=origin)

    def refuse_click(self, user: str, request_id: int, why: str, what: str = "click") -> None:
        """A click (or a form) that is not for this request from this installation: no
        effect, audited."""
        request = self.store.get(request_id)
        target = request.action.target if request else None
        self.audit.record(request_id if request else None, user, f"{what} refused", target, why)

    async def sighted(
        self, sightings: list[Sighting], *, channel: str | None, wait: bool = True
    ) -> bool:
        """What a provider shows of things it said changed (a Znyx webhook): resolve, confirm,
        tell changes made outside the bot in `channel`; False to be called again shortly
        (one of them is being promoted now, and `wait`)."""
        return await self.truth.sighted(sightings, channel=channel, wait=wait)

    async def adopt(self, request_id: int, channel: str, ts: str) -> bool:
        """A click revealed a copy of the release message: keep it in step from now on."""
        return await self.delivery.adopt(request_id, channel, ts)

    # --- what people look at -----------------------------------------------------------

    async def home(self, user: str) -> render.HomeView:
        """`user`'s App Home, with what the last week's releases add up to (for those with a
        role)."""
        view = self.reads.home(user)
        if not self.ctx.rules.role_map.scopes_of(user):
            return view
        _, figures = await self.reads.figures(user, stats.HOME_DAYS)
        return replace(view, figures=tuple(figures), figure_days=stats.HOME_DAYS)

    def roles_of(self, user: str) -> tuple[str, ...]:
        return self.ctx.rules.role_map.roles_of(user)

    # --- timed work and shutdown -------------------------------------------------------

    async def deliver_due(self) -> int:
        """Bring every message that lags behind the store up to date, send the direct
        messages owed, and post the notes Slack failed to take; how many messages and
        direct messages."""
        done = await self.delivery.deliver_due() + await self.notices.deliver_due()
        await self.truth.notes.post_due()
        return done

    async def recover(self) -> int:
        """Resolve executions whose process is gone, by reading the providers; how many."""
        return await self.execution.recover()

    async def sweep(self) -> int:
        """Expire overdue requests, forget webhook deliveries and notes too old to come
        again, redraw messages a freeze window opening or closing changed; how many expired
        (done inbox work is removed by the `retention` job)."""
        self.truth.forget()
        expired = await self.lifecycle.expire_due()
        await self.holds.redraw_changed()
        return expired

    async def refresh_open(self) -> int:
        """Redraw every open request's message (the rules changed); how many Slack shows."""
        return await self.delivery.redraw()

    def schedule(self, scheduler: Scheduler) -> None:
        """The core's timed work, as named jobs: expiry, recovery, delivery, outgoing
        events, leases, previews read again (drift), `unknown` requests looked at again
        (settle), requests and promotions whose time came (`due`), and removing acknowledged
        work past its retention."""

        async def renew() -> None:
            self.leases.renew_all()

        running: asyncio.Task[None] | None = None

        async def run_due() -> None:
            async with self.inflight.working():  # a shutdown lets the promotions finish
                await self.waits.run_due()
                await self.stages.run_due()

        async def due() -> None:  # waiting requests whose time came, and planned promotions
            # The promotions it starts are work in flight, each bounded by its own deadline:
            # the job's bound must never cut one off between its writes. One run at a time.
            nonlocal running
            if running is not None:
                if not running.done():
                    return
                last, running = running, None
                failed = None if last.cancelled() else last.exception()
                if failed is not None:
                    raise failed  # counted and logged as this job's failure
            running = asyncio.create_task(run_due())

        scheduler.add("recover", self.recover, RECOVER_SECONDS)
        scheduler.add("due", due, DUE_SECONDS)
        scheduler.add("expire", self.sweep, EXPIRE_SECONDS)
        scheduler.add("deliver", self.deliver_due, DELIVER_SECONDS)
        scheduler.add("events", self.outbox.run, EVENTS_SECONDS)
        scheduler.add("leases", renew, self.leases.every, first=self.leases.every)
        scheduler.add("retention", self.retention.run, EVERY)
        scheduler.add("drift", self.drift.tick, TICK_SECONDS, timeout=60.0)
        every = self.drift.every.total_seconds()
        scheduler.add("settle", self.truth.settle, every, first=every)

    @asynccontextmanager
    async def working(self) -> AsyncIterator[None]:
        """Around work after an ack: a graceful shutdown waits for it (`drain`)."""
        async with self.inflight.working():
            yield

    @property
    def busy(self) -> int:
        return self.inflight.busy

    async def drain(self, within: float) -> bool:
        return await self.inflight.drain(within)

    async def abandon(self) -> None:
        await self.inflight.abandon()
