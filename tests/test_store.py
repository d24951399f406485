"""The store on both backends, a SQLite file and a real PostgreSQL database (each test runs on
each): compare-and-set, leases, append-only audit; then what only one backend has (SQLite's
idempotent upgrade, PostgreSQL's versioned migrations)."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import psycopg.sql
import pytest

from bot.core.model import AuditEntry, Fact, Lock, NewRequest, Outcome, Preview, State
from bot.core.ports import OpenRequestExists, StoreError
from bot.providers.znyx import ZnyxPromote
from bot.store import AnyStore, SqliteStore, postgres, sqlite
from bot.store.postgres import SCHEMA_VERSION, PostgresStore
from bot.store.sqlite import SCHEMA_VERSION as SQLITE_SCHEMA_VERSION
from tests.conftest import fresh_postgres_database, together

Factory = Callable[[], AnyStore]

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ACTION = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")


def _create(store: AnyStore) -> int:
    request = store.create_request(
        NewRequest(
            ACTION,
            requester="UALICE",
            channel="C1",
            preview=Preview(facts=[Fact(label="a", value="b")]),
            created_at=NOW,
            expires_at=NOW + timedelta(hours=24),
        )
    )
    return request.id


def test_round_trip_and_reopen(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _create(store)
    store.set_message(request_id, "1700000000.000001")
    store.close()
    store = store_factory()  # the schema is created (or migrated) again: nothing changes
    request = store.get(request_id)
    assert request is not None
    assert request.action == ACTION and request.state is State.PENDING
    assert request.message_ts == "1700000000.000001"
    assert request.preview == Preview(facts=[Fact(label="a", value="b")])
    assert request.expires_at == NOW + timedelta(hours=24)
    if isinstance(store, SqliteStore):
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.get(999) is None


def test_transition_is_a_compare_and_set(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _create(store)
    open_states = (State.PENDING, State.APPROVED)
    assert store.transition(request_id, open_states, State.EXECUTING, at=NOW)
    assert not store.transition(request_id, open_states, State.EXECUTING, at=NOW)
    outcome = Outcome(state="succeeded", headline="done")
    assert store.transition(
        request_id, (State.EXECUTING,), State.SUCCEEDED, at=NOW, outcome=outcome
    )
    request = store.get(request_id)
    assert request is not None and request.state is State.SUCCEEDED and request.outcome == outcome
    assert store.in_states([State.EXECUTING]) == []


def test_approvals_are_distinct_and_only_while_open(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _create(store)
    assert store.add_approval(request_id, "UBOB", NOW)
    assert not store.add_approval(request_id, "UBOB", NOW)
    assert store.add_approval(request_id, "UDAVE", NOW + timedelta(seconds=1))
    store.transition(request_id, (State.PENDING,), State.REJECTED, at=NOW, by="UCAROL")
    assert not store.add_approval(request_id, "UERIN", NOW)
    request = store.get(request_id)
    assert request is not None
    assert request.approvers == ["UBOB", "UDAVE"] and request.decided_by == "UCAROL"
    assert not store.add_approval(999, "UBOB", NOW)


def test_one_winner_among_many_connections(store_factory: Factory) -> None:
    request_id = _create(store_factory())

    def contend(barrier: threading.Barrier, _: int) -> bool:
        store = store_factory()  # each thread its own connection, as another process would
        barrier.wait()
        won = store.transition(request_id, (State.PENDING,), State.EXECUTING, at=NOW)
        store.close()
        return won

    wins, _ = together(16, contend)
    assert sorted(wins) == [False] * 15 + [True]


def test_audit_is_append_only_and_filterable(store_factory: Factory, shared_db: str) -> None:
    store = store_factory()
    for i, target in enumerate(["znyx:a:prod", "znyx:b:prod", "znyx:a:prod"]):
        store.audit(AuditEntry(at=NOW, request_id=i, actor="U", event=f"e{i}", target=target))
    assert [e.event for e in store.history()] == ["e2", "e1", "e0"]
    assert [e.event for e in store.history("znyx:a:prod")] == ["e2", "e0"]
    assert [e.event for e in store.history(limit=1)] == ["e2"]
    statements = ["UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"]
    if isinstance(store, SqliteStore):
        for statement in statements:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                store.db.execute(statement)
    else:  # not even the database's owner, on a connection of its own, changes it
        with psycopg.connect(shared_db, autocommit=True) as conn:
            for statement in [*statements, "TRUNCATE audit"]:
                with pytest.raises(psycopg.IntegrityError, match="append-only"):
                    conn.execute(statement)  # type: ignore[arg-type]
    assert [e.event for e in store.history()] == ["e2", "e1", "e0"]


def test_history_matches_a_pattern_in_the_database(store_factory: Factory) -> None:
    """`history <pattern>`: fnmatch's `*` and `?`, and nothing else of LIKE's or GLOB's."""
    store = store_factory()
    targets = ["znyx:a:prod", "znyx:a_b:prod", "znyx:axb:prod", "whop:storefront", "appstore:ios"]
    for i, target in enumerate(targets):
        store.audit(AuditEntry(at=NOW, request_id=i, actor="U", event=target, target=target))

    def matched(pattern: str) -> list[str]:
        return sorted(e.event for e in store.history(pattern))

    assert matched("znyx:*") == ["znyx:a:prod", "znyx:a_b:prod", "znyx:axb:prod"]
    assert matched("*:prod") == ["znyx:a:prod", "znyx:a_b:prod", "znyx:axb:prod"]
    assert matched("znyx:a_b:*") == ["znyx:a_b:prod"]  # `_` is no wildcard here
    assert matched("znyx:a?b:*") == ["znyx:a_b:prod", "znyx:axb:prod"]
    assert matched("whop:*") == ["whop:storefront"]
    assert matched("WHOP:*") == []  # as case-sensitive as fnmatchcase
    assert matched("znyx:a") == []  # no wildcard: the exact target
    assert matched("znyx:a:prod") == ["znyx:a:prod"]
    assert [e.event for e in store.history("znyx:*", limit=2)] == [
        "znyx:axb:prod",
        "znyx:a_b:prod",
    ]  # newest first, at most `limit`
    assert [e.event for e in store.history("*", request_id=3)] == ["whop:storefront"]


def test_history_of_a_pattern_is_served_by_an_index(store_factory: Factory) -> None:
    """The match is made in SQL, on an index of `target`: the targets in the range the
    pattern's literal start bounds, one seek each, then each one's newest entries; never by
    reading every entry."""
    store = store_factory()
    for i in range(2000):
        target = "whop:storefront" if i % 200 == 0 else f"znyx:p{i % 40}:prod"
        store.audit(AuditEntry(at=NOW, request_id=i, actor="U", event="e", target=target))
    if isinstance(store, SqliteStore):
        ran: list[str] = []
        store.db.conn.set_trace_callback(ran.append)
        assert len(store.history("whop:*", limit=20)) == 10
        store.db.conn.set_trace_callback(None)
        plans = [
            [row[3] for row in store.db.execute(f"EXPLAIN QUERY PLAN {statement}")]
            for statement in ran
            if "FROM audit" in statement
        ]
        assert "SEARCH audit USING COVERING INDEX audit_target (target>? AND target<?)" in plans[0]
        assert all(
            "SEARCH audit USING" in line for plan in plans for line in plan if "audit" in line
        )
    else:
        assert isinstance(store, PostgresStore)
        assert len(store.history("whop:*", limit=20)) == 10
        query, params = postgres.history_query("whop:*", None, 20)
        with store._lock:
            conn = store._connection()
            conn.execute("ANALYZE audit")
            plan = " ".join(str(row) for row in conn.execute(sql_explain(query), params).fetchall())
        assert "audit_target_pattern" in plan and "Seq Scan" not in plan, plan


def sql_explain(query: psycopg.sql.Composed) -> psycopg.sql.Composed:
    return psycopg.sql.SQL("EXPLAIN ") + query


def test_done_work_is_kept_for_redeliveries_then_forgotten_a_batch_at_a_time(
    store_factory: Factory,
) -> None:
    store = store_factory()
    for i in range(6):
        assert store.inbox_put(f"t.{i}", "command", {"user": "U1"}, NOW)
        store.inbox_done(f"t.{i}", NOW + timedelta(minutes=i))
    assert store.inbox_put("t.open", "click", {"user": "U1"}, NOW)  # not done yet
    # Slack delivers the same payload again: recognised by its key while it is kept.
    assert not store.inbox_put("t.0", "command", {"user": "U1"}, NOW + timedelta(minutes=5))
    cutoff = NOW + timedelta(minutes=3)  # t.0, t.1 and t.2 were done before it
    assert [store.forget_done(cutoff, 2) for _ in range(3)] == [2, 1, 0]  # oldest first
    assert store.inbox_put("t.0", "command", {"user": "U1"}, NOW + timedelta(hours=2))
    assert not store.inbox_put("t.3", "command", {"user": "U1"}, NOW + timedelta(hours=2))
    assert store.forget_done(NOW + timedelta(days=1), 100) == 3  # t.3, t.4, t.5
    assert store.inbox_undone() == 2  # work not done is never forgotten: t.open, and t.0 again
    assert store.inbox_claim("t.open", "me", NOW, NOW + timedelta(minutes=1)) is not None


def test_one_open_request_per_thing(store_factory: Factory) -> None:
    store = store_factory()
    first = _create(store)
    other = store_factory()  # another process on the same database
    with pytest.raises(OpenRequestExists) as caught:
        _create(other)
    assert caught.value.request_id == first
    open_request = other.open_for(ACTION.thing)
    assert open_request is not None and open_request.id == first
    assert store.transition(first, [State.PENDING], State.EXECUTING, at=NOW)
    with pytest.raises(OpenRequestExists):  # executing still holds the thing
        _create(other)
    assert store.transition(first, [State.EXECUTING], State.SUCCEEDED, at=NOW)
    assert other.open_for(ACTION.thing) is None
    assert _create(other) == first + 1  # ended: the thing is free again


def test_a_database_from_before_things_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE requests (id INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL,"
        " action TEXT NOT NULL, requester TEXT NOT NULL, channel TEXT NOT NULL, message_ts TEXT,"
        " state TEXT NOT NULL, preview TEXT, outcome TEXT, decided_by TEXT,"
        " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, expires_at TEXT NOT NULL)"
    )
    old.execute(
        "INSERT INTO requests (target, action, requester, channel, state, created_at,"
        " updated_at, expires_at) VALUES (?, ?, 'U1', 'C1', 'pending', ?, ?, ?)",
        [ACTION.target, ACTION.model_dump_json(), *(NOW.isoformat(),) * 3],
    )
    old.execute("CREATE TABLE deliveries (key TEXT PRIMARY KEY, at TEXT NOT NULL)")
    old.commit()
    old.close()
    store = SqliteStore(path)
    assert store.schema_version() == SQLITE_SCHEMA_VERSION
    assert "deliveries" not in store.db.table_names()  # version 2 dropped it
    request = store.get(1)
    assert request is not None and request.action == ACTION  # old rows still read
    assert request.rolls_back is None and request.rolled_back_by is None
    assert _create(store) == 2  # an old row holds no thing
    with pytest.raises(OpenRequestExists):
        _create(store)


def test_sqlite_migrations_apply_once_when_processes_starttogether(tmp_path: Path) -> None:
    path = tmp_path / "new.db"

    def start(barrier: threading.Barrier, _: int) -> int:
        barrier.wait()
        store = SqliteStore(path)  # a process of its own (opened in its thread)
        version = store.schema_version()
        store.close()
        return version

    versions, problems = together(8, start)
    assert problems == [] and versions == [SQLITE_SCHEMA_VERSION] * 8
    store = SqliteStore(path)
    assert _create(store) == 1 and store.schema_version() == SQLITE_SCHEMA_VERSION


def _writing(path: Path) -> sqlite3.Connection:
    """Another process's connection to the file at `path`, holding its write lock."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE IF NOT EXISTS other (x)")
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_sqlite_opens_a_new_database_once_another_process_is_done_writing_it(
    tmp_path: Path,
) -> None:
    # Switching a new file to WAL takes its write lock, and SQLite answers "locked" at once
    # while another connection holds it, without waiting as for any other lock: two processes
    # opening a new database together failed one time in a few hundred.
    path = tmp_path / "new.db"
    other = _writing(path)
    threading.Timer(0.3, other.execute, ["COMMIT"]).start()
    store = SqliteStore(path)  # waited for it
    assert store.db.journal_mode == "wal" and _create(store) == 1
    store.close()
    other.close()


def test_sqlite_tells_a_lock_held_longer_than_its_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "held.db"
    other = _writing(path)
    with pytest.raises(StoreError) as caught:
        SqliteStore(path)
    other.close()
    text = str(caught.value)
    assert text == f"PROMOTE_BOT_DB: {path} stayed locked by another process for 0.2 s", text


def test_sqlite_refuses_a_schema_newer_than_the_bot(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    SqliteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SQLITE_SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError) as caught:
        SqliteStore(path)
    text = str(caught.value)
    assert text.startswith("PROMOTE_BOT_DB: ") and "\n" not in text
    assert f"schema version {SQLITE_SCHEMA_VERSION + 1}, newer than this promote-bot" in text


def _a_reply_claimed_before_replies_were_looked_for(store: AnyStore) -> None:
    """A request whose outcome reply was claimed by a bot from before `thread_until`."""
    request_id = _create(store)
    for to in (State.EXECUTING, State.SUCCEEDED):
        store.transition(request_id, [State.PENDING, State.EXECUTING], to, at=NOW)
    store.set_message(request_id, "1.1", shown=store.get(request_id).msg_version)  # type: ignore[union-attr]
    store.claim_thread(request_id, NOW, NOW)


def _is_looked_for_once_a_minute_on(store: AnyStore) -> None:
    now = datetime.now(UTC)
    assert store.schema_version() == (
        SQLITE_SCHEMA_VERSION if isinstance(store, SqliteStore) else SCHEMA_VERSION
    )
    assert store.messages_due(now + timedelta(seconds=50)) == []  # a live post may still land
    later = now + timedelta(seconds=61)
    assert store.messages_due(later) == [1]
    assert store.claim_thread(1, later, later + timedelta(minutes=5)) == "check"


def test_an_upgrade_looks_for_replies_claimed_before_it_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    store = SqliteStore(path)
    _a_reply_claimed_before_replies_were_looked_for(store)
    store.close()
    with sqlite3.connect(path) as conn:  # as version 2 left it
        conn.execute("ALTER TABLE requests DROP COLUMN thread_until")
        conn.execute("DROP TABLE steps")  # version 4
        conn.execute("PRAGMA user_version = 2")
    _is_looked_for_once_a_minute_on(SqliteStore(path))


def test_an_upgrade_looks_for_replies_claimed_before_it_on_postgres(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    _a_reply_claimed_before_replies_were_looked_for(store)
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as version 1 left it
        conn.execute("ALTER TABLE requests DROP COLUMN thread_until")
        conn.execute("DROP TABLE steps")  # version 3
        conn.execute("DELETE FROM schema_migrations WHERE version >= 2")
    _is_looked_for_once_a_minute_on(PostgresStore(pg_url))


def test_acknowledged_work_is_claimed_once_and_left_for_others_when_its_holder_stops(
    store_factory: Factory,
) -> None:
    one, two = store_factory(), store_factory()
    lease = timedelta(seconds=30)
    assert one.inbox_put("t.1", "command", {"user": "U1", "text": "help"}, NOW)
    item = one.inbox_claim("t.1", "one", NOW, NOW + lease)
    assert item is not None and item["payload"] == {"user": "U1", "text": "help"}
    assert item["attempts"] == 1
    assert two.inbox_claim("t.1", "two", NOW, NOW + lease) is None  # held by `one`
    assert two.inbox_waiting(NOW + timedelta(seconds=10), received_before=NOW) == []
    assert one.inbox_renew("t.1", "one", NOW + timedelta(seconds=40))
    later = NOW + timedelta(seconds=41)  # `one` stopped renewing: its lease lapsed
    assert two.inbox_waiting(later, received_before=NOW) == ["t.1"]
    taken = two.inbox_claim("t.1", "two", later, later + lease)
    assert taken is not None and taken["attempts"] == 2
    assert not one.inbox_renew("t.1", "one", later + lease)  # no longer theirs
    two.inbox_done("t.1", later)
    assert one.inbox_claim("t.1", "one", later + lease * 2, later + lease * 3) is None


def test_an_executing_lease_is_renewed_and_taken_over_only_once_lapsed(
    store_factory: Factory,
) -> None:
    one, two = store_factory(), store_factory()
    lease = timedelta(seconds=30)
    request_id = _create(one)
    assert one.transition(
        request_id, [State.PENDING], State.EXECUTING, at=NOW, lease=("one", NOW + lease)
    )
    soon = NOW + timedelta(seconds=20)
    assert two.lapsed(soon, unleased_before=soon - lease) == []
    assert not two.take_over(request_id, "two", soon, soon + lease, unleased_before=soon - lease)
    assert one.renew(request_id, "one", soon + lease)  # alive: 20 s later it renews
    late = NOW + timedelta(seconds=45)
    assert two.lapsed(late, unleased_before=late - lease) == []  # renewed: still alive
    gone = soon + lease + timedelta(seconds=1)
    assert [r.id for r in two.lapsed(gone, unleased_before=gone - lease)] == [request_id]
    assert two.take_over(request_id, "two", gone, gone + lease, unleased_before=gone - lease)
    assert not one.take_over(request_id, "one", gone, gone + lease, unleased_before=gone - lease)
    assert not one.renew(request_id, "one", gone + lease)
    assert two.transition(request_id, [State.EXECUTING], State.SUCCEEDED, at=gone)


def test_a_rollback_names_what_it_undoes_once_it_succeeded(store_factory: Factory) -> None:
    store = store_factory()
    first = _create(store)
    later = NOW + timedelta(minutes=1)
    for to in (State.EXECUTING, State.SUCCEEDED):
        assert store.transition(first, [State.PENDING, State.EXECUTING], to, at=later)
    rollback = store.create_request(
        NewRequest(
            ACTION,
            requester="U2",
            channel="C1",
            preview=None,
            created_at=later,
            expires_at=later + timedelta(hours=1),
            rolls_back=first,
        )
    )
    assert rollback.rolls_back == first
    assert store.get(first).rolled_back_by is None  # type: ignore[union-attr]  # not yet
    for to in (State.EXECUTING, State.SUCCEEDED):
        assert store.transition(rollback.id, [State.PENDING, State.EXECUTING], to, at=later)
    assert store.get(first).rolled_back_by == rollback.id  # type: ignore[union-attr]


def test_release_messages_converge_to_what_is_stored(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _create(store)
    assert store.messages_due(NOW) == []  # no message posted yet: nothing to bring up to date
    store.set_message(request_id, "1.1", shown=1)
    assert store.messages_due(NOW) == []
    assert store.add_approval(request_id, "UBOB", NOW)  # the message must show it
    assert store.messages_due(NOW) == [request_id]
    assert store.message_failed(request_id, lambda n: NOW + timedelta(seconds=10 * n)) == 1
    assert store.messages_due(NOW + timedelta(seconds=5)) == []  # waiting to try again
    assert store.message_failed(request_id, lambda n: NOW + timedelta(seconds=10 * n)) == 2
    assert store.messages_due(NOW + timedelta(seconds=20)) == [request_id]
    version = store.get(request_id).msg_version  # type: ignore[union-attr]
    store.message_shown(request_id, version)
    assert store.messages_due(datetime.max.replace(tzinfo=UTC)) == []
    assert store.add_copy(request_id, "1.2") and not store.add_copy(request_id, "1.2")
    assert not store.add_copy(request_id, "1.1")  # the message itself
    assert store.get(request_id).copies == ["1.2"]  # type: ignore[union-attr]
    store.message_shown(request_id, version + 1)
    store.touch_message(request_id)
    assert store.messages_due(NOW) == [request_id]
    store.message_shown(request_id, version + 2)
    for to in (State.EXECUTING, State.SUCCEEDED):
        store.transition(request_id, [State.PENDING, State.EXECUTING], to, at=NOW)
    store.message_shown(request_id, store.get(request_id).msg_version)  # type: ignore[union-attr]
    assert store.messages_due(NOW) == [request_id]  # the outcome's thread reply is owed
    minute = timedelta(minutes=1)
    assert store.claim_thread(request_id, NOW, NOW + minute) == "post"
    assert store_factory().claim_thread(request_id, NOW, NOW + minute) is None  # held
    assert store.messages_due(NOW) == []
    store.release_thread(request_id, NOW + 2 * minute)  # not this claim: nothing happens
    assert store.messages_due(NOW) == []
    store.release_thread(request_id, NOW + minute)  # it did not reach Slack
    assert store.messages_due(NOW) == [request_id]
    assert store.claim_thread(request_id, NOW, NOW + minute) == "post"
    store.message_shown(request_id, 0)  # the message, not the reply: the claim stands
    assert store.messages_due(NOW + minute / 2) == []
    # Its process stopped mid-post: once the claim lapses, the reply is looked for, once.
    assert store.messages_due(NOW + minute) == [request_id]
    later = NOW + minute
    assert store.claim_thread(request_id, later, later + minute) == "check"
    assert store_factory().claim_thread(request_id, later, later + minute) is None
    settled = later + timedelta(seconds=30)
    store.thread_uncertain(request_id, later + minute, settled)  # Slack didn't answer
    assert store.messages_due(settled - timedelta(seconds=1)) == []  # let a late post land
    assert store.messages_due(settled) == [request_id]
    store.message_shown(request_id, 0, thread=True)  # found there, or posted
    end = datetime.max.replace(tzinfo=UTC)
    assert store.messages_due(end) == [] and store.claim_thread(request_id, end, end) is None


def test_locks_and_what_health_and_metrics_count(store_factory: Factory) -> None:
    store, other = store_factory(), store_factory()
    lock = Lock(pattern="znyx:*:prod", reason="release week", by="UALICE", at=NOW)
    assert store.add_lock(lock) is None
    held = other.add_lock(dataclasses.replace(lock, by="UBOB"))
    assert held == lock  # the lock already set, by whom and when
    assert other.locks() == [lock]
    assert other.remove_lock("znyx:*:prod") == lock and store.remove_lock("znyx:*:prod") is None
    assert store.locks() == []

    store.ping(NOW)
    first, lease = _create(store), ("one", NOW + timedelta(seconds=30))
    assert store.transition(first, [State.PENDING], State.EXECUTING, at=NOW, lease=lease)
    assert other.state_counts() == {"executing": 1}
    assert other.executing_by("one") == 1 and other.executing_by("two") == 0
    assert store.inbox_put("t.1", "command", {}, NOW) and store.inbox_put("t.2", "click", {}, NOW)
    store.inbox_done("t.1", NOW)
    assert other.inbox_undone() == 1
    entry = AuditEntry(at=NOW, request_id=first, actor="U", event="opened", target=ACTION.target)
    store.audit(entry)
    assert other.history(request_id=first) == [entry]
    assert other.history(ACTION.target, request_id=first + 1) == []


def test_copies_adopted_at_once_by_several_processes_are_all_kept(
    store_factory: Factory,
) -> None:
    first = store_factory()
    request_id = _create(first)

    def adopt(barrier: threading.Barrier, n: int) -> list[bool]:
        store = store_factory()  # a process of its own (SQLite: opened in its thread)
        barrier.wait()
        return [store.add_copy(request_id, f"2.{n}{i}") for i in range(5)]

    each, _ = together(6, adopt)
    adopted = [added for added_by_one in each for added in added_by_one]
    request = first.get(request_id)
    assert adopted == [True] * 30
    assert request is not None and len(request.copies) == 30  # none overwritten by another


# --- PostgreSQL only: versioned migrations, plain errors ---------------------------------


@pytest.fixture
def pg_url(postgres: str) -> str:
    return fresh_postgres_database(postgres)


def test_postgres_migrations_apply_once_when_processes_starttogether(pg_url: str) -> None:
    def start(barrier: threading.Barrier, _: int) -> PostgresStore:
        barrier.wait()
        return PostgresStore(pg_url)

    stores, problems = together(8, start)
    assert problems == [] and len(stores) == 8
    with psycopg.connect(pg_url) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # each once
    assert _create(stores[0]) == 1 and stores[1].schema_version() == SCHEMA_VERSION
    for store in stores:
        store.close()


def test_postgres_refuses_a_schema_newer_than_the_bot(pg_url: str) -> None:
    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", [SCHEMA_VERSION + 1])
    with pytest.raises(StoreError) as caught:
        PostgresStore(pg_url)
    assert str(caught.value).startswith("PROMOTE_BOT_DB: the PostgreSQL database")
    assert f"schema version {SCHEMA_VERSION + 1}, newer than this promote-bot" in str(caught.value)


def test_postgres_problems_are_one_line_naming_the_setting_without_the_password(
    postgres: str,
) -> None:
    cases = [
        (f"postgresql://postgres:s3cret@/no_such_db?host={postgres}", "does not exist"),
        ("postgresql://bot:s3cret@127.0.0.1:9/promote?connect_timeout=2", "cannot reach"),
        # Passwords written without percent-encoding: libpq misreads them, and quotes them.
        ("postgresql://bot:s3cret/x@127.0.0.1:9/promote?connect_timeout=2", "percent-encode"),
        ("postgresql://bot:s3cret@x@127.0.0.1:9/promote?connect_timeout=2", "percent-encode"),
        ("postgresql://bot:s3%zzcret@127.0.0.1:9/promote?connect_timeout=2", "percent-encode"),
    ]
    for url, words in cases:
        with pytest.raises(StoreError) as caught:
            PostgresStore(url)
        text = str(caught.value)
        assert text.startswith("PROMOTE_BOT_DB: ") and words in text, text
        assert "\n" not in text and "s3" not in text and "the the" not in text, text


def test_a_starting_process_waits_for_another_ones_upgrade(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT_MS", 200)  # an ordinary lock gives up sooner
    with psycopg.connect(pg_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [postgres.MIGRATION_LOCK])  # upgrading
        threading.Timer(1.0, other.execute, ["SELECT pg_advisory_unlock_all()"]).start()
        store = PostgresStore(pg_url)  # waited for it, past its own lock timeout
    assert store.schema_version() == SCHEMA_VERSION
    store.close()


def test_compare_and_swap_holds_whatever_isolation_the_server_defaults_to(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as admin:
        name = admin.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        admin.execute(f"ALTER DATABASE {name} SET default_transaction_isolation = 'serializable'")
        admin.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
    first = PostgresStore(pg_url)
    request_id = _create(first)
    stores = [PostgresStore(pg_url) for _ in range(8)]
    assert stores[0]._rows("SHOW synchronous_commit") == [{"synchronous_commit": "on"}]
    barrier = threading.Barrier(len(stores), timeout=60)
    won: list[bool] = []

    def approve(store: PostgresStore) -> None:
        barrier.wait()
        won.append(store.transition(request_id, (State.PENDING,), State.APPROVED, at=NOW))

    threads = [threading.Thread(target=approve, args=[s]) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False] * 7 + [True]  # one winner, the others lose quietly
    for store in [first, *stores]:
        store.close()


def test_a_lost_postgres_connection_is_a_store_error_then_the_next_call_reconnects(
    pg_url: str,
) -> None:
    store = PostgresStore(pg_url)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(StoreError, match="connection"):
        store.ping(NOW)
    store.ping(NOW)  # a new connection
    assert _create(store) == 1
    store.close()


def test_shown_as_is_a_requests_state_and_message_version(store_factory: Factory) -> None:
    store = store_factory()
    request_id = _create(store)
    assert store.shown_as(request_id) == (State.PENDING, 1)
    store.touch_message(request_id)
    store.transition(request_id, [State.PENDING], State.CANCELLED, at=NOW)
    request = store.get(request_id)
    assert request is not None
    assert store.shown_as(request_id) == (State.CANCELLED, request.msg_version)
    assert request.msg_version > 1
    assert store.shown_as(request_id + 1000) is None
