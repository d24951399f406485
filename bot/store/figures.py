"""The SQL of what the requests add up to (`/promote stats`, the metrics), written once for both
databases: each store supplies its `Dialect` (placeholders, how to tell seconds between two
moments, an action's kind, a target pattern) and runs the statements on a connection of its own.

Everything is counted by the database, from `requests` and `approvals`: a request's state is
the state machine's truth, its `updated_at` the moment it reached that state (a request that
ended is never changed again), its `rolls_back` whether it is a rollback. Event names in the
audit log are prose that grows with each feature; states and kinds don't need editing when a
new kind of request (a TestFlight step, a webhook's late success) arrives.

Percentiles are by nearest rank, the same on both databases: p50 is the ⌈n/2⌉-th smallest
value, p90 the ⌈9n/10⌉-th, so each is a duration that really happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.core.model import DeliveryTotals, Durations, State, TargetFigures

FINAL = tuple(s.value for s in State if s.is_final)
RAN = ("succeeded", "failed", "unknown")  # the provider was called: a promotion that ran
STOPPED = ("rejected", "cancelled", "expired")  # ended before anything was sent


def _list(values: Iterable[str]) -> str:
    return ", ".join(f"'{v}'" for v in values)  # our own constants, never people's text


@dataclass(frozen=True)
class Dialect:
    """How one database says the few things the statements need."""

    mark: str  # the placeholder: "?" or "%s"
    seconds: Callable[[str, str], str]  # SQL: seconds from moment `a` to moment `b`, to ms
    kind: str  # SQL: the action kind of the request row `r`
    matches: str  # SQL: whether `{column}` matches the pattern parameter
    pattern: Callable[[str], str]  # a target pattern (`znyx:*:prod`) as that parameter
    moment: Callable[[datetime], Any]  # a moment as a parameter


def _ended(d: Dialect, pattern: bool, kinds: int) -> tuple[str, int]:
    """The requests that ended in the window (and match), and how many parameters follow the
    window's two."""
    where = [
        f"r.updated_at >= {d.mark}",
        f"r.updated_at < {d.mark}",
        f"r.state IN ({_list(FINAL)})",
    ]
    if pattern:
        where.append(d.matches.format(column="r.target"))
    if kinds:
        where.append(f"{d.kind} IN ({', '.join([d.mark] * kinds)})")
    return (
        "SELECT r.id, r.target, r.state, r.rolls_back, r.emergency, r.created_at,"
        " r.updated_at AS ended_at FROM requests r WHERE " + " AND ".join(where)
    ), int(pattern) + kinds


def figures_sql(d: Dialect, *, pattern: bool, kinds: int) -> str:
    """Per target: counts of the requests that ended in the window, and the nearest-rank
    percentiles of lead time (m = 1), approval wait (2) and time to restore (3)."""
    ended, _ = _ended(d, pattern, kinds)
    lead = d.seconds("created_at", "ended_at")
    wait = d.seconds("e.created_at", "MIN(a.at)")
    restore = d.seconds("u.updated_at", "e.ended_at")
    done = "'succeeded'"

    def count(condition: str) -> str:
        return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"

    promotion = "rolls_back IS NULL"
    return f"""
        WITH ended AS ({ended}),
        measures AS (
            SELECT target, 1 AS m, {lead} AS secs FROM ended
                WHERE state = {done} AND {promotion}
            UNION ALL
            SELECT e.target, 2 AS m, {wait} AS secs FROM ended e
                JOIN approvals a ON a.request_id = e.id
                WHERE e.rolls_back IS NULL GROUP BY e.id, e.target, e.created_at
            UNION ALL
            SELECT e.target, 3 AS m, {restore} AS secs FROM ended e
                JOIN requests u ON u.id = e.rolls_back
                WHERE e.state = {done} AND u.state = {done}
        ),
        ranked AS (
            SELECT target, m, secs,
                ROW_NUMBER() OVER (PARTITION BY target, m ORDER BY secs) AS k,
                COUNT(*) OVER (PARTITION BY target, m) AS n
            FROM measures
        ),
        ranks AS (
            SELECT target,
                MAX(CASE WHEN m = 1 AND k = (n + 1) / 2 THEN secs END) AS lead_p50,
                MAX(CASE WHEN m = 1 AND k = (9 * n + 9) / 10 THEN secs END) AS lead_p90,
                MAX(CASE WHEN m = 2 AND k = (n + 1) / 2 THEN secs END) AS wait_p50,
                MAX(CASE WHEN m = 3 AND k = (n + 1) / 2 THEN secs END) AS restore_p50
            FROM ranked GROUP BY target
        ),
        counts AS (
            SELECT target,
                {count(f"{promotion} AND state = {done}")} AS succeeded,
                {count(f"{promotion} AND state = 'failed'")} AS failed,
                {count(f"{promotion} AND state = 'unknown'")} AS unknown,
                {count(f"{promotion} AND state IN ({_list(STOPPED)})")} AS stopped,
                {
        count(
            f"{promotion} AND state = {done} AND EXISTS (SELECT 1 FROM requests b"
            f" WHERE b.rolls_back = ended.id AND b.state = {done})"
        )
    } AS rolled_back,
                {count(f"rolls_back IS NOT NULL AND state = {done}")} AS rollbacks,
                {count("emergency IS NOT NULL")} AS emergencies
            FROM ended GROUP BY target
        )
        SELECT c.target, c.succeeded, c.failed, c.unknown, c.stopped, c.rolled_back,
            c.rollbacks, c.emergencies, p.lead_p50, p.lead_p90, p.wait_p50, p.restore_p50
        FROM counts c LEFT JOIN ranks p ON p.target = c.target
        ORDER BY c.target
    """


def figures_params(
    d: Dialect,
    since: datetime,
    until: datetime,
    pattern: str | None,
    kinds: Sequence[str] | None,
) -> list[Any]:
    params: list[Any] = [d.moment(since), d.moment(until)]
    if pattern:
        params.append(d.pattern(pattern))
    return params + list(kinds or ())


def figures_of(rows: Iterable[Mapping[str, Any]]) -> list[TargetFigures]:
    def seconds(value: Any) -> float | None:
        return None if value is None else float(value)

    return [
        TargetFigures(
            target=str(row["target"]),
            **{
                name: int(row[name] or 0)
                for name in (
                    "succeeded",
                    "failed",
                    "unknown",
                    "stopped",
                    "rolled_back",
                    "rollbacks",
                    "emergencies",
                )
            },
            lead_p50=seconds(row["lead_p50"]),
            lead_p90=seconds(row["lead_p90"]),
            wait_p50=seconds(row["wait_p50"]),
            restore_p50=seconds(row["restore_p50"]),
        )
        for row in rows
    ]


# --- since the database began: Prometheus's counters and histograms ---------------------------

OUTCOMES_SQL = (
    "SELECT target, state, CASE WHEN rolls_back IS NULL THEN 0 ELSE 1 END AS rollback,"
    f" COUNT(*) AS n FROM requests WHERE state IN ({_list(FINAL)})"
    " GROUP BY target, state, CASE WHEN rolls_back IS NULL THEN 0 ELSE 1 END"
)


def durations_sql(d: Dialect, bounds: Sequence[float]) -> str:
    """Per target and measure (1 lead time, 2 approval wait, 3 time to restore): how many,
    their sum, and how many took at most each bound."""
    lead = d.seconds("created_at", "updated_at")
    wait = d.seconds("r.created_at", "MIN(a.at)")
    restore = d.seconds("u.updated_at", "r.updated_at")
    buckets = ", ".join(
        f"SUM(CASE WHEN secs <= {float(b)!r} THEN 1 ELSE 0 END) AS le{i}"
        for i, b in enumerate(bounds)
    )
    return f"""
        WITH measures AS (
            SELECT target, 1 AS m, {lead} AS secs FROM requests
                WHERE state = 'succeeded' AND rolls_back IS NULL
            UNION ALL
            SELECT r.target, 2 AS m, {wait} AS secs FROM requests r
                JOIN approvals a ON a.request_id = r.id
                WHERE r.rolls_back IS NULL GROUP BY r.id, r.target, r.created_at
            UNION ALL
            SELECT r.target, 3 AS m, {restore} AS secs FROM requests r
                JOIN requests u ON u.id = r.rolls_back
                WHERE r.state = 'succeeded' AND u.state = 'succeeded'
        )
        SELECT target, m, COUNT(*) AS n, SUM(secs) AS total{", " + buckets if buckets else ""}
        FROM measures GROUP BY target, m
    """


def totals_of(
    outcomes: Iterable[Mapping[str, Any]],
    durations: Iterable[Mapping[str, Any]],
    bounds: Sequence[float],
) -> DeliveryTotals:
    promotions: dict[tuple[str, str], int] = {}
    rollbacks: dict[str, int] = {}
    for row in outcomes:
        target, state, n = str(row["target"]), str(row["state"]), int(row["n"])
        if int(row["rollback"]):
            if state == "succeeded":
                rollbacks[target] = rollbacks.get(target, 0) + n
        else:
            promotions[(target, state)] = n
    measured: dict[int, dict[str, Durations]] = {1: {}, 2: {}, 3: {}}
    for row in durations:
        measured[int(row["m"])][str(row["target"])] = Durations(
            at_most=tuple(int(row[f"le{i}"] or 0) for i in range(len(bounds))),
            count=int(row["n"]),
            total=float(row["total"] or 0.0),
        )
    return DeliveryTotals(promotions, rollbacks, measured[1], measured[2], measured[3])


def audit_sql(d: Dialect, since: bool, until: bool, pattern: bool) -> str:
    """The audit log, oldest first, within the bounds given."""
    where = []
    if since:
        where.append(f"at >= {d.mark}")
    if until:
        where.append(f"at < {d.mark}")
    if pattern:
        where.append(d.matches.format(column="target"))
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    return f"SELECT id, at, request_id, actor, event, target, detail FROM audit{clause} ORDER BY id"


def audit_params(
    d: Dialect, since: datetime | None, until: datetime | None, pattern: str | None
) -> list[Any]:
    params: list[Any] = [d.moment(at) for at in (since, until) if at is not None]
    return params + ([d.pattern(pattern)] if pattern else [])


def like_pattern(glob: str) -> str:
    """A target pattern (`*` any run of characters, `?` one) as a LIKE pattern escaped by
    backslashes."""
    escaped = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def glob_pattern(glob: str) -> str:
    """A target pattern as SQLite's GLOB reads it: `*` and `?` alike, `[` taken literally."""
    return glob.replace("[", "[[]")
