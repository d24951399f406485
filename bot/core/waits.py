"""Requests that wait for their time: a schedule (`--at`), a soak in the source stage, an allow
window (the decisions are bot/core/timing.py).

What a request waits for is worked out when it is asked for (and shown on its message from
then on: approvals are collected meanwhile) and again whenever it could run. Once it has its
approvals and must still wait, it moves to `approved` with when it runs, in one
compare-and-set (`Event.WAIT`), and is kept in the database: the job `due` (`run_due`) takes
each request whose time came with a claim (compare-and-set), so after any restart, from
whichever replica, it runs once. Then everything is checked again as for an approval (the
policy, locks and freezes, the soak, the window, and at the write the provider's own state):
it runs, waits more (the source changed: the soak clock restarted), or does not run, and why
is told on its message, in its thread and to the requester.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core import authz, markup
from bot.core.audit import Audit
from bot.core.context import Context
from bot.core.delivery import Delivery
from bot.core.errors import ProviderError
from bot.core.execution import Execution, move
from bot.core.freezes import fmt_in
from bot.core.holds import few, summary
from bot.core.locking import Holds
from bot.core.model import BOT_ACTOR, Action, Reply, Request, State
from bot.core.notes import Notes
from bot.core.notify import HELD, Notices
from bot.core.policy import Policy
from bot.core.stages import Stages
from bot.core.states import Event, destination, sources
from bot.core.timing import (
    At,
    Scheduled,
    Timing,
    gate,
    resolve_at,
    runs_text,
    windows_for,
    worked_out,
)

log = logging.getLogger(__name__)

CLAIM = timedelta(seconds=60)  # a process looking at a due request holds it this long
UNREAD_RETRY = timedelta(minutes=1)  # a source that could not be read is read again this soon
PER_RUN = 50  # due requests looked at by one run of the job, at most


def _next_change(timing: Timing, now: datetime) -> datetime | None:
    """When what an open request's message shows of its timing changes next by itself (its
    time comes, it has soaked, its window opens)."""
    ahead = [
        t
        for t in (timing.run_at, timing.soak_until, timing.window_opens, timing.runs_at)
        if t is not None and t > now
    ]
    return min(ahead) if ahead else None


class Waits:
    def __init__(
        self,
        ctx: Context,
        audit: Audit,
        holds: Holds,
        delivery: Delivery,
        execution: Execution,
        notices: Notices,
        stages: Stages,
    ) -> None:
        self.ctx, self.audit, self.holds, self.delivery = ctx, audit, holds, delivery
        self.execution, self.notices, self.stages = execution, notices, stages
        self.notes = Notes(ctx)  # why one did not run, in its thread (posted once)

    # --- asking ------------------------------------------------------------------------

    async def schedule(
        self, user: str, spec: At, target: str, emergency: str | None
    ) -> Scheduled | Reply:
        """`--at` as `user` meant it: in their own time zone (the chat's), else the config's
        `timezone`; refused when past, more than 30 days ahead, or outside every allow window
        of `target` (a break-glass request passes them)."""
        zone, whose = await self._zone_of(user)
        scheduled = resolve_at(spec, zone, self.ctx.clock())
        if isinstance(scheduled, str):
            return Reply(scheduled)
        windows = [] if emergency else windows_for(self.ctx.rules.windows, target)
        if windows and not any(w.window_at(scheduled.at) for w in windows):
            opens, _ = gate(scheduled.at, run_at=None, soak_until=None, windows=windows)
            spans = " or ".join(w.span() for w in windows)
            later = f" (the next opens {fmt_in(opens, zone)})" if opens else ""
            return Reply(
                f"`--at {spec.text}` is {fmt_in(scheduled.at, zone)}, outside the allow window "
                f"of `{target}`: {spans}{later}. Pick a time inside it; nothing was posted."
            )
        return replace(scheduled, whose=whose)

    async def _zone_of(self, user: str) -> tuple[str, str]:
        """`user`'s time zone and where it came from."""
        try:
            zone = await self.ctx.chat.time_zone(user)
        except Exception as exc:  # the chat failing costs the person's zone, not the request
            log.warning("could not read the time zone of %s: %r", user, exc)
            zone = None
        if zone:
            try:
                ZoneInfo(zone)
                return zone, "your time zone in Slack"
            except (ZoneInfoNotFoundError, ValueError):
                log.warning("the time zone %r of %s is not one the bot knows", zone, user)
        return self.ctx.rules.timezone, "the bot's time zone: the chat did not say yours"

    async def timing_for(
        self,
        action: Action,
        policy: Policy,
        emergency: str | None,
        timing: Timing | None,
    ) -> Timing | None:
        """What a request for `action` waits for now (its schedule kept from `timing`): the
        source stage is read when the policy soaks it. None when it waits for nothing. Allow
        windows hold neither a break-glass request nor a rollback (undoing one must not wait
        for next week's window)."""
        passes = emergency or action.undoing is not None
        windows = [] if passes else windows_for(self.ctx.rules.windows, action.target)
        soak = policy.soak if action.source is not None else None
        if timing is None and soak is None and not windows:
            return None
        timing = timing or Timing()
        read = None
        if soak is not None:
            try:
                read = await self.stages.live_since(action)
            except ProviderError as exc:
                place = timing.soak_place or "its source stage"
                why = f"{place} could not be read ({exc.message}); it is read again before it runs"
                timing = timing.model_copy(update={"soak_unread": why})
        live, seen = (read[0], read[2]) if read else (None, None)
        return worked_out(
            timing, self.ctx.clock(), soak=soak, live=live, seen=seen, windows=windows
        )

    @staticmethod
    def scheduled_timing(scheduled: Scheduled | None) -> Timing | None:
        if scheduled is None:
            return None
        return Timing(run_at=scheduled.at, zone=scheduled.zone, at_note=scheduled.note)

    def first_due(self, timing: Timing | None) -> datetime | None:
        """When the bot first looks again at a request just asked for."""
        return _next_change(timing, self.ctx.clock()) if timing is not None else None

    # --- its approvals are met -----------------------------------------------------------

    async def proceed(self, request_id: int, user: str) -> Reply | None:
        """The request has its approvals (or needs none): run it now if its time has come,
        else wait for it (`approved`, kept in the database, run by the job `due`)."""
        ctx = self.ctx
        request = ctx.store.get(request_id)
        if request is None or not request.state.is_open:
            return await self.execution.execute(request_id, user)  # it says why not
        policy = ctx.rules.policy_of(request)
        timing = await self.timing_for(request.action, policy, request.emergency, request.timing)
        now = ctx.clock()
        if timing is not None and timing.never:
            ctx.store.set_timing(request.id, timing, None, at=now)
            await self.delivery.converge(request.id)
            return Reply(f"#{request.id} can't run: {timing.never}.")
        due = None
        if timing is not None:
            due = timing.runs_at or (now + UNREAD_RETRY if timing.soak_unread else None)
        if due is None:
            if timing is not None and timing != request.timing:
                ctx.store.set_timing(request.id, timing, None, at=now)
            return await self.execution.execute(request.id, user)
        assert timing is not None
        expires = max(request.expires_at, due + policy.expires_after)
        if not ctx.store.wait(
            request.id,
            sources(Event.WAIT),
            destination(Event.WAIT),
            timing=timing,
            due_at=due,
            expires_at=expires,
            at=now,
        ):
            return Reply(f"Request #{request.id} was decided a moment ago.")
        runs = runs_text(timing, ctx.rules.timezone) or "runs once its source can be read"
        if not self._restarted(request, timing) and (
            request.state is State.PENDING or timing.runs_at != (request.timing or Timing()).runs_at
        ):
            self.audit.record(request.id, BOT_ACTOR, "waits", request.action.target, runs)
        await self.delivery.converge(request.id)
        return Reply(f"#{request.id} has its approvals and {runs}.")

    def _restarted(self, request: Request, timing: Timing) -> bool:
        """Audit a soak clock that restarted (the source changed); True if it did."""
        before = request.timing.restarted if request.timing else None
        if not timing.restarted or timing.restarted == before:
            return False
        target = request.action.target
        self.audit.record(request.id, BOT_ACTOR, "soak restarted", target, timing.restarted)
        return True

    # --- the job -----------------------------------------------------------------------

    async def run_due(self) -> int:
        """Look at every open request whose time came (each claimed first); how many."""
        ctx = self.ctx
        looked = 0
        for request in ctx.store.due(ctx.clock(), PER_RUN):
            assert request.due_at is not None
            if not ctx.store.claim_due(request.id, request.due_at, ctx.clock() + CLAIM):
                continue  # another process has it
            try:
                await self._look_again(request)
            except ProviderError as exc:  # its claim lapses: looked at again then
                log.warning("looking at #%s again failed: %s", request.id, exc.message)
            looked += 1
        return looked

    async def _look_again(self, request: Request) -> None:
        ctx = self.ctx
        rules = ctx.rules
        policy = rules.policy_of(request)
        counted = len(authz.counted_approvers(rules.role_map, policy, request))
        now = ctx.clock()
        timing = request.timing or Timing()
        if request.state is State.PENDING:
            if timing.run_at is not None and timing.run_at <= now and counted < policy.approvals:
                await self._expire_unapproved(request, timing)
            elif counted >= policy.approvals:  # an approval whose run was cut short
                await self.proceed(request.id, BOT_ACTOR)
            else:  # what its message shows changed (it soaked, its window opened)
                again = await self.timing_for(request.action, policy, request.emergency, timing)
                again = again or timing
                ctx.store.set_timing(request.id, again, _next_change(again, now), at=now)
                await self.delivery.converge(request.id)
            return
        if counted < policy.approvals and timing.run_at is not None:
            await self._expire_unapproved(request, timing)  # its time came without them
            return
        if counted < policy.approvals:
            why = (
                f"When its time came ({markup.fmt_time(now)}) its approvals no longer met the "
                f"policy ({counted} of {policy.approvals} count now): it waits for approval again"
            )
            await self._not_run(request, timing.model_copy(update={"held": why}), reopen=True)
            return
        on_hold = [] if request.emergency else self.holds.on(request.action.target)
        if on_hold:
            head = f"Did not run at {markup.fmt_time(now)}: "
            tail = ". Its approvals are kept: approve it again once nothing holds it"
            why = head + "; ".join(few([h.text for h in on_hold])) + tail
            held = timing.model_copy(update={"held": why})
            await self._not_run(request, held, words=head + summary(on_hold) + tail)
            return
        await self.proceed(request.id, BOT_ACTOR)

    async def _not_run(
        self, request: Request, timing: Timing, *, reopen: bool = False, words: str | None = None
    ) -> None:
        """Its time came and it can't run: shown on its message and told to the requester
        (`timing.held`, in the markup; `words`, the same in plain words for the audit log);
        it stays open (with its approvals), and nothing runs it by itself any more."""
        ctx = self.ctx
        now = ctx.clock()
        told = self.notices.about(request, f"{HELD}{now:%Y%m%dT%H%M%S}", None)
        if not ctx.store.set_timing(request.id, timing, None, at=now, notices=told):
            return
        if reopen:
            move(ctx, request.id, Event.REOPEN)
        target = request.action.target
        self.audit.record(request.id, BOT_ACTOR, "did not run", target, words or timing.held or "")
        await self.delivery.converge(request.id)
        if request.message_ts is not None and timing.held:
            key = f"held:{request.id}:{now:%Y%m%dT%H%M%S}"
            text = f"⏸ #{request.id}: {timing.held}."
            await self.notes.tell(key, request.channel, text, thread_ts=request.message_ts)

    async def _expire_unapproved(self, request: Request, timing: Timing) -> None:
        """A scheduled request without its approvals when its time came: it expires then."""
        ctx = self.ctx
        told = self.notices.about(request, "expired", None)
        if not move(ctx, request.id, Event.EXPIRE, notices=told):
            return
        when = markup.fmt_time(timing.run_at) if timing.run_at else "its time"
        self.audit.record(
            request.id,
            BOT_ACTOR,
            "expired",
            request.action.target,
            f"scheduled for {when} and not approved by then",
        )
        await self.delivery.converge(request.id)

    # --- a source stage changed ----------------------------------------------------------

    async def retime(self, thing: str) -> int:
        """Work out again what the open requests soaking in stage `thing` wait for (it
        changed: their soak clock may restart); how many changed."""
        ctx = self.ctx
        changed = 0
        if not ctx.rules.soaks:
            return 0
        for request in ctx.store.in_states([State.PENDING, State.APPROVED]):
            timing = request.timing
            if timing is None or timing.soak_thing != thing:
                continue
            if request.state is State.APPROVED and timing.held and request.due_at is None:
                continue  # it did not run at its time and was told so: only people rerun it
            policy = ctx.rules.policy_of(request)
            again = await self.timing_for(request.action, policy, request.emergency, timing)
            if again is None or again == timing:
                continue
            now = ctx.clock()
            if request.state is State.APPROVED and again.runs_at is not None:
                expires = max(request.expires_at, again.runs_at + policy.expires_after)
                ctx.store.wait(
                    request.id,
                    [State.APPROVED],
                    destination(Event.WAIT),
                    timing=again,
                    due_at=again.runs_at,
                    expires_at=expires,
                    at=now,
                )
            else:
                due = now if request.state is State.APPROVED else _next_change(again, now)
                ctx.store.set_timing(request.id, again, due, at=now)
            self._restarted(request, again)
            await self.delivery.converge(request.id)
            changed += 1
        return changed
