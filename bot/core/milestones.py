"""What the store records of each change to a request, for the outbox of outgoing events
(bot/core/outbox.py): the milestones, and the events owed to each receiver."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class Milestone(BaseModel):
    """A change to a request the store recorded with it, in the same transaction, for the
    outbox to turn into events: "requested", "approved:<user>", or the state it moved to."""

    seq: int
    request_id: int
    what: str
    at: datetime


class OutboxEvent(BaseModel):
    """One event owed to one receiver (`[[notify]]`): rendered once, sent until it is taken;
    `key` is unique per receiver, request and milestone."""

    key: str
    receiver: str
    request_id: int
    milestone: str
    body: str  # the JSON sent, byte for byte the same at every try
    created_at: datetime
    attempts: int = 0


def event_key(receiver: str, request_id: int, milestone: str) -> str:
    """The outbox key of an event: one per receiver, request and milestone, ever."""
    return f"{receiver}|{request_id}|{milestone}"
