"""Previews read again between promotions: a release message is a promise about the world as
it was when it was posted, and the world moves without the bot (someone promotes from a
provider's own UI or CI).

Every open request's preview is read again in the background (the scheduler's job `drift`):
each one every `every` seconds, its first read at a point of that period its number picks (so
requests asked together are not read together), at most `rate` reads a second in all, and none
for a provider while it answers 429 or 5xx or can't be reached (paused, 30 s and doubling up to
the period). One process takes each read (a compare-and-set on when it is due next), and what
it read is stored with the request, so every replica shows the same.

A preview that no longer holds is shown on its release message at once: what is live now, and
that approving will not promote it (the write would not be sent). An approval is then answered
with that reason, after reading once more, and nothing is written; reject and cancel work as
always. A provider's word that something moved (a Znyx webhook) has the requests watching it
read at once (`read_watching`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from bot.core import authz
from bot.core.audit import Audit
from bot.core.context import Context
from bot.core.delivery import Delivery
from bot.core.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderServerError,
    ProviderTimeout,
    ProviderUnreachable,
)
from bot.core.markup import literal
from bot.core.model import BOT_ACTOR, Drift, Reply, Request, State
from bot.core.stages import StageHook

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0  # how often the job looks for reads that are due
RATE = 3.0  # reads a second, at most, in all (each is one to three provider calls)
READ_SECONDS = 30.0  # one read, retries included, ends within this
PAUSE = timedelta(seconds=30)  # a provider answering 429 or 5xx is left alone this long, doubling
OUTCOMES = ("holds", "moved", "failed")  # of a read, for /metrics
# The audit event of a request whose preview no longer holds (counted by `/promote stats`).
MOVED = "moved since asked"
_BUSY = (ProviderRateLimited, ProviderServerError, ProviderTimeout, ProviderUnreachable)
_GOLDEN = 0.6180339887498949  # spreads request numbers evenly over the period
_OPEN = (State.PENDING, State.APPROVED)


def refusal_text(request: Request, drift: Drift) -> str:
    """What an approver is told when the preview no longer holds."""
    return (
        f"#{request.id} can't be approved: its preview no longer holds. {drift.provider} "
        f"shows {literal(drift.sentence)}. Approving would not promote it (nothing would be "
        f"sent): cancel it with `/promote cancel {request.id}` and ask again."
    )


class DriftWatch:
    def __init__(
        self,
        ctx: Context,
        audit: Audit,
        delivery: Delivery,
        *,
        every: float = 300.0,
        rate: float = RATE,
    ) -> None:
        self.ctx, self.audit, self.delivery = ctx, audit, delivery
        self.every = timedelta(seconds=every)
        self.rate = rate
        self.reads: Counter[tuple[str, str]] = Counter()  # (provider, outcome) → reads
        self.paused: dict[str, datetime] = {}  # provider → left alone until then
        self._failures: Counter[str] = Counter()  # provider → reads failed in a row
        # A read that found a preview moved may have found a stage changed: what follows stages
        # reads them to tell (bot/core/stages.py, set by the workflow).
        self.stage_changed: StageHook | None = None

    # --- the background job ----------------------------------------------------------

    async def tick(self) -> int:
        """Read the previews that are due now, at most `rate` a second; how many were read."""
        ctx = self.ctx
        now = ctx.clock()
        budget = max(1, round(self.rate * TICK_SECONDS))
        chosen: list[Request] = []
        for due in ctx.store.drift_due(now, limit=budget * 10 + 50):
            if len(chosen) >= budget:
                break
            if self.is_paused(due.provider, now):
                continue
            if due.next_at is None:  # new: its first read comes at its point of the period
                first = due.created_at + self._offset(due.request_id)
                if first > now:
                    ctx.store.drift_schedule(due.request_id, None, first)
                    continue
            if not ctx.store.drift_schedule(due.request_id, due.next_at, now + self.every):
                continue  # another process took this read
            request = ctx.store.get(due.request_id)
            if request is not None and request.state in _OPEN:
                chosen.append(request)
        await self._read_all(chosen)
        return len(chosen)

    async def read_watching(self, things: Iterable[str]) -> list[Request]:
        """Read at once the previews of open requests that watch any of `things` (a provider
        said they moved); those whose message shows them moved now."""
        wanted = set(things)
        requests = [
            r for r in self.ctx.store.in_states(_OPEN) if wanted.intersection(r.action.watches)
        ]
        await self._read_all(requests)
        shown = (self.ctx.store.get(r.id) for r in requests)
        return [r for r in shown if r is not None and r.drift is not None]

    def is_paused(self, provider: str, now: datetime) -> bool:
        until = self.paused.get(provider)
        return until is not None and now < until

    # --- one read ----------------------------------------------------------------------

    async def read(self, request: Request) -> tuple[bool, Drift | None]:
        """Read `request`'s preview again, record and show what moved; (whether it could be
        read, what moved as now known: the stored finding when the read failed)."""
        action = request.action
        provider = self.ctx.providers.get(action.provider)
        expect = request.preview.expect if request.preview else {}
        if provider is None or not expect:  # nothing recorded to compare with
            return False, request.drift
        name = action.provider
        try:
            async with asyncio.timeout(READ_SECONDS):
                drift = await provider.drift(action, expect)
        except (ProviderError, TimeoutError) as exc:
            self.reads[(name, "failed")] += 1
            why = exc.message if isinstance(exc, ProviderError) else "no answer in time"
            if isinstance(exc, (*_BUSY, TimeoutError)):
                self._pause(name, why)
            else:
                log.info("reading the preview of #%s again failed: %s", request.id, why)
            return False, request.drift
        if drift is not None and not drift.provider:
            rules = self.ctx.rules.provider(name)
            drift = drift.model_copy(update={"provider": rules.label if rules else name})
        self.reads[(name, "moved" if drift else "holds")] += 1
        if self._failures.pop(name, 0):
            self.paused.pop(name, None)
            log.warning("%s answers again: previews are read again", name)
        await self.show(request, drift)
        return True, drift

    async def show(self, request: Request, drift: Drift | None) -> bool:
        """Record what moved (or that nothing did any more) and update the release message;
        True if that changed what it shows."""
        if not self.ctx.store.set_drift(request.id, drift):
            return False
        target = request.action.target
        if drift is not None:
            self.audit.record(
                request.id,
                BOT_ACTOR,
                MOVED,
                target,
                f"{drift.provider}: {drift.sentence}",
            )
            if self.stage_changed is not None and drift.thing is not None:  # a stage moved
                await self.stage_changed([drift.thing], known_at=self.ctx.clock())
        else:
            detail = "the provider shows again what its preview showed"
            self.audit.record(request.id, BOT_ACTOR, "preview holds again", target, detail)
        await self.delivery.converge(request.id)
        return True

    async def _read_all(self, requests: list[Request]) -> None:
        results = await asyncio.gather(*(self.read(r) for r in requests), return_exceptions=True)
        for request, result in zip(requests, results, strict=True):
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("reading the preview of #%s again failed", request.id, exc_info=result)

    def _pause(self, provider: str, why: str) -> None:
        now = self.ctx.clock()
        if self.is_paused(provider, now):
            return  # reads under way when it was paused: one spell, counted once
        self._failures[provider] += 1
        n = self._failures[provider]
        pause = min(PAUSE * 2 ** (n - 1), max(self.every, PAUSE))
        self.paused[provider] = now + pause
        if n == 1:
            log.warning(
                "%s did not answer a read (%s): previews of its requests are read again in %g s",
                provider,
                why,
                pause.total_seconds(),
            )

    def _offset(self, request_id: int) -> timedelta:
        return self.every * ((request_id * _GOLDEN) % 1.0)

    # --- approving a request whose preview no longer holds -------------------------------

    async def refusal(self, user: str, request_id: int) -> Reply | None:
        """The answer to an approval of a request whose preview no longer holds (read once
        more first, unless its provider is paused); None when it holds, or when the request
        or the approver gets another answer (expired, not theirs to approve)."""
        ctx = self.ctx
        request = ctx.store.get(request_id)
        if request is None or request.drift is None or not request.state.is_open:
            return None
        if ctx.clock() >= request.expires_at:
            return None
        rules = ctx.rules
        if not authz.can_approve(rules.role_map, rules.policy_of(request), request, user):
            return None
        drift = request.drift
        if not self.is_paused(request.action.provider, ctx.clock()):
            _, drift = await self.read(request)
        if drift is None:
            return None
        self.audit.record(
            request.id,
            user,
            "approval refused",
            request.action.target,
            (f"{drift.provider}: {drift.sentence}"),
        )
        return Reply(refusal_text(request, drift))
