"""The SQL of what the requests add up to (`/promote stats`, the metrics), written once for both
databases: each store supplies its `Dialect` (placeholders, how to tell seconds between two
moments, an action's kind, a target pattern) and runs the statements on a connection of its own.

Everything is read from `requests` and `approvals`: a request's state is the state machine's
truth, its `updated_at` the moment it reached that state (a request that ended is never changed
again), its `rolls_back` whether it is a rollback. Event names in the audit log are prose that
grows with each feature; states and kinds don't need editing when a new kind of request (a
TestFlight step, a webhook's late success) arrives. A window's figures are measured by the
database, one row per request, and added up by bot/store/tally.py; the totals since the
database began (the metrics) are counted by the database.

Percentiles are by nearest rank (bot/store/tally.py). `AS MATERIALIZED` (SQLite 3.35,
PostgreSQL 12: what the stores need anyway) keeps each duration of the totals computed once per
row, not once per place a statement names it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar

from bot.core.drift import MOVED
from bot.core.figures import DeliveryTotals, Durations, TargetFigures
from bot.core.model import AuditEntry, State
from bot.core.truth import OUTSIDE
from bot.store.tally import Tally

FINAL = tuple(s.value for s in State if s.is_final)
RAN = ("succeeded", "failed", "unknown")  # the provider was called: a promotion that ran


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
    """One row per request that ended in the window: its target, state, whether it is a
    rollback or an emergency, whether a rollback undid it since, and its lead time, approval
    wait and time to restore (NULL where a measure does not apply). `Tally` adds them up:
    a window's requests are a week's or a month's, and on a year of history that costs less
    than the database's window functions did (7 days: 33 ms against 48 on SQLite)."""
    ended, _ = _ended(d, pattern, kinds)
    done = "'succeeded'"
    first = "(SELECT MIN(a.at) FROM approvals a WHERE a.request_id = e.id)"
    undone = f"(SELECT u.updated_at FROM requests u WHERE u.id = e.rolls_back AND u.state = {done})"
    return f"""
        SELECT e.id, e.ended_at, e.rolls_back AS undoes, e.target, e.state,
            CASE WHEN e.rolls_back IS NULL THEN 0 ELSE 1 END AS rollback,
            CASE WHEN e.emergency IS NULL THEN 0 ELSE 1 END AS emergency,
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
        FROM ({ended}) e
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


# What tells that a window's figures may have changed: the newest audit entry (every decision,
# approval and ending is audited) and the newest change to a request (its ending's moment).
CHANGED_SQL = (
    "SELECT (SELECT MAX(id) FROM audit) AS audited, (SELECT MAX(updated_at) FROM requests)"
    " AS changed"
)
# Requests that ended this long before the last count are read again with each change (an
# ending committed a moment after its own time, another replica's clock), and every window is
# counted whole again this often, whatever the marks say.
MARGIN = timedelta(minutes=5)
RECOUNT_SECONDS = 600.0
# A window of more requests than this keeps only its figures (handed out while nothing
# changed), not its rows: a year's `/promote stats` would hold every request of it in memory.
ROWS_KEPT = 5_000


@dataclass(frozen=True)
class _Counted:
    """The last count of a window: its requests' rows (by request id), what it was counted
    over, the marks then, when it was last counted whole, what it added up to, and the tally
    of its rows that brings that up to date."""

    rows: dict[int, dict[str, Any]] | None  # None: too many to keep (ROWS_KEPT)
    since: datetime
    until: datetime
    mark: tuple[Any, ...]
    whole_at: float  # time.monotonic() of the last whole count
    figures: list[TargetFigures]
    tally: Tally | None = None  # None with the rows


class FiguresCache:
    """The last count of each kind of window (its days, pattern, kinds, providers), brought up to
    date with what ended since instead of counted again: the App Home of everyone with the
    same scopes shows the same week, and a year of history makes a whole count of it cost tens
    of milliseconds, where the requests that ended since the last one are a few. The marks
    (`CHANGED_SQL`) tell whether anything changed; so does a request changed at or after the
    end of the last count. Safe to use from several threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, size: int = 16) -> None:
        self.clock = clock
        self._size = size
        self._lock = threading.Lock()
        self._counted: dict[tuple[Any, ...], _Counted] = {}
        self._counting: dict[tuple[Any, ...], threading.Lock] = {}

    def counting(self, key: tuple[Any, ...]) -> threading.Lock:
        """Held while a window is counted: asks that come meanwhile (a team opening the App
        Home at once, each in a worker thread) wait for that count instead of each making
        their own."""
        with self._lock:
            lock = self._counting.get(key)
            if lock is None:
                if len(self._counting) >= self._size:  # forget those no one holds
                    for known in [k for k, held in self._counting.items() if not held.locked()]:
                        del self._counting[known]
                lock = self._counting[key] = threading.Lock()
            return lock

    def get(self, key: tuple[Any, ...], since: datetime, until: datetime) -> _Counted | None:
        """The last count of `key`'s window if it can be brought to [since, until): not older
        than RECOUNT_SECONDS, and neither end earlier than it was."""
        with self._lock:
            had = self._counted.get(key)
        if had is None or since < had.since or until < had.until:
            return None
        if self.clock() - had.whole_at > RECOUNT_SECONDS:
            return None
        return had

    def put(self, key: tuple[Any, ...], counted: _Counted) -> None:
        with self._lock:
            self._counted.pop(key, None)
            while len(self._counted) >= self._size:
                self._counted.pop(next(iter(self._counted)))  # the oldest
            self._counted[key] = counted

    def clear(self) -> None:
        with self._lock:
            self._counted.clear()


def brought_up(
    rows: dict[int, dict[str, Any]], tally: Tally, ended: Iterable[dict[str, Any]]
) -> None:
    """Into `rows` (by request id) and their `tally`: the rows of requests that ended since,
    each replacing the request's row if any (a late success); a rollback that succeeded marks
    the promotion it undid, as `figures_sql` does."""
    ended = list(ended)
    for row in ended:
        _put(rows, tally, row)
    for row in ended:
        undone = rows.get(row["undoes"]) if row["state"] == "succeeded" else None
        if undone is not None and undone["state"] == "succeeded" and not undone["rollback"]:
            _put(rows, tally, {**undone, "undone": 1})


def _put(rows: dict[int, dict[str, Any]], tally: Tally, row: dict[str, Any]) -> None:
    key = int(row["id"])
    old = rows.get(key)
    if old is not None:
        tally.remove(old)
    rows[key] = row
    tally.add(row)


class FiguresReader:
    """The figures on top of a reader's one query method (`_rows`) and its `dialect`."""

    dialect: ClassVar[Dialect]
    counted: FiguresCache

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
        """What the requests that ended in [since, until) add up to, per target. A window
        counted before is brought up to date from what ended since (and MARGIN before), and
        handed out as it was while nothing changed."""
        if kinds is not None and not kinds:
            return []  # no kind of action at all: nothing to see
        d = self.dialect
        wanted = None if kinds is None else tuple(kinds)
        key = ((until - since).days, pattern, wanted, tuple(providers))
        with self.counted.counting(key):
            asked_at = self.counted.clock()
            [row] = self._rows(CHANGED_SQL, [])  # read first: a change after it counts again
            mark = (row["audited"], row["changed"])
            had = self.counted.get(key, since, until)
            # Something changed since the last count: the marks moved, or a request changed at
            # or after its end (ended a moment after it was taken, or by a clock ahead).
            changed = had is not None and (
                had.mark != mark or (mark[1] is not None and mark[1] >= d.moment(had.until))
            )
            if had is not None and not changed and had.since == since:
                return list(had.figures)  # nothing ended or was recorded since
            if had is None or had.rows is None or had.tally is None:
                rows = {int(r["id"]): r for r in self._ended(since, until, pattern, wanted)}
                tally = Tally.of(rows.values())
                whole_at = asked_at
            else:
                ended = []
                if changed:
                    ended = self._ended(max(since, had.until - MARGIN), until, pattern, wanted)
                # copies: the count kept stays whole if anything below fails
                rows, tally = dict(had.rows), had.tally.copy()
                brought_up(rows, tally, ended)
                if since != had.since:  # the window moved on: what ended before it goes
                    start = d.moment(since)
                    for gone in [i for i, r in rows.items() if r["ended_at"] < start]:
                        tally.remove(rows.pop(gone))
                whole_at = had.whole_at
            sql = audited_sql(
                d, pattern=bool(pattern), kinds=len(kinds or ()), providers=len(providers)
            )
            params = audited_params(d, since, until, pattern, kinds, providers)
            figures = with_audited(tally.figures(), self._rows(sql, params))
            kept = len(rows) <= ROWS_KEPT
            self.counted.put(
                key,
                _Counted(
                    rows if kept else None,
                    since,
                    until,
                    mark,
                    whole_at,
                    figures,
                    tally if kept else None,
                ),
            )
            return list(figures)

    def _ended(
        self, since: datetime, until: datetime, pattern: str | None, kinds: Sequence[str] | None
    ) -> list[dict[str, Any]]:
        d = self.dialect
        sql = figures_sql(d, pattern=bool(pattern), kinds=len(kinds or ()))
        return self._rows(sql, figures_params(d, since, until, pattern, kinds))

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
