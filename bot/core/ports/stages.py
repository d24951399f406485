"""The store's part for stages and time (bot/core/waits.py, bot/core/stages.py): what open
requests wait for and when they are looked at again, the bot's record of each stage, and the
promotions it plans to ask for itself. Every change is a compare-and-set, so two replicas
never both run a waiting request or both open an auto-promotion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from bot.core.model import Request, State
from bot.core.timing import StageSeen, Timing

Notices = Sequence[tuple[str, str]]  # direct messages owed: (person, event)


@dataclass(frozen=True)
class AutoPlan:
    """A promotion the bot will ask for itself (`auto = true`) once `due_at` comes: into
    `target`, of what its source stage showed as `key` when it was planned."""

    target: str
    key: str
    due_at: datetime


class StageStore(Protocol):
    def set_timing(
        self,
        request_id: int,
        timing: Timing,
        due_at: datetime | None,
        *,
        at: datetime,
        notices: Notices = (),
    ) -> bool:
        """Record what an open request waits for and when the bot looks at it again (its
        message shows it); `notices` are owed with it. False if it is no longer open."""
        ...

    def wait(
        self,
        request_id: int,
        from_states: Sequence[State],
        to: State,
        *,
        timing: Timing,
        due_at: datetime,
        expires_at: datetime,
        at: datetime,
    ) -> bool:
        """The compare-and-set of a request that has its approvals and waits for its time:
        moved to `to` with what it waits for, when it is looked at again and when it expires,
        in one change; True if it moved."""
        ...

    def due(self, now: datetime, limit: int) -> list[Request]:
        """Open requests whose time to be looked at again has come, soonest first."""
        ...

    def claim_due(self, request_id: int, due_at: datetime, until: datetime) -> bool:
        """Take a due request to look at (its `due_at` still as read), until `until`, when
        another process may take it if this one stopped; True if this call took it."""
        ...

    def stage_seen(self, thing: str) -> StageSeen | None:
        """The bot's record of a stage (what it last saw live there, since when)."""
        ...

    def stage_see(self, thing: str, old_key: str | None, seen: StageSeen) -> bool:
        """Record `seen` for a stage if its record still shows `old_key` (None: no record
        yet); True if this call recorded it."""
        ...

    def auto_plan(self, target: str, key: str, due_at: datetime) -> bool:
        """Plan the promotion into `target` of `key` at `due_at`, unless it is planned (or
        done) for that `key` already; True if this call planned it."""
        ...

    def auto_due(self, now: datetime, limit: int) -> list[AutoPlan]:
        """Planned promotions not done whose time has come, soonest first."""
        ...

    def auto_claim(self, target: str, key: str, due_at: datetime, until: datetime) -> bool:
        """Take a due plan (still `key`, due at `due_at`) until `until` (then it is due
        again, if it is not done: a retry, or another process after this one stopped)."""
        ...

    def auto_done(self, target: str, key: str) -> None:
        """The plan for `key` is carried out (or not needed): never again for that key."""
        ...
