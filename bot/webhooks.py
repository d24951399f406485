"""`POST /webhooks/znyx`: Znyx's signed webhooks (provider-docs/znyx-webhooks.md), on `PORT`
in HTTP and Socket Mode alike, when `ZNYX_WEBHOOK_SECRET` is set (404 otherwise).

Znyx is answered at once and does nothing slow on the way: a body over 64 KiB is refused
before it is read whole (413), a missing or wrong `X-Webhook-Signature` (an HMAC-SHA256 of the
raw body, compared in constant time) is 401, a body that is not a JSON object 400, an event
that is not a bundle's 200 and nothing. A bundle event is recorded in the store under the
digest of its body (a delivery Znyx repeats changes nothing twice, on any replica) and 202.

Then the job `webhooks` works on what was recorded: it reads from Znyx the environments the
delivery names, the reads the preview makes (a webhook is a hint, never the truth: what it
claims is not believed, and a replayed body only makes the bot read Znyx again), and hands
what Znyx shows to the core (bot/core/truth.py). A delivery whose reads fail is tried again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from bot.core.context import utc_now
from bot.core.errors import ProviderError
from bot.core.ports import StoreError, TruthStore
from bot.core.scheduler import RunAgainIn, Scheduler
from bot.core.workflow import Workflow
from bot.providers.znyx import NAME, STAGES, ZnyxRules
from bot.store import call_store

log = logging.getLogger(__name__)

PATH = "/webhooks/znyx"
HEADER = "X-Webhook-Signature"
MAX_BODY = 64 * 1024
EVENTS = ("bundle.published", "bundle.activated", "bundle.promoted")
# Every outcome of a delivery, for /metrics (a fixed set).
OUTCOMES = (
    "accepted",
    "bad_signature",
    "duplicate",
    "ignored",
    "too_large",
    "malformed",
    "unavailable",
)
EVERY_SECONDS = 5.0  # how often deliveries left by a stopped process are looked for
RETRY_SECONDS = 2.0  # a delivery that could not be finished is tried again this soon
RETRY = timedelta(seconds=RETRY_SECONDS)
LEASE = timedelta(seconds=90)  # a process working on a delivery holds it this long
MAX_ATTEMPTS = 30  # then it is given up (logged): about a minute of tries
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def signature(secret: str, body: bytes) -> str:
    """What Znyx sends in `X-Webhook-Signature` for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body`, compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.strip().encode())


def _field(data: Mapping[str, Any], *names: str) -> str | None:
    """The first of `names` that is a short plain string, at the top level or under `data`."""
    inner = data.get("data")
    for where in (data, inner if isinstance(inner, dict) else {}):
        for name in names:
            value = where.get(name)
            if isinstance(value, str) and _NAME.match(value):
                return value
    return None


def hint_of(data: object) -> dict[str, Any] | None:
    """What a delivery says, as far as the bot listens: the event, the environments it names
    (known stages only) and of those the ones it says changed (not a promotion's source), and
    the project if it names one; None if it is not a JSON object."""
    if not isinstance(data, dict):
        return None
    changed = [_field(data, key) for key in ("to_environment", "environment", "env", "env_name")]
    named = [*changed, _field(data, "from_environment")]
    return {
        "event": _field(data, "event", "event_type", "type") or "",
        "envs": sorted({e for e in named if e in STAGES}, key=STAGES.index),
        "changed": sorted({e for e in changed if e in STAGES}, key=STAGES.index),
        "project": _field(data, "project_id", "project"),
    }


class ZnyxWebhooks:
    """The receiver (`receive`) and the job that works on what it recorded (`work`).

    It takes deliveries from the start (they only need the store), also while the bot still
    waits for Slack; they are worked on once it is `attach`ed to the workflow."""

    def __init__(
        self,
        store: TruthStore,
        secret: str,
        *,
        count: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.secret = secret
        self.count = count or (lambda outcome: None)
        self.clock = clock
        self.workflow: Workflow | None = None
        self._wake: Callable[[], None] = lambda: None
        self._working = asyncio.Lock()  # one pass at a time in this process

    def attach(self, workflow: Workflow) -> ZnyxWebhooks:
        """Work on deliveries with `workflow` (and take the time from its clock)."""
        self.workflow = workflow
        self.clock = workflow.clock
        return self

    def add_routes(self, app: web.Application) -> web.Application:
        app.router.add_post(PATH, self.receive)
        return app

    def schedule(self, scheduler: Scheduler) -> None:
        """Run `work` as the job `webhooks`: at once after each accepted delivery, and every
        few seconds for deliveries a stopped process left."""
        scheduler.add("webhooks", self.work, EVERY_SECONDS, timeout=60.0)
        self._wake = lambda: scheduler.wake("webhooks")

    # --- answering Znyx --------------------------------------------------------------

    async def receive(self, request: web.Request) -> web.Response:
        outcome, response = await self._answer(request)
        self.count(outcome)
        return response

    async def _answer(self, request: web.Request) -> tuple[str, web.Response]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return "too_large", web.Response(status=413, text="larger than 64 KiB\n")
        body = await _read(request)
        if body is None:
            return "too_large", web.Response(status=413, text="larger than 64 KiB\n")
        if not signed(self.secret, body, request.headers.get(HEADER)):
            return "bad_signature", web.Response(status=401, text="bad signature\n")
        try:
            hint = hint_of(json.loads(body))
        except ValueError:
            hint = None
        if hint is None:
            return "malformed", web.Response(status=400, text="not a JSON object\n")
        if hint["event"] not in EVENTS:
            return "ignored", web.Response(text="ignored: not a bundle event\n")
        digest = hashlib.sha256(body).hexdigest()
        try:
            # One insert, off the event loop when the store waits on a network (PostgreSQL).
            fresh = await call_store(
                self.store, self.store.webhook_put, digest, NAME, hint, self.clock()
            )
        except StoreError as exc:
            log.error("a Znyx webhook could not be recorded (Znyx will send it again): %s", exc)
            return "unavailable", web.Response(status=503, text="try again later\n")
        if not fresh:
            return "duplicate", web.Response(text="seen before\n")
        self._wake()
        return "accepted", web.Response(status=202, text="accepted\n")

    # --- working on what was recorded ------------------------------------------------

    async def work(self) -> RunAgainIn | None:
        """Work on every recorded delivery nobody holds (after a pass under way in this
        process has ended); sooner again if one must wait."""
        async with self._working:
            return await self._work()

    async def _work(self) -> RunAgainIn | None:
        wf = self.workflow
        if wf is None:
            return None  # not attached yet: what came is recorded, and waits
        store = wf.store
        again = False
        for digest in store.webhooks_waiting(wf.clock()):
            now = wf.clock()
            item = store.webhook_claim(digest, wf.owner, now, now + LEASE)
            if item is None:
                continue  # another process took it
            last = item["attempts"] >= MAX_ATTEMPTS
            try:
                finished = await self._read(item["hint"], wait=not last)
            except ProviderError as exc:
                log.warning("reading what a Znyx webhook names failed: %s", exc.message)
                finished = False
            if finished or last:
                if not finished:
                    log.error("gave up on a Znyx webhook after %s tries", item["attempts"])
                store.webhook_done(digest, wf.clock())
            else:
                store.webhook_renew(digest, wf.owner, wf.clock() + RETRY)
                again = True
        return RunAgainIn(RETRY_SECONDS) if again else None

    async def _read(self, hint: Mapping[str, Any], *, wait: bool = True) -> bool:
        """Read from Znyx what the delivery names and hand it to the core; False to try
        again shortly (a promotion of one of them is under way, and `wait`)."""
        wf = self.workflow
        assert wf is not None
        rules = wf.rules.provider(NAME)
        provider = wf.providers.get(NAME)
        if not isinstance(rules, ZnyxRules) or provider is None:
            return True  # Znyx is not configured (any more): nothing to read
        section = rules.section
        named = hint.get("project")
        projects = {
            alias: pid
            for alias, pid in section.projects.items()
            if named is None or named in (alias, pid)
        }
        if not projects:
            return True  # a project of the org this bot has no name for
        envs = list(hint.get("envs") or STAGES)
        changed = list(hint.get("changed") or ())
        sightings = await provider.sightings(  # type: ignore[attr-defined]
            section.org, projects, envs, changed
        )
        return await wf.sighted(sightings, channel=section.channel, wait=wait)


async def _read(request: web.Request) -> bytes | None:
    """The raw body, or None as soon as it is over MAX_BODY (the rest is never read)."""
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
