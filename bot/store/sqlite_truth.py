"""The truth between promotions, in SQLite: previews read again (drift), Znyx's webhooks
recorded before they are answered, what the bot last saw of each thing they name, and notes
posted once. A part of `SqliteStore` (bot/store/sqlite.py), which guards these methods too."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.core.model import Drift, Request, State
from bot.core.ports.store import DueRead, Seen

if TYPE_CHECKING:
    import sqlite_utils

_WAITING = f"'{State.PENDING.value}', '{State.APPROVED.value}'"  # the states people act in

# Schema version 7: what this part keeps.
MIGRATION = (
    "ALTER TABLE requests ADD COLUMN drift TEXT",
    "ALTER TABLE requests ADD COLUMN drift_next_at TEXT",
    "CREATE INDEX IF NOT EXISTS requests_thing ON requests (thing, id)",
    "CREATE TABLE IF NOT EXISTS webhooks (digest TEXT PRIMARY KEY, source TEXT NOT NULL,"
    " hint TEXT NOT NULL, received_at TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " owner TEXT, lease_until TEXT, done_at TEXT)",
    "CREATE INDEX IF NOT EXISTS webhooks_waiting ON webhooks (done_at, lease_until)",
    "CREATE TABLE IF NOT EXISTS sightings (thing TEXT PRIMARY KEY, key TEXT NOT NULL,"
    " shown TEXT NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, at TEXT NOT NULL,"
    " channel TEXT NOT NULL, thread_ts TEXT, text TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, next_at TEXT, done_at TEXT)",
    "CREATE INDEX IF NOT EXISTS notes_due ON notes (done_at, next_at)",
)


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


class TruthRows:
    if TYPE_CHECKING:  # what SqliteStore gives it
        db: sqlite_utils.Database

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

        def get(self, request_id: int) -> Request | None: ...

    # --- drift ---------------------------------------------------------------------------

    def drift_due(self, now: datetime, limit: int) -> list[DueRead]:
        rows = self._rows(
            "SELECT id, target, created_at, drift_next_at FROM requests"
            f" WHERE state IN ({_WAITING}) AND (drift_next_at IS NULL OR drift_next_at <= ?)"
            " ORDER BY COALESCE(drift_next_at, created_at), id LIMIT ?",
            [_utc(now), limit],
        )
        return [
            DueRead(
                request_id=r["id"],
                provider=str(r["target"]).split(":", 1)[0],
                created_at=datetime.fromisoformat(r["created_at"]),
                next_at=datetime.fromisoformat(r["drift_next_at"]) if r["drift_next_at"] else None,
            )
            for r in rows
        ]

    def drift_schedule(self, request_id: int, seen: datetime | None, next_at: datetime) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE requests SET drift_next_at = ? WHERE id = ? AND drift_next_at IS ?",
                [_utc(next_at), request_id, _utc(seen) if seen else None],
            )
        return cursor.rowcount == 1

    def set_drift(self, request_id: int, drift: Drift | None) -> bool:
        text = drift.model_dump_json() if drift else None
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE requests SET drift = ?, msg_version = msg_version + 1"
                f" WHERE id = ? AND state IN ({_WAITING}) AND drift IS NOT ?",
                [text, request_id, text],
            )
        return cursor.rowcount == 1

    def on_thing(self, thing: str, states: Sequence[State], limit: int = 5) -> list[Request]:
        marks = ", ".join("?" for _ in states)
        rows = self._rows(
            f"SELECT id FROM requests WHERE thing = ? AND state IN ({marks})"
            " ORDER BY id DESC LIMIT ?",
            [thing, *(s.value for s in states), limit],
        )
        return [r for r in (self.get(row["id"]) for row in rows) if r is not None]

    # --- webhooks ------------------------------------------------------------------------

    def webhook_put(self, digest: str, source: str, hint: Mapping[str, Any], at: datetime) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO webhooks (digest, source, hint, received_at)"
                " VALUES (?, ?, ?, ?)",
                [digest, source, json.dumps(dict(hint)), _utc(at)],
            )
        return cursor.rowcount == 1

    def webhook_claim(
        self, digest: str, owner: str, now: datetime, until: datetime
    ) -> dict[str, Any] | None:
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE webhooks SET owner = ?, lease_until = ?, attempts = attempts + 1"
                " WHERE digest = ? AND done_at IS NULL"
                " AND (lease_until IS NULL OR lease_until <= ?)",
                [owner, _utc(until), digest, _utc(now)],
            )
        if cursor.rowcount != 1:
            return None
        [row] = self._rows("SELECT * FROM webhooks WHERE digest = ?", [digest])
        return {**row, "hint": json.loads(row["hint"])}

    def webhook_renew(self, digest: str, owner: str, until: datetime) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE webhooks SET lease_until = ?"
                " WHERE digest = ? AND owner = ? AND done_at IS NULL",
                [_utc(until), digest, owner],
            )
        return cursor.rowcount == 1

    def webhook_done(self, digest: str, at: datetime) -> None:
        with self.db.conn:
            self.db.execute("UPDATE webhooks SET done_at = ? WHERE digest = ?", [_utc(at), digest])

    def webhooks_waiting(self, now: datetime) -> list[str]:
        rows = self._rows(
            "SELECT digest FROM webhooks WHERE done_at IS NULL"
            " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY received_at",
            [_utc(now)],
        )
        return [row["digest"] for row in rows]

    def forget_webhooks(self, before: datetime) -> int:
        with self.db.conn:
            return self.db.execute(
                "DELETE FROM webhooks WHERE done_at IS NOT NULL AND done_at < ?", [_utc(before)]
            ).rowcount

    # --- what the bot last saw, and notes posted once ----------------------------------

    def sighting(self, thing: str) -> Seen | None:
        rows = self._rows("SELECT * FROM sightings WHERE thing = ?", [thing])
        if not rows:
            return None
        row = rows[0]
        return Seen(key=row["key"], shown=row["shown"], at=datetime.fromisoformat(row["at"]))

    def sighting_swap(
        self, thing: str, old_key: str | None, key: str, shown: str, at: datetime
    ) -> bool:
        with self.db.conn:
            if old_key is None:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO sightings (thing, key, shown, at) VALUES (?, ?, ?, ?)",
                    [thing, key, shown, _utc(at)],
                )
            else:
                cursor = self.db.execute(
                    "UPDATE sightings SET key = ?, shown = ?, at = ? WHERE thing = ? AND key = ?",
                    [key, shown, _utc(at), thing, old_key],
                )
        return cursor.rowcount == 1

    def note_put(
        self, key: str, channel: str, thread_ts: str | None, text: str, at: datetime
    ) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO notes (key, at, channel, thread_ts, text)"
                " VALUES (?, ?, ?, ?, ?)",
                [key, _utc(at), channel, thread_ts, text],
            )
        return cursor.rowcount == 1

    def notes_due(self, now: datetime, limit: int) -> list[str]:
        rows = self._rows(
            "SELECT key FROM notes WHERE done_at IS NULL AND (next_at IS NULL OR next_at <= ?)"
            " ORDER BY at, key LIMIT ?",
            [_utc(now), limit],
        )
        return [row["key"] for row in rows]

    def note_take(self, key: str, now: datetime, until: datetime) -> dict[str, Any] | None:
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE notes SET next_at = ?, attempts = attempts + 1 WHERE key = ?"
                " AND done_at IS NULL AND (next_at IS NULL OR next_at <= ?)",
                [_utc(until), key, _utc(now)],
            )
        if cursor.rowcount != 1:
            return None
        [row] = self._rows("SELECT * FROM notes WHERE key = ?", [key])
        return row

    def note_later(self, key: str, at: datetime) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE notes SET next_at = ? WHERE key = ? AND done_at IS NULL", [_utc(at), key]
            )

    def note_done(self, key: str, at: datetime) -> None:
        with self.db.conn:
            self.db.execute("UPDATE notes SET done_at = ? WHERE key = ?", [_utc(at), key])

    def forget_notes(self, before: datetime) -> int:
        with self.db.conn:
            return self.db.execute(
                "DELETE FROM notes WHERE done_at IS NOT NULL AND done_at < ?", [_utc(before)]
            ).rowcount
