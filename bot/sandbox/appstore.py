"""A fake App Store Connect API for builds and versions (provider-docs 001, 002, 004), and the
release train after them (asc-release-subset.json; bot/sandbox/appstore_train.py).

Every request must carry an ES256 API-key token that verifies with a known key (`kid`), names
the issuer, has `aud: appstoreconnect-v1` and lives at most 20 minutes; anything else is a 401
with a JSON:API `errors` body, and a write with a key of `read_only_keys` is a 403. It counts
the distinct tokens it has seen, so tests can check that the bot reuses one token instead of
signing per request. Each call is recorded with what it answered; a write of an operation named
in `hold` waits for its event (`reached` says it arrived), so a test can stop the bot between
two writes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from bot.sandbox.appstore_train import FakeReleaseTrain
from bot.sandbox.asc_jsonapi import Refused, check_query, errors, forbidden, unauthorized
from bot.sandbox.asc_jsonapi import not_found as _not_found
from bot.sandbox.calls import Call

AUDIENCE = "appstoreconnect-v1"
# GET /v1/builds: the `sort` keys and `include` names asc-builds-subset.json lists
BUILD_SORTS = ("version", "uploadedDate", "preReleaseVersion")
BUILD_INCLUDES = (
    "preReleaseVersion",
    "individualTesters",
    "betaGroups",
    "betaBuildLocalizations",
    "appEncryptionDeclaration",
    "betaAppReviewSubmission",
    "app",
    "buildBetaDetail",
    "appStoreVersion",
    "icons",
    "buildBundles",
    "buildUpload",
)
EDITABLE = ("PREPARE_FOR_SUBMISSION", "DEVELOPER_REJECTED", "REJECTED", "METADATA_REJECTED")
_EPOCH = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
# appVersionState → the older appStoreState (its enum names some states differently)
_STORE_STATE = {
    "READY_FOR_DISTRIBUTION": "READY_FOR_SALE",
    "PROCESSING_FOR_DISTRIBUTION": "PROCESSING_FOR_APP_STORE",
}


@dataclass
class AscBuild:
    id: str
    app_id: str
    number: str
    processing: str = "VALID"
    expired: bool = False
    uses_non_exempt_encryption: bool | None = None
    uploaded: datetime = _EPOCH
    short_version: str = "2.4.0"  # its preReleaseVersion's version (CFBundleShortVersionString)

    def pre_release(self) -> dict:
        """Its preReleaseVersion resource (the app's version string and platform)."""
        rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.app_id}/{self.short_version}"))
        return {
            "type": "preReleaseVersions",
            "id": rid,
            "attributes": {"version": self.short_version, "platform": "IOS"},
        }

    def resource(self, base: str) -> dict:
        declared = self.uses_non_exempt_encryption
        resource = {
            "type": "builds",
            "id": self.id,
            "attributes": {
                "version": self.number,
                "uploadedDate": self.uploaded.isoformat(),
                "expirationDate": (self.uploaded + timedelta(days=90)).isoformat(),
                "expired": self.expired,
                "minOsVersion": "17.0",
                "processingState": self.processing,
                "buildAudienceType": "APP_STORE_ELIGIBLE",
            },
            "relationships": {"app": {"data": {"type": "apps", "id": self.app_id}}},
            "links": {"self": f"{base}/v1/builds/{self.id}"},
        }
        if declared is not None:  # undeclared: App Store Connect leaves the attribute out
            resource["attributes"]["usesNonExemptEncryption"] = declared  # type: ignore[index]
        return resource


@dataclass
class AscVersion:
    id: str
    app_id: str
    version_string: str
    platform: str = "IOS"
    state: str = "PREPARE_FOR_SUBMISSION"
    build_id: str | None = None
    release_type: str = "MANUAL"  # or AFTER_APPROVAL, SCHEDULED

    def resource(self, base: str) -> dict:
        return {
            "type": "appStoreVersions",
            "id": self.id,
            "attributes": {
                "platform": self.platform,
                "versionString": self.version_string,
                "appStoreState": _STORE_STATE.get(self.state, self.state),
                "appVersionState": self.state,
                "releaseType": self.release_type,
                "createdDate": _EPOCH.isoformat(),
            },
            "links": {"self": f"{base}/v1/appStoreVersions/{self.id}"},
        }


def _build_key(key: str) -> Callable[[AscBuild], object]:
    """A build's sort key for `sort` (version and preReleaseVersion compare as numbers)."""

    def numbers(text: str) -> tuple[int, ...]:
        return tuple(int(p) if p.isdigit() else 0 for p in text.split("."))

    if key == "version":
        return lambda b: numbers(b.number)
    if key == "preReleaseVersion":
        return lambda b: numbers(b.short_version)
    return lambda b: b.uploaded


def _fields(resource: dict, query: Mapping[str, str]) -> dict:
    """A resource cut to the sparse fieldset `fields[<its type>]` asks for, if it asks."""
    wanted = query.get(f"fields[{resource['type']}]")
    if wanted is None:
        return resource
    names = set(wanted.split(","))
    cut = {
        **resource,
        "attributes": {k: v for k, v in resource["attributes"].items() if k in names},
    }
    if "relationships" in resource:
        cut["relationships"] = {k: v for k, v in resource["relationships"].items() if k in names}
    return cut


@dataclass
class FakeAppStore:
    issuer_id: str = "69a6de70-0000-47e3-e053-5b8c7c11a4d1"
    keys: dict[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)  # kid → public key
    apps: set[str] = field(default_factory=set)
    builds: dict[str, AscBuild] = field(default_factory=dict)
    versions: dict[str, AscVersion] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)  # tokens to refuse although valid
    tokens_seen: set[str] = field(default_factory=set)
    patch_delay: float = 0.0
    patch_answers_garbled: bool = False  # apply a PATCH of a build, answer 200 with an HTML body
    calls: list[Call] = field(default_factory=list)
    _failures: list[tuple[str | None, int, str, str, dict[str, str]]] = field(default_factory=list)
    base: str = "https://api.appstoreconnect.apple.com"
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    read_only_keys: set[str] = field(default_factory=set)  # kids whose writes are refused (403)
    # "METHOD /path/{id}/…" → an event that write waits for; `reached` is set when it arrives
    hold: dict[str, asyncio.Event] = field(default_factory=dict)
    reached: dict[str, asyncio.Event] = field(default_factory=dict)
    hourly_limit: int | None = None  # requests an hour, as Apple limits a key; over it: 429
    _hour: tuple[datetime | None, int] = (None, 0)  # the clock's hour, and requests in it
    train: FakeReleaseTrain = field(init=False)

    def __post_init__(self) -> None:
        self.train = FakeReleaseTrain(self)

    # --- seeding -------------------------------------------------------------------------

    def add_build(self, app_id: str, number: str, **attrs: object) -> AscBuild:
        n = len(self.builds) + 1
        build = AscBuild(
            id=str(uuid.UUID(int=n + (int(app_id) << 32))),
            app_id=app_id,
            number=number,
            uploaded=_EPOCH + timedelta(hours=n),
            **attrs,  # type: ignore[arg-type]
        )
        self.apps.add(app_id)
        self.builds[build.id] = build
        return build

    def add_version(self, app_id: str, version_string: str, **attrs: object) -> AscVersion:
        n = len(self.versions) + 1
        version = AscVersion(
            id=str(uuid.UUID(int=(n << 64) + int(app_id))),
            app_id=app_id,
            version_string=version_string,
            **attrs,  # type: ignore[arg-type]
        )
        self.apps.add(app_id)
        self.versions[version.id] = version
        return version

    def fail_next(
        self, status: int, title: str, detail: str, *, method: str | None = None, **headers: str
    ) -> None:
        """Answer the next request (of `method`, if given) with this error, once."""
        self._failures.append((method, status, title, detail, headers))

    @property
    def patches(self) -> list[Call]:
        return [c for c in self.calls if c.method == "PATCH"]

    def writes(self, operation: str | None = None) -> list[Call]:
        """The writes it was sent, in order; of one operation ("POST /v1/reviewSubmissions")."""
        found = [c for c in self.calls if c.method in ("POST", "PATCH", "DELETE")]
        return [c for c in found if operation is None or c.operation == operation]

    # --- HTTP ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._gate])
        app.router.add_get("/v1/builds", self._list_builds)
        app.router.add_get("/v1/builds/{id}", self._get_build)
        app.router.add_patch("/v1/builds/{id}", self._patch_build)
        app.router.add_get("/v1/builds/{id}/appStoreVersion", self._build_version)
        app.router.add_get("/v1/apps/{id}/appStoreVersions", self._list_versions)
        app.router.add_get("/v1/appStoreVersions/{id}", self._get_version)
        app.router.add_get("/v1/appStoreVersions/{id}/build", self._version_build)
        app.router.add_patch("/v1/appStoreVersions/{id}/relationships/build", self._attach)
        self.train.routes(app)
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        """Record the call and its answer; the answer is the handler's or a refusal's."""
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        route = request.match_info.route.resource
        operation = f"{request.method} {route.canonical if route else request.path}"
        call = Call(request.method, request.path_qs, body, operation=operation)
        self.calls.append(call)
        try:
            response = await self._answer(request, handler, operation)
        except Refused as refused:
            response = refused.response
        call.status = response.status
        if (
            isinstance(response, web.Response)
            and response.body
            and response.content_type.endswith("json")
        ):
            call.answer = json.loads(response.body)  # type: ignore[arg-type]
        return response

    async def _answer(self, request: web.Request, handler, operation: str):  # type: ignore[no-untyped-def]
        """Authenticate, then inject any queued failure, hold a write, or handle it."""
        refused = self._authenticate(request.headers.get("Authorization", ""))
        if refused is not None:
            return refused
        if request.method != "GET" and self._kid(request) in self.read_only_keys:
            return forbidden("The API key in use does not allow this request.")
        limited = self._rate_limited()
        if limited is not None:
            return limited
        failure = next((f for f in self._failures if f[0] in (None, request.method)), None)
        if failure is not None:
            self._failures.remove(failure)
            _, status, title, detail, headers = failure
            code = {
                409: "STATE_ERROR",
                422: "ENTITY_UNPROCESSABLE",
                429: "RATE_LIMIT_EXCEEDED",
            }.get(status, "UNEXPECTED_ERROR")
            return errors(status, code, title, detail, **headers)
        if request.method == "PATCH" and self.patch_delay:
            await asyncio.sleep(self.patch_delay)
        if operation in self.hold:
            self.reached.setdefault(operation, asyncio.Event()).set()
            await self.hold[operation].wait()
        self.train.settle()
        return await handler(request)

    def _rate_limited(self) -> web.Response | None:
        """429 past `hourly_limit` requests in the clock's hour, with when to come back."""
        if self.hourly_limit is None:
            return None
        now = self.clock()
        hour = now.replace(minute=0, second=0, microsecond=0)
        count = (self._hour[1] if self._hour[0] == hour else 0) + 1
        self._hour = (hour, count)
        if count <= self.hourly_limit:
            return None
        wait = int((hour + timedelta(hours=1) - now).total_seconds()) + 1
        return errors(
            429,
            "RATE_LIMIT_EXCEEDED",
            "The request rate limit has been reached.",
            "We've received too many requests for this API. Please wait and try again.",
            **{
                "Retry-After": str(wait),
                "X-Rate-Limit": f"user-hour-lim:{self.hourly_limit};user-hour-rem:0;",
            },
        )

    @staticmethod
    def _kid(request: web.Request) -> str:
        token = request.headers.get("Authorization", "")[7:]
        return str(jwt.get_unverified_header(token).get("kid"))

    def _authenticate(self, header: str) -> web.Response | None:
        if not header.startswith("Bearer "):
            return unauthorized("Provide a properly configured and signed bearer token.")
        token = header[7:]
        try:
            head = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return unauthorized("The token is not a JWT.")
        key = self.keys.get(str(head.get("kid")))
        if head.get("alg") != "ES256" or head.get("typ") != "JWT" or key is None:
            return unauthorized("The token's header must name ES256, JWT and a known key id.")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                audience=AUDIENCE,
                issuer=self.issuer_id,
                options={"require": ["iss", "iat", "exp", "aud"]},
            )
        except jwt.PyJWTError as exc:
            return unauthorized(f"The token is not valid: {exc}.")
        if claims["exp"] - claims["iat"] > 20 * 60:
            return unauthorized("The token lives longer than 20 minutes.")
        if token in self.revoked:
            return unauthorized("The token has been revoked.")
        self.tokens_seen.add(token)
        return None

    def _doc(self, data: object, request: web.Request, **extra: object) -> web.Response:
        return web.json_response(
            {"data": data, "links": {"self": f"{self.base}{request.path_qs}"}, **extra}
        )

    def document(
        self, data: object, request: web.Request, *, status: int = 200, **extra: object
    ) -> web.Response:
        """A single-resource document (`data: null` for an empty to-one)."""
        body = {"data": data, "links": {"self": f"{self.base}{request.path_qs}"}, **extra}
        return web.json_response(body, status=status)

    def listing(self, data: list[Any], request: web.Request, **extra: object) -> web.Response:
        """A collection document, cut to `limit`, with its paging."""
        limit = int(request.query.get("limit", "50"))
        return self._doc(
            data[:limit], request, meta={"paging": {"total": len(data), "limit": limit}}, **extra
        )

    error = staticmethod(errors)

    async def body(self, request: web.Request) -> Any:
        """The request's JSON body, or a 400 when it is none."""
        try:
            return await request.json()
        except ValueError:
            raise Refused(
                errors(400, "PARAMETER_ERROR.INVALID", "The request entity is invalid", "Not JSON.")
            ) from None

    async def _list_builds(self, request: web.Request) -> web.Response:
        q = request.query
        check_query(
            q,
            enums={
                "filter[processingState]": ("PROCESSING", "FAILED", "INVALID", "VALID"),
                "sort": tuple(f"{d}{k}" for k in BUILD_SORTS for d in ("", "-")),
                "include": BUILD_INCLUDES,
            },
            known=("filter[app]", "filter[version]", "filter[id]", "filter[betaGroups]"),
        )

        def wanted(name: str, value: str | set[str]) -> bool:
            given = set(q[name].split(",")) if name in q else None
            values = value if isinstance(value, set) else {value}
            return given is None or bool(given & values)

        found = [
            b
            for b in self.builds.values()
            if wanted("filter[app]", b.app_id)
            and wanted("filter[version]", b.number)
            and wanted("filter[id]", b.id)
            and wanted("filter[processingState]", b.processing)
            and wanted("filter[betaGroups]", self._groups_of(b))
        ]
        sorts = [s for s in q.get("sort", "").split(",") if s]
        for key in reversed(sorts):  # the first key sorts last: it decides
            found.sort(key=_build_key(key.removeprefix("-")), reverse=key.startswith("-"))
        include = set(filter(None, q.get("include", "").split(",")))
        if not include:
            return self.listing([_fields(b.resource(self.base), q) for b in found], request)
        shown = found[: int(q.get("limit", "50"))]
        related = {
            "preReleaseVersion": lambda b: b.pre_release(),
            "buildBetaDetail": self.train.beta_detail,
        }
        data, included = [], []
        for build in found:
            resource = build.resource(self.base)
            for name in include & set(related):
                target = related[name](build)
                link = {"type": target["type"], "id": target["id"]}
                resource["relationships"][name] = {"data": link}
                if build in shown and target not in included:
                    included.append(target)
            data.append(_fields(resource, q))
        return self.listing(data, request, included=[_fields(i, q) for i in included])

    def _groups_of(self, build: AscBuild) -> set[str]:
        return {
            g.id
            for g in self.train.groups.values()
            if build.id in g.build_ids or (g.all_builds and g.app_id == build.app_id)
        }

    async def _get_build(self, request: web.Request) -> web.Response:
        build = self.builds.get(request.match_info["id"])
        if build is None:
            return _not_found("builds", request.match_info["id"])
        return self._doc(build.resource(self.base), request)

    async def _patch_build(self, request: web.Request) -> web.Response:
        rid = request.match_info["id"]
        build = self.builds.get(rid)
        if build is None:
            return _not_found("builds", rid)
        try:
            data = (await request.json())["data"]
            assert data["type"] == "builds"
        except (ValueError, KeyError, TypeError, AssertionError):
            return errors(
                400,
                "PARAMETER_ERROR.INVALID",
                "The request entity is invalid",
                "Expected a 'builds' resource in 'data'.",
            )
        if data.get("id") != rid:
            return errors(
                409,
                "ENTITY_ERROR.ID.INVALID",
                "The provided entity id is invalid",
                "The id in the body does not match the URL.",
            )
        attributes = data.get("attributes") or {}
        if "expired" in attributes:
            if attributes["expired"] is not True:
                return errors(
                    409,
                    "ENTITY_ERROR.ATTRIBUTE.INVALID",
                    "An attribute value is invalid",
                    "An expired build can't be made unexpired.",
                )
            build.expired = True
        if "usesNonExemptEncryption" in attributes:
            value = attributes["usesNonExemptEncryption"]
            if not isinstance(value, bool):
                return errors(
                    422,
                    "ENTITY_UNPROCESSABLE",
                    "The request entity is not valid",
                    "usesNonExemptEncryption must be true or false.",
                )
            build.uses_non_exempt_encryption = value
        if self.patch_answers_garbled:  # a proxy mangled the body of a PATCH that was applied
            return web.Response(status=200, text="<html>ok</html>", content_type="text/html")
        return self._doc(build.resource(self.base), request)

    async def _list_versions(self, request: web.Request) -> web.Response:
        app_id = request.match_info["id"]
        if app_id not in self.apps:
            return _not_found("apps", app_id)
        wanted = request.query.get("filter[versionString]")
        found = [
            v
            for v in self.versions.values()
            if v.app_id == app_id and (wanted is None or v.version_string in wanted.split(","))
        ]
        return self.listing([_fields(v.resource(self.base), request.query) for v in found], request)

    async def _get_version(self, request: web.Request) -> web.Response:
        version = self.versions.get(request.match_info["id"])
        if version is None:
            return _not_found("appStoreVersions", request.match_info["id"])
        return self._doc(version.resource(self.base), request)

    async def _version_build(self, request: web.Request) -> web.Response:
        version = self.versions.get(request.match_info["id"])
        if version is None:
            return _not_found("appStoreVersions", request.match_info["id"])
        build = self.builds.get(version.build_id) if version.build_id else None
        return self._doc(build.resource(self.base) if build else None, request)

    async def _build_version(self, request: web.Request) -> web.Response:
        build = self.builds.get(request.match_info["id"])
        if build is None:
            return _not_found("builds", request.match_info["id"])
        version = next((v for v in self.versions.values() if v.build_id == build.id), None)
        return self._doc(version.resource(self.base) if version else None, request)

    async def _attach(self, request: web.Request) -> web.Response:
        version = self.versions.get(request.match_info["id"])
        if version is None:
            return _not_found("appStoreVersions", request.match_info["id"])
        try:
            data = (await request.json())["data"]
        except (ValueError, KeyError, TypeError):
            return errors(
                400, "PARAMETER_ERROR.INVALID", "The request entity is invalid", "Expected 'data'."
            )
        if version.state not in EDITABLE:
            return errors(
                409,
                "STATE_ERROR",
                "The request cannot be fulfilled because of the state of another resource.",
                f"The App Store version is {version.state} and can no longer be edited.",
            )
        if data is None:
            version.build_id = None
            return web.Response(status=204)
        build = self.builds.get(data.get("id", "")) if data.get("type") == "builds" else None
        if build is None or build.app_id != version.app_id:
            return errors(
                409,
                "ENTITY_ERROR.RELATIONSHIP.INVALID",
                "The provided entity includes a relationship with an invalid value",
                "The build does not belong to this app.",
            )
        if build.processing != "VALID" or build.expired:
            return errors(
                422,
                "ENTITY_UNPROCESSABLE",
                "The request entity is not valid",
                "The build is not valid for release.",
            )
        version.build_id = build.id
        return web.Response(status=204)
