"""A year of history, made quickly: `python -m bench.grow DB [REQUESTS] [AUDIT] [PROJECTS]`.

DB is a SQLite path or a PostgreSQL URI. The schema is the store's own (its migrations run as at
start-up), and so are a few template requests, one per way a request ends, written through the
store's methods with what a Znyx promotion really records (action, preview, outcome, approvals,
audit entries, direct messages); bulk SQL then copies them into REQUESTS ended requests (each its
own number, target, time and message) and AUDIT audit entries over the year before now. The
history is of PROJECTS Znyx projects of the benchmark config (b0 …, their staging and prod: the
targets a team has) and a tenth of it of one hot one (`guardrails`), as a team has one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.core.model import AuditEntry, Fact, NewRequest, Outcome, Preview, State
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore, is_postgres, open_any

YEAR = timedelta(days=365)
PROJECTS = 30  # the projects with a history: b0 … b29 of the benchmark config, and guardrails
HOT = "guardrails"  # a tenth of the history is this project's (its prod, mostly)
ENDINGS = (  # how the seeded requests ended, in this proportion
    (State.SUCCEEDED, 70),
    (State.REJECTED, 8),
    (State.EXPIRED, 8),
    (State.CANCELLED, 7),
    (State.FAILED, 5),
    (State.UNKNOWN, 2),
)
EVENTS = {  # the audit entries of a request that ended so (the rest of AUDIT: other events)
    State.SUCCEEDED: ("requested", "approved", "executing", "succeeded"),
    State.REJECTED: ("requested", "rejected"),
    State.EXPIRED: ("requested", "expired"),
    State.CANCELLED: ("requested", "cancelled"),
    State.FAILED: ("requested", "approved", "executing", "failed"),
    State.UNKNOWN: ("requested", "approved", "executing", "unknown"),
}


def _templates(store: AnyStore, now: datetime) -> list[int]:
    """One ended request per way of ending, through the store's own methods; their ids."""
    ids = []
    for n, (state, _) in enumerate(ENDINGS):
        action = ZnyxPromote(
            org_id="org-sandbox", project=HOT, project_id=f"proj-{HOT}", source_env="staging"
        )
        preview = Preview(
            facts=[
                Fact(label="Now in prod", value="v41 · sha256:" + "0" * 12 + "… (published by ci)"),
                Fact(
                    label="Becomes active in prod", value="staging v17 · sha256:" + "5" * 12 + "…"
                ),
                Fact(label="Published", value="2026-11-20 14:02 UTC by slack:U_CAROL"),
            ],
            expect={
                "destination_id": "bnd_prod_41",
                "destination_version": "41",
                "destination": "v41 · sha256:" + "0" * 64,
                "source_hash": "sha256:" + "5" * 64,
            },
        )
        request = store.create_request(
            NewRequest(
                action,
                requester="U_ALICE",
                channel="CRELEASES",
                preview=preview,
                created_at=now,
                expires_at=now + timedelta(hours=24),
                notices=(("U_BOB", "waiting"),),
            )
        )
        store.set_message(request.id, f"{int(now.timestamp())}.{n:06d}", shown=1)
        if state in (State.SUCCEEDED, State.FAILED, State.UNKNOWN):
            store.add_approval(request.id, "U_BOB", now, comment="looks right")
            store.transition(request.id, [State.PENDING], State.APPROVED, at=now)
            store.transition(
                request.id, [State.APPROVED], State.EXECUTING, at=now, lease=("bench", now)
            )
        outcome = None
        if state is State.SUCCEEDED:
            outcome = Outcome(
                state="succeeded",
                headline=f"{HOT} bundle v42 is active in prod",
                facts=[
                    Fact(label="Active in prod", value="v42 · sha256:" + "5" * 12 + "…"),
                    Fact(label="Replaced", value="v41 · sha256:" + "0" * 12 + "…"),
                ],
                before={"env": "prod", "version": "41", "shown": "v41"},
                installed={"env": "prod", "version": "42", "shown": "v42"},
            )
        elif state in (State.FAILED, State.UNKNOWN):
            outcome = Outcome(
                state=state.value,  # type: ignore[arg-type]
                headline="Znyx answered 500: internal error",
                check="Check in znyx whether the promotion happened before asking again.",
            )
        store.transition(
            request.id,
            [State.PENDING, State.APPROVED, State.EXECUTING],
            state,
            at=now,
            by="U_BOB" if state in (State.REJECTED, State.CANCELLED) else None,
            outcome=outcome,
            reason="not this week" if state is State.REJECTED else None,
            notices=(("U_ALICE", state.value),),
        )
        current = store.get(request.id)
        assert current is not None
        store.message_shown(request.id, current.msg_version, thread=True)
        for event in EVENTS[state]:
            store.audit(
                AuditEntry(
                    at=now,
                    request_id=request.id,
                    actor="U_BOB" if event in ("approved", "rejected") else "U_ALICE",
                    event=event,
                    target=action.target,
                    detail=action.title if event == "requested" else "",
                )
            )
        ids.append(request.id)
    return ids


def grow(
    where: str | Path,
    requests: int = 100_000,
    audit: int = 1_000_000,
    projects: int = PROJECTS,
) -> float:
    """Fill the database `where` names (empty, or new) with a year of ended requests and audit
    entries of `projects` projects (and the hot one); the seconds it took."""
    started = time.perf_counter()
    now = datetime.now(UTC)
    store = open_any(where)
    try:
        templates = _templates(store, now - YEAR - timedelta(days=1))
        if not is_postgres(str(where)):
            _grow_sqlite(store, templates, requests, audit, now, projects)
    finally:
        store.close()
    if is_postgres(str(where)):
        _grow_postgres(str(where), templates, requests, audit, now, projects)
    return time.perf_counter() - started


class Dialect:
    """What differs between SQLite's SQL and PostgreSQL's, for the statements below."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.mark = "%s" if postgres else "?"

    def time(self, seconds: str) -> str:
        """A Unix time as the store keeps times (timestamptz; ISO 8601 text in UTC)."""
        if self.postgres:
            return f"to_timestamp({seconds})"
        return f"strftime('%Y-%m-%dT%H:%M:%f+00:00', {seconds}, 'unixepoch')"

    def action(self, alias: str, project_id: str, env: str) -> str:
        """The template's action JSON, for another project and source environment."""
        if self.postgres:
            return (
                "jsonb_set(jsonb_set(jsonb_set(t.action::jsonb, '{project}', to_jsonb("
                f"{alias})), '{{project_id}}', to_jsonb({project_id})), '{{source_env}}',"
                f" to_jsonb({env}))::text"
            )
        return (
            f"json_set(t.action, '$.project', {alias}, '$.project_id', {project_id},"
            f" '$.source_env', {env})"
        )

    def mod(self, value: str, by: int) -> str:
        """`value % by` (psycopg reads `%` as a placeholder's start)."""
        return f"mod({value}, {by})" if self.postgres else f"({value} % {by})"

    def message_ts(self, seconds: str) -> str:
        if self.postgres:
            return f"({seconds})::bigint || '.' || lpad({self.mod('s.n', 1000000)}::text, 6, '0')"
        return f"printf('%d.%06d', {seconds}, s.n % 1000000)"

    def series(self, last: str) -> str:
        """`s(n)`, 0 … last (a parameter)."""
        if self.postgres:
            return f"generate_series(0, {last}::bigint) AS s(n)"
        return (
            f"(WITH RECURSIVE q(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM q WHERE n < {last})"
            " SELECT n FROM q) AS s"
        )


def _bulk(
    run: Callable[[str, list[Any]], Any],
    sql: Dialect,
    templates: list[int],
    requests: int,
    audit: int,
    now: datetime,
    projects: int,
) -> None:
    """The bulk copies, by `run(statement, params)` in one transaction."""
    m = sql.mark
    start = (now - YEAR).timestamp()
    step = YEAR.total_seconds() / max(requests, 1)
    n = "s.n"
    alias = f"(CASE WHEN {sql.mod(n, 10)} = 0 THEN '{HOT}' ELSE 'b' || {sql.mod(n, projects)} END)"
    project_id = f"('proj-' || {alias})"
    env = f"(CASE WHEN {sql.mod(n, 4)} = 0 THEN 'dev' ELSE 'staging' END)"
    target_env = f"(CASE WHEN {sql.mod(n, 4)} = 0 THEN 'staging' ELSE 'prod' END)"
    seconds = f"({start} + s.n * {step})"
    at = sql.time(seconds)
    # Seeded row n ends as the ending whose share of n % 100 holds it: spread over the year.
    which, low = [], 0
    for template, (_, share) in zip(templates, ENDINGS, strict=True):
        which.append(f"WHEN {sql.mod(n, 100)} < {low + share} THEN {template}")
        low += share
    run(
        "INSERT INTO requests (target, thing, action, requester, channel, message_ts, state,"
        " preview, outcome, decided_by, reason, created_at, updated_at, expires_at,"
        " msg_version, msg_shown, thread_posted)"
        f" SELECT 'znyx:' || {alias} || ':' || {target_env},"
        f" 'znyx:' || {project_id} || ':' || {target_env}, {sql.action(alias, project_id, env)},"
        f" CASE WHEN {sql.mod(n, 3)} = 0 THEN 'U_BOB' ELSE 'U_ALICE' END, t.channel,"
        f" {sql.message_ts(seconds)}, t.state, t.preview, t.outcome, t.decided_by, t.reason,"
        f" {at}, {at}, {at}, t.msg_version, t.msg_shown, t.thread_posted"
        f" FROM {sql.series(m)} JOIN requests t ON t.id = CASE {' '.join(which)} END"
        " ORDER BY s.n",
        [requests - 1],
    )
    first = max(templates) + 1
    # Acknowledged work kept for Slack's redeliveries, done in the last half hour: as many as a
    # long retention keeps (a twentieth of the requests).
    recent = sql.time(f"({now.timestamp()} - 1800 + s.n * {1800 / max(requests // 20, 1)})")
    run(
        "INSERT INTO inbox (key, kind, payload, received_at, attempts, owner, lease_until,"
        " done_at)"
        f' SELECT \'seeded.\' || s.n, \'command\', \'{{"user": "U_ALICE", "text": "help"}}\','
        f" {recent}, 1, 'seeded', {recent}, {recent} FROM {sql.series(m)}",
        [max(requests // 20, 1) - 1],
    )
    run(
        'INSERT INTO approvals (request_id, "user", at, comment)'
        " SELECT r.id, 'U_BOB', r.created_at, 'looks right' FROM requests r"
        f" WHERE r.id >= {m} AND r.state IN ('succeeded', 'failed', 'unknown')",
        [first],
    )
    run(
        'INSERT INTO notices (key, request_id, "user", event, created_at, state, done_at)'
        " SELECT r.id || ':U_ALICE:' || r.state, r.id, 'U_ALICE', r.state, r.created_at,"
        f" 1, r.updated_at FROM requests r WHERE r.id >= {m}",
        [first],
    )
    # The audit log in time order: each request's own events, and others (refusals while a
    # lock held) in between, up to AUDIT entries.
    events = " UNION ALL ".join(
        f"SELECT '{state.value}' AS state, {k} AS k, '{event}' AS event"
        for state, names in EVENTS.items()
        for k, event in enumerate(names)
    )
    own = sum(requests * share // 100 * len(EVENTS[state]) for state, share in ENDINGS)  # about
    rest = max(0, audit - own)
    rest_at = sql.time(f"({start} + s.n * {YEAR.total_seconds() / max(rest, 1)})")
    run(
        "INSERT INTO audit (at, request_id, actor, event, target, detail)"
        " SELECT at, request_id, actor, event, target, detail FROM ("
        " SELECT r.created_at AS at, r.id AS request_id,"
        " CASE WHEN e.event IN ('approved', 'rejected') THEN 'U_BOB' ELSE r.requester END"
        " AS actor, e.event AS event, r.target AS target, '' AS detail, e.k AS k"
        f" FROM requests r JOIN ({events}) e ON e.state = r.state WHERE r.id >= {m}"
        " UNION ALL"
        f" SELECT {rest_at}, NULL, 'U_CAROL',"
        f" CASE WHEN {sql.mod(n, 2)} = 0 THEN 'refused' ELSE 'approval refused' END,"
        f" 'znyx:' || {alias} || ':prod', 'znyx:*:prod is locked by U_ALICE: incident', 0"
        f" FROM {sql.series(m)}) AS x ORDER BY at, request_id, k",
        [first, rest - 1],
    )


def _grow_sqlite(
    store: AnyStore, templates: list[int], requests: int, audit: int, now: datetime, projects: int
) -> None:
    conn = store.db.conn  # type: ignore[union-attr]
    conn.execute("PRAGMA synchronous = OFF")
    with conn:
        _bulk(conn.execute, Dialect(postgres=False), templates, requests, audit, now, projects)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("ANALYZE")
    # At rest, as a year-old database is: the write-ahead log folded into the file.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _grow_postgres(
    url: str, templates: list[int], requests: int, audit: int, now: datetime, projects: int
) -> None:
    """On a connection of its own: the store's bounds every statement by 2 s."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL synchronous_commit = off")
            _bulk(conn.execute, Dialect(postgres=True), templates, requests, audit, now, projects)
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")  # at rest: no bulk of dirty pages left for the bot to wait on


if __name__ == "__main__":
    target = sys.argv[1]
    counts = [int(a) for a in sys.argv[2:5]]
    took = grow(target if is_postgres(target) else Path(target), *counts)
    print(f"grown in {took:.1f} s")
