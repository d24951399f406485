"""Persistence: the only package that talks to the database."""

from __future__ import annotations

from pathlib import Path

from bot.store.postgres import PostgresStore, is_postgres
from bot.store.sqlite import SqliteStore

AnyStore = SqliteStore | PostgresStore


def open_any(where: Path | str) -> AnyStore:
    """The store PROMOTE_BOT_DB names: PostgreSQL for a postgresql:// (or postgres://) URI,
    else the SQLite file at that path."""
    return PostgresStore(where) if is_postgres(where) else SqliteStore(where)  # type: ignore[arg-type]


__all__ = ["AnyStore", "PostgresStore", "SqliteStore", "open_any"]
