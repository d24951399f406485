"""App Store Connect builds and versions (provider-docs 001, 002, 004, asc-builds-subset.json).

Three actions: attach a build to an App Store version (what ships when that version is
released), expire a build, declare a build's encryption. Versions and builds are looked up by
version string and build number; the ids found are kept with the request, so what runs after
approval is exactly what was shown. A PATCH whose fate is unclear is never repeated: the bot
reads the state back instead. `/promote appstore builds <app>` lists an app's newest builds
(appstore_list.py).

The release train after these (TestFlight groups, App Review, releases, phased releases) is
declared in appstore_train.py and run by its flows; this provider hands its steps to them,
over the same HTTP client and token.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Literal

import httpx
from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from bot.core.commands import UsageError, closest, resolve_alias, shown
from bot.core.errors import ProviderError, ProviderNotFound, ProviderUncertain
from bot.core.model import (
    Action,
    Drift,
    Fact,
    Listing,
    Outcome,
    Preview,
    changed,
    moved,
    not_done,
    not_sent,
    unclear,
)
from bot.core.rules import CommandForm
from bot.core.steps import Steps
from bot.providers import appstore_list
from bot.providers import appstore_train as train
from bot.providers.appstore_api import (
    APP_ID,
    LABEL,
    NAME,
    SCOPE,
    Build,
    BuildRef,
    Resource,
    VersionRef,
    error_detail,
    many,
    one,
    read,
    version_state,
    word,
)
from bot.providers.appstore_release import Release
from bot.providers.appstore_review import Review
from bot.providers.appstore_testflight import TestFlight
from bot.providers.appstore_train_client import TrainClient
from bot.providers.http import (
    DEFAULT_TIMEOUT,
    HTTPProvider,
    ProviderHTTP,
    RetryPolicy,
    segment,
)
from bot.providers.jwt_auth import (
    ApiKeyToken,
    PrivateKeyError,
    load_private_key,
    load_private_key_file,
)
from bot.providers.spec import ProviderSettings, ProviderSpec, Section, SettingError, aliases

# --- what people ask for ---------------------------------------------------------------


class _AppStoreAction(Action):
    provider: ClassVar[str] = NAME
    scope: ClassVar[str] = SCOPE
    app: str  # the alias people type, or the app id when it has none
    app_id: str
    build: str  # the build number people type ("153"), or the build's id
    build_id: str | None = None  # filled in by the provider when it looks the build up

    @property
    def target(self) -> str:
        return f"{NAME}:{self.app}"

    @property
    def thing(self) -> str | None:
        return f"{NAME}:build:{self.build_id}" if self.build_id else None


class AppStoreAttach(_AppStoreAction):
    """Attach a build to an App Store version: what ships when that version is released."""

    kind: Literal["appstore.attach"] = "appstore.attach"
    version: str  # the version string ("2.4.0"), or the version's id
    version_id: str | None = None

    @property
    def title(self) -> str:
        return f"{self.app} {self.version}: attach build {self.build}"

    @property
    def thing(self) -> str | None:
        return f"{NAME}:version:{self.version_id}" if self.version_id else None


class AppStoreDetach(_AppStoreAction):
    """Take the build off an App Store version (`data: null`): the rollback of attaching a
    build to a version that had none. `build` is the build it takes off."""

    kind: Literal["appstore.detach"] = "appstore.detach"
    doing: ClassVar[str] = "Detaching"
    done: ClassVar[str] = "Detached"
    version: str
    version_id: str

    @property
    def title(self) -> str:
        return f"{self.app} {self.version}: detach build {self.build}"

    @property
    def thing(self) -> str:
        return f"{NAME}:version:{self.version_id}"


class AppStoreExpire(_AppStoreAction):
    kind: Literal["appstore.expire"] = "appstore.expire"
    reversible: ClassVar[bool] = False  # App Store Connect can't unexpire a build
    doing: ClassVar[str] = "Expiring"
    done: ClassVar[str] = "Expired"

    @property
    def title(self) -> str:
        return f"{self.app} build {self.build}: expire"


class AppStoreEncryption(_AppStoreAction):
    kind: Literal["appstore.encryption"] = "appstore.encryption"
    doing: ClassVar[str] = "Declaring encryption"
    done: ClassVar[str] = "Encryption declared"
    uses_non_exempt_encryption: bool

    @property
    def title(self) -> str:
        declared = "non-exempt" if self.uses_non_exempt_encryption else "exempt"
        return f"{self.app} build {self.build}: declare encryption {declared}"


BuildAction = AppStoreAttach | AppStoreExpire | AppStoreEncryption | AppStoreDetach


class AppStoreSection(Section):
    """`[appstore]`: short names for the apps."""

    apps: dict[str, str] = Field(default_factory=dict)

    @field_validator("apps")
    @classmethod
    def _apps(cls, v: dict[str, str]) -> dict[str, str]:
        return aliases(v, APP_ID, "an App Store Connect app id (digits)")


class AppStoreSettings(ProviderSettings):
    asc_api_url: AnyHttpUrl = AnyHttpUrl("https://api.appstoreconnect.apple.com")
    asc_issuer_id: str | None = None
    asc_key_id: str | None = None
    asc_private_key_path: Path | None = None
    asc_private_key: SecretStr | None = None


USAGE = {
    "attach": "/promote appstore <app> <version> <build>   e.g. /promote appstore ios 2.4.0 153",
    "expire": "/promote appstore expire <app> <build>",
    "encryption": "/promote appstore encryption <app> <build> exempt|non-exempt",
    "builds": appstore_list.USAGE,
}
_WORDS = {"attach": 3, "expire": 2, "encryption": 3, "builds": 1}


class AppStoreRules:
    """The `/promote appstore …` grammar and target names, under one `[appstore]` section."""

    name = NAME
    label = LABEL
    forms = (
        CommandForm(SCOPE, USAGE["attach"], "attach a build to an App Store version"),
        CommandForm(SCOPE, USAGE["expire"], "expire an App Store build"),
        CommandForm(SCOPE, USAGE["encryption"], "declare a build's encryption"),
        CommandForm(SCOPE, USAGE["builds"], "an app's newest builds and their states", look=True),
        *train.FORMS,
    )

    def __init__(self, section: AppStoreSection) -> None:
        self.section = section

    def parse(
        self, args: list[str]
    ) -> BuildAction | train.TrainAction | appstore_list.AppStoreBuilds:
        sub = args[0].lower() if args else ""
        if sub in train.VERBS:  # the release train: appstore_train.py
            return train.parse(sub, args[1:], self.section.apps)
        key = sub if sub in ("expire", "encryption", "builds") else "attach"
        usage = USAGE[key]
        rest = args[1:] if key != "attach" else args
        apps = self.section.apps
        if key == "attach" and sub and sub not in apps and not APP_ID.match(sub):
            verbs = {**USAGE, **train.USAGE}
            guess = closest(sub, [v for v in verbs if v != "attach"])
            if guess:  # `appstore expier ios 153`: a command misspelt, not an unknown app
                raise UsageError(
                    f"Unknown App Store app or command {shown(args[0])}. "
                    f"Did you mean `appstore {guess}`?",
                    verbs[guess],
                )
        if len(rest) != _WORDS[key]:
            said = "appstore" if key == "attach" else f"appstore {key}"
            every = "\n".join([*USAGE.values(), *train.USAGE.values()])
            words = f"{_WORDS[key]} word{'s' if _WORDS[key] > 1 else ''}"
            raise UsageError(
                f"`{said}` takes {words} after it.", every if key == "attach" else usage
            )
        app, app_id = resolve_alias(rest[0], apps, APP_ID, "App Store app", usage)
        if key == "builds":
            return appstore_list.AppStoreBuilds(app=app, app_id=app_id)
        if key == "attach":
            version = word(rest[1], "a version string like 2.4.0 (or a version id)", usage)
            build = word(rest[2], "a build number like 153 (or a build id)", usage)
            return AppStoreAttach(app=app, app_id=app_id, version=version, build=build)
        build = word(rest[1], "a build number like 153 (or a build id)", usage)
        if key == "expire":
            return AppStoreExpire(app=app, app_id=app_id, build=build)
        declared = rest[2].lower()
        if declared not in ("exempt", "non-exempt"):
            raise UsageError(f"Say `exempt` or `non-exempt`, not {shown(rest[2])}.", usage)
        return AppStoreEncryption(
            app=app, app_id=app_id, build=build, uses_non_exempt_encryption=declared == "non-exempt"
        )

    def rollback(self, action: Action, outcome: Outcome) -> BuildAction | train.TrainAction | str:
        """Attach again the build that was attached before (or detach, if none was); declare
        the encryption as it was. An expired build stays expired. The train's own steps are
        undone as appstore_train.py says."""
        if isinstance(action, train.TrainAction):
            return train.rollback(action, outcome)
        if isinstance(action, AppStoreExpire):
            return "an expired build can't be made unexpired: App Store Connect has no way back"
        if isinstance(action, AppStoreEncryption):
            before = outcome.before.get("encryption")
            installed = outcome.installed.get("encryption")
            if not before or not installed:
                return _NO_RECORD
            if before not in ("exempt", "non-exempt"):
                return (
                    f"build {action.build}'s encryption was not declared before it, and "
                    "App Store Connect can't take a declaration back"
                )
            return action.model_copy(
                update={"uses_non_exempt_encryption": before == "non-exempt", "undoing": installed}
            )
        if isinstance(action, AppStoreAttach | AppStoreDetach) and action.version_id:
            before, number = outcome.before.get("attached"), outcome.before.get("number")
            installed = outcome.installed.get("attached")
            if before is None or installed is None:
                return _NO_RECORD
            common = {
                "app": action.app,
                "app_id": action.app_id,
                "version": action.version,
                "version_id": action.version_id,
                "undoing": installed,
            }
            if before:
                return AppStoreAttach(build=number or before, build_id=before, **common)
            number = outcome.installed.get("number") or installed
            return AppStoreDetach(build=number, build_id=installed, **common)
        return "it is not an App Store Connect change the bot can undo"

    def help_line(self) -> str:
        apps = ", ".join(sorted(self.section.apps)) or "none (give the app id)"
        return f"App Store apps: {apps}."

    def targets(self) -> list[str]:
        return [f"{NAME}:{app}" for app in self.section.apps] + train.targets(self.section.apps)

    def choices(self, placeholder: str) -> list[str]:
        return sorted(self.section.apps) if placeholder == "app" else []


class AppStoreToken(ApiKeyToken):
    """App Store Connect's API-key token (reused until shortly before its 20 minutes end)."""

    audience = "appstoreconnect-v1"


_NO_RECORD = "the bot has no record of what it replaced (it was read back after a restart)"

# --- what App Store Connect says -----------------------------------------------------------
_EXPLAIN_WRITE = {
    409: "App Store Connect refused: the resource is not in a state that allows this change",
    422: "App Store Connect rejected the change as invalid",
}


class AppStoreProvider(HTTPProvider):
    name = NAME
    label = LABEL
    credential = "ASC_KEY_ID / ASC_ISSUER_ID / the private key"
    scope = SCOPE
    error_detail = staticmethod(error_detail)

    def __init__(self, http: ProviderHTTP, token: AppStoreToken) -> None:
        super().__init__(http)
        self.token = token
        client = TrainClient(http)  # the release train: the same HTTP policy and token
        flows = (TestFlight(self, client), Review(self, client), Release(self, client))
        self.train: dict[type[Action], train.Flow] = {
            kind: flow for flow in flows for kind in flow.actions
        }

    @classmethod
    def create(
        cls,
        base_url: str,
        token: AppStoreToken,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> AppStoreProvider:
        return cls(cls._http(base_url, auth=token, timeout=timeout, retry=retry), token)

    # --- reads ---------------------------------------------------------------------------

    async def _get(
        self, path: str, params: dict[str, str] | None = None, *, missing: str
    ) -> httpx.Response:
        """A read; `missing` says in words what a 404 means for it."""
        return await read(self.http, path, params, missing=missing)

    async def build(self, action: BuildRef) -> Build | str:
        """The build the action names, or why it can't be named."""
        if action.build_id or "-" in action.build:
            build_id = action.build_id or action.build
            resource = one(
                await self._get(
                    f"v1/builds/{segment(build_id)}", missing=f"{LABEL} has no build {build_id}"
                )
            )
            return Build(resource) if resource else f"{LABEL} has no build {build_id}."
        found = many(
            await self._get(
                "v1/builds",
                {"filter[app]": action.app_id, "filter[version]": action.build, "limit": "10"},
                missing=f"{LABEL} has no app {action.app_id}",
            )
        )
        if not found:
            there = await appstore_list.builds_there(self.http, action.app, action.app_id)
            return f"{action.app} has no build numbered {action.build}{there}"
        if len(found) > 1:
            ids = ", ".join(r.id for r in found)
            return (
                f"{action.app} has {len(found)} builds numbered {action.build} ({ids}): "
                "name one by its id."
            )
        return Build(found[0])

    async def version(self, action: VersionRef) -> Resource | str:
        if action.version_id or "-" in action.version:
            version_id = action.version_id or action.version
            resource = one(
                await self._get(
                    f"v1/appStoreVersions/{segment(version_id)}",
                    missing=f"{LABEL} has no version {version_id}",
                )
            )
            return resource or f"{LABEL} has no version {version_id}."
        found = many(
            await self._get(
                f"v1/apps/{segment(action.app_id)}/appStoreVersions",
                {"filter[versionString]": action.version, "limit": "10"},
                missing=f"{LABEL} has no app {action.app_id}",
            )
        )
        if not found:
            there = await appstore_list.versions_there(self.http, action.app_id)
            return f"{action.app} has no App Store version {action.version}{there}"
        if len(found) > 1:
            platforms = ", ".join(str(r.attributes.get("platform")) for r in found)
            return (
                f"{action.app} has {action.version} on several platforms ({platforms}): "
                "name the version by its id."
            )
        return found[0]

    async def show(self, query: appstore_list.AppStoreBuilds) -> Listing:
        """`appstore builds`: the app's newest builds, with their version and beta state."""
        return await appstore_list.builds(self.http, query)

    async def attached(self, version_id: str) -> Build | None:
        response = await self._get(
            f"v1/appStoreVersions/{segment(version_id)}/build",
            missing=f"{LABEL} has no version {version_id}",
        )
        resource = one(response)
        return Build(resource) if resource else None

    # --- previews ------------------------------------------------------------------------

    async def preview(self, action: BuildAction | train.TrainAction) -> Preview:
        if isinstance(action, train.TrainAction):
            return await self.train[type(action)].preview(action)
        if isinstance(action, AppStoreDetach):
            return await self._preview_detach(action)
        build = await self.build(action)
        if isinstance(build, str):
            return Preview(refusal=build)
        facts = [
            Fact(label="Build", value=build.describe()),
            Fact(label="Processing", value=build.processing),
            Fact(label="Expired", value="yes" if build.expired else "no"),
            Fact(label="Uploaded", value=build.uploaded),
            Fact(label="Encryption", value=build.encryption_text),
        ]
        resolved: Action = action.model_copy(update={"build_id": build.id})
        expect = {"expired": _yes(build.expired), "encryption": build.encryption_text}
        if isinstance(action, AppStoreExpire):
            if build.expired:
                return Preview(refusal=f"Build {build.describe()} is already expired.")
            warnings = await self._attached_warning(build)
            return Preview(facts=facts, warnings=warnings, expect=expect, action=resolved)
        if isinstance(action, AppStoreEncryption):
            if action.undoing is not None and build.encryption_text != action.undoing:
                return Preview(
                    refusal=f"Something else was declared since: build {build.describe()} is "
                    f"declared {build.encryption_text} now, not {action.undoing}, so there is "
                    "nothing to roll back. Nothing was posted."
                )
            if build.encryption is action.uses_non_exempt_encryption:
                return Preview(
                    refusal=f"Build {build.describe()} is already declared {build.encryption_text}."
                )
            return Preview(facts=facts, expect=expect, action=resolved)
        version = await self.version(action)
        if isinstance(version, str):
            return Preview(refusal=version)
        resolved = resolved.model_copy(update={"version_id": version.id})
        if build.processing != "VALID":
            return Preview(
                refusal=f"Build {build.describe()} is {build.processing}, not VALID: "
                "it can't be attached."
            )
        if build.expired:
            return Preview(refusal=f"Build {build.describe()} is expired: it can't be attached.")
        current = await self.attached(version.id)
        if action.undoing is not None and (current.id if current else "") != action.undoing:
            return Preview(refusal=_attached_since(action.app, action.version, current))
        if current is not None and current.id == build.id:
            return Preview(
                refusal=f"Build {build.describe()} is already attached to {action.version}."
            )
        state = version_state(version)
        facts.insert(
            0,
            Fact(
                label="Version",
                value=f"{version.attributes.get('versionString', action.version)} ({state})",
            ),
        )
        facts.insert(
            1, Fact(label="Attached now", value=current.describe() if current else "no build")
        )
        warnings = []
        if build.encryption is None:
            warnings.append(
                "This build's encryption is not declared yet: declare it with "
                f"/promote appstore encryption {action.app} {build.number} exempt|non-exempt."
            )
        expect.update(_expected_attached(current))
        return Preview(facts=facts, warnings=warnings, expect=expect, action=resolved)

    async def version_of(self, build: Build) -> Resource | None:
        """The App Store version `build` is attached to, if any."""
        response = await self._get(
            f"v1/builds/{segment(build.id)}/appStoreVersion",
            missing=f"{LABEL} has no build {build.id}",
        )
        return one(response)

    async def _attached_warning(self, build: Build) -> list[str]:
        """Expiring a build that a version ships with deserves a warning on the message."""
        try:
            version = await self.version_of(build)
        except ProviderError as exc:
            return [
                f"Couldn't check whether build {build.number} is attached to a version: "
                f"{exc.message}"
            ]
        if version is None:
            return []
        a = version.attributes
        state = version_state(version)
        return [
            f"Build {build.number} is attached to version {a.get('versionString', version.id)} "
            f"({state}): once expired, that version can't be submitted with it."
        ]

    # --- execution -----------------------------------------------------------------------

    async def execute(
        self,
        action: BuildAction | train.TrainAction,
        *,
        promoted_by: str,
        expect: Mapping[str, str],
        steps: Steps,
    ) -> Outcome:
        if isinstance(action, train.TrainAction):
            return await self.train[type(action)].execute(action, expect, steps)
        if isinstance(action, AppStoreDetach):
            return await self._execute_detach(action, expect, steps)
        try:
            build = await self.build(action)
            before = (
                await self.attached(action.version_id)
                if isinstance(action, AppStoreAttach) and action.version_id
                else None
            )
        except ProviderError as exc:
            return not_sent(f"couldn't read build {action.build} before the change ({exc.message})")
        if isinstance(build, str):
            return not_sent(build)
        moved = _moved(action, build, before, expect)
        if moved is not None:
            return moved
        if isinstance(action, AppStoreAttach):
            replaced = before.describe() if before else "no build"
            outcome = await self._attach(action, replaced, steps)
            return outcome.model_copy(
                update={
                    "before": _attached_record(before),
                    "installed": {"attached": action.build_id or "", "number": build.number},
                }
            )
        outcome = await self._modify_build(action, steps)
        if isinstance(action, AppStoreEncryption):
            declared = "non-exempt" if action.uses_non_exempt_encryption else "exempt"
            outcome = outcome.model_copy(
                update={
                    "before": {"encryption": build.encryption_text},
                    "installed": {"encryption": declared},
                }
            )
        return outcome

    async def _attach(self, action: AppStoreAttach, replaced: str, steps: Steps) -> Outcome:
        assert action.version_id and action.build_id
        body = {"data": {"type": "builds", "id": action.build_id}}
        try:
            await self.http.write(
                steps,
                "attach",
                "PATCH",
                f"v1/appStoreVersions/{segment(action.version_id)}/relationships/build",
                json=body,
                explain={
                    404: f"{LABEL} has no version {action.version_id} or build {action.build_id}",
                    **_EXPLAIN_WRITE,
                },
            )
        except ProviderUncertain as exc:
            return await self._attach_read_back(action, replaced, exc)
        now = await self._attached_or_error(action.version_id)
        facts = [
            Fact(label="Version", value=f"{action.version} ({action.version_id})"),
            Fact(label="Attached now", value=now.describe() if isinstance(now, Build) else now),
            Fact(label="Replaced", value=replaced),
        ]
        if isinstance(now, Build) and now.id == action.build_id:
            return Outcome(
                state="succeeded",
                headline=f"build {now.number} is attached to {action.app} {action.version}",
                facts=facts,
            )
        return Outcome(
            state="unknown",
            headline=f"{LABEL} accepted the change, but reading it back does not show "
            f"build {action.build}",
            facts=facts,
            check=f"Check the build attached to {action.app} {action.version}.",
        )

    async def _attached_or_error(self, version_id: str) -> Build | str:
        try:
            return await self.attached(version_id) or "no build"
        except ProviderError as exc:
            return f"unknown ({exc.message})"

    async def _attach_read_back(
        self, action: AppStoreAttach, replaced: str, exc: ProviderUncertain
    ) -> Outcome:
        assert action.version_id
        now = await self._attached_or_error(action.version_id)
        facts = [
            Fact(label="Attached now", value=now.describe() if isinstance(now, Build) else now),
            Fact(label="Replaced", value=replaced),
        ]
        if isinstance(now, Build) and now.id == action.build_id:
            return Outcome(
                state="succeeded",
                headline=f"build {now.number} is attached to {action.app} {action.version} "
                f"(confirmed by reading it back after: {exc.message})",
                facts=facts,
            )
        return Outcome(
            state="unknown",
            headline=exc.message,
            facts=facts,
            check=f"Reading it back shows {facts[0].value} attached; check {action.app} "
            f"{action.version} in App Store Connect before asking again.",
        )

    async def _modify_build(
        self, action: AppStoreExpire | AppStoreEncryption, steps: Steps
    ) -> Outcome:
        assert action.build_id
        if isinstance(action, AppStoreExpire):
            field, wanted, done = "expired", True, "is expired"
        else:
            field, wanted = "usesNonExemptEncryption", action.uses_non_exempt_encryption
            done = f"is declared {'non-exempt' if wanted else 'exempt'}"
        body = {"data": {"type": "builds", "id": action.build_id, "attributes": {field: wanted}}}
        path = f"v1/builds/{segment(action.build_id)}"
        uncertain: ProviderUncertain | None = None
        resource: Resource | None = None
        note = ""
        try:
            response = await self.http.write(
                steps,
                field,
                "PATCH",
                path,
                json=body,
                explain={404: f"{LABEL} has no build {action.build_id}", **_EXPLAIN_WRITE},
            )
        except ProviderUncertain as exc:
            uncertain = exc
        else:
            try:
                resource = one(response)
            except ProviderError:  # answered 2xx: it happened, whatever the body says
                uncertain = ProviderUncertain(
                    LABEL, f"{LABEL} answered {response.status_code} with a body the bot can't read"
                )
        if uncertain is not None:  # never PATCH again: read the build instead
            try:
                resource = one(
                    await self._get(path, missing=f"{LABEL} has no build {action.build_id}")
                )
            except ProviderError:
                raise uncertain from None
            note = f" (confirmed by reading it back after: {uncertain.message})"
            if resource is None or resource.attributes.get(field) is not wanted:
                raise uncertain from None
        if resource is None or resource.attributes.get(field) is not wanted:
            return Outcome(
                state="unknown",
                headline=f"{LABEL} answered, but build {action.build} does not show the change",
                check=f"Check build {action.build} of {action.app} in App Store Connect.",
            )
        build = Build(resource)
        return Outcome(
            state="succeeded",
            headline=f"build {build.number} of {action.app} {done}{note}",
            facts=[
                Fact(label="Build", value=build.describe()),
                Fact(label="Expired", value="yes" if build.expired else "no"),
                Fact(label="Encryption", value=build.encryption_text),
            ],
        )

    # --- detach: the rollback of an attach to a version that had no build ---------------

    async def _preview_detach(self, action: AppStoreDetach) -> Preview:
        current = await self.attached(action.version_id)
        if action.undoing is not None and (current.id if current else "") != action.undoing:
            return Preview(refusal=_attached_since(action.app, action.version, current))
        if current is None:
            return Preview(refusal=f"{action.app} {action.version} has no build attached.")
        version = await self.version(action)
        state = version_state(version)
        facts = [
            Fact(label="Version", value=f"{action.version} ({state})"),
            Fact(label="Attached now", value=current.describe()),
            Fact(
                label="Detaching", value=f"build {current.number}: the version will have no build"
            ),
        ]
        expect = _expected_attached(current)
        return Preview(facts=facts, expect=expect)

    async def _execute_detach(
        self, action: AppStoreDetach, expect: Mapping[str, str], steps: Steps
    ) -> Outcome:
        try:
            before = await self.attached(action.version_id)
        except ProviderError as exc:
            return not_sent(f"couldn't read {action.app} {action.version} before ({exc.message})")
        if before is None:
            return not_sent(f"no build is attached to {action.app} {action.version}")
        if before.id != expect.get("attached", before.id):
            then = expect.get("attached_shown", expect["attached"])
            return changed(
                f"the build attached to {action.app} {action.version}", then, before.describe()
            )
        try:
            await self.http.write(
                steps,
                "detach",
                "PATCH",
                f"v1/appStoreVersions/{segment(action.version_id)}/relationships/build",
                json={"data": None},
                explain={404: f"{LABEL} has no version {action.version_id}", **_EXPLAIN_WRITE},
            )
            note = ""
        except ProviderUncertain as exc:  # never PATCH again: read it back instead
            note = f" (confirmed by reading it back after: {exc.message})"
            uncertain: ProviderUncertain | None = exc
        else:
            uncertain = None
        now = await self._attached_or_error(action.version_id)
        facts = [
            Fact(label="Version", value=f"{action.version} ({action.version_id})"),
            Fact(label="Attached now", value=now.describe() if isinstance(now, Build) else now),
            Fact(label="Detached", value=before.describe()),
        ]
        if now == "no build":
            return Outcome(
                state="succeeded",
                headline=f"no build is attached to {action.app} {action.version}{note}",
                facts=facts,
                before=_attached_record(before),
                installed=_attached_record(None),
            )
        return Outcome(
            state="unknown",
            headline=uncertain.message
            if uncertain
            else f"{LABEL} accepted the change, but reading it back still shows a build",
            facts=facts,
            check=f"Check the build attached to {action.app} {action.version}.",
        )

    async def observe(
        self,
        action: BuildAction | train.TrainAction,
        *,
        promoted_by: str,
        expect: Mapping[str, str],
        steps: Steps,
    ) -> Outcome | None:
        """Read the version's build, or the build, and compare with what it was before; a
        train step carries on from its journal."""
        if isinstance(action, train.TrainAction):
            return await self.train[type(action)].observe(action, expect, steps)
        if isinstance(action, AppStoreDetach):
            now = await self.attached(action.version_id)
            shown = now.describe() if now else "no build"
            facts = [Fact(label="Read back", value=shown)]
            if now is None:
                what = f"build {action.build} detached from {action.app} {action.version}"
                return Outcome(
                    state="succeeded",
                    headline=what,
                    facts=facts,
                    before=_recorded_attached(expect),
                    installed=_attached_record(None),
                )
            state = f"{action.app} {action.version} has {shown} attached"
            if now.id == expect.get("attached"):
                return not_done(state).model_copy(update={"facts": facts})
            check = f"Check {action.app} in App Store Connect"
            return unclear(LABEL, state, check).model_copy(update={"facts": facts})
        if isinstance(action, AppStoreAttach):
            if not action.version_id:
                return None
            now = await self.attached(action.version_id)
            done = now is not None and now.id == action.build_id
            shown = now.describe() if now else "no build"
            before = "attached" in expect and (now.id if now else "") == expect["attached"]
            what = f"build {action.build} attached to {action.app} {action.version}"
            state = f"{action.app} {action.version} has {shown} attached"
            record = (_recorded_attached(expect), _attached_record(now))
        else:
            build = await self.build(action)
            if isinstance(build, str):
                return None
            if isinstance(action, AppStoreExpire):
                done, what = build.expired, f"build {action.build} of {action.app} expired"
                before = expect.get("expired") == _yes(build.expired)
                record = ({}, {})  # an expired build has no way back
            else:
                done = build.encryption is action.uses_non_exempt_encryption
                wanted = "non-exempt" if action.uses_non_exempt_encryption else "exempt"
                what = f"build {action.build} of {action.app} declared {wanted}"
                before = expect.get("encryption") == build.encryption_text
                was = expect.get("encryption")
                record = ({"encryption": was} if was else {}, {"encryption": wanted})
            shown = (
                f"{build.describe()}, expired: {build.expired}, encryption: {build.encryption_text}"
            )
            state = f"build {shown}"
        facts = [Fact(label="Read back", value=shown)]
        if done:  # with what it replaced, as the preview saw it, so it can be rolled back
            return Outcome(
                state="succeeded",
                headline=what,
                facts=facts,
                before=record[0],
                installed=record[1],
            )
        if before:
            return not_done(state).model_copy(update={"facts": facts})
        check = f"Check {action.app} in App Store Connect"
        return unclear(LABEL, state, check).model_copy(update={"facts": facts})

    async def drift(
        self, action: BuildAction | train.TrainAction, expect: Mapping[str, str]
    ) -> Drift | None:
        """The build (and the version's build, for attach and detach) read again as the
        preview read them, compared as the write compares them before it is sent; a train
        step, as its flow compares before its first write."""
        if not expect:
            return None
        if isinstance(action, train.TrainAction):
            stop = await self.train[type(action)].check(action, expect)
            if stop is None:
                return None
            return stop.moved or Drift(
                what=action.title,
                then="what its message shows",
                now=stop.headline.removeprefix("not sent: "),
            )
        if isinstance(action, AppStoreDetach):
            return _attached_drift(action, await self.attached(action.version_id), expect)
        build = await self.build(action)
        if isinstance(build, str):
            raise ProviderNotFound(LABEL, build)
        attached = (
            await self.attached(action.version_id)
            if isinstance(action, AppStoreAttach) and action.version_id
            else None
        )
        return _drift_of(action, build, attached, expect)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _expected_attached(build: Build | None) -> dict[str, str]:
    """A version's attached build as a preview records it, to compare with before the write
    and, after a recovery, to know what the write replaced."""
    if build is None:
        return {"attached": "", "attached_number": "", "attached_shown": "no build"}
    return {
        "attached": build.id,
        "attached_number": build.number,
        "attached_shown": build.describe(),
    }


def _recorded_attached(expect: Mapping[str, str]) -> dict[str, str]:
    """What a preview recorded as attached, as an outcome's `before`; nothing if it recorded
    nothing (a request from before previews recorded it: not rolled back on a guess)."""
    if "attached" not in expect:
        return {}
    return {
        "attached": expect["attached"],
        "number": expect.get("attached_number", ""),
        "shown": expect.get("attached_shown", ""),
    }


def _attached_record(build: Build | None) -> dict[str, str]:
    """A version's attached build, as an outcome's `before` or `installed` records it."""
    if build is None:
        return {"attached": "", "number": "", "shown": "no build"}
    return {"attached": build.id, "number": build.number, "shown": build.describe()}


def _attached_since(app: str, version: str, current: Build | None) -> str:
    now = f"build {current.describe()}" if current else "no build"
    return (
        f"Something else was attached since: {app} {version} has {now} attached now, so there "
        "is nothing to roll back. Nothing was posted."
    )


def _moved(
    action: BuildAction, build: Build, attached: Build | None, expect: Mapping[str, str]
) -> Outcome | None:
    """Compare what App Store Connect shows right before the write with what the preview
    showed: None to go ahead, else the `failed` outcome saying why nothing was sent."""
    what = f"build {build.number}"
    if isinstance(action, AppStoreExpire) and build.expired:
        return not_sent(f"{what} is already expired")
    if isinstance(action, AppStoreEncryption) and (
        build.encryption is action.uses_non_exempt_encryption
    ):
        return not_sent(f"{what} is already declared {build.encryption_text}")
    if isinstance(action, AppStoreAttach) and attached is not None and attached.id == build.id:
        return not_sent(f"{what} is already attached to {action.version}")
    drift = _drift_of(action, build, attached, expect)
    return drift.outcome() if drift is not None else None


def _drift_of(
    action: BuildAction, build: Build, attached: Build | None, expect: Mapping[str, str]
) -> Drift | None:
    """What moved since the preview: the build's flags, or the build attached to the version."""
    what = f"build {build.number}"
    return (
        moved(LABEL, f"{what} expired", expect, "expired", _yes(build.expired))
        or moved(LABEL, f"{what}'s encryption", expect, "encryption", build.encryption_text)
        or (
            _attached_drift(action, attached, expect)
            if isinstance(action, AppStoreAttach)
            else None
        )
    )


def _attached_drift(
    action: AppStoreAttach | AppStoreDetach, attached: Build | None, expect: Mapping[str, str]
) -> Drift | None:
    """The version has another build attached than the preview showed."""
    return moved(
        LABEL,
        f"the build attached to {action.app} {action.version}",
        expect,
        "attached",
        attached.id if attached else "",
        then=expect.get("attached_shown") or expect.get("attached") or "no build",
        shown=attached.describe() if attached else "no build",
    )


def token(settings: AppStoreSettings) -> AppStoreToken:
    """The token signer; a key that does not load names its setting."""
    missing = settings.missing("asc_issuer_id", "asc_key_id")
    if settings.asc_private_key is None and settings.asc_private_key_path is None:
        missing.append("ASC_PRIVATE_KEY_PATH or ASC_PRIVATE_KEY must be set")
    if missing:
        raise SettingError(*missing)
    assert settings.asc_issuer_id is not None and settings.asc_key_id is not None
    try:
        if settings.asc_private_key is not None:
            setting = "ASC_PRIVATE_KEY"
            key = load_private_key(settings.asc_private_key.get_secret_value())
        elif settings.asc_private_key_path is not None:
            setting = "ASC_PRIVATE_KEY_PATH"
            key = load_private_key_file(settings.asc_private_key_path)
        else:
            raise SettingError("ASC_PRIVATE_KEY_PATH or ASC_PRIVATE_KEY must be set")
    except PrivateKeyError as exc:
        raise SettingError(f"{setting}: {exc}") from None
    return AppStoreToken(settings.asc_issuer_id, settings.asc_key_id, key)


def _client(settings: AppStoreSettings) -> AppStoreProvider:
    return AppStoreProvider.create(str(settings.asc_api_url), token(settings))


SPEC = ProviderSpec(
    name=NAME,
    label=LABEL,
    scopes={SCOPE: "attach, expire and declare builds; TestFlight, App Review and releases"},
    section=AppStoreSection,
    settings=AppStoreSettings,
    rules=AppStoreRules,
    client=_client,
    fake="bot.sandbox.appstore:FakeAppStore",
)
