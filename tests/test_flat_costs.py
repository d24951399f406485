"""Flat costs as history grows: what people wait for, and what the timed jobs do every few
seconds, costs the same after a year of use as on the first day.

Both stores, on databases filled by the growth benchmark's own seeding (bench/grow.py: ended
requests, their approvals, direct messages and audit entries, by bulk SQL), with the planner's
statistics gathered (ANALYZE, as `PRAGMA optimize` or autovacuum would): every statement of a
promotion, of `status`, `history`, `pending`, `locks`, the App Home, the ack's insert, start-up
and the jobs is read through EXPLAIN (no whole table read), and on SQLite the work each does
(virtual machine steps) is counted on a database ten times larger and must stay the same.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest

from bench.grow import grow
from bot.cli import scheduler_for
from bot.core.model import AuditEntry, Fact, NewRequest, Outcome, Preview, State
from bot.core.retention import BETWEEN_BATCHES
from bot.core.scheduler import RunAgainIn
from bot.core.workflow import utc_now
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore, SqliteStore
from bot.store.postgres import PostgresStore
from tests.conftest import ALICE, BOB, World, fresh_postgres_database

SMALL = (1_000, 10_000)  # ended requests, audit entries
LARGE = (10_000, 100_000)
BIG_TABLES = ("requests", "audit", "notices", "approvals", "inbox", "steps")


def _day(store: AnyStore, now: datetime) -> dict[str, Callable[[], object]]:
    """Everything a day of use asks the store, in order, by what a person or a job is doing:
    a promotion from the command's ack to its outcome, the answers people wait for, and what
    the timed jobs (and start-up's first run of them) look for."""
    action = ZnyxPromote(org_id="o", project="b1", project_id="proj-b1", source_env="dev")
    made: dict[str, int] = {}

    def request() -> object:
        new = NewRequest(
            action,
            requester="U_ALICE",
            channel="CRELEASES",
            preview=Preview(facts=[Fact(label="Now in staging", value="v3")], expect={"a": "b"}),
            created_at=now,
            expires_at=now + timedelta(hours=24),
            notices=(("U_BOB", "waiting"),),
        )
        made["id"] = store.create_request(new).id
        store.audit(AuditEntry(at=now, request_id=made["id"], actor="U_ALICE", event="requested"))
        return store.set_message(made["id"], "1.000001", shown=1)

    def approve() -> object:
        store.add_approval(made["id"], "U_BOB", now, notices=(("U_ALICE", "approved:U_BOB"),))
        return store.get(made["id"])

    def execute() -> object:
        lease = ("me", now + timedelta(seconds=30))
        store.transition(made["id"], [State.PENDING], State.EXECUTING, at=now, lease=lease)
        store.renew(made["id"], "me", now + timedelta(seconds=40))
        store.step_sent(made["id"], "promote", now)
        store.step_done(made["id"], "promote", {"version": 4}, now)
        outcome = Outcome(state="succeeded", headline="b1 bundle v4 is active in staging")
        return store.transition(
            made["id"], [State.EXECUTING], State.SUCCEEDED, at=now, outcome=outcome
        )

    def show() -> object:
        request = store.get(made["id"])
        assert request is not None
        store.claim_thread(made["id"], now, now + timedelta(minutes=5))
        return store.message_shown(made["id"], request.msg_version, thread=True)

    def home() -> object:
        return (
            store.in_states([State.PENDING]),
            store.locks(),
            store.history(limit=10),
            store.notify_enabled("U_BOB"),
        )

    def notices() -> object:
        for notice in store.notices_due(now, 20):
            store.claim_notice(notice.key, now, now + timedelta(minutes=2))
            store.notice_sent(notice.key, now)
        return None

    return {
        "a command's ack": lambda: store.inbox_put("trigger.1", "command", {"user": "U"}, now),
        "the work after it": lambda: store.inbox_claim("trigger.1", "me", now, now),
        "one open request per thing": lambda: store.open_for(action.thing),
        "a new request": request,
        "an approval": approve,
        "an execution": execute,
        "its message and thread": show,
        "the work done": lambda: store.inbox_done("trigger.1", now),
        "status of an old request": lambda: (store.get(7), store.history(request_id=7, limit=100)),
        "status of the new one": lambda: store.history(request_id=made["id"], limit=100),
        "history": lambda: store.history(limit=20),
        "history of the hot target": lambda: store.history("znyx:guardrails:prod"),
        "history of a quiet target": lambda: store.history("znyx:b1:staging"),
        "history of a pattern": lambda: store.history("znyx:*:prod"),
        "history of a pattern, a new target's entries newest": lambda: (
            store.audit(
                AuditEntry(at=now, request_id=None, actor="U", event="x", target="znyx:new:prod")
            ),
            store.history("znyx:*:prod"),
            store.history("znyx:new:prod"),
        ),
        "history of a provider": lambda: store.history("znyx:*"),
        "history of an unknown pattern": lambda: store.history("whop:*"),
        "pending": lambda: store.in_states([State.PENDING, State.APPROVED]),
        "locks": store.locks,
        "the App Home": home,
        "deliver: messages that lag": lambda: store.messages_due(now),
        "deliver: direct messages owed": notices,
        "expire": lambda: store.in_states([State.PENDING, State.APPROVED], expired_by=now),
        "recover": lambda: store.lapsed(now, unleased_before=now),
        "inbox: work a stopped process left": lambda: store.inbox_waiting(now, received_before=now),
        "retention": lambda: store.forget_done(now - timedelta(hours=1), 500),
        "drift: previews due a read": lambda: store.drift_due(now, 60),
        "drift: a read scheduled": lambda: store.drift_schedule(7, None, now),
        "drift: what a thing last succeeded with": lambda: store.on_thing(
            "znyx:guardrails:prod", [State.SUCCEEDED], limit=1
        ),
        "settle: unknown requests of the last day": lambda: store.in_states(
            [State.UNKNOWN], updated_since=now - timedelta(days=1)
        ),
        "webhooks waiting": lambda: store.webhooks_waiting(now),
        "notes due": lambda: store.notes_due(now, 20),
        "expire: webhooks and notes too old to come again": lambda: (
            store.forget_webhooks(now - timedelta(days=2)),
            store.forget_notes(now - timedelta(days=2)),
        ),
        "events: milestones to fan out, events owed, and old ones forgotten": lambda: (
            store.milestones(100),
            store.events_due(now, 50),
            store.forget_events(now - timedelta(days=7)),
        ),
        "due: waiting requests and planned promotions whose time came": lambda: (
            store.due(now, 20),
            store.auto_due(now, 20),
        ),
        "metrics: executing here": lambda: store.executing_by("me"),
        "metrics: work not done": store.inbox_undone,
        "readiness": lambda: store.ping(now),
    }


# --- SQLite --------------------------------------------------------------------------------


@dataclass
class SqliteTrace:
    """The statements a SQLite connection ran, and the virtual machine steps they took."""

    conn: sqlite3.Connection
    statements: list[str] = field(default_factory=list)
    steps: int = 0
    EVERY = 20  # steps between two calls of the progress handler

    def __enter__(self) -> SqliteTrace:
        self.conn.set_trace_callback(self.statements.append)
        self.conn.set_progress_handler(self._step, self.EVERY)
        return self

    def _step(self) -> int:
        self.steps += self.EVERY
        return 0

    def __exit__(self, *exc: object) -> None:
        self.conn.set_trace_callback(None)
        self.conn.set_progress_handler(None, 0)


@pytest.fixture(scope="module")
def sqlite_dbs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A database after some use, and one after ten times as much (seeded once a module)."""
    folder = tmp_path_factory.mktemp("grown")
    dbs = {}
    for name, (requests, audit) in (("small", SMALL), ("large", LARGE)):
        dbs[name] = folder / f"{name}.db"
        grow(dbs[name], requests, audit)
    return dbs


def _sqlite_day(db: Path, now: datetime) -> Iterator[tuple[str, list[str], int]]:
    """Each step of `_day` on a copy of `db`: its name, statements and VM steps."""
    store = SqliteStore(db)
    try:
        for name, call in _day(store, now).items():
            with SqliteTrace(store.db.conn) as trace:
                call()
            yield name, trace.statements, trace.steps
    finally:
        store.close()


# A whole table may be read only where the plan says it reads a partial index of the few rows
# that matter, or the newest entries of all (a scan backwards that stops at its LIMIT).
_PARTIAL = re.compile(r"USING (COVERING )?INDEX (requests_lagging|notices_unsent)\b")
_NEWEST = re.compile(r"^SELECT \* FROM audit ORDER BY id DESC LIMIT \d+$")


def _sqlite_full_scans(conn: sqlite3.Connection, statement: str) -> list[str]:
    if not statement.lstrip().upper().startswith(("SELECT", "WITH", "UPDATE", "DELETE", "INSERT")):
        return []
    plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")]
    scans = [
        line
        for line in plan
        if re.match(rf"SCAN ({'|'.join(BIG_TABLES)})\b", line) and not _PARTIAL.search(line)
    ]
    return [] if _NEWEST.match(statement.strip()) else scans


def test_sqlite_reads_no_whole_table_for_what_people_wait_for_nor_for_the_jobs(
    sqlite_dbs: dict[str, Path], tmp_path: Path
) -> None:
    db = tmp_path / "large.db"
    db.write_bytes(sqlite_dbs["large"].read_bytes())
    now = datetime.now(UTC)
    conn = sqlite3.connect(db)
    found = {}
    for name, statements, _ in _sqlite_day(db, now):
        scans = [(s, _sqlite_full_scans(conn, s)) for s in statements]
        found[name] = [(s, plan) for s, plan in scans if plan]
        assert statements, name
    conn.close()
    bad = {name: scans for name, scans in found.items() if scans}
    assert bad == {}, "\n".join(f"{k}: {v}" for k, v in bad.items())


def test_sqlite_costs_the_same_after_ten_times_the_history(
    sqlite_dbs: dict[str, Path], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    steps: dict[str, dict[str, int]] = {}
    for size in ("small", "large"):
        db = tmp_path / f"{size}.db"
        db.write_bytes(sqlite_dbs[size].read_bytes())
        steps[size] = {name: n for name, _, n in _sqlite_day(db, now)}
    # A B-tree one level deeper, and nothing more: ten times the rows read would be ~10×.
    grown = {
        name: (steps["small"][name], n)
        for name, n in steps["large"].items()
        if n > 1.25 * steps["small"][name] + 400
    }
    assert grown == {}, grown


def test_sqlite_start_up_on_a_year_of_history_reads_no_whole_table(
    sqlite_dbs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening the store (migrations checked, the database proven writable) reads nothing of
    the history; what start-up runs next is the jobs of the test above."""
    db = tmp_path / "large.db"
    db.write_bytes(sqlite_dbs["large"].read_bytes())
    statements: list[str] = []
    original = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = original(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    # sqlite-utils opens its connection with sqlite3.connect: trace what runs on it.
    monkeypatch.setattr(sqlite3, "connect", traced)
    SqliteStore(db).close()
    monkeypatch.undo()
    conn = sqlite3.connect(db)
    assert statements and [s for s in statements if _sqlite_full_scans(conn, s)] == []
    conn.close()


# --- PostgreSQL ----------------------------------------------------------------------------


class _Recording(psycopg.Cursor):  # type: ignore[type-arg]
    """A cursor that keeps what it runs, for EXPLAIN."""

    ran: ClassVar[list[tuple[Any, Any]]] = []

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        _Recording.ran.append((query, params))
        return super().execute(query, params, **kwargs)


@pytest.fixture(scope="module")
def postgres_dbs(postgres: str) -> dict[str, str]:
    dbs = {}
    for name, (requests, audit) in (("small", SMALL), ("large", LARGE)):
        dbs[name] = fresh_postgres_database(postgres)
        grow(dbs[name], requests, audit)  # and VACUUM ANALYZE
    return dbs


def _postgres_day(url: str, now: datetime) -> Iterator[tuple[str, list[tuple[Any, Any]]]]:
    store = PostgresStore(url)
    try:
        with store._lock:
            store._connection().cursor_factory = _Recording
        for name, call in _day(store, now).items():
            _Recording.ran = []
            call()
            yield name, list(_Recording.ran)
    finally:
        store.close()


def _explain(url: str, query: Any, params: Any, *, analyze: bool = False) -> dict[str, Any]:
    """The plan of a read (EXPLAIN, FORMAT JSON), run when `analyze` to count its buffers."""
    options = "ANALYZE, BUFFERS, FORMAT JSON" if analyze else "FORMAT JSON"
    text = query if isinstance(query, str) else query.as_string(None)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(f"EXPLAIN ({options}) {text}", params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0][0]["Plan"]


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _is_read(query: Any) -> bool:
    text = query if isinstance(query, str) else query.as_string(None)
    return text.lstrip().upper().startswith(("SELECT", "WITH"))


def test_postgres_reads_no_whole_table_for_what_people_wait_for_nor_for_the_jobs(
    postgres_dbs: dict[str, str],
) -> None:
    url = postgres_dbs["large"]
    found = {}
    for name, ran in _postgres_day(url, datetime.now(UTC)):
        assert ran, name
        scans = []
        for query, params in ran:
            if not _is_read(query):
                continue
            plan = _explain(url, query, params)
            scans += [
                (str(query)[:120], node["Relation Name"])
                for node in _nodes(plan)
                if node["Node Type"] == "Seq Scan" and node.get("Relation Name") in BIG_TABLES
            ]
        found[name] = scans
    bad = {name: scans for name, scans in found.items() if scans}
    assert bad == {}, "\n".join(f"{k}: {v}" for k, v in bad.items())


def test_postgres_reads_the_same_after_ten_times_the_history(
    postgres_dbs: dict[str, str],
) -> None:
    """The pages each read touches (EXPLAIN ANALYZE's buffers) stay the same."""
    now = datetime.now(UTC)
    pages: dict[str, dict[str, int]] = {}
    for size in ("small", "large"):
        url = postgres_dbs[size]
        pages[size] = {}
        for name, ran in _postgres_day(url, now):
            touched = 0
            for query, params in ran:
                if _is_read(query):
                    plan = _explain(url, query, params, analyze=True)
                    touched += plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
            pages[size][name] = touched
    grown = {
        name: (pages["small"][name], n)
        for name, n in pages["large"].items()
        if n > 1.5 * pages["small"][name] + 10
    }
    assert grown == {}, grown


# --- what is kept how long -----------------------------------------------------------------


async def test_acknowledged_work_is_forgotten_past_its_retention_a_batch_at_a_time(
    world: World,
) -> None:
    """Commands and clicks acknowledged to Slack are kept once done while Slack could deliver
    them again (a redelivery is dropped); past the retention (an hour by default) the
    `retention` job removes them, 500 at a time, coming back at once while a backlog is left;
    the audit log is kept whole."""
    store = world.bot.store
    assert isinstance(store, SqliteStore)
    await world.requested()  # audited: "requested"
    body = world.sender.command_body("pending", ALICE)
    assert (await world.sender.post(body)).status_code == 200
    await world.slack.wait_for(lambda s: len(world.told()) == 1)
    assert (await world.sender.post(body)).status_code == 200  # Slack's retry of the same
    await world.answer("locks")
    assert len(world.told()) == 2  # the redelivery was recognised and dropped

    def kept() -> int:
        return int(store.db.execute("SELECT COUNT(*) FROM inbox").fetchone()[0])

    async with asyncio.timeout(5):
        while store.inbox_undone():  # noqa: ASYNC110 (the answer is sent before it is marked)
            await asyncio.sleep(0.01)
    audited = len(store.history(limit=1000))
    scheduler = scheduler_for(world.bot)
    now = utc_now()
    world.clock.at = now + timedelta(minutes=59)
    assert await scheduler.run_once("retention") and kept() == 3
    world.clock.at = now + timedelta(minutes=61)
    assert await scheduler.run_once("retention") and kept() == 0
    assert (await world.sender.post(body)).status_code == 200  # long past Slack's retries
    await world.slack.wait_for(lambda s: len(world.told()) == 3)

    old = now - timedelta(days=3)  # a backlog: a bot stopped for days, an upgrade
    for i in range(1_200):
        store.inbox_put(f"old.{i}", "click", {"user": BOB}, old)
        store.inbox_done(f"old.{i}", old)
    retention = world.bot.workflow.retention
    runs = [await retention.run() for _ in range(3)]
    assert runs[:2] == [RunAgainIn(BETWEEN_BATCHES)] * 2 and runs[2] is None
    assert kept() == 1  # the redelivery just answered, done within the retention
    assert audited and len(store.history(limit=1000)) == audited  # the audit log is whole
