"""What every App Store Connect module shares: the provider's names, how people name its
things (version strings, build numbers, opaque ids), and how its JSON:API documents and error
bodies are read. The build actions (appstore.py) and the release train (appstore_train*.py)
both read through these, over one `ProviderHTTP` and one ES256 token."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.commands import UsageError, shown
from bot.core.errors import ProviderError
from bot.providers.http import ProviderHTTP, unreadable

NAME = "appstore"
LABEL = "App Store Connect"
SCOPE = "developer:manage_builds"
APP_ID = re.compile(r"^[0-9]{1,20}$")
ID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")  # an opaque id
NUMBER = re.compile(r"^[0-9]{1,5}(\.[0-9]{1,5}){0,3}$")  # "2.4.0", and build "153"


def word(value: str, what: str, usage: str) -> str:
    """A version string or build number people typed (or an opaque id), else `UsageError`."""
    if NUMBER.match(value) or ID.match(value):
        return value
    raise UsageError(f"{shown(value)} is not {what}.", usage)


class BuildRef(Protocol):
    """What names a build in a request: the app, and the number people typed or the id."""

    app: str
    app_id: str
    build: str
    build_id: str | None


class VersionRef(Protocol):
    """What names an App Store version in a request: the app, and its version string or id."""

    app: str
    app_id: str
    version: str
    version_id: str | None


class Reads(Protocol):
    """The reads of builds and versions the build actions make, which the train makes too."""

    async def build(self, action: BuildRef) -> Build | str: ...

    async def version(self, action: VersionRef) -> Resource | str: ...

    async def attached(self, version_id: str) -> Build | None: ...


class Resource(BaseModel):
    """One JSON:API resource object; attributes and relationships stay dicts so new fields
    never break us."""

    model_config = ConfigDict(extra="ignore")

    type: str
    id: str
    attributes: dict[str, Any] = {}
    relationships: dict[str, Any] = {}

    def related(self, name: str) -> list[str]:
        """The ids a relationship's `data` names (App Store Connect sends `data` for a
        relationship when the request asked to include it)."""
        data = (self.relationships.get(name) or {}).get("data")
        items = data if isinstance(data, list) else [data] if data else []
        return [str(i["id"]) for i in items if isinstance(i, dict) and "id" in i]

    def document(self) -> dict[str, Any]:
        """As the body of a 200 answer, for a journal step found by reading."""
        return {"status": 200, "body": json.dumps({"data": self.model_dump()})}


class Build:
    def __init__(self, resource: Resource) -> None:
        a = resource.attributes
        self.id = resource.id
        self.number: str = str(a.get("version") or "?")
        self.processing: str = str(a.get("processingState") or "UNKNOWN")
        self.expired: bool = bool(a.get("expired"))
        self.uploaded: str = str(a.get("uploadedDate") or "unknown")
        self.expires: str = when(a.get("expirationDate"))
        self.encryption: bool | None = a.get("usesNonExemptEncryption")

    def describe(self) -> str:
        return f"{self.number} ({self.id})"

    @property
    def encryption_text(self) -> str:
        if self.encryption is None:
            return "not declared"
        return "non-exempt" if self.encryption else "exempt"


async def read(
    http: ProviderHTTP, path: str, params: dict[str, str] | None = None, *, missing: str
) -> httpx.Response:
    """A read (retried under the HTTP policy); `missing` says in words what a 404 means."""
    return await http.call("GET", path, idempotent=True, params=params, explain={404: missing})


def when(value: object) -> str:
    """An App Store Connect date-time as people read it ("2026-12-01 23:20 UTC")."""
    try:
        at = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value or "unknown")
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def version_state(version: Resource | str) -> str:
    """An App Store version's state (`appVersionState`, or the older `appStoreState`); a
    version that could not be read (why, in words) has none."""
    if isinstance(version, str):
        return "state unknown"
    a = version.attributes
    return str(a.get("appVersionState") or a.get("appStoreState") or "state unknown")


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


def one(response: httpx.Response) -> Resource | None:
    """The resource of a single-resource document (None for an empty to-one: `data: null`)."""
    try:
        data = response.json().get("data")
        return None if data is None else Resource.model_validate(data)
    except (ValueError, AttributeError, ValidationError) as exc:
        raise ProviderError(
            LABEL, f"{LABEL} sent a response the bot can't read: {unreadable(exc)}"
        ) from exc


def many(response: httpx.Response) -> list[Resource]:
    """The resources of a collection document."""
    try:
        return [Resource.model_validate(d) for d in response.json()["data"]]
    except (ValueError, KeyError, TypeError, ValidationError) as exc:
        raise ProviderError(
            LABEL, f"{LABEL} sent a list the bot can't read: {unreadable(exc)}"
        ) from exc


def total(response: httpx.Response, listed: int) -> int:
    """How many a collection holds in all (`meta.paging.total`), or how many it listed."""
    try:
        return int(response.json()["meta"]["paging"]["total"])
    except (ValueError, KeyError, TypeError):
        return listed
