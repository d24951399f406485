"""The audit log: every request event, refusal and hold change, recorded, logged once at INFO,
and handed to observers (metrics)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.core.context import Context
from bot.core.model import AuditEntry

log = logging.getLogger("bot.core.workflow")  # the name operators' log filters know


class Audit:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        # Called with each entry once it is recorded (metrics); must not raise or block.
        self.observers: list[Callable[[AuditEntry], None]] = []

    def record(
        self, request_id: int | None, actor: str, event: str, target: str | None, detail: str = ""
    ) -> AuditEntry:
        entry = AuditEntry(
            at=self.ctx.clock(),
            request_id=request_id,
            actor=actor,
            event=event,
            target=target,
            detail=detail,
        )
        self.ctx.store.audit(entry)
        self._log(entry)
        for observe in self.observers:
            observe(entry)
        return entry

    def _log(self, entry: AuditEntry) -> None:
        """One INFO line per request event: request id, target, actor, state (and the event)."""
        if not log.isEnabledFor(logging.INFO):
            return
        now = self.ctx.store.shown_as(entry.request_id) if entry.request_id is not None else None
        state = now[0].value if now is not None else "none"
        number = f"#{entry.request_id}" if entry.request_id is not None else "-"
        fields = {
            "request_id": entry.request_id,
            "event": entry.event,
            "target": entry.target,
            "actor": entry.actor,
            "state": state,
        }
        log.info(
            "request %s %s: target=%s actor=%s state=%s%s",
            number,
            entry.event,
            entry.target,
            entry.actor,
            state,
            f" ({entry.detail})" if entry.detail else "",
            extra=fields,
        )
