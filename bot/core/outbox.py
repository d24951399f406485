"""Outgoing events: each request's milestones, as CDEvents (bot/core/cdevents.py), to the
receivers of `[[notify]]` (Sleuth, Swarmia, Faros, a team's own service), never on the ack path.

The store records every change to a request as a milestone in the transaction that makes it
(created, each approval, each state it moves to), so nothing here depends on which part of the
bot made the change, and a crash never loses one. The `events` job then:

1. fans milestones out: for each receiver that wants it (its `events` and `targets`, as the
   config is now), the event is rendered once and owed, keyed by receiver, request and
   milestone, so each receiver is owed each event once, however many processes do this;
2. sends what is owed: claimed (compare-and-set) before each try, so no two processes send the
   same event at once; taken (a 2xx) is never sent again; anything else is tried again with
   backoff (up to 5 minutes apart, honouring Retry-After), across restarts, for up to a day.
   Every try carries the same body, id and signature: a receiver that got one whose answer was
   lost drops the repeat by its id.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from bot.core import cdevents
from bot.core.context import Context
from bot.core.milestones import OutboxEvent, event_key
from bot.core.model import Request
from bot.core.ports import EventSender, Sent

log = logging.getLogger(__name__)

EVENTS_SECONDS = 2.0  # how often the `events` job runs
FAN_OUT = 200  # milestones turned into events by one run, at most
PER_RUN = 20  # events sent by one run, at most (at once), the rest 2 s on
CLAIM = timedelta(minutes=1)  # the duty of one try: well past the sender's 10 s timeout
BACKOFF_CAP = 300.0  # seconds between tries of one event, at most
GIVE_UP = timedelta(hours=24)  # an event not taken for this long is dropped
KEEP = timedelta(days=7)  # events sent or dropped are forgotten after this
FORGET_EVERY = timedelta(hours=1)


def source_of(installation: str) -> str:
    """The events' `source`: this bot's database, the same on every replica."""
    return f"/promote-bot/{installation}"


def backoff(attempts: int, retry_after: float | None) -> float:
    """Seconds before the next try of an event tried `attempts` times already."""
    delay = min(2.0 ** (attempts + 1), BACKOFF_CAP)
    return max(delay, min(retry_after or 0.0, BACKOFF_CAP))


class Outbox:
    def __init__(self, ctx: Context, sender: EventSender | None) -> None:
        self.ctx = ctx
        self.sender = sender  # None: events are owed, and sent by a process that has one
        self._forgot_at = ctx.clock() - FORGET_EVERY

    @property
    def source(self) -> str:
        return source_of(self.ctx.store.installation)

    async def run(self) -> int:
        """The `events` job: fan out what happened, send what is owed; how many were sent."""
        self.fan_out()
        sent = await self.deliver_due()
        now = self.ctx.clock()
        if now - self._forgot_at >= FORGET_EVERY:
            self._forgot_at = now
            self.ctx.store.forget_events(now - KEEP)
        return sent

    def fan_out(self) -> int:
        """Turn recorded milestones into events owed to each receiver that wants them; how
        many events are owed anew. Milestones no receiver wants are simply done."""
        store, receivers = self.ctx.store, self.ctx.rules.notify
        milestones = store.milestones(FAN_OUT)
        if not milestones:
            return 0
        requests: dict[int, Request | None] = {}
        events: list[OutboxEvent] = []
        for m in milestones:
            if m.request_id not in requests:
                requests[m.request_id] = store.get(m.request_id) if receivers else None
            request = requests[m.request_id]
            if request is None:
                continue
            name = cdevents.milestone_of(m.what, request)
            wanting = [r for r in receivers if name and r.wants(name, request.action.target)]
            if not wanting:
                continue
            ts = request.message_ts
            link = self.ctx.chat.link(request.channel, ts) if ts else None
            event = cdevents.cdevent(m.what, request, m.at, source=self.source, link=link)
            if event is None:
                continue
            body = cdevents.encode(event)
            events += [
                OutboxEvent(
                    key=event_key(r.name, request.id, m.what),
                    receiver=r.name,
                    request_id=request.id,
                    milestone=str(name),
                    body=body,
                    created_at=m.at,
                )
                for r in wanting
            ]
        return store.fan_out([m.seq for m in milestones], events)

    async def deliver_due(self) -> int:
        """Send the events owed now (a bounded batch, at once); how many were taken."""
        if self.sender is None:
            return 0
        store, now = self.ctx.store, self.ctx.clock()
        receivers = {r.name: r for r in self.ctx.rules.notify}
        tries = []
        for event in store.events_due(now, PER_RUN):
            receiver = receivers.get(event.receiver)
            if receiver is None:
                store.event_dropped(event.key, now, "its receiver is no longer in the config")
                log.info("event %s dropped: receiver %s is gone", event.key, event.receiver)
                continue
            held_until = now + CLAIM
            if store.claim_event(event.key, now, held_until):
                tries.append(self._send(event, receiver, held_until))
        taken = await asyncio.gather(*tries)
        return sum(taken)

    async def _send(
        self, event: OutboxEvent, receiver: cdevents.Receiver, held_until: datetime
    ) -> bool:
        assert self.sender is not None
        body = event.body.encode()
        try:
            sent = await self.sender.send(
                receiver.url, body, cdevents.headers(event.body, receiver.secret)
            )
        except Exception as exc:  # a bug in sending must not hold up the other events
            log.exception("sending event %s to %s failed", event.key, receiver.name)
            sent = Sent(ok=False, why=f"internal error: {type(exc).__name__}")
        self._record(event, receiver, sent, held_until)
        return sent.ok

    def _record(
        self, event: OutboxEvent, receiver: cdevents.Receiver, sent: Sent, held_until: datetime
    ) -> None:
        store, now = self.ctx.store, self.ctx.clock()
        if sent.ok:
            store.event_sent(event.key, now)
            return
        if sent.gone or now - event.created_at >= GIVE_UP:
            why = sent.why if sent.gone else f"not taken within a day: {sent.why}"
            store.event_dropped(event.key, now, why)
            log.error("event %s to %s dropped: %s", event.key, receiver.name, why)
            return
        wait = timedelta(seconds=backoff(event.attempts, sent.retry_after))
        store.event_retry(event.key, held_until, now + wait, sent.why)
        if event.attempts == 0:
            log.warning(
                "receiver %s did not take event %s (%s); trying again with backoff",
                receiver.name,
                event.key,
                sent.why,
            )
