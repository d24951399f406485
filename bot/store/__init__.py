"""Persistence: the only package that talks to the database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from bot.store.sqlite import SqliteStore
from bot.store.sqlite_reader import SqliteReader

if TYPE_CHECKING:
    from bot.store.postgres import PostgresStore
    from bot.store.postgres_reader import PostgresReader

AnyStore: TypeAlias = "SqliteStore | PostgresStore"
AnyReader: TypeAlias = "SqliteReader | PostgresReader"
SCHEMES = ("postgresql://", "postgres://")  # libpq's URI schemes


def is_postgres(where: object) -> bool:
    """Whether a PROMOTE_BOT_DB value names a PostgreSQL database (a libpq URI)."""
    return isinstance(where, str) and where.lower().startswith(SCHEMES)


def open_any(where: Path | str) -> AnyStore:
    """The store PROMOTE_BOT_DB names: PostgreSQL for a postgresql:// (or postgres://) URI,
    else the SQLite file at that path. psycopg is imported only for PostgreSQL (it takes a
    third of a second)."""
    if is_postgres(where):
        from bot.store.postgres import PostgresStore

        return PostgresStore(str(where))
    return SqliteStore(where)


def open_reader(where: Path | str) -> AnyReader:
    """The database PROMOTE_BOT_DB names, to read only: never created, written or upgraded
    (`promote-bot audit` may run against the database a bot is serving from)."""
    if is_postgres(where):
        from bot.store.postgres import open_reader as open_postgres

        return open_postgres(str(where))
    return SqliteReader.open(where)


__all__ = ["AnyReader", "AnyStore", "SqliteStore", "is_postgres", "open_any", "open_reader"]
