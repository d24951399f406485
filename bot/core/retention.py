"""What is kept how long. The audit log is kept whole, for ever (append-only). Acknowledged work
(the inbox of commands and clicks) is kept once done only as long as Slack could deliver the
same payload again, which it recognises by its key: past that retention it is removed, by the
`retention` job, a batch at a time, so a backlog (a bot that was down, an upgrade) is cleared
without holding up acks or other work.
"""

from __future__ import annotations

from datetime import timedelta

from bot.core.context import Context
from bot.core.scheduler import RunAgainIn

DEFAULT_INBOX_RETENTION = timedelta(hours=1)  # Slack retries within minutes
BATCH = 500  # items removed by one short transaction
BETWEEN_BATCHES = 0.05  # seconds the event loop gets between two batches of a backlog
EVERY = 60.0  # seconds between looks once nothing is left to remove


class Retention:
    def __init__(self, ctx: Context, keep: timedelta = DEFAULT_INBOX_RETENTION) -> None:
        self.ctx, self.keep = ctx, keep
        self.removed = 0  # in all, by this process

    async def run(self) -> RunAgainIn | None:
        """Remove one batch of acknowledged work done longer ago than `keep`; if the batch
        was full, run again shortly for the next."""
        removed = self.ctx.store.forget_done(self.ctx.clock() - self.keep, BATCH)
        self.removed += removed
        return RunAgainIn(BETWEEN_BATCHES) if removed >= BATCH else None
