"""Requests, approvals and the audit log in one SQLite file (WAL), through sqlite-utils.

Every state change is a single conditional UPDATE, so two clicks, two processes or a
redelivered event can never both move a request to `executing`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import sqlite_utils

from bot.core.milestones import Milestone, OutboxEvent
from bot.core.model import (
    Approval,
    AuditEntry,
    Drift,
    Lock,
    NewRequest,
    NoticeRecord,
    Outcome,
    Preview,
    Request,
    State,
    StepRecord,
    action_from_json,
    notice_key,
)
from bot.core.ports import AskedBefore, OpenRequestExists, StoreError
from bot.core.ports.store import Notices
from bot.core.timing import Timing
from bot.store import sqlite_stages, sqlite_truth
from bot.store.figures import LongReads
from bot.store.patterns import is_pattern, prefix_range
from bot.store.sqlite_reader import SqliteReader
from bot.store.sqlite_stages import StageRows
from bot.store.sqlite_truth import TruthRows

T = TypeVar("T")
S = TypeVar("S")
SETTING = "PROMOTE_BOT_DB"
BUSY_TIMEOUT_MS = 5000
_OPEN = (State.PENDING, State.APPROVED, State.EXECUTING)  # states that hold their thing
_OPEN_SQL = ", ".join(f"'{s.value}'" for s in _OPEN)
_FINAL_SQL = ", ".join(f"'{s.value}'" for s in State if s.is_final)
# A request whose release message (or outcome reply) Slack may not show yet: the rows of the
# partial index `requests_lagging`, which `messages_due` reads, so it costs what lags, not
# what ever was. A query uses the index only if it repeats this text as one of its terms.
LAGGING = (
    "(msg_recheck_at IS NOT NULL OR message_ts IS NOT NULL AND (msg_version > msg_shown"
    f" OR (thread_posted <> 1 AND state IN ({_FINAL_SQL}))))"
)
# Schema versions after 1 (see `SqliteStore.migrate`): statements applied in one transaction.
MIGRATIONS: list[tuple[int, tuple[str, ...]]] = [
    # Deliveries are deduplicated by the inbox of acknowledged work now.
    (2, ("DROP INDEX IF EXISTS deliveries_at", "DROP TABLE IF EXISTS deliveries")),
    # When a claim on the outcome's thread reply lapses, or an uncertain one is looked for.
    # A reply claimed before it (posted, or maybe not) is looked for once, a minute on.
    (
        3,
        (
            "ALTER TABLE requests ADD COLUMN thread_until TEXT",
            "UPDATE requests SET thread_until ="
            " strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now', '+60 seconds') WHERE thread_posted = 2",
        ),
    ),
    # The journal of each execution's writes (bot/core/steps.py).
    (
        4,
        (
            "CREATE TABLE IF NOT EXISTS steps"
            " (request_id INTEGER NOT NULL REFERENCES requests (id), name TEXT NOT NULL,"
            " sent_at TEXT NOT NULL, done_at TEXT, result TEXT,"
            " PRIMARY KEY (request_id, name))",
        ),
    ),
    # Decisions carry reasons; people are told by direct message (bot/core/notify.py): the
    # outbox of those messages, and who wants none.
    (
        5,
        (
            "ALTER TABLE requests ADD COLUMN reason TEXT",
            "ALTER TABLE approvals ADD COLUMN comment TEXT",
            "CREATE TABLE IF NOT EXISTS notify_prefs"
            " (user TEXT PRIMARY KEY, enabled INTEGER NOT NULL, at TEXT NOT NULL)",
            # state: 0 owed, 1 sent, 2 claimed by a try (until `until`), 3 dropped (`detail`)
            "CREATE TABLE IF NOT EXISTS notices"
            " (key TEXT PRIMARY KEY, request_id INTEGER NOT NULL, user TEXT NOT NULL,"
            " event TEXT NOT NULL, created_at TEXT NOT NULL, state INTEGER NOT NULL DEFAULT 0,"
            " until TEXT, next_at TEXT, attempts INTEGER NOT NULL DEFAULT 0, done_at TEXT,"
            " detail TEXT)",
            "CREATE INDEX IF NOT EXISTS notices_due ON notices (state, next_at)",
        ),
    ),
    # `history <request>` reads a request's events; `history <pattern>` matches targets with
    # GLOB, which the audit_target index serves for a pattern's literal start.
    (6, ("CREATE INDEX IF NOT EXISTS audit_request ON audit (request_id)",)),
    # A write to Slack whose answer was lost may land later, over a newer one: the release
    # message is looked at again once it no longer can (bot/core/delivery.py).
    (7, ("ALTER TABLE requests ADD COLUMN msg_recheck_at TEXT",)),
    # Drift, webhooks, sightings and notes (bot/store/sqlite_truth.py).
    (8, sqlite_truth.MIGRATION),
    # What the releases add up to: `stats` and the metrics read requests by the moment they
    # ended, the export reads the audit log by time. Outgoing events: every change to a
    # request is a milestone, recorded with it; the outbox owes each receiver its events
    # (state: 0 owed, 1 sent, 2 claimed until `until`, 3 dropped).
    (
        9,
        (
            "CREATE INDEX IF NOT EXISTS requests_ended ON requests (updated_at)",
            "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
            # changes outside the bot and previews that moved: counted by event and time
            "CREATE INDEX IF NOT EXISTS audit_event ON audit (event, at)",
            "CREATE TABLE IF NOT EXISTS milestones"
            " (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id INTEGER NOT NULL,"
            " what TEXT NOT NULL, at TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS outbox"
            " (key TEXT PRIMARY KEY, receiver TEXT NOT NULL, request_id INTEGER NOT NULL,"
            " milestone TEXT NOT NULL, body TEXT NOT NULL, created_at TEXT NOT NULL,"
            " state INTEGER NOT NULL DEFAULT 0, until TEXT, next_at TEXT,"
            " attempts INTEGER NOT NULL DEFAULT 0, done_at TEXT, detail TEXT)",
            "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at)",
        ),
    ),
    # Stages in order, soak, auto-promotion, schedules (bot/store/sqlite_stages.py).
    (10, sqlite_stages.MIGRATION),
    # The acknowledged work (inbox key) that asked for each request: one request at most per
    # command, however often it is done (NULL for the bot's own and the shell's).
    (
        11,
        (
            "ALTER TABLE requests ADD COLUMN origin TEXT",
            "CREATE UNIQUE INDEX IF NOT EXISTS requests_origin ON requests (origin)",
        ),
    ),
    # Flat costs as history grows: what the timed jobs look for every few seconds (messages
    # that lag, direct messages not sent) in partial indexes of just those rows.
    (
        12,
        (
            f"CREATE INDEX IF NOT EXISTS requests_lagging ON requests (id) WHERE {LAGGING}",
            "CREATE INDEX IF NOT EXISTS notices_unsent ON notices (created_at)"
            " WHERE state IN (0, 2)",
        ),
    ),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]
# An outbox row to send now: owed and past its backoff, or claimed by a try whose time ran out
# (notices, events; two parameters: now, now).
_DUE = "(state = 0 AND (next_at IS NULL OR next_at <= ?)) OR (state = 2 AND until <= ?)"


def _check_path(path: Path) -> None:
    """What can be told before SQLite tries: a missing folder, a folder where the file goes."""
    if not path.parent.is_dir():
        raise StoreError(f"{SETTING}: the folder {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise StoreError(f"{SETTING}: {path} is not a file")


def _enable_wal(db: sqlite_utils.Database) -> None:
    """Put the file in WAL mode (it stays so), waiting up to the busy timeout for the lock.

    The switch reads the file, then takes its write lock. SQLite answers "locked" at once,
    without its busy timeout, when another connection holds that lock meanwhile: the case of
    processes opening a new database together, one of them switching or upgrading it. Tried
    again until it has waited as long as any other lock; a file in WAL mode already is left."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    pause = 0.002
    while True:
        try:
            db.enable_wal()
            return
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def _locked(exc: sqlite3.Error) -> bool:
    """Whether SQLite gave up on a lock another connection holds ("locked", "busy")."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _plain(exc: sqlite3.Error, path: object) -> str:
    """An SQLite error in words a person running the bot can act on."""
    text = str(exc).lower()
    if "not a database" in text:
        return f"{path} is not a SQLite database"
    if "readonly" in text or "read-only" in text:
        return f"{path} is read-only: the bot must be able to write it (and its folder)"
    if "unable to open" in text:
        return f"cannot open or create {path}: is its folder writable?"
    if "disk" in text and "full" in text:
        return f"the disk holding {path} is full"
    if _locked(exc):
        return f"{path} stayed locked by another process for {BUSY_TIMEOUT_MS / 1000:g} s"
    return f"{path}: {exc}"


def _guard(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def guarded(self: SqliteStore, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise StoreError(_plain(exc, self.path or ":memory:")) from exc

    return guarded


def _store_errors(cls: type[S]) -> type[S]:
    """Every public method turns an SQLite error into a `StoreError` in plain words, so a full
    disk is told to people and logged once, not shown as a traceback per command."""
    for name, method in list(vars(cls).items()):
        if not name.startswith("_") and callable(method):
            setattr(cls, name, _guard(method))
    return cls


@_store_errors
class SqliteStore(  # long reads: `self.reader`
    _store_errors(TruthRows), _store_errors(StageRows), LongReads
):
    # A local file, answered in microseconds, on the one thread its connection belongs to:
    # called where it is needed, never on a worker thread (`call_store`). Its long reads
    # (figures, the export) are the exception: connections of their own (`self.reader`).
    off_loop = False

    def __init__(self, path: Path | str | None = None) -> None:
        """Open (and create if needed) the database at `path`; None keeps it in memory.

        Start-up proves the database can be written: any problem is a `StoreError` whose one
        line names PROMOTE_BOT_DB, rather than a traceback at the first command."""
        self.path = Path(path) if path is not None else None
        try:
            if self.path is None:  # one connection, which the reader shares across threads
                memory = sqlite3.connect(":memory:", check_same_thread=False)
                self.db = sqlite_utils.Database(memory)
            else:
                _check_path(self.path)
                self.db = sqlite_utils.Database(str(self.path))
                _enable_wal(self.db)
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # WAL with NORMAL survives any process crash; only the last commits before a power
            # loss can go. The one commit that must not, the claim before a provider call, FULL.
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.migrate()
            with self.db.conn:  # a write, so a read-only file is told now, not at first use
                self.db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('opened_at', ?)",
                    [datetime.now(UTC).isoformat()],
                )
                self.db.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('installation', ?)",
                    [secrets.token_hex(4)],
                )
            self.installation = str(
                self.db.execute("SELECT value FROM meta WHERE key = 'installation'").fetchone()[0]
            )
            self.reader = self._reader()
        except sqlite3.Error as exc:
            raise StoreError(f"{SETTING}: {_plain(exc, self.path or ':memory:')}") from None
        except StoreError as exc:  # from a guarded method: the words are plain already
            text = str(exc)
            raise StoreError(text if text.startswith(SETTING) else f"{SETTING}: {text}") from None

    def _reader(self) -> SqliteReader:
        """Long reads (figures, the export) on connections of their own."""
        where = self.path

        def plain(exc: sqlite3.Error) -> str:
            return _plain(exc, where or ":memory:")

        if where is None:
            return SqliteReader(lambda: self.db.conn, plain, shared=True)

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(str(where))
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            return conn

        return SqliteReader(connect, plain)

    def migrate(self) -> int:
        """Bring the schema to SCHEMA_VERSION (kept in `PRAGMA user_version`); the version
        reached. Version 1 is the schema as it grew before it had versions, reached by idempotent
        steps that tolerate another process taking them at the same time; each later version is
        one `BEGIN IMMEDIATE` transaction that checks the version again, so processes starting
        together apply it once. A database newer than this bot is refused."""
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{SETTING}: {self.path or ':memory:'} has schema version {current}, newer than"
                f" this promote-bot knows ({SCHEMA_VERSION}): upgrade the bot"
            )
        if current < 1:
            self._baseline()
            self._advance(1, ())  # never back: another process may be at 2 already
        for version, statements in MIGRATIONS:
            if self.schema_version() < version:
                self._advance(version, statements)
        return self.schema_version()

    def _advance(self, version: int, statements: Sequence[str]) -> None:
        """Apply `statements` and record `version`, unless this database is there already:
        one `BEGIN IMMEDIATE` transaction (the write lock), so one process migrates at a time
        and each version is applied once."""
        conn = self.db.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if self.schema_version() < version:
                for statement in statements:
                    _apply(conn, statement)
                conn.execute(f"PRAGMA user_version = {version}")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    def _rows(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[dict[str, Any]]:
        """The rows a read returns, as dicts. One statement: sqlite-utils' `query` wraps every
        statement in a savepoint (to undo one that turns out to write), three statements per
        read, and the bot makes some thirty reads per promotion."""
        cursor = self.db.execute(sql, params)
        keys = [column[0] for column in cursor.description]
        return [dict(zip(keys, row, strict=True)) for row in cursor]

    def schema_version(self) -> int:
        """The schema version of this database (0: from before versions)."""
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _baseline(self) -> None:
        """Schema version 1 (less the `deliveries` table, which version 2 drops where it was).
        Idempotent: safe on any database from before versions, and from several processes at
        once."""
        with self.db.conn:
            self.db.executescript(
                """
                CREATE TABLE IF NOT EXISTS requests (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    target TEXT NOT NULL,
                    thing TEXT,
                    lease_owner TEXT,
                    lease_until TEXT,
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
                CREATE TABLE IF NOT EXISTS meta (
                    key TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                );
                CREATE TABLE IF NOT EXISTS inbox (
                    key TEXT PRIMARY KEY,
                    kind TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    received_at TEXT NOT NULL,
                    attempts INTEGER NOT NULL DEFAULT 0,
                    owner TEXT,
                    lease_until TEXT,
                    done_at TEXT
                );
                CREATE INDEX IF NOT EXISTS inbox_waiting ON inbox (done_at, lease_until);
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

        for column in ("thing", "lease_owner", "lease_until"):  # a database from before them
            self._add_column("requests", column, "TEXT")
        self._add_column("requests", "rolls_back", "INTEGER")  # from before rollbacks
        self._add_column("requests", "emergency", "TEXT")  # from before break-glass requests
        # What Slack must show converges to the stored truth: every change bumps msg_version,
        # the sender records the version it delivered (msg_shown), and the outcome's thread
        # reply is owed once the request ends (thread_posted).
        for column, kind in (
            ("msg_version", "INTEGER NOT NULL DEFAULT 1"),
            ("msg_shown", "INTEGER NOT NULL DEFAULT 0"),
            ("thread_posted", "INTEGER NOT NULL DEFAULT 0"),
            ("msg_attempts", "INTEGER NOT NULL DEFAULT 0"),
            ("msg_next_at", "TEXT"),
            ("copies", "TEXT NOT NULL DEFAULT '[]'"),
        ):
            # What ended before is shown already: its outcome reply is not owed again.
            backfill = (
                "UPDATE requests SET thread_posted = 1, msg_shown = msg_version"
                f" WHERE state IN ({_FINAL_SQL})"
                if column == "thread_posted"
                else ""
            )
            self._add_column("requests", column, kind, backfill)
        with self.db.conn:
            self.db.execute(
                "CREATE INDEX IF NOT EXISTS requests_rolls_back ON requests (rolls_back)"
            )
        with self.db.conn:
            # At most one open request per thing: the database refuses a second one, so two
            # processes asking at once can't both post a release message.
            self.db.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS requests_open_thing ON requests (thing)"
                f" WHERE state IN ({_OPEN_SQL})"
            )

    def _add_column(self, table: str, column: str, kind: str, backfill: str = "") -> bool:
        """Add a column a database from before it lacks, with `backfill` (SQL) in the same
        transaction, so a crash leaves both or neither; True if this call added it."""
        if column in {c.name for c in self.db[table].columns}:
            return False
        try:
            with self.db.conn:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                if backfill:
                    self.db.execute(backfill)
        except sqlite3.OperationalError as exc:  # another process added it just now
            if "duplicate column" not in str(exc):
                raise
            return False
        return True

    def close(self) -> None:
        self.db.close()

    # --- requests ------------------------------------------------------------------------

    def create_request(self, new: NewRequest) -> Request:
        action = new.action
        try:
            with self.db.conn:
                cursor = self.db.execute(
                    "INSERT INTO requests (target, thing, action, requester, channel, state,"
                    " preview, created_at, updated_at, expires_at, rolls_back, emergency,"
                    " timing, due_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        action.target,
                        action.thing,
                        action.model_dump_json(),
                        new.requester,
                        new.channel,
                        State.PENDING.value,
                        new.preview.model_dump_json() if new.preview else None,
                        _utc(new.created_at),
                        _utc(new.created_at),
                        _utc(new.expires_at),
                        new.rolls_back,
                        new.emergency,
                        new.timing.model_dump_json() if new.timing else None,
                        _utc(new.due_at) if new.due_at else None,
                        new.origin,
                    ],
                )
                assert cursor.lastrowid is not None
                self._owe(cursor.lastrowid, new.notices, new.created_at)
                self._milestone(cursor.lastrowid, "requested", new.created_at)
        except sqlite3.IntegrityError:
            made = self.made_by(new.origin) if new.origin is not None else None
            if made is not None:
                raise AskedBefore(made.id) from None
            existing = self.open_for(action.thing) if action.thing else None
            if existing is None:
                raise
            raise OpenRequestExists(existing.id) from None
        request_id = cursor.lastrowid
        assert request_id is not None
        request = self.get(request_id)
        assert request is not None
        return request

    def made_by(self, origin: str) -> Request | None:
        rows = self._rows("SELECT id FROM requests WHERE origin = ?", [origin])
        return self.get(rows[0]["id"]) if rows else None

    def open_for(self, thing: str) -> Request | None:
        rows = list(
            self._rows(
                "SELECT id FROM requests INDEXED BY requests_open_thing"
                f" WHERE thing = ? AND state IN ({_OPEN_SQL})",
                [thing],
            )
        )
        return self.get(rows[0]["id"]) if rows else None

    def shown_as(self, request_id: int) -> tuple[State, int] | None:
        rows = self._rows("SELECT state, msg_version FROM requests WHERE id = ?", [request_id])
        return (State(rows[0]["state"]), rows[0]["msg_version"]) if rows else None

    def get(self, request_id: int) -> Request | None:
        """One request, its approvals and the rollback that undid it, read in one statement
        (one snapshot, and a third of the statements: a promotion reads its request often)."""
        rows = self._rows(_requests_sql("WHERE r.id = ?"), [request_id])
        return _request(rows[0]) if rows else None

    def in_states(
        self,
        states: Sequence[State],
        *,
        expired_by: datetime | None = None,
        updated_since: datetime | None = None,
    ) -> list[Request]:
        """Requests in `states`, oldest first; only those expired by then, or changed since
        then, if given."""
        marks = ", ".join("?" for _ in states)
        # The planner, once ANALYZE (or `PRAGMA optimize`) has told it how few states there
        # are, would read every request in id order rather than the few open ones by index.
        # Changed since then: read by the time of the change (requests_ended), so the cost is
        # the requests of that window, not all of a year's in those states (settle).
        index = "requests_open" if updated_since is None else "requests_ended"
        where = f"INDEXED BY {index} WHERE r.state IN ({marks})"
        params: list[str] = [s.value for s in states]
        if expired_by is not None:
            where += " AND r.expires_at <= ?"
            params.append(_utc(expired_by))
        if updated_since is not None:
            where += " AND r.updated_at >= ?"
            params.append(_utc(updated_since))
        rows = self._rows(_requests_sql(where + " ORDER BY r.id"), params)
        return [_request(row) for row in rows]

    def set_message(self, request_id: int, ts: str, *, shown: int | None = None) -> None:
        """Record the release message's ts (and the version it showed when posted)."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET message_ts = ?, msg_shown = MAX(msg_shown, COALESCE(?, 0))"
                " WHERE id = ?",
                [ts, shown, request_id],
            )

    def add_copy(self, request_id: int, ts: str) -> bool:
        """Adopt another copy of the release message (a post that was retried); it is kept in
        step with the request from now on. False if it is known already."""
        with self.db.conn:  # one statement: another process may adopt one at the same time
            changed = self.db.execute(
                "UPDATE requests SET copies = json_insert(copies, '$[#]', ?),"
                " msg_version = msg_version + 1"
                " WHERE id = ? AND message_ts IS NOT ?"
                " AND NOT EXISTS (SELECT 1 FROM json_each(requests.copies) WHERE value = ?)",
                [ts, request_id, ts, ts],
            ).rowcount
        return changed > 0

    def touch_message(self, request_id: int) -> None:
        """Something shown on the release message changed outside the request's own row."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET msg_version = msg_version + 1 WHERE id = ?", [request_id]
            )

    def messages_due(self, now: datetime) -> list[int]:
        """Requests whose release message (or outcome reply) lags behind what is stored, or
        is to be looked at again after a write whose answer was lost."""
        rows = self._rows(
            f"SELECT id FROM requests INDEXED BY requests_lagging WHERE {LAGGING}"
            " AND (msg_recheck_at <= ? OR message_ts IS NOT NULL"
            f" AND (msg_version > msg_shown OR (state IN ({_FINAL_SQL}) AND (thread_posted = 0"
            " OR (thread_posted = 2 AND thread_until <= ?)))))"
            " AND (msg_next_at IS NULL OR msg_next_at <= ?) ORDER BY id",
            [_utc(now), _utc(now), _utc(now)],
        )
        return [row["id"] for row in rows]

    def message_unsettled(self, request_id: int, look_at: datetime) -> None:
        """A write to the release message may still land: look at it again from `look_at`."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET msg_recheck_at = MAX(COALESCE(msg_recheck_at, ''), ?)"
                " WHERE id = ?",
                [_utc(look_at), request_id],
            )

    def message_writing(self, request_id: int, now: datetime, until: datetime) -> None:
        """A write to the release message may land until `until` (see `Store`). When another
        may still land, the later time plus a millisecond is kept: never exactly what one
        writer set, so no writer's `message_written` can clear it."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET msg_recheck_at = CASE"
                " WHEN msg_recheck_at IS NULL OR msg_recheck_at <= ? THEN ?"
                " ELSE strftime('%Y-%m-%dT%H:%M:%f+00:00', MAX(msg_recheck_at, ?),"
                " '+0.001 seconds') END WHERE id = ?",
                [_utc(now), _utc(until), _utc(until), request_id],
            )

    def message_written(self, request_id: int, until: datetime) -> None:
        """Slack answered the write recorded with `until`: cleared if nothing else is owed."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET msg_recheck_at = NULL WHERE id = ? AND msg_recheck_at = ?",
                [request_id, _utc(until)],
            )

    def message_settled(self, request_id: int, since: datetime) -> None:
        """Slack was brought to the stored version by writes sent from `since` on: nothing
        sent before the look was due can still land over them."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET msg_recheck_at = NULL WHERE id = ? AND msg_recheck_at <= ?",
                [request_id, _utc(since)],
            )

    def message_shown(self, request_id: int, version: int, *, thread: bool = False) -> None:
        """Slack shows `version` (and the outcome's reply, if `thread`)."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET msg_shown = MAX(msg_shown, ?), msg_attempts = 0,"
                " msg_next_at = NULL, thread_posted = CASE WHEN ? THEN 1 ELSE thread_posted END,"
                " thread_until = CASE WHEN ? THEN NULL ELSE thread_until END WHERE id = ?",
                [version, int(thread), int(thread), request_id],
            )

    def message_failed(self, request_id: int, next_try: Callable[[int], datetime]) -> int:
        """Slack refused or failed: count the attempt and try again at `next_try(attempts)`;
        how many attempts so far."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET msg_attempts = msg_attempts + 1 WHERE id = ?", [request_id]
            )
            [row] = self._rows("SELECT msg_attempts FROM requests WHERE id = ?", [request_id])
            attempts = int(row["msg_attempts"])
            self.db.execute(
                "UPDATE requests SET msg_next_at = ? WHERE id = ?",
                [_utc(next_try(attempts)), request_id],
            )
        return attempts

    def claim_thread(
        self, request_id: int, now: datetime, until: datetime
    ) -> Literal["post", "check"] | None:
        """Take the duty of the outcome's thread reply until `until` (see `Store`)."""
        with self.db.conn:
            if self.db.execute(
                "UPDATE requests SET thread_posted = 2, thread_until = ?"
                " WHERE id = ? AND thread_posted = 0",
                [_utc(until), request_id],
            ).rowcount:
                return "post"
            if self.db.execute(
                "UPDATE requests SET thread_until = ?"
                " WHERE id = ? AND thread_posted = 2 AND thread_until <= ?",
                [_utc(until), request_id, _utc(now)],
            ).rowcount:
                return "check"
        return None

    def thread_uncertain(self, request_id: int, held_until: datetime, look_at: datetime) -> None:
        """The reply may or may not have reached Slack: look for it from `look_at` on."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET thread_until = ?"
                " WHERE id = ? AND thread_posted = 2 AND thread_until = ?",
                [_utc(look_at), request_id, _utc(held_until)],
            )

    def release_thread(self, request_id: int, held_until: datetime) -> None:
        """The reply certainly did not reach Slack: it is owed again."""
        with self.db.conn:
            self.db.execute(
                "UPDATE requests SET thread_posted = 0, thread_until = NULL"
                " WHERE id = ? AND thread_posted = 2 AND thread_until = ?",
                [request_id, _utc(held_until)],
            )

    def add_approval(
        self,
        request_id: int,
        user: str,
        at: datetime,
        *,
        comment: str | None = None,
        notices: Notices = (),
    ) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO approvals (request_id, user, at, comment)"
                " SELECT ?, ?, ?, ? WHERE EXISTS"
                " (SELECT 1 FROM requests WHERE id = ? AND state IN (?, ?))",
                [
                    request_id,
                    user,
                    at.isoformat(),
                    comment,
                    request_id,
                    State.PENDING,
                    State.APPROVED,
                ],
            )
            if cursor.rowcount == 1:
                self.db.execute(
                    "UPDATE requests SET msg_version = msg_version + 1 WHERE id = ?", [request_id]
                )
                self._owe(request_id, notices, at)
                self._milestone(request_id, f"approved:{user}", at)
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
        lease: tuple[str, datetime] | None = None,
        reason: str | None = None,
        notices: Notices = (),
    ) -> bool:
        """The compare-and-set: one UPDATE that only matches in one of `from_states`. Moving to
        `executing` takes `lease` (owner, until); leaving it drops the lease. `notices` are
        owed in the same transaction, only if it moved."""
        marks = ", ".join("?" for _ in from_states)
        durable = to is State.EXECUTING  # the provider is called next: this must reach the disk
        if durable:
            self.db.execute("PRAGMA synchronous = FULL")
        try:
            return self._transition(
                request_id, marks, from_states, to, at, (by, reason), outcome, lease, notices
            )
        finally:
            if durable:
                self.db.execute("PRAGMA synchronous = NORMAL")

    def renew(self, request_id: int, owner: str, until: datetime) -> bool:
        """Extend `owner`'s lease on an executing request; False if it is no longer theirs."""
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE requests SET lease_until = ? WHERE id = ? AND state = ?"
                " AND lease_owner = ?",
                [_utc(until), request_id, State.EXECUTING.value, owner],
            )
        return cursor.rowcount == 1

    def lapsed(self, now: datetime, *, unleased_before: datetime) -> list[Request]:
        """Executing requests whose lease ran out (nobody is working on them any more);
        requests from before leases count as lapsed once untouched since `unleased_before`."""
        rows = self._rows(
            "SELECT id FROM requests INDEXED BY requests_open WHERE state = ? AND"
            " (lease_until <= ? OR (lease_until IS NULL AND updated_at <= ?)) ORDER BY id",
            [State.EXECUTING.value, _utc(now), _utc(unleased_before)],
        )
        return [r for r in (self.get(row["id"]) for row in rows) if r is not None]

    def take_over(
        self, request_id: int, owner: str, now: datetime, until: datetime, unleased_before: datetime
    ) -> bool:
        """Take a lapsed lease (compare-and-set): only one process recovers a request."""
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE requests SET lease_owner = ?, lease_until = ? WHERE id = ? AND state = ?"
                " AND (lease_until <= ? OR (lease_until IS NULL AND updated_at <= ?))",
                [
                    owner,
                    _utc(until),
                    request_id,
                    State.EXECUTING.value,
                    _utc(now),
                    _utc(unleased_before),
                ],
            )
        return cursor.rowcount == 1

    # --- acknowledged work ---------------------------------------------------------------

    def inbox_put(self, key: str, kind: str, payload: dict, at: datetime) -> bool:
        """Record work acknowledged to Slack before the ack; False for a redelivered `key`."""
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO inbox (key, kind, payload, received_at) VALUES (?, ?, ?, ?)",
                [key, kind, json.dumps(payload), _utc(at)],
            )
        return cursor.rowcount == 1

    def inbox_claim(self, key: str, owner: str, now: datetime, until: datetime) -> dict | None:
        """Take the item `key` to work on, if it is not done and nobody holds it; its
        `kind`, `payload` and `attempts` (counting this one), or None."""
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE inbox SET owner = ?, lease_until = ?, attempts = attempts + 1"
                " WHERE key = ? AND done_at IS NULL AND (lease_until IS NULL OR lease_until <= ?)",
                [owner, _utc(until), key, _utc(now)],
            )
        if cursor.rowcount != 1:
            return None
        [row] = self._rows("SELECT * FROM inbox WHERE key = ?", [key])
        return {**row, "payload": json.loads(row["payload"])}

    def inbox_renew(self, key: str, owner: str, until: datetime) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE inbox SET lease_until = ? WHERE key = ? AND owner = ? AND done_at IS NULL",
                [_utc(until), key, owner],
            )
        return cursor.rowcount == 1

    def inbox_done(self, key: str, at: datetime) -> None:
        with self.db.conn:
            self.db.execute("UPDATE inbox SET done_at = ? WHERE key = ?", [_utc(at), key])

    def inbox_waiting(self, now: datetime, *, received_before: datetime) -> list[str]:
        """Keys of acknowledged work not done, nobody holding it, received before then."""
        rows = self._rows(
            "SELECT key FROM inbox WHERE done_at IS NULL AND received_at <= ?"
            " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY received_at",
            [_utc(received_before), _utc(now)],
        )
        return [row["key"] for row in rows]

    def _transition(
        self,
        request_id: int,
        marks: str,
        from_states: Sequence[State],
        to: State,
        at: datetime,
        decided: tuple[str | None, str | None],
        outcome: Outcome | None,
        lease: tuple[str, datetime] | None,
        notices: Notices,
    ) -> bool:
        owner, until = lease if to is State.EXECUTING and lease else (None, None)
        by, reason = decided
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE requests SET state = ?, updated_at = ?,"
                " decided_by = COALESCE(?, decided_by), reason = COALESCE(?, reason),"
                " outcome = COALESCE(?, outcome),"
                " lease_owner = ?, lease_until = ?, msg_version = msg_version + 1"
                f" WHERE id = ? AND state IN ({marks})",
                [
                    to.value,
                    at.isoformat(),
                    by,
                    reason,
                    outcome.model_dump_json() if outcome else None,
                    owner,
                    _utc(until) if until else None,
                    request_id,
                    *(s.value for s in from_states),
                ],
            )
            if cursor.rowcount == 1:
                self._owe(request_id, notices, at)
                self._milestone(request_id, to.value, at)
        return cursor.rowcount == 1

    def forget_done(self, before: datetime, most: int) -> int:
        """Remove up to `most` items of acknowledged work done before then, oldest first (one
        short transaction, on the index of `done_at`); how many."""
        with self.db.conn:
            return self.db.execute(
                "DELETE FROM inbox WHERE rowid IN (SELECT rowid FROM inbox INDEXED BY"
                " inbox_waiting WHERE done_at IS NOT NULL AND done_at < ? ORDER BY done_at"
                " LIMIT ?)",
                [_utc(before), most],
            ).rowcount

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
        return [_lock(r) for r in self._rows("SELECT * FROM locks ORDER BY at, pattern")]

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
        """The newest `limit` audit entries, newest first: of the targets `target` matches (a
        target, or a pattern with `*` and `?` as fnmatch reads them) and of one request, if
        given."""
        if request_id is not None:  # a request's entries are few: its target is a filter
            clauses, params = ["request_id = ?"], [request_id]
            if is_pattern(target):
                clauses.append("target GLOB ?")  # case-sensitive as fnmatchcase
                params.append(_glob(str(target)))
            elif target:
                clauses.append("target = ?")
                params.append(target)
            rows = self._rows(
                f"SELECT * FROM audit INDEXED BY audit_request WHERE {' AND '.join(clauses)}"
                " ORDER BY id DESC LIMIT ?",
                [*params, limit],
            )
        elif is_pattern(target):
            rows = self._pattern_history(str(target), limit)
        elif target:  # the index holds each target's entries in id order: the newest first
            rows = self._rows(
                "SELECT * FROM audit INDEXED BY audit_target WHERE target = ?"
                " ORDER BY id DESC LIMIT ?",
                [target, limit],
            )
        else:
            rows = self._rows("SELECT * FROM audit ORDER BY id DESC LIMIT ?", [limit])
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

    def _pattern_history(self, pattern: str, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` entries of the targets `pattern` matches (bot/store/patterns.py):
        the distinct targets in its range, one index seek each; the `limit` of them with the
        newest entries; their newest `limit` entries each."""
        start, end = prefix_range(pattern)
        below = "" if end is None else " AND target < :end"
        newest = self._rows(
            "WITH RECURSIVE t(target) AS ("
            f" SELECT MIN(target) FROM audit WHERE target >= :start{below}"
            " UNION ALL SELECT (SELECT MIN(target) FROM audit"
            f" WHERE target > t.target{below}) FROM t WHERE t.target IS NOT NULL)"
            " SELECT target FROM t WHERE target GLOB :glob"
            " ORDER BY (SELECT MAX(id) FROM audit WHERE target = t.target) DESC LIMIT :limit",
            {"start": start, "end": end, "glob": _glob(pattern), "limit": limit},
        )
        rows = [
            row
            for each in newest
            for row in self._rows(
                "SELECT * FROM audit INDEXED BY audit_target WHERE target = ?"
                " ORDER BY id DESC LIMIT ?",
                [each["target"], limit],
            )
        ]
        return sorted(rows, key=lambda row: row["id"], reverse=True)[:limit]

    # --- execution steps -----------------------------------------------------------------

    def step_sent(self, request_id: int, name: str, at: datetime, owner: str | None = None) -> bool:
        """Mark a step sent before its write goes out; False if it is marked already, or (with
        `owner`) if `owner` no longer holds the lease on the executing request."""
        sql = "INSERT OR IGNORE INTO steps (request_id, name, sent_at) SELECT ?, ?, ?"
        params: list[Any] = [request_id, name, _utc(at)]
        if owner is not None:
            sql += (
                " WHERE EXISTS (SELECT 1 FROM requests WHERE id = ? AND state = ?"
                " AND lease_owner = ? AND lease_until > ?)"
            )
            params += [request_id, State.EXECUTING.value, owner, _utc(at)]
        with self._durably():  # the write goes out next: the mark must reach the disk
            cursor = self.db.execute(sql, params)
        return cursor.rowcount == 1

    def step_done(
        self, request_id: int, name: str, result: Mapping[str, Any], at: datetime
    ) -> None:
        with self._durably():  # a power loss must not lose an answer the provider gave
            self.db.execute(
                "UPDATE steps SET done_at = ?, result = ? WHERE request_id = ? AND name = ?",
                [_utc(at), json.dumps(dict(result)), request_id, name],
            )

    @contextlib.contextmanager
    def _durably(self) -> Iterator[None]:
        """One transaction committed with synchronous FULL (the journal's marks and answers),
        as the move to executing is."""
        self.db.execute("PRAGMA synchronous = FULL")
        try:
            with self.db.conn:
                yield
        finally:
            self.db.execute("PRAGMA synchronous = NORMAL")

    def step_unsent(self, request_id: int, name: str) -> None:
        with self.db.conn:
            self.db.execute(
                "DELETE FROM steps WHERE request_id = ? AND name = ? AND done_at IS NULL",
                [request_id, name],
            )

    def steps(self, request_id: int) -> list[StepRecord]:
        rows = self._rows(
            "SELECT * FROM steps WHERE request_id = ? ORDER BY sent_at, rowid", [request_id]
        )
        return [
            StepRecord(
                name=r["name"],
                sent_at=datetime.fromisoformat(r["sent_at"]),
                done_at=datetime.fromisoformat(r["done_at"]) if r["done_at"] else None,
                result=json.loads(r["result"]) if r["result"] else {},
            )
            for r in rows
        ]

    # --- direct messages ----------------------------------------------------------------

    def _owe(self, request_id: int, notices: Notices, at: datetime) -> None:
        """Record direct messages owed (inside the caller's transaction); each key once."""
        if notices:
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO notices (key, request_id, user, event, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (notice_key(request_id, user, event), request_id, user, event, _utc(at))
                    for user, event in notices
                ],
            )

    def set_notify(self, user: str, enabled: bool, at: datetime) -> None:
        with self.db.conn:
            self.db.execute(
                "INSERT INTO notify_prefs (user, enabled, at) VALUES (?, ?, ?)"
                " ON CONFLICT (user) DO UPDATE SET enabled = excluded.enabled, at = excluded.at",
                [user, int(enabled), _utc(at)],
            )

    def notify_enabled(self, user: str) -> bool:
        rows = self._rows("SELECT enabled FROM notify_prefs WHERE user = ?", [user])
        return not rows or bool(rows[0]["enabled"])

    def notices_due(self, now: datetime, limit: int) -> list[NoticeRecord]:
        at = _utc(now)
        rows = self._rows(
            "SELECT key, request_id, user, event, created_at, attempts"
            f" FROM notices INDEXED BY notices_unsent WHERE state IN (0, 2) AND ({_DUE})"
            " ORDER BY created_at, rowid LIMIT ?",
            [at, at, limit],
        )
        return [NoticeRecord.model_validate(row) for row in rows]

    def claim_notice(
        self, key: str, now: datetime, until: datetime
    ) -> Literal["post", "check"] | None:
        with self.db.conn:
            if self.db.execute(
                "UPDATE notices SET state = 2, until = ? WHERE key = ? AND state = 0"
                " AND (next_at IS NULL OR next_at <= ?)",
                [_utc(until), key, _utc(now)],
            ).rowcount:
                return "post"
            if self.db.execute(
                "UPDATE notices SET until = ? WHERE key = ? AND state = 2 AND until <= ?",
                [_utc(until), key, _utc(now)],
            ).rowcount:
                return "check"
        return None

    def notice_sent(self, key: str, at: datetime) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE notices SET state = 1, until = NULL, done_at = ? WHERE key = ?",
                [_utc(at), key],
            )

    def notice_uncertain(self, key: str, held_until: datetime, look_at: datetime) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE notices SET until = ?, attempts = attempts + 1"
                " WHERE key = ? AND state = 2 AND until = ?",
                [_utc(look_at), key, _utc(held_until)],
            )

    def notice_retry(
        self, key: str, held_until: datetime, next_try: Callable[[int], datetime]
    ) -> int:
        with self.db.conn:
            rows = self._rows(
                "UPDATE notices SET state = 0, until = NULL, attempts = attempts + 1"
                " WHERE key = ? AND state = 2 AND until = ? RETURNING attempts",
                [key, _utc(held_until)],
            )
            if not rows:
                return 0
            attempts = int(rows[0]["attempts"])
            self.db.execute(
                "UPDATE notices SET next_at = ? WHERE key = ?", [_utc(next_try(attempts)), key]
            )
        return attempts

    def notice_dropped(self, key: str, at: datetime, why: str) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE notices SET state = 3, until = NULL, done_at = ?, detail = ?"
                " WHERE key = ? AND state IN (0, 2)",
                [_utc(at), why, key],
            )

    # --- outgoing events (bot/core/outbox.py) --------------------------------------------

    def _milestone(self, request_id: int, what: str, at: datetime) -> None:
        """Record a change to a request for the outbox (inside the caller's transaction)."""
        self.db.conn.execute(
            "INSERT INTO milestones (request_id, what, at) VALUES (?, ?, ?)",
            [request_id, what, _utc(at)],
        )

    def milestones(self, limit: int) -> list[Milestone]:
        rows = self._rows(
            "SELECT seq, request_id, what, at FROM milestones ORDER BY seq LIMIT ?", [limit]
        )
        return [Milestone.model_validate(row) for row in rows]

    def fan_out(self, seqs: Sequence[int], events: Sequence[OutboxEvent]) -> int:
        with self.db.conn:
            added = self.db.conn.executemany(
                "INSERT OR IGNORE INTO outbox (key, receiver, request_id, milestone, body,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (e.key, e.receiver, e.request_id, e.milestone, e.body, _utc(e.created_at))
                    for e in events
                ],
            ).rowcount
            self.db.conn.executemany(
                "DELETE FROM milestones WHERE seq = ?", [(seq,) for seq in seqs]
            )
        return max(added, 0)

    def events_due(self, now: datetime, limit: int) -> list[OutboxEvent]:
        at = _utc(now)
        rows = self._rows(
            "SELECT key, receiver, request_id, milestone, body, created_at, attempts FROM outbox"
            f" WHERE {_DUE} ORDER BY created_at, rowid LIMIT ?",
            [at, at, limit],
        )
        return [OutboxEvent.model_validate(row) for row in rows]

    def claim_event(self, key: str, now: datetime, until: datetime) -> bool:
        at = _utc(now)
        with self.db.conn:
            return (
                self.db.execute(
                    f"UPDATE outbox SET state = 2, until = ? WHERE key = ? AND ({_DUE})",
                    [_utc(until), key, at, at],
                ).rowcount
                == 1
            )

    def event_sent(self, key: str, at: datetime) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE outbox SET state = 1, until = NULL, done_at = ?, detail = NULL,"
                " attempts = attempts + 1 WHERE key = ? AND state IN (0, 2)",
                [_utc(at), key],
            )

    def event_retry(self, key: str, held_until: datetime, next_at: datetime, why: str) -> int:
        with self.db.conn:
            rows = self._rows(
                "UPDATE outbox SET state = 0, until = NULL, next_at = ?, detail = ?,"
                " attempts = attempts + 1 WHERE key = ? AND state = 2 AND until = ?"
                " RETURNING attempts",
                [_utc(next_at), why, key, _utc(held_until)],
            )
        return int(rows[0]["attempts"]) if rows else 0

    def event_dropped(self, key: str, at: datetime, why: str) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE outbox SET state = 3, until = NULL, done_at = ?, detail = ?"
                " WHERE key = ? AND state IN (0, 2)",
                [_utc(at), why, key],
            )

    def event_counts(self) -> dict[tuple[str, str], int]:
        rows = self._rows(
            "SELECT receiver, CASE state WHEN 1 THEN 'sent' WHEN 3 THEN 'dropped' ELSE 'owed'"
            " END AS s, COUNT(*) AS n FROM outbox GROUP BY 1, 2"
        )
        return {(row["receiver"], row["s"]): int(row["n"]) for row in rows}

    def forget_events(self, before: datetime) -> int:
        with self.db.conn:
            return self.db.execute(
                "DELETE FROM outbox WHERE state IN (1, 3) AND done_at < ?", [_utc(before)]
            ).rowcount

    # --- for health checks and metrics ----------------------------------------------------

    def ping(self, at: datetime) -> None:
        """Prove the database takes a write now (readiness); a `StoreError` if not."""
        with self.db.conn:
            self.db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('ready_at', ?)", [_utc(at)]
            )

    def state_counts(self) -> dict[str, int]:
        """How many requests are in each state."""
        rows = self._rows("SELECT state, COUNT(*) AS n FROM requests GROUP BY state")
        return {row["state"]: row["n"] for row in rows}

    def inbox_undone(self) -> int:
        """Acknowledged work not done yet."""
        rows = self._rows("SELECT COUNT(*) AS n FROM inbox WHERE done_at IS NULL")
        return int(rows[0]["n"])

    def notice_counts(self) -> dict[str, int]:
        """Direct messages by state: owed (not sent yet, or being sent), sent, dropped."""
        rows = self._rows(
            "SELECT CASE state WHEN 1 THEN 'sent' WHEN 3 THEN 'dropped' ELSE 'owed' END AS s,"
            " COUNT(*) AS n FROM notices GROUP BY 1"
        )
        return {row["s"]: int(row["n"]) for row in rows}

    def executing_by(self, owner: str) -> int:
        """Requests executing under `owner`'s lease (one process)."""
        rows = self._rows(
            "SELECT COUNT(*) AS n FROM requests INDEXED BY requests_open"
            " WHERE state = ? AND lease_owner = ?",
            [State.EXECUTING.value, owner],
        )
        return int(rows[0]["n"])


def _apply(conn: sqlite3.Connection, statement: str) -> None:
    """One migration statement, idempotent: SQLite has no `ADD COLUMN IF NOT EXISTS`, so an
    `ALTER TABLE … ADD COLUMN` finding its column there already (a database that went through
    it under another number) is taken as done."""
    try:
        conn.execute(statement)
    except sqlite3.OperationalError as exc:
        adds = statement.upper().startswith("ALTER TABLE") and " ADD COLUMN " in statement.upper()
        if not (adds and "duplicate column name" in str(exc)):
            raise


def _glob(pattern: str) -> str:
    """An fnmatch pattern (`*`, `?`) as GLOB reads it: `[` taken literally."""
    return pattern.replace("[", "[[]")


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _requests_sql(where: str) -> str:
    """The requests `where` picks (`r`), each with its approvals (as JSON, sorted by
    `_request`) and the first rollback that undid it, in one statement: one snapshot."""
    return (
        "SELECT r.*, (SELECT json_group_array(json_array(a.at, a.rowid, a.user, a.comment))"
        " FROM approvals a WHERE a.request_id = r.id) AS approvals_json,"
        " (SELECT u.id FROM requests u INDEXED BY requests_rolls_back WHERE u.rolls_back = r.id"
        f" AND u.state = '{State.SUCCEEDED.value}' ORDER BY u.id LIMIT 1) AS undone_by"
        f" FROM requests r {where}"
    )


def _request(row: dict) -> Request:
    """A row of `_requests_sql`: approvals oldest first (by `at`, then as inserted)."""
    approvals = [
        Approval(user=user, at=datetime.fromisoformat(at), comment=comment)
        for at, _, user, comment in sorted(json.loads(row["approvals_json"]))
    ]
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
        reason=row.get("reason"),
        emergency=row.get("emergency"),
        approvals=approvals,
        rolls_back=row.get("rolls_back"),
        msg_version=row.get("msg_version", 1),
        copies=json.loads(row.get("copies") or "[]"),
        msg_recheck_at=_at(row.get("msg_recheck_at")),
        drift=Drift.model_validate_json(row["drift"]) if row.get("drift") else None,
        timing=Timing.model_validate_json(row["timing"]) if row.get("timing") else None,
        due_at=datetime.fromisoformat(row["due_at"]) if row.get("due_at") else None,
        rolled_back_by=row["undone_by"],
    )


def _at(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _lock(row: dict) -> Lock:
    return Lock(
        pattern=row["pattern"],
        reason=row["reason"],
        by=row["by"],
        at=datetime.fromisoformat(row["at"]),
    )
