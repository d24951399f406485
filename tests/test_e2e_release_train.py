"""The App Store release train end to end: signed Slack requests in, the fake Slack and the
fake App Store Connect over HTTP; every call the bot made is held to asc-release-subset.json
after each test. TestFlight groups (with beta review), App Review submissions (three writes),
releases and phased releases: previews, refusals, policies, holds, rollbacks, history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.core.markup import literal
from bot.core.model import State
from bot.transports.slack.blocks import APPROVE, ROLLBACK
from tests import asc_contract
from tests.asc_train import TrainWorld, seed_train
from tests.conftest import ALICE, CAROL, CONFIG, DAVE, IOS_APP, World, block_text, buttons
from tests.test_shell import shell


@pytest.fixture
async def train(world: World) -> AsyncIterator[TrainWorld]:
    yield seed_train(world.asc, world.asc_ids)
    asc_contract.check(world.asc.calls)


def _state(world: World, request_id: int) -> State:
    request = world.bot.store.get(request_id)
    assert request is not None
    return request.state


async def _asked(world: World, text: str, user: str = CAROL) -> str:
    """Request; return the new release message's text."""
    before = len(world.posted())
    await world.requested(text, user)
    assert len(world.posted()) == before + 1
    return block_text(world.posted()[-1]["blocks"])


async def _approved(world: World, request_id: int, user: str = ALICE) -> str:
    """Approve; return the thread reply saying how it ended."""
    before = len(world.thread())
    await world.sender.click(APPROVE, request_id, user)
    await world.slack.wait_for(lambda s: len(world.thread()) == before + 1)
    return block_text(world.thread()[-1]["blocks"])


async def _rolled_back(world: World, request_id: int, user: str = CAROL) -> str:
    """Click Roll back on a request's thread reply; return the new release message."""
    before = len(world.posted())
    await world.sender.click(ROLLBACK, request_id, user)
    await world.slack.wait_for(lambda s: len(world.posted()) == before + 1)
    async with asyncio.timeout(5):
        while any(r.message_ts is None for r in world.bot.store.in_states([State.PENDING])):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return block_text(world.posted()[-1]["blocks"])


async def _refused(world: World, text: str, user: str = CAROL) -> str:
    posted = len(world.posted())
    told = await world.answer(text, user)
    assert len(world.posted()) == posted  # nothing was posted
    return told


def _writes(world: World) -> list[str]:
    return [c.operation for c in world.asc.writes()]


# --- TestFlight ------------------------------------------------------------------------------


async def test_a_build_into_an_external_group_with_its_beta_review_then_back_out(
    world: World, train: TrainWorld
) -> None:
    ids = world.asc_ids
    text = await _asked(world, 'appstore testflight ios 155 "external testers"')
    assert "ios build 155: add to TestFlight group External Testers" in text
    assert "Group*\nExternal Testers (external, 0 builds)" in text
    assert f"Build*\n155 ({ids.b155_exempt})" in text
    assert "Processing*\nVALID" in text and "Encryption*\nexempt" in text
    assert "Expires*\n2027-01-30 14:00 UTC" in text
    assert "External testing*\nREADY_FOR_BETA_SUBMISSION" in text
    assert "Beta review*\nnone yet: this request submits it" in text
    assert "only once Apple's beta review approves it" in text  # the warning
    assert "`appstore:ios:testflight`" in text
    assert world.asc.writes() == []

    reply = await _approved(world, 1)
    assert _writes(world) == [
        "POST /v1/builds/{id}/relationships/betaGroups",
        "POST /v1/betaAppReviewSubmissions",
    ]
    add, review = world.asc.writes()
    assert add.path == f"/v1/builds/{ids.b155_exempt}/relationships/betaGroups"
    assert add.body == {"data": [{"type": "betaGroups", "id": train.testers}]}
    assert review.body == {
        "data": {
            "type": "betaAppReviewSubmissions",
            "relationships": {"build": {"data": {"type": "builds", "id": ids.b155_exempt}}},
        }
    }
    assert "build 155 is in TestFlight group External Testers" in reply
    assert "Apple's beta review is WAITING_FOR_REVIEW: its external testers get it once" in reply
    assert _state(world, 1) is State.SUCCEEDED
    assert ids.b155_exempt in world.asc.train.groups[train.testers].build_ids

    back = await _rolled_back(world, 1)
    assert "ios build 155: remove from TestFlight group External Testers" in back
    assert "Rolls back #1" in back and "its testers lose it" in back
    assert "beta review submission (WAITING_FOR_REVIEW) stays" in back
    reply = await _approved(world, 2)
    delete = world.asc.writes()[-1]
    assert delete.operation == "DELETE /v1/builds/{id}/relationships/betaGroups"
    assert delete.body == {"data": [{"type": "betaGroups", "id": train.testers}]}
    assert "build 155 is out of TestFlight group External Testers" in reply
    assert world.asc.train.groups[train.testers].build_ids == []
    assert world.bot.store.get(1).rolled_back_by == 2  # type: ignore[union-attr]


async def test_an_internal_group_is_one_write_and_no_beta_review(
    world: World, train: TrainWorld
) -> None:
    text = await _asked(world, "appstore testflight ios 155 Internal QA")
    assert "Beta review*\nnot needed (an internal group)" in text
    assert "Group*\nInternal QA (internal, 1 build)" in text
    reply = await _approved(world, 1)
    assert _writes(world) == ["POST /v1/builds/{id}/relationships/betaGroups"]
    assert "build 155 is in TestFlight group Internal QA" in reply
    assert "Group: `Internal QA (internal, 2 builds now)`" in reply


async def test_a_build_in_an_external_group_without_review_only_gets_its_review(
    world: World, train: TrainWorld
) -> None:
    text = await _asked(world, "appstore testflight ios 155 Beta Crew")  # in it: no review yet
    assert "Adds*\nnothing: build 155 is in Beta Crew already; only the beta review" in text
    reply = await _approved(world, 1)
    assert _writes(world) == ["POST /v1/betaAppReviewSubmissions"]
    assert "Apple's beta review is WAITING_FOR_REVIEW" in reply
    told = await world.answer("rollback 1", CAROL)
    assert "it only submitted build 155 for Apple's beta review" in told


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("appstore testflight ios 154 Internal QA", "is PROCESSING, not VALID: TestFlight can't"),
        ("appstore testflight ios 150 Internal QA", "is expired: TestFlight can't offer it"),
        (
            "appstore testflight ios 153 External Testers",
            "encryption is not declared, and TestFlight needs it: declare it first with "
            "/promote appstore encryption ios 153 exempt|non-exempt.",
        ),
        ("appstore testflight ios 152 internal qa", "Build 152 is already in TestFlight group"),
        (
            "appstore testflight ios 155 Nightly",
            "ios has no TestFlight group `Nightly`. Its groups: Internal QA (internal), External "
            "Testers (external), Beta Crew (external), Everyone (internal).",
        ),
        (
            "appstore testflight ios 156 External Testers",
            "Apple's beta review of build 156 is REJECTED: external testers in External Testers "
            "can't get it.",
        ),
        ("appstore testflight ios 155 Everyone", "internal group with access to every build"),
        (
            "appstore testflight ios 999 Internal QA",
            "ios has no build numbered 999 (its newest builds: 158, ",
        ),
    ],
)
async def test_testflight_refusals_up_front(
    world: World, train: TrainWorld, text: str, reason: str
) -> None:
    assert literal(reason) in await _refused(world, text)  # the provider's words, escaped
    assert world.asc.writes() == []


async def test_one_open_request_per_build_and_group(world: World, train: TrainWorld) -> None:
    await _asked(world, "appstore testflight ios 155 External Testers")
    told = await _refused(world, "appstore testflight ios 155 external testers", DAVE)
    assert "#1 ios build 155: add to TestFlight group External Testers is already open" in told
    await _asked(world, "appstore testflight ios 155 Internal QA")  # another group: its own


# --- App Review ------------------------------------------------------------------------------


async def test_submit_for_review_is_three_writes_and_its_rollback_cancels_it(
    world: World, train: TrainWorld
) -> None:
    ids = world.asc_ids
    text = await _asked(world, "appstore submit ios 2.4.0")
    assert "ios 2.4.0: submit for App Review" in text and "`appstore:ios:review`" in text
    assert "Version*\n2.4.0 (PREPARE_FOR_SUBMISSION, IOS)" in text
    assert f"Build*\n152 ({ids.b152_attached}), encryption exempt" in text
    assert "Steps*\ncreate a review submission → add 2.4.0 to it → submit it" in text
    assert "Released*\nby hand once Apple approves it: /promote appstore release ios 2.4.0" in text

    reply = await _approved(world, 1)
    assert _writes(world) == [
        "POST /v1/reviewSubmissions",
        "POST /v1/reviewSubmissionItems",
        "PATCH /v1/reviewSubmissions/{id}",
    ]
    [submission] = world.asc.train.submissions.values()
    assert "ios 2.4.0 is submitted for App Review (WAITING_FOR_REVIEW)" in reply
    assert f"{submission.id} for 2.4.0 (WAITING_FOR_REVIEW, submitted " in reply
    assert world.asc.versions[ids.v240].state == "WAITING_FOR_REVIEW"

    back = await _rolled_back(world, 1)
    assert "ios 2.4.0: cancel its App Review submission" in back
    assert "goes back to DEVELOPER_REJECTED" in back
    reply = await _approved(world, 2)
    cancel = world.asc.writes()[-1]
    assert cancel.body == {
        "data": {"type": "reviewSubmissions", "id": submission.id, "attributes": {"canceled": True}}
    }
    assert "the App Review submission of ios 2.4.0 is canceled" in reply
    assert world.asc.versions[ids.v240].state == "DEVELOPER_REJECTED"
    assert ROLLBACK not in [a for a, _ in buttons(world.thread()[-1]["blocks"])]

    await _asked(world, "appstore submit ios 2.4.0")  # a developer-rejected version: again
    reply = await _approved(world, 3)
    assert "is submitted for App Review" in reply
    assert len(world.asc.train.submissions) == 2  # the canceled one is complete; a new one


async def test_a_submission_apple_is_reviewing_is_not_canceled(
    world: World, train: TrainWorld
) -> None:
    await _asked(world, "appstore submit ios 2.4.0")
    await _approved(world, 1)
    world.asc.train.review(world.asc_ids.v240, "start")  # App Review picks it up
    told = await world.answer("rollback 1", CAROL)
    assert "Apple is reviewing ios 2.4.0 now (IN_REVIEW): the bot cancels a submission only" in told
    assert len(world.posted()) == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "appstore submit ios 2.3.1",
            "ios 2.3.1 is PENDING_DEVELOPER_RELEASE: only a version being prepared for submission",
        ),
        ("appstore submit ios 2.9.0", "ios has no App Store version 2.9.0 (its versions: 2.4.0 "),
        (
            "appstore submit ios 2.5.0",
            "ios 2.5.0 has no build attached: attach one first with "
            "/promote appstore ios 2.5.0 <build>.",
        ),
    ],
)
async def test_submit_refusals_up_front(
    world: World, train: TrainWorld, text: str, reason: str
) -> None:
    world.asc.add_version(IOS_APP, "2.5.0")  # being prepared, no build yet
    assert literal(reason) in await _refused(world, text)  # the provider's words, escaped
    assert world.asc.writes() == []


async def test_a_submission_in_progress_is_named_before_anything_is_posted(
    world: World, train: TrainWorld
) -> None:
    other = world.asc.train.add_submission(IOS_APP, (train.v220,), state="WAITING_FOR_REVIEW")
    told = await _refused(world, "appstore submit ios 2.4.0")
    assert (
        f"Another review submission of ios is still in progress: {other.id} for 2.2.0 "
        "(WAITING_FOR_REVIEW, submitted "
    ) in told
    assert "wait for it to end, or cancel it, before submitting 2.4.0" in told


async def test_a_version_with_an_attach_open_waits_for_it(world: World, train: TrainWorld) -> None:
    await _asked(world, "appstore ios 2.4.0 155")  # attach: the same version
    told = await _refused(world, "appstore submit ios 2.4.0", DAVE)
    assert "#1 ios 2.4.0: attach build 155 is already open for this" in told


async def test_what_moved_since_the_preview_sends_nothing(world: World, train: TrainWorld) -> None:
    ids = world.asc_ids
    await _asked(world, "appstore submit ios 2.4.0")
    world.asc.versions[ids.v240].build_id = ids.b155_exempt  # attached by hand meanwhile
    reply = await _approved(world, 1)
    assert (
        f"the build attached to ios 2.4.0 was 152 ({ids.b152_attached}) when this was requested; "
        f"it is now 155 ({ids.b155_exempt}): nothing was changed, request again"
    ) in reply
    assert world.asc.writes() == [] and _state(world, 1) is State.FAILED


# --- release and phased release ---------------------------------------------------------------


async def test_release_says_it_cant_be_undone_and_starts_the_phased_release(
    world: World, train: TrainWorld
) -> None:
    text = await _asked(world, "appstore release ios 2.3.1")
    assert "ios 2.3.1: release to the App Store" in text and "`appstore:ios:release`" in text
    assert "Version*\n2.3.1 (PENDING_DEVELOPER_RELEASE)" in text
    assert "Releases*\n2.3.1 over 7 days, from day 1 (1% of users with automatic updates)" in text
    assert "Releasing can't be undone" in text
    reply = await _approved(world, 1)
    [release] = world.asc.writes()
    assert release.body == {
        "data": {
            "type": "appStoreVersionReleaseRequests",
            "relationships": {
                "appStoreVersion": {"data": {"type": "appStoreVersions", "id": train.v231}}
            },
        }
    }
    assert "ios 2.3.1 is released to the App Store (READY_FOR_DISTRIBUTION)" in reply
    assert "its phased release is ACTIVE, at day 1 of 7, 1% of users" in reply
    assert [a for a, _ in buttons(world.thread()[-1]["blocks"])] == []  # no Roll back
    told = await world.answer("rollback 1", CAROL)
    assert "can't be rolled back: a released version can't be taken off the App Store" in told


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("appstore release ios 2.4.0", "ios 2.4.0 is PREPARE_FOR_SUBMISSION: only a version Apple"),
        ("appstore release ios 2.3.0", "ios 2.3.0 is released already (READY_FOR_DISTRIBUTION)."),
        ("appstore phased ios 2.2.0 pause", "ios 2.2.0 has no phased release"),
        ("appstore phased ios 2.3.1 pause", "hasn't started: it starts when 2.3.1 is released"),
        ("appstore phased ios 2.3.0 resume", "is ACTIVE already, at day 3 of 7, 5% of users."),
    ],
)
async def test_release_refusals_up_front(
    world: World, train: TrainWorld, text: str, reason: str
) -> None:
    assert literal(reason) in await _refused(world, text)  # the provider's words, escaped
    assert world.asc.writes() == []


async def test_a_pause_is_rolled_back_by_a_resume_and_complete_has_no_way_back(
    world: World, train: TrainWorld
) -> None:
    text = await _asked(world, "appstore phased ios 2.3.0 pause")
    assert "Day*\n3 of 7 (5% of users with automatic updates)" in text
    assert "Paused so far*\n2 of 30 days" in text and "Change*\nACTIVE → PAUSED" in text
    assert "28 are left, then it resumes by itself" in text
    reply = await _approved(world, 1)
    assert world.asc.writes()[-1].body == {
        "data": {
            "type": "appStoreVersionPhasedReleases",
            "id": train.phased230,
            "attributes": {"phasedReleaseState": "PAUSED"},
        }
    }
    assert "the phased release of ios 2.3.0 is PAUSED, at day 3 of 7" in reply
    told = await _refused(world, "appstore release ios 2.3.0", DAVE)  # a release: its own thing
    assert "released already" in told

    back = await _rolled_back(world, 1)
    assert "ios 2.3.0: resume the phased release" in back and "Change*\nPAUSED → ACTIVE" in back
    await _approved(world, 2)
    assert world.asc.train.phased[train.phased230].state == "ACTIVE"

    await _asked(world, "appstore phased ios 2.3.0 complete")
    assert "it can't be undone" in block_text(world.posted()[-1]["blocks"])
    reply = await _approved(world, 3)
    assert "is COMPLETE" in reply and world.asc.train.phased[train.phased230].state == "COMPLETE"
    assert [a for a, _ in buttons(world.thread()[-1]["blocks"])] == []
    told = await world.answer("rollback 3", CAROL)
    assert "a completed phased release can't be undone" in told


# --- policies, holds, help, history ----------------------------------------------------------

_RUN_AT_ONCE = CONFIG + '\n[policies."appstore:ios:*"]\napprovals = 0\n'


@pytest.mark.parametrize("config_text", [_RUN_AT_ONCE])
async def test_a_policy_for_the_apps_train_covers_its_steps_only(
    world: World, train: TrainWorld, config_text: str
) -> None:
    await world.requested("appstore testflight ios 155 Internal QA", CAROL)
    await world.slack.wait_for(lambda s: len(world.thread()) == 1)  # ran at once
    assert "runs without approval" in block_text(world.posted()[0]["blocks"])
    await world.requested("appstore ios 2.4.0 155", CAROL)  # attach: appstore:ios, not the train
    assert "needs 1 approval" in block_text(world.posted()[1]["blocks"])
    assert _state(world, 2) is State.PENDING


def test_check_config_lists_the_train_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "promote-bot.toml"
    config.write_text(_RUN_AT_ONCE)
    assert main(["check-config", str(config)]) == 0
    lines = {
        line.split(": ", 1)[0].strip(): line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("  appstore:")
    }
    assert lines["appstore:ios"].endswith("(the default)")
    assert "needs 1 approval" in lines["appstore:ios"]
    for stage in ("testflight", "review", "release"):
        line = lines[f"appstore:ios:{stage}"]
        assert "runs without approval" in line and line.endswith('([policies."appstore:ios:*"])')


async def test_a_lock_on_the_train_holds_its_steps(world: World, train: TrainWorld) -> None:
    told = await world.answer("lock appstore:ios:* App Review incident", ALICE)
    assert "Locked `appstore:ios:*`" in told
    held = await _refused(world, "appstore release ios 2.3.1")
    assert "`appstore:ios:release` can't be promoted now" in held and "App Review incident" in held
    await _asked(world, "appstore ios 2.4.0 155")  # attaching is appstore:ios: not held by it


async def test_help_history_and_a_newcomers_words(world: World, train: TrainWorld) -> None:
    async def in_the_ack(text: str) -> str:  # answered at once: no provider is read for it
        response = await world.sender.command(text, CAROL)
        assert response.status_code == 200
        return str(response.json()["text"])

    help_text = await in_the_ack("help")
    for usage in (
        "/promote appstore testflight <app> <build> <group…>",
        "/promote appstore submit <app> <version>",
        "/promote appstore release <app> <version>",
        "/promote appstore phased <app> <version> pause|resume|complete",
    ):
        assert usage in help_text
    told = await in_the_ack("appstore phased ios 2.3.0 stop")
    assert "Say `pause`, `resume` or `complete`, not `stop`." in told
    told = await in_the_ack("appstore testflight ios 155")
    assert "`appstore testflight` takes an app, a build and a group name." in told
    told = await in_the_ack("appstore testflight ios 155 <!channel>")
    assert "is not a TestFlight group name" in told
    await _asked(world, "appstore release ios 2.3.1")
    await _approved(world, 1)
    history = await world.answer("history appstore:ios:release", CAROL)
    assert "#1 succeeded `appstore:ios:release` by the bot — ios 2.3.1 is released" in history
    assert "#1 requested `appstore:ios:release` by <@U0CAROL> — ios 2.3.1: release" in history
    assert world.asc.calls[0].path.startswith("/v1/apps/")  # nothing read for the refusals


# --- the shell: a newcomer walks the whole train in the sandbox -------------------------------


def test_the_whole_train_in_the_sandbox_shell(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/promote appstore testflight ios 155 External Testers",
            "as U_BOB",
            "approve 1",
            "/promote appstore submit ios 2.4.0",
            "as U_ALICE",
            "approve 2",
            "rollback 2",
            "as U_BOB",
            "approve 3",
            "/promote appstore release ios 2.3.1",
            "as U_ALICE",
            "approve 4",
            "/promote appstore phased ios 2.3.0 pause",
            "as U_BOB",
            "approve 5",
            "rollback 5",
            "as U_ALICE",
            "approve 6",
            "/promote appstore phased ios 2.3.0 complete",
            "as U_BOB",
            "approve 7",
            "/promote rollback 7",
        ]
    )
    result = shell(script + "\n", "--sandbox", cwd=tmp_path)
    out = result.stdout
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "/promote appstore testflight ios 155 External Testers   (beta review included)" in out
    assert "┌ #1 Promote ios build 155: add to TestFlight group External Testers" in out
    assert (
        "↳ #1 ✅ Added to TestFlight: build 155 is in TestFlight group External Testers; Apple's"
        in out
    )
    assert (
        "↳ #2 ✅ Submitted for App Review: ios 2.4.0 is submitted for App Review "
        "(WAITING_FOR_REVIEW)" in out
    )
    assert "┌ #3 Promote ios 2.4.0: cancel its App Review submission" in out
    assert (
        "↳ #3 ✅ App Review submission canceled: the App Review submission of ios 2.4.0 is canceled"
        in out
    )
    assert "│ ⚠️ Releasing can't be undone" in out
    assert "↳ #4 ✅ Released: ios 2.3.1 is released to the App Store" in out
    assert "↳ #5 ✅ Paused: the phased release of ios 2.3.0 is PAUSED, at day 3 of 7" in out
    assert "┌ #6 Promote ios 2.3.0: resume the phased release" in out
    assert "↳ #6 ✅ Resumed: the phased release of ios 2.3.0 is ACTIVE" in out
    assert "↳ #7 ✅ Completed: the phased release of ios 2.3.0 is COMPLETE" in out
    assert "» #7 can't be rolled back: a completed phased release can't be undone" in out
