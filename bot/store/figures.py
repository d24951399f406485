"""The SQL of what the requests add up to (`/promote stats`, the metrics), written once for both
databases: each store supplies its `Dialect` (placeholders, how to tell seconds between two
moments, an action's kind, a target pattern) and runs the statements on a connection of its own.

Everything is counted by the database, from `requests` and `approvals`: a request's state is
the state machine's truth, its `updated_at` the moment it reached that state (a request that
ended is never changed again), its `rolls_back` whether it is a rollback. Event names in the
audit log are prose that grows with each feature; states and kinds don't need editing when a
new kind of request (a TestFlight step, a webhook's late success) arrives.

Percentiles are by nearest rank, the same on both databases: p50 is the ⌈n/2⌉-th smallest
value, p90 the ⌈9n/10⌉-th, so each is a duration that really happened. `AS MATERIALIZED` (SQLite
3.35, PostgreSQL 12: what the stores need anyway) keeps each duration computed once per row,
not once per place a statement names it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, ClassVar

from bot.core.drift import MOVED
from bot.core.figures import DeliveryTotals, Durations, TargetFigures
from bot.core.model import AuditEntry, State
from bot.core.truth import OUTSIDE

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
    # After `requests b`, to look a rollback up by the request it undoes: SQLite's ANALYZE sees
    # `rolls_back`, NULL on nearly every row, as a key matching them all, and would read every
    # succeeded request for each one that ended instead (a minute for the App Home's week).
    by_rolls_back: str = ""


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
    percentiles of lead time, approval wait and time to restore: one pass over them (each
    measured once, a NULL where it does not apply), one window per measure."""
    ended, _ = _ended(d, pattern, kinds)
    done = "'succeeded'"
    first = "(SELECT MIN(a.at) FROM approvals a WHERE a.request_id = e.id)"
    undone = f"(SELECT u.updated_at FROM requests u WHERE u.id = e.rolls_back AND u.state = {done})"
    promotion = "rolls_back IS NULL"

    def count(condition: str) -> str:
        return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"

    def rank(measure: str) -> str:
        return (
            f"ROW_NUMBER() OVER (PARTITION BY target, {measure} IS NULL ORDER BY {measure})"
            f" AS k_{measure}, COUNT({measure}) OVER (PARTITION BY target) AS n_{measure}"
        )

    def nearest(measure: str, tenths: int) -> str:
        """The ⌈tenths/10 · n⌉-th smallest: (tenths · n + 9) / 10 in whole numbers."""
        return f"MAX(CASE WHEN k_{measure} = ({tenths} * n_{measure} + 9) / 10 THEN {measure} END)"

    return f"""
        WITH ended AS MATERIALIZED ({ended}),
        measured AS (
            SELECT e.target, e.state, e.rolls_back, e.emergency,
                CASE WHEN e.state = {done} AND e.rolls_back IS NULL
                    THEN {d.seconds("e.created_at", "e.ended_at")} END AS lead,
                CASE WHEN e.rolls_back IS NULL
                    THEN {d.seconds("e.created_at", first)} END AS wait,
                CASE WHEN e.state = {done} AND e.rolls_back IS NOT NULL
                    THEN {d.seconds(undone, "e.ended_at")} END AS restore,
                CASE WHEN e.state = {done} AND e.rolls_back IS NULL AND EXISTS (
                    SELECT 1 FROM requests b{d.by_rolls_back}
                    WHERE b.rolls_back = e.id AND b.state = {done}
                ) THEN 1 ELSE 0 END AS undone
            FROM ended e
        ),
        ranked AS (SELECT *, {rank("lead")}, {rank("wait")}, {rank("restore")} FROM measured)
        SELECT target,
            {count(f"{promotion} AND state = {done}")} AS succeeded,
            {count(f"{promotion} AND state = 'failed'")} AS failed,
            {count(f"{promotion} AND state = 'unknown'")} AS unknown,
            {count(f"{promotion} AND state IN ({_list(STOPPED)})")} AS stopped,
            SUM(undone) AS rolled_back,
            {count(f"rolls_back IS NOT NULL AND state = {done}")} AS rollbacks,
            {count("emergency IS NOT NULL")} AS emergencies,
            {nearest("lead", 5)} AS lead_p50,
            {nearest("lead", 9)} AS lead_p90,
            {nearest("wait", 5)} AS wait_p50,
            {nearest("restore", 5)} AS restore_p50
        FROM ranked GROUP BY target ORDER BY target
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


# --- what the audit log alone records (issue 26): changes outside the bot, previews that moved --

AUDITED = (OUTSIDE, MOVED)


def _audited(where: Sequence[str], requests: bool) -> str:
    """Per event of AUDITED and target, of the entries that match `where`: how many, and of
    how many requests; `requests`: `r` is each entry's request, if any. Grouped by event
    first, so the audit_event index serves it (entries without a target are left out by the
    reader, so that no condition on `target` draws the planner to another index)."""
    return (
        "SELECT a.event, a.target, COUNT(*) AS n, COUNT(DISTINCT a.request_id) AS requests"
        " FROM audit a"
        + (" LEFT JOIN requests r ON r.id = a.request_id" if requests else "")
        + f" WHERE a.event IN ({_list(AUDITED)})"  # our own constants, never people's text
        + "".join(f" AND {w}" for w in where)
        + " GROUP BY a.event, a.target"
    )


def audited_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per target: its changes outside the bot (`outside`, each entry) and its requests whose
    preview moved (`drifted`, each request once)."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        if row["target"] is None:
            continue
        counts = out.setdefault(str(row["target"]), {"outside": 0, "drifted": 0})
        if row["event"] == OUTSIDE:
            counts["outside"] = int(row["n"])
        else:
            counts["drifted"] = int(row["requests"])
    return out


def audited_sql(d: Dialect, *, pattern: bool, kinds: int, providers: int) -> str:
    """In the window (and matching the pattern); when `kinds` are given, only the requests of
    those kinds, and only the changes outside the bot at targets of `providers`."""
    where = [f"a.at >= {d.mark}", f"a.at < {d.mark}"]
    if pattern:
        where.append(d.matches.format(column="a.target"))
    if kinds:
        at = " OR ".join([d.matches.format(column="a.target")] * providers) or "1 = 0"
        where.append(
            f"((a.request_id IS NOT NULL AND {d.kind} IN ({', '.join([d.mark] * kinds)}))"
            f" OR (a.request_id IS NULL AND ({at})))"
        )
    return _audited(where, requests=bool(kinds))


def audited_params(
    d: Dialect,
    since: datetime,
    until: datetime,
    pattern: str | None,
    kinds: Sequence[str] | None,
    providers: Sequence[str],
) -> list[Any]:
    params: list[Any] = [d.moment(since), d.moment(until)]
    if pattern:
        params.append(d.pattern(pattern))
    if kinds:
        params += [*kinds, *(d.pattern(f"{p}:*") for p in providers)]
    return params


def with_audited(
    figures: Sequence[TargetFigures], rows: Iterable[Mapping[str, Any]]
) -> list[TargetFigures]:
    """Each target's figures with its audited counts; a target with only those is listed too."""
    by_target = {f.target: f for f in figures}
    for target, counts in audited_counts(rows).items():
        had = by_target.get(target)
        by_target[target] = (
            replace(had, **counts) if had else TargetFigures(target=target, **counts)
        )
    return [by_target[t] for t in sorted(by_target)]


# --- since the database began: Prometheus's counters and histograms ---------------------------

OUTCOMES_SQL = (
    "SELECT target, state, CASE WHEN rolls_back IS NULL THEN 0 ELSE 1 END AS rollback,"
    f" COUNT(*) AS n FROM requests WHERE state IN ({_list(FINAL)})"
    " GROUP BY target, state, CASE WHEN rolls_back IS NULL THEN 0 ELSE 1 END"
)


AUDITED_SQL = _audited((), requests=False)


def durations_sql(d: Dialect, bounds: Sequence[float]) -> str:
    """Per target and measure (1 lead time, 2 approval wait, 3 time to restore): how many,
    their sum, and how many took at most each bound."""
    lead = d.seconds("created_at", "updated_at")
    wait = d.seconds("r.created_at", "f.first")
    restore = d.seconds("u.updated_at", "r.updated_at")
    buckets = ", ".join(
        f"SUM(CASE WHEN secs <= {float(b)!r} THEN 1 ELSE 0 END) AS le{i}"
        for i, b in enumerate(bounds)
    )
    return f"""
        WITH measures AS MATERIALIZED (
            SELECT target, 1 AS m, {lead} AS secs FROM requests
                WHERE state = 'succeeded' AND rolls_back IS NULL
            UNION ALL
            SELECT r.target, 2 AS m, {wait} AS secs
                FROM (SELECT request_id, MIN(at) AS first FROM approvals GROUP BY request_id) f
                JOIN requests r ON r.id = f.request_id WHERE r.rolls_back IS NULL
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
    audited: Iterable[Mapping[str, Any]] = (),
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
    counted = audited_counts(audited)
    outside = {t: c["outside"] for t, c in counted.items() if c["outside"]}
    drifted = {t: c["drifted"] for t, c in counted.items() if c["drifted"]}
    return DeliveryTotals(
        promotions, rollbacks, measured[1], measured[2], measured[3], outside, drifted
    )


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


class FiguresReader:
    """The figures on top of a reader's one query method (`_rows`) and its `dialect`."""

    dialect: ClassVar[Dialect]

    def _rows(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def target_figures(
        self,
        since: datetime,
        until: datetime,
        *,
        pattern: str | None = None,
        kinds: Sequence[str] | None = None,
        providers: Sequence[str] = (),
    ) -> list[TargetFigures]:
        if kinds is not None and not kinds:
            return []  # no kind of action at all: nothing to see
        d = self.dialect
        some, many = bool(pattern), len(kinds or ())
        sql = figures_sql(d, pattern=some, kinds=many)
        ended = figures_of(self._rows(sql, figures_params(d, since, until, pattern, kinds)))
        sql = audited_sql(d, pattern=some, kinds=many, providers=len(providers))
        params = audited_params(d, since, until, pattern, kinds, providers)
        return with_audited(ended, self._rows(sql, params))

    def delivery_totals(self, bounds: Sequence[float]) -> DeliveryTotals:
        outcomes = self._rows(OUTCOMES_SQL, [])
        durations = self._rows(durations_sql(self.dialect, bounds), [])
        return totals_of(outcomes, durations, bounds, self._rows(AUDITED_SQL, []))


class LongReads:
    """A store's long reads, handed to its reader (`self.reader`), which runs them on a
    connection of its own."""

    reader: Any

    def target_figures(
        self,
        since: datetime,
        until: datetime,
        *,
        pattern: str | None = None,
        kinds: Sequence[str] | None = None,
        providers: Sequence[str] = (),
    ) -> list[TargetFigures]:
        return self.reader.target_figures(
            since, until, pattern=pattern, kinds=kinds, providers=providers
        )

    def delivery_totals(self, bounds: Sequence[float]) -> DeliveryTotals:
        return self.reader.delivery_totals(bounds)

    def audit_entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        pattern: str | None = None,
    ) -> Iterator[AuditEntry]:
        return self.reader.audit_entries(since, until, pattern)
