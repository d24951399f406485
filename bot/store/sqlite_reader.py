"""Long reads of a SQLite database, each on a connection of its own: what the requests add up
to (`/promote stats`, the metrics) and the audit log streamed out (`promote-bot audit`).

A connection of its own per call, so a read that takes a while runs in a worker thread while
the bot's own connection goes on serving (WAL lets readers and the writer work at once), and a
reader never changes the database: `promote-bot audit` opens it read-only, without upgrading
its schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.core.model import AuditEntry
from bot.core.ports import StoreError
from bot.store import figures
from bot.store.figures import Dialect

SETTING = "PROMOTE_BOT_DB"
BUSY_TIMEOUT_MS = 5000


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


DIALECT = Dialect(
    mark="?",
    seconds=lambda a, b: f"ROUND((julianday({b}) - julianday({a})) * 86400.0, 3)",
    kind="json_extract(r.action, '$.kind')",
    matches="{column} GLOB ?",
    pattern=figures.glob_pattern,
    moment=_utc,
    by_rolls_back=" INDEXED BY requests_rolls_back",
)


class SqliteReader(figures.FiguresReader):
    """Reads of one SQLite database, each on a new connection (`connect`)."""

    dialect = DIALECT

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        plain: Callable[[sqlite3.Error], str],
        *,
        shared: bool = False,
    ) -> None:
        """`plain` puts an SQLite error in words; `shared`: `connect` hands out one connection
        that others use too (an in-memory database), never to be closed here."""
        self._connect = connect
        self._plain = plain
        self._shared = shared
        self.counted = figures.FiguresCache()

    @classmethod
    def open(cls, path: Path | str) -> SqliteReader:
        """Read the database file at `path` only: never created, written or upgraded."""
        where = Path(path)
        if not where.is_file():
            raise StoreError(f"{SETTING}: {where} does not exist (or is not a file)")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(f"{where.resolve().as_uri()}?mode=ro", uri=True)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            return conn

        def plain(exc: sqlite3.Error) -> str:
            return f"{where}: {exc}"

        reader = cls(connect, plain)
        with reader._connection() as conn:  # a file that is no database says so now
            try:
                conn.execute("SELECT 1 FROM audit LIMIT 1").fetchall()
            except sqlite3.Error as exc:
                raise StoreError(
                    f"{SETTING}: {where} is not a promote-bot database ({exc})"
                ) from None
        return reader

    def _connection(self) -> closing[Any]:
        conn = self._connect()
        return closing(_Shared(conn) if self._shared else conn)

    def _rows(self, sql: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            with self._connection() as conn:
                cursor = conn.execute(sql, list(params))
                keys = [column[0] for column in cursor.description]
                return [dict(zip(keys, row, strict=True)) for row in cursor]
        except sqlite3.Error as exc:
            raise StoreError(self._plain(exc)) from exc

    def audit_entries(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        pattern: str | None = None,
    ) -> Iterator[AuditEntry]:
        sql = figures.audit_sql(self.dialect, since is not None, until is not None, bool(pattern))
        params = figures.audit_params(self.dialect, since, until, pattern)
        try:
            with self._connection() as conn:
                for row in conn.execute(sql, params):  # a cursor: row after row, as read
                    yield _entry(row)
        except sqlite3.Error as exc:
            raise StoreError(self._plain(exc)) from exc


class _Shared:
    """A connection used by others too: closing it here does nothing."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def close(self) -> None:
        pass


def _entry(row: Sequence[Any]) -> AuditEntry:
    """An entry as the database holds it (its own columns' types: nothing to validate, and a
    million of them are exported at a time)."""
    seq, at, request_id, actor, event, target, detail = row
    return AuditEntry.model_construct(
        id=seq,
        at=datetime.fromisoformat(at),
        request_id=request_id,
        actor=actor,
        event=event,
        target=target,
        detail=detail,
    )
