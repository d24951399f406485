"""The release train's App Store Connect client against the fake, over real HTTP: what it
sends (held to asc-release-subset.json after every test), the journal of its writes, and a
plain message for every error code of these operations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.core.errors import ProviderAuthError, ProviderNotFound, ProviderRejected
from bot.core.model import Outcome, Preview
from bot.core.steps import Steps
from bot.providers.appstore import AppStoreProvider, AppStoreToken
from bot.providers.appstore_train import (
    AppStoreCancelReview,
    AppStorePhased,
    AppStoreRelease,
    AppStoreSubmit,
    AppStoreTestFlight,
    TrainAction,
)
from bot.providers.appstore_train_client import TrainClient
from bot.providers.jwt_auth import load_private_key
from bot.sandbox.appstore import FakeAppStore
from bot.sandbox.calls import Call
from bot.web import WebServer
from tests import asc_contract
from tests.asc_train import TrainWorld, seed_train
from tests.conftest import ASC_ISSUER, ASC_KID, ASC_PEM, IOS_APP, AppStoreWorld, seed_appstore


@dataclass
class Asc:
    fake: FakeAppStore
    ids: AppStoreWorld
    train: TrainWorld
    url: str
    client: AppStoreProvider
    slept: list[float]


def _client(url: str, **options: object) -> AppStoreProvider:
    token = AppStoreToken(ASC_ISSUER, ASC_KID, load_private_key(ASC_PEM))
    return AppStoreProvider.create(url, token, **options)  # type: ignore[arg-type]


@pytest.fixture
async def asc() -> AsyncIterator[Asc]:
    fake = FakeAppStore()
    ids = seed_appstore(fake)
    train = seed_train(fake, ids)
    async with WebServer(fake.app()) as server:
        client = _client(server.url)
        slept: list[float] = []

        async def sleep(seconds: float) -> None:  # Retry-After honoured, without waiting
            slept.append(seconds)

        client.http.sleep = sleep
        yield Asc(fake, ids, train, server.url, client, slept)
        await client.aclose()
    asc_contract.check(fake.calls)


async def _ask(
    asc: Asc, action: TrainAction, steps: Steps | None = None
) -> tuple[Preview, Outcome]:
    preview = await asc.client.preview(action)
    assert preview.refusal is None, preview.refusal
    outcome = await asc.client.execute(
        preview.action or action,  # with the ids the preview looked up, when it did
        promoted_by="x",
        expect=preview.expect,
        steps=steps or Steps.in_memory(),
    )
    return preview, outcome


def _submit() -> AppStoreSubmit:
    return AppStoreSubmit(app="ios", app_id=IOS_APP, version="2.4.0")


def _writes(asc: Asc) -> list[str]:
    return [c.operation for c in asc.fake.writes()]


def test_the_contract_is_there_and_catches_what_breaks_it() -> None:
    if not asc_contract.available():
        pytest.skip("../shared/provider-docs/asc-release-subset.json is not beside this checkout")
    good = Call(
        "PATCH",
        "/v1/reviewSubmissions/x",
        {"data": {"type": "reviewSubmissions", "id": "x", "attributes": {"submitted": True}}},
    )
    assert asc_contract.violations(good) == []
    wrong_type = Call("PATCH", "/v1/reviewSubmissions/x", {"data": {"type": "builds", "id": "x"}})
    assert "is not one of ['reviewSubmissions']" in asc_contract.violations(wrong_type)[0]
    unknown = Call("GET", "/v1/reviewSubmissions?filter%5Bapp%5D=1&filter%5Bstate%5D=DONE")
    assert asc_contract.violations(unknown) == [
        "GET /v1/reviewSubmissions: filter[state]=DONE is not one of its values"
    ]
    assert asc_contract.violations(Call("GET", "/v1/reviewSubmissions")) == [
        "GET /v1/reviewSubmissions: the required filter[app] is missing"
    ]
    assert "not an operation" in asc_contract.violations(Call("DELETE", "/v1/builds/x"))[0]


async def test_one_token_serves_the_whole_train(asc: Asc) -> None:
    for action in (
        AppStoreTestFlight(app="ios", app_id=IOS_APP, build="155", group="External Testers"),
        _submit(),
        AppStoreRelease(app="ios", app_id=IOS_APP, version="2.3.1"),
        AppStorePhased(app="ios", app_id=IOS_APP, version="2.3.0", change="pause"),
    ):
        _, outcome = await _ask(asc, action)
        assert outcome.state == "succeeded", outcome
    assert asc.client.token.signed == 1 and len(asc.fake.tokens_seen) == 1
    assert len(asc.fake.calls) > 30


async def test_a_submission_is_three_writes_and_an_open_one_is_reused(asc: Asc) -> None:
    _, outcome = await _ask(asc, _submit())
    assert outcome.state == "succeeded" and "WAITING_FOR_REVIEW" in outcome.headline
    create, item, submit = asc.fake.writes()
    [submission] = asc.fake.train.submissions.values()
    assert create.body == {
        "data": {
            "type": "reviewSubmissions",
            "attributes": {"platform": "IOS"},
            "relationships": {"app": {"data": {"type": "apps", "id": IOS_APP}}},
        }
    }
    assert item.body == {
        "data": {
            "type": "reviewSubmissionItems",
            "relationships": {
                "reviewSubmission": {"data": {"type": "reviewSubmissions", "id": submission.id}},
                "appStoreVersion": {"data": {"type": "appStoreVersions", "id": asc.ids.v240}},
            },
        }
    }
    assert submit.path == f"/v1/reviewSubmissions/{submission.id}"
    assert submit.body == {
        "data": {
            "type": "reviewSubmissions",
            "id": submission.id,
            "attributes": {"submitted": True},
        }
    }
    assert outcome.installed == {"submission": submission.id, "state": "WAITING_FOR_REVIEW"}

    asc.fake.train.review(asc.ids.v240, "reject")  # Apple sends it back: UNRESOLVED_ISSUES
    asc.fake.calls.clear()
    preview, outcome = await _ask(asc, _submit())
    assert "reused" in str(preview.facts) and outcome.state == "succeeded"
    assert _writes(asc) == ["PATCH /v1/reviewSubmissions/{id}"]  # the same one, submitted again
    assert len(asc.fake.train.submissions) == 1


async def test_a_draft_with_other_items_is_reused_and_said_so(asc: Asc) -> None:
    draft = asc.fake.train.add_submission(IOS_APP)  # READY_FOR_REVIEW, nothing in it yet
    preview, outcome = await _ask(asc, _submit())
    assert preview.action.submission_id == draft.id  # type: ignore[union-attr]
    assert "reuse " + draft.id in str(preview.facts)
    assert _writes(asc) == ["POST /v1/reviewSubmissionItems", "PATCH /v1/reviewSubmissions/{id}"]
    assert outcome.state == "succeeded"


async def test_a_write_that_times_out_is_decided_by_reading_and_carried_on_later(
    asc: Asc,
) -> None:
    """The item's POST takes longer than the bot waits: it reads the submission's items (not
    there yet: unknown, never sent again); once the POST landed, a recovery with the same
    journal finds it, and sends only the last step."""
    client = _client(asc.url, timeout=httpx.Timeout(0.5))
    gate = asc.fake.hold["POST /v1/reviewSubmissionItems"] = asyncio.Event()
    steps = Steps.in_memory()
    preview = await client.preview(_submit())
    assert preview.action is not None
    outcome = await client.execute(
        preview.action, promoted_by="x", expect=preview.expect, steps=steps
    )
    assert outcome.state == "unknown", outcome
    assert "did not answer within 0.5 s" in outcome.headline
    assert "done before it: review submission" in outcome.headline
    gate.set()  # App Store Connect finishes the write the bot stopped waiting for
    await asyncio.sleep(0.1)
    asc.fake.hold.clear()
    recovered = await client.observe(
        preview.action, promoted_by="x", expect=preview.expect, steps=steps
    )
    assert recovered is not None and recovered.state == "succeeded", recovered
    assert _writes(asc) == [
        "POST /v1/reviewSubmissions",
        "POST /v1/reviewSubmissionItems",
        "PATCH /v1/reviewSubmissions/{id}",
    ]  # each step once
    await client.aclose()


async def test_a_recovery_submits_only_the_build_that_was_approved(asc: Asc) -> None:
    """A crash left the version in the submission, unsubmitted; meanwhile someone attached
    another build in App Store Connect: the recovery does not submit that one."""
    client = _client(asc.url, timeout=httpx.Timeout(0.3))
    asc.fake.hold["PATCH /v1/reviewSubmissions/{id}"] = asyncio.Event()  # never answers
    steps = Steps.in_memory()
    preview = await client.preview(_submit())
    assert preview.action is not None
    await client.execute(preview.action, promoted_by="x", expect=preview.expect, steps=steps)
    journal = Steps.in_memory()  # what a crash before the submit leaves: two steps done
    for record in steps:
        if record.name != "submit":
            await journal.write(record.name, _answer(record.result), provider="x")
    asc.fake.versions[asc.ids.v240].build_id = asc.ids.b155_exempt
    outcome = await client.observe(
        preview.action, promoted_by="x", expect=preview.expect, steps=journal
    )
    assert outcome is not None and outcome.state == "failed"
    assert outcome.headline.startswith(
        f"not submitted: the build attached to ios 2.4.0 was 152 ({asc.ids.b152_attached}) "
        f"when this was requested; it is now 155 ({asc.ids.b155_exempt})."
    )
    assert _writes(asc).count("PATCH /v1/reviewSubmissions/{id}") == 1  # the lost one only
    asc.fake.hold.clear()
    await client.aclose()


def _answer(result: Mapping[str, Any]) -> Callable[[], Awaitable[Mapping[str, Any]]]:
    """A step's send that answers what the journal recorded (to copy a journal)."""

    async def recorded() -> Mapping[str, Any]:
        return result

    return recorded


async def test_a_recovery_with_nothing_sent_sends_nothing(asc: Asc) -> None:
    preview = await asc.client.preview(_submit())
    assert preview.action is not None
    outcome = await asc.client.observe(
        preview.action, promoted_by="x", expect=preview.expect, steps=Steps.in_memory()
    )
    assert outcome is not None and outcome.state == "failed"
    assert (
        outcome.headline == "not done: ios 2.4.0 PREPARE_FOR_SUBMISSION, as before; request again"
    )
    assert asc.fake.writes() == []


async def test_apples_409_for_a_submission_in_progress_names_it(asc: Asc) -> None:
    """Another submission starts between the bot's last read and its write: Apple's 409 is
    told as such, naming it (the preview would have refused, naming it too)."""
    preview = await asc.client.preview(_submit())
    assert preview.action is not None
    gate = asc.fake.hold["POST /v1/reviewSubmissions"] = asyncio.Event()
    running = asyncio.create_task(
        asc.client.execute(
            preview.action, promoted_by="x", expect=preview.expect, steps=Steps.in_memory()
        )
    )
    async with asyncio.timeout(5):
        await asc.fake.reached.setdefault("POST /v1/reviewSubmissions", asyncio.Event()).wait()
    other = asc.fake.train.add_submission(IOS_APP, (asc.train.v220,), state="WAITING_FOR_REVIEW")
    gate.set()
    outcome = await running
    assert outcome.state == "failed"
    assert outcome.headline.startswith(
        "App Store Connect refused: another review submission of this app is still in progress "
        f"({other.id} for 2.2.0 (WAITING_FOR_REVIEW, submitted "
    )
    assert "another reviewSubmission still in progress" in outcome.headline  # Apple's words
    assert "nothing was changed" in outcome.headline
    assert len(asc.fake.writes()) == 1

    preview = await asc.client.preview(_submit())
    assert preview.refusal is not None
    assert f"still in progress: {other.id} for 2.2.0 (WAITING_FOR_REVIEW" in preview.refusal


async def test_a_step_refused_after_others_says_what_was_done(asc: Asc) -> None:
    asc.fake.fail_next(
        422, "The request entity is not valid", "Screenshots are missing.", method="PATCH"
    )
    _, outcome = await _ask(asc, _submit())
    [submission] = asc.fake.train.submissions.values()
    assert outcome.state == "failed"
    assert outcome.headline == (
        f"App Store Connect refused: review submission {submission.id} can't be submitted as "
        "it is (HTTP 422: The request entity is not valid: Screenshots are missing.); before "
        f"that, review submission {submission.id} was created; 2.4.0 was added to it. It stays "
        "open: the next request for 2.4.0 reuses it"
    )
    asc.fake.calls.clear()
    _, again = await _ask(asc, _submit())  # fixed in App Store Connect, asked again
    assert again.state == "succeeded"
    assert _writes(asc) == ["PATCH /v1/reviewSubmissions/{id}"]


async def test_a_cancel_while_waiting_for_review(asc: Asc) -> None:
    _, submitted = await _ask(asc, _submit())
    submission = submitted.installed["submission"]
    cancel = AppStoreCancelReview(
        app="ios",
        app_id=IOS_APP,
        version="2.4.0",
        version_id=asc.ids.v240,
        submission_id=submission,
        undoing="WAITING_FOR_REVIEW",
    )
    _, outcome = await _ask(asc, cancel)
    assert outcome.state == "succeeded"
    assert "DEVELOPER_REJECTED" in outcome.headline
    assert asc.fake.writes()[-1].body == {
        "data": {"type": "reviewSubmissions", "id": submission, "attributes": {"canceled": True}}
    }
    assert asc.fake.train.submissions[submission].state == "COMPLETE"  # once Apple processed it


async def test_phased_pause_time_is_counted_on_apples_clock(asc: Asc) -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    asc.fake.clock = lambda: now
    phased = asc.fake.train.phased[asc.train.phased230]
    phased.start, phased.paused, phased.paused_since = (
        now - timedelta(days=2, hours=1),
        timedelta(),
        None,
    )
    pause = AppStorePhased(app="ios", app_id=IOS_APP, version="2.3.0", change="pause")
    _, paused = await _ask(asc, pause)
    assert paused.state == "succeeded" and "day 3 of 7, 5% of users" in paused.headline
    now += timedelta(days=3)  # three days paused: the rollout waits, the pause time counts
    resume = pause.model_copy(update={"change": "resume"})
    preview, resumed = await _ask(asc, resume)
    assert "Paused so far" in str(preview.facts) and "3 of 30 days" in str(preview.facts)
    assert resumed.state == "succeeded"
    assert "day 3 of 7, 5% of users, paused 3 of 30 days so far" in resumed.headline
    phased.paused = timedelta(days=30)
    refused = await asc.client.preview(pause)
    assert refused.refusal == (
        "The phased release of ios 2.3.0 was paused for 30 days already: Apple allows 30 in all."
    )


# --- every error code of these operations, in plain words ---------------------------------

_ANY = {
    400: "App Store Connect refused the request (HTTP 400",
    401: "App Store Connect rejected the bot's credentials (ASC_KEY_ID / ASC_ISSUER_ID / the "
    "private key) (HTTP 401",
    403: "App Store Connect refused: the bot's API key (ASC_KEY_ID) may not do this; its role in "
    "Users and Access must allow it (App Manager or Admin) (HTTP 403",
    429: "App Store Connect is rate-limiting the bot; try again in a minute (HTTP 429",
}
_OWN = {  # the first write of each request: its method, and its own words per status
    "testflight": (
        "POST",
        {
            404: "App Store Connect has no build {build} (HTTP 404",
            409: "App Store Connect refused: the beta group {group} can't take this build "
            "(HTTP 409",
            422: "App Store Connect refused to add the build to the group: it is not ready for "
            "testing (HTTP 422",
        },
    ),
    "submit": (
        "POST",
        {
            409: "App Store Connect refused a new review submission for the app (HTTP 409",
            422: "App Store Connect rejected the review submission as invalid (HTTP 422",
        },
    ),
    "release": (
        "POST",
        {
            409: "App Store Connect refused to release it: the version is not waiting for its "
            "release (HTTP 409",
            422: "App Store Connect rejected the release request as invalid (HTTP 422",
        },
    ),
    "phased": (
        "PATCH",
        {
            404: "App Store Connect has no phased release {phased} (HTTP 404",
            409: "App Store Connect refused: the phased release can't become PAUSED now (HTTP 409",
            422: "App Store Connect rejected PAUSED as a phased release state (HTTP 422",
        },
    ),
}
_CASES = [
    (kind, status)
    for kind, (_, own) in _OWN.items()
    for status in sorted({400, 401, 403, 429, *own})  # 404 only where the operation has one
]


def _action(kind: str) -> TrainAction:
    return {
        "testflight": AppStoreTestFlight(
            app="ios", app_id=IOS_APP, build="155", group="External Testers"
        ),
        "submit": _submit(),
        "release": AppStoreRelease(app="ios", app_id=IOS_APP, version="2.3.1"),
        "phased": AppStorePhased(app="ios", app_id=IOS_APP, version="2.3.0", change="pause"),
    }[kind]


@pytest.mark.parametrize(("kind", "status"), _CASES)
async def test_each_error_code_of_each_write_is_told_plainly(
    asc: Asc, kind: str, status: int
) -> None:
    method, own = _OWN[kind]
    preview = await asc.client.preview(_action(kind))
    assert preview.action is not None
    tries = {401: 2, 429: 3}.get(status, 1)  # a 401 is re-signed once; a 429 tried 3 times
    for _ in range(tries):
        asc.fake.fail_next(
            status, "Apple's title", "Apple's detail.", method=method, **{"Retry-After": "7"}
        )
    outcome = await asc.client.execute(
        preview.action, promoted_by="x", expect=preview.expect, steps=Steps.in_memory()
    )
    assert outcome.state == "failed", outcome
    ids = {"build": asc.ids.b155_exempt, "group": asc.train.testers, "phased": asc.train.phased230}
    expected = (own.get(status) or _ANY[status]).format(**ids)
    assert outcome.headline == f"{expected}: Apple's title: Apple's detail.); nothing was changed"
    assert len(asc.fake.writes()) == tries  # refused unprocessed: sent again only then
    assert asc.slept == ([7.0, 7.0] if status == 429 else [])  # Retry-After, before each retry


async def test_apples_hourly_rate_limit_is_waited_out_as_retry_after_says(asc: Asc) -> None:
    now = datetime(2026, 12, 1, 12, 59, 50, tzinfo=UTC)

    async def sleep(seconds: float) -> None:  # the bot waits: App Store Connect's clock moves
        nonlocal now
        asc.slept.append(seconds)
        now += timedelta(seconds=seconds)
        asc.fake.hourly_limit = 3600  # a new hour: the key's whole allowance again

    asc.fake.clock = lambda: now
    asc.client.http.sleep = sleep
    preview = await asc.client.preview(_action("release"))
    assert preview.action is not None
    asc.fake.hourly_limit = 2  # from now: the two reads before the write, and no more
    outcome = await asc.client.execute(
        preview.action, promoted_by="x", expect=preview.expect, steps=Steps.in_memory()
    )
    assert outcome.state == "succeeded", outcome
    assert asc.slept == [11.0]  # until the next hour, as Retry-After said
    assert [c.status for c in asc.fake.writes()] == [429, 201]
    limited = asc.fake.writes()[0].answer
    assert limited["errors"][0]["code"] == "RATE_LIMIT_EXCEEDED"  # type: ignore[index]


async def test_a_key_app_store_connect_no_longer_knows_is_told_and_nothing_is_sent(
    asc: Asc,
) -> None:
    preview = await asc.client.preview(_action("phased"))
    assert preview.action is not None
    asc.fake.keys.clear()  # the key was revoked in App Store Connect: every token is refused
    outcome = await asc.client.execute(
        preview.action, promoted_by="x", expect=preview.expect, steps=Steps.in_memory()
    )
    assert outcome.state == "failed"
    assert outcome.headline.startswith(
        "not sent: couldn't read ios 2.3.0 before the change (" + _ANY[401]
    )
    assert asc.fake.writes() == [] and asc.client.token.signed == 2  # re-signed once, then told


async def test_app_store_connects_own_refusals_in_plain_words(asc: Asc) -> None:
    """Not injected: the fake refuses as App Store Connect does (403, 404, 409, 422)."""
    client, steps = TrainClient(asc.client.http), Steps.in_memory
    with pytest.raises(ProviderNotFound, match=r"has no phased release nope \(HTTP 404"):
        await client.set_phased(steps(), asc.ids.v230, "nope", "PAUSED")
    with pytest.raises(ProviderRejected, match=r"PAUSED now \(HTTP 409: .*INACTIVE: it can't"):
        await client.set_phased(steps(), asc.train.v231, asc.train.phased231, "PAUSED")
    with pytest.raises(ProviderRejected, match=r"for testing \(HTTP 422: .*processing or expired"):
        await client.add_to_group(steps(), asc.ids.b150_expired, asc.train.testers)

    async def released() -> None:
        return None

    with pytest.raises(ProviderRejected, match=r"release it: .*\(HTTP 409: .*PREPARE_FOR_SUB"):
        await client.release(steps(), asc.ids.v240, released)
    asc.fake.read_only_keys.add(ASC_KID)
    with pytest.raises(ProviderAuthError, match=r"may not do this.*\(HTTP 403: .*does not allow"):
        await client.add_to_group(steps(), asc.ids.b155_exempt, asc.train.testers)
    asc.fake.read_only_keys.clear()
    assert asc.fake.train.groups[asc.train.testers].build_ids == []  # nothing was changed
