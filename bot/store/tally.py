"""What the rows of a window (`figures_sql`: one per request that ended in it) add up to per
target, kept as rows come and go: the counts, and each measure's durations in sorted order, so
that a window brought up to date costs what changed in it, not what it holds. A year of
history makes a week some 2,000 requests; adding them up again after each change cost 2 ms of
the App Home's 12 (bench/growth.py), where replacing the few that changed costs microseconds.

Percentiles are by nearest rank: p50 is the ⌈n/2⌉-th smallest value, p90 the ⌈9n/10⌉-th, so
each is a duration that really happened."""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping
from typing import Any

from bot.core.figures import TargetFigures

STOPPED = ("rejected", "cancelled", "expired")  # ended before anything was sent
COUNTED = ("succeeded", "failed", "unknown", "stopped", "rolled_back", "rollbacks", "emergencies")
MEASURES = ("lead", "wait", "restore")  # request → success, → first approval, → restored


def nearest_rank(values: list[float], tenths: int) -> float | None:
    """The ⌈tenths/10 · n⌉-th smallest of `values` (sorted), a duration that really happened;
    None of none."""
    if not values:
        return None
    return values[(tenths * len(values) + 9) // 10 - 1]


def _counted_as(row: Mapping[str, Any]) -> list[str]:
    """The counts a row adds one to."""
    names = []
    state = row["state"]
    if row["rollback"]:
        if state == "succeeded":
            names.append("rollbacks")
    else:
        names.append("stopped" if state in STOPPED else state)  # succeeded, failed or unknown
    if row["emergency"]:
        names.append("emergencies")
    if row["undone"]:
        names.append("rolled_back")
    return names


class _Target:
    """One target's part: how many rows, the counts by name, the sorted durations."""

    __slots__ = ("counts", "durations", "rows")

    def __init__(self) -> None:
        self.rows = 0
        self.counts: dict[str, int] = {}
        self.durations: tuple[list[float], ...] = tuple([] for _ in MEASURES)

    def copy(self) -> _Target:
        other = _Target()
        other.rows = self.rows
        other.counts = dict(self.counts)
        other.durations = tuple(list(values) for values in self.durations)
        return other

    def figures(self, target: str) -> TargetFigures:
        lead, wait, restore = self.durations
        return TargetFigures(
            target=target,
            **{name: self.counts.get(name, 0) for name in COUNTED},
            lead_p50=nearest_rank(lead, 5),
            lead_p90=nearest_rank(lead, 9),
            wait_p50=nearest_rank(wait, 5),
            restore_p50=nearest_rank(restore, 5),
        )


class Tally:
    """The figures of a set of rows, kept up to date by `add` and `remove` (a row replaced is
    one removed and one added: the very row given, as `add` had it). A copy shares each
    target's part with the original until it changes it, and each target's figures are made
    again only after its part changed: bringing a week up to date costs the targets that
    changed, not all of them."""

    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}
        self._own: set[str] = set()  # the parts this tally may change (not shared)
        self._figures: dict[str, TargetFigures] = {}

    @classmethod
    def of(cls, rows: Iterable[Mapping[str, Any]]) -> Tally:
        tally = cls()
        for row in rows:
            tally._count(row, +1, sort=False)
        for part in tally._targets.values():
            for values in part.durations:
                values.sort()
        return tally

    def copy(self) -> Tally:
        other = Tally()
        other._targets = dict(self._targets)
        other._figures = dict(self._figures)
        self._own.clear()  # shared now: each copies a part before it changes it
        return other

    def add(self, row: Mapping[str, Any]) -> None:
        self._count(row, +1, sort=True)

    def remove(self, row: Mapping[str, Any]) -> None:
        self._count(row, -1, sort=True)

    def _part(self, target: str) -> _Target:
        part = self._targets.get(target)
        if part is None:
            part = _Target()
        elif target not in self._own:
            part = part.copy()
        self._targets[target] = part
        self._own.add(target)
        self._figures.pop(target, None)
        return part

    def _count(self, row: Mapping[str, Any], sign: int, *, sort: bool) -> None:
        target = str(row["target"])
        part = self._part(target)
        part.rows += sign
        for name in _counted_as(row):
            part.counts[name] = part.counts.get(name, 0) + sign
        for values, measure in zip(part.durations, MEASURES, strict=True):
            value = row[measure]
            if value is None:
                continue
            value = float(value)
            if sign < 0:
                at = bisect_left(values, value)
                if at == len(values) or values[at] != value:
                    raise ValueError(f"a row of {target} removed that was never added")
                del values[at]
            elif sort:
                insort(values, value)
            else:
                values.append(value)  # sorted once all are in (`of`)
        if part.rows == 0:
            del self._targets[target]

    def figures(self) -> list[TargetFigures]:
        """Per target with a row, in target order: its counts and nearest-rank percentiles
        (p50 is the ⌈n/2⌉-th smallest, p90 the ⌈9n/10⌉-th)."""
        out = []
        for target in sorted(self._targets):
            made = self._figures.get(target)
            if made is None:
                made = self._figures[target] = self._targets[target].figures(target)
            out.append(made)
        return out


def figures_of(rows: Iterable[Mapping[str, Any]]) -> list[TargetFigures]:
    """What the rows of `figures_sql` add up to, per target, in target order."""
    return Tally.of(rows).figures()
