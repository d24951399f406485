"""Requests' milestones as CDEvents (spec 0.5.1, https://cdevents.dev): which event each
milestone is, its JSON, and the headers it is sent with (CloudEvents' HTTP binary mode, and an
HMAC-SHA256 signature of the body). Pure.

A request is a pipeline run: asked for (`pipelinerun.queued`), approved (each approval a
`taskrun.finished`), and ended: a promotion that succeeded is `service.deployed`, a rollback
that succeeded `service.rolledback`; one that failed, was unknown, rejected, cancelled or
expired is `pipelinerun.finished` with its outcome.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import quote

from bot.core.model import Request, expired_words

SPEC_VERSION = "0.5.1"
SIGNATURE_HEADER = "X-Promote-Bot-Signature"
MILESTONE_HEADER = "X-Promote-Bot-Milestone"
APPROVED = "approved:"  # + the approver: how the store records an approval

# Every milestone a receiver may ask for, in a request's order; `events` in [[notify]].
MILESTONES = (
    "requested",
    "approved",
    "rejected",
    "cancelled",
    "expired",
    "succeeded",
    "failed",
    "unknown",
    "rolled_back",
)
ALIASES = {"rolled back": "rolled_back", "rolledback": "rolled_back"}

_QUEUED = "dev.cdevents.pipelinerun.queued.0.3.0"
_FINISHED = "dev.cdevents.pipelinerun.finished.0.3.0"
TYPES = {
    "requested": _QUEUED,
    "approved": "dev.cdevents.taskrun.finished.0.3.0",
    "rejected": _FINISHED,
    "cancelled": _FINISHED,
    "expired": _FINISHED,
    "failed": _FINISHED,
    "unknown": _FINISHED,
    "succeeded": "dev.cdevents.service.deployed.0.3.0",
    "rolled_back": "dev.cdevents.service.rolledback.0.3.0",
}
# A finished pipeline run's outcome, in CDEvents' words.
_OUTCOMES = {
    "rejected": "cancel",
    "cancelled": "cancel",
    "expired": "cancel",
    "failed": "failure",
    "unknown": "error",
}


@dataclass(frozen=True)
class Receiver:
    """One `[[notify]]` table: where events go, which ones, for which targets, signed with
    what. The secret never shows in a repr (nor, so, in a log line)."""

    name: str  # how logs, metrics and the outbox name it (its URL may hold a token)
    url: str
    events: frozenset[str] = frozenset(MILESTONES)
    targets: tuple[str, ...] = ("*",)
    secret: str = field(default="", repr=False)

    def wants(self, milestone: str, target: str) -> bool:
        return milestone in self.events and any(fnmatchcase(target, p) for p in self.targets)


def milestone_of(what: str, request: Request) -> str | None:
    """The milestone a recorded change is ("requested", "approved", a final state; a
    rollback's success is "rolled_back"), or None for one that is no event (executing)."""
    if what == "requested":
        return "requested"
    if what.startswith(APPROVED):
        return "approved"
    if what == "succeeded":
        return "rolled_back" if request.rolls_back is not None else "succeeded"
    return what if what in _OUTCOMES else None


def rfc3339(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_id(source: str, request_id: int, what: str) -> str:
    """The same for every try and every receiver: receivers drop an id they have seen."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}/requests/{request_id}/{what}"))


def artifact_id(request: Request) -> str:
    """What the promotion installed, as a package URL in the provider's words:
    `pkg:generic/guardrails@7?policy_hash=sha256%3A…`."""
    parts = request.action.target.split(":")
    name = quote(parts[1] if len(parts) > 1 else parts[0], safe="")
    installed = list((request.outcome.installed if request.outcome else {}).items())
    if not installed:
        return f"pkg:generic/{name}@request-{request.id}"
    (_, version), rest = installed[0], sorted(installed[1:])
    qualifiers = "&".join(f"{quote(k.lower(), safe='')}={quote(v, safe='')}" for k, v in rest)
    return f"pkg:generic/{name}@{quote(version, safe='')}" + (f"?{qualifiers}" if rest else "")


def _said(what: str, request: Request) -> dict[str, Any]:
    """Who did it and what they said, for `customData`."""
    if what.startswith(APPROVED):
        user = what.removeprefix(APPROVED)
        comment = next((a.comment for a in request.approvals if a.user == user), None)
        return {"by": user, **({"comment": comment} if comment else {})}
    if what in ("rejected", "cancelled"):
        return {"by": request.decided_by, **({"reason": request.reason} if request.reason else {})}
    if what in ("succeeded", "failed", "unknown") and request.outcome is not None:
        check = {"check": request.outcome.check} if request.outcome.check else {}
        return {"outcome": request.outcome.headline, **check}
    return {}


def cdevent(
    what: str, request: Request, at: datetime, *, source: str, link: str | None = None
) -> dict[str, Any] | None:
    """The CDEvent of the change `what` to `request` at `at`, or None when it is no event."""
    milestone = milestone_of(what, request)
    if milestone is None:
        return None
    target = request.action.target
    run = f"requests/{request.id}"
    url = {"url": link} if link else {}
    subject: dict[str, Any]
    if milestone in ("succeeded", "rolled_back"):
        service = ":".join(target.split(":")[:2])
        subject = {
            "id": service,
            "content": {
                "environment": {"id": target, "source": source},
                "artifactId": artifact_id(request),
            },
        }
    elif milestone == "approved":
        subject = {
            "id": f"{run}/approvals/{what.removeprefix(APPROVED)}",
            "content": {
                "taskName": "approval",
                "pipelineRun": {"id": run, "source": source},
                "outcome": "success",
                **url,
            },
        }
    else:
        content: dict[str, Any] = {"pipelineName": target, **url}
        if milestone in _OUTCOMES:
            content["outcome"] = _OUTCOMES[milestone]
            errors = _errors(milestone, request)
            if errors:
                content["errors"] = errors
        subject = {"id": run, "content": content}
    return {
        "context": {
            "specversion": SPEC_VERSION,
            "id": event_id(source, request.id, what),
            "source": source,
            "type": TYPES[milestone],
            "timestamp": rfc3339(at),
        },
        "subject": {**subject, "source": source},
        "customData": {
            "milestone": milestone,
            "request": request.id,
            "target": target,
            "title": request.action.title,
            "requester": request.requester,
            **({"rollsBack": request.rolls_back} if request.rolls_back is not None else {}),
            **({"emergency": request.emergency} if request.emergency else {}),
            **_said(what, request),
            **({"link": link} if link else {}),
        },
        "customDataContentType": "application/json",
    }


def _errors(milestone: str, request: Request) -> str | None:
    if milestone in ("rejected", "cancelled"):
        by = f" by {request.decided_by}" if request.decided_by else ""
        return f"{milestone}{by}" + (f": {request.reason}" if request.reason else "")
    if milestone == "expired":
        return expired_words(request)
    return request.outcome.headline if request.outcome else None


def encode(event: Mapping[str, Any]) -> str:
    """The body sent, the same bytes at every try."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the raw body>`: how a receiver knows it came from us."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(body: str, secret: str) -> dict[str, str]:
    """CloudEvents' HTTP binary mode (the CDEvent is the body, its context in `ce-*`
    headers), and the signature of the body."""
    event = json.loads(body)
    context, subject = event["context"], event["subject"]
    raw = body.encode()
    return {
        "Content-Type": "application/json; charset=utf-8",
        "ce-specversion": "1.0",
        "ce-id": context["id"],
        "ce-source": context["source"],
        "ce-type": context["type"],
        "ce-time": context["timestamp"],
        "ce-subject": subject["id"],
        MILESTONE_HEADER: str(event.get("customData", {}).get("milestone", "")),
        SIGNATURE_HEADER: signature(secret, raw),
    }
