"""Executing a request exactly once, and resolving one whose process is gone.

The move to `executing` is the compare-and-set that makes a promotion run once however many
clicks, replicas or redeliveries ask for it. The provider's writes go through the request's
journal of steps (bot/core/steps.py). A process that stops mid-way leaves a lease that lapses;
`recover` then decides the outcome by reading the provider, never by writing blindly again:
a multi-step action carries on from its last recorded step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bot.core.audit import Audit
from bot.core.context import Context
from bot.core.delivery import Delivery
from bot.core.errors import ProviderError
from bot.core.holds import summary
from bot.core.inflight import Leases
from bot.core.locking import Holds
from bot.core.model import BOT_ACTOR, Outcome, Reply, Request, State
from bot.core.notify import Notices as Notifier
from bot.core.ports.store import Notices, StoreError
from bot.core.states import OUTCOME_EVENT, Event, destination, sources
from bot.core.steps import LeaseLost, Steps

log = logging.getLogger(__name__)

READ_DEADLINE = timedelta(seconds=30)  # for the read that decides an interrupted execution
# How long a provider write cut off by a shutdown may still land: longer than its HTTP timeout.
WRITE_SETTLES = timedelta(seconds=30)
_LOST = "another process took its lease over (this one had stalled): it sent nothing more"


def promoted_by(request: Request, installation: str) -> str:
    """Who the provider is told did it; unique per request and bot database (two bots may share
    a provider), so a read after a restart can find it and never takes another's for it."""
    return f"slack:{request.requester} via promote-bot #{request.id} ({installation})"


def move(
    ctx: Context,
    request_id: int,
    event: Event,
    *,
    by: str | None = None,
    outcome: Outcome | None = None,
    reason: str | None = None,
    notices: Notices = (),
) -> bool:
    """The compare-and-set for `event`, as the state table defines it; a claim takes the
    lease on the request for this process. `notices` (direct messages) are owed with it."""
    now = ctx.clock()
    lease = (ctx.owner, now + ctx.lease) if event is Event.CLAIM else None
    return ctx.store.transition(
        request_id,
        sources(event),
        destination(event),
        at=now,
        by=by,
        outcome=outcome,
        lease=lease,
        reason=reason,
        notices=notices,
    )


def _outcome_of_error(exc: ProviderError) -> Outcome:
    if exc.fate == "unknown":
        return Outcome(
            state="unknown",
            headline=exc.message,
            check=f"Check in {exc.provider} whether the promotion happened before asking again.",
        )
    return Outcome(state="failed", headline=exc.message)


class Execution:
    def __init__(
        self,
        ctx: Context,
        audit: Audit,
        holds: Holds,
        delivery: Delivery,
        leases: Leases,
        notices: Notifier,
    ) -> None:
        self.ctx, self.audit, self.holds = ctx, audit, holds
        self.delivery, self.leases, self.notices = delivery, leases, notices
        # Told of each request that succeeded, once it is recorded and shown (a stage the bot
        # promoted into changed: bot/core/stages.py). Each must not raise.
        self.landed: list[Callable[[Request], Awaitable[None]]] = []

    async def execute(self, request_id: int, user: str) -> Reply | None:
        """Claim the request (compare-and-set to `executing`) and call the provider once.

        A lock or a freeze that came after the last approval still stops it (it stays open
        with its approvals: an approval after the lock is lifted runs it)."""
        ctx = self.ctx
        before = ctx.store.get(request_id)
        if before is not None and before.state.is_open:
            held = self.holds.stopping(before, "run")
            if held:  # the audit keeps plain words
                words = self.holds.held_words(before)
                self.audit.record(request_id, BOT_ACTOR, "held", before.action.target, words)
                await self.delivery.touch(request_id)
                return Reply(
                    held.text + "\nIts approvals are kept: approve it again once nothing holds it."
                )
            if before.emergency:
                on_hold = self.holds.on(before.action.target)
                if on_hold:
                    passes = summary(on_hold)
                    self.audit.record(
                        request_id,
                        BOT_ACTOR,
                        "🚨 emergency passes",
                        before.action.target,
                        f"{before.emergency} (passes: {passes})",
                    )
        if not move(ctx, request_id, Event.CLAIM):
            current = ctx.store.get(request_id)
            state = current.state.value if current else "gone"
            return Reply(f"Request #{request_id} is already {state}; it runs only once.")
        request = ctx.store.get(request_id)
        assert request is not None
        action = request.action
        self.audit.record(request_id, user, "executing", action.target)
        # Show "promoting now" while the provider works, not before it starts.
        showing = asyncio.create_task(self.delivery.converge(request_id))

        def renew(until: datetime) -> bool:
            return ctx.store.renew(request_id, ctx.owner, until)

        steps = Steps(
            ctx.store,
            request_id,
            ctx.clock,
            guard=lambda: self._held_now(request, "while it was starting"),
            owner=ctx.owner,
        )
        try:
            with self.leases.hold(renew):
                async with asyncio.timeout(ctx.deadline.total_seconds()):
                    provider = ctx.providers[action.provider]
                    expect = request.preview.expect if request.preview else {}
                    if not expect:  # asked before the bot recorded what it would replace
                        raise ProviderError(
                            action.provider,
                            "not sent: this request was made before the bot recorded what it "
                            "would replace, so it can't check that nothing moved since; "
                            "request again",
                        )
                    outcome = await provider.execute(
                        action,
                        promoted_by=promoted_by(request, ctx.store.installation),
                        expect=expect,
                        steps=steps,
                    )
        except LeaseLost:  # stalled past the lease: the recovery that took it over decides
            log.warning("promotion #%s stopped: its lease was taken over", request_id)
            self.audit.record(request_id, BOT_ACTOR, "lease lost", action.target, _LOST)
            showing.cancel()
            return None
        except ProviderError as exc:
            outcome = _outcome_of_error(exc)
        except asyncio.CancelledError:  # shutting down past its deadline: nothing is known
            # A write cut off now may still land at the provider: a recovery reads only once
            # that can no longer happen, so it never takes an in-flight write for "not done".
            with contextlib.suppress(Exception):
                renew(ctx.clock() + WRITE_SETTLES)
            showing.cancel()
            raise
        except TimeoutError:  # the provider kept the bot waiting: decide by reading, once
            seconds = int(ctx.deadline.total_seconds())
            why = f"the promotion took over {seconds} s"
            outcome = await self._carry_on(request, why, renew)
            if outcome is None:
                showing.cancel()
                return None
            if outcome.state == "failed":  # the write may still be on its way: don't say no
                outcome = outcome.model_copy(
                    update={
                        "state": "unknown",
                        "check": f"The call was cut off after {seconds} s and may still take "
                        f"effect: check {action.provider} before asking again.",
                    }
                )
        except StoreError as exc:  # the database, not the bot: no outcome can be recorded now
            # One line, no traceback. It stays executing; once its lease lapses, a recovery
            # reads the provider (never writes again) and records what happened.
            log.error(
                "promotion #%s was cut off: the database failed (%s); what happened is read "
                "from %s once its lease lapses",
                request_id,
                exc,
                action.provider,
            )
            showing.cancel()
            raise
        except Exception:  # a bug after the call may have been sent: never guess
            log.exception("promotion #%s ended in an unexpected error", request_id)
            outcome = Outcome(
                state="unknown",
                headline="the bot hit an internal error while promoting",
                check=f"Check {action.provider} to see whether {action.title} happened.",
            )
        told = self.notices.about(request, outcome.state, None)
        if move(ctx, request_id, OUTCOME_EVENT[outcome.state], outcome=outcome, notices=told):
            event = outcome.state
        elif outcome.state == "succeeded" and move(
            ctx, request_id, Event.CORRECT, outcome=outcome, notices=told
        ):
            # Resolved by a recovery while this process still waited (it had stalled past its
            # lease): the provider's own answer is the truth, and the message shows it.
            log.warning("promotion #%s succeeded after a recovery had decided it", request_id)
            event = "corrected: succeeded"
        else:  # held past the lease and resolved by a recovery meanwhile: keep the truth too
            log.warning("promotion #%s ended after it had been recovered", request_id)
            event = f"late outcome: {outcome.state}"
        self.audit.record(request_id, BOT_ACTOR, event, action.target, outcome.headline)
        await showing  # the final update must come after the "promoting now" one
        await self.delivery.converge(request_id)
        await self._rolled_back(request_id)
        await self._landed(request_id)
        return None

    def _held_now(self, request: Request, when: str) -> str | None:
        """Right before a write: a lock or a freeze that came since the check at the claim
        (`when`: while the provider was being read, or while the bot was down) still stops
        it, unless it is an emergency. In plain words: an outcome's headline is shown as text."""
        if request.emergency:
            return None
        on_hold = self.holds.on(request.action.target)
        if not on_hold:
            return None
        return f"{summary(on_hold)}, {when}; request it again once nothing holds it"

    async def recover(self) -> int:
        """Resolve requests whose executing process is gone (its lease lapsed), by reading
        the provider and comparing with what the request recorded before the write. A
        promotion is never sent again; what can't be told apart becomes `unknown`. The lease
        taken over is held (renewed) while the recovery reads and carries on, and its journal
        is fenced by it: a recovery that loses it sends nothing more."""
        ctx = self.ctx
        resolved = 0
        for request in ctx.store.lapsed(ctx.clock(), unleased_before=ctx.clock() - ctx.lease):
            now = ctx.clock()  # per request: the ones before may have taken a while
            if not ctx.store.take_over(
                request.id, ctx.owner, now, now + ctx.lease, unleased_before=now - ctx.lease
            ):
                continue  # another process took it first

            def renew(until: datetime, request_id: int = request.id) -> bool:
                return ctx.store.renew(request_id, ctx.owner, until)

            # True whether its process stopped or only its database failed it (`execute`).
            outcome = await self._carry_on(request, "the promotion was cut off", renew)
            if outcome is not None:
                resolved += await self._conclude(request, outcome, "recovered: ")
        return resolved

    async def _carry_on(
        self, request: Request, why: str, renew: Callable[[datetime], bool]
    ) -> Outcome | None:
        """`_read_outcome` while holding the request's lease, its journal fenced by it and
        guarded by the holds before each step never sent; None when the lease was lost
        (whoever took it over decides). A hold that stops it is audited."""
        held: list[str] = []

        def guard() -> str | None:
            why_held = self._held_now(request, "which came while it was under way")
            if why_held:
                held.append(self.holds.held_words(request))
            return why_held

        ctx = self.ctx
        steps = Steps.load(ctx.store, request.id, ctx.clock, guard=guard, owner=ctx.owner)
        try:
            with self.leases.hold(renew):
                outcome = await self._read_outcome(request, why, steps)
        except LeaseLost:
            log.warning("recovery of #%s stopped: its lease was taken over", request.id)
            self.audit.record(request.id, BOT_ACTOR, "lease lost", request.action.target, _LOST)
            return None
        except asyncio.CancelledError:  # shutting down: a step it sent may still land
            with contextlib.suppress(Exception):
                renew(ctx.clock() + WRITE_SETTLES)
            raise
        if held:
            target = request.action.target
            self.audit.record(request.id, BOT_ACTOR, "held", target, held[-1])
        return outcome

    async def _read_outcome(self, request: Request, why: str, steps: Steps) -> Outcome:
        """Decide a request's outcome by reading the provider, never by writing again:
        `succeeded` when it shows the change, `failed` when it shows exactly the state from
        before the write, `unknown` otherwise or when the read fails."""
        ctx = self.ctx
        action = request.action
        provider = ctx.providers.get(action.provider)
        reason = f"{action.provider} is not configured"
        outcome: Outcome | None = None
        if provider is not None:
            expect = request.preview.expect if request.preview else {}
            try:
                async with asyncio.timeout(READ_DEADLINE.total_seconds()):
                    outcome = await provider.observe(
                        action,
                        promoted_by=promoted_by(request, ctx.store.installation),
                        expect=expect,
                        steps=steps,
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
        return outcome.model_copy(
            update={"headline": f"{outcome.headline} (read again after {why})"}
        )

    async def _conclude(self, request: Request, outcome: Outcome, prefix: str = "") -> int:
        """Record the outcome of an executing request and show it; 1 if this call did. A
        success read after another process decided it corrects that, as in `execute`."""
        ctx, target = self.ctx, request.action.target
        told = self.notices.about(request, outcome.state, None)
        if move(ctx, request.id, OUTCOME_EVENT[outcome.state], outcome=outcome, notices=told):
            event = outcome.state
        elif outcome.state == "succeeded" and move(
            ctx, request.id, Event.CORRECT, outcome=outcome, notices=told
        ):
            log.warning("recovery of #%s succeeded after another had decided it", request.id)
            event = "corrected: succeeded"
        else:
            log.warning("recovery of #%s ended after it had been decided", request.id)
            self.audit.record(
                request.id,
                BOT_ACTOR,
                f"{prefix}late outcome: {outcome.state}",
                target,
                outcome.headline,
            )
            return 0
        self.audit.record(request.id, BOT_ACTOR, prefix + event, target, outcome.headline)
        await self.delivery.converge(request.id)
        await self._rolled_back(request.id)
        await self._landed(request.id)
        return 1

    async def _landed(self, request_id: int) -> None:
        request = self.ctx.store.get(request_id)
        if request is None or request.state is not State.SUCCEEDED:
            return
        for hook in self.landed:
            try:
                await hook(request)
            except Exception:  # what follows a promotion must not undo its outcome
                log.exception("what follows the promotion #%s failed", request_id)

    async def _rolled_back(self, request_id: int) -> None:
        """When a rollback succeeded: record it against the request it undid, and show
        "rolled back by #M" on that request's message."""
        store = self.ctx.store
        request = store.get(request_id)
        if request is None or request.rolls_back is None or request.state is not State.SUCCEEDED:
            return
        undone = store.get(request.rolls_back)
        if undone is None:
            return
        self.audit.record(
            undone.id, BOT_ACTOR, "rolled back", undone.action.target, f"by #{request.id}"
        )
        await self.delivery.touch(undone.id)
