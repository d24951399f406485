"""What a provider shows of the things it says changed (a Znyx webhook names environments;
the webhook transport reads them and hands the readings here). A webhook is only a hint: the
bot acts on what the provider shows when it reads, never on what a delivery claims, so a forged
or replayed delivery can make it say nothing the provider does not show.

For each thing read:
- an `unknown` request for it whose change the provider now shows becomes `succeeded` (the
  provider's own read, as after a crash, but reading only: nothing is ever sent);
- if it shows something else than the bot last saw there, and that is exactly what the bot's
  latest request for it installed, that request's thread gets one "<provider> confirms" reply;
- otherwise it changed outside the bot: one notice in the provider's channel (what moved,
  from what to what, who the provider says did it, and that it did not go through the bot),
  and an entry in the audit log (so `/promote history` shows it);
- open requests watching it have their preview read again at once (bot/core/drift.py).

"Once" holds across deliveries and replicas: what the bot last saw of each thing is swapped
with a compare-and-set, and only the process that swaps it tells the change (notes are
recorded before they are posted, and tried again while Slack fails: bot/core/notes.py).
`settle` (the job `settle`) also looks again at recent `unknown` requests of every provider.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.core.audit import Audit
from bot.core.context import Context
from bot.core.delivery import Delivery
from bot.core.drift import DriftWatch
from bot.core.errors import ProviderError
from bot.core.execution import move, promoted_by
from bot.core.markup import literal
from bot.core.model import BOT_ACTOR, Request, Sighting, State
from bot.core.notes import Notes
from bot.core.notify import Notices
from bot.core.ports import Seen
from bot.core.stages import StageHook
from bot.core.states import Event
from bot.core.steps import Steps

log = logging.getLogger(__name__)

READ_SECONDS = 30.0  # reading an `unknown` request's provider again ends within this
SETTLE_WITHIN = timedelta(days=1)  # `unknown` requests are looked at again for this long
NOTE_MEMORY = timedelta(days=30)  # notes posted are remembered this long
# A delivery's body is known again this long (Znyx's retries come within it); an older one is
# read as new, which can only make the bot read Znyx again.
WEBHOOK_MEMORY = timedelta(days=1)
# A thing the bot never read is told as changed only if what is there was put there this lately.
FIRST_SIGHT_WITHIN = timedelta(hours=1)
# The audit event of a change a provider shows that did not go through the bot (counted by
# `/promote stats` and the metrics).
OUTSIDE = "changed outside the bot"


def _when(at: str | None) -> str:
    return f" at {literal(at.replace('T', ' ')[:16])} UTC" if at else ""


def outside_text(sighting: Sighting, then: str, affected: Sequence[int]) -> str:
    """The channel notice of a change made outside the bot."""
    s = sighting
    by = f", published by {literal(s.by)}{_when(s.at)} ({s.label} says)" if s.by else ""
    lines = [
        f"🔔 *{literal(s.place)} changed outside promote-bot* ({s.label}): {literal(then)} → "
        f"{literal(s.shown)}{by}.",
        "It did not go through promote-bot: no request, no approval, nothing in its audit log "
        "before this.",
    ]
    if affected:
        refs = ", ".join(f"#{n}" for n in affected)
        lines.append(f"Open requests it affects now say so: {refs}.")
    return "\n".join(lines)


class Truth:
    def __init__(
        self, ctx: Context, audit: Audit, delivery: Delivery, drift: DriftWatch, notices: Notices
    ) -> None:
        self.ctx, self.audit, self.delivery, self.drift = ctx, audit, delivery, drift
        self.notices = notices  # direct messages: the requester is told it succeeded after all
        self.notes = Notes(ctx)
        # A stage changed outside the bot, or by a change of its own resolved by reading: what
        # follows stages is told (bot/core/stages.py, set by the workflow).
        self.stage_changed: StageHook | None = None

    async def sighted(
        self, sightings: Sequence[Sighting], *, channel: str | None, wait: bool = True
    ) -> bool:
        """Act on what a provider shows of things it said changed; False to be called again
        in a moment (the bot is promoting one of them now: its outcome comes first, unless
        not to `wait` any longer)."""
        store = self.ctx.store
        for sighting in sightings:
            running = store.open_for(sighting.thing)
            if wait and running is not None and running.state is State.EXECUTING:
                return False  # its outcome decides; what Znyx shows is read once it is known
        cutoff = self.ctx.clock() - SETTLE_WITHIN
        for sighting in sightings:
            for request in store.on_thing(sighting.thing, [State.UNKNOWN]):
                if request.updated_at >= cutoff:
                    await self.resolve(request)
        moved = await self.drift.read_watching(s.thing for s in sightings)
        for sighting in sightings:
            affected = [r.id for r in moved if sighting.thing in r.action.watches]
            await self._changed(sighting, channel, affected)
        return True

    async def settle(self) -> int:
        """Look again at `unknown` requests of the last day: those whose provider now shows
        their change become `succeeded`; how many did."""
        cutoff = self.ctx.clock() - SETTLE_WITHIN
        unknown = self.ctx.store.in_states([State.UNKNOWN], updated_since=cutoff)
        resolved = 0
        for request in unknown:
            resolved += await self.resolve(request)
        return resolved

    def forget(self) -> None:
        """Drop webhook deliveries and notes too old to come again."""
        now = self.ctx.clock()
        self.ctx.store.forget_webhooks(now - WEBHOOK_MEMORY)
        self.ctx.store.forget_notes(now - NOTE_MEMORY)

    # --- an `unknown` request, read again ------------------------------------------------

    async def resolve(self, request: Request) -> bool:
        """Read whether the provider shows `request`'s change (reading only: a step never
        sent stays unsent); if it does, it is `succeeded`, audited, shown, and its thread
        told so. True if this call resolved it."""
        ctx = self.ctx
        action = request.action
        provider = ctx.providers.get(action.provider)
        if provider is None or request.state is not State.UNKNOWN:
            return False
        steps = Steps.load(ctx.store, request.id, ctx.clock)
        steps.reading_only = True
        try:
            async with asyncio.timeout(READ_SECONDS):
                outcome = await provider.observe(
                    action,
                    promoted_by=promoted_by(request, ctx.store.installation),
                    expect=request.preview.expect if request.preview else {},
                    steps=steps,
                )
        except (ProviderError, TimeoutError) as exc:
            log.info("#%s stays unknown: reading it again failed (%s)", request.id, exc)
            return False
        if outcome is None or outcome.state != "succeeded":
            return False
        rules = ctx.rules.provider(action.provider)
        label = rules.label if rules is not None else action.provider
        what = outcome.headline
        outcome = outcome.model_copy(
            update={"headline": f"{what} ({label} shows it; it was unknown)"}
        )
        told = self.notices.about(request, "succeeded", None)
        if not move(ctx, request.id, Event.CORRECT, outcome=outcome, notices=told):
            return False
        self.audit.record(
            request.id, BOT_ACTOR, "resolved: succeeded", action.target, outcome.headline
        )
        await self.delivery.converge(request.id)
        text = (
            f"✅ *{label} confirms* #{request.id}: {literal(what)}. It was unknown; it is "
            "succeeded now."
        )
        await self._confirm(request, text)
        if self.stage_changed is not None:  # the bot's own change of a stage, known now
            await self.stage_changed([action.thing], known_at=ctx.clock())
        return True

    # --- a thing that moved ----------------------------------------------------------

    async def _changed(self, sighting: Sighting, channel: str | None, affected: list[int]) -> None:
        """Tell what moved since the bot last saw `sighting.thing`, once: the process that
        swaps what the bot last saw there tells it."""
        ctx = self.ctx
        store = ctx.store
        before = store.sighting(sighting.thing)
        if before is not None and before.key == sighting.key:
            return  # nothing moved since the bot last looked: a repeat, or a replay
        old = before.key if before is not None else None
        if not store.sighting_swap(sighting.thing, old, sighting.key, sighting.shown, ctx.clock()):
            return  # another delivery, or another process, is telling it
        if before is None and not self._news(sighting):
            return  # what it shows is known from now on; nothing says it is news
        mine = self._mine(sighting, before)
        if mine is not None:
            by = f" (published by {literal(sighting.by)})" if sighting.by else ""
            text = (
                f"✅ *{sighting.label} confirms* #{mine.id}: {literal(sighting.place)} runs "
                f"{literal(sighting.shown)}{by}, as promote-bot made it."
            )
            await self._confirm(mine, text)
        else:
            await self._outside(sighting, before, channel, affected)
            if self.stage_changed is not None:  # what follows this stage (bot/core/stages.py)
                await self.stage_changed([sighting.thing], known_at=ctx.clock())

    def _news(self, sighting: Sighting) -> bool:
        """With no earlier reading to compare with: is what a thing shows the change the
        provider said it made? Only if it said this thing changed, and what is there was put
        there lately (an old delivery, replayed to a bot that never read the thing, is not)."""
        if not sighting.said_changed:
            return False
        try:
            at = datetime.fromisoformat(sighting.at) if sighting.at else None
        except ValueError:
            at = None  # unreadable: it can't be told old
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return at is None or self.ctx.clock() - at <= FIRST_SIGHT_WITHIN

    def _mine(self, sighting: Sighting, before: Seen | None) -> Request | None:
        """The bot's latest request for the thing, if what it installed is what is there now
        and it ended after the bot last looked (an older one's result coming back is not it)."""
        latest = self.ctx.store.on_thing(sighting.thing, [State.SUCCEEDED], limit=1)
        if not latest or latest[0].outcome is None or not sighting.record:
            return None
        request = latest[0]
        if request.outcome.installed != sighting.record:
            return None
        if before is not None and request.updated_at < before.at:
            return None
        return request

    async def _outside(
        self, sighting: Sighting, before: Seen | None, channel: str | None, affected: list[int]
    ) -> None:
        """A change made outside the bot: audited, and told in `channel`."""
        if before is not None:
            then = before.shown
        else:
            then = f"{sighting.before} (the version before it)" if sighting.before else "nothing"
        actor = f"{sighting.label}: {(sighting.by or 'someone')[:60]}"  # shown as words
        detail = f"{then} → {sighting.shown}; it did not go through promote-bot"
        self.audit.record(None, actor, OUTSIDE, sighting.target, detail)
        if channel is not None:
            key = f"outside:{sighting.thing}:{before.key if before else ''}:{sighting.key}"
            await self.notes.tell(key, channel, outside_text(sighting, then, affected))

    async def _confirm(self, request: Request, text: str) -> None:
        """One reply in `request`'s thread saying the provider shows its change."""
        if request.message_ts is not None:
            key = f"confirm:{request.id}"
            await self.notes.tell(key, request.channel, text, thread_ts=request.message_ts)
