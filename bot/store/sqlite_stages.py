"""Stages and time in SQLite: what open requests wait for and when they are looked at again,
the bot's record of each stage, and the promotions it plans to ask for itself. A part of
`SqliteStore` (bot/store/sqlite.py), which guards these methods too."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bot.core.model import Request, State
from bot.core.ports.stages import AutoPlan, Notices
from bot.core.timing import StageSeen, Timing

if TYPE_CHECKING:
    import sqlite_utils

_WAITING = f"'{State.PENDING.value}', '{State.APPROVED.value}'"  # the states that wait

# The schema version this part adds.
MIGRATION = (
    "ALTER TABLE requests ADD COLUMN timing TEXT",
    "ALTER TABLE requests ADD COLUMN due_at TEXT",
    "CREATE INDEX IF NOT EXISTS requests_due ON requests (due_at) WHERE due_at IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS stages (thing TEXT PRIMARY KEY, key TEXT NOT NULL,"
    " since TEXT NOT NULL, seen_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS auto_plans (target TEXT PRIMARY KEY, key TEXT NOT NULL,"
    " due_at TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0)",
    "CREATE INDEX IF NOT EXISTS auto_plans_due ON auto_plans (done, due_at)",
)


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


class StageRows:
    if TYPE_CHECKING:  # what SqliteStore gives it
        db: sqlite_utils.Database

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

        def _owe(self, request_id: int, notices: Notices, at: datetime) -> None: ...

        def get(self, request_id: int) -> Request | None: ...

    # --- what open requests wait for -----------------------------------------------------

    def set_timing(
        self,
        request_id: int,
        timing: Timing,
        due_at: datetime | None,
        *,
        at: datetime,
        notices: Notices = (),
    ) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE requests SET timing = ?, due_at = ?, msg_version = msg_version + 1"
                f" WHERE id = ? AND state IN ({_WAITING})",
                [timing.model_dump_json(), _utc(due_at) if due_at else None, request_id],
            )
            if cursor.rowcount == 1:
                self._owe(request_id, notices, at)
        return cursor.rowcount == 1

    def wait(
        self,
        request_id: int,
        from_states: Sequence[State],
        to: State,
        *,
        timing: Timing,
        due_at: datetime,
        expires_at: datetime,
        at: datetime,
    ) -> bool:
        marks = ", ".join("?" for _ in from_states)
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE requests SET state = ?, timing = ?, due_at = ?, expires_at = ?,"
                " updated_at = ?, msg_version = msg_version + 1"
                f" WHERE id = ? AND state IN ({marks})",
                [
                    to.value,
                    timing.model_dump_json(),
                    _utc(due_at),
                    _utc(expires_at),
                    _utc(at),
                    request_id,
                    *(s.value for s in from_states),
                ],
            )
        return cursor.rowcount == 1

    def due(self, now: datetime, limit: int) -> list[Request]:
        rows = self._rows(
            "SELECT id FROM requests WHERE due_at IS NOT NULL AND due_at <= ?"
            f" AND state IN ({_WAITING}) ORDER BY due_at, id LIMIT ?",
            [_utc(now), limit],
        )
        return [r for r in (self.get(row["id"]) for row in rows) if r is not None]

    def claim_due(self, request_id: int, due_at: datetime, until: datetime) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                f"UPDATE requests SET due_at = ? WHERE id = ? AND state IN ({_WAITING})"
                " AND due_at = ?",
                [_utc(until), request_id, _utc(due_at)],
            )
        return cursor.rowcount == 1

    # --- the bot's record of each stage ------------------------------------------------

    def stage_seen(self, thing: str) -> StageSeen | None:
        rows = self._rows("SELECT key, since, seen_at FROM stages WHERE thing = ?", [thing])
        if not rows:
            return None
        row = rows[0]
        return StageSeen(
            row["key"], datetime.fromisoformat(row["since"]), datetime.fromisoformat(row["seen_at"])
        )

    def stage_see(self, thing: str, old_key: str | None, seen: StageSeen) -> bool:
        values = [seen.key, _utc(seen.since), _utc(seen.seen_at)]
        with self.db.conn:
            if old_key is None:
                cursor = self.db.execute(
                    "INSERT OR IGNORE INTO stages (thing, key, since, seen_at) VALUES (?, ?, ?, ?)",
                    [thing, *values],
                )
            else:
                cursor = self.db.execute(
                    "UPDATE stages SET key = ?, since = ?, seen_at = ? WHERE thing = ? AND key = ?",
                    [*values, thing, old_key],
                )
        return cursor.rowcount == 1

    # --- promotions the bot asks for itself ----------------------------------------------

    def auto_plan(self, target: str, key: str, due_at: datetime) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "INSERT INTO auto_plans (target, key, due_at, done) VALUES (?, ?, ?, 0)"
                " ON CONFLICT (target) DO UPDATE SET key = excluded.key,"
                " due_at = excluded.due_at, done = 0 WHERE auto_plans.key != excluded.key",
                [target, key, _utc(due_at)],
            )
        return cursor.rowcount == 1

    def auto_due(self, now: datetime, limit: int) -> list[AutoPlan]:
        rows = self._rows(
            "SELECT target, key, due_at FROM auto_plans WHERE done = 0 AND due_at <= ?"
            " ORDER BY due_at LIMIT ?",
            [_utc(now), limit],
        )
        return [AutoPlan(r["target"], r["key"], datetime.fromisoformat(r["due_at"])) for r in rows]

    def auto_claim(self, target: str, key: str, due_at: datetime, until: datetime) -> bool:
        with self.db.conn:
            cursor = self.db.execute(
                "UPDATE auto_plans SET due_at = ? WHERE target = ? AND key = ? AND due_at = ?"
                " AND done = 0",
                [_utc(until), target, key, _utc(due_at)],
            )
        return cursor.rowcount == 1

    def auto_done(self, target: str, key: str) -> None:
        with self.db.conn:
            self.db.execute(
                "UPDATE auto_plans SET done = 1 WHERE target = ? AND key = ?", [target, key]
            )
