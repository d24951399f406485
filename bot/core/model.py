"""The nouns of the bot: scopes, request states, actions, previews and outcomes."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class Scope(StrEnum):
    """The providers' own scopes; roles in the role map are sets of these."""

    MANAGE_BUILDS = "developer:manage_builds"
    PUBLISH_BUNDLE = "bundle:publish"


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

ZNYX_STAGES: tuple[str, ...] = ("dev", "staging", "prod")


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True)


class ZnyxPromote(_Action):
    """Move the active policy bundle of a Znyx project one stage forward."""

    kind: Literal["znyx.promote"] = "znyx.promote"
    org_id: str
    project: str  # the alias people type
    project_id: str
    source_env: str

    @property
    def provider(self) -> str:
        return "znyx"

    @property
    def scope(self) -> Scope:
        return Scope.PUBLISH_BUNDLE

    @property
    def target_env(self) -> str:
        return ZNYX_STAGES[ZNYX_STAGES.index(self.source_env) + 1]

    @property
    def target(self) -> str:
        """The key policies are matched against, e.g. `znyx:guardrails:prod`."""
        return f"znyx:{self.project}:{self.target_env}"

    @property
    def title(self) -> str:
        return f"{self.project} policy bundle: {self.source_env} → {self.target_env}"


class WhopPromote(_Action):
    """Make a Whop app build the production build of its platform."""

    kind: Literal["whop.promote"] = "whop.promote"
    app: str  # the alias people type, or the app id when it has none
    app_id: str
    build_id: str

    @property
    def provider(self) -> str:
        return "whop"

    @property
    def scope(self) -> Scope:
        return Scope.MANAGE_BUILDS

    @property
    def target(self) -> str:
        return f"whop:{self.app}"

    @property
    def title(self) -> str:
        return f"{self.app} app build {self.build_id} → production"


class _AppStoreAction(_Action):
    app: str  # the alias people type, or the app id when it has none
    app_id: str
    build: str  # the build number people type ("153"), or the build's id
    build_id: str | None = None  # filled in by the provider when it looks the build up

    @property
    def provider(self) -> str:
        return "appstore"

    @property
    def scope(self) -> Scope:
        return Scope.MANAGE_BUILDS

    @property
    def target(self) -> str:
        return f"appstore:{self.app}"


class AppStoreAttach(_AppStoreAction):
    """Attach a build to an App Store version: what ships when that version is released."""

    kind: Literal["appstore.attach"] = "appstore.attach"
    version: str  # the version string ("2.4.0"), or the version's id
    version_id: str | None = None

    @property
    def title(self) -> str:
        return f"{self.app} {self.version}: attach build {self.build}"


class AppStoreExpire(_AppStoreAction):
    kind: Literal["appstore.expire"] = "appstore.expire"

    @property
    def title(self) -> str:
        return f"{self.app} build {self.build}: expire"


class AppStoreEncryption(_AppStoreAction):
    kind: Literal["appstore.encryption"] = "appstore.encryption"
    uses_non_exempt_encryption: bool

    @property
    def title(self) -> str:
        declared = "non-exempt" if self.uses_non_exempt_encryption else "exempt"
        return f"{self.app} build {self.build}: declare encryption {declared}"


Action = Annotated[
    ZnyxPromote | WhopPromote | AppStoreAttach | AppStoreExpire | AppStoreEncryption,
    Field(discriminator="kind"),
]
ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)


class Fact(BaseModel):
    """One labelled line of a preview or an outcome ("Now in prod": "v7 · sha256:ab12…")."""

    label: str
    value: str


class Preview(BaseModel):
    """What a request will change, read from the provider before anyone approves it."""

    facts: list[Fact] = []
    warnings: list[str] = []
    refusal: str | None = None  # set when the action must not even be offered for approval
    action: Action | None = None  # the action with the ids the provider looked up, if any


OutcomeState = Literal["succeeded", "failed", "unknown"]


class Outcome(BaseModel):
    """What the provider call did, with the provider's own identifiers."""

    state: OutcomeState
    headline: str
    facts: list[Fact] = []
    check: str | None = None  # for `unknown`: what a person should look at


class Approval(BaseModel):
    user: str
    at: datetime


class Request(BaseModel):
    """A promotion someone asked for, as the store keeps it."""

    id: int
    action: Action
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
    approvals: list[Approval] = []

    @property
    def approvers(self) -> list[str]:
        return [a.user for a in self.approvals]


class AuditEntry(BaseModel):
    at: datetime
    request_id: int | None
    actor: str
    event: str
    target: str | None = None
    detail: str = ""
