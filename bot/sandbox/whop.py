"""A fake Whop API for app builds, following provider-docs 000 and whop-app-builds.yml.

Bearer API keys with scopes; errors as `{"error": {type, message, code, param}}`; builds in
each status with at most one production build per app and platform, which moves on promote;
`GET /app_builds` pages with `first`/`after` and answers `{data, page_info}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from bot.sandbox.calls import Call

PLATFORMS = ("ios", "android", "web")
STATUSES = ("draft", "pending", "approved", "rejected")
SCOPE = "developer:manage_builds"
_EPOCH = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@dataclass
class Build:
    id: str
    app_id: str
    platform: str
    status: str
    created_at: str
    checksum: str
    review_message: str | None = None
    is_production: bool = False

    def public(self) -> dict:
        """The AppBuild object as Whop returns it (it does not name the app)."""
        return {
            "id": self.id,
            "platform": self.platform,
            "file_url": f"https://cdn.whop.example/builds/{self.id}.zip",
            "created_at": self.created_at,
            "status": self.status,
            "checksum": self.checksum,
            "supported_app_view_types": ["hub"],
            "review_message": self.review_message,
            "is_production": self.is_production,
        }


def _error(
    status: int, kind: str, message: str, code: str | None = None, param: str | None = None
) -> web.Response:
    body = {"error": {"type": kind, "message": message, "code": code, "param": param}}
    return web.json_response(body, status=status)


@dataclass
class FakeWhop:
    keys: dict[str, set[str]] = field(default_factory=dict)  # API key → scopes
    apps: set[str] = field(default_factory=set)
    builds: dict[str, Build] = field(default_factory=dict)
    verification_required: bool = False  # promote answers 422 while set
    promote_delay: float = 0.0
    promote_is_noop: bool = False  # answer 200 with the build, but change nothing
    calls: list[Call] = field(default_factory=list)
    read_failures: int = 0  # how many reads (GET) to answer 429 rate_limit_exceeded next
    _failures: list[tuple[int, str, str]] = field(default_factory=list)
    _serial: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- seeding -------------------------------------------------------------------------

    def add_build(
        self,
        app_id: str,
        platform: str,
        status: str,
        *,
        production: bool = False,
        review_message: str | None = None,
        build_id: str | None = None,
    ) -> Build:
        n = next(self._serial)
        build = Build(
            id=build_id or f"apbu_{app_id[4:10]}{n:04d}",
            app_id=app_id,
            platform=platform,
            status=status,
            created_at=(_EPOCH + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            checksum=hashlib.sha256(f"{app_id}/{n}".encode()).hexdigest(),
            review_message=review_message,
        )
        self.apps.add(app_id)
        self.builds[build.id] = build
        if production:
            self._make_production(build)
        return build

    def production(self, app_id: str, platform: str) -> Build | None:
        return next(
            (
                b
                for b in self.builds.values()
                if b.app_id == app_id and b.platform == platform and b.is_production
            ),
            None,
        )

    def promote_elsewhere(self, build_id: str) -> None:
        """Make a build production as Whop's dashboard does (not through the bot)."""
        self._make_production(self.builds[build_id])

    def fail_next(
        self,
        status: int,
        kind: str = "internal_server_error",
        message: str = "An unexpected error occurred",
    ) -> None:
        self._failures.append((status, kind, message))

    @property
    def promote_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/promote")]

    def _make_production(self, build: Build) -> None:
        for other in self.builds.values():
            if other.app_id == build.app_id and other.platform == build.platform:
                other.is_production = False
        build.is_production = True

    # --- HTTP ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/app_builds", self._list)
        app.router.add_get("/app_builds/{id}", self._get)
        app.router.add_post("/app_builds/{id}/promote", self._promote)
        return app

    def _refused(self, request: web.Request) -> web.Response | None:
        if request.method == "GET" and self.read_failures > 0:
            self.read_failures -= 1
            response = _error(429, "rate_limit_exceeded", "Too many requests")
            response.headers["Retry-After"] = "0"
            return response
        auth = request.headers.get("Authorization", "")
        scopes = self.keys.get(auth[7:]) if auth.startswith("Bearer ") else None
        if scopes is None:
            return _error(401, "unauthorized", "Invalid or missing API key")
        if SCOPE not in scopes:
            return _error(403, "forbidden", "You do not have permission to access this resource")
        return None

    async def _list(self, request: web.Request) -> web.Response:
        self.calls.append(Call("GET", request.path_qs))
        if refused := self._refused(request):
            return refused
        query = request.query
        app_id = query.get("app_id")
        if not app_id:
            return _error(
                400,
                "invalid_request_error",
                "Missing required parameter: app_id.",
                "parameter_missing",
                "app_id",
            )
        for name, allowed in (("platform", PLATFORMS), ("status", STATUSES)):
            if name in query and query[name] not in allowed:
                return _error(
                    400,
                    "invalid_request_error",
                    f"Invalid value for {name}.",
                    "parameter_invalid",
                    name,
                )
        try:
            first = int(query.get("first", "10"))
        except ValueError:
            return _error(
                400,
                "invalid_request_error",
                "Invalid value for first.",
                "parameter_invalid",
                "first",
            )
        if app_id not in self.apps:
            return _error(404, "not_found", "Resource not found")
        builds = sorted(
            (
                b
                for b in self.builds.values()
                if b.app_id == app_id
                and query.get("platform", b.platform) == b.platform
                and query.get("status", b.status) == b.status
            ),
            key=lambda b: b.created_at,
            reverse=True,
        )
        start = 0
        if "after" in query:
            ids = [b.id for b in builds]
            if query["after"] not in ids:
                return _error(
                    400, "invalid_request_error", "Invalid cursor.", "parameter_invalid", "after"
                )
            start = ids.index(query["after"]) + 1
        page = builds[start : start + max(1, min(first, 100))]
        has_next = start + len(page) < len(builds)
        return web.json_response(
            {
                "data": [b.public() for b in page],
                "page_info": {
                    "end_cursor": page[-1].id if page else None,
                    "start_cursor": page[0].id if page else None,
                    "has_next_page": has_next,
                    "has_previous_page": start > 0,
                },
            }
        )

    async def _get(self, request: web.Request) -> web.Response:
        self.calls.append(Call("GET", request.path))
        if refused := self._refused(request):
            return refused
        build = self.builds.get(request.match_info["id"])
        if build is None:
            return _error(404, "not_found", "Resource not found")
        return web.json_response(build.public())

    async def _promote(self, request: web.Request) -> web.Response:
        self.calls.append(Call("POST", request.path))
        if refused := self._refused(request):
            return refused
        build = self.builds.get(request.match_info["id"])
        if build is None:
            return _error(404, "not_found", "Resource not found")
        if self.promote_delay:
            await asyncio.sleep(self.promote_delay)
        if self._failures:
            status, kind, message = self._failures.pop(0)
            return _error(status, kind, message)
        if self.verification_required:
            return _error(
                422, "verification_required", "Verification is required to complete this request"
            )
        if build.status not in ("approved", "draft"):
            return _error(
                400,
                "invalid_request_error",
                f"Only approved or draft builds can be promoted; this build is {build.status}.",
                "parameter_invalid",
                "id",
            )
        if not self.promote_is_noop:
            self._make_production(build)
        return web.json_response(build.public())
