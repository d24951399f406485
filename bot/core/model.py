"""The nouns of the bot: request states, actions, previews and outcomes.

Actions are declared by the provider modules; the core knows them only through `Action`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, SerializeAsAny

from bot.core.timing import Timing

Scope = str  # a provider's own scope name, e.g. "bundle:publish"; providers declare theirs


class State(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"
    REJECTED = "rejected"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        """Still waiting for people: buttons are shown only in these states."""
        return self in (State.PENDING, State.APPROVED)

    @property
    def is_final(self) -> bool:
        return self not in (State.PENDING, State.APPROVED, State.EXECUTING)


BOT_ACTOR = "promote-bot"  # the actor of what the bot does by itself in the audit log


class Action(BaseModel):
    """Something a provider can be asked to do. Each provider module defines its own actions
    as subclasses with a distinct `kind`; the store reads them back by that `kind`."""

    model_config = ConfigDict(frozen=True)

    kind: str
    provider: ClassVar[str]  # the registry name of the provider that runs it
    scope: ClassVar[Scope]  # the provider scope a requester and an approver must hold
    reversible: ClassVar[bool] = True  # False: once done, there is no way back (no rollback)
    # What the release message's status says while it runs and once it succeeded: the
    # action's own words ("Expiring now…", "✅ Expired"), not always a promotion's.
    doing: ClassVar[str] = "Promoting"
    done: ClassVar[str] = "Promoted"

    # Set on a rollback only: what the promotion it undoes installed, in the provider's words.
    # The provider refuses it (and sends nothing) unless the thing still shows exactly that.
    undoing: str | None = None

    _kinds: ClassVar[dict[str, type[Action]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        kind = cls.model_fields["kind"].default
        if isinstance(kind, str) and kind:
            Action._kinds[kind] = cls

    @property
    def target(self) -> str:
        """The key policies are matched against, `<provider>:<name>[:<environment>]`."""
        raise NotImplementedError

    @property
    def title(self) -> str:
        """What it does, in a few words, for the release message."""
        raise NotImplementedError

    @property
    def thing(self) -> str | None:
        """The one thing in the provider it changes (an environment, an app's platform, a
        version): at most one request per thing may be open. None until the provider's
        preview has resolved what it needs to name it."""
        return self.target

    @property
    def source(self) -> str | None:
        """For a promotion from one stage to the next, the source stage (as things are
        named): what a soak times, and whose change an auto-promotion follows."""
        return None

    @property
    def source_name(self) -> str | None:
        """The source stage as people name it ("staging")."""
        return None

    @property
    def watches(self) -> tuple[str, ...]:
        """The things whose change makes its preview untrue (its own, and for a promotion
        from one stage to the next the source too): a provider's word that one of them moved
        has its preview read again at once."""
        return (self.thing,) if self.thing else ()


def kinds_for(scopes: Iterable[Scope]) -> tuple[str, ...]:
    """The action kinds someone holding `scopes` may request or approve: the requests whose
    figures they see in `/promote stats`."""
    held = set(scopes)
    return tuple(sorted(kind for kind, cls in Action._kinds.items() if cls.scope in held))


def providers_for(kinds: Iterable[str]) -> tuple[str, ...]:
    """The providers whose actions `kinds` are: whose targets' changes outside the bot someone
    who may see those kinds sees."""
    return tuple(sorted({Action._kinds[k].provider for k in kinds if k in Action._kinds}))


def action_from_json(text: str | bytes) -> Action:
    """An action as `Action.model_dump_json` wrote it, as the class of its `kind`."""
    data = json.loads(text)
    kind = data.get("kind") if isinstance(data, dict) else None
    cls = Action._kinds.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown action kind {kind!r} (is its provider registered?)")
    return cls.model_validate(data)


class Query(BaseModel):
    """Something to look at in a provider (its builds, its bundles): read-only, answered only
    to the person who asked, who needs the provider's `scope`. Declared by provider modules."""

    model_config = ConfigDict(frozen=True)

    provider: ClassVar[str]  # the registry name of the provider that answers it
    scope: ClassVar[Scope]


@dataclass(frozen=True)
class Listing:
    """What a provider answers to a `Query`: a table, plain text in every cell (each
    transport shows it its own way), and notes under it."""

    title: str  # "Recent builds of ios"
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    notes: tuple[str, ...] = ()  # "the newest 10 of 37", "no bundle is active in prod"


class Fact(BaseModel):
    """One labelled line of a preview or an outcome ("Now in prod": "v7 · sha256:ab12…")."""

    label: str
    value: str


class Gate(BaseModel):
    """What a preview found for one of its provider's policy keys (`whop_statuses`): the value
    the policy's list is checked against, and a sentence saying what was found."""

    value: str  # "draft"
    found: str  # "Build apbu_ios153 is a draft"


class Preview(BaseModel):
    """What a request will change, read from the provider before anyone approves it."""

    facts: list[Fact] = []
    # policy key → what was found for it; a policy whose list for that key lacks the value
    # refuses the request before it is posted, and its approval afterwards
    gates: dict[str, Gate] = {}
    warnings: list[str] = []
    refusal: str | None = None  # set when the action must not even be offered for approval
    # What the preview showed as "now", in the provider's words (e.g. the production build):
    # right before the write the provider reads it again, and does nothing if it moved.
    expect: dict[str, str] = {}
    # the action with the ids the provider looked up, if any
    action: SerializeAsAny[Action] | None = None


class Drift(BaseModel):
    """What a provider shows now that a request's preview did not: the preview no longer
    holds, so approving it would not promote what was shown (the write would not be sent)."""

    provider: str = ""  # its label, for people ("Znyx"); filled in by the core if left out
    what: str  # what moved, in the preview's words ("prod's active bundle")
    then: str  # what the preview showed
    now: str  # what the provider shows now
    by: str | None = None  # who the provider says made it so, when it says
    # The thing that moved, as requests name things, when the provider can tell which of what
    # the request watches it was: a stage whose change what follows it is told of.
    thing: str | None = None

    @property
    def sentence(self) -> str:
        """ "prod's active bundle: v1 · sha256:… when this was asked, v2 · sha256:… now
        (published by ci)"."""
        by = f" (published by {self.by})" if self.by else ""
        return f"{self.what}: {self.then} when this was asked, {self.now} now{by}"

    def outcome(self) -> Outcome:
        """The outcome of a write not sent because of it."""
        return changed(self.what, self.then, self.now)


OutcomeState = Literal["succeeded", "failed", "unknown"]


class Outcome(BaseModel):
    """What the provider call did, with the provider's own identifiers."""

    state: OutcomeState
    headline: str
    facts: list[Fact] = []
    check: str | None = None  # for `unknown`: what a person should look at
    # What the thing showed right before the write, and what the write installed, in the
    # provider's words: what a rollback restores, and what it expects to find.
    before: dict[str, str] = {}
    installed: dict[str, str] = {}
    # When nothing was sent because the provider moved since the preview: what moved.
    moved: Drift | None = None


def changed(what: str, then: str, now: str) -> Outcome:
    """The outcome of a write not sent because the provider moved since the preview."""
    return Outcome(
        state="failed",
        headline=f"{what} was {then} when this was requested; it is now {now}: "
        "nothing was changed, request again",
        moved=Drift(what=what, then=then, now=now),
    )


def moved(
    provider: str,
    what: str,
    expect: Mapping[str, str],
    key: str,
    now: str,
    *,
    then: str | None = None,
    shown: str | None = None,
    by: str | None = None,
) -> Drift | None:
    """What the preview recorded under `key` against what the provider shows now (`now`, in
    the same words): None while they agree (or the preview recorded nothing there), else what
    moved, shown as `then` and `shown` when the recorded words are ids."""
    if key not in expect or now == expect[key]:
        return None
    return Drift(
        provider=provider,
        what=what,
        then=then if then is not None else expect[key] or "none",
        now=shown if shown is not None else now or "none",
        by=by,
    )


def not_sent(why: str) -> Outcome:
    """The outcome of a write not sent because it would change nothing, or couldn't be checked."""
    return Outcome(state="failed", headline=f"not sent: {why}")


def not_done(what: str) -> Outcome:
    """A read after an interruption shows exactly the state from before the write."""
    return Outcome(state="failed", headline=f"not done: {what}, as before; request again")


def unclear(provider: str, what: str, check: str) -> Outcome:
    """A read after an interruption shows neither the change nor the state from before."""
    return Outcome(
        state="unknown", headline=f"{provider} shows {what}", check=f"{check} before asking again."
    )


class Sighting(BaseModel):
    """What a provider shows of one thing now (a Znyx environment's active bundle), read
    because the provider named it (it changed, or a change elsewhere involved it)."""

    provider: str  # its registry name ("znyx")
    label: str  # its label, for people ("Znyx")
    thing: str  # as requests name it ("znyx:<project id>:prod")
    target: str  # as policies and history name it ("znyx:guardrails:prod")
    place: str  # for people ("guardrails prod")
    key: str  # what is live there, by the provider's id for it ("" for nothing)
    shown: str  # how the bot shows it ("v2 · sha256:…", "none")
    by: str | None = None  # who the provider says put it there
    at: str | None = None  # when, as the provider says
    # What is live, as an outcome's `installed` records it: a request whose write installed
    # exactly this is the bot's own change.
    record: dict[str, str] = {}
    # What came before it as the provider lists it, for when the bot has no earlier reading.
    before: str | None = None
    # The provider said this thing changed (not only named it, as a promotion's source): with
    # no earlier reading to compare with, only such a thing is told as changed.
    said_changed: bool = True


class Approval(BaseModel):
    user: str
    at: datetime
    comment: str | None = None  # what the approver said, if anything (plain text, cut)


class Request(BaseModel):
    """A promotion someone asked for, as the store keeps it."""

    id: int
    action: SerializeAsAny[Action]
    requester: str
    channel: str
    message_ts: str | None = None
    state: State
    preview: Preview | None = None
    outcome: Outcome | None = None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    decided_by: str | None = None  # who rejected or cancelled
    reason: str | None = None  # why they rejected or cancelled it (plain text, cut)
    emergency: str | None = None  # break-glass: why it may pass a lock or a freeze
    approvals: list[Approval] = []
    rolls_back: int | None = None  # the request this one undoes, if it is a rollback
    rolled_back_by: int | None = None  # the rollback that undid this one, once it succeeded
    msg_version: int = 1  # bumped by every change its release message must show
    copies: list[str] = []  # other posts of its release message (a retried post), kept in step
    timing: Timing | None = None  # what it waits for: its schedule, soak, window
    due_at: datetime | None = None  # when the bot looks at it again by itself (while open)
    # When its message is to be looked at again: a write to Slack whose answer was lost may
    # land late, over a newer one (or a post may appear after the bot gave up on it).
    msg_recheck_at: datetime | None = None
    drift: Drift | None = None  # what moved since its preview, as last read (while open)

    @property
    def approvers(self) -> list[str]:
        return [a.user for a in self.approvals]


def expired_words(request: Request) -> str:
    """Why a request expired, in words true for it: one that did not run when its time came (a
    lock or a freeze held it, with its approvals kept) expired waiting, not for want of them."""
    if request.timing is not None and request.timing.held:
        return "expired before it could run"
    return "expired before it had its approvals"


@dataclass(frozen=True)
class Reply:
    """A short answer shown only to the person who acted."""

    text: str


@dataclass(frozen=True)
class NewRequest:
    """A request about to be recorded (pending): what the store is given to create it."""

    action: Action
    requester: str
    channel: str
    preview: Preview | None
    created_at: datetime
    expires_at: datetime
    rolls_back: int | None = None  # the succeeded request this one undoes, if a rollback
    emergency: str | None = None  # break-glass: why it may pass a lock or a freeze
    # Direct messages owed once it is recorded, (person, event): in the same transaction.
    notices: tuple[tuple[str, str], ...] = ()
    timing: Timing | None = None  # its schedule, soak and window, as worked out when asked
    due_at: datetime | None = None  # when the bot looks at it again by itself
    # The acknowledged work that asks for it (a Slack command's inbox key): one request at
    # most per origin, however often that work is done (its process killed, done again).
    origin: str | None = None


@dataclass(frozen=True)
class Lock:
    """A lock someone set with `/promote lock`: nothing matching `pattern` may be promoted."""

    pattern: str
    reason: str
    by: str
    at: datetime


class StepRecord(BaseModel):
    """One write of an execution, as its journal keeps it: marked `sent_at` before the write
    went out, `done_at` with what the provider answered (`result`) once it did."""

    name: str
    sent_at: datetime
    done_at: datetime | None = None
    result: dict[str, Any] = {}

    @property
    def done(self) -> bool:
        return self.done_at is not None


class NoticeRecord(BaseModel):
    """A direct message owed to one person about one event of one request (the outbox of
    bot/core/notify.py); `key` is unique per request, person and event."""

    key: str
    request_id: int
    user: str
    event: str  # "waiting", "approved:<user>", "rejected", "cancelled", "expired", an outcome
    created_at: datetime
    attempts: int = 0


def notice_key(request_id: int, user: str, event: str) -> str:
    """The outbox key of a direct message: one per request, person and event, ever."""
    return f"{request_id}:{user}:{event}"


class AuditEntry(BaseModel):
    id: int | None = None  # its place in the log, when read back (the export shows it)
    at: datetime
    request_id: int | None
    actor: str
    event: str
    target: str | None = None
    detail: str = ""
