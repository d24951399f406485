"""The truth between promotions, in PostgreSQL: the same methods as bot/store/sqlite_truth.py
(the reference). A part of `PostgresStore` (bot/store/postgres.py), which guards these too."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.core.model import Drift, Request, State
from bot.core.ports.store import DueRead, Seen

if TYPE_CHECKING:
    import psycopg

_WAITING = [State.PENDING.value, State.APPROVED.value]  # the states people act in

# Schema version 6: what this part keeps.
MIGRATION = (
    "ALTER TABLE requests ADD COLUMN IF NOT EXISTS drift TEXT;"
    " ALTER TABLE requests ADD COLUMN IF NOT EXISTS drift_next_at TIMESTAMPTZ;"
    " CREATE INDEX IF NOT EXISTS requests_thing ON requests (thing, id);"
    " CREATE TABLE IF NOT EXISTS webhooks (digest TEXT PRIMARY KEY, source TEXT NOT NULL,"
    " hint TEXT NOT NULL, received_at TIMESTAMPTZ NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
    " owner TEXT, lease_until TIMESTAMPTZ, done_at TIMESTAMPTZ);"
    " CREATE INDEX IF NOT EXISTS webhooks_waiting ON webhooks (done_at, lease_until);"
    " CREATE TABLE IF NOT EXISTS sightings (thing TEXT PRIMARY KEY, key TEXT NOT NULL,"
    " shown TEXT NOT NULL, at TIMESTAMPTZ NOT NULL);"
    " CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, at TIMESTAMPTZ NOT NULL,"
    " channel TEXT NOT NULL, thread_ts TEXT, text TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0, next_at TIMESTAMPTZ, done_at TIMESTAMPTZ);"
    " CREATE INDEX IF NOT EXISTS notes_due ON notes (done_at, next_at)"
)


class TruthRows:
    if TYPE_CHECKING:  # what PostgresStore gives it

        def _execute(self, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]: ...

        def _rows(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

        def get(self, request_id: int) -> Request | None: ...

    # --- drift ---------------------------------------------------------------------------

    def drift_due(self, now: datetime, limit: int) -> list[DueRead]:
        rows = self._rows(
            "SELECT id, target, created_at, drift_next_at FROM requests"
            " WHERE state = ANY(%s) AND (drift_next_at IS NULL OR drift_next_at <= %s)"
            " ORDER BY COALESCE(drift_next_at, created_at), id LIMIT %s",
            [_WAITING, now, limit],
        )
        return [
            DueRead(
                request_id=r["id"],
                provider=str(r["target"]).split(":", 1)[0],
                created_at=r["created_at"],
                next_at=r["drift_next_at"],
            )
            for r in rows
        ]

    def drift_schedule(self, request_id: int, seen: datetime | None, next_at: datetime) -> bool:
        cursor = self._execute(
            "UPDATE requests SET drift_next_at = %s"
            " WHERE id = %s AND drift_next_at IS NOT DISTINCT FROM %s::timestamptz",
            [next_at, request_id, seen],
        )
        return cursor.rowcount == 1

    def set_drift(self, request_id: int, drift: Drift | None) -> bool:
        text = drift.model_dump_json() if drift else None
        cursor = self._execute(
            "UPDATE requests SET drift = %s::text, msg_version = msg_version + 1"
            " WHERE id = %s AND state = ANY(%s) AND drift IS DISTINCT FROM %s::text",
            [text, request_id, _WAITING, text],
        )
        return cursor.rowcount == 1

    def on_thing(self, thing: str, states: Sequence[State], limit: int = 5) -> list[Request]:
        rows = self._rows(
            "SELECT id FROM requests WHERE thing = %s AND state = ANY(%s)"
            " ORDER BY id DESC LIMIT %s",
            [thing, [s.value for s in states], limit],
        )
        return [r for r in (self.get(row["id"]) for row in rows) if r is not None]

    # --- webhooks ------------------------------------------------------------------------

    def webhook_put(self, digest: str, source: str, hint: Mapping[str, Any], at: datetime) -> bool:
        cursor = self._execute(
            "INSERT INTO webhooks (digest, source, hint, received_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (digest) DO NOTHING",
            [digest, source, json.dumps(dict(hint)), at],
        )
        return cursor.rowcount == 1

    def webhook_claim(
        self, digest: str, owner: str, now: datetime, until: datetime
    ) -> dict[str, Any] | None:
        rows = self._rows(
            "UPDATE webhooks SET owner = %s, lease_until = %s, attempts = attempts + 1"
            " WHERE digest = %s AND done_at IS NULL"
            " AND (lease_until IS NULL OR lease_until <= %s) RETURNING *",
            [owner, until, digest, now],
        )
        if not rows:
            return None
        return {**rows[0], "hint": json.loads(rows[0]["hint"])}

    def webhook_renew(self, digest: str, owner: str, until: datetime) -> bool:
        cursor = self._execute(
            "UPDATE webhooks SET lease_until = %s"
            " WHERE digest = %s AND owner = %s AND done_at IS NULL",
            [until, digest, owner],
        )
        return cursor.rowcount == 1

    def webhook_done(self, digest: str, at: datetime) -> None:
        self._execute("UPDATE webhooks SET done_at = %s WHERE digest = %s", [at, digest])

    def webhooks_waiting(self, now: datetime) -> list[str]:
        rows = self._rows(
            "SELECT digest FROM webhooks WHERE done_at IS NULL"
            " AND (lease_until IS NULL OR lease_until <= %s) ORDER BY received_at",
            [now],
        )
        return [row["digest"] for row in rows]

    def forget_webhooks(self, before: datetime) -> int:
        cursor = self._execute(
            "DELETE FROM webhooks WHERE done_at IS NOT NULL AND done_at < %s", [before]
        )
        return cursor.rowcount

    # --- what the bot last saw, and notes posted once ----------------------------------

    def sighting(self, thing: str) -> Seen | None:
        rows = self._rows("SELECT * FROM sightings WHERE thing = %s", [thing])
        if not rows:
            return None
        return Seen(key=rows[0]["key"], shown=rows[0]["shown"], at=rows[0]["at"])

    def sighting_swap(
        self, thing: str, old_key: str | None, key: str, shown: str, at: datetime
    ) -> bool:
        if old_key is None:
            cursor = self._execute(
                "INSERT INTO sightings (thing, key, shown, at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (thing) DO NOTHING",
                [thing, key, shown, at],
            )
        else:
            cursor = self._execute(
                "UPDATE sightings SET key = %s, shown = %s, at = %s WHERE thing = %s AND key = %s",
                [key, shown, at, thing, old_key],
            )
        return cursor.rowcount == 1

    def note_put(
        self, key: str, channel: str, thread_ts: str | None, text: str, at: datetime
    ) -> bool:
        cursor = self._execute(
            "INSERT INTO notes (key, at, channel, thread_ts, text) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (key) DO NOTHING",
            [key, at, channel, thread_ts, text],
        )
        return cursor.rowcount == 1

    def notes_due(self, now: datetime, limit: int) -> list[str]:
        rows = self._rows(
            "SELECT key FROM notes WHERE done_at IS NULL"
            " AND (next_at IS NULL OR next_at <= %s) ORDER BY at, key LIMIT %s",
            [now, limit],
        )
        return [row["key"] for row in rows]

    def note_take(self, key: str, now: datetime, until: datetime) -> dict[str, Any] | None:
        rows = self._rows(
            "UPDATE notes SET next_at = %s, attempts = attempts + 1 WHERE key = %s"
            " AND done_at IS NULL AND (next_at IS NULL OR next_at <= %s) RETURNING *",
            [until, key, now],
        )
        return rows[0] if rows else None

    def note_later(self, key: str, at: datetime) -> None:
        self._execute("UPDATE notes SET next_at = %s WHERE key = %s AND done_at IS NULL", [at, key])

    def note_done(self, key: str, at: datetime) -> None:
        self._execute("UPDATE notes SET done_at = %s WHERE key = %s", [at, key])

    def forget_notes(self, before: datetime) -> int:
        return self._execute(
            "DELETE FROM notes WHERE done_at IS NOT NULL AND done_at < %s", [before]
        ).rowcount
