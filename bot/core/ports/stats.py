"""What the requests add up to, asked of the store (bot/core/stats.py says what it means)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from bot.core.figures import DeliveryTotals, TargetFigures


class StatsStore(Protocol):
    """What the requests add up to, computed by the database (aggregates and window functions
    over requests and approvals, never rows loaded into memory); bot/core/stats.py says what
    each number means. On a big database a call takes a while, so each runs on a connection of
    its own: safe to call from a worker thread, never holding up the store's other calls."""

    def target_figures(
        self,
        since: datetime,
        until: datetime,
        *,
        pattern: str | None = None,
        kinds: Sequence[str] | None = None,
        providers: Sequence[str] = (),
    ) -> list[TargetFigures]:
        """Per target (by name), the requests that ended in [since, until), and the audit
        log's changes outside the bot and previews that moved recorded then; only targets
        matching `pattern` (`znyx:*:prod`) and, when `kinds` are given, requests of those
        kinds and changes outside the bot at targets of `providers`."""
        ...

    def delivery_totals(self, bounds: Sequence[float]) -> DeliveryTotals:
        """Every request since the database began, by target; durations bucketed by `bounds`
        (seconds, ascending)."""
        ...
