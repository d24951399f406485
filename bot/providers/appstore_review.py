"""An App Store version to App Review, and the cancel that rolls it back.

Submitting is three writes, each a step of the request's journal: the review submission (the
app's open one is reused, never duplicated), the version as its item, `submitted: true`. A
crash between them is taken up from the last recorded step: a done step is never sent again,
a step whose answer was lost is decided by reading. Canceling (`canceled: true`) is offered
while the submission is still waiting for review.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.core.errors import ProviderError
from bot.core.model import Fact, Outcome, Preview, changed, not_sent
from bot.core.steps import StepNotDone, Steps
from bot.providers.appstore_api import Build, Reads, Resource, version_state
from bot.providers.appstore_train import (
    AppStoreCancelReview,
    AppStoreSubmit,
    stopped,
    unconfirmed,
    unsent,
    yes,
)
from bot.providers.appstore_train_client import (
    IN_PROGRESS,
    OPEN,
    SUBMITTED,
    Submission,
    TrainClient,
)

# A version that may go to App Review: being prepared, or rejected and ready to submit again.
SUBMITTABLE = ("PREPARE_FOR_SUBMISSION", "DEVELOPER_REJECTED", "REJECTED", "METADATA_REJECTED")
# What a version reads while it waits for App Review, and once Apple approved it: a cancel that
# took effect leaves neither (the first three are the waiting ones).
STILL_SUBMITTED = (
    "READY_FOR_REVIEW",
    "WAITING_FOR_REVIEW",
    "IN_REVIEW",
    "ACCEPTED",
    "PENDING_APPLE_RELEASE",
    "PENDING_DEVELOPER_RELEASE",
    "PROCESSING_FOR_APP_STORE",
    "PROCESSING_FOR_DISTRIBUTION",
    "READY_FOR_DISTRIBUTION",
    "READY_FOR_SALE",
    "PREORDER_READY_FOR_SALE",
)
_RELEASE_TYPE = {
    "MANUAL": "by hand once Apple approves it: /promote appstore release {app} {version}",
    "AFTER_APPROVAL": "by Apple, as soon as it approves it",
    "SCHEDULED": "by Apple, once approved, from {date}",
}


@dataclass(frozen=True)
class _Seen:
    """What App Store Connect shows of a version and the app's review submissions."""

    version: Resource | str
    attached: Build | None
    draft: Submission | None  # open: it takes items (READY_FOR_REVIEW, UNRESOLVED_ISSUES)
    busy: Submission | None  # in progress: App Store Connect takes no other meanwhile
    items: tuple[str, ...]  # the versions in the draft

    @property
    def state(self) -> str:
        return version_state(self.version) if isinstance(self.version, Resource) else "unknown"


class Review:
    """Preview, run and recover `submit` requests and their rollbacks (cancel)."""

    actions = (AppStoreSubmit, AppStoreCancelReview)

    def __init__(self, reads: Reads, client: TrainClient) -> None:
        self.reads, self.client = reads, client

    async def _seen(self, action: AppStoreSubmit) -> _Seen:
        version = await self.reads.version(action)
        if isinstance(version, str):
            return _Seen(version, None, None, None, ())
        platform = str(version.attributes.get("platform") or "IOS")
        attached, submissions = await asyncio.gather(
            self.reads.attached(version.id),
            self.client.open_submissions(action.app_id, platform),
        )
        draft = next((s for s in submissions if s.state in OPEN), None)
        busy = next((s for s in submissions if s.state in IN_PROGRESS), None)
        items = tuple(await self.client.items(draft.id)) if draft else ()
        return _Seen(version, attached, draft, busy, items)

    # --- preview -------------------------------------------------------------------------

    async def preview(self, action: AppStoreSubmit | AppStoreCancelReview) -> Preview:
        if isinstance(action, AppStoreCancelReview):
            return await self._cancel_preview(action)
        seen = await self._seen(action)
        version = seen.version
        if isinstance(version, str):
            return Preview(refusal=version)
        refusal = _unfit(action, seen)
        if refusal:
            return Preview(refusal=refusal)
        attached, draft = seen.attached, seen.draft
        assert attached is not None
        has_item = version.id in seen.items
        platform = str(version.attributes.get("platform") or "IOS")
        shown = f"{action.app} {action.version}"
        steps = [
            "create a review submission" if draft is None else f"reuse {draft.id}",
            f"add {action.version} to it" if not has_item else f"({action.version} is in it)",
            "submit it",
        ]
        facts = [
            Fact(label="Version", value=f"{action.version} ({seen.state}, {platform})"),
            Fact(
                label="Build", value=f"{attached.describe()}, encryption {attached.encryption_text}"
            ),
            Fact(label="Review submission", value=_draft_text(draft, has_item)),
            Fact(label="Steps", value=" → ".join(steps)),
            Fact(label="Released", value=_release_text(action, version)),
        ]
        warnings = []
        if attached.encryption is None:
            warnings.append(
                f"Build {attached.number}'s encryption is not declared: App Review waits for "
                f"export compliance. Declare it with /promote appstore encryption {action.app} "
                f"{attached.number} exempt|non-exempt."
            )
        others = [v for v in seen.items if v != version.id]
        if others:
            warnings.append(
                f"The open review submission holds {len(others)} more item(s): they go to App "
                f"Review with {shown}."
            )
        if version.attributes.get("releaseType") == "AFTER_APPROVAL":
            warnings.append(f"Apple releases {shown} as soon as it approves it.")
        expect = {
            "version_state": seen.state,
            "attached": attached.id,
            "attached_shown": attached.describe(),
            "submission": draft.id if draft else "",
            "has_item": yes(has_item),
            "items": ",".join(seen.items),  # what the approvers saw go to App Review with it
        }
        resolved = action.model_copy(
            update={
                "version_id": version.id,
                "platform": platform,
                "submission_id": draft.id if draft else None,
            }
        )
        return Preview(facts=facts, warnings=warnings, expect=expect, action=resolved)

    async def _cancel_preview(self, action: AppStoreCancelReview) -> Preview:
        submission = await self.client.submission(action.submission_id)
        version = await self.reads.version(action)
        state = version_state(version)
        if submission.state == "IN_REVIEW":
            return Preview(
                refusal=f"Apple is reviewing {action.app} {action.version} now (IN_REVIEW): the "
                "bot cancels a submission only while it is still waiting for review. Nothing "
                "was posted."
            )
        if submission.state != "WAITING_FOR_REVIEW":
            return Preview(
                refusal=f"Review submission {submission.id} is {submission.state} now, not "
                "waiting for review: there is nothing to cancel. Nothing was posted."
            )
        facts = [
            Fact(label="Review submission", value=submission.describe()),
            Fact(label="Version", value=f"{action.version} ({state})"),
            Fact(
                label="Cancels",
                value=f"the review: {action.version} goes back to DEVELOPER_REJECTED, to edit "
                "and submit again",
            ),
        ]
        return Preview(facts=facts, expect={"submission_state": submission.state})

    # --- execution and recovery ----------------------------------------------------------

    async def check(
        self, action: AppStoreSubmit | AppStoreCancelReview, expect: Mapping[str, str]
    ) -> Outcome | None:
        """The reads before the first write, compared with the preview: None to go ahead,
        else why nothing would be sent (a `ProviderError` when they fail)."""
        if isinstance(action, AppStoreCancelReview):
            now = await self.client.submission(action.submission_id)
            if now.state != expect.get("submission_state"):
                then = expect.get("submission_state", "?")
                return changed(f"review submission {now.id}", then, now.state)
            return None
        return _moved(action, await self._seen(action), expect)

    async def execute(
        self, action: AppStoreSubmit | AppStoreCancelReview, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        what = f"{action.app} {action.version}"
        try:
            stop = await self.check(action, expect)
        except ProviderError as exc:
            return not_sent(f"couldn't read {what} before the change ({exc.message})")
        if stop is not None:
            return stop
        if isinstance(action, AppStoreCancelReview):
            return await self._cancel(action, steps)
        return await self._submit(action, expect, steps)

    async def observe(
        self, action: AppStoreSubmit | AppStoreCancelReview, expect: Mapping[str, str], steps: Steps
    ) -> Outcome | None:
        """Carry on from the journal; with nothing sent, decide by reading only. Before it
        submits what a crash left unsubmitted, the version must still have the build that was
        approved."""
        if steps.started:
            if isinstance(action, AppStoreCancelReview):
                return await self._cancel(action, steps)
            assert action.version_id
            attached = await self.reads.attached(action.version_id)
            now = attached.id if attached else ""
            if not steps.marked("submit") and now != expect.get("attached", now):
                shows = attached.describe() if attached else "no build"
                then = expect.get("attached_shown", expect.get("attached", "?"))
                return Outcome(
                    state="failed",
                    headline=f"not submitted: the build attached to {action.app} "
                    f"{action.version} was {then} when this was requested; it is now {shows}. "
                    f"The review submission it prepared stays open: request again",
                )
            return await self._submit(action, expect, steps, recovering=True)
        check = _check(action)
        if isinstance(action, AppStoreCancelReview):
            now = await self.client.submission(action.submission_id)
            shows = f"review submission {now.id} {now.state}"
            return unsent(shows, now.state == expect.get("submission_state"), check)
        version = await self.reads.version(action)
        state = version_state(version)
        shows = f"{action.app} {action.version} {state}"
        return unsent(shows, state == expect.get("version_state"), check)

    async def _submit(
        self,
        action: AppStoreSubmit,
        expect: Mapping[str, str],
        steps: Steps,
        *,
        recovering: bool = False,
    ) -> Outcome:
        assert action.version_id
        submission_id, done = action.submission_id, []
        try:
            if not submission_id:
                created = await self.client.create_submission(
                    steps, action.app_id, action.platform or "IOS", action.version_id
                )
                submission_id = created.id
                done.append(f"review submission {submission_id} was created")
            if expect.get("has_item") != "yes":
                await self.client.add_item(steps, submission_id, action.version_id)
                done.append(f"{action.version} was added to it")
            if recovering and not steps.marked("submit"):
                # While the bot was down, anyone could add to the draft: only what the
                # approvers saw goes to App Review.
                unseen = await self._unseen(action, submission_id, expect)
                if unseen:
                    return Outcome(
                        state="failed",
                        headline=f"not submitted: review submission {submission_id} now also "
                        f"holds {unseen}, which the approvers didn't see (done before it: "
                        f"{'; '.join(done) or 'nothing'}); it stays open: request again",
                    )
            await self.client.submit(steps, submission_id)
        except ProviderError as exc:
            outcome = stopped(exc, done, _check(action))
            if done and outcome.state == "failed":
                stays = f". It stays open: the next request for {action.version} reuses it"
                outcome = outcome.model_copy(update={"headline": outcome.headline + stays})
            return outcome
        return await self._read_back(action, submission_id, expect)

    async def _unseen(
        self, action: AppStoreSubmit, submission_id: str, expect: Mapping[str, str]
    ) -> str:
        """The versions in the draft the preview didn't show, in words ("" when none)."""
        seen = {action.version_id, *filter(None, expect.get("items", "").split(","))}
        unseen = [v for v in await self.client.items(submission_id) if v not in seen]
        return ", ".join(f"version {v}" for v in unseen)

    async def _read_back(
        self, action: AppStoreSubmit, submission_id: str, expect: Mapping[str, str]
    ) -> Outcome:
        what = f"{action.app} {action.version}"
        try:
            submission, version = await asyncio.gather(
                self.client.submission(submission_id), self.reads.version(action)
            )
        except ProviderError as exc:
            why = f"reading it back failed ({exc.message})"
            return unconfirmed(why, _check(action), what="submission")
        state = version_state(version)
        facts = [
            Fact(label="Review submission", value=submission.describe()),
            Fact(label="Version", value=f"{action.version} ({state})"),
            Fact(label="Build", value=expect.get("attached_shown", "?")),
        ]
        if submission.state not in SUBMITTED:
            why = f"it reads {submission.state}"
            return unconfirmed(why, _check(action), facts, what="submission")
        return Outcome(
            state="succeeded",
            headline=f"{what} is submitted for App Review ({submission.state}): Apple reviews "
            "it next",
            facts=facts,
            before={"version_state": expect.get("version_state", ""), "submission": ""},
            installed={"submission": submission.id, "state": submission.state},
        )

    async def _cancel(self, action: AppStoreCancelReview, steps: Steps) -> Outcome:
        last: list[str] = []  # what the recovery's read showed, when it decides "not done"

        async def canceled() -> dict[str, Any] | None:
            submission, state, item = await self._cancel_reads(action)
            if cancel_took(submission.state, state, item):
                return submission.raw.document()
            last.append(_cancel_shows(action, submission, state, item))
            return None

        try:
            await self.client.cancel(steps, action.submission_id, canceled)
        except StepNotDone as exc:
            shows = f" ({last[-1]})" if last else ""
            return Outcome(state="failed", headline=exc.message + shows)
        except ProviderError as exc:
            return stopped(exc, [], _check(action))
        try:
            submission, state, item = await self._cancel_reads(action)
        except ProviderError as exc:
            return unconfirmed(
                f"reading it back failed ({exc.message})", _check(action), what="cancel"
            )
        facts = [
            Fact(label="Review submission", value=submission.describe()),
            Fact(label="Version", value=f"{action.version} ({state})"),
        ]
        if not cancel_took(submission.state, state, item):
            why = _cancel_shows(action, submission, state, item)
            return unconfirmed(why, _check(action), facts, what="cancel")
        return Outcome(
            state="succeeded",
            headline=f"the App Review submission of {action.app} {action.version} is canceled "
            f"({submission.state}); {action.version} is {state}, to edit and submit again",
            facts=facts,
            before={"submission_state": "WAITING_FOR_REVIEW"},
            installed={"submission_state": submission.state},
        )

    async def _cancel_reads(
        self, action: AppStoreCancelReview
    ) -> tuple[Submission, str, str | None]:
        """The submission, the version's state and the state of its item in the submission."""
        submission, version, items = await asyncio.gather(
            self.client.submission(action.submission_id),
            self.reads.version(action),
            self.client.item_states(action.submission_id),
        )
        version_id = version.id if isinstance(version, Resource) else action.version_id
        return submission, version_state(version), items.get(version_id or "")


def cancel_took(submission: str, version: str, item: str | None) -> bool:
    """Whether canceling a review submission took effect, from what App Store Connect reads:
    the submission CANCELING or COMPLETE, and the version's item REMOVED or the version no
    longer waiting for review nor approved (a version that can't be read tells nothing).
    COMPLETE alone can't tell: it is also what a submission Apple approved reads."""
    if submission not in ("CANCELING", "COMPLETE") or item in ("ACCEPTED", "APPROVED"):
        return False
    return item == "REMOVED" or version not in (*STILL_SUBMITTED, "state unknown")


def _cancel_shows(
    action: AppStoreCancelReview, submission: Submission, state: str, item: str | None
) -> str:
    approved = item in ("ACCEPTED", "APPROVED") or state in STILL_SUBMITTED[3:]
    said = f"the submission reads {submission.state} and {action.version} {state}"
    return said + (": Apple approved it" if approved else "")


def _unfit(action: AppStoreSubmit, seen: _Seen) -> str | None:
    """Why the version can't go to App Review now, or None."""
    shown = f"{action.app} {action.version}"
    assert isinstance(seen.version, Resource)
    in_draft = seen.version.id in seen.items
    if seen.state in ("WAITING_FOR_REVIEW", "IN_REVIEW"):
        return f"{shown} is {seen.state}: it is submitted already."
    if seen.state not in SUBMITTABLE and not (seen.state == "READY_FOR_REVIEW" and in_draft):
        return (
            f"{shown} is {seen.state}: only a version being prepared for submission "
            "(PREPARE_FOR_SUBMISSION), or one rejected and ready to submit again, can be "
            "submitted for App Review."
        )
    if seen.busy is not None:
        return (
            f"Another review submission of {action.app} is still in progress: "
            f"{seen.busy.describe()}. App Store Connect takes one at a time: wait for it to "
            f"end, or cancel it, before submitting {action.version}."
        )
    build = seen.attached
    usage = f"/promote appstore {action.app} {action.version} <build>"
    if build is None:
        return f"{shown} has no build attached: attach one first with {usage}."
    if build.expired or build.processing != "VALID":
        why = "expired" if build.expired else build.processing
        return (
            f"Build {build.describe()} attached to {shown} is {why}: attach another first "
            f"with {usage}."
        )
    return None


def _moved(action: AppStoreSubmit, seen: _Seen, expect: Mapping[str, str]) -> Outcome | None:
    """None to go ahead; else the `failed` outcome saying what moved since the preview."""
    shown = f"{action.app} {action.version}"
    if isinstance(seen.version, str):
        return not_sent(seen.version)
    if seen.busy is not None:
        return changed(
            f"{action.app}'s review submissions", "none in progress", seen.busy.describe()
        )
    attached = seen.attached.id if seen.attached else ""
    draft = seen.draft.id if seen.draft else ""
    for key, now, label, shows in (
        ("version_state", seen.state, f"{shown}'s state", seen.state),
        (
            "attached",
            attached,
            f"the build attached to {shown}",
            seen.attached and seen.attached.describe(),
        ),
        ("submission", draft, f"{action.app}'s open review submission", draft or "none"),
        ("has_item", yes(seen.version.id in seen.items), f"{action.version} in it", None),
    ):
        if key in expect and expect[key] != now:
            then = expect.get(f"{key}_shown") or expect[key] or "none"
            return changed(label, then, shows or now or "none")
    return None


def _draft_text(draft: Submission | None, has_item: bool) -> str:
    if draft is None:
        return "a new one (the app has none open)"
    return f"{draft.id}, open ({draft.state}): reused" + (
        ", the version is in it" if has_item else ""
    )


def _release_text(action: AppStoreSubmit, version: Resource) -> str:
    kind = str(version.attributes.get("releaseType") or "MANUAL")
    date = str(version.attributes.get("earliestReleaseDate") or "its release date")
    text = _RELEASE_TYPE.get(kind, kind)
    return text.format(app=action.app, version=action.version, date=date)


def _check(action: AppStoreSubmit | AppStoreCancelReview) -> str:
    return f"Check {action.app} {action.version}'s App Review submission in App Store Connect."
