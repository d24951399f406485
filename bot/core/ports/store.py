"""The store, split along the core's concerns: requests and their state, the messages that
show them, acknowledged work (the inbox), locks, the audit log and execution steps. One
backend implements them all (`Store`); each part of the core needs only its own."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from bot.core.model import (
    AuditEntry,
    Drift,
    Lock,
    NewRequest,
    NoticeRecord,
    Outcome,
    Request,
    State,
    StepRecord,
)
from bot.core.ports.outbox import EventStore
from bot.core.ports.stages import StageStore
from bot.core.ports.stats import StatsStore

Notices = Sequence[tuple[str, str]]  # direct messages owed: (person, event)


class StoreError(Exception):
    """The database can't be used (missing, read-only, full, not a database); the message
    says so in plain words, naming the setting where that helps."""


class OpenRequestExists(Exception):
    """A request for the same thing is still open (pending, approved or executing)."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"request #{request_id} is open for the same thing")
        self.request_id = request_id


class AskedBefore(Exception):
    """The acknowledged work that asks for a request (its inbox key, `NewRequest.origin`)
    made one before, whatever became of it: it is done again, and asks nothing again."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"request #{request_id} was made by the same command")
        self.request_id = request_id


class RequestStore(Protocol):
    """Requests, their approvals and their state; `transition` is the compare-and-set."""

    # This database's own name (random, made once): what it writes to a provider is told apart
    # from what another bot sharing that provider wrote.
    installation: str

    def create_request(self, new: NewRequest) -> Request:
        """Record a pending request; `OpenRequestExists` if one is open for its thing.
        `AskedBefore` (nothing recorded) if `new.origin` made a request already: the origin
        is unique, decided by the INSERT itself, so a command is never asked for twice."""
        ...

    def made_by(self, origin: str) -> Request | None:
        """The request the acknowledged work `origin` made, if it made one (an index read)."""
        ...

    def open_for(self, thing: str) -> Request | None:
        """The open (pending, approved or executing) request for `thing`, if any."""
        ...

    def get(self, request_id: int) -> Request | None: ...

    def shown_as(self, request_id: int) -> tuple[State, int] | None:
        """A request's state and message version alone (one row read, nothing parsed): for
        a log line, or to tell whether it changed, without reading the whole request."""
        ...

    def in_states(
        self,
        states: Sequence[State],
        *,
        expired_by: datetime | None = None,
        updated_since: datetime | None = None,
    ) -> list[Request]:
        """Requests in `states`, oldest first; only those expired by then, or changed since
        then, if given (an index of state and time serves both: the count of ended requests
        of a year does not matter)."""
        ...

    def add_approval(
        self,
        request_id: int,
        user: str,
        at: datetime,
        *,
        comment: str | None = None,
        notices: Notices = (),
    ) -> bool:
        """Record `user`'s approval (and what they said) if the request is open and they have
        not approved yet; `notices` are owed with it, in the same transaction."""
        ...

    def transition(
        self,
        request_id: int,
        from_states: Sequence[State],
        to: State,
        *,
        at: datetime,
        by: str | None = None,
        outcome: Outcome | None = None,
        lease: tuple[str, datetime] | None = None,
        reason: str | None = None,
        notices: Notices = (),
    ) -> bool:
        """Move to `to` only if the request is in one of `from_states`; True if it moved.
        Moving to `executing` takes `lease` (owner, until); leaving it drops the lease.
        `reason`: why `by` rejected or cancelled it. `notices` (direct messages) are owed
        only if it moved, in the same transaction: a crash never loses nor invents one."""
        ...

    def renew(self, request_id: int, owner: str, until: datetime) -> bool:
        """Extend `owner`'s lease on an executing request; False if it is no longer theirs."""
        ...

    def lapsed(self, now: datetime, *, unleased_before: datetime) -> list[Request]:
        """Executing requests whose lease ran out."""
        ...

    def take_over(
        self, request_id: int, owner: str, now: datetime, until: datetime, unleased_before: datetime
    ) -> bool:
        """Take a lapsed lease (compare-and-set)."""
        ...


class MessageStore(Protocol):
    """What Slack shows of each request: its release message (and copies), the version it
    shows, retries after Slack failed, and the duty of the outcome's one thread reply."""

    def set_message(self, request_id: int, ts: str, *, shown: int | None = None) -> None: ...

    def add_copy(self, request_id: int, ts: str) -> bool: ...

    def touch_message(self, request_id: int) -> None: ...

    def messages_due(self, now: datetime) -> list[int]: ...

    def message_shown(self, request_id: int, version: int, *, thread: bool = False) -> None: ...

    def message_failed(self, request_id: int, next_try: Callable[[int], datetime]) -> int: ...

    def message_unsettled(self, request_id: int, look_at: datetime) -> None:
        """A write to the release message (a post, an update) went out and its answer was
        lost: it may still land, over a later one. Look at the message again from `look_at`
        on (the latest such time is kept); `messages_due` lists it then."""
        ...

    def message_writing(self, request_id: int, now: datetime, until: datetime) -> None:
        """A write to the release message (a post, an update) is about to go out: it may land
        until `until`, even if this process is killed meanwhile. Recorded before it is sent,
        so `messages_due` lists the message from then on unless `message_written` clears it:
        `until` exactly when nothing else may still land (nothing recorded, or only times
        past `now`), else later than both `until` and what was recorded."""
        ...

    def message_written(self, request_id: int, until: datetime) -> None:
        """Slack answered the write `message_writing` recorded with `until`: no look is owed
        for it; cleared only while `until` is still exactly what is recorded (compare-and-
        clear), so another write that may still land is never hidden."""
        ...

    def message_settled(self, request_id: int, since: datetime) -> None:
        """The message was brought to the stored version by writes sent from `since` on: no
        look is owed any more, unless a later one became due after `since`."""
        ...

    def claim_thread(
        self, request_id: int, now: datetime, until: datetime
    ) -> Literal["post", "check"] | None:
        """Take the duty of the outcome's thread reply until `until` (compare-and-set): "post"
        when it is owed, "check" when an earlier post may have reached Slack (its answer was
        lost, or its process stopped) and its time to look has come; None otherwise."""
        ...

    def thread_uncertain(self, request_id: int, held_until: datetime, look_at: datetime) -> None:
        """The reply may or may not have reached Slack: look for it from `look_at` on; only
        while the claim that ran until `held_until` is still this caller's."""
        ...

    def release_thread(self, request_id: int, held_until: datetime) -> None:
        """The reply certainly did not reach Slack: owed again (while the claim is ours)."""
        ...


class InboxStore(Protocol):
    """Work acknowledged to Slack, recorded before the ack, done once under a lease."""

    def inbox_put(self, key: str, kind: str, payload: dict[str, Any], at: datetime) -> bool:
        """Record acknowledged work; False for a key seen before (a redelivery)."""
        ...

    def inbox_claim(
        self, key: str, owner: str, now: datetime, until: datetime
    ) -> dict[str, Any] | None:
        """Take acknowledged work to do, if not done and nobody holds it."""
        ...

    def inbox_renew(self, key: str, owner: str, until: datetime) -> bool: ...

    def inbox_done(self, key: str, at: datetime) -> None: ...

    def inbox_waiting(self, now: datetime, *, received_before: datetime) -> list[str]:
        """Keys of acknowledged work not done that nobody holds."""
        ...

    def forget_done(self, before: datetime, most: int) -> int:
        """Remove up to `most` items of work done before `before`, oldest first; how many."""
        ...


class LockStore(Protocol):
    """Locks people set, shared by every process using the store."""

    def add_lock(self, lock: Lock) -> Lock | None:
        """Store `lock`; None if stored, else the lock already set on that pattern."""
        ...

    def remove_lock(self, pattern: str) -> Lock | None:
        """Lift the lock on exactly `pattern`; the lock lifted, or None if there was none."""
        ...

    def locks(self) -> list[Lock]: ...


class AuditStore(Protocol):
    """The append-only audit log."""

    def audit(self, entry: AuditEntry) -> None: ...

    def history(
        self, target: str | None = None, limit: int = 20, *, request_id: int | None = None
    ) -> list[AuditEntry]:
        """Newest first; of the targets `target` matches (a target, or a pattern with `*` and
        `?` as fnmatchcase reads them, matched in SQL on an index) and of one request."""
        ...

    def audit_entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        pattern: str | None = None,
    ) -> Iterator[AuditEntry]:
        """The audit log in [since, until), oldest first, for targets matching `pattern`
        (`znyx:*:prod`); streamed from the database on a connection of its own, never all
        in memory."""
        ...


class StepStore(Protocol):
    """The journal of each execution's writes (see `bot/core/steps.py`)."""

    def step_sent(self, request_id: int, name: str, at: datetime, owner: str | None = None) -> bool:
        """Mark step `name` of the request as sent, before its write goes out (compare-and-
        set); False if it is marked already, so no step is ever sent twice. With `owner`, it is
        fenced: marked only while `owner` holds an unexpired lease on the request and it is
        still executing, checked in the same statement (else False, nothing marked)."""
        ...

    def step_done(
        self, request_id: int, name: str, result: Mapping[str, Any], at: datetime
    ) -> None:
        """Record what the provider answered to step `name` (a JSON object)."""
        ...

    def step_unsent(self, request_id: int, name: str) -> None:
        """Take back the mark of a step whose write certainly never reached the provider (it
        was refused before sending, or answered "not done"): it may be sent again."""
        ...

    def steps(self, request_id: int) -> list[StepRecord]:
        """The request's steps, in the order they were marked."""
        ...


@dataclass(frozen=True)
class DueRead:
    """An open request whose preview is due to be read again (`drift_due`)."""

    request_id: int
    provider: str  # the first part of its target
    created_at: datetime
    next_at: datetime | None  # None: never scheduled yet


@dataclass(frozen=True)
class Seen:
    """What the bot last read of a thing a provider told it about (`sighting`)."""

    key: str
    shown: str
    at: datetime


class TruthStore(Protocol):
    """The truth between promotions: previews read again (drift), providers' webhooks
    recorded before they are answered, what the bot last saw of each thing they name, and
    notes it posts once however many processes see the same change."""

    def drift_due(self, now: datetime, limit: int) -> list[DueRead]:
        """Open (pending, approved) requests never scheduled for a read, or due by `now`,
        soonest first."""
        ...

    def drift_schedule(self, request_id: int, seen: datetime | None, next_at: datetime) -> bool:
        """Set when the request's preview is read next, if it is still `seen` (compare-and-set:
        one process takes each read); True if this call set it."""
        ...

    def set_drift(self, request_id: int, drift: Drift | None) -> bool:
        """Record what moved since the preview (None: nothing), while the request is open;
        True if that changed what was recorded (its message must show it)."""
        ...

    def on_thing(self, thing: str, states: Sequence[State], limit: int = 5) -> list[Request]:
        """Requests for `thing` in `states`, newest first."""
        ...

    def webhook_put(self, digest: str, source: str, hint: Mapping[str, Any], at: datetime) -> bool:
        """Record a delivery by the digest of its body; False if that body came before."""
        ...

    def webhook_claim(
        self, digest: str, owner: str, now: datetime, until: datetime
    ) -> dict[str, Any] | None:
        """Take a recorded delivery to work on (its `hint`, `source`, `attempts` counting this
        one), if it is not done and nobody holds it."""
        ...

    def webhook_renew(self, digest: str, owner: str, until: datetime) -> bool:
        """Hold it until `until` (or, to try again later, leave it until then)."""
        ...

    def webhook_done(self, digest: str, at: datetime) -> None: ...

    def webhooks_waiting(self, now: datetime) -> list[str]:
        """Digests of deliveries not done that nobody holds, oldest first."""
        ...

    def forget_webhooks(self, before: datetime) -> int:
        """Drop deliveries done before `before` (a body older than that is read as new)."""
        ...

    def sighting(self, thing: str) -> Seen | None: ...

    def sighting_swap(
        self, thing: str, old_key: str | None, key: str, shown: str, at: datetime
    ) -> bool:
        """Record what `thing` shows now, if what was recorded is still `old_key` (None: no
        record yet); True if this call recorded it."""
        ...

    def note_put(
        self, key: str, channel: str, thread_ts: str | None, text: str, at: datetime
    ) -> bool:
        """Record a note to post once; False if `key` was recorded before."""
        ...

    def notes_due(self, now: datetime, limit: int) -> list[str]:
        """Keys of notes not posted yet whose time to try has come, oldest first."""
        ...

    def note_take(self, key: str, now: datetime, until: datetime) -> dict[str, Any] | None:
        """Take a due note to post until `until` (compare-and-set): its `channel`,
        `thread_ts`, `text` and `attempts` (counting this one); None if not due or taken."""
        ...

    def note_later(self, key: str, at: datetime) -> None:
        """The chat did not take it: try again from `at`."""
        ...

    def note_done(self, key: str, at: datetime) -> None:
        """Posted (or given up): never tried again."""
        ...

    def forget_notes(self, before: datetime) -> int:
        """Drop notes done before `before`."""
        ...


class NoticeStore(Protocol):
    """Direct messages owed to people (bot/core/notify.py), each delivered once: claimed
    (compare-and-set) before it is sent, looked for before it is sent again when its fate is
    unclear; and each person's choice to get them or not."""

    def set_notify(self, user: str, enabled: bool, at: datetime) -> None: ...

    def notify_enabled(self, user: str) -> bool:
        """Whether `user` gets direct messages (yes unless they said no)."""
        ...

    def notices_due(self, now: datetime, limit: int) -> list[NoticeRecord]:
        """Owed and not waiting out a backoff, or claimed by a try whose time ran out; oldest
        first."""
        ...

    def claim_notice(
        self, key: str, now: datetime, until: datetime
    ) -> Literal["post", "check"] | None:
        """Take the duty of sending notice `key` until `until`: "post" when it is owed,
        "check" when an earlier try may have reached the chat and its time to look has come;
        None when it is not due, or another process has it."""
        ...

    def notice_sent(self, key: str, at: datetime) -> None: ...

    def notice_uncertain(self, key: str, held_until: datetime, look_at: datetime) -> None:
        """The message may or may not have reached the chat: look for it from `look_at` on
        (only while the claim that ran until `held_until` is still this caller's)."""
        ...

    def notice_retry(
        self, key: str, held_until: datetime, next_try: Callable[[int], datetime]
    ) -> int:
        """It certainly did not reach the chat: owed again from `next_try(attempts)`; the
        attempts so far (only while the claim is still this caller's)."""
        ...

    def notice_dropped(self, key: str, at: datetime, why: str) -> None:
        """Never to be sent (opted out, no longer true, a person Slack can't reach)."""
        ...


class Store(
    RequestStore,
    MessageStore,
    InboxStore,
    LockStore,
    AuditStore,
    StepStore,
    TruthStore,
    NoticeStore,
    StageStore,
    StatsStore,
    EventStore,
    Protocol,
):
    """Everything the core keeps, in one database."""
