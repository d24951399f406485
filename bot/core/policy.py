"""Approval policy per target: how many approvals, by whom, and for how long a request lives.

Policies are keyed by target patterns such as `<provider>:<project>:prod`, `<provider>:*:prod`
or `<provider>:*`; the most specific pattern that matches a target wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.core.model import Gate

DEFAULT_EXPIRY = timedelta(hours=24)
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(value: str | int | timedelta) -> timedelta:
    """`"90m"`, `"24h"`, `"2d"`, `"30s"` or a number of seconds → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
        if seconds <= 0:
            raise ValueError("must be more than 0 seconds")
        return timedelta(seconds=seconds)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration like '30m', '24h' or '2d'")
    amount = int(match.group(1))
    if amount <= 0:
        raise ValueError("must be more than 0")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def format_duration(span: timedelta) -> str:
    """The inverse of `parse_duration`, in the largest whole unit (days from two on): "24h",
    "90m", "2d", "45s"."""
    seconds = int(span.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0 and (unit != "d" or seconds >= 2 * size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class Policy(BaseModel):
    """The rules one request is held to; re-read from the config at every click."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approvals: int = Field(default=1, ge=0, le=10)
    allow_self_approval: bool = False
    approver_roles: tuple[str, ...] | None = None
    expires_after: timedelta = DEFAULT_EXPIRY
    # for a rollback of a promotion under this policy, instead of `approvals` (a faster way back)
    rollback_approvals: int | None = Field(default=None, ge=0, le=10)
    # A break-glass request (`--emergency`) needs this many; None: one more than `approvals`.
    emergency_approvals: int | None = Field(default=None, ge=1, le=10)
    # A promotion into the target runs only once what it promotes has been live this long in
    # its source stage (bot/core/timing.py).
    soak: timedelta | None = None
    # The bot asks for the promotion itself when the source stage changes (and it soaked);
    # only with `approvals = 0` (bot/core/stages.py).
    auto: bool = False
    channel: str | None = None  # where the bot's own requests for the target are posted
    # The values a provider's own policy keys allow (`whop_statuses = ["approved"]` is
    # {"whop_statuses": ("approved",)}); the config file gives them as keys of their own.
    allow: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    def for_emergency(self) -> Policy:
        """The policy a break-glass request is held to: one approval more (or as configured)."""
        needed = self.emergency_approvals
        return self.model_copy(update={"approvals": needed or self.approvals + 1})

    @field_validator("expires_after", mode="before")
    @classmethod
    def _duration(cls, value: object) -> timedelta:
        return parse_duration(value)  # type: ignore[arg-type]

    @field_validator("soak", mode="before")
    @classmethod
    def _soak(cls, value: object) -> timedelta | None:
        return None if value is None else parse_duration(value)  # type: ignore[arg-type]


def gate_refusal(policy: Policy, gates: Mapping[str, Gate], target: str) -> str | None:
    """Why `policy` refuses what a preview found (`gates`), or None: "Build apbu_1 is draft;
    the policy for `whop:storefront` allows only approved (its `whop_statuses`)."."""
    for key, gate in gates.items():
        allowed = policy.allow.get(key)
        if allowed is not None and gate.value not in allowed:
            return (
                f"{gate.found}; the policy for `{target}` allows only "
                f"{' or '.join(allowed)} (its `{key}`)."
            )
    return None


def _specificity(pattern: str) -> tuple[int, int]:
    """More literal characters and fewer wildcards make a pattern more specific."""
    wildcards = sum(pattern.count(c) for c in "*?[")
    return (len(pattern) - wildcards, -wildcards)


def pattern_for(target: str, policies: dict[str, Policy]) -> str | None:
    """The most specific pattern matching `target`, or None (the default policy applies)."""
    matching = [p for p in policies if fnmatchcase(target, p)]
    return max(matching, key=_specificity) if matching else None


def policy_for(target: str, policies: dict[str, Policy]) -> Policy:
    """The policy of the most specific pattern matching `target`, else the default policy."""
    pattern = pattern_for(target, policies)
    return Policy() if pattern is None else policies[pattern]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe(policy: Policy, expires_at: datetime | None = None) -> str:
    """One line for the release message: "needs 1 approval, not by the requester, expires …"."""
    if policy.approvals == 0:
        parts = ["runs without approval"]
    else:
        parts = [f"needs {_plural(policy.approvals, 'approval')}"]
        if not policy.allow_self_approval:
            parts.append("not by the requester")
        if policy.approver_roles:
            parts.append("approvers: " + ", ".join(policy.approver_roles))
    parts += [f"{key}: {' or '.join(values)}" for key, values in policy.allow.items()]
    if expires_at is not None and policy.approvals:
        parts.append(f"expires {expires_at:%Y-%m-%d %H:%M} UTC")
    return ", ".join(parts)
