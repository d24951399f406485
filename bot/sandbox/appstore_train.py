"""The fake App Store Connect's release train (asc-release-subset.json): TestFlight beta groups
and beta review, review submissions and their items, release requests and phased releases.

It keeps the states Apple documents and moves them as Apple does: a review submission is
`READY_FOR_REVIEW` while items are added, `WAITING_FOR_REVIEW` once submitted, `CANCELING` when
canceled (and `COMPLETE` once that is processed, by the next request); one open submission per
app and platform, so creating another is a 409 (`another reviewSubmission still in progress`);
a phased release counts its days and its pauses (30 days in all) on the fake's clock. What
Apple's reviewers do is a method here (`review`, `beta_review`), for tests and the sandbox.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.sandbox.asc_jsonapi import (
    IN_PROGRESS,
    Refused,
    check_query,
    data_of,
    includes,
    linkages,
    not_found,
    related_id,
    relationship_error,
    state_error,
    unprocessable,
)

if TYPE_CHECKING:
    from bot.sandbox.appstore import AscBuild, AscVersion, FakeAppStore

SUBMITTABLE = ("PREPARE_FOR_SUBMISSION", "DEVELOPER_REJECTED", "REJECTED", "METADATA_REJECTED")
OPEN = ("READY_FOR_REVIEW", "UNRESOLVED_ISSUES")  # a submission that takes items
SUBMISSION_STATES = (
    *OPEN,
    "WAITING_FOR_REVIEW",
    "IN_REVIEW",
    "CANCELING",
    "COMPLETING",
    "COMPLETE",
)
PLATFORMS = ("IOS", "MAC_OS", "TV_OS", "VISION_OS")
BETA_REVIEW_STATES = ("WAITING_FOR_REVIEW", "IN_REVIEW", "REJECTED", "APPROVED")
PHASED_STATES = ("INACTIVE", "ACTIVE", "PAUSED", "COMPLETE")
_SUBMISSION_INCLUDES = (
    "app",
    "items",
    "appStoreVersionForReview",
    "submittedByActor",
    "lastUpdatedByActor",
)
_DAY = timedelta(days=1)
_ids = itertools.count(1)


def _id(prefix: int) -> str:
    return str(uuid.UUID(int=(prefix << 96) + next(_ids)))


@dataclass
class AscGroup:
    id: str
    app_id: str
    name: str
    internal: bool
    all_builds: bool = False  # an internal group that gets every build of the app
    build_ids: list[str] = field(default_factory=list)

    def resource(self) -> dict:
        return {
            "type": "betaGroups",
            "id": self.id,
            "attributes": {
                "name": self.name,
                "createdDate": "2026-10-01T09:00:00+00:00",
                "isInternalGroup": self.internal,
                "hasAccessToAllBuilds": self.all_builds,
                "publicLinkEnabled": False,
                "feedbackEnabled": True,
            },
            "relationships": {"app": {"data": {"type": "apps", "id": self.app_id}}},
        }


@dataclass
class AscBetaReview:
    id: str
    build_id: str
    state: str = "WAITING_FOR_REVIEW"
    submitted: datetime | None = None

    def resource(self) -> dict:
        attributes: dict[str, Any] = {"betaReviewState": self.state}
        if self.submitted:
            attributes["submittedDate"] = self.submitted.isoformat()
        return {
            "type": "betaAppReviewSubmissions",
            "id": self.id,
            "attributes": attributes,
            "relationships": {"build": {"data": {"type": "builds", "id": self.build_id}}},
        }


@dataclass
class AscItem:
    id: str
    submission_id: str
    version_id: str
    state: str = "READY_FOR_REVIEW"  # ACCEPTED, APPROVED, REJECTED, REMOVED

    def resource(self, include_version: bool) -> dict:
        resource: dict[str, Any] = {
            "type": "reviewSubmissionItems",
            "id": self.id,
            "attributes": {"state": self.state},
        }
        if include_version:
            version = {"data": {"type": "appStoreVersions", "id": self.version_id}}
            resource["relationships"] = {"appStoreVersion": version}
        return resource


@dataclass
class AscSubmission:
    id: str
    app_id: str
    platform: str = "IOS"
    state: str = "READY_FOR_REVIEW"
    submitted: datetime | None = None
    item_ids: list[str] = field(default_factory=list)
    settles: bool = False  # CANCELING now; COMPLETE once the next request comes

    def resource(self, items: list[AscItem], include: set[str]) -> dict:
        attributes: dict[str, Any] = {"platform": self.platform, "state": self.state}
        if self.submitted:
            attributes["submittedDate"] = self.submitted.isoformat()
        relationships: dict[str, Any] = {"app": {"data": {"type": "apps", "id": self.app_id}}}
        if "items" in include:
            linked = [{"type": "reviewSubmissionItems", "id": i.id} for i in items]
            relationships["items"] = {"data": linked}
        if "appStoreVersionForReview" in include:
            versions = [i.version_id for i in items if i.state != "REMOVED"]
            linked = {"data": {"type": "appStoreVersions", "id": versions[0]}} if versions else {}
            relationships["appStoreVersionForReview"] = linked
        return {
            "type": "reviewSubmissions",
            "id": self.id,
            "attributes": attributes,
            "relationships": relationships,
        }


@dataclass
class AscPhased:
    id: str
    version_id: str
    state: str = "INACTIVE"
    start: datetime | None = None
    paused: timedelta = timedelta()  # pauses that ended
    paused_since: datetime | None = None

    def pause_time(self, now: datetime) -> timedelta:
        return self.paused + (now - self.paused_since if self.paused_since else timedelta())

    def day(self, now: datetime) -> int:
        if self.start is None:
            return 0
        if self.state == "COMPLETE":
            return 7
        return min(7, 1 + int((now - self.start - self.pause_time(now)) / _DAY))

    def resource(self, now: datetime) -> dict:
        attributes: dict[str, Any] = {
            "phasedReleaseState": self.state,
            "totalPauseDuration": int(self.pause_time(now) / _DAY),
        }
        if self.start is not None:
            attributes["startDate"] = self.start.isoformat()
            attributes["currentDayNumber"] = self.day(now)
        return {"type": "appStoreVersionPhasedReleases", "id": self.id, "attributes": attributes}


@dataclass
class FakeReleaseTrain:
    """The train's state and handlers; `asc` is the fake it belongs to (builds, versions,
    clock, documents)."""

    asc: FakeAppStore
    groups: dict[str, AscGroup] = field(default_factory=dict)
    beta_reviews: dict[str, AscBetaReview] = field(default_factory=dict)
    submissions: dict[str, AscSubmission] = field(default_factory=dict)
    items: dict[str, AscItem] = field(default_factory=dict)
    phased: dict[str, AscPhased] = field(default_factory=dict)
    release_requests: list[str] = field(default_factory=list)  # version ids, in order

    # --- seeding, and what Apple's reviewers do -------------------------------------------

    def add_group(
        self, app_id: str, name: str, *, internal: bool = False, all_builds: bool = False
    ) -> AscGroup:
        group = AscGroup(_id(1), app_id, name, internal, all_builds)
        self.groups[group.id] = group
        return group

    def add_beta_review(self, build_id: str, state: str = "WAITING_FOR_REVIEW") -> AscBetaReview:
        review = AscBetaReview(_id(2), build_id, state, self.asc.clock())
        self.beta_reviews[review.id] = review
        return review

    def add_submission(
        self, app_id: str, version_ids: tuple[str, ...] = (), state: str = "READY_FOR_REVIEW"
    ) -> AscSubmission:
        submission = AscSubmission(_id(3), app_id, state=state)
        if state not in OPEN:
            submission.submitted = self.asc.clock()
        version_state = {"READY_FOR_REVIEW": "READY_FOR_REVIEW", "UNRESOLVED_ISSUES": "REJECTED"}
        for version_id in version_ids:
            self._add_item(submission, self.asc.versions[version_id])
            self.asc.versions[version_id].state = version_state.get(state, state)
        self.submissions[submission.id] = submission
        return submission

    def add_item(self, submission_id: str, version_id: str) -> None:
        """A person adds a version to an open review submission in App Store Connect."""
        version = self.asc.versions[version_id]
        self._add_item(self.submissions[submission_id], version)
        version.state = "READY_FOR_REVIEW"

    def add_phased(
        self, version_id: str, state: str = "INACTIVE", *, day: int = 1, paused_days: int = 0
    ) -> AscPhased:
        now = self.asc.clock()
        phased = AscPhased(_id(4), version_id, state)
        if state != "INACTIVE":
            phased.start = now - (day - 1 + paused_days) * _DAY - timedelta(hours=1)
            phased.paused = paused_days * _DAY
            if state == "PAUSED":
                phased.paused -= timedelta(hours=1)
                phased.paused_since = now - timedelta(hours=1)
        self.phased[phased.id] = phased
        return phased

    def review(self, version_id: str, decision: str) -> None:
        """App Review on the submission holding `version_id`: `start`, `approve` or `reject`."""
        submission = next(
            s
            for s in self.submissions.values()
            if s.state in ("WAITING_FOR_REVIEW", "IN_REVIEW")
            and any(self.items[i].version_id == version_id for i in s.item_ids)
        )
        version = self.asc.versions[version_id]
        if decision == "start":
            submission.state = version.state = "IN_REVIEW"
            return
        approved = decision == "approve"
        submission.state = "COMPLETE" if approved else "UNRESOLVED_ISSUES"
        for item in (self.items[i] for i in submission.item_ids):
            item.state = "APPROVED" if approved else "REJECTED"
        version.state = "PENDING_DEVELOPER_RELEASE" if approved else "REJECTED"

    def beta_review(self, build_id: str, state: str) -> None:
        """Apple's beta review of a build decides (`IN_REVIEW`, `APPROVED`, `REJECTED`)."""
        next(r for r in self.beta_reviews.values() if r.build_id == build_id).state = state

    def settle(self) -> None:
        """What Apple finishes in the background between two requests."""
        now = self.asc.clock()
        for submission in self.submissions.values():
            if submission.state == "CANCELING" and submission.settles:
                submission.state = "COMPLETE"
            submission.settles = submission.state == "CANCELING"
        for phased in self.phased.values():
            if phased.state == "PAUSED" and phased.pause_time(now) >= 30 * _DAY:
                phased.paused, phased.paused_since = 30 * _DAY, None  # Apple resumes it
                phased.state = "ACTIVE"
            if (
                phased.state == "ACTIVE"
                and phased.start
                and now - phased.start - phased.paused > 7 * _DAY
            ):
                phased.state = "COMPLETE"

    # --- HTTP ------------------------------------------------------------------------------

    def routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/apps/{id}/betaGroups", self._groups)
        r.add_get("/v1/betaGroups/{id}/builds", self._group_builds)
        r.add_post("/v1/builds/{id}/relationships/betaGroups", self._add_to_groups)
        r.add_delete("/v1/builds/{id}/relationships/betaGroups", self._remove_from_groups)
        r.add_get("/v1/builds/{id}/buildBetaDetail", self._beta_detail)
        r.add_get("/v1/builds/{id}/betaAppReviewSubmission", self._build_beta_review)
        r.add_get("/v1/betaAppReviewSubmissions", self._beta_reviews)
        r.add_post("/v1/betaAppReviewSubmissions", self._submit_beta_review)
        r.add_get("/v1/reviewSubmissions", self._submissions)
        r.add_post("/v1/reviewSubmissions", self._create_submission)
        r.add_get("/v1/reviewSubmissions/{id}", self._submission)
        r.add_patch("/v1/reviewSubmissions/{id}", self._update_submission)
        r.add_get("/v1/reviewSubmissions/{id}/items", self._submission_items)
        r.add_post("/v1/reviewSubmissionItems", self._create_item)
        r.add_post("/v1/appStoreVersionReleaseRequests", self._release)
        r.add_get("/v1/appStoreVersions/{id}/appStoreVersionPhasedRelease", self._version_phased)
        r.add_patch("/v1/appStoreVersionPhasedReleases/{id}", self._update_phased)

    def _build(self, rid: str) -> AscBuild:
        build = self.asc.builds.get(rid)
        if build is None:
            raise Refused(not_found("builds", rid))
        return build

    def _version(self, rid: str) -> AscVersion:
        version = self.asc.versions.get(rid)
        if version is None:
            raise Refused(not_found("appStoreVersions", rid))
        return version

    def _builds_of(self, group: AscGroup) -> list[AscBuild]:
        if group.all_builds:
            return [b for b in self.asc.builds.values() if b.app_id == group.app_id]
        return [self.asc.builds[b] for b in group.build_ids]

    async def _groups(self, request: web.Request) -> web.Response:
        check_query(request.query)
        app_id = request.match_info["id"]
        if app_id not in self.asc.apps:
            raise Refused(not_found("apps", app_id))
        found = [g for g in self.groups.values() if g.app_id == app_id]
        return self.asc.listing([g.resource() for g in found], request)

    async def _group_builds(self, request: web.Request) -> web.Response:
        check_query(request.query)
        group = self.groups.get(request.match_info["id"])
        if group is None:
            raise Refused(not_found("betaGroups", request.match_info["id"]))
        builds = [b.resource(self.asc.base) for b in self._builds_of(group)]
        return self.asc.listing(builds, request)

    def _groups_named(self, build: AscBuild, body: Any) -> list[AscGroup]:
        groups = []
        for gid in linkages(body, "betaGroups"):
            group = self.groups.get(gid)
            if group is None or group.app_id != build.app_id:
                raise relationship_error(f"There is no beta group '{gid}' of this build's app.")
            groups.append(group)
        return groups

    async def _add_to_groups(self, request: web.Request) -> web.Response:
        build = self._build(request.match_info["id"])
        groups = self._groups_named(build, await self.asc.body(request))
        if build.processing != "VALID" or build.expired:
            raise unprocessable("The build is not valid for testing (processing or expired).")
        external = [g for g in groups if not g.internal]
        if external and build.uses_non_exempt_encryption is None:
            raise unprocessable("The build is missing export compliance information.")
        for group in groups:
            if not group.all_builds and build.id not in group.build_ids:
                group.build_ids.append(build.id)  # adding one already there changes nothing
        return web.Response(status=204)

    async def _remove_from_groups(self, request: web.Request) -> web.Response:
        build = self._build(request.match_info["id"])
        groups = self._groups_named(build, await self.asc.body(request))
        if any(g.all_builds for g in groups):
            raise state_error("A build can't be removed from a group with access to all builds.")
        for group in groups:
            if build.id in group.build_ids:
                group.build_ids.remove(build.id)
        return web.Response(status=204)

    def _beta_states(self, build: AscBuild) -> tuple[str, str]:
        if build.processing != "VALID":
            state = "PROCESSING" if build.processing == "PROCESSING" else "PROCESSING_EXCEPTION"
            return state, state
        if build.expired:
            return "EXPIRED", "EXPIRED"
        if build.uses_non_exempt_encryption is None:
            return "MISSING_EXPORT_COMPLIANCE", "MISSING_EXPORT_COMPLIANCE"
        mine = [g for g in self.groups.values() if build in self._builds_of(g)]
        internal = "IN_BETA_TESTING" if any(g.internal for g in mine) else "READY_FOR_BETA_TESTING"
        review = next((r for r in self.beta_reviews.values() if r.build_id == build.id), None)
        external = {
            None: "READY_FOR_BETA_SUBMISSION",
            "WAITING_FOR_REVIEW": "WAITING_FOR_BETA_REVIEW",
            "IN_REVIEW": "IN_BETA_REVIEW",
            "REJECTED": "BETA_REJECTED",
            "APPROVED": "BETA_APPROVED",
        }[review.state if review else None]
        if external == "BETA_APPROVED" and any(not g.internal for g in mine):
            external = "IN_BETA_TESTING"
        return internal, external

    def beta_detail(self, build: AscBuild) -> dict:
        """The build's buildBetaDetail resource: its TestFlight states as the train has them."""
        internal, external = self._beta_states(build)
        return {
            "type": "buildBetaDetails",
            "id": build.id,
            "attributes": {
                "autoNotifyEnabled": True,
                "internalBuildState": internal,
                "externalBuildState": external,
            },
            "relationships": {"build": {"data": {"type": "builds", "id": build.id}}},
        }

    async def _beta_detail(self, request: web.Request) -> web.Response:
        check_query(request.query, enums={"include": ("build",)})
        build = self._build(request.match_info["id"])
        detail = self.beta_detail(build)
        extra = {"included": [build.resource(self.asc.base)]} if includes(request.query) else {}
        return self.asc.document(detail, request, **extra)

    async def _build_beta_review(self, request: web.Request) -> web.Response:
        check_query(request.query)
        build = self._build(request.match_info["id"])
        review = next((r for r in self.beta_reviews.values() if r.build_id == build.id), None)
        return self.asc.document(review.resource() if review else None, request)

    async def _beta_reviews(self, request: web.Request) -> web.Response:
        q = request.query
        check_query(
            q,
            required=("filter[build]",),
            enums={"filter[betaReviewState]": BETA_REVIEW_STATES, "include": ("build",)},
        )
        builds = q["filter[build]"].split(",")
        states = (
            q.get("filter[betaReviewState]", "").split(",")
            if "filter[betaReviewState]" in q
            else None
        )
        found = [
            r
            for r in self.beta_reviews.values()
            if r.build_id in builds and (states is None or r.state in states)
        ]
        extra: dict[str, Any] = {}
        if includes(q):
            extra["included"] = [self.asc.builds[r.build_id].resource(self.asc.base) for r in found]
        return self.asc.listing([r.resource() for r in found], request, **extra)

    async def _submit_beta_review(self, request: web.Request) -> web.Response:
        data = data_of(await self.asc.body(request), "betaAppReviewSubmissions")
        build_id = related_id(data, "build", "builds")
        build = self.asc.builds.get(build_id)
        if build is None:
            raise relationship_error(f"There is no build '{build_id}'.")
        if any(r.build_id == build_id for r in self.beta_reviews.values()):
            raise Refused(
                self.asc.error(
                    409,
                    "ENTITY_ERROR.BUILD.ALREADY_SUBMITTED",
                    "The build was already submitted for beta review.",
                    f"Build '{build_id}' already has a beta app review submission.",
                )
            )
        if build.processing != "VALID" or build.expired:
            raise unprocessable("The build is not valid for beta review (processing or expired).")
        if build.uses_non_exempt_encryption is None:
            raise unprocessable("The build is missing export compliance information.")
        review = self.add_beta_review(build_id)
        return self.asc.document(review.resource(), request, status=201)

    # --- review submissions --------------------------------------------------------------

    def _submission_doc(self, submission: AscSubmission, query: Any) -> tuple[dict, list[dict]]:
        include = includes(query)
        items = [self.items[i] for i in submission.item_ids]
        included: list[dict] = []
        if "items" in include:
            included += [i.resource(False) for i in items]
        if "appStoreVersionForReview" in include:
            versions = [i.version_id for i in items if i.state != "REMOVED"][:1]
            included += [self.asc.versions[v].resource(self.asc.base) for v in versions]
        return submission.resource(items, include), included

    async def _submissions(self, request: web.Request) -> web.Response:
        q = request.query
        check_query(
            q,
            required=("filter[app]",),
            enums={
                "filter[platform]": PLATFORMS,
                "filter[state]": SUBMISSION_STATES,
                "include": _SUBMISSION_INCLUDES,
            },
            known=("limit[items]",),
        )
        apps = q["filter[app]"].split(",")
        platforms = q["filter[platform]"].split(",") if "filter[platform]" in q else None
        states = q["filter[state]"].split(",") if "filter[state]" in q else None
        data, included = [], []
        for s in reversed(list(self.submissions.values())):  # the newest first
            if (
                s.app_id in apps
                and (platforms is None or s.platform in platforms)
                and (states is None or s.state in states)
            ):
                resource, extra = self._submission_doc(s, q)
                data.append(resource)
                included += [i for i in extra if i not in included]
        return self.asc.listing(data, request, **({"included": included} if included else {}))

    def _submission_of(self, rid: str) -> AscSubmission:
        submission = self.submissions.get(rid)
        if submission is None:
            raise Refused(not_found("reviewSubmissions", rid))
        return submission

    async def _submission(self, request: web.Request) -> web.Response:
        check_query(request.query, enums={"include": _SUBMISSION_INCLUDES}, known=("limit[items]",))
        resource, included = self._submission_doc(
            self._submission_of(request.match_info["id"]), request.query
        )
        return self.asc.document(resource, request, **({"included": included} if included else {}))

    async def _create_submission(self, request: web.Request) -> web.Response:
        data = data_of(await self.asc.body(request), "reviewSubmissions")
        app_id = related_id(data, "app", "apps")
        if app_id not in self.asc.apps:
            raise relationship_error(f"There is no app '{app_id}'.")
        platform = (data.get("attributes") or {}).get("platform") or "IOS"
        if platform not in PLATFORMS:
            raise unprocessable(f"'{platform}' is not a platform.")
        for other in self.submissions.values():
            if other.app_id == app_id and other.platform == platform and other.state != "COMPLETE":
                if other.state in OPEN:
                    raise state_error(
                        f"Review submission '{other.id}' of this app and platform is still open "
                        f"({other.state}): add items to it."
                    )
                raise state_error(
                    f"Could not create a new review submission: {IN_PROGRESS} ('{other.id}')."
                )
        submission = AscSubmission(_id(3), app_id, platform)
        self.submissions[submission.id] = submission
        resource, _ = self._submission_doc(submission, {})
        return self.asc.document(resource, request, status=201)

    async def _update_submission(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        submission = self._submission_of(rid)
        data = data_of(await self.asc.body(request), "reviewSubmissions", rid=rid)
        attributes = data.get("attributes") or {}
        live = [self.items[i] for i in submission.item_ids if self.items[i].state != "REMOVED"]
        if attributes.get("submitted") is True:
            if submission.state not in OPEN:
                raise state_error(
                    f"The review submission is {submission.state}: it can't be submitted."
                )
            if not live:
                raise unprocessable("The review submission has no items to submit.")
            submission.state, submission.submitted = "WAITING_FOR_REVIEW", self.asc.clock()
            for item in live:
                item.state = "READY_FOR_REVIEW"
                self.asc.versions[item.version_id].state = "WAITING_FOR_REVIEW"
        elif attributes.get("canceled") is True:
            if submission.state not in ("WAITING_FOR_REVIEW", "IN_REVIEW", "UNRESOLVED_ISSUES"):
                raise state_error(
                    f"The review submission is {submission.state}: it can't be canceled."
                )
            submission.state, submission.settles = "CANCELING", False
            for item in live:
                item.state = "REMOVED"
                self.asc.versions[item.version_id].state = "DEVELOPER_REJECTED"
        elif any(v is not None for k, v in attributes.items() if k in ("submitted", "canceled")):
            raise unprocessable("'submitted' and 'canceled' can only be set to true.")
        resource, _ = self._submission_doc(submission, {})
        return self.asc.document(resource, request)

    async def _submission_items(self, request: web.Request) -> web.Response:
        check_query(request.query, enums={"include": ("appStoreVersion",)})
        submission = self._submission_of(request.match_info["id"])
        with_version = "appStoreVersion" in includes(request.query)
        items = [self.items[i] for i in submission.item_ids]
        extra: dict[str, Any] = {}
        if with_version:
            versions = dict.fromkeys(i.version_id for i in items)
            extra["included"] = [self.asc.versions[v].resource(self.asc.base) for v in versions]
        return self.asc.listing([i.resource(with_version) for i in items], request, **extra)

    def _add_item(self, submission: AscSubmission, version: AscVersion) -> AscItem:
        item = AscItem(_id(5), submission.id, version.id)
        self.items[item.id] = item
        submission.item_ids.append(item.id)
        return item

    async def _create_item(self, request: web.Request) -> web.Response:
        data = data_of(await self.asc.body(request), "reviewSubmissionItems")
        submission_id = related_id(data, "reviewSubmission", "reviewSubmissions")
        submission = self.submissions.get(submission_id)
        if submission is None:
            raise relationship_error(f"There is no review submission '{submission_id}'.")
        if not (data.get("relationships") or {}).get("appStoreVersion"):
            raise unprocessable("An item must name what it submits (appStoreVersion).")
        version_id = related_id(data, "appStoreVersion", "appStoreVersions")
        version = self.asc.versions.get(version_id)
        if version is None or version.app_id != submission.app_id:
            raise relationship_error(f"There is no App Store version '{version_id}' of this app.")
        if submission.state not in OPEN:
            raise state_error(f"The review submission is {submission.state}: items can't be added.")
        if any(
            self.items[i].version_id == version_id and self.items[i].state != "REMOVED"
            for i in submission.item_ids
        ):
            raise Refused(
                self.asc.error(
                    409,
                    "ENTITY_ERROR.DUPLICATE",
                    "The item is already in this review submission.",
                    f"App Store version '{version_id}' is already an item of '{submission_id}'.",
                )
            )
        if version.state not in SUBMITTABLE:
            raise state_error(f"The App Store version is {version.state}: it can't be submitted.")
        build = self.asc.builds.get(version.build_id or "")
        if build is None:
            raise unprocessable("The App Store version has no build: attach one first.")
        if build.expired or build.processing != "VALID":
            raise unprocessable("The build of the App Store version is not valid for review.")
        item = self._add_item(submission, version)
        version.state = "READY_FOR_REVIEW"
        return self.asc.document(item.resource(False), request, status=201)

    # --- releasing -----------------------------------------------------------------------

    async def _release(self, request: web.Request) -> web.Response:
        data = data_of(await self.asc.body(request), "appStoreVersionReleaseRequests")
        version_id = related_id(data, "appStoreVersion", "appStoreVersions")
        version = self.asc.versions.get(version_id)
        if version is None:
            raise relationship_error(f"There is no App Store version '{version_id}'.")
        if version.state != "PENDING_DEVELOPER_RELEASE":
            raise state_error(
                f"The App Store version is {version.state}: only a version pending developer "
                "release can be released."
            )
        version.state = "READY_FOR_DISTRIBUTION"
        phased = next((p for p in self.phased.values() if p.version_id == version_id), None)
        if phased is not None and phased.state == "INACTIVE":
            phased.state, phased.start = "ACTIVE", self.asc.clock()
        self.release_requests.append(version_id)
        resource = {"type": "appStoreVersionReleaseRequests", "id": _id(6)}
        return self.asc.document(resource, request, status=201)

    async def _version_phased(self, request: web.Request) -> web.Response:
        check_query(request.query)
        version = self._version(request.match_info["id"])
        phased = next((p for p in self.phased.values() if p.version_id == version.id), None)
        return self.asc.document(phased.resource(self.asc.clock()) if phased else None, request)

    async def _update_phased(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        phased = self.phased.get(rid)
        if phased is None:
            raise Refused(not_found("appStoreVersionPhasedReleases", rid))
        data = data_of(await self.asc.body(request), "appStoreVersionPhasedReleases", rid=rid)
        wanted = (data.get("attributes") or {}).get("phasedReleaseState")
        if wanted not in PHASED_STATES:
            raise unprocessable(f"'{wanted}' is not a phased release state.")
        now = self.asc.clock()
        allowed = {
            "PAUSED": ("ACTIVE",),
            "ACTIVE": ("PAUSED",),
            "COMPLETE": ("ACTIVE", "PAUSED"),
            "INACTIVE": (),
        }[wanted]
        if phased.state not in allowed:
            raise state_error(f"The phased release is {phased.state}: it can't become {wanted}.")
        if wanted == "PAUSED" and phased.pause_time(now) >= 30 * _DAY:
            raise state_error(
                "The phased release was paused for 30 days already: it can't be paused again."
            )
        if phased.paused_since is not None:  # a pause ends
            phased.paused, phased.paused_since = phased.pause_time(now), None
        if wanted == "PAUSED":
            phased.paused_since = now
        phased.state = wanted
        return self.asc.document(phased.resource(now), request)
