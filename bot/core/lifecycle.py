"""A request's life with people: asked for (a release message with its preview), approved,
rejected, cancelled, expired, or undone by a rollback. Each change is the state table's
compare-and-set, audited and shown; once a request has its approvals it is executed
(bot/core/execution.py)."""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.core import authz, markup, texts
from bot.core.audit import Audit
from bot.core.commands import REASON_LIMIT, said_text
from bot.core.context import Context
from bot.core.delivery import Delivery
from bot.core.errors import ProviderError
from bot.core.execution import Execution, move
from bot.core.holds import held_text, summary
from bot.core.locking import Holds
from bot.core.model import BOT_ACTOR, Action, NewRequest, Preview, Reply, Request, State
from bot.core.notify import APPROVED, Notices
from bot.core.policy import gate_refusal
from bot.core.ports import AskedBefore, ChatError, OpenRequestExists
from bot.core.render import RequestView
from bot.core.states import Event, sources
from bot.core.timing import At
from bot.core.waits import Waits

log = logging.getLogger(__name__)


class Lifecycle:
    def __init__(
        self,
        ctx: Context,
        audit: Audit,
        holds: Holds,
        delivery: Delivery,
        execution: Execution,
        notices: Notices,
        waits: Waits,
    ) -> None:
        self.ctx, self.audit, self.holds = ctx, audit, holds
        self.delivery, self.execution, self.notices = delivery, execution, notices
        self.waits = waits  # once approved: now, or at its time (bot/core/waits.py)

    # --- asking ------------------------------------------------------------------------

    async def ask(
        self,
        user: str,
        action: Action,
        channel: str,
        emergency: str | None = None,
        *,
        rolls_back: int | None = None,
        at: At | None = None,
        retry_errors: bool = False,
        origin: str | None = None,
    ) -> Reply | None:
        """Read the preview, record the request and post its release message. A lock or a
        freeze on the target refuses it before anything is read, unless it is an `emergency`.
        `at`: run it then (`--at`). `retry_errors`: a preview the provider failed to answer
        raises (the caller asks again later) instead of being refused. `origin`: the
        acknowledged work asking (a command's inbox key); work done again (its process was
        killed) carries on from the request it made instead of asking again."""
        ctx = self.ctx
        made = ctx.store.made_by(origin) if origin is not None else None
        if made is not None:
            return await self._asked_before(made.id, user)
        provider = ctx.providers.get(action.provider)
        if provider is None:
            return Reply(f"{action.provider} is not configured on this bot.")
        scheduled = None
        if at is not None:
            scheduled = await self.waits.schedule(user, at, action.target, emergency)
        if isinstance(scheduled, Reply):
            return scheduled
        # Locks now, and freezes when it runs: a schedule may be set for after a freeze.
        on_hold = self.holds.on(action.target, scheduled.at if scheduled else None)
        if on_hold and not emergency:
            self.audit.record(None, user, "refused", action.target, summary(on_hold))
            when = "then" if scheduled else "now"
            return Reply(held_text(f"`{action.target}` can't be promoted {when}", on_hold))
        busy = self._already_open(action)  # before reading the provider, when it can tell
        if busy:
            return busy
        if emergency:
            short = self._emergency_unreachable(user, action)
            if short:
                self.audit.record(None, user, "refused", action.target, short)
                return Reply(short)
        try:
            preview = await provider.preview(action)
        except ProviderError as exc:
            if retry_errors:
                raise
            # Without the provider's state the bot can't tell whether this may be promoted.
            log.warning("preview of %s failed: %s", action.target, exc.message)
            preview = Preview(refusal=f"{exc.message}. Nothing was posted.")
        now = ctx.clock()
        if preview.refusal:
            self.audit.record(None, user, "refused", action.target, preview.refusal)
            return Reply(markup.literal(preview.refusal))
        action = preview.action or action  # what is approved is exactly what will run
        preview = preview.model_copy(update={"action": None})
        policy = ctx.rules.policy(action)
        refused = gate_refusal(policy, preview.gates, action.target)
        if refused:  # the policy lets only some of what the provider has through
            self.audit.record(None, user, "refused", action.target, refused)
            return Reply(f"{refused} Nothing was posted.")
        if emergency:
            policy = policy.for_emergency()
        timing = await self.waits.timing_for(
            action, policy, emergency, self.waits.scheduled_timing(scheduled)
        )
        expires = now + policy.expires_after
        if scheduled is not None:  # approvals may come until its time
            expires = max(expires, scheduled.at)
        new = NewRequest(
            action=action,
            requester=user,
            channel=channel,
            preview=preview,
            created_at=now,
            expires_at=expires,
            rolls_back=rolls_back,
            emergency=emergency,
            timing=timing,
            due_at=self.waits.first_due(timing),
            origin=origin,
        )
        new = replace(new, notices=self.notices.waiting(new, policy))
        try:
            request = ctx.store.create_request(new)
        except AskedBefore as exc:  # the same work, done at the same time by another process
            return await self._asked_before(exc.request_id, user)
        except OpenRequestExists as exc:
            return self._already_open(action, exc.request_id) or Reply(
                f"Request #{exc.request_id} is already open for this; nothing was posted."
            )
        what = action.title if rolls_back is None else f"rollback of #{rolls_back}: {action.title}"
        self.audit.record(request.id, user, "requested", action.target, what)
        if emergency:
            passes = summary(on_hold)
            self.audit.record(
                request.id, user, "🚨 emergency", action.target, f"{emergency} (passes: {passes})"
            )
        try:
            await self.delivery.post(request)
        except ChatError as exc:
            # Should the post appear after all (Slack carried it out late), it shows this.
            why = f"the release message could not be posted ({exc})"
            move(ctx, request.id, Event.CANCEL, by=user, reason=why)
            self.audit.record(
                request.id, user, "cancelled", action.target, f"could not post: {exc}"
            )
            return Reply(
                f"I couldn't post the release message here ({markup.literal(str(exc))}), "
                "so nothing was done."
            )
        reply = await self.waits.proceed(request.id, user) if policy.approvals == 0 else None
        current = ctx.store.get(request.id)
        if scheduled is not None and current is not None and current.state.is_open:
            return Reply(texts.scheduled_text(request.id, scheduled, policy.approvals))
        return reply

    async def _asked_before(self, request_id: int, user: str) -> Reply | None:
        """The work that asked for `request_id` is done again (its process stopped before it
        was marked done): nothing is asked, read or audited again. Its message is brought up
        to date (one never posted is posted by `deliver_due`, after looking for it), and one
        that needs no approval and is still pending goes on to run (compare-and-set)."""
        request = self.ctx.store.get(request_id)
        if request is None:
            return None
        log.warning(
            "the command that asked for #%s was done again (its process stopped): carrying on"
            " from it (%s), asking nothing again",
            request.id,
            request.state.value,
        )
        await self.delivery.converge(request.id)
        policy = self.ctx.rules.policy_of(request)
        if request.state is State.PENDING and policy.approvals == 0 and request.message_ts:
            return await self.waits.proceed(request.id, user)
        return None

    async def rollback(
        self,
        user: str,
        request_id: int,
        channel: str | None = None,
        *,
        origin: str | None = None,
    ) -> Reply | None:
        """Open a request that restores what succeeded request `request_id` replaced: its
        provider turns it into the action that undoes it. Posted in `channel`, by default
        beside the request it undoes; a request like any other from there on."""
        undone = self.ctx.store.get(request_id)
        if undone is None:
            return Reply(f"There is no request #{request_id}.")
        if undone.state is not State.SUCCEEDED or undone.outcome is None:
            return Reply(
                f"#{undone.id} {markup.where_it_is(undone.state)}: only a succeeded promotion "
                "can be rolled back."
            )
        if undone.rolled_back_by is not None:
            return Reply(f"#{undone.id} was already rolled back by #{undone.rolled_back_by}.")
        rules = self.ctx.rules
        provider = rules.provider(undone.action.provider)
        if provider is None:
            return Reply(f"{undone.action.provider} is not configured on this bot.")
        undo = provider.rollback(undone.action, undone.outcome)
        if isinstance(undo, str):
            return Reply(f"#{undone.id} can't be rolled back: {markup.literal(undo)}")
        decision = authz.can_request(rules.role_map, user, undo.scope)
        if not decision:
            return Reply(decision.reason)
        return await self.ask(
            user, undo, channel or undone.channel, rolls_back=undone.id, origin=origin
        )

    def _already_open(self, action: Action, request_id: int | None = None) -> Reply | None:
        """The answer when a request for the same thing is open: one at a time per thing."""
        store = self.ctx.store
        if request_id is not None:
            open_request = store.get(request_id)
        elif action.thing is not None:
            open_request = store.open_for(action.thing)
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
            f"#{open_request.id} {markup.literal(open_request.action.title)} is already open for "
            f"this (asked by {markup.user(open_request.requester)}, {open_request.state.value}): "
            f"{how}, or decide it, before asking again. Nothing was posted."
        )

    def _emergency_unreachable(self, user: str, action: Action) -> str | None:
        """Why a break-glass request could never get its approvals, or None: it would only
        sit there until it expires."""
        rules = self.ctx.rules
        policy = rules.policy(action).for_emergency()
        possible = authz.approvers_possible(rules.role_map, policy, action.scope, user)
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

    # --- deciding ----------------------------------------------------------------------

    async def _open(self, request_id: int, verb: str) -> Request | Reply:
        """The request, if it is still open; else why there is nothing to `verb` (one past
        its expiry is expired now, so its message says so too)."""
        request = self.ctx.store.get(request_id)
        if request is None:
            return Reply(f"There is no request #{request_id}.")
        if request.state.is_open and self.ctx.clock() >= request.expires_at:
            await self.expire_if_due(request_id)
            return Reply(f"Request #{request_id} expired at {markup.fmt_time(request.expires_at)}.")
        if not request.state.is_open:
            return Reply(self._closed(request, verb))
        return request

    @staticmethod
    def _closed(request: Request, verb: str) -> str:
        """ "Request #3 has ended: it succeeded; nothing to approve."."""
        return f"Request #{request.id} {markup.where_it_is(request.state)}; nothing to {verb}."

    def may_decide(self, user: str, request_id: int, verb: str) -> RequestView | Reply:
        """Before a form to `verb` ("approve", "reject") it opens: the request's message if
        `user` may do it now, else why not. Reads only; the decision is checked again."""
        ctx = self.ctx
        request = ctx.store.get(request_id)
        if request is None:
            return Reply(f"There is no request #{request_id}.")
        if not request.state.is_open:
            return Reply(self._closed(request, verb))
        if ctx.clock() >= request.expires_at:
            return Reply(f"Request #{request_id} expired at {markup.fmt_time(request.expires_at)}.")
        rules = ctx.rules
        check = authz.can_approve if verb == "approve" else authz.can_decide
        decision = check(rules.role_map, rules.policy_of(request), request, user)
        if not decision:
            return Reply(decision.reason)
        if verb == "approve" and user in request.approvers:
            return Reply(f"You have already approved #{request.id}.")
        return self.delivery.view(request)

    async def approve(self, user: str, request_id: int, comment: str | None = None) -> Reply | None:
        """An approval, with what the approver said (`comment`, as typed: made safe here)."""
        comment = said_text(comment)
        request = await self._open(request_id, "approve")
        if isinstance(request, Reply):
            return request
        ctx = self.ctx
        rules = ctx.rules  # one click, one config, even if a reload lands meanwhile
        policy = rules.policy_of(request)
        decision = authz.can_approve(rules.role_map, policy, request, user)
        target = request.action.target
        if not decision:
            self.audit.record(request.id, user, "approval refused", target, decision.reason)
            return Reply(decision.reason)
        held = self.holds.stopping(request, "approved")
        if held:  # the audit keeps plain words
            self.audit.record(
                request.id, user, "approval refused", target, self.holds.held_words(request)
            )
            return held
        gates = request.preview.gates if request.preview else {}
        refused = gate_refusal(policy, gates, target)  # the policy as it is now
        if refused:
            self.audit.record(request.id, user, "approval refused", target, refused)
            return Reply(f"{refused} It can't be approved; cancel it or ask for another.")
        told = self.notices.about(request, APPROVED + user, user)
        if not ctx.store.add_approval(request.id, user, ctx.clock(), comment=comment, notices=told):
            current = ctx.store.get(request.id)
            if current is not None and not current.state.is_open:
                return Reply(self._closed(current, "approve"))
            if current is not None and len(
                authz.counted_approvers(rules.role_map, policy, current)
            ) >= max(policy.approvals, 1):
                # held when last approved; free now
                return await self.waits.proceed(request.id, user)
            return Reply(f"You have already approved #{request.id}.")
        self.audit.record(request.id, user, "approved", target, comment or "")
        request = ctx.store.get(request.id)
        assert request is not None
        counted = len(authz.counted_approvers(rules.role_map, policy, request))
        if counted >= policy.approvals:
            return await self.waits.proceed(request.id, user)
        await self.delivery.converge(request.id)
        missing = policy.approvals - counted
        return Reply(f"Approval recorded. #{request.id} needs {missing} more.")

    async def reject(self, user: str, request_id: int, reason: str | None) -> Reply | None:
        """A rejection says why (`reason`, as typed: made safe here); the requester is told."""
        reason = said_text(reason)
        if reason is None:
            return Reply(
                f"Say why you reject #{request_id} (up to {REASON_LIMIT} characters): "
                f"`/promote reject {request_id} <reason…>`. Nothing was changed."
            )
        request = await self._open(request_id, "reject")
        if isinstance(request, Reply):
            return request
        rules = self.ctx.rules
        policy = rules.policy(request.action)
        decision = authz.can_decide(rules.role_map, policy, request, user)
        target = request.action.target
        if not decision:
            self.audit.record(request.id, user, "rejection refused", target, decision.reason)
            return Reply(decision.reason)
        told = self.notices.about(request, "rejected", user)
        if not move(self.ctx, request.id, Event.REJECT, by=user, reason=reason, notices=told):
            return Reply(f"Request #{request.id} was decided a moment ago; nothing to reject.")
        self.audit.record(request.id, user, "rejected", target, reason)
        await self.delivery.converge(request.id)
        return None

    async def cancel(self, user: str, request_id: int, reason: str | None = None) -> Reply | None:
        """The requester, or anyone holding the action's scope, may cancel while it is open,
        saying why if they like (the requester is told when it was someone else)."""
        reason = said_text(reason)
        request = await self._open(request_id, "cancel")
        if isinstance(request, Reply):
            return request
        if user != request.requester and not self.ctx.rules.role_map.has_scope(
            user, request.action.scope
        ):
            return Reply(
                f"Only the requester or someone holding `{request.action.scope}` may cancel "
                f"#{request.id}."
            )
        told = self.notices.about(request, "cancelled", user)
        if not move(self.ctx, request.id, Event.CANCEL, by=user, reason=reason, notices=told):
            return Reply(f"Request #{request.id} was decided a moment ago; nothing to cancel.")
        self.audit.record(request.id, user, "cancelled", request.action.target, reason or "")
        await self.delivery.converge(request.id)
        return Reply(f"Request #{request.id} is cancelled.")

    # --- expiring ----------------------------------------------------------------------

    async def expire_if_due(self, request_id: int) -> bool:
        """Expire the request if it is open and past its expiry; True if this call did."""
        ctx = self.ctx
        request = ctx.store.get(request_id)
        if request is None or not request.state.is_open or ctx.clock() < request.expires_at:
            return False
        told = self.notices.about(request, "expired", None)
        if not move(ctx, request_id, Event.EXPIRE, notices=told):
            return False
        self.audit.record(request_id, BOT_ACTOR, "expired", request.action.target)
        await self.delivery.converge(request_id)
        return True

    async def expire_due(self) -> int:
        """Expire every open request past its expiry and update its message; how many."""
        expired = 0
        for request in self.ctx.store.in_states(sources(Event.EXPIRE), expired_by=self.ctx.clock()):
            expired += await self.expire_if_due(request.id)
        return expired
