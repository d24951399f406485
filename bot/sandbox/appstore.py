"""A fake App Store Connect API for builds and versions (provider-docs 001, 002, 004).

Every request must carry an ES256 API-key token that verifies with a known key (`kid`), names
the issuer, has `aud: appstoreconnect-v1` and lives at most 20 minutes; anything else is a 401
with a JSON:API `errors` body. It counts the distinct tokens it has seen, so tests can check
that the bot reuses one token instead of signing per request.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

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
    beta: tuple[str, str] | None = None  # (internal, external) beta state, once it has one

    def pre_release(self) -> dict:
        """Its preReleaseVersion resource (the app's version string and platform)."""
        rid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.app_id}/{self.short_version}"))
        return {
            "type": "preReleaseVersions",
            "id": rid,
            "attributes": {"version": self.short_version, "platform": "IOS"},
        }

    def beta_detail(self) -> dict:
        """Its buildBetaDetail resource: what TestFlight makes of it (ExternalBetaState, …)."""
        if self.expired:
            internal = external = "EXPIRED"
        elif self.processing == "PROCESSING":
            internal = external = "PROCESSING"
        elif self.processing != "VALID":
            internal = external = "PROCESSING_EXCEPTION"
        elif self.uses_non_exempt_encryption is None:
            internal = external = "MISSING_EXPORT_COMPLIANCE"
        else:
            internal, external = self.beta or (
                "READY_FOR_BETA_TESTING",
                "READY_FOR_BETA_SUBMISSION",
            )
        return {
            "type": "buildBetaDetails",
            "id": self.id,
            "attributes": {
                "autoNotifyEnabled": False,
                "internalBuildState": internal,
                "externalBuildState": external,
            },
        }

    def resource(self, base: str) -> dict:
        return {
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
                "usesNonExemptEncryption": self.uses_non_exempt_encryption,
            },
            "relationships": {"app": {"data": {"type": "apps", "id": self.app_id}}},
            "links": {"self": f"{base}/v1/builds/{self.id}"},
        }


@dataclass
class AscVersion:
    id: str
    app_id: str
    version_string: str
    platform: str = "IOS"
    state: str = "PREPARE_FOR_SUBMISSION"
    build_id: str | None = None

    def resource(self, base: str) -> dict:
        return {
            "type": "appStoreVersions",
            "id": self.id,
            "attributes": {
                "platform": self.platform,
                "versionString": self.version_string,
                "appStoreState": self.state,
                "appVersionState": self.state,
                "releaseType": "MANUAL",
                "createdDate": _EPOCH.isoformat(),
            },
            "links": {"self": f"{base}/v1/appStoreVersions/{self.id}"},
        }


def _invalid(name: str, value: str) -> web.Response:
    return errors(
        400,
        "PARAMETER_ERROR.INVALID",
        "A parameter has an invalid value",
        f"'{value}' is not a valid value for the parameter '{name}'",
    )


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


def errors(status: int, code: str, title: str, detail: str, **headers: str) -> web.Response:
    body = {
        "errors": [
            {
                "id": str(uuid.uuid4()),
                "status": str(status),
                "code": code,
                "title": title,
                "detail": detail,
            }
        ]
    }
    return web.json_response(body, status=status, headers=headers)


def _unauthorized(detail: str) -> web.Response:
    return errors(
        401, "NOT_AUTHORIZED", "Authentication credentials are missing or invalid.", detail
    )


def _not_found(kind: str, rid: str) -> web.Response:
    return errors(
        404,
        "NOT_FOUND",
        "The specified resource does not exist",
        f"There is no resource of type '{kind}' with id '{rid}'",
    )


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
        return app

    @web.middleware
    async def _gate(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        """Record, authenticate, then inject any queued failure."""
        raw = await request.read()
        self.calls.append(Call(request.method, request.path_qs, json.loads(raw) if raw else None))
        refused = self._authenticate(request.headers.get("Authorization", ""))
        if refused is not None:
            return refused
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
        return await handler(request)

    def _authenticate(self, header: str) -> web.Response | None:
        if not header.startswith("Bearer "):
            return _unauthorized("Provide a properly configured and signed bearer token.")
        token = header[7:]
        try:
            head = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return _unauthorized("The token is not a JWT.")
        key = self.keys.get(str(head.get("kid")))
        if head.get("alg") != "ES256" or head.get("typ") != "JWT" or key is None:
            return _unauthorized("The token's header must name ES256, JWT and a known key id.")
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
            return _unauthorized(f"The token is not valid: {exc}.")
        if claims["exp"] - claims["iat"] > 20 * 60:
            return _unauthorized("The token lives longer than 20 minutes.")
        if token in self.revoked:
            return _unauthorized("The token has been revoked.")
        self.tokens_seen.add(token)
        return None

    def _doc(self, data: object, request: web.Request, **extra: object) -> web.Response:
        return web.json_response(
            {"data": data, "links": {"self": f"{self.base}{request.path_qs}"}, **extra}
        )

    async def _list_builds(self, request: web.Request) -> web.Response:
        q = request.query
        found = [
            b
            for b in self.builds.values()
            if ("filter[app]" not in q or b.app_id in q["filter[app]"].split(","))
            and ("filter[version]" not in q or b.number in q["filter[version]"].split(","))
        ]
        sorts = [s for s in q.get("sort", "").split(",") if s]
        include = [i for i in q.get("include", "").split(",") if i]
        limit = q.get("limit", "50")
        for name, value, allowed in (
            *(("sort", s, BUILD_SORTS) for s in sorts),
            *(("include", i, BUILD_INCLUDES) for i in include),
        ):
            if value.removeprefix("-") not in allowed or (name == "include" and "-" in value):
                return _invalid(name, value)
        if not limit.isdigit() or not 0 < int(limit) <= 200:
            return _invalid("limit", limit)
        for key in reversed(sorts):  # the first key sorts last: it decides
            found.sort(key=_build_key(key.removeprefix("-")), reverse=key.startswith("-"))
        shown = found[: int(limit)]
        data = [self._sparse(b, include, q) for b in shown]
        included: list[dict] = []
        if "preReleaseVersion" in include:
            versions = {b.pre_release()["id"]: b.pre_release() for b in shown}
            included += [_fields(v, q) for v in versions.values()]
        if "buildBetaDetail" in include:
            included += [_fields(b.beta_detail(), q) for b in shown]
        extra: dict[str, object] = {"included": included} if include else {}
        meta = {"paging": {"total": len(found), "limit": int(limit)}}
        return self._doc(data, request, meta=meta, **extra)

    def _sparse(self, build: AscBuild, include: list[str], q: Mapping[str, str]) -> dict:
        """A build in a list: the relationships asked for linked, the fields asked for only."""
        resource = build.resource(self.base)
        linked = {"preReleaseVersion": build.pre_release, "buildBetaDetail": build.beta_detail}
        for name, related in linked.items():
            if name in include:
                target = related()
                resource["relationships"][name] = {
                    "data": {"type": target["type"], "id": target["id"]}
                }
        return _fields(resource, q)

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
        limit = int(request.query.get("limit", "50"))
        return self._doc(
            [_fields(v.resource(self.base), request.query) for v in found[:limit]],
            request,
            meta={"paging": {"total": len(found), "limit": limit}},
        )

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
