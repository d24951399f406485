"""App Store Connect builds and versions (provider-docs 001, 002, 004, asc-builds-subset.json).

Three actions: attach a build to an App Store version (what ships when that version is
released), expire a build, declare a build's encryption. Versions and builds are looked up by
version string and build number; the ids found are kept with the request, so what runs after
approval is exactly what was shown. A PATCH whose fate is unclear is never repeated: the bot
reads the state back instead.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.errors import ProviderError, ProviderUncertain
from bot.core.model import (
    Action,
    AppStoreAttach,
    AppStoreEncryption,
    AppStoreExpire,
    Fact,
    Outcome,
    Preview,
    Scope,
)
from bot.providers.appstore_token import AppStoreToken
from bot.providers.http import DEFAULT_TIMEOUT, ProviderHTTP, RetryPolicy, segment

LABEL = "App Store Connect"
_EXPLAIN_WRITE = {
    409: "App Store Connect refused: the resource is not in a state that allows this change",
    422: "App Store Connect rejected the change as invalid",
}


class Resource(BaseModel):
    """One JSON:API resource object; attributes stay a dict so new fields never break us."""

    model_config = ConfigDict(extra="ignore")

    type: str
    id: str
    attributes: dict[str, Any] = {}


class Build:
    def __init__(self, resource: Resource) -> None:
        a = resource.attributes
        self.id = resource.id
        self.number: str = str(a.get("version") or "?")
        self.processing: str = str(a.get("processingState") or "UNKNOWN")
        self.expired: bool = bool(a.get("expired"))
        self.uploaded: str = str(a.get("uploadedDate") or "unknown")
        self.encryption: bool | None = a.get("usesNonExemptEncryption")

    def describe(self) -> str:
        return f"{self.number} ({self.id})"

    @property
    def encryption_text(self) -> str:
        if self.encryption is None:
            return "not declared"
        return "non-exempt" if self.encryption else "exempt"


def error_detail(response: httpx.Response) -> str | None:
    """JSON:API `{"errors": [{status, code, title, detail}]}`: titles and details, in order."""
    errors = response.json().get("errors")
    if not isinstance(errors, list):
        return None
    parts = []
    for error in errors[:3]:
        if isinstance(error, dict):
            title, detail = error.get("title"), error.get("detail")
            parts.append(f"{title}: {detail}" if title and detail else str(title or detail or ""))
    return "; ".join(p for p in parts if p) or None


def _one(response: httpx.Response) -> Resource | None:
    try:
        data = response.json().get("data")
        return None if data is None else Resource.model_validate(data)
    except (ValueError, AttributeError, ValidationError) as exc:
        raise ProviderError(LABEL, f"{LABEL} sent a response the bot can't read: {exc}") from exc


def _many(response: httpx.Response) -> list[Resource]:
    try:
        return [Resource.model_validate(d) for d in response.json()["data"]]
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ProviderError(LABEL, f"{LABEL} sent a list the bot can't read: {exc}") from exc


class AppStoreProvider:
    name = "appstore"

    def __init__(self, http: ProviderHTTP, token: AppStoreToken) -> None:
        self.http = http
        self.token = token

    @classmethod
    def create(
        cls,
        base_url: str,
        token: AppStoreToken,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> AppStoreProvider:
        http = ProviderHTTP(
            LABEL,
            base_url,
            credential="ASC_KEY_ID / ASC_ISSUER_ID / the private key",
            scope=Scope.MANAGE_BUILDS.value,
            error_detail=error_detail,
            auth=token,
            timeout=timeout,
            retry=retry,
        )
        return cls(http, token)

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- reads ---------------------------------------------------------------------------

    async def _get(
        self, path: str, params: dict[str, str] | None = None, *, missing: str
    ) -> httpx.Response:
        """A read; `missing` says in words what a 404 means for it."""
        return await self.http.call(
            "GET", path, idempotent=True, params=params, explain={404: missing}
        )

    async def build(
        self, action: AppStoreAttach | AppStoreExpire | AppStoreEncryption
    ) -> Build | str:
        """The build the action names, or why it can't be named."""
        if action.build_id or "-" in action.build:
            build_id = action.build_id or action.build
            resource = _one(
                await self._get(
                    f"v1/builds/{segment(build_id)}", missing=f"{LABEL} has no build {build_id}"
                )
            )
            return Build(resource) if resource else f"{LABEL} has no build {build_id}."
        found = _many(
            await self._get(
                "v1/builds",
                {"filter[app]": action.app_id, "filter[version]": action.build, "limit": "10"},
                missing=f"{LABEL} has no app {action.app_id}",
            )
        )
        if not found:
            return f"{action.app} has no build numbered {action.build}."
        if len(found) > 1:
            ids = ", ".join(r.id for r in found)
            return (
                f"{action.app} has {len(found)} builds numbered {action.build} ({ids}): "
                "name one by its id."
            )
        return Build(found[0])

    async def version(self, action: AppStoreAttach) -> Resource | str:
        if action.version_id or "-" in action.version:
            version_id = action.version_id or action.version
            resource = _one(
                await self._get(
                    f"v1/appStoreVersions/{segment(version_id)}",
                    missing=f"{LABEL} has no version {version_id}",
                )
            )
            return resource or f"{LABEL} has no version {version_id}."
        found = _many(
            await self._get(
                f"v1/apps/{segment(action.app_id)}/appStoreVersions",
                {"filter[versionString]": action.version, "limit": "10"},
                missing=f"{LABEL} has no app {action.app_id}",
            )
        )
        if not found:
            return f"{action.app} has no App Store version {action.version}."
        if len(found) > 1:
            platforms = ", ".join(str(r.attributes.get("platform")) for r in found)
            return (
                f"{action.app} has {action.version} on several platforms ({platforms}): "
                "name the version by its id."
            )
        return found[0]

    async def attached(self, version_id: str) -> Build | None:
        response = await self._get(
            f"v1/appStoreVersions/{segment(version_id)}/build",
            missing=f"{LABEL} has no version {version_id}",
        )
        resource = _one(response)
        return Build(resource) if resource else None

    # --- previews ------------------------------------------------------------------------

    async def preview(self, action: Action) -> Preview:
        assert isinstance(action, AppStoreAttach | AppStoreExpire | AppStoreEncryption)
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
        if isinstance(action, AppStoreExpire):
            if build.expired:
                return Preview(refusal=f"Build {build.describe()} is already expired.")
            return Preview(facts=facts, action=resolved)
        if isinstance(action, AppStoreEncryption):
            if build.encryption is action.uses_non_exempt_encryption:
                return Preview(
                    refusal=f"Build {build.describe()} is already declared {build.encryption_text}."
                )
            return Preview(facts=facts, action=resolved)
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
        if current is not None and current.id == build.id:
            return Preview(
                refusal=f"Build {build.describe()} is already attached to {action.version}."
            )
        state = version.attributes.get("appVersionState") or version.attributes.get("appStoreState")
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
        return Preview(facts=facts, warnings=warnings, action=resolved)

    # --- execution -----------------------------------------------------------------------

    async def execute(self, action: Action, *, promoted_by: str) -> Outcome:
        if isinstance(action, AppStoreAttach):
            return await self._attach(action)
        assert isinstance(action, AppStoreExpire | AppStoreEncryption)
        return await self._modify_build(action)

    async def _attach(self, action: AppStoreAttach) -> Outcome:
        assert action.version_id and action.build_id
        try:
            before = await self.attached(action.version_id)
            replaced = before.describe() if before else "no build"
        except ProviderError as exc:
            replaced = f"unknown ({exc.message})"
        body = {"data": {"type": "builds", "id": action.build_id}}
        try:
            await self.http.call(
                "PATCH",
                f"v1/appStoreVersions/{segment(action.version_id)}/relationships/build",
                idempotent=False,
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

    async def _modify_build(self, action: AppStoreExpire | AppStoreEncryption) -> Outcome:
        assert action.build_id
        if isinstance(action, AppStoreExpire):
            field, wanted, done = "expired", True, "is expired"
        else:
            field, wanted = "usesNonExemptEncryption", action.uses_non_exempt_encryption
            done = f"is declared {'non-exempt' if wanted else 'exempt'}"
        body = {"data": {"type": "builds", "id": action.build_id, "attributes": {field: wanted}}}
        path = f"v1/builds/{segment(action.build_id)}"
        try:
            response = await self.http.call(
                "PATCH",
                path,
                idempotent=False,
                json=body,
                explain={404: f"{LABEL} has no build {action.build_id}", **_EXPLAIN_WRITE},
            )
            resource = _one(response)
            note = ""
        except ProviderUncertain as exc:  # never PATCH again: read the build instead
            try:
                resource = _one(
                    await self._get(path, missing=f"{LABEL} has no build {action.build_id}")
                )
            except ProviderError:
                raise exc from None
            note = f" (confirmed by reading it back after: {exc.message})"
            if resource is None or resource.attributes.get(field) is not wanted:
                raise exc from None
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

    async def observe(self, action: Action, *, promoted_by: str) -> Outcome | None:
        if isinstance(action, AppStoreAttach):
            if not action.version_id:
                return None
            now = await self.attached(action.version_id)
            done = now is not None and now.id == action.build_id
            shown = now.describe() if now else "no build"
            what = f"build {action.build} attached to {action.app} {action.version}"
        else:
            assert isinstance(action, AppStoreExpire | AppStoreEncryption)
            build = await self.build(action)
            if isinstance(build, str):
                return None
            if isinstance(action, AppStoreExpire):
                done, what = build.expired, f"build {action.build} of {action.app} expired"
            else:
                done = build.encryption is action.uses_non_exempt_encryption
                wanted = "non-exempt" if action.uses_non_exempt_encryption else "exempt"
                what = f"build {action.build} of {action.app} declared {wanted}"
            shown = (
                f"{build.describe()}, expired: {build.expired}, encryption: {build.encryption_text}"
            )
        facts = [Fact(label="Read back", value=shown)]
        if done:
            return Outcome(state="succeeded", headline=what, facts=facts)
        return Outcome(state="failed", headline=f"{LABEL} does not show {what}", facts=facts)
