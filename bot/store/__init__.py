"""Persistence: the only package that talks to the database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from bot.store.sqlite import SqliteStore
from bot.store.sqlite_reader import SqliteReader

if TYPE_CHECKING:
    from bot.store.postgres import PostgresStore
    from bot.store.postgres_reader import PostgresReader

AnyStore: TypeAlias = "SqliteStore | PostgresStore"
AnyReader: TypeAlias = "SqliteReader | PostgresReader"
T = TypeVar("T")
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


async def call_store(store: object, call: Callable[..., T], *args: Any) -> T:
    """`call(*args)`, which uses `store`: on a worker thread when the store's calls wait on a
    network (PostgreSQL), so the event loop goes on answering meanwhile (liveness, other acks);
    right here for SQLite, whose connection belongs to this thread and answers at once."""
    if getattr(store, "off_loop", False):
        return await asyncio.to_thread(call, *args)
    return call(*args)


__all__ = [
    "AnyReader",
    "AnyStore",
    "SqliteStore",
    "call_store",
    "is_postgres",
    "open_any",
    "open_reader",
]
