"""Whop app builds (provider-docs 000 and whop-app-builds.yml).

Promote makes an `approved` or `draft` build the production build of its platform (Whop: "so it
becomes the active version served to users"; a draft does not go through Whop's review first).
The preview reads the build and the app's current production build for the same platform, so
approvers see what it replaces; builds that can't or needn't be promoted, or whose status the
target's policy does not allow (`whop_statuses`), are refused before anyone is asked.
`/promote whop builds [<app>]` lists what there is.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from typing import ClassVar, Literal, TypeVar

import httpx
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)

from bot.core.commands import UsageError, closest, resolve_alias, shown
from bot.core.errors import ProviderError, ProviderUncertain
from bot.core.model import (
    Action,
    Drift,
    Fact,
    Gate,
    Listing,
    Outcome,
    Preview,
    Query,
    moved,
    not_done,
    not_sent,
    unclear,
)
from bot.core.rules import CommandForm
from bot.core.steps import Steps
from bot.providers.http import BearerProvider, segment
from bot.providers.spec import PolicyKey, ProviderSettings, ProviderSpec, Section, aliases

NAME = "whop"
LABEL = "Whop"
SCOPE = "developer:manage_builds"
APP_ID = re.compile(r"^app_[A-Za-z0-9]{1,64}$")
BUILD_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")
STATUS_KEY = "whop_statuses"  # the policy key: which build statuses may be promoted

# --- what people ask for ---------------------------------------------------------------


class WhopPromote(Action):
    """Make a Whop app build the production build of its platform."""

    kind: Literal["whop.promote"] = "whop.promote"
    provider: ClassVar[str] = NAME
    scope: ClassVar[str] = SCOPE
    app: str  # the alias people type, or the app id when it has none
    app_id: str
    build_id: str
    platform: str | None = None  # filled in by the preview, from the build

    @property
    def target(self) -> str:
        return f"{NAME}:{self.app}"

    @property
    def thing(self) -> str | None:
        return f"{NAME}:{self.app_id}:{self.platform}" if self.platform else None

    @property
    def title(self) -> str:
        return f"{self.app} app build {self.build_id} → production"


class WhopBuilds(Query):
    """The newest builds of some Whop apps: status, platform, production or not."""

    provider: ClassVar[str] = NAME
    scope: ClassVar[str] = SCOPE
    apps: tuple[tuple[str, str], ...]  # (alias or id, app id), in the order shown


class WhopSection(Section):
    """`[whop]`: short names for the apps."""

    apps: dict[str, str] = Field(default_factory=dict)

    @field_validator("apps")
    @classmethod
    def _apps(cls, v: dict[str, str]) -> dict[str, str]:
        return aliases(v, APP_ID, "a Whop app id (app_…)")


class WhopSettings(ProviderSettings):
    whop_api_url: AnyHttpUrl = AnyHttpUrl("https://api.whop.com/api/v1")
    whop_api_key: SecretStr | None = None


USAGE = "/promote whop [<app>] <build_id>   e.g. /promote whop storefront apbu_8f2k"
BUILDS_USAGE = "/promote whop builds [<app>]   e.g. /promote whop builds storefront"


class WhopRules:
    """The `/promote whop …` grammar and target names, under one `[whop]` section."""

    name = NAME
    label = LABEL
    forms = (
        CommandForm(SCOPE, USAGE, "make a Whop app build the production build"),
        CommandForm(
            SCOPE, BUILDS_USAGE, "an app's newest builds: status, platform, production", look=True
        ),
    )

    def __init__(self, section: WhopSection) -> None:
        self.section = section

    def parse(self, args: list[str]) -> WhopPromote | WhopBuilds:
        apps = self.section.apps
        if args and args[0].lower() == "builds":
            if len(args) > 2:
                raise UsageError("`whop builds` takes at most an app.", BUILDS_USAGE)
            if len(args) == 2:
                app = resolve_alias(args[1], apps, APP_ID, "Whop app", BUILDS_USAGE)
                return WhopBuilds(apps=(app,))
            if not apps:
                raise UsageError(
                    "Which Whop app? None is configured: give its app_… id.", BUILDS_USAGE
                )
            return WhopBuilds(apps=tuple(sorted(apps.items())))
        first = args[0] if args else ""
        if first not in apps and not APP_ID.match(first) and "_" not in first:
            if closest(first, ["builds"]) and len(args) <= 2:
                raise UsageError(
                    f"Unknown Whop command {shown(first)}. Did you mean `whop builds`?",
                    BUILDS_USAGE,
                )
        if len(args) not in (1, 2):
            raise UsageError(
                "`whop` takes a build id, and the app when more than one is set up.", USAGE
            )
        build_id = args[-1]
        if not BUILD_ID.match(build_id):
            raise UsageError(
                f"{shown(build_id)} is not a Whop build id (letters, digits and _ only).", USAGE
            )
        if len(args) == 2:
            app, app_id = resolve_alias(args[0], apps, APP_ID, "Whop app", USAGE)
        elif len(apps) == 1:
            [(app, app_id)] = apps.items()
        else:
            known = ", ".join(sorted(apps)) or "none configured; give its app_… id"
            raise UsageError(f"Which Whop app is this build of? Apps: {known}.", USAGE)
        return WhopPromote(app=app, app_id=app_id, build_id=build_id)

    def rollback(self, action: Action, outcome: Outcome) -> WhopPromote | str:
        """Promote again the build that was production before, while the one it installed is."""
        if not isinstance(action, WhopPromote) or not action.platform:
            return "it is not a Whop build promotion"
        before, installed = outcome.before.get("production"), outcome.installed.get("production")
        if before is None or not installed:
            return (
                "the bot has no record of the build it replaced (it was read back after a restart)"
            )
        if not before:
            return (
                f"there was no production {action.platform} build before it, "
                "and Whop can't unset one"
            )
        return action.model_copy(update={"build_id": before, "undoing": installed})

    def help_line(self) -> str:
        apps = ", ".join(sorted(self.section.apps)) or "none (give the app_… id)"
        return f"Whop apps: {apps}."

    def targets(self) -> list[str]:
        return [f"{NAME}:{app}" for app in self.section.apps]

    def choices(self, placeholder: str) -> list[str]:
        return sorted(self.section.apps) if placeholder == "app" else []


# --- what Whop says ------------------------------------------------------------------------

STATUSES = ("draft", "pending", "approved", "rejected")  # AppBuildStatuses
PROMOTABLE = ("approved", "draft")
PAGE_SIZE = 100
MAX_PAGES = 20  # 2,000 builds of one app and platform: past that, stop looking
LISTED = 15  # builds `whop builds` shows of each app (and its production builds)
LIST_PAGES = 3  # how many pages of an app's builds it reads for them
DRAFT_WARNING = (
    "This build is a draft: Whop has not reviewed it. Promoting it does not send it to review "
    "first; it becomes the {platform} version served to users at once (Whop promotes approved "
    "and draft builds alike)."
)


class AppBuild(BaseModel):
    """AppBuild; unknown fields from newer API versions are ignored."""

    model_config = ConfigDict(extra="ignore")

    id: str
    platform: str
    created_at: str
    status: str
    checksum: str
    review_message: str | None = None
    is_production: bool


class _Page(BaseModel):
    model_config = ConfigDict(extra="ignore")

    data: list[AppBuild]
    page_info: dict


def error_detail(response: httpx.Response) -> str | None:
    """Whop errors are `{"error": {type, message, code, param}}`."""
    error = response.json().get("error")
    if not isinstance(error, dict):
        return None
    message = str(error.get("message") or error.get("type") or "")
    code = error.get("code")
    return f"{message} [{code}]" if code else message or None


def _when(build: AppBuild) -> str:
    return build.created_at.replace("T", " ")[:16] + " UTC"


def _row(build: AppBuild) -> tuple[str, ...]:
    production = "yes" if build.is_production else "no"
    return (build.id, build.platform, build.status, production, _when(build))


class WhopProvider(BearerProvider):
    name = NAME
    label = LABEL
    credential = "WHOP_API_KEY"
    scope = SCOPE
    error_detail = staticmethod(error_detail)

    async def build(self, build_id: str) -> AppBuild:
        response = await self.http.call(
            "GET",
            f"app_builds/{segment(build_id)}",
            idempotent=True,
            explain={404: f"Whop has no app build {build_id}"},
        )
        return _parse(AppBuild, response)

    async def _pages(
        self, params: dict[str, str], most: int
    ) -> AsyncIterator[tuple[list[AppBuild], bool]]:
        """An app's builds (`params`: its `app_id`, and filters), a page at a time, with whether
        it is the last page; at most `most` pages."""
        params = {**params, "first": str(PAGE_SIZE)}
        for _ in range(most):
            response = await self.http.call(
                "GET",
                "app_builds",
                idempotent=True,
                params=params,
                explain={404: f"Whop has no app {params['app_id']}"},
            )
            page = _parse(_Page, response)
            cursor = page.page_info.get("end_cursor")
            last = not page.page_info.get("has_next_page") or not cursor
            yield page.data, last
            if last:
                return
            params = {**params, "after": str(cursor)}

    async def production_build(
        self, action: WhopPromote, platform: str
    ) -> tuple[AppBuild | None, bool]:
        """The app's production build for `platform`, and whether `action.build_id` is among
        the app's builds for it (assumed so when there are too many builds to look through)."""
        production, seen = None, False
        async for builds, last in self._pages(
            {"app_id": action.app_id, "platform": platform}, MAX_PAGES
        ):
            for build in builds:
                seen = seen or build.id == action.build_id
                if build.is_production and production is None:
                    production = build
            if (production and seen) or last:
                return production, seen
        return production, True

    async def preview(self, action: WhopPromote) -> Preview:
        build = await self.build(action.build_id)
        if action.undoing is not None:  # a rollback: only while what it undoes is production
            production = (
                build
                if build.is_production
                else (await self.production_build(action, build.platform))[0]
            )
            if (production.id if production else "") != action.undoing:
                return Preview(
                    refusal=f"Something else was promoted since: the production {build.platform} "
                    f"build of {action.app} is {production.id if production else 'none'} now, "
                    f"not {action.undoing}, so there is nothing to roll back. Nothing was posted."
                )
        if build.is_production:
            return Preview(
                refusal=f"Build {build.id} is already the production {build.platform} build."
            )
        if build.status not in PROMOTABLE:
            reason = (
                f"Build {build.id} is {build.status}: "
                "only approved or draft builds can be promoted."
            )
            if build.review_message:
                reason += f" Review: “{build.review_message}”"
            return Preview(refusal=reason)
        production, seen = await self.production_build(action, build.platform)
        if not seen:
            return Preview(
                refusal=f"Build {build.id} is not a {build.platform} build of {action.app}."
            )
        facts = [
            Fact(label="Platform", value=build.platform),
            Fact(label="Status", value=build.status),
            Fact(label="Created", value=_when(build)),
            Fact(label="Checksum", value=build.checksum[:12]),
            Fact(
                label="Replaces",
                value=f"{production.id} (created {_when(production)})"
                if production
                else "no production build yet",
            ),
        ]
        if build.review_message:
            facts.append(Fact(label="Review message", value=build.review_message))
        warnings = (
            [] if build.status == "approved" else [DRAFT_WARNING.format(platform=build.platform)]
        )
        return Preview(
            facts=facts,
            warnings=warnings,
            gates={
                STATUS_KEY: Gate(value=build.status, found=f"Build {build.id} is {build.status}")
            },
            expect={"production": production.id if production else "", "status": build.status},
            action=action.model_copy(update={"platform": build.platform}),
        )

    async def show(self, query: WhopBuilds) -> Listing:
        """`whop builds`: each app's newest builds, and its production build of each platform."""
        several = len(query.apps) > 1
        rows: list[tuple[str, ...]] = []
        notes: list[str] = []
        read = await asyncio.gather(*(self._some_builds(app_id) for _, app_id in query.apps))
        for (app, _), (builds, complete) in zip(query.apps, read, strict=True):
            newest = sorted(builds, key=lambda b: b.created_at, reverse=True)
            shown = newest[:LISTED] + [b for b in newest[LISTED:] if b.is_production]
            rows += [((app,) if several else ()) + _row(b) for b in shown]
            if len(newest) > LISTED or not complete:
                more = f"{len(newest)}" + ("" if complete else "+")
                notes.append(
                    f"{app}: the newest {LISTED} of {more} builds, and its production ones."
                )
            if not newest:
                notes.append(f"{app} has no builds yet.")
        columns = ("build", "platform", "status", "production", "created")
        title = "Whop builds of " + ", ".join(app for app, _ in query.apps)
        notes.append(f"Promote one with `{USAGE.split('   ')[0]}`.")
        return Listing(title, (("app",) if several else ()) + columns, tuple(rows), tuple(notes))

    async def _some_builds(self, app_id: str) -> tuple[list[AppBuild], bool]:
        """Up to LIST_PAGES pages of an app's builds, and whether that was all of them."""
        found: list[AppBuild] = []
        async for builds, last in self._pages({"app_id": app_id}, LIST_PAGES):
            found += builds
            if last:
                return found, True
        return found, False

    async def execute(
        self, action: WhopPromote, *, promoted_by: str, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        try:
            build = await self.build(action.build_id)
            production, _ = await self.production_build(action, build.platform)
        except ProviderError as exc:
            return not_sent(f"couldn't read {action.app}'s builds before promoting ({exc.message})")
        if build.is_production:
            return not_sent(f"{build.id} is already the production {build.platform} build")
        replaced = production.id if production else ""
        drift = _whop_drift(build, expect, production)
        if drift is not None:
            return drift.outcome()
        bid = action.build_id
        response = await self.http.write(
            steps,
            "promote",
            "POST",
            f"app_builds/{segment(bid)}/promote",
            explain={
                400: f"Whop refused to promote {bid}",
                404: f"Whop has no app build {bid}",
                409: f"Whop reported a conflict promoting {bid}",
                422: f"Whop requires verification before promoting {bid}",
            },
        )
        try:
            promoted = _parse(AppBuild, response)
        except ProviderError as exc:
            raise ProviderUncertain("Whop", exc.message) from exc
        facts = [
            Fact(label="Production build", value=promoted.id),
            Fact(label="Platform", value=promoted.platform),
            Fact(label="Replaced", value=replaced or "none"),
            Fact(label="Checksum", value=promoted.checksum),
        ]
        if not promoted.is_production:
            return Outcome(
                state="unknown",
                headline=f"Whop answered, but {promoted.id} is not marked as production",
                facts=facts,
                check=f"Check the production {promoted.platform} build of {action.app} in Whop.",
            )
        return Outcome(
            state="succeeded",
            headline=f"{promoted.id} is the production {promoted.platform} build of {action.app}",
            facts=facts,
            before={"production": replaced, "platform": promoted.platform},
            installed={"production": promoted.id, "platform": promoted.platform},
        )

    async def observe(
        self, action: WhopPromote, *, promoted_by: str, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        build = await self.build(action.build_id)
        facts = [Fact(label="Build", value=build.id), Fact(label="Platform", value=build.platform)]
        if build.is_production:
            known = "production" in expect  # what the write replaced: what a rollback restores
            platform = build.platform
            return Outcome(
                state="succeeded",
                headline=f"{build.id} is the production {build.platform} build of {action.app}",
                facts=facts,
                before={"production": expect["production"], "platform": platform} if known else {},
                installed={"production": build.id, "platform": platform} if known else {},
            )
        production, _ = await self.production_build(action, build.platform)
        now = production.id if production else ""
        what = f"the production {build.platform} build of {action.app} is {now or 'none'}"
        if "production" in expect and now == expect["production"]:
            return not_done(what)
        return unclear(LABEL, what, f"Check the production {build.platform} build in Whop")

    async def drift(self, action: WhopPromote, expect: Mapping[str, str]) -> Drift | None:
        """The build and the production build of its platform, read again as the preview
        read them, compared as the write compares them before it is sent."""
        if not expect:
            return None
        build = await self.build(action.build_id)
        production, _ = await self.production_build(action, build.platform)
        return _whop_drift(build, expect, production)


def _whop_drift(
    build: AppBuild, expect: Mapping[str, str], production: AppBuild | None
) -> Drift | None:
    """The build's status, or its platform's production build, is not what the preview
    showed."""
    now = production.id if production else ""
    return moved(LABEL, f"build {build.id}'s status", expect, "status", build.status) or moved(
        LABEL, f"the production {build.platform} build", expect, "production", now
    )


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate(response.json())
    except (ValueError, ValidationError) as exc:
        raise ProviderError(
            "Whop", f"Whop sent a response the bot can't read ({response.status_code})"
        ) from exc


def _client(settings: WhopSettings) -> WhopProvider:
    settings.required("whop_api_key")
    assert settings.whop_api_key is not None
    return WhopProvider.create(str(settings.whop_api_url), settings.whop_api_key.get_secret_value())


SPEC = ProviderSpec(
    name=NAME,
    label=LABEL,
    scopes={SCOPE: "promote an app build to production"},
    section=WhopSection,
    settings=WhopSettings,
    rules=WhopRules,
    client=_client,
    fake="bot.sandbox.whop:FakeWhop",
    policy_keys={
        STATUS_KEY: PolicyKey(STATUSES, "a Whop build status", "approved"),
    },
)
