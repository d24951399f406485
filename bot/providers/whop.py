"""Whop app builds (provider-docs 000 and whop-app-builds.yml).

Promote makes an `approved` or `draft` build the production build of its platform. The preview
reads the build and the app's current production build for the same platform, so approvers
see what it replaces; builds that can't or needn't be promoted are refused before anyone is asked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
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

from bot.core.commands import UsageError, resolve_alias, shown
from bot.core.errors import ProviderError, ProviderUncertain
from bot.core.model import (
    Action,
    Fact,
    Outcome,
    Preview,
    changed,
    not_done,
    not_sent,
    unclear,
)
from bot.core.rules import CommandForm
from bot.core.steps import Steps
from bot.providers.http import BearerProvider, segment
from bot.providers.spec import ProviderSettings, ProviderSpec, Section, aliases

NAME = "whop"
LABEL = "Whop"
SCOPE = "developer:manage_builds"
APP_ID = re.compile(r"^app_[A-Za-z0-9]{1,64}$")
BUILD_ID = re.compile(r"^[A-Za-z0-9_]{1,64}$")

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


class WhopRules:
    """The `/promote whop …` grammar and target names, under one `[whop]` section."""

    name = NAME
    label = LABEL
    forms = (CommandForm(SCOPE, USAGE, "make a Whop app build the production build"),)

    def __init__(self, section: WhopSection) -> None:
        self.section = section

    def parse(self, args: list[str]) -> WhopPromote:
        if len(args) not in (1, 2):
            raise UsageError(
                "`whop` takes a build id, and the app when more than one is set up.", USAGE
            )
        build_id = args[-1]
        if not BUILD_ID.match(build_id):
            raise UsageError(
                f"{shown(build_id)} is not a Whop build id (letters, digits and _ only).", USAGE
            )
        apps = self.section.apps
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

PROMOTABLE = ("approved", "draft")
PAGE_SIZE = 100
MAX_PAGES = 20  # 2,000 builds of one app and platform: past that, stop looking


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

    async def production_build(
        self, action: WhopPromote, platform: str
    ) -> tuple[AppBuild | None, bool]:
        """The app's production build for `platform`, and whether `action.build_id` is among
        the app's builds for it (assumed so when there are too many builds to look through)."""
        params = {"app_id": action.app_id, "platform": platform, "first": str(PAGE_SIZE)}
        production, seen = None, False
        for _ in range(MAX_PAGES):
            response = await self.http.call(
                "GET",
                "app_builds",
                idempotent=True,
                params=params,
                explain={404: f"Whop has no app {action.app_id}"},
            )
            page = _parse(_Page, response)
            for build in page.data:
                seen = seen or build.id == action.build_id
                if build.is_production and production is None:
                    production = build
            cursor = page.page_info.get("end_cursor")
            if (production and seen) or not page.page_info.get("has_next_page") or not cursor:
                return production, seen
            params = {**params, "after": str(cursor)}
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
            []
            if build.status == "approved"
            else ["This build is a draft: it has not passed Whop's review."]
        )
        return Preview(
            facts=facts,
            warnings=warnings,
            expect={"production": production.id if production else ""},
            action=action.model_copy(update={"platform": build.platform}),
        )

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
        if "production" in expect and replaced != expect["production"]:
            return changed(
                f"the production {build.platform} build",
                expect["production"] or "none",
                replaced or "none",
            )
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
)
