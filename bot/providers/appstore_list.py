"""What an App Store Connect app has, read only: `/promote appstore builds <app>` (its newest
builds with their version, processing, expiry, encryption and TestFlight states), and the
versions and builds there are when one named isn't (asc-builds-subset.json: `GET /v1/builds`
with `sort`, `include` and sparse `fields`, `GET /v1/apps/{id}/appStoreVersions`)."""

from __future__ import annotations

from typing import ClassVar

import httpx

from bot.core.errors import ProviderError
from bot.core.model import Listing, Query
from bot.providers.appstore_api import (
    LABEL,
    NAME,
    SCOPE,
    Build,
    Resource,
    many,
    read,
    total,
    version_state,
)
from bot.providers.http import ProviderHTTP, segment

USAGE = "/promote appstore builds <app>   e.g. /promote appstore builds ios"
LISTED = 10  # builds `appstore builds` shows, newest first
ATTACH = "/promote appstore <app> <version> <build>"


class AppStoreBuilds(Query):
    """An app's newest builds: number, version, processing, expired, encryption, beta state."""

    provider: ClassVar[str] = NAME
    scope: ClassVar[str] = SCOPE
    app: str
    app_id: str


async def builds(http: ProviderHTTP, query: AppStoreBuilds) -> Listing:
    """The app's newest builds, each with its preReleaseVersion and buildBetaDetail (included
    in the one list call)."""
    response = await read(
        http,
        "v1/builds",
        {
            "filter[app]": query.app_id,
            "sort": "-uploadedDate",
            "limit": str(LISTED),
            "include": "preReleaseVersion,buildBetaDetail",
            "fields[builds]": "version,uploadedDate,expired,processingState,"
            "usesNonExemptEncryption,preReleaseVersion,buildBetaDetail",
            "fields[preReleaseVersions]": "version,platform",
            "fields[buildBetaDetails]": "internalBuildState,externalBuildState",
        },
        missing=f"{LABEL} has no app {query.app_id}",
    )
    found = many(response)
    included = _included(response)
    rows = []
    for resource in found:
        build = Build(resource)
        version = _related(included, resource, "preReleaseVersion", "preReleaseVersions")
        beta = _related(included, resource, "buildBetaDetail", "buildBetaDetails")
        shown = str(version.attributes.get("version") or "?") if version else "?"
        rows.append(
            (
                build.number,
                shown,
                build.processing,
                "yes" if build.expired else "no",
                build.encryption_text,
                *_beta(beta),
                build.uploaded[:10],
            )
        )
    notes = []
    if (count := total(response, len(rows))) > len(rows):
        notes.append(f"The newest {len(rows)} of {count} builds.")
    if not rows:
        notes.append(f"{query.app} has no builds yet.")
    notes.append(f"Attach one with `{ATTACH}`.")
    columns = (
        "build",
        "version",
        "processing",
        "expired",
        "encryption",
        "internal beta",
        "external beta",
        "uploaded",
    )
    return Listing(f"App Store builds of {query.app}", columns, tuple(rows), tuple(notes))


async def versions_there(http: ProviderHTTP, app_id: str) -> str:
    """ " (its versions: 2.4.0 (PREPARE_FOR_SUBMISSION), …)." after "has no version …"; just
    "." when they can't be read."""
    try:
        versions = many(
            await read(
                http,
                f"v1/apps/{segment(app_id)}/appStoreVersions",
                {"limit": "10", "fields[appStoreVersions]": "versionString,appVersionState"},
                missing=f"{LABEL} has no app {app_id}",
            )
        )
    except ProviderError:
        return "."
    listed = ", ".join(
        f"{v.attributes.get('versionString')} ({version_state(v)})" for v in versions
    )
    return f" (its versions: {listed or 'none yet'})."


async def builds_there(http: ProviderHTTP, app: str, app_id: str) -> str:
    """ " (its newest builds: 155, 154, …; …)." after "has no build numbered …"; just "."
    when they can't be read."""
    try:
        newest = many(
            await read(
                http,
                "v1/builds",
                {
                    "filter[app]": app_id,
                    "sort": "-uploadedDate",
                    "limit": "5",
                    "fields[builds]": "version",
                },
                missing=f"{LABEL} has no app {app_id}",
            )
        )
    except ProviderError:
        return "."
    numbers = ", ".join(Build(b).number for b in newest) or "none yet"
    return f" (its newest builds: {numbers}; `/promote appstore builds {app}` shows more)."


def _beta(detail: Resource | None) -> tuple[str, str]:
    """A build's TestFlight states, internal and external (InternalBetaState, ExternalBetaState)."""
    a = detail.attributes if detail is not None else {}
    return str(a.get("internalBuildState") or "?"), str(a.get("externalBuildState") or "?")


def _related(
    included: dict[tuple[str, str], Resource], resource: Resource, name: str, kind: str
) -> Resource | None:
    ids = resource.related(name)
    return included.get((kind, ids[0])) if ids else None


def _included(response: httpx.Response) -> dict[tuple[str, str], Resource]:
    """A JSON:API document's `included` resources by (type, id); one that can't be read is
    left out (the listing then shows `?`)."""
    try:
        items = response.json().get("included") or []
    except (ValueError, AttributeError):
        return {}
    found = {}
    for item in items if isinstance(items, list) else []:
        try:
            resource = Resource.model_validate(item)
        except ValueError:
            continue
        found[(resource.type, resource.id)] = resource
    return found
