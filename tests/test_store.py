"""The SQLite store on real files: idempotent schema, compare-and-set, append-only audit."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.core.model import AuditEntry, Fact, Outcome, Preview, State
from bot.core.ports import OpenRequestExists
from bot.providers.znyx import ZnyxPromote
from bot.store import SqliteStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ACTION = ZnyxPromote(org_id="o", project="guardrails", project_id="p", source_env="staging")


def _create(store: SqliteStore) -> int:
    request = store.create_request(
        ACTION,
        requester="UALICE",
        channel="C1",
        preview=Preview(facts=[Fact(label="a", value="b")]),
        created_at=NOW,
        expires_at=NOW + timedelta(hours=24),
    )
    return request.id


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    store = SqliteStore(path)
    request_id = _create(store)
    store.set_message(request_id, "1700000000.000001")
    store.close()
    store = SqliteStore(path)  # the schema is created idempotently
    request = store.get(request_id)
    assert request is not None
    assert request.action == ACTION and request.state is State.PENDING
    assert request.message_ts == "1700000000.000001"
    assert request.preview == Preview(facts=[Fact(label="a", value="b")])
    assert request.expires_at == NOW + timedelta(hours=24)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.get(999) is None


def test_transition_is_a_compare_and_set() -> None:
    store = SqliteStore()
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


def test_approvals_are_distinct_and_only_while_open() -> None:
    store = SqliteStore()
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


def test_one_winner_among_many_connections(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    request_id = _create(SqliteStore(path))
    barrier = threading.Barrier(16)
    wins: list[bool] = []

    def contend() -> None:
        store = SqliteStore(path)  # each thread its own connection, as another process would
        barrier.wait()
        wins.append(store.transition(request_id, (State.PENDING,), State.EXECUTING, at=NOW))
        store.close()

    threads = [threading.Thread(target=contend) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 15 + [True]


def test_audit_is_append_only_and_filterable() -> None:
    store = SqliteStore()
    for i, target in enumerate(["znyx:a:prod", "znyx:b:prod", "znyx:a:prod"]):
        store.audit(AuditEntry(at=NOW, request_id=i, actor="U", event=f"e{i}", target=target))
    assert [e.event for e in store.history()] == ["e2", "e1", "e0"]
    assert [e.event for e in store.history("znyx:a:prod")] == ["e2", "e0"]
    assert [e.event for e in store.history(limit=1)] == ["e2"]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("UPDATE audit SET actor = 'someone else'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        store.db.execute("DELETE FROM audit")


def test_deliveries_are_remembered_then_forgotten() -> None:
    store = SqliteStore()
    assert store.inbox_put("t.1", "command", {"user": "U1"}, NOW)
    assert not store.inbox_put("t.1", "command", {"user": "U1"}, NOW + timedelta(minutes=5))
    store.inbox_done("t.1", NOW)
    assert store.forget_deliveries(NOW + timedelta(minutes=30)) == 0
    assert store.forget_deliveries(NOW + timedelta(hours=2)) == 1
    assert store.inbox_put("t.1", "command", {"user": "U1"}, NOW + timedelta(hours=2))


def test_one_open_request_per_thing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "bot.db")
    first = _create(store)
    other = SqliteStore(tmp_path / "bot.db")  # another process on the same file
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
    old.commit()
    old.close()
    store = SqliteStore(path)
    request = store.get(1)
    assert request is not None and request.action == ACTION  # old rows still read
    assert request.rolls_back is None and request.rolled_back_by is None
    assert _create(store) == 2  # an old row holds no thing
    with pytest.raises(OpenRequestExists):
        _create(store)


def test_acknowledged_work_is_claimed_once_and_left_for_others_when_its_holder_stops(
    tmp_path: Path,
) -> None:
    one, two = SqliteStore(tmp_path / "bot.db"), SqliteStore(tmp_path / "bot.db")
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


def test_an_executing_lease_is_renewed_and_taken_over_only_once_lapsed(tmp_path: Path) -> None:
    one, two = SqliteStore(tmp_path / "bot.db"), SqliteStore(tmp_path / "bot.db")
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


def test_a_rollback_names_what_it_undoes_once_it_succeeded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db")
    first = _create(store)
    later = NOW + timedelta(minutes=1)
    for to in (State.EXECUTING, State.SUCCEEDED):
        assert store.transition(first, [State.PENDING, State.EXECUTING], to, at=later)
    rollback = store.create_request(
        ACTION,
        requester="U2",
        channel="C1",
        preview=None,
        created_at=later,
        expires_at=later + timedelta(hours=1),
        rolls_back=first,
    )
    assert rollback.rolls_back == first
    assert store.get(first).rolled_back_by is None  # type: ignore[union-attr]  # not yet
    for to in (State.EXECUTING, State.SUCCEEDED):
        assert store.transition(rollback.id, [State.PENDING, State.EXECUTING], to, at=later)
    assert store.get(first).rolled_back_by == rollback.id  # type: ignore[union-attr]
