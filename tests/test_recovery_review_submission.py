"""A recovery of a review submission's steps reads App Store Connect to decide a step whose
answer was lost, and must not be fooled by what someone else (Apple's reviewers, a person in
App Store Connect) did meanwhile: an approval is not a cancel, and a draft someone else opened
is not the one the bot asked for. Real `promote-bot serve`, killed with SIGKILL."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from bot.core.model import State
from bot.providers.appstore_review import cancel_took
from bot.store import open_any
from bot.transports.slack.blocks import APPROVE, ROLLBACK
from tests.conftest import ALICE, DAVE, IOS_APP, Bot
from tests.recovering import killed_while_held, request_held, restarted, train_env
from tests.test_interruptions_release_train import (  # noqa: F401
    CREATE,
    ITEM,
    SUBMIT,
    Train,
    train,
)


@pytest.mark.parametrize(
    ("submission", "version", "item", "took"),
    [
        ("CANCELING", "DEVELOPER_REJECTED", "REMOVED", True),
        ("COMPLETE", "DEVELOPER_REJECTED", "REMOVED", True),
        ("COMPLETE", "DEVELOPER_REJECTED", None, True),
        ("COMPLETE", "PENDING_DEVELOPER_RELEASE", "APPROVED", False),  # Apple approved it
        ("COMPLETE", "READY_FOR_DISTRIBUTION", None, False),  # approved and released
        ("COMPLETE", "DEVELOPER_REJECTED", "APPROVED", False),
        ("WAITING_FOR_REVIEW", "WAITING_FOR_REVIEW", "READY_FOR_REVIEW", False),
        ("CANCELING", "WAITING_FOR_REVIEW", "REMOVED", True),  # the item says it
        ("CANCELING", "WAITING_FOR_REVIEW", "READY_FOR_REVIEW", False),
        ("COMPLETE", "state unknown", None, False),  # the version couldn't be read
        ("COMPLETE", "state unknown", "REMOVED", True),
    ],
)
def test_what_reads_as_a_cancel(
    submission: str, version: str, item: str | None, took: bool
) -> None:
    assert cancel_took(submission, version, item) is took


async def test_a_lost_cancel_is_not_taken_for_done_when_apple_approved_meanwhile(
    tmp_path: Path,
    train: Train,  # noqa: F811
) -> None:
    env = train_env(tmp_path, train)
    first = await Bot.start(env, train.urls["slack"])
    try:
        await first.sender.command("appstore submit ios 2.4.0", ALICE)
        await train.fakes.slack.wait_for(lambda s: len(train.posts()) == 1, within=10)
        await first.sender.click(APPROVE, 1, DAVE)
        await train.fakes.slack.wait_for(lambda s: len(train.threads()) == 1, within=10)
        train.asc.hold[SUBMIT] = asyncio.Event()  # the next PATCH (the cancel) never lands
        await first.sender.click(ROLLBACK, 1, ALICE)
        await request_held(first, train, None, SUBMIT, request=2)
    finally:
        await first.stop(signal.SIGKILL)
    killed = time.monotonic()
    [version] = [v for v in train.asc.versions.values() if v.version_string == "2.4.0"]
    train.asc.train.review(version.id, "approve")  # Apple approves while the bot is down
    del train.asc.hold[SUBMIT]
    await restarted(train, env, killed, threads=2)
    store = open_any(str(tmp_path / "shared.db"))
    cancel, submitted = store.get(2), store.get(1)
    assert cancel is not None and cancel.outcome is not None and submitted is not None
    assert cancel.state is State.FAILED, cancel.outcome
    assert "Apple approved it" in cancel.outcome.headline
    assert version.state == "PENDING_DEVELOPER_RELEASE"
    # No "rolled back by #2" on the submission it did not undo.
    assert "rolled back" not in [e.event for e in store.history(request_id=1, limit=100)]
    store.close()


async def test_a_lost_create_never_adopts_a_draft_someone_else_opened(
    tmp_path: Path,
    train: Train,  # noqa: F811
) -> None:
    env = train_env(tmp_path, train)
    # The bot's create never lands.
    killed = await killed_while_held(train, env, "appstore submit ios 2.4.0", CREATE, lands=False)
    # Someone prepares 2.5.0 in App Store Connect meanwhile: a draft holding it.
    build = next(b for b in train.asc.builds.values() if b.number == "155")
    v250 = train.asc.add_version(IOS_APP, "2.5.0", build_id=build.id)
    theirs = train.asc.train.add_submission(IOS_APP, (v250.id,))
    await restarted(train, env, killed)
    store = open_any(str(tmp_path / "shared.db"))
    request = store.get(1)
    assert request is not None and request.outcome is not None
    assert request.state is State.UNKNOWN, request.outcome
    assert "opened by someone else" in request.outcome.headline
    writes = [c.operation for c in train.asc.writes()]
    assert writes == [CREATE]  # nothing added to their draft, nothing submitted
    assert theirs.state == "READY_FOR_REVIEW" and v250.state != "WAITING_FOR_REVIEW"
    store.close()


async def test_a_recovery_submits_nothing_the_approvers_did_not_see(
    tmp_path: Path,
    train: Train,  # noqa: F811
) -> None:
    env = train_env(tmp_path, train)
    # 2.4.0 lands in the bot's draft; its answer was lost with the process.
    killed = await killed_while_held(train, env, "appstore submit ios 2.4.0", ITEM, lands=True)
    await asyncio.sleep(0.3)
    # Someone adds 2.5.0 to that draft in App Store Connect while the bot is down.
    [draft] = train.asc.train.submissions.values()
    build = next(b for b in train.asc.builds.values() if b.number == "155")
    v250 = train.asc.add_version(IOS_APP, "2.5.0", build_id=build.id)
    train.asc.train.add_item(draft.id, v250.id)
    await restarted(train, env, killed)
    store = open_any(str(tmp_path / "shared.db"))
    request = store.get(1)
    assert request is not None and request.outcome is not None
    assert request.state is State.FAILED, request.outcome
    assert f"holds version {v250.id}, which the approvers didn't see" in request.outcome.headline
    assert train.writes() == [CREATE, ITEM]  # never submitted
    assert draft.state == "READY_FOR_REVIEW" and v250.state == "READY_FOR_REVIEW"
    store.close()
