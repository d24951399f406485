"""Persistence: the only package that talks to the database."""

from bot.store.sqlite import SqliteStore

__all__ = ["SqliteStore"]
