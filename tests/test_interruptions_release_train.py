"""kill -9 between the writes of an App Review submission: a real `promote-bot serve` is
killed while App Store Connect holds one of the three writes, and a restart finishes the
submission from the request's journal: no step is sent twice, a step whose answer was lost is
decided by reading, and only steps never sent are sent. On SQLite, and on PostgreSQL."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.core.model import State
from bot.sandbox.appstore import FakeAppStore
from bot.store import open_any
from bot.transports.slack.blocks import APPROVE
from bot.web import WebServer
from tests import asc_contract
from tests.asc_train import seed_train
from tests.conftest import ALICE, DAVE, Bot, Fakes, block_text, fresh_postgres_database, serve_env
from tests.conftest import seed_appstore as seed_asc

CREATE = "POST /v1/reviewSubmissions"
ITEM = "POST /v1/reviewSubmissionItems"
SUBMIT = "PATCH /v1/reviewSubmissions/{id}"
LEASE = 1  # seconds: a killed process's lease lapses soon, so the restart takes it over


@dataclass
class Train:
    fakes: Fakes
    asc: FakeAppStore
    urls: dict[str, str]

    def threads(self) -> list[dict]:
        calls = self.fakes.slack.calls_to("chat.postMessage")
        return [c.args for c in calls if "thread_ts" in c.args]

    def posts(self) -> list[dict]:
        calls = self.fakes.slack.calls_to("chat.postMessage")
        return [c.args for c in calls if "thread_ts" not in c.args]

    def writes(self) -> list[str]:
        return [c.operation for c in self.asc.writes()]


@pytest.fixture
async def train() -> AsyncIterator[Train]:
    fakes, asc = Fakes(), FakeAppStore()
    seed_train(asc, seed_asc(asc))
    async with (
        WebServer(fakes.slack.app()) as slack,
        WebServer(fakes.znyx.app()) as znyx,
        WebServer(fakes.whop.app()) as whop,
        WebServer(asc.app()) as asc_server,
    ):
        yield Train(
            fakes,
            asc,
            {"slack": slack.url, "znyx": znyx.url, "whop": whop.url, "asc": asc_server.url},
        )
    asc_contract.check(asc.calls)


@pytest.mark.parametrize(
    ("held", "db"),
    [(CREATE, "sqlite"), (ITEM, "sqlite"), (SUBMIT, "sqlite"), (ITEM, "postgres")],
    ids=["create-sqlite", "item-sqlite", "submit-sqlite", "item-postgres"],
)
async def test_kill_9_between_the_writes_of_a_submission_is_finished_by_the_restart(
    tmp_path: Path, train: Train, held: str, db: str, request: pytest.FixtureRequest
) -> None:
    database = (
        str(tmp_path / "shared.db")
        if db == "sqlite"
        else fresh_postgres_database(request.getfixturevalue("postgres"))
    )
    env = serve_env(
        tmp_path,
        train.urls,
        ASC_API_URL=train.urls["asc"],
        PROMOTE_BOT_DB=database,
        PROMOTE_BOT_LEASE_SECONDS=str(LEASE),
    )
    gate = train.asc.hold[held] = asyncio.Event()
    first = await Bot.start(env, train.urls["slack"])
    try:
        await first.sender.command("appstore submit ios 2.4.0", ALICE)
        await train.fakes.slack.wait_for(lambda s: len(train.posts()) == 1, within=10)
        await first.sender.click(APPROVE, 1, DAVE)
        async with asyncio.timeout(10):  # the held write reached App Store Connect
            await train.asc.reached.setdefault(held, asyncio.Event()).wait()
    finally:
        await first.stop(signal.SIGKILL)
    killed = time.monotonic()
    sent = train.writes()
    assert sent == [CREATE, ITEM, SUBMIT][: sent.index(held) + 1]  # up to the held one
    gate.set()  # App Store Connect finishes the write the dead process was waiting for
    del train.asc.hold[held]
    await asyncio.sleep(0.2)
    store = open_any(database)
    steps = {s.name: s.done for s in store.steps(1)}
    assert (
        steps[{CREATE: "create submission", ITEM: "add version", SUBMIT: "submit"}[held]] is False
    )
    assert store.get(1).state is State.EXECUTING  # type: ignore[union-attr]

    await asyncio.sleep(max(0.0, LEASE + 0.5 - (time.monotonic() - killed)))  # its lease lapses
    second = await Bot.start(env, train.urls["slack"])
    try:
        await train.fakes.slack.wait_for(lambda s: len(train.threads()) == 1, within=30)
    finally:
        await second.stop()
    assert train.writes() == [CREATE, ITEM, SUBMIT]  # each once: nothing sent twice
    request = store.get(1)
    assert request is not None and request.state is State.SUCCEEDED, request.outcome
    assert request.outcome is not None
    assert request.outcome.headline.startswith("ios 2.4.0 is submitted for App Review")
    assert "(read again after the promotion was cut off)" in request.outcome.headline
    assert all(s.done for s in store.steps(1))
    [submission] = train.asc.train.submissions.values()
    assert submission.state == "WAITING_FOR_REVIEW"
    assert "is submitted for App Review" in block_text(train.threads()[0]["blocks"])
    store.close()


async def test_a_write_lost_with_its_process_is_read_not_sent_again(
    tmp_path: Path, train: Train
) -> None:
    """App Store Connect never gets to the item the dead process sent (the connection went
    with it): the restart reads the submission's items, doesn't find it, and says so; it
    sends nothing again, and the open submission is reused by the next request."""
    env = serve_env(
        tmp_path, train.urls, ASC_API_URL=train.urls["asc"], PROMOTE_BOT_LEASE_SECONDS=str(LEASE)
    )
    train.asc.hold[ITEM] = asyncio.Event()  # never set: the item never lands
    first = await Bot.start(env, train.urls["slack"])
    try:
        await first.sender.command("appstore submit ios 2.4.0", ALICE)
        await train.fakes.slack.wait_for(lambda s: len(train.posts()) == 1, within=10)
        await first.sender.click(APPROVE, 1, DAVE)
        async with asyncio.timeout(10):
            await train.asc.reached.setdefault(ITEM, asyncio.Event()).wait()
    finally:
        await first.stop(signal.SIGKILL)
    await asyncio.sleep(LEASE + 0.5)
    second = await Bot.start(env, train.urls["slack"])
    try:
        await train.fakes.slack.wait_for(lambda s: len(train.threads()) == 1, within=30)
    finally:
        await second.stop()
    store = open_any(str(tmp_path / "shared.db"))
    request = store.get(1)
    assert request is not None and request.state is State.FAILED
    assert request.outcome is not None
    assert request.outcome.headline.startswith(
        "not done: the step 'add version' was sent to App Store Connect and did not take "
        "effect (nothing was sent again) (done before it: review submission "
    )
    assert train.writes() == [CREATE, ITEM]  # the item once, and no submit
    [submission] = train.asc.train.submissions.values()
    assert submission.state == "READY_FOR_REVIEW" and submission.item_ids == []
    store.close()
