"""The protocols the core drives: providers, the store and the chat it posts to."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from bot.core.holds import Lock
from bot.core.model import Action, AuditEntry, Outcome, Preview, Request, State

if TYPE_CHECKING:
    from bot.core.render import RequestView


class Provider(Protocol):
    """One provider's calls, as the workflow needs them. Errors are `ProviderError`s."""

    name: str

    async def preview(self, action: Action) -> Preview:
        """Read what the action would change; set `refusal` if it must not be offered."""
        ...

    async def execute(
        self, action: Action, *, promoted_by: str, expect: Mapping[str, str]
    ) -> Outcome:
        """Do the action, once, if the provider still shows what `expect` (the preview's
        "now") says; otherwise send nothing and answer `failed`, saying what changed. Never
        retried by the caller when the fate is unknown."""
        ...

    async def observe(
        self, action: Action, *, promoted_by: str, expect: Mapping[str, str]
    ) -> Outcome | None:
        """After a crash: read whether `action` took effect, comparing with `expect` (what the
        provider showed before the write): `succeeded` if it shows the change, `failed` only if
        it shows exactly the state from before, `unknown` otherwise; None when it can't tell."""
        ...

    async def aclose(self) -> None:
        """Close the provider's HTTP client."""
        ...


class StoreError(Exception):
    """The database can't be used (missing, read-only, full, not a database); the message
    says so in plain words, naming the setting where that helps."""


class OpenRequestExists(Exception):
    """A request for the same thing is still open (pending, approved or executing)."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"request #{request_id} is open for the same thing")
        self.request_id = request_id


class Store(Protocol):
    """Requests, approvals and the audit log. `transition` is the compare-and-set."""

    # This database's own name (random, made once): what it writes to a provider is told apart
    # from what another bot sharing that provider wrote.
    installation: str

    def create_request(
        self,
        action: Action,
        *,
        requester: str,
        channel: str,
        preview: Preview | None,
        created_at: datetime,
        expires_at: datetime,
        rolls_back: int | None = None,
        emergency: str | None = None,
    ) -> Request:
        """Record a pending request (a rollback of request `rolls_back`, if given);
        `OpenRequestExists` if one is open for `action.thing`."""
        ...

    def open_for(self, thing: str) -> Request | None:
        """The open (pending, approved or executing) request for `thing`, if any."""
        ...

    def get(self, request_id: int) -> Request | None: ...

    def set_message(self, request_id: int, ts: str, *, shown: int | None = None) -> None: ...

    def add_copy(self, request_id: int, ts: str) -> bool: ...

    def touch_message(self, request_id: int) -> None: ...

    def messages_due(self, now: datetime) -> list[int]: ...

    def message_shown(self, request_id: int, version: int, *, thread: bool = False) -> None: ...

    def message_failed(self, request_id: int, next_try: Callable[[int], datetime]) -> int: ...

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

    def add_approval(self, request_id: int, user: str, at: datetime) -> bool:
        """Record `user`'s approval if the request is open and they have not approved yet."""
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
    ) -> bool:
        """Move to `to` only if the request is in one of `from_states`; True if it moved.
        Moving to `executing` takes `lease` (owner, until); leaving it drops the lease."""
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

    def in_states(
        self, states: Sequence[State], *, expired_by: datetime | None = None
    ) -> list[Request]: ...

    def forget_deliveries(self, now: datetime) -> int:
        """Drop finished acknowledged work too old to be redelivered."""
        ...

    def inbox_put(self, key: str, kind: str, payload: dict, at: datetime) -> bool:
        """Record acknowledged work; False for a key seen before (a redelivery)."""
        ...

    def inbox_claim(self, key: str, owner: str, now: datetime, until: datetime) -> dict | None:
        """Take acknowledged work to do, if not done and nobody holds it."""
        ...

    def inbox_renew(self, key: str, owner: str, until: datetime) -> bool: ...

    def inbox_done(self, key: str, at: datetime) -> None: ...

    def inbox_waiting(self, now: datetime, *, received_before: datetime) -> list[str]:
        """Keys of acknowledged work not done that nobody holds."""
        ...

    def add_lock(self, lock: Lock) -> Lock | None:
        """Store `lock`; None if stored, else the lock already set on that pattern."""
        ...

    def remove_lock(self, pattern: str) -> Lock | None:
        """Lift the lock on exactly `pattern`; the lock lifted, or None if there was none."""
        ...

    def locks(self) -> list[Lock]:
        """Every lock, shared by every process using the store."""
        ...

    def audit(self, entry: AuditEntry) -> None: ...

    def history(
        self, target: str | None = None, limit: int = 20, *, request_id: int | None = None
    ) -> list[AuditEntry]:
        """Newest first."""
        ...


class ChatError(Exception):
    """The chat refused a post or an update, or could not be reached; the message says why.

    `maybe_done`: the request may have reached the chat (a reset after sending, a timeout),
    so a post must not simply be sent again. `retry_after`: seconds the chat asked to wait.
    `gone`: the message or its channel is no more (deleted, archived): trying again can't help."""

    def __init__(
        self,
        message: str,
        *,
        maybe_done: bool = False,
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        super().__init__(message)
        self.maybe_done = maybe_done
        self.retry_after = retry_after
        self.gone = gone


class Chat(Protocol):
    """Where release messages live. Slack in production, the terminal in the shell."""

    async def post_request(self, channel: str, view: RequestView, *, request_id: int) -> str:
        """Post a release message; return its reference (Slack's `ts`)."""
        ...

    async def find_request(self, channel: str, request_id: int, since: datetime) -> str | None:
        """The reference of a release message of `request_id` the chat shows, if any (after a
        post whose answer was lost), looking at every message since `since` (when the request
        was made); ChatError if there are more of those than the chat looks through."""
        ...

    async def update_request(self, channel: str, ts: str, view: RequestView) -> None: ...

    async def post_in_thread(self, channel: str, ts: str, view: RequestView) -> None:
        """Post the request's outcome (or the reason it ended) under its message."""
        ...

    async def find_outcome(self, channel: str, ts: str, request_id: int) -> bool:
        """Whether the thread under message `ts` holds `request_id`'s outcome (after a post
        whose answer was lost); False if the message or its thread is gone."""
        ...

    def link(self, channel: str, ts: str) -> str | None:
        """A link to a release message, if the chat has such links (no I/O)."""
        ...
