"""The protocols the core drives: providers, the store and the chat it posts to."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

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

    async def observe(self, action: Action, *, promoted_by: str) -> Outcome | None:
        """After a crash: read whether `action` took effect. None when it can't tell."""
        ...

    async def aclose(self) -> None:
        """Close the provider's HTTP client."""
        ...


class OpenRequestExists(Exception):
    """A request for the same thing is still open (pending, approved or executing)."""

    def __init__(self, request_id: int) -> None:
        super().__init__(f"request #{request_id} is open for the same thing")
        self.request_id = request_id


class Store(Protocol):
    """Requests, approvals and the audit log. `transition` is the compare-and-set."""

    def create_request(
        self,
        action: Action,
        *,
        requester: str,
        channel: str,
        preview: Preview | None,
        created_at: datetime,
        expires_at: datetime,
        emergency: str | None = None,
    ) -> Request:
        """Record a pending request; `OpenRequestExists` if one is open for `action.thing`."""
        ...

    def open_for(self, thing: str) -> Request | None:
        """The open (pending, approved or executing) request for `thing`, if any."""
        ...

    def get(self, request_id: int) -> Request | None: ...

    def set_message(self, request_id: int, ts: str) -> None: ...

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
    ) -> bool:
        """Move to `to` only if the request is in one of `from_states`; True if it moved."""
        ...

    def in_states(
        self, states: Sequence[State], *, expired_by: datetime | None = None
    ) -> list[Request]: ...

    def first_delivery(self, key: str, at: datetime) -> bool:
        """True the first time `key` is seen: a redelivered payload is not acted on twice."""
        ...

    def forget_deliveries(self, now: datetime) -> int:
        """Drop keys too old to be redelivered."""
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
    """The chat refused a post or an update; the message says why."""


class Chat(Protocol):
    """Where release messages live. Slack in production, the terminal in the shell."""

    async def post_request(self, channel: str, view: RequestView) -> str:
        """Post a release message; return its reference (Slack's `ts`)."""
        ...

    async def update_request(self, channel: str, ts: str, view: RequestView) -> None: ...

    async def post_in_thread(self, channel: str, ts: str, view: RequestView) -> None:
        """Post the request's outcome (or the reason it ended) under its message."""
        ...

    def link(self, channel: str, ts: str) -> str | None:
        """A link to a release message, if the chat has such links (no I/O)."""
        ...
