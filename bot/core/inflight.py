"""Work in flight: what a graceful shutdown waits for, and the leases that work holds.

A lease says "this process is on it" (an executing request, an acknowledged command): it is
renewed every third of its length while the work runs, by the scheduler's `leases` job, so
another process takes work over only once its holder is gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)

Renew = Callable[[datetime], bool]  # extend a lease to the given instant; False if it was lost


class HasClock(Protocol):
    clock: Callable[[], datetime]


class InFlight:
    """The tasks doing work after an ack; a shutdown lets them finish (`drain`)."""

    def __init__(self) -> None:
        self._working: set[asyncio.Task[object]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @contextlib.asynccontextmanager
    async def working(self) -> AsyncIterator[None]:
        """Around work after an ack: a graceful shutdown waits for it."""
        task = asyncio.current_task()
        assert task is not None
        self._working.add(task)
        self._idle.clear()
        try:
            yield
        finally:
            self._working.discard(task)
            if not self._working:
                self._idle.set()

    @property
    def busy(self) -> int:
        return len(self._working)

    async def drain(self, within: float) -> bool:
        """Wait until no work is in flight, for at most `within` seconds; True if none is."""
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def abandon(self) -> None:
        """Past the shutdown deadline: stop the work still in flight without recording any
        outcome (a guess); its leases are given up so a recovery reads the providers at once."""
        tasks = list(self._working)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Leases:
    """The leases this process holds, renewed together by `renew_all`."""

    def __init__(self, clock: HasClock, length: timedelta) -> None:
        self._clock = clock  # read at each renewal: the clock may be replaced (tests)
        self.length = length
        self._held: dict[int, Renew] = {}
        self._next = 0

    @property
    def every(self) -> float:
        """How often to renew, in seconds: a third of a lease."""
        return self.length.total_seconds() / 3

    @contextlib.contextmanager
    def hold(self, renew: Renew) -> Iterator[None]:
        """While the body runs, the lease `renew` extends is renewed with the others."""
        self._next += 1
        key = self._next
        self._held[key] = renew
        try:
            yield
        finally:
            self._held.pop(key, None)

    def renew_all(self) -> int:
        """Extend every lease held by one length from now; how many were renewed. A lease
        that was lost (taken over after a stall) is logged and no longer renewed."""
        until = self._clock.clock() + self.length
        renewed = 0
        for key, renew in list(self._held.items()):
            try:
                if renew(until):
                    renewed += 1
                    continue
            except Exception as exc:  # a busy or failing disk: next time, don't stop
                log.warning("could not renew a lease (trying again): %s", exc)
                continue
            log.warning("a lease was lost while working (taken over after a stall?)")
            self._held.pop(key, None)
        return renewed
