"""The one place for timed work: named jobs, each run every so often (or sooner when woken),
each bounded by a timeout, each counted for `/metrics`, all stopped together at shutdown.

A job is an async function; what it returns is ignored, unless it is `RunAgainIn(seconds)`
(a retry sooner after a failure, say): else it runs again after its period. A job that fails is
logged (a failing database once per spell, not every period) and runs again at its next
time; one job's trouble never holds up another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from bot.core.ports import StoreError

log = logging.getLogger(__name__)

JobRun = Callable[[], Awaitable[object]]
QUIET_SECONDS = 60.0  # a job failing again and again says so at most this often


@dataclass(frozen=True)
class RunAgainIn:
    """What a job returns to run next after `seconds`, not after its period."""

    seconds: float


@dataclass
class JobStats:
    """What a job did so far, for `/metrics`."""

    runs: int = 0
    failures: int = 0
    timeouts: int = 0
    seconds: float = 0.0  # time spent in it, in all
    last_success: float | None = None  # Unix time of the last run that ended well
    running: bool = False


@dataclass
class Job:
    name: str
    run: JobRun
    every: float  # seconds between runs
    timeout: float  # a run longer than this is cancelled and counted as a failure
    first: float = 0.0  # seconds from the start to the first run
    stats: JobStats = field(default_factory=JobStats)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    _failing_since: float | None = None
    _said_at: float = 0.0


class Scheduler:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def add(
        self,
        name: str,
        run: JobRun,
        every: float,
        *,
        timeout: float | None = None,
        first: float = 0.0,
    ) -> None:
        """Run `run` every `every` seconds, the first time `first` seconds after `start`;
        each run may take `timeout` seconds (by default, the larger of `every` and 30 s)."""
        if name in self.jobs:
            raise ValueError(f"a job named {name!r} exists already")
        bound = timeout if timeout is not None else max(every, 30.0)
        self.jobs[name] = Job(name, run, every, bound, first)

    def wake(self, name: str) -> None:
        """Run job `name` now (or as soon as its current run ends); safe from a signal."""
        job = self.jobs.get(name)
        if job is not None:
            job.wake.set()

    @property
    def stats(self) -> Mapping[str, JobStats]:
        return {name: job.stats for name, job in self.jobs.items()}

    def start(self) -> None:
        """Start every job (on the running event loop)."""
        loop = asyncio.get_running_loop()
        for job in self.jobs.values():
            task = loop.create_task(self._loop(job), name=f"promote-bot job {job.name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Stop every job: a run under way is cancelled (each job leaves its work recorded
        in the store for the next start or another process)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def __aenter__(self) -> Scheduler:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def run_once(self, name: str) -> bool:
        """Run job `name` once now, as its timer would; True if it ended well."""
        job = self.jobs[name]
        failures = job.stats.failures
        await self._run(job)
        return job.stats.failures == failures

    async def _loop(self, job: Job) -> None:
        delay = job.first
        while True:
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await job.wake.wait()
            job.wake.clear()
            delay = await self._run(job)

    async def _run(self, job: Job) -> float:
        """One run of `job`; the seconds until its next run."""
        stats = job.stats
        stats.running = True
        started = time.perf_counter()
        try:
            async with asyncio.timeout(job.timeout):
                asked = await job.run()
        except TimeoutError:
            stats.timeouts += 1
            self._failed(job, f"it took longer than {job.timeout:g} s and was stopped")
            return job.every
        except StoreError as exc:
            self._failed(job, f"it can't use the database: {exc}")
            return job.every
        except Exception as exc:  # a job must outlive a bad moment of Slack or a provider
            self._failed(job, repr(exc), traceback=True)
            return job.every
        finally:
            stats.running = False
            stats.runs += 1
            stats.seconds += time.perf_counter() - started
        stats.last_success = time.time()
        if job._failing_since is not None:
            log.warning("job %s works again", job.name)
            job._failing_since = None
        return max(0.0, asked.seconds) if isinstance(asked, RunAgainIn) else job.every

    @staticmethod
    def _failed(job: Job, why: str, traceback: bool = False) -> None:
        job.stats.failures += 1
        now = time.monotonic()
        first = job._failing_since is None
        if first:
            job._failing_since = now
        if first or now - job._said_at >= QUIET_SECONDS:
            job._said_at = now
            log.error(
                "job %s failed (%s); it runs again at its next time",
                job.name,
                why,
                exc_info=traceback and first,
            )
