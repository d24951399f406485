"""Stages and time in PostgreSQL: the same methods as bot/store/sqlite_stages.py (the
reference). A part of `PostgresStore` (bot/store/postgres.py), which guards these too."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.core.model import Request, State
from bot.core.ports.stages import AutoPlan, Notices
from bot.core.timing import StageSeen, Timing

if TYPE_CHECKING:
    import psycopg

_WAITING = [State.PENDING.value, State.APPROVED.value]  # the states that wait

# The schema version this part adds.
MIGRATION = (
    "ALTER TABLE requests ADD COLUMN IF NOT EXISTS timing TEXT;"
    " ALTER TABLE requests ADD COLUMN IF NOT EXISTS due_at TIMESTAMPTZ;"
    " CREATE INDEX IF NOT EXISTS requests_due ON requests (due_at) WHERE due_at IS NOT NULL;"
    " CREATE TABLE IF NOT EXISTS stages (thing TEXT PRIMARY KEY, key TEXT NOT NULL,"
    " since TIMESTAMPTZ NOT NULL, seen_at TIMESTAMPTZ NOT NULL);"
    " CREATE TABLE IF NOT EXISTS auto_plans (target TEXT PRIMARY KEY, key TEXT NOT NULL,"
    " due_at TIMESTAMPTZ NOT NULL, done BOOLEAN NOT NULL DEFAULT false);"
    " CREATE INDEX IF NOT EXISTS auto_plans_due ON auto_plans (done, due_at)"
)


class StageRows:
    if TYPE_CHECKING:  # what PostgresStore gives it

        def _execute(self, query: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]: ...

        def _rows(self, query: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]: ...

        def _transaction(self) -> Iterator[psycopg.Connection[dict[str, Any]]]: ...

        @staticmethod
        def _owe(
            conn: psycopg.Connection[dict[str, Any]],
            request_id: int,
            notices: Notices,
            at: datetime,
        ) -> None: ...

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
        with self._transaction() as conn:  # type: ignore[attr-defined]
            cursor = conn.execute(
                "UPDATE requests SET timing = %s, due_at = %s, msg_version = msg_version + 1"
                " WHERE id = %s AND state = ANY(%s)",
                [timing.model_dump_json(), due_at, request_id, _WAITING],
            )
            if cursor.rowcount == 1:
                self._owe(conn, request_id, notices, at)
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
        cursor = self._execute(
            "UPDATE requests SET state = %s, timing = %s, due_at = %s, expires_at = %s,"
            " updated_at = %s, msg_version = msg_version + 1 WHERE id = %s AND state = ANY(%s)",
            [
                to.value,
                timing.model_dump_json(),
                due_at,
                expires_at,
                at,
                request_id,
                [s.value for s in from_states],
            ],
        )
        return cursor.rowcount == 1

    def due(self, now: datetime, limit: int) -> list[Request]:
        rows = self._rows(
            "SELECT id FROM requests WHERE due_at IS NOT NULL AND due_at <= %s"
            " AND state = ANY(%s) ORDER BY due_at, id LIMIT %s",
            [now, _WAITING, limit],
        )
        return [r for r in (self.get(row["id"]) for row in rows) if r is not None]

    def claim_due(self, request_id: int, due_at: datetime, until: datetime) -> bool:
        cursor = self._execute(
            "UPDATE requests SET due_at = %s WHERE id = %s AND state = ANY(%s) AND due_at = %s",
            [until, request_id, _WAITING, due_at],
        )
        return cursor.rowcount == 1

    # --- the bot's record of each stage ------------------------------------------------

    def stage_seen(self, thing: str) -> StageSeen | None:
        rows = self._rows("SELECT key, since, seen_at FROM stages WHERE thing = %s", [thing])
        return StageSeen(rows[0]["key"], rows[0]["since"], rows[0]["seen_at"]) if rows else None

    def stage_see(self, thing: str, old_key: str | None, seen: StageSeen) -> bool:
        values = [seen.key, seen.since, seen.seen_at]
        if old_key is None:
            cursor = self._execute(
                "INSERT INTO stages (thing, key, since, seen_at) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (thing) DO NOTHING",
                [thing, *values],
            )
        else:
            cursor = self._execute(
                "UPDATE stages SET key = %s, since = %s, seen_at = %s WHERE thing = %s"
                " AND key = %s",
                [*values, thing, old_key],
            )
        return cursor.rowcount == 1

    # --- promotions the bot asks for itself ----------------------------------------------

    def auto_plan(self, target: str, key: str, due_at: datetime) -> bool:
        cursor = self._execute(
            "INSERT INTO auto_plans (target, key, due_at, done) VALUES (%s, %s, %s, false)"
            " ON CONFLICT (target) DO UPDATE SET key = excluded.key,"
            " due_at = excluded.due_at, done = false WHERE auto_plans.key <> excluded.key",
            [target, key, due_at],
        )
        return cursor.rowcount == 1

    def auto_due(self, now: datetime, limit: int) -> list[AutoPlan]:
        rows = self._rows(
            "SELECT target, key, due_at FROM auto_plans WHERE NOT done AND due_at <= %s"
            " ORDER BY due_at LIMIT %s",
            [now, limit],
        )
        return [AutoPlan(r["target"], r["key"], r["due_at"]) for r in rows]

    def auto_claim(self, target: str, key: str, due_at: datetime, until: datetime) -> bool:
        cursor = self._execute(
            "UPDATE auto_plans SET due_at = %s WHERE target = %s AND key = %s AND due_at = %s"
            " AND NOT done",
            [until, target, key, due_at],
        )
        return cursor.rowcount == 1

    def auto_done(self, target: str, key: str) -> None:
        self._execute(
            "UPDATE auto_plans SET done = true WHERE target = %s AND key = %s", [target, key]
        )
