"""Work after an ack, admitted with bounded concurrency: acks first, release messages later.

The ack path records each command and click in the inbox (one small insert) and only wakes
this pool; at most `limit` workers then claim the recorded items and do them, on the same
event loop. A burst makes the queue longer, not the acks slower: nothing but the insert and
a deque append sits between a request and its ack, and a worker starts its next item only
once no payload is being answered, or once that item has waited `patience` seconds (so a
steady stream of payloads delays work by at most that, and never starves it). Work already
under way is not interrupted: at most `limit` pieces of it share the loop with the acks.

The inbox keeps its guarantees: an item is claimed once (`inbox_claim`), its lease is renewed
while it is worked on, a redelivery finds it claimed or done, and what this process never gets
to (it died, or stopped past its deadline) stays in the inbox for another process's recovery.
A worker holds `Workflow.working()` while the queue has items, so a graceful shutdown waits
for the queue as well as the work under way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine, Iterator
from typing import Any

from bot.transports.slack.inbox import Inbox

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 32
PATIENCE = 2.0  # seconds an item waits for a moment with no payload being answered, at most
SETTLE = 0.003  # how long no payload must be answered before that counts as such a moment


class WorkPool:
    """At most `limit` asyncio workers doing recorded inbox items, oldest first."""

    def __init__(
        self, inbox: Inbox, limit: int = DEFAULT_WORKERS, patience: float = PATIENCE
    ) -> None:
        if limit < 1:
            raise ValueError("a work pool needs at least one worker")
        self.inbox = inbox
        self.limit = limit
        self.patience = patience
        self._answering = 0  # payloads between reaching the app and their ack
        self._quiet = asyncio.Event()  # set: no payload answered for SETTLE seconds
        self._quiet.set()
        self._settling: asyncio.TimerHandle | None = None
        self.deferred = 0  # times a worker waited for the acks before an item (tests, bench)
        self._queue: deque[tuple[str, float]] = deque()  # key, when it was queued
        self._workers: set[asyncio.Task[None]] = set()
        self._replies: set[asyncio.Task[None]] = set()
        self.peak = 0  # the most pieces of work that ran at once (for tests and the bench)
        self._running = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Around each payload from reaching the app to its ack: workers start no new item
        meanwhile."""
        self._answering += 1
        self._quiet.clear()
        if self._settling is not None:
            self._settling.cancel()
            self._settling = None
        try:
            yield
        finally:
            self._answering -= 1
            if not self._answering:
                loop = asyncio.get_running_loop()
                self._settling = loop.call_later(SETTLE, self._quiet.set)

    async def _acks_first(self) -> None:
        """Until no payload is being answered, or the oldest queued item has waited enough."""
        if self._quiet.is_set() or not self._queue:
            return
        self.deferred += 1
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(self._queue[0][1] + self.patience):
                while not self._quiet.is_set():  # set, then cleared before this worker ran
                    await self._quiet.wait()

    def after_ack(self, reply: Coroutine[Any, Any, object]) -> None:
        """Send `reply` (an answer at a response_url, not recorded work) once the ack is out,
        as a task a graceful shutdown waits for: Bolt answers a payload only when its listener
        returns, so a listener must not wait on the network after `ack()`."""

        async def send() -> None:
            async with self.inbox.workflow.working():
                await reply

        task = asyncio.get_running_loop().create_task(send(), name="promote-bot reply")
        self._replies.add(task)
        task.add_done_callback(self._replies.discard)

    def wake(self, key: str) -> None:
        """Have the recorded item `key` done soon; never blocks (called on the ack path)."""
        self._queue.append((key, asyncio.get_running_loop().time()))
        if len(self._workers) < self.limit:
            task = asyncio.get_running_loop().create_task(self._work(), name="promote-bot worker")
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        # Workers are started on demand and end when the queue is empty: no idle tasks, nothing
        # to start or stop with the process.
        async with self.inbox.workflow.working():
            while self._queue:
                await self._acks_first()
                if not self._queue:
                    break  # another worker took the last item meanwhile
                key, _ = self._queue.popleft()
                self._running += 1
                self.peak = max(self.peak, self._running)
                try:
                    await self.inbox.work_on(key)
                except Exception:  # work_on answers the person; this is a bug in the pool's use
                    log.exception("acknowledged work %s failed", key)
                finally:
                    self._running -= 1
