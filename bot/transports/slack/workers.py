"""Work after an ack, admitted with bounded concurrency: acks first, release messages later.

The ack path records each command and click in the inbox (one small insert) and only wakes
this pool; at most `limit` workers then claim the recorded items and do them, on the same
event loop. A burst makes the queue longer, not the acks slower: nothing but the insert and
a deque append sits between a request and its ack, and at most `limit` pieces of work compete
with the acks for the loop at any moment.

The inbox keeps its guarantees: an item is claimed once (`inbox_claim`), its lease is renewed
while it is worked on, a redelivery finds it claimed or done, and what this process never gets
to (it died, or stopped past its deadline) stays in the inbox for another process's recovery.
A worker holds `Workflow.working()` while the queue has items, so a graceful shutdown waits
for the queue as well as the work under way.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from bot.transports.slack.inbox import Inbox

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 32


class WorkPool:
    """At most `limit` asyncio workers doing recorded inbox items, oldest first."""

    def __init__(self, inbox: Inbox, limit: int = DEFAULT_WORKERS) -> None:
        if limit < 1:
            raise ValueError("a work pool needs at least one worker")
        self.inbox = inbox
        self.limit = limit
        self._queue: deque[str] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self.peak = 0  # the most pieces of work that ran at once (for tests and the bench)
        self._running = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def wake(self, key: str) -> None:
        """Have the recorded item `key` done soon; never blocks (called on the ack path)."""
        self._queue.append(key)
        if len(self._workers) < self.limit:
            task = asyncio.get_running_loop().create_task(self._work(), name="promote-bot worker")
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        # Workers are started on demand and end when the queue is empty: no idle tasks, nothing
        # to start or stop with the process.
        async with self.inbox.workflow.working():
            while self._queue:
                key = self._queue.popleft()
                self._running += 1
                self.peak = max(self.peak, self._running)
                try:
                    await self.inbox.work_on(key)
                except Exception:  # work_on answers the person; this is a bug in the pool's use
                    log.exception("acknowledged work %s failed", key)
                finally:
                    self._running -= 1
