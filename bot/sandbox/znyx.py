"""A fake Znyx control plane following provider-docs 003 and znyx-bundles.yml.

Bearer or `X-API-Key` tokens, each with its scopes; FastAPI-style errors (`{"detail": …}`);
per project an ordered set of environments (dev → staging → prod), each with its bundles,
at most one of them active. Promote copies the source's active bundle into the next stage as
a new version and makes it active there; activate makes an explicit version of an environment
its active one again (a rollback), publishing nothing.

Every change made through it (its API, or `ui_promote` / `ui_publish`: someone using Znyx's own
UI) is told to each registered webhook (`webhooks`): a POST of a JSON body signed with
`X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, as znyx-webhooks.md says, sent
after the change is answered, as Znyx does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import aiohttp
from aiohttp import web

from bot.sandbox.calls import Call

STAGES = ("dev", "staging", "prod")


@dataclass
class Bundle:
    id: str
    version: int
    policy_hash: str
    is_active: bool
    published_by: str | None
    published_at: str


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(status: int, detail: object) -> web.Response:
    return web.json_response({"detail": detail}, status=status)


def _validation(loc: list[str], msg: str, kind: str) -> web.Response:
    return _error(422, [{"loc": loc, "msg": msg, "type": kind}])


@dataclass
class FakeZnyx:
    """State and behaviour of the fake; `app()` serves it."""

    org_id: str = "org-sandbox"
    tokens: dict[str, set[str]] = field(default_factory=dict)  # token → scopes
    projects: dict[str, dict[str, list[Bundle]]] = field(default_factory=dict)
    promote_delay: float = 0.0  # seconds the promote call takes, to test slow providers
    promote_gate: asyncio.Event | None = None  # when set up, promote answers once it is set
    promote_started: asyncio.Event = field(default_factory=asyncio.Event)  # a promote arrived
    list_echoes_published_by: bool = True  # False: the bundle list leaves published_by out
    list_gate: asyncio.Event | None = None  # when set up, bundle lists answer once it is set
    list_waiting: asyncio.Event = field(default_factory=asyncio.Event)  # a list waits at the gate
    calls: list[Call] = field(default_factory=list)
    webhooks: list[tuple[str, str]] = field(default_factory=list)  # (url, secret) told of changes
    deliveries: list[int] = field(
        default_factory=list
    )  # what each receiver answered (0: no answer)
    # What `published_at` is made of; tests with a clock of their own give it here.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _failures: list[tuple[int, object]] = field(default_factory=list)
    _fail_after: list[tuple[int, object]] = field(default_factory=list)
    _sending: set[asyncio.Task[None]] = field(default_factory=set)

    # --- seeding -------------------------------------------------------------------------

    def add_project(self, project_id: str, envs: tuple[str, ...] = STAGES) -> None:
        self.projects[project_id] = {env: [] for env in envs}

    def publish(self, project_id: str, env: str, policy_hash: str, by: str = "ci") -> Bundle:
        """Publish a new active version in `env` (what CI does after a merge)."""
        bundles = self.projects[project_id][env]
        for b in bundles:
            b.is_active = False
        bundle = Bundle(
            id=str(uuid.uuid4()),
            version=max((b.version for b in bundles), default=0) + 1,
            policy_hash=policy_hash,
            is_active=True,
            published_by=by,
            published_at=_stamp(self.clock()),
        )
        bundles.append(bundle)
        return bundle

    def active(self, project_id: str, env: str) -> Bundle | None:
        return next((b for b in self.projects[project_id][env] if b.is_active), None)

    def fail_next(
        self, status: int, detail: object = "Internal Server Error", *, after_doing: bool = False
    ) -> None:
        """Answer the next promote call with this error, once; `after_doing`: promote first
        (a gateway's 502 for a promotion that landed)."""
        (self._fail_after if after_doing else self._failures).append((status, detail))

    # --- someone using Znyx's own UI, and its webhooks -----------------------------------

    def ui_promote(self, project_id: str, source: str, by: str = "ui") -> Bundle | str:
        """Promote as Znyx's UI does (not through the bot): the new bundle, or why not."""
        envs = self.projects.get(project_id)
        if envs is None or source not in envs:
            return f"Znyx has no {source} in {project_id}"
        result = self._promote_in(project_id, envs, source, by)
        return result if isinstance(result, Bundle) else str(result[1])

    def ui_publish(self, project_id: str, env: str, policy_hash: str, by: str = "ci") -> Bundle:
        """Publish a new active version in `env` as CI does, and tell the webhooks."""
        bundle = self.publish(project_id, env, policy_hash, by)
        self._emit("bundle.published", project_id, environment=env, policy_hash=policy_hash)
        return bundle

    async def delivered(self) -> None:
        """Wait until every webhook delivery sent so far has been answered."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _emit(self, event: str, project_id: str, **fields: object) -> None:
        """Tell every registered webhook, after the change (a task: the call is answered first)."""
        data = {"org_id": self.org_id, "project_id": project_id, **fields}
        envelope = {
            "id": str(uuid.uuid4()),
            "event": event,
            "created_at": _stamp(self.clock()),
            "data": data,
        }
        body = json.dumps(envelope).encode()
        for url, secret in self.webhooks:
            task = asyncio.get_running_loop().create_task(self._deliver(url, secret, body))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _deliver(self, url: str, secret: str, body: bytes) -> None:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Webhook-Signature": f"sha256={digest}"}
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.post(url, data=body, headers=headers) as response,
            ):
                self.deliveries.append(response.status)
        except (aiohttp.ClientError, OSError):
            self.deliveries.append(0)

    @property
    def promote_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/promote")]

    @property
    def activate_calls(self) -> list[Call]:
        return [c for c in self.calls if c.path.endswith("/activate")]

    @property
    def writes(self) -> list[Call]:
        """Every call that may change something (promote and activate)."""
        return [c for c in self.calls if c.method == "POST"]

    # --- HTTP ----------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        base = "/v1/orgs/{org}/projects/{project}/envs/{env}"
        app.router.add_post(base + "/promote", self._promote)
        app.router.add_get(base + "/bundles", self._list)
        app.router.add_get(base + "/bundles/{version}", self._get)
        app.router.add_post(base + "/bundles/{version}/activate", self._activate)
        return app

    def _scopes(self, request: web.Request) -> set[str] | None:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.lower().startswith("bearer ") else request.headers.get("X-API-Key")
        return self.tokens.get(token) if token else None

    def _locate(self, request: web.Request) -> dict[str, list[Bundle]] | web.Response:
        scopes = self._scopes(request)
        if scopes is None:
            return _error(401, "Not authenticated")
        info = request.match_info
        if info["org"] != self.org_id or info["project"] not in self.projects:
            return _error(404, "Project not found")
        envs = self.projects[info["project"]]
        if info["env"] not in envs:
            return _error(404, f"Environment '{info['env']}' not found")
        return envs

    async def _promote(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body: object = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        self.calls.append(Call("POST", request.path, body))
        envs = self._locate(request)
        if isinstance(envs, web.Response):
            return envs
        if "bundle:publish" not in (self._scopes(request) or set()):
            return _error(403, "Insufficient scope")
        if not raw:
            return _validation(["body"], "Field required", "missing")
        if not isinstance(body, dict):
            return _validation(["body"], "Input should be a valid dictionary", "dict_type")
        promoted_by = body.get("promoted_by", "api")
        if not isinstance(promoted_by, str):
            return _validation(
                ["body", "promoted_by"], "Input should be a valid string", "string_type"
            )
        if self.promote_delay:
            await asyncio.sleep(self.promote_delay)
        self.promote_started.set()
        if self.promote_gate is not None:
            await self.promote_gate.wait()
        if self._failures:
            status, detail = self._failures.pop(0)
            return _error(status, detail)
        result = self._promote_in(
            request.match_info["project"], envs, request.match_info["env"], promoted_by
        )
        if not isinstance(result, Bundle):
            return _error(*result)
        if self._fail_after:
            return _error(*self._fail_after.pop(0))
        return web.json_response(asdict(result))

    def _promote_in(
        self, project_id: str, envs: dict[str, list[Bundle]], source: str, by: str
    ) -> Bundle | tuple[int, str]:
        """The promotion itself: the new bundle, or the error status and detail."""
        position = STAGES.index(source) if source in STAGES else len(STAGES)
        target = STAGES[position + 1] if position + 1 < len(STAGES) else None
        if target is None or target not in envs:
            return 400, f"No promotion target for environment '{source}'"
        active = next((b for b in envs[source] if b.is_active), None)
        if active is None:
            return 404, "No active bundle to promote"
        new = self.publish(project_id, target, active.policy_hash, by)
        self._emit(
            "bundle.promoted",
            project_id,
            from_environment=source,
            to_environment=target,
            policy_hash=new.policy_hash,
        )
        return new

    async def _list(self, request: web.Request) -> web.Response:
        self.calls.append(Call("GET", request.path))
        envs = self._locate(request)
        if isinstance(envs, web.Response):
            return envs
        if self.list_gate is not None:
            self.list_waiting.set()
            await self.list_gate.wait()
        bundles = [asdict(b) for b in envs[request.match_info["env"]]]
        if not self.list_echoes_published_by:  # as some Znyx deployments answer
            for bundle in bundles:
                bundle.pop("published_by", None)
        return web.json_response(bundles)

    def _version(
        self, request: web.Request, envs: dict[str, list[Bundle]]
    ) -> Bundle | web.Response:
        try:
            version = int(request.match_info["version"])
        except ValueError:
            return _validation(
                ["path", "version"], "Input should be a valid integer", "int_parsing"
            )
        bundle = next((b for b in envs[request.match_info["env"]] if b.version == version), None)
        return bundle if bundle is not None else _error(404, "Bundle version not found")

    async def _get(self, request: web.Request) -> web.Response:
        self.calls.append(Call("GET", request.path))
        envs = self._locate(request)
        if isinstance(envs, web.Response):
            return envs
        bundle = self._version(request, envs)
        if isinstance(bundle, web.Response):
            return bundle
        return web.json_response({**asdict(bundle), "policies_json": {}})

    async def _activate(self, request: web.Request) -> web.Response:
        self.calls.append(Call("POST", request.path))
        envs = self._locate(request)
        if isinstance(envs, web.Response):
            return envs
        if "bundle:publish" not in (self._scopes(request) or set()):
            return _error(403, "Insufficient scope")
        bundle = self._version(request, envs)
        if isinstance(bundle, web.Response):
            return bundle
        for b in envs[request.match_info["env"]]:
            b.is_active = b is bundle
        self._emit(
            "bundle.activated",
            request.match_info["project"],
            environment=request.match_info["env"],
            version=bundle.version,
            policy_hash=bundle.policy_hash,
        )
        return web.json_response(asdict(bundle))
