"""What the requests add up to, as the store hands it over: the nouns of `/promote stats`, the
App Home's last 7 days and the metrics (bot/core/stats.py says what each number means)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TargetFigures:
    """What one target's requests that ended in a window add up to, as the database counts
    them; bot/core/stats.py (and the README) say what each number means. Durations are in
    seconds, None when there was nothing to measure."""

    target: str
    succeeded: int = 0  # promotions (requests that are not rollbacks) that succeeded
    failed: int = 0
    unknown: int = 0
    rolled_back: int = 0  # of the succeeded promotions, those a rollback undid since
    stopped: int = 0  # promotions rejected, cancelled or expired: never run
    rollbacks: int = 0  # rollbacks that succeeded
    emergencies: int = 0  # break-glass requests (promotions and rollbacks)
    lead_p50: float | None = None  # request → success, of the succeeded promotions
    lead_p90: float | None = None
    wait_p50: float | None = None  # request → first approval, of promotions approved
    restore_p50: float | None = None  # a promotion's success → its rollback's success
    # From the audit log, by when it was recorded (issue 26's milestones): changes a provider
    # showed that did not go through the bot, and requests whose preview moved before a
    # decision (each counted once however often it moved).
    outside: int = 0
    drifted: int = 0


@dataclass(frozen=True)
class Durations:
    """A histogram of durations (seconds): how many took at most each of the bounds asked
    for (cumulative, in the bounds' order), how many in all, and their sum."""

    at_most: tuple[int, ...]
    count: int
    total: float


@dataclass(frozen=True)
class DeliveryTotals:
    """Every request since the database began, by target: what Prometheus's counters and
    histograms are made of (the same on every replica, and across restarts)."""

    outcomes: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (target, state)
    rollbacks: Mapping[str, int] = field(default_factory=dict)  # succeeded rollbacks
    lead: Mapping[str, Durations] = field(default_factory=dict)
    wait: Mapping[str, Durations] = field(default_factory=dict)
    restore: Mapping[str, Durations] = field(default_factory=dict)
    outside: Mapping[str, int] = field(default_factory=dict)  # changes outside the bot
    drifted: Mapping[str, int] = field(default_factory=dict)  # requests whose preview moved
