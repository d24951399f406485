"""The one scheduler of timed work: named jobs, each bounded, each counted, all stopped at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from bot.core.ports import StoreError
from bot.core.scheduler import RunAgainIn, Scheduler
from bot.metrics import Metrics


async def _until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Wait until `predicate()` holds (the jobs run on the same loop)."""
    async with asyncio.timeout(seconds):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on but the jobs' runs
            await asyncio.sleep(0.005)


async def test_jobs_run_at_first_then_every_period_and_when_woken() -> None:
    runs: list[str] = []
    scheduler = Scheduler()

    async def often() -> None:
        runs.append("often")

    async def rarely() -> None:
        runs.append("rarely")

    scheduler.add("often", often, 0.02)
    scheduler.add("rarely", rarely, 3600, first=3600)
    async with scheduler:
        await _until(lambda: runs.count("often") >= 3)
        assert "rarely" not in runs
        scheduler.wake("rarely")
        await _until(lambda: "rarely" in runs)
    stats = scheduler.stats
    assert stats["rarely"].runs == 1 and stats["rarely"].failures == 0
    assert stats["often"].last_success is not None


async def test_a_job_may_ask_for_its_next_run_sooner() -> None:
    times: list[float] = []
    scheduler = Scheduler()

    async def retrying() -> RunAgainIn:
        times.append(asyncio.get_running_loop().time())
        return RunAgainIn(0.01)  # a failure: again soon, not in an hour

    scheduler.add("retrying", retrying, 3600)
    async with scheduler:
        await _until(lambda: len(times) >= 3)


async def test_a_failing_job_keeps_its_schedule_and_says_so_once_a_spell(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    scheduler = Scheduler()

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise StoreError("the disk holding x.db is full")

    scheduler.add("flaky", flaky, 0.01)
    with caplog.at_level(logging.WARNING, logger="bot.core.scheduler"):
        async with scheduler:
            await _until(lambda: calls >= 5)
    said = [r.getMessage() for r in caplog.records]
    assert sum("job flaky failed" in line for line in said) == 1  # not once per run
    assert "the disk holding x.db is full" in said[0]
    assert any("job flaky works again" in line for line in said)
    assert scheduler.stats["flaky"].failures == 3


async def test_a_job_past_its_bound_is_stopped_and_the_others_go_on() -> None:
    quick = 0
    scheduler = Scheduler()

    async def stuck() -> None:
        await asyncio.sleep(3600)

    async def other() -> None:
        nonlocal quick
        quick += 1

    scheduler.add("stuck", stuck, 0.01, timeout=0.05)
    scheduler.add("other", other, 0.01)
    async with scheduler:
        await _until(lambda: scheduler.stats["stuck"].timeouts >= 2)
        assert quick >= 2
    assert scheduler.stats["stuck"].last_success is None


async def test_stopping_cancels_a_run_under_way_and_leaves_no_task() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()
    scheduler = Scheduler()

    async def long() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    scheduler.add("long", long, 1.0)
    scheduler.start()
    await started.wait()
    await scheduler.stop()
    assert cancelled.is_set()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("promote-bot job")]


def test_names_are_unique() -> None:
    scheduler = Scheduler()

    async def job() -> None:
        pass

    scheduler.add("a", job, 1)
    with pytest.raises(ValueError, match="exists already"):
        scheduler.add("a", job, 1)


async def test_every_job_is_in_the_metrics() -> None:
    scheduler = Scheduler()

    async def ok() -> None:
        pass

    async def broken() -> None:
        raise RuntimeError("a bug")

    scheduler.add("ok", ok, 3600)
    scheduler.add("broken", broken, 3600)
    metrics = Metrics()
    metrics.watch_jobs(scheduler)
    assert await scheduler.run_once("ok")
    assert not await scheduler.run_once("broken")
    text = metrics.render().decode()
    assert 'promote_bot_job_runs_total{job="ok",outcome="ok"} 1.0' in text
    assert 'promote_bot_job_runs_total{job="broken",outcome="failed"} 1.0' in text
    assert 'promote_bot_job_runs_total{job="broken",outcome="timeout"} 0.0' in text
    assert 'promote_bot_job_running{job="ok"} 0.0' in text
    assert 'promote_bot_job_last_success_timestamp_seconds{job="broken"} 0.0' in text
