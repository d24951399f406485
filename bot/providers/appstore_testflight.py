"""A build into a TestFlight beta group, and back out (its rollback).

Adding is one write for an internal group (`POST /v1/builds/{id}/relationships/betaGroups`)
and up to two for an external one: external testers get a build only once Apple's beta review
approved it, so a build with no beta review submission gets one too
(`POST /v1/betaAppReviewSubmissions`). Each write is a step of the request's journal; a
recovery carries on from the last recorded one. Removing is the `DELETE` of the same
relationship; a beta review submission can't be withdrawn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from bot.core.commands import shown
from bot.core.errors import ProviderError
from bot.core.model import Fact, Outcome, Preview, changed, not_sent
from bot.core.steps import Steps
from bot.providers.appstore_api import LABEL, Build, Reads
from bot.providers.appstore_train import (
    AppStoreTestFlight,
    AppStoreTestFlightRemove,
    InGroup,
    stopped,
    unconfirmed,
    unsent,
    yes,
)
from bot.providers.appstore_train_client import BetaGroup, BetaReview, TrainClient


@dataclass(frozen=True)
class _Seen:
    """What App Store Connect shows of a build and a group, right before a write."""

    build: Build | str
    group: BetaGroup | None
    in_group: bool
    review: BetaReview | None


def _named(groups: list[BetaGroup], name: str) -> BetaGroup | None:
    """A group by its id, or its name whatever the case."""
    wanted = name.casefold()
    return next((g for g in groups if g.id == name or g.name.casefold() == wanted), None)


def _safe(name: str) -> str:
    return name.replace("<", "‹").replace(">", "›").replace("`", "'")


def _unfit(action: InGroup, build: Build) -> str | None:
    """Why the build can't be offered to testers at all, or None."""
    if build.processing != "VALID":
        return (
            f"Build {build.describe()} is {build.processing}, not VALID: TestFlight can't offer "
            "it yet."
        )
    if build.expired:
        return f"Build {build.describe()} is expired: TestFlight can't offer it any more."
    if build.encryption is None:
        return (
            f"Build {build.describe()}'s encryption is not declared, and TestFlight needs it: "
            f"declare it first with /promote appstore encryption {action.app} {build.number} "
            "exempt|non-exempt."
        )
    return None


class TestFlight:
    """Preview, run and recover `testflight` requests and their rollbacks."""

    actions = (AppStoreTestFlight, AppStoreTestFlightRemove)

    def __init__(self, reads: Reads, client: TrainClient) -> None:
        self.reads, self.client = reads, client

    async def _seen(self, action: InGroup, group: BetaGroup | None = None) -> _Seen:
        build = await self.reads.build(action)
        if group is None:
            assert action.group_id
            group = await self.client.group(action.app_id, action.group_id)
        if isinstance(build, str) or group is None:
            return _Seen(build, group, False, None)
        in_group, review = await asyncio.gather(
            self.client.in_group(build.id, group.id),
            self.client.beta_review(build.id) if not group.internal else _none(),
        )
        return _Seen(build, group, in_group, review)

    # --- preview -------------------------------------------------------------------------

    async def preview(self, action: InGroup) -> Preview:
        build = await self.reads.build(action)
        if isinstance(build, str):
            return Preview(refusal=build)
        groups = await self.client.groups(action.app_id)
        group = _named(groups, action.group_id or action.group)
        if group is None:
            listed = ", ".join(f"{_safe(g.name)} ({g.kind})" for g in groups)
            where = f"Its groups: {listed}." if groups else "It has no TestFlight groups."
            return Preview(
                refusal=f"{action.app} has no TestFlight group {shown(action.group)}. {where}"
            )
        if isinstance(action, AppStoreTestFlight):
            refusal = _unfit(action, build)
            if refusal:
                return Preview(refusal=refusal)
        if group.all_builds:
            return Preview(
                refusal=f"{_safe(group.name)} is an internal group with access to every build: "
                f"build {build.number} is in it already, and can't be taken out of it."
            )
        seen = await self._seen(action, group)
        count, (internal, external) = await asyncio.gather(
            self.client.build_count(group.id), self.client.beta_detail(build.id)
        )
        resolved = action.model_copy(
            update={
                "build_id": build.id,
                "group_id": group.id,
                "group_name": group.name,
                "external": not group.internal,
            }
        )
        expect = {
            "processing": build.processing,
            "expired": yes(build.expired),
            "encryption": build.encryption_text,
            "in_group": yes(seen.in_group),
            "external": yes(not group.internal),
            "beta_review": seen.review.state if seen.review else "",
        }
        facts = [
            Fact(label="Group", value=f"{group.name} ({group.kind}, {_builds(count)})"),
            Fact(label="Build", value=build.describe()),
            Fact(label="Processing", value=build.processing),
            Fact(label="Expires", value=build.expires),
            Fact(label="Encryption", value=build.encryption_text),
            Fact(label="Internal testing", value=internal),
            Fact(label="External testing", value=external),
        ]
        if action.undoing is not None and yes(seen.in_group) != action.undoing:
            now = "is" if seen.in_group else "is not"
            return Preview(
                refusal=f"Something else changed since: build {build.number} {now} in "
                f"{_safe(group.name)} now, so there is nothing to roll back. Nothing was posted."
            )
        if isinstance(action, AppStoreTestFlightRemove):
            return self._remove_preview(resolved, seen, facts, expect)
        return self._add_preview(resolved, seen, facts, expect)

    def _add_preview(
        self, action: InGroup, seen: _Seen, facts: list[Fact], expect: dict[str, str]
    ) -> Preview:
        group, review = seen.group, seen.review
        assert group is not None
        name = _safe(group.name)
        if review is not None and review.state == "REJECTED":
            return Preview(
                refusal=f"Apple's beta review of build {action.build} is REJECTED: external "
                f"testers in {name} can't get it. Upload a new build."
            )
        needs_review = not group.internal and review is None
        if seen.in_group and not needs_review:
            return Preview(refusal=f"Build {action.build} is already in TestFlight group {name}.")
        warnings = []
        if group.internal:
            facts.append(Fact(label="Beta review", value="not needed (an internal group)"))
        elif review is None:
            facts.append(Fact(label="Beta review", value="none yet: this request submits it"))
            warnings.append(
                f"{name} is an external group: its testers get build {action.build} only once "
                "Apple's beta review approves it. This request also submits it for beta review."
            )
        else:
            facts.append(
                Fact(label="Beta review", value=f"{review.state} (since {review.submitted})")
            )
            if review.state != "APPROVED":
                warnings.append(
                    f"Apple's beta review of build {action.build} is {review.state}: "
                    f"{name}'s testers get it once Apple approves it."
                )
        adds = f"build {action.build} to {name}"
        if seen.in_group:
            adds = f"nothing: build {action.build} is in {name} already; only the beta review"
        facts.append(Fact(label="Adds", value=adds))
        return Preview(facts=facts, warnings=warnings, expect=expect, action=action)

    def _remove_preview(
        self, action: InGroup, seen: _Seen, facts: list[Fact], expect: dict[str, str]
    ) -> Preview:
        assert seen.group is not None
        name = _safe(seen.group.name)
        if not seen.in_group:
            return Preview(refusal=f"Build {action.build} is not in TestFlight group {name}.")
        facts.append(
            Fact(label="Removes", value=f"build {action.build} from {name}: its testers lose it")
        )
        expect = {"in_group": expect["in_group"]}  # the build may expire meanwhile: no matter
        warnings = []
        if seen.review is not None:
            warnings.append(
                f"Build {action.build}'s beta review submission ({seen.review.state}) stays: "
                f"{LABEL} can't withdraw one."
            )
        return Preview(facts=facts, warnings=warnings, expect=expect, action=action)

    # --- execution and recovery ----------------------------------------------------------

    async def check(self, action: InGroup, expect: Mapping[str, str]) -> Outcome | None:
        """The reads before the first write, compared with the preview: None to go ahead,
        else why nothing would be sent (a `ProviderError` when they fail)."""
        return _moved(action, await self._seen(action), expect)

    async def execute(self, action: InGroup, expect: Mapping[str, str], steps: Steps) -> Outcome:
        try:
            stop = await self.check(action, expect)
        except ProviderError as exc:
            return not_sent(f"couldn't read build {action.build} before the change ({exc.message})")
        return stop or await self._run(action, expect, steps)

    async def observe(
        self, action: InGroup, expect: Mapping[str, str], steps: Steps
    ) -> Outcome | None:
        """Carry on from the journal; with nothing sent, decide by reading only."""
        if steps.started:
            return await self._run(action, expect, steps)
        seen = await self._seen(action)
        name = action.group_shown
        shows = f"build {action.build} {'in' if seen.in_group else 'not in'} {name}"
        return unsent(shows, yes(seen.in_group) == expect.get("in_group"), _check(action))

    async def _run(self, action: InGroup, expect: Mapping[str, str], steps: Steps) -> Outcome:
        assert action.build_id and action.group_id
        name = action.group_shown
        done: list[str] = []
        try:
            if isinstance(action, AppStoreTestFlightRemove):
                await self.client.remove_from_group(steps, action.build_id, action.group_id)
            else:
                if expect.get("in_group") == "no":
                    await self.client.add_to_group(steps, action.build_id, action.group_id)
                    done.append(f"build {action.build} was added to {name}")
                if expect.get("external") == "yes" and not expect.get("beta_review"):
                    await self.client.submit_beta_review(steps, action.build_id)
        except ProviderError as exc:
            return stopped(exc, done, _check(action))
        return await self._read_back(action, expect)

    async def _read_back(self, action: InGroup, expect: Mapping[str, str]) -> Outcome:
        assert action.build_id and action.group_id
        name = action.group_shown
        try:
            in_group, review = await asyncio.gather(
                self.client.in_group(action.build_id, action.group_id),
                self.client.beta_review(action.build_id) if action.external else _none(),
            )
            count = await self.client.build_count(action.group_id)
        except ProviderError as exc:
            return unconfirmed(f"reading it back failed ({exc.message})", _check(action))
        removing = isinstance(action, AppStoreTestFlightRemove)
        kind = "external" if action.external else "internal"
        facts = [
            Fact(label="Group", value=f"{name} ({kind}, {_builds(count)} now)"),
            Fact(label="Build", value=f"{action.build} ({action.build_id})"),
            Fact(label="In the group", value=yes(in_group)),
        ]
        if review is not None:
            facts.append(Fact(label="Beta review", value=f"{review.state} ({review.id})"))
        if in_group == removing or (action.external and not removing and review is None):
            return unconfirmed("reading it back does not show it", _check(action), facts)
        record = {"before": {"in_group": expect.get("in_group", "")}}
        record["installed"] = {"in_group": yes(in_group)}
        if removing:
            headline = f"build {action.build} is out of TestFlight group {name}"
        else:
            headline = f"build {action.build} is in TestFlight group {name}"
            if review is not None and review.state != "APPROVED":
                headline += (
                    f"; Apple's beta review is {review.state}: its external testers get it "
                    "once Apple approves it"
                )
        return Outcome(state="succeeded", headline=headline, facts=facts, **record)


def _moved(action: InGroup, seen: _Seen, expect: Mapping[str, str]) -> Outcome | None:
    """None to go ahead; else the `failed` outcome saying what moved since the preview."""
    build, name = seen.build, action.group_shown
    if isinstance(build, str):
        return not_sent(build)
    if seen.group is None:
        return not_sent(f"{action.app} has no TestFlight group {name} any more")
    what = f"build {action.build}"
    for key, now, label in (
        ("processing", build.processing, "processing"),
        ("expired", yes(build.expired), "expired"),
        ("encryption", build.encryption_text, "encryption"),
        ("in_group", yes(seen.in_group), f"in {name}"),
        ("beta_review", seen.review.state if seen.review else "", "beta review"),
    ):
        if key in expect and expect[key] != now:
            return changed(f"{what}'s {label}", expect[key] or "none", now or "none")
    return None


def _check(action: InGroup) -> str:
    return f"Check build {action.build} in TestFlight ({action.app}, group {action.group_shown})."


def _builds(count: int) -> str:
    return f"{count} build" if count == 1 else f"{count} builds"


async def _none() -> None:
    return None
