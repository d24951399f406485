"""The store's side of outgoing events (bot/core/outbox.py): milestones and the events owed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from bot.core.milestones import Milestone, OutboxEvent


class EventStore(Protocol):
    """Outgoing events (bot/core/outbox.py). Every change to a request is recorded as a
    `Milestone` in the transaction that makes it; the outbox turns milestones into events for
    each receiver (`fan_out`) and sends each event until it is taken, claimed (compare-and-set)
    before each try, so that two processes never send the same event at once."""

    def milestones(self, limit: int) -> list[Milestone]:
        """Milestones not turned into events yet, oldest first."""
        ...

    def fan_out(self, seqs: Sequence[int], events: Sequence[OutboxEvent]) -> int:
        """Owe `events` (each key once, ever) and forget milestones `seqs`, in one
        transaction; how many events were new."""
        ...

    def events_due(self, now: datetime, limit: int) -> list[OutboxEvent]:
        """Owed and not waiting out a backoff, or claimed by a try whose time ran out; oldest
        first."""
        ...

    def claim_event(self, key: str, now: datetime, until: datetime) -> bool:
        """Take the duty of sending event `key` until `until`; False when it is not due or
        another process has it."""
        ...

    def event_sent(self, key: str, at: datetime) -> None:
        """Taken by its receiver: never sent again."""
        ...

    def event_retry(self, key: str, held_until: datetime, next_at: datetime, why: str) -> int:
        """Not taken: owed again from `next_at`; the attempts so far (while the claim that
        ran until `held_until` is still this caller's)."""
        ...

    def event_dropped(self, key: str, at: datetime, why: str) -> None:
        """Never to be sent (the receiver refused it for good, or for too long)."""
        ...

    def event_counts(self) -> dict[tuple[str, str], int]:
        """Events by receiver and state: owed (not taken yet), sent, dropped."""
        ...

    def forget_events(self, before: datetime) -> int:
        """Drop events sent or dropped before `before`; how many."""
        ...
