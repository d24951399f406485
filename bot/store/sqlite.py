"""Requests, approvals and the audit log in one SQLite file (WAL), through sqlite-utils.

Every state change is a single conditional UPDATE, so two clicks, two processes or a
redelivered event can never both move a request to `executing`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from bot.core.holds import Lock
from bot.core.model import (
    Action,
    Approval,
    AuditEntry,
    Outcome,
    Preview,
    Request,
    State,
    action_from_json,
)
from bot.core.ports import OpenRequestExists

BUSY_TIMEOUT_MS = 5000
_OPEN = (State.PENDING, State.APPROVED, State.EXECUTING)  # states that hold their thing
_OPEN_SQL = ", ".join(f"'{s.value}'" for s in _OPEN)
DELIVERY_MEMORY = timedelta(hours=1)  # Slack retries within minutes; keep an hour of keys


class SqliteStore:
    def __init__(self, path: Path | str | None = None) -> None:
        """Open (and create if needed) the database at `path`; None keeps it in memory."""
        if path is None:
            self.db = sqlite_utils.Database(memory=True)
        else:
            self.db = sqlite_utils.Database(str(path))
            self.db.enable_wal()
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # WAL with NORMAL survives any process crash; only the last commits before a power loss
        # can go. The one commit that must not, the claim before a provider call, is FULL.
        self.db.execute("PRAGMA synchronous = NORMAL")
        self._create_schema()

    def _create_schema(self) -> None:
        """Idempotent: safe on every start and from several processes."""
        with self.db.conn:
            self.db.executescript(
                """
                CREATE TABLE IF NOT EXISTS requests (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    target TEXT NOT NULL,
                    thing TEXT,
                    action TEXT NOT NULL,
                    requester TEXT NOT NULL,
                    channel TEXT NOT NULL,
                    message_ts TEXT,
                    state TEXT NOT NULL,
                    preview TEXT,
                    outcome TEXT,
                    decided_by TEXT,
                    created_at TEXT NOT NULL,
                    updated_at TEXT NOT NULL,
                    expires_at TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS requests_open ON requests (state, expires_at);
                CREATE TABLE IF NOT EXISTS approvals (
                    request_id INTEGER NOT NULL REFERENCES requests (id),
                    user TEXT NOT NULL,
                    at TEXT NOT NULL,
                    PRIMARY KEY (request_id, user)
                );
                CREATE TABLE IF NOT EXISTS audit (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    at TEXT NOT NULL,
                    request_id INTEGER,
                    actor TEXT NOT NULL,
                    event TEXT NOT NULL,
                    target TEXT,
                    detail TEXT NOT NULL DEFAULT ''
                );
                CREATE INDEX IF NOT EXISTS audit_target ON audit (target);
                CREATE TABLE IF NOT EXISTS deliveries (
                    key TEXT PRIMARY KEY,
                    at TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries (at);
                CREATE TABLE IF NOT EXISTS locks (
                    pattern TEXT PRIMARY KEY,
                    reason TEXT NOT NULL,
                    by TEXT NOT NULL,
                    at TEXT NOT NULL
                );
                CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
                BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
                BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
                """
            )

        if "thing" not in {c.name for c in self.db["requests"].columns}:
            try:  # a database from before one-open-request-per-thing
                with self.db.conn:
                    self.db.execute("ALTER TABLE requests ADD COLUMN thing TEXT")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise
        if "emergency" not in {c.name for c in self.db["requests"].columns}:
            try:  # a database from before break-glass requests
                with self.db.conn:
                    self.db.execute("ALTER TABLE requests ADD COLUMN emergency TEXT")
            except sqlite3.OperationalError as exc:  # another process added it just now
                if "duplicate column" not in str(exc):
                    raise
        with self.db.conn:
            # At most one open request per thing: the database refuses a second one, so two
            # processes asking at once can't both post a release message.
            self.db.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS requests_open_thing ON requests (thing)"
                f" WHERE state IN ({_OPEN_SQL})"
            )

    def close(self) -> None:
        self.db.close()

    # --- requests ------------------------------------------------------------------------

    def create_request(
        self,
        action: Action,
        *,
        requester: str,
        channel: str,
        preview: Preview | None,
        created_at: datetime,
        expires_at: datetime,
        emergency: str | None = None,
    ) -> Request:
        try:
            with self.db.conn:
                cursor = self.db.execute(
                    "INSERT INTO requests (target, thing, action, requester, channel, state,"
                    " preview, created_at, updated_at, expires_at, emergency)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        action.target,
                        action.thing,
                        action.model_dump_json(),
                        requester,
                        channel,
                        State.PENDING.value,
                        preview.model_dump_json() if preview else None,
                        created_at.astimezone(UTC).isoformat(),
                        created_at.astimezone(UTC).isoformat(),
                        expires_at.astimezone(UTC).isoformat(),
                        emergency,
                    ],
                )
        except sqlite3.IntegrityError:
            existing = self.open_for(action.thing) if action.thing else None
            if existing is None:
                raise
            raise OpenRequestExists(existing.id) from None
        request_id = cursor.lastrowid
        assert request_id is not None
        request = self.get(request_id)
        assert request is not None
        return request

    def open_for(self, thing: str) -> Request | None:
        rows = list(
            self.db.query(
                f"SELECT id FROM requests WHERE thing = ? AND state IN ({_OPEN_SQL})", [thing]
            )
        )
        return self.get(rows[0]["id"]) if rows else None

    def get(self, request_id: int) -> Request | None:
        rows = list(self.db.query("SELECT * FROM requests WHERE id = ?", [request_id]))
        if not rows:
            return None
        approvals = [
            Approval(user=row["user"], at=datetime.fromisoformat(row["at"]))
            for row in self.db.query(
                "SELECT user, at FROM approvals WHERE request_id = ? ORDER BY at, rowid",
                [request_id],
            )
        ]
        return _request(rows[0], approvals)

    def in_states(
        self, states: Sequence[State], *, expired_by: datetime | None = None
    ) -> list[Request]:
        """Requests in `states`, oldest first; only those expired by then, if given."""
        marks = ", ".join("?" for _ in states)
        sql = f"SELECT id FROM requests WHERE state IN ({marks})"
        params: list[str] = [s.value for s in states]
        if expired_by is not None:
            sql += " AND expires_at <= ?"
            params.append(expired_by.astimezone(UTC).isoformat())
        ids = [row["id"] for row in self.db.query(sql + " ORDER BY id", params)]
        return [r for r in (self.get(i) for i in ids) if r is not None]

    def set_message(self, request_id: int, ts: str) -> None:
        with self.db.conn:
            self.db.execute("UPDATE requests SET message_ts = ? WHERE id = ?", [ts, request_id])

    def add_approval(self, request_id: int, user: str, at: datetime) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO approvals (request_id, user, at)"
                " SELECT ?, ?, ? WHERE EXISTS"
                " (SELECT 1 FROM requests WHERE id = ? AND state IN (?, ?))",
                [request_id, user, at.isoformat(), request_id, State.PENDING, State.APPROVED],
            )
        return cursor.rowcount == 1

    def transition(
        self,
        request_id: int,
        from_states: Sequence[State],
        to: State,
        *,
        at: datetime,
        by: str | None = None,
        outcome: Outcome | None = None,
    ) -> bool:
        """The compare-and-set: one UPDATE that only matches in one of `from_states`."""
        marks = ", ".join("?" for _ in from_states)
        durable = to is State.EXECUTING  # the provider is called next: this must reach the disk
        if durable:
            self.db.execute("PRAGMA synchronous = FULL")
        try:
            return self._transition(request_id, marks, from_states, to, at, by, outcome)
        finally:
            if durable:
                self.db.execute("PRAGMA synchronous = NORMAL")

    def _transition(
        self,
        request_id: int,
        marks: str,
        from_states: Sequence[State],
        to: State,
        at: datetime,
        by: str | None,
        outcome: Outcome | None,
    ) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE requests SET state = ?, updated_at = ?,"
                " decided_by = COALESCE(?, decided_by), outcome = COALESCE(?, outcome)"
                f" WHERE id = ? AND state IN ({marks})",
                [
                    to.value,
                    at.isoformat(),
                    by,
                    outcome.model_dump_json() if outcome else None,
                    request_id,
                    *(s.value for s in from_states),
                ],
            )
        return cursor.rowcount == 1

    def first_delivery(self, key: str, at: datetime) -> bool:
        """True the first time `key` (Slack's trigger id) is seen, by any process."""
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO deliveries (key, at) VALUES (?, ?)",
                [key, at.astimezone(UTC).isoformat()],
            )
        return cursor.rowcount == 1

    def forget_deliveries(self, now: datetime) -> int:
        """Drop delivery keys older than Slack could redeliver them; how many."""
        cutoff = (now - DELIVERY_MEMORY).astimezone(UTC).isoformat()
        with self.db.conn:
            return self.db.execute("DELETE FROM deliveries WHERE at < ?", [cutoff]).rowcount

    # --- locks ---------------------------------------------------------------------------

    def add_lock(self, lock: Lock) -> Lock | None:
        """Store `lock`; None if stored, else the lock already set on that pattern."""
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO locks (pattern, reason, by, at) VALUES (?, ?, ?, ?)",
                [lock.pattern, lock.reason, lock.by, lock.at.astimezone(UTC).isoformat()],
            )
        if cursor.rowcount == 1:
            return None
        return next((held for held in self.locks() if held.pattern == lock.pattern), lock)

    def remove_lock(self, pattern: str) -> Lock | None:
        """Lift the lock on exactly `pattern`; the lock lifted, or None if there was none."""
        with self.db.conn:
            rows = list(
                self.db.query(
                    "DELETE FROM locks WHERE pattern = ? RETURNING pattern, reason, by, at",
                    [pattern],
                )
            )
        return _lock(rows[0]) if rows else None

    def locks(self) -> list[Lock]:
        """Every lock, oldest first."""
        return [_lock(r) for r in self.db.query("SELECT * FROM locks ORDER BY at, pattern")]

    # --- audit ---------------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO audit (at, request_id, actor, event, target, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    entry.at.isoformat(),
                    entry.request_id,
                    entry.actor,
                    entry.event,
                    entry.target,
                    entry.detail,
                ],
            )

    def history(
        self, target: str | None = None, limit: int = 20, *, request_id: int | None = None
    ) -> list[AuditEntry]:
        """The newest `limit` audit entries, newest first, for one target or request if given."""
        clauses, params = [], []
        if target:
            clauses.append("target = ?")
            params.append(target)
        if request_id is not None:
            clauses.append("request_id = ?")
            params.append(request_id)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self.db.query(
            f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", [*params, limit]
        )
        return [
            AuditEntry(
                at=datetime.fromisoformat(r["at"]),
                request_id=r["request_id"],
                actor=r["actor"],
                event=r["event"],
                target=r["target"],
                detail=r["detail"],
            )
            for r in rows
        ]


def _request(row: dict, approvals: list[Approval]) -> Request:
    return Request(
        id=row["id"],
        action=action_from_json(row["action"]),
        requester=row["requester"],
        channel=row["channel"],
        message_ts=row["message_ts"],
        state=State(row["state"]),
        preview=Preview.model_validate(json.loads(row["preview"])) if row["preview"] else None,
        outcome=Outcome.model_validate(json.loads(row["outcome"])) if row["outcome"] else None,
        created_at=datetime.fromisoformat(row["created_at"]),
        updated_at=datetime.fromisoformat(row["updated_at"]),
        expires_at=datetime.fromisoformat(row["expires_at"]),
        decided_by=row["decided_by"],
        emergency=row.get("emergency"),
        approvals=approvals,
    )


def _lock(row: dict) -> Lock:
    return Lock(
        pattern=row["pattern"],
        reason=row["reason"],
        by=row["by"],
        at=datetime.fromisoformat(row["at"]),
    )
