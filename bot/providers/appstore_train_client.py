"""App Store Connect's release-train calls (asc-release-subset.json), read into small objects,
over the `ProviderHTTP` (and so the one ES256 token) the build actions use.

Every write is a step of the request's journal (`ProviderHTTP.write`), with a `find` that reads
whether it took effect: a step whose answer was lost (a timeout, a crash) is decided by that
read, never by sending it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot.core.errors import ProviderError, ProviderRejected, ProviderUncertain
from bot.core.steps import StepNotDone, Steps, StepUncertain
from bot.providers.appstore_api import LABEL, Resource, many, one, read, total, when
from bot.providers.http import ProviderHTTP, segment

OPEN = ("READY_FOR_REVIEW", "UNRESOLVED_ISSUES")  # a review submission that takes items
IN_PROGRESS = ("WAITING_FOR_REVIEW", "IN_REVIEW", "CANCELING", "COMPLETING")
SUBMITTED = ("WAITING_FOR_REVIEW", "IN_REVIEW", "COMPLETING", "COMPLETE")
_FORBIDDEN = (
    f"{LABEL} refused: the bot's API key (ASC_KEY_ID) may not do this; its role in Users and "
    "Access must allow it (App Manager or Admin)"
)
Find = Callable[[], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class BetaGroup:
    id: str
    name: str
    internal: bool
    all_builds: bool  # an internal group that gets every build

    @classmethod
    def of(cls, r: Resource) -> BetaGroup:
        a = r.attributes
        internal = bool(a.get("isInternalGroup"))
        name = str(a.get("name") or r.id)
        return cls(r.id, name, internal, internal and bool(a.get("hasAccessToAllBuilds")))

    @property
    def kind(self) -> str:
        return "internal" if self.internal else "external"


@dataclass(frozen=True)
class BetaReview:
    id: str
    state: str
    submitted: str
    raw: Resource = field(compare=False, repr=False)

    @classmethod
    def of(cls, r: Resource) -> BetaReview:
        a = r.attributes
        state = str(a.get("betaReviewState") or "state unknown")
        submitted = when(a["submittedDate"]) if a.get("submittedDate") else "not yet"
        return cls(r.id, state, submitted, r)


@dataclass(frozen=True)
class Submission:
    id: str
    state: str
    platform: str
    submitted: str | None
    version_id: str | None  # the version it is for, when the read included it
    raw: Resource = field(compare=False, repr=False)
    version: str | None = None  # that version's string, when the read included it

    @classmethod
    def of(cls, r: Resource, versions: Mapping[str, str] | None = None) -> Submission:
        a = r.attributes
        ids = r.related("appStoreVersionForReview")
        version_id = ids[0] if ids else None
        return cls(
            r.id,
            str(a.get("state") or "state unknown"),
            str(a.get("platform") or "IOS"),
            a.get("submittedDate"),
            version_id,
            r,
            (versions or {}).get(version_id or ""),
        )

    def describe(self) -> str:
        what = f" for {self.version or self.version_id}" if self.version_id else ""
        since = f", submitted {when(self.submitted)}" if self.submitted else ""
        return f"{self.id}{what} ({self.state}{since})"


@dataclass(frozen=True)
class Phased:
    id: str
    state: str
    day: int
    paused_days: int
    start: str | None
    raw: Resource = field(compare=False, repr=False)

    @classmethod
    def of(cls, r: Resource) -> Phased:
        a = r.attributes
        return cls(
            r.id,
            str(a.get("phasedReleaseState") or "state unknown"),
            int(a.get("currentDayNumber") or 0),
            int(a.get("totalPauseDuration") or 0),
            a.get("startDate"),
            r,
        )


def _done() -> dict[str, Any]:
    return {"status": 204, "body": ""}


def _resource(response: httpx.Response) -> Resource:
    """The resource a 200 or 201 answered with; a 2xx the bot can't read still happened."""
    try:
        resource = one(response)
    except ProviderError:
        resource = None
    if resource is None:
        raise ProviderUncertain(
            LABEL, f"{LABEL} answered {response.status_code} with a body the bot can't read"
        )
    return resource


class TrainClient:
    """The reads and writes of the release train."""

    def __init__(self, http: ProviderHTTP) -> None:
        self.http = http

    # --- reads -----------------------------------------------------------------------------

    async def groups(self, app_id: str) -> list[BetaGroup]:
        """The app's TestFlight beta groups."""
        response = await read(
            self.http,
            f"v1/apps/{segment(app_id)}/betaGroups",
            {"fields[betaGroups]": "name,isInternalGroup,hasAccessToAllBuilds", "limit": "200"},
            missing=f"{LABEL} has no app {app_id}",
        )
        return [BetaGroup.of(r) for r in many(response)]

    async def group(self, app_id: str, group_id: str) -> BetaGroup | None:
        return next((g for g in await self.groups(app_id) if g.id == group_id), None)

    async def build_count(self, group_id: str) -> int:
        """How many builds a group has."""
        response = await read(
            self.http,
            f"v1/betaGroups/{segment(group_id)}/builds",
            {"fields[builds]": "version", "limit": "1"},
            missing=f"{LABEL} has no beta group {group_id}",
        )
        return total(response, len(many(response)))

    async def in_group(self, build_id: str, group_id: str) -> bool:
        """Whether the group has the build."""
        response = await read(
            self.http,
            "v1/builds",
            {"filter[id]": build_id, "filter[betaGroups]": group_id, "limit": "1"},
            missing=f"{LABEL} has no build {build_id}",
        )
        return any(r.id == build_id for r in many(response))

    async def beta_detail(self, build_id: str) -> tuple[str, str]:
        """The build's internal and external TestFlight states."""
        response = await read(
            self.http,
            f"v1/builds/{segment(build_id)}/buildBetaDetail",
            missing=f"{LABEL} has no build {build_id}",
        )
        a = resource.attributes if (resource := one(response)) else {}
        internal = str(a.get("internalBuildState") or "unknown")
        return internal, str(a.get("externalBuildState") or "unknown")

    async def beta_review(self, build_id: str) -> BetaReview | None:
        """The build's beta app review submission, if it has one."""
        response = await read(
            self.http,
            "v1/betaAppReviewSubmissions",
            {"filter[build]": build_id, "limit": "1"},
            missing=f"{LABEL} has no build {build_id}",
        )
        found = many(response)
        return BetaReview.of(found[0]) if found else None

    async def open_submissions(self, app_id: str, platform: str) -> list[Submission]:
        """The app's review submissions for a platform that are not complete, newest first."""
        response = await read(
            self.http,
            "v1/reviewSubmissions",
            {
                "filter[app]": app_id,
                "filter[platform]": platform,
                "filter[state]": ",".join((*OPEN, *IN_PROGRESS)),
                "include": "appStoreVersionForReview",
                "limit": "10",
            },
            missing=f"{LABEL} has no app {app_id}",
        )
        versions = _version_strings(response)
        return [Submission.of(r, versions) for r in many(response)]

    async def submission(self, submission_id: str) -> Submission:
        response = await read(
            self.http,
            f"v1/reviewSubmissions/{segment(submission_id)}",
            {"include": "appStoreVersionForReview"},
            missing=f"{LABEL} has no review submission {submission_id}",
        )
        return Submission.of(_resource(response), _version_strings(response))

    async def items(self, submission_id: str) -> list[str]:
        """The versions a review submission holds (items not removed)."""
        states = await self.item_states(submission_id)
        return [version for version, state in states.items() if state != "REMOVED"]

    async def item_states(self, submission_id: str) -> dict[str, str]:
        """Version id → the state of its item in a review submission (READY_FOR_REVIEW,
        ACCEPTED, APPROVED, REJECTED, REMOVED); a version removed and added again is its
        live item."""
        response = await read(
            self.http,
            f"v1/reviewSubmissions/{segment(submission_id)}/items",
            {"include": "appStoreVersion", "limit": "50"},
            missing=f"{LABEL} has no review submission {submission_id}",
        )
        states: dict[str, str] = {}
        for r in many(response):
            state = str(r.attributes.get("state") or "state unknown")
            for version in r.related("appStoreVersion"):
                if states.get(version, "REMOVED") == "REMOVED":
                    states[version] = state
        return states

    async def phased(self, version_id: str) -> Phased | None:
        """The version's phased release, if it has one."""
        response = await read(
            self.http,
            f"v1/appStoreVersions/{segment(version_id)}/appStoreVersionPhasedRelease",
            missing=f"{LABEL} has no version {version_id}",
        )
        resource = one(response)
        return Phased.of(resource) if resource else None

    # --- writes, each a step of the journal -----------------------------------------------

    async def _write(
        self,
        steps: Steps,
        step: str,
        method: str,
        path: str,
        body: Any,
        explain: Mapping[int, str],
        find: Find,
    ) -> httpx.Response:
        """One step. A write whose answer is unclear is decided by reading it at once (never
        by sending it again); when the read doesn't show it, it may still land: unknown."""
        explain = {403: _FORBIDDEN, **explain}
        try:
            return await self.http.write(
                steps, step, method, path, json=body, explain=explain, find=find
            )
        except StepUncertain:
            raise
        except ProviderUncertain as exc:
            try:
                return await self.http.write(steps, step, method, path, json=body, find=find)
            except (StepNotDone, ProviderError):
                raise exc from None

    async def add_to_group(self, steps: Steps, build_id: str, group_id: str) -> None:
        async def find() -> dict[str, Any] | None:
            return _done() if await self.in_group(build_id, group_id) else None

        await self._write(
            steps,
            "add to group",
            "POST",
            f"v1/builds/{segment(build_id)}/relationships/betaGroups",
            {"data": [{"type": "betaGroups", "id": group_id}]},
            {
                404: f"{LABEL} has no build {build_id}",
                409: f"{LABEL} refused: the beta group {group_id} can't take this build",
                422: f"{LABEL} refused to add the build to the group: it is not ready for testing",
            },
            find,
        )

    async def remove_from_group(self, steps: Steps, build_id: str, group_id: str) -> None:
        async def find() -> dict[str, Any] | None:
            return None if await self.in_group(build_id, group_id) else _done()

        await self._write(
            steps,
            "remove from group",
            "DELETE",
            f"v1/builds/{segment(build_id)}/relationships/betaGroups",
            {"data": [{"type": "betaGroups", "id": group_id}]},
            {
                404: f"{LABEL} has no build {build_id}",
                409: f"{LABEL} refused: the build can't be taken out of beta group {group_id}",
                422: f"{LABEL} rejected the removal as invalid",
            },
            find,
        )

    async def submit_beta_review(self, steps: Steps, build_id: str) -> BetaReview:
        async def find() -> dict[str, Any] | None:
            review = await self.beta_review(build_id)
            return review.raw.document() if review else None

        body = {
            "data": {
                "type": "betaAppReviewSubmissions",
                "relationships": {"build": {"data": {"type": "builds", "id": build_id}}},
            }
        }
        response = await self._write(
            steps,
            "beta review",
            "POST",
            "v1/betaAppReviewSubmissions",
            body,
            {
                409: f"{LABEL} refused the beta review submission: the build has one already, "
                "or is not in a state to be reviewed",
                422: f"{LABEL} refused the beta review submission: the build is not ready for "
                "it (export compliance, test information)",
            },
            find,
        )
        return BetaReview.of(_resource(response))

    async def create_submission(
        self, steps: Steps, app_id: str, platform: str, version_id: str
    ) -> Submission:
        """A new review submission for the app and platform, for the version `version_id`.
        Apple's 409 "another reviewSubmission still in progress" is told naming that
        submission."""

        async def find() -> dict[str, Any] | None:
            # Only a draft holding nothing but this version can be the one the lost create
            # made: one holding others may be someone else's, and is never taken for ours.
            drafts = [s for s in await self.open_submissions(app_id, platform) if s.state in OPEN]
            for draft in drafts:
                if set(await self.items(draft.id)) <= {version_id}:
                    return draft.raw.document()
            if not drafts:
                return None
            named = "; ".join(d.describe() for d in drafts)
            raise StepUncertain(
                LABEL,
                "create submission",
                f"the review submission the bot asked for may or may not have been created: "
                f"{LABEL} shows an open one holding other versions ({named}), a draft opened "
                "by someone else or items added to the bot's since; the bot added nothing to it",
            )

        body = {
            "data": {
                "type": "reviewSubmissions",
                "attributes": {"platform": platform},
                "relationships": {"app": {"data": {"type": "apps", "id": app_id}}},
            }
        }
        try:
            response = await self._write(
                steps,
                "create submission",
                "POST",
                "v1/reviewSubmissions",
                body,
                {
                    409: f"{LABEL} refused a new review submission for the app",
                    422: f"{LABEL} rejected the review submission as invalid",
                },
                find,
            )
        except ProviderRejected as exc:
            if exc.status != 409:
                raise
            raise await self._in_progress(exc, app_id, platform) from None
        return Submission.of(_resource(response))

    async def _in_progress(
        self, exc: ProviderRejected, app_id: str, platform: str
    ) -> ProviderRejected:
        try:
            others = await self.open_submissions(app_id, platform)
        except ProviderError:
            others = []
        if not others:  # none to name: Apple's own words stand
            return exc
        named = "; ".join(s.describe() for s in others)
        detail = exc.message.split("(HTTP 409", 1)[-1]
        return ProviderRejected(
            LABEL,
            f"{LABEL} refused: another review submission of this app is still in progress "
            f"({named}); it takes one at a time: wait for it, or cancel it, and ask again "
            f"(HTTP 409{detail}",
            status=409,
        )

    async def add_item(self, steps: Steps, submission_id: str, version_id: str) -> None:
        async def find() -> dict[str, Any] | None:
            return _done() if version_id in await self.items(submission_id) else None

        body = {
            "data": {
                "type": "reviewSubmissionItems",
                "relationships": {
                    "reviewSubmission": {
                        "data": {"type": "reviewSubmissions", "id": submission_id}
                    },
                    "appStoreVersion": {"data": {"type": "appStoreVersions", "id": version_id}},
                },
            }
        }
        await self._write(
            steps,
            "add version",
            "POST",
            "v1/reviewSubmissionItems",
            body,
            {
                409: f"{LABEL} refused to add the version to review submission {submission_id}",
                422: f"{LABEL} refused to add the version: it is not ready for review",
            },
            find,
        )

    async def _patch_submission(
        self, steps: Steps, step: str, submission_id: str, attribute: str, find: Find
    ) -> Submission:
        body = {
            "data": {
                "type": "reviewSubmissions",
                "id": submission_id,
                "attributes": {attribute: True},
            }
        }
        response = await self._write(
            steps,
            step,
            "PATCH",
            f"v1/reviewSubmissions/{segment(submission_id)}",
            body,
            {
                404: f"{LABEL} has no review submission {submission_id}",
                409: f"{LABEL} refused: review submission {submission_id} is not in a state "
                "that allows this",
                422: f"{LABEL} refused: review submission {submission_id} can't be "
                f"{'submitted' if attribute == 'submitted' else 'canceled'} as it is",
            },
            find,
        )
        return Submission.of(_resource(response))

    async def submit(self, steps: Steps, submission_id: str) -> Submission:
        async def find() -> dict[str, Any] | None:
            now = await self.submission(submission_id)
            return now.raw.document() if now.state in SUBMITTED else None

        return await self._patch_submission(steps, "submit", submission_id, "submitted", find)

    async def cancel(self, steps: Steps, submission_id: str, canceled: Find) -> Submission:
        """`canceled: true`; `canceled` reads whether it took effect (the submission's state
        alone can't tell: COMPLETE is also what an approved submission reads)."""
        return await self._patch_submission(steps, "cancel", submission_id, "canceled", canceled)

    async def release(self, steps: Steps, version_id: str, released: Find) -> str | None:
        """Ask for a version's release; the id of the release request (None when it was
        found by reading the version: App Store Connect lists no release requests)."""
        body = {
            "data": {
                "type": "appStoreVersionReleaseRequests",
                "relationships": {
                    "appStoreVersion": {"data": {"type": "appStoreVersions", "id": version_id}}
                },
            }
        }
        response = await self._write(
            steps,
            "release",
            "POST",
            "v1/appStoreVersionReleaseRequests",
            body,
            {
                409: f"{LABEL} refused to release it: the version is not waiting for its release",
                422: f"{LABEL} rejected the release request as invalid",
            },
            released,
        )
        try:
            request = one(response)
        except ProviderError:
            return None
        return request.id if request and request.type == "appStoreVersionReleaseRequests" else None

    async def set_phased(self, steps: Steps, version_id: str, phased_id: str, state: str) -> Phased:
        async def find() -> dict[str, Any] | None:
            now = await self.phased(version_id)
            return now.raw.document() if now is not None and now.state == state else None

        body = {
            "data": {
                "type": "appStoreVersionPhasedReleases",
                "id": phased_id,
                "attributes": {"phasedReleaseState": state},
            }
        }
        response = await self._write(
            steps,
            f"phased {state}",
            "PATCH",
            f"v1/appStoreVersionPhasedReleases/{segment(phased_id)}",
            body,
            {
                404: f"{LABEL} has no phased release {phased_id}",
                409: f"{LABEL} refused: the phased release can't become {state} now",
                422: f"{LABEL} rejected {state} as a phased release state",
            },
            find,
        )
        return Phased.of(_resource(response))


def _version_strings(response: httpx.Response) -> dict[str, str]:
    """Version id → version string, of the versions a document includes."""
    try:
        included = response.json().get("included") or []
        return {
            str(r["id"]): str(r["attributes"]["versionString"])
            for r in included
            if r.get("type") == "appStoreVersions"
        }
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}
