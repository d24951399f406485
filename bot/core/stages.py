"""Stages in order: the bot's record of what is live in each stage and since when (what a soak
is timed from), and the promotions it asks for itself (`auto = true`).

`changed` is the one hook for "a stage may have changed": a provider's webhook, a background
read (drift), and the bot's own promotions call it. For each target that promotes itself from
that stage it reads the stage and, if it shows something new there, plans the promotion for
when it has soaked (`auto_plan`, in the store: a restart loses nothing). The job `due` carries
out plans whose time has come (`run_due`): each is claimed with a compare-and-set, so two
replicas never both ask; the bot then asks for the promotion as `promote-bot` in the target's
channel, and it runs like any other request (holds stop it, rollback works, it is audited).
One open request per thing holds as always: a plan meeting an open request for its target is
done (nothing is asked twice).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta

from bot.core.audit import Audit
from bot.core.context import Context
from bot.core.errors import ProviderError
from bot.core.freezes import fmt_in
from bot.core.holds import holds_now, summary
from bot.core.model import BOT_ACTOR, Action, Reply
from bot.core.policy import Policy
from bot.core.ports import StoreError
from bot.core.ports.stages import AutoPlan
from bot.core.timing import Live, StageSeen, changed_at, gate, seen_after, windows_for

log = logging.getLogger(__name__)

RETRY = timedelta(minutes=1)  # a plan that could not be carried out is tried again this soon
HELD_RETRY = timedelta(minutes=1)  # one held by a lock or a freeze is looked at again this soon
PER_RUN = 20  # plans carried out by one run of the job, at most

Ask = Callable[..., Awaitable[Reply | None]]  # Lifecycle.ask
# `Stages.changed`, as the parts that see stages change call it: (things, *, known_at=None).
StageHook = Callable[..., Awaitable[None]]


class Stages:
    def __init__(self, ctx: Context, audit: Audit) -> None:
        self.ctx, self.audit = ctx, audit
        self.ask: Ask | None = None  # how a request is asked for (set by the workflow)
        # Open requests soaking in a stage are timed again when it changes (bot/core/waits.py).
        self.retime: Callable[[str], Awaitable[int]] | None = None
        self._held_told: set[tuple[str, str]] = set()  # plans whose hold is audited already

    # --- the bot's record of a stage ---------------------------------------------------

    async def live_since(self, action: Action) -> tuple[Live, StageSeen | None, StageSeen] | None:
        """Read what `action` promotes in its source stage, and bring the bot's record of that
        stage up to date: (what is live, the record before this read, the record now); None
        when the action promotes from no stage. ProviderError when the read fails."""
        provider = self.ctx.providers.get(action.provider)
        live = await provider.stage_live(action) if provider is not None else None
        if live is None:
            return None
        store = self.ctx.store
        for _ in range(3):  # another process may record the same stage at the same moment
            before = store.stage_seen(live.thing)
            now = self.ctx.clock()
            seen = seen_after(before, live.key, live.since, now)
            if store.stage_see(live.thing, before.key if before else None, seen):
                return live, before, seen
        return live, before, seen

    def known_change(self, thing: str, at: datetime) -> None:
        """The bot knows `thing` changed at `at` (it promoted into it, or was told): whatever
        is live there now is timed from no earlier than that."""
        store = self.ctx.store
        for _ in range(3):
            before = store.stage_seen(thing)
            if before is None:
                seen = changed_at(at)
            else:  # what the bot saw there is live since then at the earliest
                seen = StageSeen(before.key, max(before.since, at), max(before.seen_at, at))
            if store.stage_see(thing, before.key if before else None, seen):
                return

    # --- the hook ------------------------------------------------------------------------

    async def changed(
        self, things: Iterable[str | None], *, known_at: datetime | None = None
    ) -> None:
        """The hook: these stages may have changed (`known_at`: they did, then), as the bot's
        own promotions, a provider's webhook (bot/core/truth.py) or a background read of a
        preview (bot/core/drift.py) find. Plan the promotions that follow them (carried out by
        the job `due`) and time again the requests soaking in them. A provider that fails is
        logged (a change the bot knows of is read again by the job until it can be); nothing
        but the store failing is raised to the caller."""
        for thing in dict.fromkeys(t for t in things if t):
            try:
                await self._changed(thing, known_at)
            except StoreError:
                raise
            except Exception:  # what follows a change must not undo the telling of it
                log.exception("following a change of %s failed", thing)

    async def _changed(self, thing: str, known_at: datetime | None) -> None:
        if known_at is not None:
            self.known_change(thing, known_at)
        for action, policy in self.following(thing):
            try:
                await self.plan(action, policy, known=known_at is not None)
            except ProviderError as exc:
                log.warning("reading %s for %s failed: %s", thing, action.target, exc.message)
                if known_at is not None:  # planned as unread: the job reads it again
                    self.ctx.store.auto_plan(action.target, "", self.ctx.clock() + RETRY)
        if self.retime is not None:
            await self.retime(thing)

    def following(self, thing: str) -> list[tuple[Action, Policy]]:
        """The promotions the bot asks for itself whose source stage is `thing`."""
        return [(a, p) for a, p in self.ctx.rules.auto_stages() if a.source == thing]

    async def plan(self, action: Action, policy: Policy, *, known: bool = False) -> bool:
        """Plan the promotion `action` of what its source stage runs, for once that has
        soaked, if the stage changed: `known` (the caller knows), or the read shows something
        else than the bot saw there before (a first sight is no change). A plan is made once
        per thing a stage runs; True if this call made it."""
        read = await self.live_since(action)
        if read is None:
            return False
        live, before, seen = read
        moved = before is not None and before.key != live.key
        if not live.key or not (known or moved):
            return False
        return self._plan(action, policy, live, seen)

    def _plan(self, action: Action, policy: Policy, live: Live, seen: StageSeen) -> bool:
        """Plan the promotion of what `live` shows, from when it has soaked; audited."""
        due = seen.since + (policy.soak or timedelta(0))
        if not self.ctx.store.auto_plan(action.target, live.key, due):
            return False
        zone = self.ctx.rules.timezone
        self.audit.record(
            None,
            BOT_ACTOR,
            "auto-promotion planned",
            action.target,
            f"{live.place} runs {live.shown} (since {fmt_in(seen.since, zone)}): promoted "
            f"{'from ' + fmt_in(due, zone) if due > self.ctx.clock() else 'now'}",
        )
        return True

    # --- carrying out plans ------------------------------------------------------------

    async def run_due(self) -> int:
        """Carry out the plans whose time has come (each claimed first); how many asked."""
        ctx = self.ctx
        asked = 0
        for plan in ctx.store.auto_due(ctx.clock(), PER_RUN):
            now = ctx.clock()
            if not ctx.store.auto_claim(plan.target, plan.key, plan.due_at, now + RETRY):
                continue  # another process has it
            asked += await self._carry_out(plan, now + RETRY)
        return asked

    async def _carry_out(self, plan: AutoPlan, claimed: datetime) -> bool:
        """One due plan (claimed until `claimed`): ask for it, or put it off, or drop it."""
        ctx, store = self.ctx, self.ctx.store
        found = next(((a, p) for a, p in ctx.rules.auto_stages() if a.target == plan.target), None)
        if found is None:  # the config no longer has it promote itself
            store.auto_done(plan.target, plan.key)
            return False
        action, policy = found
        try:
            read = await self.live_since(action)
        except ProviderError as exc:
            log.warning("auto-promotion of %s: reading its source failed: %s", action.target, exc)
            return False  # due again once the claim lapses
        if read is None:
            store.auto_done(plan.target, plan.key)
            return False
        live, _, seen = read
        now = ctx.clock()
        if live.key != plan.key:  # the source moved again since (or was not read): anew
            store.auto_done(plan.target, plan.key)
            if live.key:
                self._plan(action, policy, live, seen)
            return False
        ready = seen.since + (policy.soak or timedelta(0))
        windows = windows_for(ctx.rules.windows, action.target)
        at, _ = gate(now, run_at=None, soak_until=ready, windows=windows)
        if at is None:
            store.auto_done(plan.target, plan.key)
            self.audit.record(
                None,
                BOT_ACTOR,
                "auto-promotion dropped",
                action.target,
                "no allow window for it opens again",
            )
            return False
        if at > now:
            store.auto_claim(plan.target, plan.key, claimed, at)
            return False
        held = holds_now(ctx, action.target)
        if held:
            if (plan.target, plan.key) not in self._held_told:
                self._held_told.add((plan.target, plan.key))
                detail = summary(held) + " (asked once nothing holds it)"
                self.audit.record(None, BOT_ACTOR, "auto-promotion held", action.target, detail)
            store.auto_claim(plan.target, plan.key, claimed, now + HELD_RETRY)
            return False
        channel = ctx.rules.channel_for(action.target, policy)
        if channel is None or self.ask is None:
            store.auto_done(plan.target, plan.key)
            return False
        try:
            reply = await self.ask(BOT_ACTOR, action, channel, retry_errors=True)
        except ProviderError as exc:
            log.warning("auto-promotion of %s: the preview failed: %s", action.target, exc)
            return False  # due again once the claim lapses
        store.auto_done(plan.target, plan.key)
        self._held_told.discard((plan.target, plan.key))
        if reply is not None and store.open_for(action.thing or "") is None:
            log.info("auto-promotion of %s not asked: %s", action.target, reply.text)
        return reply is None or store.open_for(action.thing or "") is not None
