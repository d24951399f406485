"""Long reads of a PostgreSQL database on connections of their own: what the requests add up to
(`/promote stats`, the metrics) and the audit log streamed out (`promote-bot audit`).

The store serves the bot on one connection behind a lock; a read that takes a while must not
hold it, so figures run on a second connection (from a worker thread), and each export on a
connection of its own, through a server-side cursor: rows come a batch at a time, never the
whole log at once. A reader opened for `promote-bot audit` is read-only and never upgrades the
schema. Each statement is bounded on this side too (bot/store/answering.py's `Watchdog`), a
little past the server's own statement timeout: a database that stopped answering ends a read
with an error, never a thread waiting for ever.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg

from bot.core.model import AuditEntry
from bot.core.ports import StoreError
from bot.store import figures
from bot.store.answering import Cut, Watchdog
from bot.store.figures import Dialect

BATCH = 2000  # rows a server-side cursor brings per round trip
READ_SECONDS = 20.0  # one statement of a long read, at most: past the server's own 15 s

DIALECT = Dialect(
    mark="%s",
    seconds=lambda a, b: f"ROUND(EXTRACT(EPOCH FROM ({b} - {a}))::numeric, 3)::float8",
    kind="(r.action::json ->> 'kind')",
    matches="{column} LIKE %s ESCAPE '\\'",
    pattern=figures.like_pattern,
    moment=lambda at: at,
)

Connect = Callable[[], "psycopg.Connection[dict[str, Any]]"]


class PostgresReader(figures.FiguresReader):
    """Reads of one PostgreSQL database; `connect` makes a connection set up as the store's."""

    dialect = DIALECT

    def __init__(
        self, connect: Connect, plain: Callable[[psycopg.Error], str], where: str = "database"
    ) -> None:
        """`plain` puts a psycopg error in words; `where` names the database in them."""
        self._connect = connect
        self._plain = plain
        self._where = where
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._watchdog = Watchdog(READ_SECONDS)
        self.counted = figures.FiguresCache()

    def _silent(self, exc: Cut) -> StoreError:
        return StoreError(f"the {self._where} is not answering ({exc})")

    def _connection(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                self._conn.close()
            self._conn = self._connect()
        return self._conn

    def _rows(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            with self._lock:
                return self._connection().execute(sql, list(params)).fetchall()  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise StoreError(self._plain(exc)) from exc

    def check(self) -> None:
        """A `StoreError` unless this is a promote-bot database that answers."""
        self._rows("SELECT 1 FROM audit LIMIT 1", [])

    def close(self) -> None:
        self._watchdog.close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def audit_entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        pattern: str | None = None,
    ) -> Iterator[AuditEntry]:
        sql = figures.audit_sql(self.dialect, since is not None, until is not None, bool(pattern))
        params = figures.audit_params(self.dialect, since, until, pattern)
        try:
            conn = self._connect()
        except psycopg.Error as exc:
            raise StoreError(self._plain(exc)) from exc
        watchdog = Watchdog(READ_SECONDS)  # this export's own: it runs beside the figures
        try:
            with conn.transaction(), conn.cursor(name="promote_bot_audit") as cursor:
                with watchdog.watching(conn.fileno()):
                    cursor.execute(sql, params)  # type: ignore[arg-type]
                while True:
                    with watchdog.watching(conn.fileno()):  # each batch: the writing is not
                        rows = cursor.fetchmany(BATCH)
                    if not rows:
                        break
                    for row in rows:  # the columns' own types: nothing to validate
                        yield AuditEntry.model_construct(
                            id=row["id"],
                            at=row["at"],
                            request_id=row["request_id"],
                            actor=row["actor"],
                            event=row["event"],
                            target=row["target"],
                            detail=row["detail"],
                        )
        except Cut as exc:
            raise self._silent(exc) from None
        except psycopg.Error as exc:
            raise StoreError(self._plain(exc)) from exc
        finally:
            watchdog.close()
            conn.close()


def read_only(connect: Connect) -> Connect:
    """Connections that refuse to write, for a reader opened outside the bot."""

    def connect_read_only() -> psycopg.Connection[dict[str, Any]]:
        conn = connect()
        conn.execute("SET default_transaction_read_only = on")
        return conn

    return connect_read_only
