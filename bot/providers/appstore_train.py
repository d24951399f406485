"""The App Store release train: what people ask for after a build is attached (provider-docs
002, asc-release-subset.json). Pure: the actions, their grammar, targets and rollbacks.

- `testflight <app> <build> <group…>`: the build into a TestFlight beta group; an external group
  also needs Apple's beta review, submitted by the same request when the build has none.
- `submit <app> <version>`: the version to App Review (three writes: a review submission, the
  version as its item, `submitted: true`), reusing the app's open submission.
- `release <app> <version>`: release a version Apple approved; no way back.
- `phased <app> <version> pause|resume|complete`: its phased release.

Targets: `appstore:<app>:testflight`, `appstore:<app>:review`, `appstore:<app>:release`, so that
`appstore:<app>` keeps meaning attach, expire and encryption. What reads and writes App Store
Connect for them is appstore_train_client.py; what each request does, appstore_testflight.py,
appstore_review.py and appstore_release.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Protocol

from bot.core.commands import UsageError, resolve_alias, shown
from bot.core.errors import ProviderError
from bot.core.model import Action, Fact, Outcome, Preview, not_done, unclear
from bot.core.rules import CommandForm
from bot.core.steps import StepNotDone, Steps
from bot.providers.appstore_api import APP_ID, LABEL, NAME, SCOPE, word

TESTFLIGHT, REVIEW, RELEASE = "testflight", "review", "release"
PHASED_CHANGES = {"pause": "PAUSED", "resume": "ACTIVE", "complete": "COMPLETE"}
ROLLOUT = {1: 1, 2: 2, 3: 5, 4: 10, 5: 20, 6: 50, 7: 100}  # day of a phased release → % of users
PAUSE_DAYS = 30  # Apple allows a phased release this many days of pauses in all

USAGE = {
    "testflight": "/promote appstore testflight <app> <build> <group…>   "
    "e.g. /promote appstore testflight ios 155 External Testers",
    "submit": "/promote appstore submit <app> <version>   e.g. /promote appstore submit ios 2.4.0",
    "release": "/promote appstore release <app> <version>",
    "phased": "/promote appstore phased <app> <version> pause|resume|complete",
}
FORMS = (
    CommandForm(SCOPE, USAGE["testflight"], "add a build to a TestFlight group (with beta review)"),
    CommandForm(SCOPE, USAGE["submit"], "submit an App Store version for App Review"),
    CommandForm(SCOPE, USAGE["release"], "release a version Apple approved (no way back)"),
    CommandForm(SCOPE, USAGE["phased"], "pause, resume or complete a phased release"),
)
VERBS = frozenset(USAGE)
_GROUP = re.compile(r"^[^<>`\x00-\x1f]{1,100}$")
_QUOTES = "\"'“”‘’"  # a phone's keyboard types the curly ones
_BUILD = "a build number like 153 (or a build id)"
_VERSION = "a version string like 2.4.0 (or a version id)"


class TrainAction(Action):
    """An App Store release-train step, on one of the app's train targets."""

    provider: ClassVar[str] = NAME
    scope: ClassVar[str] = SCOPE
    stage: ClassVar[str]  # testflight, review or release: the target's last part
    app: str  # the alias people type, or the app id when it has none
    app_id: str

    @property
    def target(self) -> str:
        return f"{NAME}:{self.app}:{self.stage}"


class _OnVersion(TrainAction):
    version: str  # the version string ("2.4.0"), or the version's id
    version_id: str | None = None  # filled in by the preview


class InGroup(TrainAction):
    """A build and a TestFlight beta group of its app."""

    stage: ClassVar[str] = TESTFLIGHT
    build: str  # the build number people type ("153"), or the build's id
    build_id: str | None = None  # filled in by the preview, as are the group's
    group: str  # the group's name as typed, or its id
    group_id: str | None = None
    group_name: str | None = None  # as App Store Connect spells it
    external: bool | None = None

    @property
    def group_shown(self) -> str:
        return self.group_name or self.group

    @property
    def thing(self) -> str | None:
        if self.build_id and self.group_id:
            return f"{NAME}:build:{self.build_id}:group:{self.group_id}"
        return None


class AppStoreTestFlight(InGroup):
    """Add a build to a TestFlight beta group; for an external group, with Apple's beta review
    submitted too when the build has none yet."""

    kind: Literal["appstore.testflight"] = "appstore.testflight"
    doing: ClassVar[str] = "Adding to TestFlight"
    done: ClassVar[str] = "Added to TestFlight"

    @property
    def title(self) -> str:
        return f"{self.app} build {self.build}: add to TestFlight group {self.group_shown}"


class AppStoreTestFlightRemove(InGroup):
    """Take a build out of a beta group: the rollback of adding it."""

    kind: Literal["appstore.testflight.remove"] = "appstore.testflight.remove"
    doing: ClassVar[str] = "Removing from TestFlight"
    done: ClassVar[str] = "Removed from TestFlight"

    @property
    def title(self) -> str:
        return f"{self.app} build {self.build}: remove from TestFlight group {self.group_shown}"


class _OnReview(_OnVersion):
    stage: ClassVar[str] = REVIEW

    @property
    def thing(self) -> str | None:
        # The version itself, as for attaching a build: one open request changes it at a time.
        return f"{NAME}:version:{self.version_id}" if self.version_id else None


class AppStoreSubmit(_OnReview):
    """Submit an App Store version for App Review: a review submission (the app's open one,
    or a new one), the version as its item, then `submitted: true`."""

    kind: Literal["appstore.submit"] = "appstore.submit"
    doing: ClassVar[str] = "Submitting for App Review"
    done: ClassVar[str] = "Submitted for App Review"
    platform: str | None = None  # the version's, filled in by the preview
    submission_id: str | None = None  # the app's open review submission the preview reuses

    @property
    def title(self) -> str:
        return f"{self.app} {self.version}: submit for App Review"


class AppStoreCancelReview(_OnReview):
    """Cancel a review submission still waiting for review: the rollback of submitting."""

    kind: Literal["appstore.review.cancel"] = "appstore.review.cancel"
    doing: ClassVar[str] = "Canceling the App Review submission"
    done: ClassVar[str] = "App Review submission canceled"
    reversible: ClassVar[bool] = False  # submitting again is a new `/promote appstore submit`
    submission_id: str

    @property
    def title(self) -> str:
        return f"{self.app} {self.version}: cancel its App Review submission"


class _OnRelease(_OnVersion):
    stage: ClassVar[str] = RELEASE

    @property
    def thing(self) -> str | None:
        return f"{NAME}:version:{self.version_id}:release" if self.version_id else None


class AppStoreRelease(_OnRelease):
    """Release a version Apple approved (`PENDING_DEVELOPER_RELEASE`) to the App Store."""

    kind: Literal["appstore.release"] = "appstore.release"
    reversible: ClassVar[bool] = False  # a released version stays released
    doing: ClassVar[str] = "Releasing"
    done: ClassVar[str] = "Released"

    @property
    def title(self) -> str:
        return f"{self.app} {self.version}: release to the App Store"


class AppStorePhased(_OnRelease):
    """Pause, resume or complete a version's phased release."""

    kind: Literal["appstore.phased"] = "appstore.phased"
    change: Literal["pause", "resume", "complete"]
    phased_id: str | None = None  # filled in by the preview

    @property
    def reversible(self) -> bool:  # type: ignore[override]
        return self.change != "complete"  # every user has it: Apple has no way back

    @property
    def wanted(self) -> str:
        """The `phasedReleaseState` this change asks for."""
        return PHASED_CHANGES[self.change]

    @property
    def doing(self) -> str:  # type: ignore[override]
        return {"pause": "Pausing", "resume": "Resuming", "complete": "Completing"}[self.change]

    @property
    def done(self) -> str:  # type: ignore[override]
        return {"pause": "Paused", "resume": "Resumed", "complete": "Completed"}[self.change]

    @property
    def title(self) -> str:
        return f"{self.app} {self.version}: {self.change} the phased release"


class Flow(Protocol):
    """What runs a kind of train step: appstore_testflight.py, _review.py, _release.py."""

    actions: tuple[type[TrainAction], ...]

    async def preview(self, action: Any) -> Preview: ...

    async def check(self, action: Any, expect: Mapping[str, str]) -> Outcome | None:
        """What `execute` reads before its first write, compared with the preview: None to go
        ahead, else the outcome of sending nothing (what moved, when that is why)."""
        ...

    async def execute(self, action: Any, expect: Mapping[str, str], steps: Steps) -> Outcome: ...

    async def observe(
        self, action: Any, expect: Mapping[str, str], steps: Steps
    ) -> Outcome | None: ...


TRAIN_ACTIONS = (
    AppStoreTestFlight,
    AppStoreTestFlightRemove,
    AppStoreSubmit,
    AppStoreCancelReview,
    AppStoreRelease,
    AppStorePhased,
)


# --- the grammar --------------------------------------------------------------------------


def parse(verb: str, rest: list[str], apps: dict[str, str]) -> TrainAction:
    """The words after `/promote appstore <verb>` → its action, or `UsageError`."""
    usage = USAGE[verb]
    least = {"testflight": 3, "submit": 2, "release": 2, "phased": 3}[verb]
    if len(rest) < least or (verb != "testflight" and len(rest) != least):
        said = {
            "testflight": "an app, a build and a group name",
            "submit": "an app and a version",
            "release": "an app and a version",
            "phased": "an app, a version and pause, resume or complete",
        }[verb]
        raise UsageError(f"`appstore {verb}` takes {said}.", usage)
    app, app_id = resolve_alias(rest[0], apps, APP_ID, "App Store app", usage)
    if verb == "testflight":
        build = word(rest[1], _BUILD, usage)
        group = _group(" ".join(rest[2:]), usage)
        return AppStoreTestFlight(app=app, app_id=app_id, build=build, group=group)
    version = word(rest[1], _VERSION, usage)
    if verb == "submit":
        return AppStoreSubmit(app=app, app_id=app_id, version=version)
    if verb == "release":
        return AppStoreRelease(app=app, app_id=app_id, version=version)
    change = rest[2].lower()
    if change not in PHASED_CHANGES:
        raise UsageError(f"Say `pause`, `resume` or `complete`, not {shown(rest[2])}.", usage)
    return AppStorePhased(app=app, app_id=app_id, version=version, change=change)  # type: ignore[arg-type]


def _group(text: str, usage: str) -> str:
    """A beta group's name as typed, quoted or not."""
    name = text.strip()
    if len(name) >= 2 and name[0] in _QUOTES and name[-1] in _QUOTES:
        name = name[1:-1].strip()
    if not _GROUP.match(name):
        raise UsageError(
            f"{shown(name or text)} is not a TestFlight group name (up to 100 characters, "
            "without < > or backticks).",
            usage,
        )
    return name


def targets(apps: dict[str, str]) -> list[str]:
    return [f"{NAME}:{app}:{stage}" for app in apps for stage in (TESTFLIGHT, REVIEW, RELEASE)]


# --- the way back ---------------------------------------------------------------------------


def rollback(action: TrainAction, outcome: Outcome) -> TrainAction | str:
    """What undoes a succeeded train step, from what its outcome recorded; or why nothing can."""
    before, installed = outcome.before, outcome.installed
    if isinstance(action, InGroup):  # adding, or removing (its rollback)
        if not before.get("in_group") or not installed.get("in_group"):
            return _NO_RECORD
        if before["in_group"] == installed["in_group"]:
            return (
                f"it only submitted build {action.build} for Apple's beta review, and App Store "
                "Connect can't withdraw a beta review submission"
            )
        back = AppStoreTestFlight if before["in_group"] == "yes" else AppStoreTestFlightRemove
        fields = action.model_dump(exclude={"kind", "undoing"})
        return back(**fields, undoing=installed["in_group"])
    if isinstance(action, AppStoreSubmit):
        submission = installed.get("submission")
        if not submission:
            return _NO_RECORD
        return AppStoreCancelReview(
            app=action.app,
            app_id=action.app_id,
            version=action.version,
            version_id=action.version_id,
            submission_id=submission,
            undoing=installed.get("state") or "WAITING_FOR_REVIEW",
        )
    if isinstance(action, AppStoreCancelReview):
        return (
            f"a canceled review submission isn't taken back: submit {action.version} again with "
            f"/promote appstore submit {action.app} {action.version}"
        )
    if isinstance(action, AppStoreRelease):
        return "a released version can't be taken off the App Store again"
    if isinstance(action, AppStorePhased):
        if action.change == "complete":
            return (
                "a completed phased release can't be undone: every user with automatic "
                "updates has the version"
            )
        was, now = before.get("phased_state"), installed.get("phased_state")
        if not was or not now:
            return _NO_RECORD
        change = "resume" if action.change == "pause" else "pause"
        return action.model_copy(update={"change": change, "undoing": now})
    return "it is not an App Store Connect change the bot can undo"


_NO_RECORD = "the bot has no record of what it replaced (it was read back after a restart)"


# --- outcomes the three flows share -------------------------------------------------------


def stopped(exc: ProviderError, done: list[str], check: str) -> Outcome:
    """The outcome of a train request whose write failed after the steps `done`: `unknown`
    when the write may have landed, else `failed`, saying what was done before it."""
    before = f" (done before it: {'; '.join(done)})" if done else ""
    if exc.fate == "unknown":
        return Outcome(state="unknown", headline=exc.message + before, check=check)
    if isinstance(exc, StepNotDone):
        return Outcome(state="failed", headline=exc.message + before)
    then = f"; before that, {'; '.join(done)}" if done else "; nothing was changed"
    return Outcome(state="failed", headline=exc.message + then)


def unconfirmed(
    why: str, check: str, facts: list[Fact] | None = None, *, what: str = "change"
) -> Outcome:
    """Written, but reading it back doesn't show it (or fails): `unknown`, never `failed`."""
    return Outcome(
        state="unknown",
        headline=f"{LABEL} accepted the {what}, but {why}",
        facts=facts or [],
        check=check,
    )


def unsent(shows: str, as_before: bool, check: str) -> Outcome:
    """After a crash before anything was sent: what the provider shows decides the words,
    never a write."""
    if as_before:
        return not_done(shows)
    return unclear(LABEL, f"{shows}, though this request sent nothing", check)


def yes(flag: bool) -> str:
    return "yes" if flag else "no"
